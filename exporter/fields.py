"""The worker fields of Vast's worker-list answers, each declared once.

Parsing, the metric families, the renderer, the README's metric table (a test holds it to this
table) and the simulator all follow `WORKER_FIELDS`: a new numeric field is one entry here plus
its README line. Each entry names where its unit comes from, because Vast's own documents
disagree (the seed says disk_usage is "Gb"; the worker code that sends it divides by 2**30).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GIB = 2**30


def parse_number(value: Any) -> float | None:
    """A finite float from a JSON number or numeric string; None for anything else.

    Null, booleans, NaN, infinities and numbers too large for a float are all "not a usable
    number": the field's series is dropped rather than exported as a value that would poison
    every sum, average and alert built on it.
    """
    kind = type(value)  # the common cases first: JSON numbers, null
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        try:
            return float(value)  # finite, unless too large for a float
        except OverflowError:
            return None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds from a number, a numeric string, or an ISO-8601 string (no zone: UTC).

    Vast's OpenAPI shows worker `created_at` as "2023-10-01T12:00:00Z"; its listings send floats.
    """
    number = parse_number(value)
    if number is not None or not isinstance(value, str):
        return number
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        return None


def list_length(value: Any) -> float | None:
    """How many items a JSON list holds; None when it is not a list."""
    return float(len(value)) if isinstance(value, list) else None


def scaled(factor: float) -> Callable[[Any], float | None]:
    def convert(value: Any) -> float | None:
        number = parse_number(value)
        return None if number is None else number * factor

    return convert


@dataclass(frozen=True, slots=True)
class Field:
    """One numeric field of a Vast object: where it comes from, what it becomes, and why that
    unit."""

    api: str  # field name in Vast's object
    metric: str  # the series is <prefix>_<metric>, e.g. vastai_worker_<metric>
    help: str  # HELP text, without the trailing "; cached from the last poll."
    source: str  # where the unit is documented (named in the README too)
    convert: Callable[[Any], float | None] = parse_number


SEED = "the worker-list docs (seed)"
SDK = "vast-cli vastai/serverless/client/worker.py"

WORKER_FIELDS: tuple[Field, ...] = (
    Field("cur_load", "cur_load", "Current load the worker receives per second (cur_load)", SEED),
    Field(
        "cur_load_rolling_avg",
        "cur_load_rolling_avg",
        "Rolling average of the worker's load (cur_load_rolling_avg)",
        SEED,
    ),
    Field(
        "cur_perf",
        "cur_perf",
        "Current performance of the worker, e.g. tokens per second (cur_perf)",
        SEED,
    ),
    Field(
        "disk_usage",
        "disk_usage_bytes",
        "Storage used by the worker's instance in bytes (disk_usage GiB x 2^30)",
        'pyworker lib/data_types.py: psutil.disk_usage("/").used / 2**30',
        scaled(GIB),
    ),
    Field("dlperf", "dlperf", "DLPerf score of the worker's instance (dlperf)", SEED),
    Field(
        "loaded_at",
        "loaded_timestamp_seconds",
        "Unix time the worker finished loading (loaded_at)",
        SEED,
    ),
    Field(
        "measured_perf",
        "measured_perf",
        "Benchmarked performance of the worker; dlperf until benchmarked",
        SEED,
    ),
    Field("perf", "perf", "Capacity of the worker: measured_perf x reliability (perf)", SEED),
    Field(
        "reliability", "reliability", "Uptime of the worker's instance, 0 to 1 (reliability)", SEED
    ),
    Field(
        "reqs_working", "reqs_working", "Requests the worker is processing now (reqs_working)", SEED
    ),
    Field(
        "new_load",
        "new_load",
        "Load of the requests the worker received since its last report (new_load)",
        SDK + "; the worker's WorkerStatusData.new_load, in cur_load's units",
    ),
    Field(
        "started_at",
        "started_timestamp_seconds",
        "Unix time the worker's instance started (started_at)",
        SDK + " (float, like loaded_at)",
        parse_timestamp,
    ),
    Field(
        "created_at",
        "created_timestamp_seconds",
        "Unix time the worker was created (created_at; ISO-8601 strings converted)",
        'vast-ai/docs get_endpoint_workers.yaml: ISO-8601 string, "2023-10-01T12:00:00Z"',
        parse_timestamp,
    ),
    Field(
        "loop_lag_max",
        "loop_lag_max_seconds",
        "Worst event-loop lag of the worker's PyWorker since its last report, seconds",
        "not published: no Vast code or doc gives its unit; taken as seconds, the unit of "
        "the Python event-loop clock the PyWorker runs on",
    ),
    Field(
        "warnings",
        "warnings",
        "Warnings the worker reports now (length of its warnings list)",
        "a JSON list; its length is exported, never its text",
        list_length,
    ),
)

