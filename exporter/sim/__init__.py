"""A believable simulated Vast.ai serverless API, for ``--demo`` and ``vastai-exporter simulate``.

`model`: the seeded, clock-driven simulation (endpoints, worker groups, workers going through
their lifecycles, load, GPU telemetry, money in `billing`). `api`: the HTTP answers, shaped as
Vast documents them (`instance_list`: the v1 instance list's paging; `paths`: the calls;
`ratelimit`: each path's limit), from any `Account`: the simulation, or the tests' scripted
one; `reply`: the scripted answers (every error form) that the fault-injection hook sends.
`command`: the `simulate` subcommand. Only ``--demo``, ``simulate`` and the tests import this
package.
"""

from .api import Account, create_app, start_simulator
from .command import run_simulator
from .model import (
    FLAKY_GROUP_ID,
    FRESH_ENDPOINT_ID,
    FRESH_SECONDS,
    OBJECT_SHAPE_GROUP_ID,
    SPARE_GROUP_ID,
    DemoTarget,
    Simulation,
    demo_targets,
)
from .reply import Reply

__all__ = [
    "FLAKY_GROUP_ID",
    "FRESH_ENDPOINT_ID",
    "FRESH_SECONDS",
    "OBJECT_SHAPE_GROUP_ID",
    "SPARE_GROUP_ID",
    "Account",
    "DemoTarget",
    "Reply",
    "Simulation",
    "create_app",
    "demo_targets",
    "run_simulator",
    "start_simulator",
]
