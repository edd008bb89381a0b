"""A believable simulated Vast.ai serverless API, for ``--demo`` and ``vastai-exporter simulate``.

`model`: the seeded, clock-driven simulation (endpoints, worker groups, workers going through
their lifecycles, load, GPU telemetry, money in `billing`). `api`: its HTTP answers, shaped as
Vast documents them (`instance_list` holds the v1 instance list's paging and limits, shared with
the tests' fake). `command`: the `simulate` subcommand. Only ``--demo`` and ``simulate`` import
this package.
"""

from .api import create_app, start_simulator
from .command import run_simulator
from .model import (
    FLAKY_GROUP_ID,
    FRESH_ENDPOINT_ID,
    FRESH_SECONDS,
    OBJECT_SHAPE_GROUP_ID,
    SPARE_GROUP_ID,
    DemoTarget,
    Fault,
    Simulation,
    demo_targets,
)

__all__ = [
    "FLAKY_GROUP_ID",
    "FRESH_ENDPOINT_ID",
    "FRESH_SECONDS",
    "OBJECT_SHAPE_GROUP_ID",
    "SPARE_GROUP_ID",
    "DemoTarget",
    "Fault",
    "Simulation",
    "create_app",
    "demo_targets",
    "run_simulator",
    "start_simulator",
]
