"""What Vast bills a serverless worker for, by its state.

Vast bills GPU compute only while a worker is Ready or Loading; Creating and Inactive (cold)
workers pay for storage and bandwidth only (vast-ai/docs guides/serverless/pricing.mdx), and
guides/serverless/worker-states.mdx maps each worker status to one of those billing states.
"""

from __future__ import annotations

from .parsing import Instance

COMPUTE = "compute"  # GPU compute, storage and bandwidth: dph_total
STORAGE = "storage"  # storage and bandwidth only: storage_total_cost
UNBILLED = "unbilled"  # "Not billed" in worker-states.mdx

# Worker status (lower-cased) -> billing state, from worker-states.mdx's CLI/log table.
BILLING_BY_STATUS = {
    "ready": COMPUTE,
    "idle": COMPUTE,  # Ready (IDLE)
    "running": COMPUTE,  # what PyWorkers report when serving (the seed's example)
    "loading": COMPUTE,
    "model_loading": COMPUTE,
    "starting": COMPUTE,  # "Billing State: Ready"
    "update_ready": COMPUTE,
    "update_rebooting": COMPUTE,
    "update_starting": COMPUTE,
    "updating": COMPUTE,
    "creating": STORAGE,
    "created": STORAGE,  # "Billing State: Creating"
    "stopped": STORAGE,  # Inactive
    "inactive": STORAGE,
    "stopping": STORAGE,  # "Billing State: Inactive"
    "destroying": UNBILLED,
    "error": UNBILLED,
    "pending": UNBILLED,
}
# For "rebooting" ("billed by previous state") and statuses Vast does not document (exited,
# unavail, ...): the instance's actual_status decides. A running or loading instance holds its
# GPU; any other (created, exited, stopped, offline, ...) holds only its disk.
BILLING_BY_ACTUAL_STATUS = {"running": COMPUTE, "loading": COMPUTE}


def billing_state(status: str | None, actual_status: str) -> str:
    """The billing state of a worker's status, its instance's actual_status where that decides."""
    known = BILLING_BY_STATUS.get(status or "")
    if known is not None:
        return known
    return BILLING_BY_ACTUAL_STATUS.get(actual_status, STORAGE)


def billed_dollars_per_hour(status: str | None, instance: Instance) -> float | None:
    """What Vast bills for the worker now, in $/h; None when the price it needs is unknown."""
    state = billing_state(status, instance.actual_status)
    if state == UNBILLED:
        return 0.0
    field = "price_dollars_per_hour" if state == COMPUTE else "storage_price_dollars_per_hour"
    return instance.values.get(field)