# Vast's "MB" are MiB, as nvidia-smi reports them (an RTX 4090 shows 24564); its CLI turns GB
# into MB by x1000 (vast-cli vastai/api/query.py, "gpu_ram": 1000), so a GB of a worker group's
# gpu_ram is 1000 MiB.
VAST_GB = 1000 * 2**20
CREATE_ENDPOINT = "vast-ai/docs cli/reference/create-endpoint.mdx"
SHOW_AUTOGROUP = "vast-ai/docs show_autogroup.yaml"

# Endpoint settings of GET /api/v0/endptjobs/, exported as vastai_endpoint_<metric>.
ENDPOINT_FIELDS: tuple[Field, ...] = (
    Field(
        "max_workers",
        "max_workers",
        "Most workers the endpoint's autoscaler may run (max_workers)",
        CREATE_ENDPOINT,
    ),
    Field(
        "min_load",
        "min_load",
        "Load the autoscaler keeps capacity for even when idle, perf units/s (min_load)",
        CREATE_ENDPOINT + ': "minimum floor load in perf units/s"',
    ),
    Field(
        "min_cold_load",
        "min_cold_load",
        "Load floor the autoscaler may serve with cold workers, perf units/s (min_cold_load)",
        CREATE_ENDPOINT + ': "minimum floor load in perf units/s ... with cold workers"',
    ),
    Field(
        "target_util",
        "target_util",
        "Utilization the autoscaler aims for, 0 to 1 (target_util)",
        CREATE_ENDPOINT + ': "fraction, max 1.0"',
    ),
    Field(
        "cold_mult",
        "cold_mult",
        "Multiplier of capacity kept as cold workers (cold_mult)",
        CREATE_ENDPOINT,
    ),
    Field(
        "cold_workers",
        "cold_workers",
        "Cold (stopped, ready to start) workers the endpoint keeps (cold_workers)",
        CREATE_ENDPOINT,
    ),
    Field(
        "max_queue_time",
        "max_queue_time_seconds",
        "Longest time a request may queue on a worker, seconds (max_queue_time)",
        CREATE_ENDPOINT + ': "maximum seconds requests may be queued on each worker"',
    ),
    Field(
        "target_queue_time",
        "target_queue_time_seconds",
        "Time the autoscaler aims to clear the queue in, seconds (target_queue_time)",
        CREATE_ENDPOINT + ': "target seconds for the queue to be cleared"',
    ),
    Field(
        "inactivity_timeout",
        "inactivity_timeout_seconds",
        "Seconds without traffic before the endpoint may scale to zero (inactivity_timeout)",
        CREATE_ENDPOINT + ': "seconds of no traffic before the endpoint can scale to zero"',
    ),
)

