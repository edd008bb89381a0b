"""The simulated account's deployments, as Vast lists them (vast-ai/docs show_deployments.yaml;
vastai 1.9.1 `vastai/api/deployments.py`, `vastai/data/deployment.py`).

Two deployments on demo endpoints, so that the demo shows what an operator watches:

- `llama-70b` (endpoint 101) is mid-rollout: version 8 was uploaded ROLLOUT_AGE before the
  simulation started. Workers of group 1001 created since then run it; the older ones, and
  every worker of group 1002, still run version 7, the last healthy one. The rollout never
  completes (group 1002 keeps its workers), so its current version stays unproven: unhealthy,
  with workers on another version, as a stalled rollout looks.
- `sdxl-turbo` (endpoint 102) has a ttl: its client heartbeats every min(ttl/2, 60) s, as the
  SDK does (`vastai/serverless/remote/deploy.py` `_heartbeat_thread`), then goes away for
  longer than the expiry alert's margin and comes back two minutes before the teardown, every
  HEARTBEAT_CYCLE. It starts 240 s into a silence: its expiry is 11 minutes away, less than 10
  a minute later.

Secrets: `env` holds an HF_TOKEN-like value, `s3_key` and `search_params` internals: the
exporter must never keep, log or export any of them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ROLLOUT_GROUP_ID = 1001  # its workers created since the rollout started run the new version
ROLLOUT_AGE = 60.0  # seconds before the simulation started that the rollout began
HEARTBEAT_CYCLE = 1200.0  # the ttl deployment's client: heartbeats, then silence, again
LAST_BEAT = 420.0  # its beats at offsets 0, 60, ... 420 of each cycle: then 780 s of silence
CYCLE_OFFSET = 660.0  # the simulation starts this far into a cycle: 240 s after the last beat
DAY = 86400.0


@dataclass(frozen=True)
class VersionSpec:
    id: int
    label: str  # version_label (the SDK's Deployment(version_label=...))
    file_size: int  # bytes: the SDK's tarball size (os.path.getsize)
    age: float  # seconds before the simulation started that it was uploaded


@dataclass(frozen=True)
class DeploymentSpec:
    id: int
    name: str
    endpoint_id: int
    image: str
    storage: float  # GB (guides/serverless/deployments/configuration.mdx)
    ttl: float | None  # seconds; None: no expiry
    versions: tuple[VersionSpec, ...]  # newest first: the first is current
    created_at: float
    search_params: str  # the SDK's unparse_query() of the image's requirements
    port: int


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        201, "llama-70b", 101, "vastai/vllm:@vastai-automatic-tag", 150.0, None,
        (VersionSpec(8, "v1.3.0", 48_213, ROLLOUT_AGE), VersionSpec(7, "v1.2.1", 47_902, 6 * DAY),
         VersionSpec(5, "v1.2.0", 47_120, 20 * DAY)),
        1717430467.25, "gpu_name in [H100_SXM, A100_SXM4] num_gpus=2", 8000,
    ),
    DeploymentSpec(
        202, "sdxl-turbo", 102, "vastai/pytorch:@vastai-automatic-tag", 16.0, 900.0,
        (VersionSpec(3, "2026.11.2", 12_880, 2 * DAY),
         VersionSpec(2, "2026.10.1", 12_544, 30 * DAY)),
        1719852031.5, "gpu_ram>=24 num_gpus=1", 7860,
    ),
)  # fmt: skip


def find(deployment_id: int) -> DeploymentSpec | None:
    return next((spec for spec in DEPLOYMENTS if spec.id == deployment_id), None)


def worker_version(
    group_id: int, group_version: int | None, created: float, t0: float
) -> int | None:
    """The deployment_version_id a worker created at `created` reports: the rollout's new
    version in the rolling group once the rollout began, else its group's."""
    if group_id == ROLLOUT_GROUP_ID and created >= t0 - ROLLOUT_AGE:
        return _rolling().versions[0].id
    return group_version


def _rolling() -> DeploymentSpec:
    return next(spec for spec in DEPLOYMENTS if spec.endpoint_id == 101)


def last_heartbeat(spec: DeploymentSpec, t0: float, now: float) -> float | None:
    """Unix time of the client's last heartbeat; None without a ttl (the SDK sends none)."""
    if spec.ttl is None:
        return None
    every = min(spec.ttl / 2, 60.0)
    start = t0 - CYCLE_OFFSET
    cycles = math.floor((now - start) / HEARTBEAT_CYCLE)
    offset = now - start - cycles * HEARTBEAT_CYCLE
    beat = min(math.floor(offset / every) * every, LAST_BEAT)
    return round(start + cycles * HEARTBEAT_CYCLE + beat, 3)


def file_hash(deployment_id: int, version_id: int) -> str:
    return hashlib.sha256(f"deployment:{deployment_id}:{version_id}".encode()).hexdigest()


def record(spec: DeploymentSpec, seed: int, user_id: int, t0: float, now: float,
           running: Iterable[int]) -> dict[str, Any]:  # fmt: skip
    """One deployment as GET /api/v0/deployments/ lists it, secrets included. Its last healthy
    version is the current one once every worker of its endpoint runs it, else the previous."""
    current = spec.versions[0]
    previous = spec.versions[1] if len(spec.versions) > 1 else current
    healthy = current if set(running) <= {current.id} else previous
    digest = file_hash(spec.id, current.id)
    token = hashlib.sha256(f"{seed}:deployment-env:{spec.id}".encode()).hexdigest()[:34]
    return {
        "id": spec.id,
        "name": spec.name,
        "tag": "default",
        "image": spec.image,
        "endpoint_id": spec.endpoint_id,
        "env": f"-p {spec.port}:{spec.port}/tcp -e REPORT_ADDR=https://run.vast.ai "
        f"-e HF_TOKEN=hf_{token}",
        "file_hash": digest,
        "s3_key": f"deployments/{user_id}/{spec.id}/{digest}.tar.gz",
        "search_params": spec.search_params,
        "current_version_id": current.id,
        "last_healthy_version_id": healthy.id,
        "storage": spec.storage,
        "ttl": spec.ttl,
        "last_client_heartbeat": last_heartbeat(spec, t0, now),
        "created_at": spec.created_at,
        "updated_at": round(t0 - current.age, 3),
    }


def versions(spec: DeploymentSpec, t0: float, now: float, running: Iterable[int]) -> list[dict]:
    """The deployment's versions, newest first, as GET /api/v0/deployment/{id}/versions/ lists
    them: a version some worker runs was last used now, the others when the next was uploaded."""
    in_use = set(running) | {spec.versions[0].id}
    out = []
    for index, version in enumerate(spec.versions):
        uploaded = round(t0 - version.age, 3)
        newer = spec.versions[index - 1] if index else None
        last_used = now if version.id in in_use or newer is None else t0 - newer.age
        out.append(
            {
                "id": version.id,
                "file_hash": file_hash(spec.id, version.id),
                "version_label": version.label,
                "file_size": version.file_size,
                "created_at": uploaded,
                "last_used_at": round(last_used, 3),
            }
        )
    return out
