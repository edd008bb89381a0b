"""A believable simulated Vast.ai serverless API, for ``--demo`` and ``vastai-exporter simulate``.

Why: the exporter, its dashboards and its tests need moving, realistic data (workers joining and
leaving, daily-like load, the real API's quirks and failures) without a Vast.ai account or network.

The simulation is pure, seeded state advanced lazily from a clock in fixed one-second steps, so the
same seed and clock give the same answers however often it is asked. The HTTP layer on top imitates
run.vast.ai (worker lists) and console.vast.ai (account listings). It is read-only: ``/route/`` and
``/update_workers/`` are deliberately absent.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..pricing import billing_state
from . import deployments, records
from .billing import SimulatedBilling, WorkerBill
from .paths import GROUP_WORKERS
from .reply import Reply
from .supply import Contract, SimulatedSupply

log = logging.getLogger(__name__)

FLAKY_GROUP_ID = 1004
FRESH_ENDPOINT_ID = 104  # created with the simulation: not ready for its first FRESH_SECONDS
FRESH_SECONDS = 30.0
OBJECT_SHAPE_GROUP_ID = 1001  # answers in the documented {"workers": [...]} shape
SPARE_GROUP_ID = 1002  # keeps one ready worker that gets no traffic: idle spend on the dashboards
# Lists its search_query as the query string of show_autogroup.yaml's example; the others as
# the JSON object the same schema types it as.
QUERY_STRING_GROUP_ID = 1003
USER_ID = 424242
DAY_SECONDS = 600.0  # one simulated "day" of load, compressed so a demo shows a full cycle
_MAX_CATCH_UP = 3600  # steps; after a longer gap the simulation resumes as if it had paused
_FAULT_RATE = 0.25


@dataclass(frozen=True)
class DemoTarget:
    """One thing ``--demo`` polls: an endpoint or a worker group."""

    kind: str  # "endpoint" or "worker_group"
    id: int
    name: str  # endpoint name; "" for a worker group
    endpoint_id: int | None  # for worker groups: their endpoint; None for endpoints


@dataclass(frozen=True)
class _EndpointSpec:
    id: int
    name: str
    peak_load: float  # endpoint load at the top of the daily curve, in its PyWorker's units
    perf_factor: float  # benchmarked perf per unit of DLPerf, in the same units
    req_size: float  # load one in-flight request accounts for
    phase: float  # radians, so endpoints do not peak together
    created_at: float | str
    settings: dict[str, float | int]


@dataclass(frozen=True)
class _GroupSpec:
    id: int
    endpoint_id: int
    size: int  # workers the autoscaler keeps (not counting cold ones)
    gpus: tuple[str, ...]
    num_gpus: int
    gpu_ram: int
    disk_gb: float
    load_secs: tuple[float, float]  # model_loading duration range
    ready_label: str  # how this group's PyWorker reports a serving worker
    version: int | None  # deployment_version_id; None for a group that predates versions
    template_id: int
    created_at: float
    cold: int = 0  # stopped (inactive) workers kept for fast scale-up
    fresh: bool = False  # created with the simulation: no workers before FRESH_SECONDS
    _: KW_ONLY
    disk_space: float  # GB each instance gets (its offer search asks for as much)
    autoscaler: tuple[float, float, float]  # the group's own min_load, target_util, cold_mult


_ENDPOINTS: tuple[_EndpointSpec, ...] = (
    _EndpointSpec(
        101, "llama-70b", 8500.0, 4.0, 80.0, 0.0, 1717430467.25,
        {"min_load": 1000, "min_cold_load": 0, "target_util": 0.9, "cold_mult": 2.5,
         "cold_workers": 1, "max_workers": 12, "max_queue_time": 30.0,
         "target_queue_time": 10.0, "inactivity_timeout": 600},
    ),
    _EndpointSpec(
        102, "sdxl-turbo", 13.0, 0.05, 1.2, 1.9, 1719852031.5,
        {"min_load": 2, "min_cold_load": 0, "target_util": 0.8, "cold_mult": 2.0,
         "cold_workers": 0, "max_workers": 8, "max_queue_time": 60.0,
         "target_queue_time": 20.0, "inactivity_timeout": 300},
    ),
    _EndpointSpec(
        103, "bge-embeddings", 5200.0, 60.0, 400.0, 4.1, "2024-09-12T08:03:44Z",
        {"min_load": 200, "min_cold_load": 0, "target_util": 0.95, "cold_mult": 1.5,
         "cold_workers": 0, "max_workers": 4, "max_queue_time": 15.0,
         "target_queue_time": 5.0, "inactivity_timeout": 900},
    ),
    _EndpointSpec(
        FRESH_ENDPOINT_ID, "qwen3-8b", 2400.0, 3.0, 60.0, 3.0, "2026-11-27T09:00:00Z",
        {"min_load": 100, "min_cold_load": 50, "target_util": 0.9, "cold_mult": 2.0,
         "cold_workers": 0, "max_workers": 6, "max_queue_time": 30.0,
         "target_queue_time": 10.0, "inactivity_timeout": 300},
    ),
)  # fmt: skip

_GROUPS: tuple[_GroupSpec, ...] = (
    _GroupSpec(1001, 101, 4, ("H100 SXM",), 2, 80, 152.0, (30, 60), "running", 7, 310245,
               1717430530.0, disk_space=200.0, autoscaler=(1000.0, 0.9, 2.5)),
    _GroupSpec(1002, 101, 4, ("A100 SXM4",), 2, 80, 148.0, (30, 60), "ready", 7, 310246,
               1718201122.0, cold=1, disk_space=200.0, autoscaler=(500.0, 0.8, 3.0)),
    _GroupSpec(1003, 102, 5, ("RTX 4090", "RTX 3090"), 1, 24, 14.5, (8, 20), "running", 3,
               298877, 1719852090.0, disk_space=32.0, autoscaler=(2.0, 0.8, 2.0)),
    _GroupSpec(FLAKY_GROUP_ID, 103, 3, ("RTX 3090", "RTX 4090"), 1, 24, 4.2, (6, 14), "ready",
               None, 301502, 1726128300.0, disk_space=16.0, autoscaler=(1.0, 0.9, 3.0)),
    # The fresh endpoint's group: no worker until FRESH_SECONDS, then cold starts of 20-40 s.
    _GroupSpec(1005, FRESH_ENDPOINT_ID, 2, ("RTX 4090",), 1, 24, 38.0, (20, 40), "ready", 1,
               312001, 1764234000.0, fresh=True, disk_space=64.0, autoscaler=(100.0, 0.9, 2.0)),
)  # fmt: skip

# name -> (DLPerf per GPU range, dollars per hour per GPU range)
_GPU_MODELS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "H100 SXM": ((210.0, 260.0), (2.0, 2.9)),
    "A100 SXM4": ((110.0, 140.0), (0.9, 1.4)),
    "RTX 4090": ((65.0, 90.0), (0.28, 0.55)),
    "RTX 3090": ((35.0, 48.0), (0.14, 0.28)),
}
# endpoint id -> the image its template runs (image_uuid of its instances)
_IMAGES = {
    101: "vllm/vllm-openai:v0.9.2",
    102: "vastai/comfy:v0.3.43-cuda-12.8",
    103: "ghcr.io/huggingface/text-embeddings-inference:1.7",
    FRESH_ENDPOINT_ID: "vllm/vllm-openai:v0.9.2",
}
_GEOS = ("US", "Sweden, SE", "California, US", "Quebec, CA", "Norway, NO", "Germany, DE",
         "Texas, US", "Japan, JP")  # fmt: skip

_DURATIONS: dict[str, tuple[float, float]] = {
    "creating": (4, 10),
    "starting": (4, 10),
    "loading": (6, 15),
    "rebooting": (8, 20),
    "error": (15, 40),
    "stopping": (4, 10),
    "destroying": (4, 10),
}
_STEADY = frozenset({"ready", "stopped"})
_LEAVING = frozenset({"stopping", "destroying", "stopped"})
_EVENTS = ("retire", "error", "reboot", "cold_swap")
_ERRORS = (
    "model failed to load: CUDA out of memory",
    "pyworker: benchmark timed out",
    "model server exited with code 137",
)
_ACTUAL_STATUS = {
    "creating": "created", "starting": "loading", "loading": "loading", "rebooting": "loading",
    "model_loading": "running", "ready": "running", "error": "running",
    "stopping": "exited", "destroying": "exited", "stopped": "exited",
}  # fmt: skip
_QUIRKS = ("", "", "", "", "", "", "str_reliability", "str_cur_load", "null_cur_perf")


@dataclass
class _Worker:
    """Internal state of one simulated worker (a Vast instance)."""

    id: int
    group: _GroupSpec
    gpu_name: str
    dlperf: float
    reliability: float
    dph_total: float
    machine_id: int
    geolocation: str
    started_at: float
    state: str
    state_left: float
    upper: bool  # reports status in upper case, as some PyWorker versions do
    quirk: str  # one of _QUIRKS: a numeric field sent as string, or a null field
    omit_loaded_at: bool  # leaves loaded_at out (rather than 0) until loaded
    version: int | None = None  # deployment_version_id (sim/deployments.py: the rollout)
    measured_perf: float | None = None  # None until benchmarked on first load
    loaded_at: float = 0.0
    after_error: str = "rebooting"
    disk: float = 0.0
    cur_load: float = 0.0
    rolling: float = 0.0
    cur_perf: float = 0.0
    new_load: float = 0.0
    reqs: int = 0
    loop_lag: float | None = None
    warnings: list[str] = field(default_factory=list)
    gpu_util: float = 0.0  # percent, as the instance list sends it
    gpu_temp: float = 32.0
    vmem_gb: float = 0.0

    @property
    def perf(self) -> float:
        return self.reported_measured_perf * self.reliability

    @property
    def reported_measured_perf(self) -> float:
        """measured_perf equals dlperf until the worker has been benchmarked."""
        return self.dlperf if self.measured_perf is None else self.measured_perf


def _api_key_for(seed: int, kind: str, ident: int) -> str:
    """A fake, deterministic secret: listings carry one, and the exporter must never leak it."""
    digest = hashlib.sha256(f"{seed}:{kind}:{ident}".encode()).hexdigest()
    return f"simkey-{digest[:48]}"


class Simulation:
    """Seeded, clock-driven state of a small Vast.ai serverless account."""

    def __init__(
        self, seed: int = 1, clock: Callable[[], float] = time.time, flaky: bool = True
    ) -> None:
        self.seed = seed
        self.flaky = flaky
        self._clock = clock
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed * 7919 + 17)  # requests never perturb the state
        self._faults = 0
        self._workers: list[_Worker] = []
        self._noise = {e.id: 0.0 for e in _ENDPOINTS}
        self._next_id = self._rng.randint(18_000_000, 19_000_000)
        self._event_in = self._rng.uniform(4, 8)
        self._event_n = 0
        self._t0 = float(clock())
        self._billing = SimulatedBilling()
        self._supply = SimulatedSupply(seed, self._t0, DAY_SECONDS)
        self._populate(self._t0)
        self._billing.seed(self._t0, ((self._bill(w), w.started_at) for w in self._workers))
        self._step(self._t0)
        self._seed_rolling()
        self._next_step = self._t0 + 1.0

    # ----- public queries -------------------------------------------------------------------

    def endpoint_workers(self, endpoint_id: int) -> list[dict[str, Any]] | None:
        """Workers of an endpoint as /get_endpoint_workers/ reports them; None if unknown."""
        if not any(e.id == endpoint_id for e in _ENDPOINTS):
            return None
        self._sync()
        members = [w for w in self._workers if w.group.endpoint_id == endpoint_id]
        return [self._payload(w, group_level=False) for w in members]

    def group_workers(self, group_id: int) -> list[dict[str, Any]] | None:
        """Workers of a worker group as /get_autogroup_workers/ reports them; None if unknown."""
        if not any(g.id == group_id for g in _GROUPS):
            return None
        self._sync()
        members = [w for w in self._workers if w.group.id == group_id]
        return [self._payload(w, group_level=True) for w in members]

    def group_endpoint(self, group_id: int) -> int:
        return next(g.endpoint_id for g in _GROUPS if g.id == group_id)

    def not_ready(self, endpoint_id: int) -> str | None:
        """Vast's answer while a fresh endpoint's workers cannot be listed yet, else None."""
        if endpoint_id != FRESH_ENDPOINT_ID or self._clock() - self._t0 >= FRESH_SECONDS:
            return None
        return f"authenticate_endpoint_apikey_by_id: endpoint {endpoint_id} has no workers yet"

    def reply(self, path: str, ident: int | None) -> Reply | None:
        """The answer that replaces this request's normal one, if any: only the flaky worker
        group's requests ever fail, a quarter of them (the seed decides which)."""
        if not self.flaky or path not in GROUP_WORKERS or ident != FLAKY_GROUP_ID:
            return None
        if self._fault_rng.random() >= _FAULT_RATE:
            return None
        self._faults += 1
        form = self._faults % 3
        if form == 0:
            return Reply(500, "500 Internal Server Error\n\nServer got itself in trouble")
        if form == 1:
            return Reply(429, "API requests too frequent, please slow down")
        return Reply(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")

    def user(self) -> dict[str, Any]:
        """The account as GET /api/v0/users/current/ shows it: its credit falls as it spends."""
        self._sync()
        return {**self._billing.user(USER_ID), **records.profile()}

    def charges(self, query: Any) -> tuple[int, Any]:
        """GET /api/v0/charges/ for a query string: today's charges, growing through the day."""
        self._sync()
        return self._billing.charges(query)

    def deployments(self) -> list[dict[str, Any]]:
        """Deployment records as GET /api/v0/deployments/ lists them (sim/deployments.py)."""
        self._sync()
        now = float(self._clock())
        return [
            deployments.record(
                spec, self.seed, USER_ID, self._t0, now, self._versions_run(spec.endpoint_id)
            )
            for spec in deployments.DEPLOYMENTS
        ]

    def deployment_versions(self, deployment_id: int) -> list[dict[str, Any]] | None:
        """A deployment's versions, newest first; None for an unknown deployment."""
        spec = deployments.find(deployment_id)
        if spec is None:
            return None
        self._sync()
        running = self._versions_run(spec.endpoint_id)
        return deployments.versions(spec, self._t0, float(self._clock()), running)

    def _versions_run(self, endpoint_id: int) -> set[int]:
        """The deployment versions the endpoint's workers run."""
        return {
            w.version
            for w in self._workers
            if w.group.endpoint_id == endpoint_id and w.version is not None
        }

    def endpoints(self) -> list[dict[str, Any]]:
        """Endpoint records as GET /api/v0/endptjobs/ lists them."""
        return [
            {
                "id": e.id,
                "endpoint_name": e.name,
                "endpoint_state": "active",
                **e.settings,
                "created_at": e.created_at,
                "user_id": USER_ID,
                "api_key": _api_key_for(self.seed, "endpoint", e.id),
                # Read by vast-cli's EndpointData.from_dict (vastai/data/endpoint.py), dropped
                # by its show_endpoints: an endpoint that is not due for deletion.
                "auto_delete_in_seconds": None,
                "auto_delete_due_24h": False,
            }
            for e in _ENDPOINTS
        ]

    def worker_groups(self) -> list[dict[str, Any]]:
        """Worker-group records as GET /api/v0/workergroups/ lists them: every field of
        show_autogroup.yaml, with its types (created_at an ISO-8601 string)."""
        names = {e.id: e.name for e in _ENDPOINTS}
        return [self._group(g, names[g.endpoint_id]) for g in _GROUPS]

    def _group(self, g: _GroupSpec, endpoint_name: str) -> dict[str, Any]:
        text, query = records.search(g.gpus, g.num_gpus, g.gpu_ram, g.disk_space)
        min_load, target_util, cold_mult = g.autoscaler
        created = datetime.fromtimestamp(g.created_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "id": g.id,
            "endpoint_id": g.endpoint_id,
            "endpoint_name": endpoint_name,
            "min_load": min_load,
            "target_util": target_util,
            "cold_mult": cold_mult,
            "test_workers": 3,
            "template_hash": _template_hash(g),
            "template_id": g.template_id,
            "search_query": text if g.id == QUERY_STRING_GROUP_ID else query,
            "launch_args": f"--image {_IMAGES[g.endpoint_id]} --disk {g.disk_space:g}",
            "gpu_ram": g.gpu_ram,
            "created_at": created,
            "user_id": USER_ID,
            "api_key": _api_key_for(self.seed, "workergroup", g.id),
        }

    # ----- supply and contracts (sim/supply.py) ---------------------------------------------

    def offers(self, body: Any) -> tuple[int, Any]:
        """POST /api/v0/bundles/: the marketplace searched with `body`, as it stands now."""
        return self._supply.search(body, float(self._clock()))

    def pending_price_increases(self) -> dict[str, Any]:
        """GET /api/v0/instances/pending-price-increases/: hosts' increases on some workers."""
        self._sync()
        return self._supply.pending(
            Contract(
                w.id,
                w.group.id,
                w.group.num_gpus,
                w.dph_total,
                _storage_cost(w.group),
                w.group.disk_gb,
                w.started_at,
                w.state in ("stopping", "destroying"),
            )
            for w in self._workers
        )

    def instances(self) -> list[dict[str, Any]]:
        """One instance record per current worker, as GET /api/v1/instances/ lists them and
        GET /api/v0/instances/{id}/ shows one: every field of show_instances.yaml and
        show_instance.yaml, in the units of show_instances.yaml (gpu_util in percent, MiB of
        GPU memory, memory in GB) and the secrets a real record carries (never to be
        exported)."""
        self._sync()
        now = float(self._clock())
        return [self._instance(w, now) for w in self._workers]

    def _instance(self, w: _Worker, now: float) -> dict[str, Any]:
        g = w.group
        ram_gb = 32.0 * g.num_gpus
        status = _ACTUAL_STATUS[w.state]
        running = status == "running"
        hardware = records.machine(w.machine_id, w.gpu_name, g.num_gpus)
        price = records.pricing(w.dph_total, _storage_cost(g), g.disk_space, g.gpu_ram * 1024)
        return {
            "id": w.id,
            "actual_status": status,
            **_states(w.state),
            "label": f"serverless-{g.endpoint_id}",
            **self._launch(w),
            "machine_id": w.machine_id,
            "bundle_id": w.machine_id * 10 + 1,
            "geolocation": w.geolocation,
            "country_code": w.geolocation.rsplit(" ", 1)[-1],
            **hardware,
            **price,
            "num_gpus": g.num_gpus,
            "gpu_name": w.gpu_name,
            "gpu_util": round(w.gpu_util, 1),
            "gpu_temp": round(w.gpu_temp, 1),
            "gpu_totalram": g.gpu_ram * 1024,
            "gpu_ram": g.gpu_ram * 1024,
            "vmem_usage": round(w.vmem_gb, 6),
            "cpu_util": round(min(1.0, 0.05 + w.gpu_util / 250), 4),
            "mem_usage": round(ram_gb * (0.15 + w.gpu_util / 400), 6) if w.vmem_gb else 0.01,
            "mem_limit": ram_gb,
            **_disk(w, g),
            "reliability2": w.reliability,
            "dlperf": w.dlperf,
            "dlperf_per_dphtotal": w.dlperf / price["dph_total"],
            "flops_per_dphtotal": hardware["total_flops"] / price["dph_total"],
            "score": w.dlperf / price["dph_total"] * w.reliability,
            "start_date": w.started_at,
            "end_date": (math.floor(w.started_at / records.DAY) + 120) * records.DAY,
            "duration": round(now - w.started_at, 3),
            "uptime_mins": round((now - w.started_at) / 60, 2) if running else None,
            "client_run_time": 1.1,
            "host_run_time": 2592000.0,
            "time_remaining": "",
            "time_remaining_isbid": "",
            "ports": records.ports(running, hardware["direct_port_start"]),
            "volume_info": [],
            "logo": "/static/logos/vastai_small2.png",
            "webpage": None,
            **self._access(w),
        }

    def _launch(self, w: _Worker) -> dict[str, Any]:
        """What the instance runs: its template, image and start-up (show_instance.yaml)."""
        g = w.group
        image = _IMAGES[g.endpoint_id]
        running = _ACTUAL_STATUS[w.state] == "running"
        return {
            "template_id": g.template_id,
            "template_hash_id": _template_hash(g),
            "template_name": f"serverless {self._endpoint(g.endpoint_id).name}",
            "image_uuid": image,
            "image_args": [],
            "image_runtype": "ssh_direc ssh_proxy",
            "onstart": "entrypoint.sh",
            "status_msg": f"success, running {image}" if running else None,
        }

    def _access(self, w: _Worker) -> dict[str, Any]:
        """How a real record reaches the instance: secrets and addresses the exporter must
        never ask for (its env holds a token too: show_instances.yaml types extra_env as
        [name, value] pairs, which vast-cli's show_instances turns into a dict)."""
        m = w.machine_id
        return {
            "extra_env": [
                ["PYWORKER_PORT", "3000"],
                ["HF_TOKEN", "hf_sim" + hashlib.sha256(f"hf:{w.id}".encode()).hexdigest()[:30]],
            ],
            "jupyter_token": hashlib.sha256(f"jupyter:{w.id}".encode()).hexdigest(),
            "ssh_host": f"ssh{m % 9}.vast.ai",
            "ssh_idx": str(m % 9),
            "ssh_port": 10000 + w.id % 50000,
            "machine_dir_ssh_port": 20000 + m % 10000,
            "public_ipaddr": f"203.0.113.{m % 250 + 1}",
            "local_ipaddrs": f"10.{m % 200}.{m // 200 % 250}.{w.id % 250 + 1} 172.17.0.2",
        }

    # ----- time -----------------------------------------------------------------------------

    def _sync(self) -> None:
        """Advance in whole one-second steps up to the clock, so results ignore poll rate."""
        now = float(self._clock())
        if now - self._next_step > _MAX_CATCH_UP:
            self._next_step += math.floor(now - self._next_step) - _MAX_CATCH_UP
        while self._next_step <= now:
            self._step(self._next_step)
            self._next_step += 1.0

    def _step(self, t: float) -> None:
        self._advance_lifecycle(t)
        self._direct(t)
        self._replenish(t)
        for spec in _ENDPOINTS:
            self._apply_load(spec, t)
        for w in self._workers:
            self._update_telemetry(w)
        self._billing.step(t, (self._bill(w) for w in self._workers))

    def _bill(self, w: _Worker) -> WorkerBill:
        status = w.group.ready_label if w.state == "ready" else w.state
        state = billing_state(status, _ACTUAL_STATUS[w.state])
        return WorkerBill(
            w.id,
            w.group.endpoint_id,
            w.group.id,
            state,
            w.dph_total,
            _storage_cost(w.group),
        )

    # ----- lifecycle ------------------------------------------------------------------------

    def _populate(self, t: float) -> None:
        """Start mid-day: mostly serving workers, a couple still loading, the cold ones stopped."""
        for g in _GROUPS:
            if g.fresh:
                continue
            for i in range(g.size):
                low = g.id == FLAKY_GROUP_ID and i == 0
                w = self._new_worker(g, t - self._rng.uniform(900, 30000), low_reliability=low)
                if i == g.size - 1 and g.id in (1001, 1003):
                    self._enter(w, "model_loading" if g.id == 1001 else "loading")
                    w.started_at = round(t - self._rng.uniform(20, 60), 3)
                    w.version = deployments.worker_version(g.id, g.version, w.started_at, t)
                    w.disk = g.disk_gb * 0.4
                    if g.id == 1001:  # a cold start some seconds into the demo: late
                        # enough for a Prometheus started with it to see the counters rise
                        w.state_left = float(round(self._rng.uniform(6, 8)))
                else:
                    self._make_loaded(w, w.started_at + self._rng.uniform(60, 400))
                self._workers.append(w)
            for _ in range(g.cold):
                w = self._new_worker(g, t - self._rng.uniform(900, 30000))
                self._make_loaded(w, w.started_at + self._rng.uniform(60, 400))
                self._enter(w, "stopped")
                self._workers.append(w)

    def _new_worker(self, g: _GroupSpec, t: float, low_reliability: bool = False) -> _Worker:
        rng = self._rng
        gpu = rng.choice(g.gpus)
        (perf_lo, perf_hi), (dph_lo, dph_hi) = _GPU_MODELS[gpu]
        scale = g.num_gpus * (0.92 if g.num_gpus > 1 else 1.0)
        low = low_reliability or rng.random() < 0.06
        self._next_id += rng.randint(1, 4000)
        return _Worker(
            id=self._next_id,
            group=g,
            gpu_name=gpu,
            dlperf=rng.uniform(perf_lo, perf_hi) * scale,
            reliability=round(rng.uniform(0.72, 0.88) if low else rng.uniform(0.9, 0.999), 4),
            dph_total=round(rng.uniform(dph_lo, dph_hi) * g.num_gpus + rng.uniform(0, 0.05), 4),
            machine_id=rng.randint(10_000, 49_999),
            geolocation=rng.choice(_GEOS),
            started_at=round(t + rng.random(), 3),
            state="creating",
            state_left=self._duration("creating", g),
            upper=rng.random() < 0.3,
            quirk=rng.choice(_QUIRKS),
            omit_loaded_at=rng.random() < 0.5,
            version=deployments.worker_version(g.id, g.version, t, self._t0),
            disk=rng.uniform(0.1, 0.5),
        )

    def _make_loaded(self, w: _Worker, loaded_at: float) -> None:
        """Put a worker straight into service, as if it had loaded and been benchmarked."""
        self._enter(w, "ready")
        spec = self._endpoint(w.group.endpoint_id)
        w.measured_perf = w.dlperf * spec.perf_factor * self._rng.uniform(0.85, 1.1)
        w.loaded_at = round(loaded_at, 3)
        w.disk = w.group.disk_gb * self._rng.uniform(1.0, 1.02)
        w.loop_lag = 0.005

    def _duration(self, state: str, g: _GroupSpec) -> float:
        if state in _STEADY:
            return math.inf
        lo, hi = g.load_secs if state == "model_loading" else _DURATIONS[state]
        return float(round(self._rng.uniform(lo, hi)))

    def _enter(self, w: _Worker, state: str) -> None:
        w.state = state
        w.state_left = self._duration(state, w.group)
        if state != "ready":
            w.loop_lag = None

    def _advance_lifecycle(self, t: float) -> None:
        for w in list(self._workers):
            w.state_left -= 1.0
            if w.state_left > 0:
                continue
            if w.state == "destroying":
                self._workers.remove(w)
            else:
                self._transition(w, t)

    def _transition(self, w: _Worker, t: float) -> None:
        loaded_before = w.measured_perf is not None
        nxt = {
            "creating": "starting",
            "starting": "model_loading" if loaded_before else "loading",
            "loading": "model_loading",
            "model_loading": "ready",
            "rebooting": "starting",
            "error": w.after_error,
            "stopping": "destroying",
        }[w.state]
        if w.state == "error":
            w.warnings = []
        if nxt == "ready":
            self._finish_loading(w, t)
        else:
            self._enter(w, nxt)

    def _finish_loading(self, w: _Worker, t: float) -> None:
        self._enter(w, "ready")
        w.loaded_at = round(t + self._rng.random(), 3)
        w.loop_lag = 0.005
        if w.measured_perf is None:
            spec = self._endpoint(w.group.endpoint_id)
            w.measured_perf = w.dlperf * spec.perf_factor * self._rng.uniform(0.85, 1.1)

    def _direct(self, t: float) -> None:
        """Fire the next scripted disturbance every few seconds, cycling through kinds."""
        self._event_in -= 1.0
        if self._event_in > 0:
            return
        self._event_in = self._rng.uniform(8, 15)
        kind = _EVENTS[self._event_n % len(_EVENTS)]
        self._event_n += 1
        if kind == "cold_swap" and self._cold_swap():
            return
        victim = self._pick_ready()
        if victim is None:
            return
        if kind == "error":
            self._enter(victim, "error")
            victim.after_error = self._rng.choice(("rebooting", "stopping"))
            victim.warnings = [self._rng.choice(_ERRORS)]
        elif kind == "reboot":
            self._enter(victim, "rebooting")
        else:
            self._enter(victim, "stopping")

    def _pick_ready(self, group_id: int | None = None) -> _Worker | None:
        """A serving worker whose group keeps at least one other serving worker."""
        ready: dict[int, list[_Worker]] = {}
        for w in self._workers:
            if w.state == "ready" and group_id in (None, w.group.id):
                ready.setdefault(w.group.id, []).append(w)
        pool = [w for members in ready.values() if len(members) >= 2 for w in members]
        return self._rng.choice(pool) if pool else None

    def _cold_swap(self) -> bool:
        """Wake a cold (stopped) worker and put a serving one of its group to sleep."""
        for cold in self._workers:
            if cold.state != "stopped":
                continue
            active = self._pick_ready(cold.group.id)
            if active is None:
                continue
            self._enter(active, "stopped")
            self._enter(cold, "starting")
            return True
        return False

    def _replenish(self, t: float) -> None:
        """Like the autoscaler, replace workers that are leaving with brand-new instances."""
        for g in _GROUPS:
            if g.fresh and t - self._t0 < FRESH_SECONDS:
                continue
            staying = sum(
                1 for w in self._workers if w.group.id == g.id and w.state not in _LEAVING
            )
            for _ in range(g.size - staying):
                self._workers.append(self._new_worker(g, t))

    # ----- load and telemetry ---------------------------------------------------------------

    def _endpoint(self, endpoint_id: int) -> _EndpointSpec:
        return next(e for e in _ENDPOINTS if e.id == endpoint_id)

    def _endpoint_load(self, spec: _EndpointSpec, t: float) -> float:
        """Daily-like curve (sinusoid plus second harmonic) with smoothed noise."""
        x = 2 * math.pi * (t - self._t0) / DAY_SECONDS + spec.phase
        noise = 0.85 * self._noise[spec.id] + self._rng.gauss(0, 0.03)
        self._noise[spec.id] = noise
        shape = 0.55 + 0.3 * math.sin(x) + 0.12 * math.sin(2 * x + 0.7) + noise
        return spec.peak_load * max(0.05, shape)

    def _apply_load(self, spec: _EndpointSpec, t: float) -> None:
        """Split the endpoint's load across its serving workers in proportion to their perf."""
        load = self._endpoint_load(spec, t)
        members = [w for w in self._workers if w.group.endpoint_id == spec.id]
        serving = [w for w in members if w.state == "ready"]
        spare = next((w for w in serving if w.group.id == SPARE_GROUP_ID), None)
        serving = [w for w in serving if w is not spare]
        total = sum(w.perf for w in serving) or 1.0
        for w in members:
            if w.state != "ready" or w is spare:
                w.cur_load = w.cur_perf = w.new_load = 0.0
                w.reqs = 0
                continue
            w.cur_load = load * w.perf / total * self._rng.uniform(0.9, 1.1)
            w.cur_perf = min(w.cur_load, w.perf) * self._rng.uniform(0.93, 1.0)
            w.new_load = w.cur_load * self._rng.uniform(0.1, 0.4)
            w.reqs = max(0, round(w.cur_load / spec.req_size + self._rng.gauss(0, 0.7)))

    def _update_telemetry(self, w: _Worker) -> None:
        w.rolling += 0.1 * (w.cur_load - w.rolling)
        w.disk = min(w.group.disk_gb * 1.02, w.disk + self._disk_growth(w))
        self._update_gpu(w)
        if w.state != "ready":
            return
        if self._rng.random() < 0.015:
            w.loop_lag = self._rng.uniform(0.3, 1.2)
            w.warnings = [f"event loop lag {w.loop_lag:.2f}s"]
        else:
            w.loop_lag = abs(self._rng.gauss(0.006, 0.004))
            w.warnings = []

    def _update_gpu(self, w: _Worker) -> None:
        """GPU utilization follows the worker's load; temperature follows utilization."""
        total_gb = w.group.gpu_ram * 1.024
        if w.state == "ready":
            busy = w.cur_load / w.perf if w.perf else 0.0
            w.gpu_util = min(
                100.0, 100 * busy * self._rng.uniform(0.9, 1.05) + self._rng.uniform(0.2, 2)
            )
            w.vmem_gb = total_gb * self._rng.uniform(0.82, 0.9)
        elif w.state in ("loading", "model_loading"):
            w.gpu_util = self._rng.uniform(5, 40)
            w.vmem_gb = min(total_gb * 0.85, w.vmem_gb + total_gb * 0.08)
        else:
            w.gpu_util, w.vmem_gb = 0.0, 0.0
        hot = 1.15 if w.machine_id % 11 == 0 else 1.0  # a few machines run hot
        target = (33 + 0.5 * w.gpu_util) * hot
        w.gpu_temp += 0.2 * (target - w.gpu_temp) + self._rng.gauss(0, 0.3)

    def _disk_growth(self, w: _Worker) -> float:
        """Disk fills while the image and model download, then creeps up with logs."""
        full = w.group.disk_gb
        return {
            "creating": 0.2,
            "starting": 0.02 * full,
            "loading": 0.05 * full,
            "model_loading": 0.04 * full,
            "ready": 0.0005,
        }.get(w.state, 0.0)

    def _seed_rolling(self) -> None:
        for w in self._workers:
            w.rolling = w.cur_load

    # ----- payloads -------------------------------------------------------------------------

    def _payload(self, w: _Worker, group_level: bool) -> dict[str, Any]:
        """One worker object, with the real API's quirks (case, strings, nulls, omissions)."""
        status = w.group.ready_label if w.state == "ready" else w.state
        d: dict[str, Any] = {
            "cur_load": round(w.cur_load, 3),
            "cur_load_rolling_avg": round(w.rolling, 3),
            "cur_perf": round(w.cur_perf, 3) if w.state == "ready" else None,
            "disk_usage": round(w.disk, 2),
            "dlperf": w.dlperf,
            "id": w.id,
            "loaded_at": w.loaded_at,
            "measured_perf": w.reported_measured_perf,
            "perf": w.perf,
            "reliability": w.reliability,
            "reqs_working": w.reqs,
            "status": status.upper() if w.upper else status.lower(),
            "new_load": round(w.new_load, 3),
            "started_at": w.started_at,
            "deployment_version_id": w.version,
            "loop_lag_max": None if w.loop_lag is None else round(w.loop_lag, 4),
            "warnings": list(w.warnings),
            # Printed by vast-cli 1.9.1's `get endpt-workers` (cli/commands/endpoints.py).
            "gpu_name": w.gpu_name,
        }
        if not w.loaded_at and w.omit_loaded_at:
            del d["loaded_at"]
        if group_level and w.measured_perf is None:
            del d["measured_perf"], d["perf"]
        if w.group.id == OBJECT_SHAPE_GROUP_ID:
            # As get_autogroup_workers.yaml documents it: an ISO-8601 created_at and a url
            # (an address from the documentation range; the exporter must not export it).
            created = datetime.fromtimestamp(w.started_at - 2.0, UTC)
            d["created_at"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
            d["url"] = f"http://198.51.100.{w.id % 250 + 1}:{20000 + w.id % 10000}"
        return self._apply_quirk(w, d)

    @staticmethod
    def _apply_quirk(w: _Worker, d: dict[str, Any]) -> dict[str, Any]:
        if w.quirk == "str_reliability":
            d["reliability"] = str(d["reliability"])
        elif w.quirk == "str_cur_load":
            d["cur_load"] = str(d["cur_load"])
        elif w.quirk == "null_cur_perf":
            d["cur_perf"] = None
        return d


def _template_hash(g: _GroupSpec) -> str:
    return hashlib.md5(f"template:{g.template_id}".encode()).hexdigest()


def _states(state: str) -> dict[str, str]:
    """intended_status, cur_state, next_state (show_instance.yaml): stopped once leaving."""
    wanted = "stopped" if state in _LEAVING else "running"
    return {"intended_status": wanted, "cur_state": wanted, "next_state": wanted}


def _disk(w: _Worker, g: _GroupSpec) -> dict[str, float]:
    """Disk as vast-cli's instance table shows it (_fmt_disk): disk_usage GB used of
    disk_space GB, disk_util the used fraction. The worker reports GiB (disk_usage x 2^30)."""
    used = round(w.disk * 2**30 / 1e9, 3)
    return {
        "disk_space": g.disk_space,
        "disk_usage": used,
        "disk_util": round(used / g.disk_space, 4),
    }


def _storage_cost(g: _GroupSpec) -> float:
    """$/h for the disk of one of the group's instances (storage_total_cost)."""
    return round(g.disk_gb * 0.00011 + 0.001, 6)


def group_searches() -> dict[int, tuple[str, dict[str, Any]]]:
    """Each worker group's offer search as a query string and as the object its listing
    carries (the group QUERY_STRING_GROUP_ID lists the string)."""
    return {g.id: records.search(g.gpus, g.num_gpus, g.gpu_ram, g.disk_space) for g in _GROUPS}


def demo_targets() -> list[DemoTarget]:
    """What ``--demo`` polls: every simulated endpoint and every worker group."""
    endpoints = [DemoTarget("endpoint", e.id, e.name, None) for e in _ENDPOINTS]
    groups = [DemoTarget("worker_group", g.id, "", g.endpoint_id) for g in _GROUPS]
    return endpoints + groups