# Worker-group fields of GET /api/v0/workergroups/, exported as vastai_worker_group_<metric>.
GROUP_FIELDS: tuple[Field, ...] = (
    Field(
        "test_workers",
        "test_workers",
        "Workers created to estimate performance while the group initializes (test_workers)",
        "vast-ai/docs cli/reference/create-workergroup.mdx",
    ),
    Field(
        "gpu_ram",
        "gpu_ram_bytes",
        "Estimated GPU memory the group's model needs, bytes (gpu_ram GB x 1000 MiB)",
        "vast-ai/docs show_autogroup.yaml (gpu_ram: 24) and create-workergroup.mdx (GB, as "
        "the CLI passes it unconverted); a Vast GB is 1000 MiB (vast-cli query.py)",
        scaled(VAST_GB),
    ),
    # The group's own autoscaler settings, as the endpoint has them. Vast's create-workergroup
    # page notes "this field isn't currently used at the workergroup level"; the listing carries
    # them all the same, and update-workergroup.mdx sets them.
    Field(
        "min_load",
        "min_load",
        "Load floor set on the worker group, perf units/s (min_load)",
        SHOW_AUTOGROUP + ' (min_load: number, 1.0); update-workergroup.mdx: "minimum floor '
        'load in perf units/s"',
    ),
    Field(
        "target_util",
        "target_util",
        "Utilization set on the worker group as its target, 0 to 1 (target_util)",
        SHOW_AUTOGROUP + ' (target_util: number, 0.9); update-workergroup.mdx: "fraction, max 1.0"',
    ),
    Field(
        "cold_mult",
        "cold_mult",
        "Multiplier of capacity set on the worker group to keep as cold workers (cold_mult)",
        SHOW_AUTOGROUP + " (cold_mult: number, 3.0); update-workergroup.mdx: "
        '"cold/stopped instance capacity target as multiple of hot capacity target"',
    ),
)

for _table in (WORKER_FIELDS, ENDPOINT_FIELDS, GROUP_FIELDS):
    assert len({f.metric for f in _table}) == len(_table), "duplicate metric name"

SHOW_INSTANCES = "vast-ai/docs show_instances.yaml"
SHOW_INSTANCE = "vast-ai/docs show_instance.yaml"


def percent(value: Any) -> float | None:
    """A 0..100 percentage as a 0..1 ratio."""
    number = parse_number(value)
    return None if number is None else number / 100


# Numeric fields of the v1 instance list (GET /api/v1/instances/), exported per worker as
# vastai_worker_<metric>. `dph_total` first: the billed series is derived from it.
INSTANCE_FIELDS: tuple[Field, ...] = (
    Field(
        "dph_total",
        "price_dollars_per_hour",
        "Price of the worker's instance in dollars per hour, all costs included (dph_total)",
        SHOW_INSTANCES + ' ("$/hr" in vast-cli\'s instance table)',
    ),
    Field(
        "storage_total_cost",
        "storage_price_dollars_per_hour",
        "Storage part of the instance's price in dollars per hour (storage_total_cost)",
        SHOW_INSTANCES + " (0.0021 beside dph_total 0.8021, the search object's diskHour)",
    ),
    Field(
        "gpu_util",
        "gpu_utilization_ratio",
        "GPU utilization of the worker's instance, 0 to 1 (gpu_util / 100)",
        'percent: vast-cli prints it as "Util. %" and "(72%)" (vastai/cli/display.py, '
        'commands/instances.py _fmt_gpu); show_instance.yaml\'s "as a fraction" contradicts it',
        percent,
    ),
    Field(
        "gpu_temp",
        "gpu_temperature_celsius",
        "GPU temperature of the worker's instance in degrees Celsius (gpu_temp)",
        SHOW_INSTANCE + ': "Current GPU temperature in Celsius"',
    ),
    Field(
        "gpu_totalram",
        "gpu_memory_total_bytes",
        "GPU memory of the worker's instance in bytes (gpu_totalram MiB x 2^20)",
        SHOW_INSTANCE + ': "Total GPU RAM in MB"; the MB are MiB (24576 for an RTX 4090)',
        scaled(2**20),
    ),
    Field(
        "vmem_usage",
        "gpu_memory_used_bytes",
        "GPU memory in use on the worker's instance in bytes (vmem_usage GB x 1e9)",
        SHOW_INSTANCES + " example 0.543945 beside gpu_totalram 24576: GB, not the "
        '"megabytes" show_instance.yaml states',
        scaled(1e9),
    ),
    Field(
        "cpu_util",
        "cpu_utilization_ratio",
        "CPU utilization of the worker's instance, 0 to 1 (cpu_util)",
        SHOW_INSTANCE + ': "CPU utilization as a fraction"',
    ),
    Field(
        "mem_usage",
        "memory_used_bytes",
        "Memory in use on the worker's instance in bytes (mem_usage GB x 1e9)",
        SHOW_INSTANCES + " example 0.00996352 beside mem_limit 15.71815424 and cpu_ram 15989 "
        '(MB): GB, not the "megabytes" show_instance.yaml states',
        scaled(1e9),
    ),
    Field(
        "mem_limit",
        "memory_limit_bytes",
        "Memory limit of the worker's instance in bytes (mem_limit GB x 1e9)",
        SHOW_INSTANCES + " example 15.71815424 beside cpu_ram 15989 (MB): GB",
        scaled(1e9),
    ),
    Field(
        "reliability2",
        "instance_reliability",
        "Reliability of the machine the worker's instance runs on, 0 to 1 (reliability2)",
        SHOW_INSTANCES + " (0.9686655); vast-cli shows it x 100 as R",
    ),
)

