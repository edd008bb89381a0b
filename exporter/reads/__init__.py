"""The periodic account reads, each declared once in its own module (see `base.AccountRead`).

`ACCOUNT_READS` is the one table of them, in the order their metric families are written. The
config sections, the JSON Schema, the landing page, `--demo`, the client's pacing and the
Exporter's schedule are built from it; tests loop over it (tests/test_reads.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..scheduler import TargetState
from .base import AccountRead, PeriodicReader, ReadContext
from .billing import BillingRead
from .contracts import ContractsRead
from .deployments import DeploymentsRead
from .instances import InstancesRead
from .listing import ListingRead
from .supply import SupplyRead

ACCOUNT_READS: tuple[type[AccountRead], ...] = (
    ListingRead,
    InstancesRead,
    BillingRead,
    DeploymentsRead,
    # Supply and contracts (issue 23)
    SupplyRead,
    ContractsRead,
)

# The kinds of the reads that readiness does not wait for (AccountRead.awaited).
_NOT_AWAITED = frozenset(read.kind for read in ACCOUNT_READS if not read.awaited)


def awaited(states: Iterable[TargetState]) -> tuple[TargetState, ...]:
    """The targets the first round waits for (/-/ready, its log line, the first render): all
    but the reads whose first read takes minutes by design (AccountRead.awaited False)."""
    return tuple(state for state in states if state.target.kind not in _NOT_AWAITED)


__all__ = ["ACCOUNT_READS", "AccountRead", "PeriodicReader", "ReadContext", "awaited"]
