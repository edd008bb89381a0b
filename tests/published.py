"""The records Vast publishes, field by field with their JSON types, for the simulator to follow.

Transcribed from vast-ai/docs `api-reference/openapi/yaml/` (commit c624622) and from what
`vastai` 1.9.1 (PyPI; Vast's CLI and SDK) reads of each record. A type is `integer`, `number`,
`string`, `boolean`, `object`, `array[<item type>]`, `any` (read, with no published type), or
several joined by `|`; a trailing `?` allows null (OpenAPI `nullable: true`).
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, str]

_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "any": lambda v: True,
}


def schema(text: str) -> Schema:
    """`name:type name:type ...` as a dict."""
    return dict(word.split(":", 1) for word in text.split())


def _fits(value: Any, kind: str) -> bool:
    if kind.endswith("?"):
        return value is None or _fits(value, kind[:-1])
    if "|" in kind:
        return any(_fits(value, part) for part in kind.split("|"))
    if kind.startswith("array["):
        item = kind[len("array[") : -1]
        return isinstance(value, list) and all(_fits(entry, item) for entry in value)
    return _CHECKS[kind](value)


def mismatches(record: dict[str, Any], fields: Schema) -> dict[str, str]:
    """Each field of `fields` the record lacks or holds with another type: name -> why."""
    found = {}
    for name, kind in fields.items():
        if name not in record:
            found[name] = "missing"
        elif not _fits(record[name], kind):
            found[name] = f"{record[name]!r} is not {kind}"
    return found


# show_instances.yaml, GET /api/v1/instances/ (200): an item of `instances`
SHOW_INSTANCES = schema("""
    id:integer actual_status:string? cur_state:string next_state:string intended_status:string
    label:string? template_id:integer? template_hash_id:string? template_name:string?
    image_uuid:string image_args:array[string] image_runtype:string extra_env:array[array]
    onstart:string jupyter_token:string status_msg:string? public_ipaddr:string
    local_ipaddrs:string ssh_host:string ssh_idx:string ssh_port:integer
    machine_dir_ssh_port:integer machine_id:integer start_date:number end_date:number
    uptime_mins:number? duration:number cpu_arch:string cpu_cores:integer
    cpu_cores_effective:number cpu_name:string cpu_ram:integer cpu_util:number mem_limit:number?
    mem_usage:number? vmem_usage:number? gpu_name:string gpu_arch:string gpu_totalram:integer
    gpu_ram:integer gpu_util:number? gpu_temp:number? gpu_frac:number gpu_lanes:integer
    gpu_mem_bw:number bw_nvlink:number disk_name:string disk_space:number disk_bw:number
    disk_util:number disk_usage:number direct_port_count:integer direct_port_start:integer
    direct_port_end:integer ports:object? static_ip:boolean geolocation:string
    verification:string rentable:boolean host_id:integer min_bid:number is_bid:boolean
    dph_base:number dph_total:number dlperf:number? dlperf_per_dphtotal:number?
    flops_per_dphtotal:number total_flops:number score:number? reliability2:number
    os_version:string? mobo_name:string pci_gen:number pcie_bw:number num_gpus:integer
    webpage:string? search:object instance:object storage_cost:number storage_total_cost:number
    vram_costperhour:number credit_balance:number? credit_discount:number?
    credit_discount_max:number? client_run_time:number host_run_time:number external:boolean
    time_remaining:string time_remaining_isbid:string country_code:string?
    volume_info:array[object]