# Label fields of the instance list, on vastai_worker_instance_info.
INSTANCE_LABEL_FIELDS = ("gpu_name", "num_gpus", "machine_id", "geolocation")
# Every column the exporter asks the v1 list for (select_cols): nothing else is fetched.
INSTANCE_COLUMNS = (
    "id",
    "actual_status",
    *INSTANCE_LABEL_FIELDS,
    "dph_base",
    *(field.api for field in INSTANCE_FIELDS),
    "gpu_ram",
)
assert len({f.metric for f in INSTANCE_FIELDS}) == len(INSTANCE_FIELDS), "duplicate metric name"

SHOW_DEPLOYMENTS = "vast-ai/docs show_deployments.yaml"


def version_id(value: Any) -> float | None:
    """A version id (an integer, nullable): None for null or anything not a whole number."""
    number = parse_number(value)
    return number if number is not None and number >= 0 and number == int(number) else None


# Numeric fields of GET /api/v0/deployments/, exported per deployment as
# vastai_deployment_<metric>. `env`, `s3_key` and `search_params` are never read.
DEPLOYMENT_FIELDS: tuple[Field, ...] = (
    Field(
        "current_version_id",
        "current_version_id",
        "Id of the deployment's current version (current_version_id)",
        SHOW_DEPLOYMENTS + " (integer, nullable); workers report it as deployment_version_id",
        version_id,
    ),
    Field(
        "last_healthy_version_id",
        "last_healthy_version_id",
        "Id of the deployment's last version known healthy (last_healthy_version_id)",
        SHOW_DEPLOYMENTS + " (integer, nullable); versions carry no health of their own",
        version_id,
    ),
    Field(
        "storage",
        "storage_bytes",
        "Storage allocated to each of the deployment's workers in bytes (storage GB x 2^30)",
        'vast-ai/docs guides/serverless/deployments/configuration.mdx (storage: "Storage '
        'allocation in GB", default 50); the allocation is GiB in the CLI (cli/reference/'
        'search-offers.mdx --storage: "in GiB") and the worker disk_usage filling it is GiB',
        scaled(GIB),
    ),
    Field(
        "ttl",
        "ttl_seconds",
        "Seconds without a client heartbeat before the deployment is torn down (ttl)",
        'configuration.mdx (ttl: "Seconds of inactivity before auto-teardown"; null: no '
        "expiry); " + SHOW_DEPLOYMENTS,
    ),
    Field(
        "last_client_heartbeat",
        "last_heartbeat_timestamp_seconds",
        "Unix time of the deployment client's last heartbeat (last_client_heartbeat)",
        SHOW_DEPLOYMENTS + ' ("Unix timestamp of last client heartbeat"); the SDK posts one '
        "every min(ttl/2, 60) s (vastai/serverless/remote/deploy.py)",
        parse_timestamp,
    ),
    Field(
        "created_at",
        "created_timestamp_seconds",
        "Unix time the deployment was created (created_at)",
        SHOW_DEPLOYMENTS + ' ("Unix timestamp")',
        parse_timestamp,
    ),
    Field(
        "updated_at",
        "updated_timestamp_seconds",
        "Unix time the deployment was last updated (updated_at)",
        SHOW_DEPLOYMENTS + ' ("Unix timestamp")',
        parse_timestamp,
    ),
)
assert len({f.metric for f in DEPLOYMENT_FIELDS}) == len(DEPLOYMENT_FIELDS), "duplicate metric"
# --- Supply and contracts (issue 23) ---------------------------------------------------------
SEARCH_OFFERS = "vast-ai/docs search_offers.yaml"
PRICE_INCREASES = "vastai 1.9.1 vastai/api/price_increase.py list_pending"
OFFER_PRICE = (
    SEARCH_OFFERS + ': "Total $/hour rental cost" of the whole offer (its GPUs and the storage '
    "asked, allocated_storage)"
)

# The only fields of an offer (POST /api/v0/bundles/) the supply read keeps, summed or reduced
# over the offers of each worker group's search: vastai_worker_group_<metric>.
OFFER_FIELDS: tuple[Field, ...] = (
    Field(
        "num_gpus",
        "offer_gpus",
        "GPUs of those offers (num_gpus summed)",
        SEARCH_OFFERS + " (num_gpus: 4 in its example); vast-cli search offers: '# of GPUs'",
    ),
    Field(
        "dph_total",
        "offer_min_price_dollars_per_hour",
        "Price of the cheapest of those offers in dollars per hour (dph_total); absent without "
        "offers",
        OFFER_PRICE,
    ),
    Field(
        "dph_total",
        "offer_median_price_dollars_per_hour",
        "Median price of those offers in dollars per hour (dph_total); absent without offers",
        OFFER_PRICE,
    ),
)

# Fields of a pending price increase (GET /api/v0/instances/pending-price-increases/), per
# worker whose instance it names (contract_id): vastai_worker_<metric>.
PRICE_INCREASE_FIELDS: tuple[Field, ...] = (
    Field(
        "old_gpu_costpersec",
        "gpu_price_per_gpu_dollars_per_hour",
        'GPU price of the worker\'s contract per GPU in dollars per hour, now (price="old") '
        'and after the host\'s pending increase (price="new"; the old one when the increase '
        "leaves it unchanged)",
        PRICE_INCREASES + ": dollars per GPU per second; vast-cli's show "
        'pending-price-increases prints it x3600 as "GPU ($/GPU/hr)"',
        scaled(3600),
    ),
    Field(
        "new_gpu_costpersec",
        "gpu_price_per_gpu_dollars_per_hour",
        "The same, after the increase; null: the GPU price does not change",
        PRICE_INCREASES + ': as old_gpu_costpersec; "a null new means the resource did not '
        'change" (vastai/cli/commands/price_increase.py)',
        scaled(3600),
    ),
    Field(
        "contract_end_date",
        "contract_end_timestamp_seconds",
        "Unix time the worker's contract ends unless the renter accepts the increase (auto-extend "
        "stops at the old price)",
        PRICE_INCREASES + ': unix seconds, printed as "Current End (UTC)"',
        parse_timestamp,
    ),
    Field(
        "ask_end_date",
        "contract_offered_end_timestamp_seconds",
        "Unix time the contract would end at the new price, if accepted",
        PRICE_INCREASES + ': unix seconds, printed as "New End (UTC)"',
        parse_timestamp,
    ),
)