""")

# show_instance.yaml, GET /api/v0/instances/{id}/ (200): `instances`, its Instance
SHOW_INSTANCE = schema("""
    id:integer actual_status:string? intended_status:string cur_state:string next_state:string
    label:string? template_id:integer? template_hash_id:string? template_name:string?
    image_uuid:string image_args:array[string] image_runtype:string extra_env:array[string]
    onstart:string? jupyter_token:string status_msg:string? local_ipaddrs:string ssh_host:string
    ssh_idx:string ssh_port:integer machine_dir_ssh_port:integer machine_id:integer
    bundle_id:integer start_date:number end_date:number uptime_mins:number? duration:number
    cpu_arch:string cpu_cores:integer cpu_cores_effective:number cpu_name:string cpu_ram:integer
    cpu_util:number mem_limit:number? mem_usage:number? vmem_usage:number? gpu_name:string
    gpu_arch:string gpu_totalram:integer gpu_ram:integer gpu_util:number? gpu_temp:number?
    gpu_frac:number gpu_lanes:integer gpu_mem_bw:number bw_nvlink:number disk_name:string
    disk_space:number disk_bw:number disk_util:number disk_usage:number
    direct_port_count:integer direct_port_start:integer direct_port_end:integer
    ports:array[integer] static_ip:boolean public_ipaddr:string geolocation:string
    verification:string rentable:boolean host_id:integer hosting_type:integer min_bid:number
    is_bid:boolean dph_base:number dph_total:number dlperf:number dlperf_per_dphtotal:number
    flops_per_dphtotal:number total_flops:number score:number reliability2:number
    os_version:string mobo_name:string pci_gen:number pcie_bw:number num_gpus:integer
    logo:string webpage:string? search:object instance:object storage_cost:number
    storage_total_cost:number vram_costperhour:number credit_balance:number?
    credit_discount:number? credit_discount_max:number client_run_time:number
    host_run_time:number external:boolean time_remaining:string time_remaining_isbid:string
""")

# show_autogroup.yaml, GET /api/v0/workergroups/ (200): an item of `results`
SHOW_AUTOGROUP = schema("""
    id:integer min_load:number target_util:number cold_mult:number test_workers:integer
    template_hash:string template_id:integer search_query:object launch_args:string
    gpu_ram:number endpoint_name:string endpoint_id:integer api_key:string created_at:string
    user_id:integer
""")

# show_endpoints.yaml, GET /api/v0/endptjobs/ (200): an item of `results`
SHOW_ENDPOINTS = schema("""
    id:integer min_load:number target_util:number cold_mult:number cold_workers:integer
    max_workers:integer endpoint_name:string api_key:string user_id:integer created_at:string
    endpoint_state:string
""")

# show_user.yaml, GET /api/v0/users/current/ (200)
SHOW_USER = schema("""
    id:integer key_id:integer email:string balance:number ssh_key:string sid:string
""")
# Where the published documents disagree with each other or with the CLI, the record follows
# the newer list and the CLI: show_instances.yaml types extra_env as [name, value] pairs, and
# vast-cli's show_instance reads them so (`{env_var[0]: env_var[1] ...}`); it types ports as a
# port map, null unless running. Endpoints' created_at is a float in vast-cli's EndpointData
# (vastai/data/endpoint.py) and an ISO string in the OpenAPI; the simulator sends both forms.
# A group's search_query is typed an object, and its example is a query string.
SHOW_INSTANCE |= {"extra_env": "array[array]", "ports": "object?"}
SHOW_ENDPOINTS |= {"created_at": "number|string"}
SHOW_AUTOGROUP |= {"search_query": "object|string"}

# What vast-cli 1.9.1 reads beyond the OpenAPI: the instance table's network columns
# (vastai/cli/display.py instance_fields, commands/instances.py _VERBOSE_INSTANCE_SELECT_COLS),
# the endpoint's deletion schedule (vastai/data/endpoint.py, vastai/api/endpoints.py), the
# worker's GPU (commands/endpoints.py get__endpt_workers), and the user table
# (display.py user_fields: credit printed "{:0.2f}", the rest "{}") with the host flag
# (cli/util.py detect_role).
CLI_INSTANCE = schema("inet_up:number inet_down:number")
CLI_ENDPOINT = schema("auto_delete_in_seconds:number? auto_delete_due_24h:boolean")
CLI_WORKER = schema("id:integer status:string measured_perf:number gpu_name:string")
CLI_USER = schema("""
    balance:number balance_threshold:any balance_threshold_enabled:any billaddress_city:any
    billaddress_country:any billaddress_line1:any billaddress_line2:any billaddress_zip:any
    billed_expected:any billed_verified:any billing_creditonly:any can_pay:any credit:number
    email:string email_verified:any fullname:any got_signup_credit:any has_billing:any
    has_payout:any id:integer last4:any paid_expected:any paid_verified:any
    password_resettable:any paypal_email:any ssh_key:string user:any username:any
    host_agreement_accepted:boolean
""")
