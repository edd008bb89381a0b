"""Deployments: which version each endpoint runs, whether it is the last healthy one, how far a
rollout has got, and when the deployment expires.

Two console calls, each paced at one call per 3 s (show_deployments.yaml, x-rate-limit 3.0; a
429 holds the path as for every read): `GET /api/v0/deployments/` once per
`deployments.interval`, and `GET /api/v0/deployment/{id}/versions/` (vastai 1.9.1
`show_deployment_versions`; no published schema) for a deployment only when its
`current_version_id` changed since its versions were read, or every VERSIONS_EVERY rounds. An
account without deployments costs one call a round. Only ids, names, tag, image, the version
fields and the numbers of DEPLOYMENT_FIELDS are kept: `env` (environment variables, secrets
among them), `s3_key` and `search_params` are dropped unread.

The rollout counts come from the worker lists already polled (`ReadContext.worker_versions`):
the workers of the deployment's endpoint whose `deployment_version_id` is its current version,
and those on any other (a worker without one counts as neither).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client.core import GaugeMetricFamily, Metric

from ..fields import DEPLOYMENT_FIELDS
from ..metrics import CACHED, View
from ..pacing import ApiPath
from ..parsing import PollError, clean_text, error_message, parse_results, parse_worker_id
from ..settings import BOOL, DURATION, Minimum, setting
from ..targets import Kind
from .base import AccountRead, ReadContext

DEPLOYMENTS = ApiPath("/api/v0/deployments/", 3.0, "show_deployments.yaml (x-rate-limit 3.0)")
VERSIONS = ApiPath(
    "/api/v0/deployment/{id}/versions/",
    3.0,
    "vastai 1.9.1 vastai/api/deployments.py show_deployment_versions (no published limit: "
    "show_deployment.yaml's 3.0 for the deployment's own path)",
)
VERSIONS_EVERY = 10  # rounds between two reads of an unchanged deployment's versions
READ = "cached from the last deployments read"
LABELS = ("deployment_id", "deployment_name", "tag", "endpoint_id", "endpoint_name")
CURRENT, OTHER = "current", "other"


@dataclass(frozen=True, slots=True)
class Deployment:
    """What is kept of one record of the list."""

    id: int
    name: str
    tag: str
    image: str
    endpoint_id: int | None
    values: Mapping[str, float]  # DEPLOYMENT_FIELDS metric suffix -> value
    current: str | None  # current_version_id as a label ("8"), as workers report it
    last_healthy: str | None


@dataclass(frozen=True, slots=True)
class Version:
    id: str
    label: str  # version_label, "" when absent


@dataclass(frozen=True, slots=True)
class KnownVersions:
    """A deployment's versions (None: the call answered 404), as of which current version and
    which round."""

    versions: tuple[Version, ...] | None
    current: str | None
    round: int


def _text(value: Any) -> str:
    return clean_text(value) if isinstance(value, str) else ""


def parse_deployment(item: dict[str, Any]) -> Deployment | None:
    """One record; None without a usable id. Any other field missing or mistyped is absent."""
    ident = parse_worker_id(item.get("id"))
    if ident is None:
        return None
    endpoint = parse_worker_id(item.get("endpoint_id"))
    values = {}
    for field in DEPLOYMENT_FIELDS:
        number = field.convert(item.get(field.api))
        if number is not None:
            values[field.metric] = number
    return Deployment(
        int(ident),
        _text(item.get("name")),
        _text(item.get("tag")),
        _text(item.get("image")),
        None if endpoint is None else int(endpoint),
        values,
        parse_worker_id(item.get("current_version_id")),
        parse_worker_id(item.get("last_healthy_version_id")),
    )


def parse_deployments(payload: Any) -> tuple[Deployment, ...]:
    """`{"success": true, "deployments": [...]}`, once per id."""
    found: dict[int, Deployment] = {}
    for item in parse_results(payload, "deployments"):
        deployment = parse_deployment(item)
        if deployment is not None:
            found[deployment.id] = deployment
    return tuple(found.values())


def parse_versions(payload: Any) -> tuple[Version, ...] | None:
    """`{"success": true, "versions": [...]}`; None when the answer lists none (unknown, not
    an error); records without an id are skipped."""
    if isinstance(payload, dict) and (message := error_message(payload)) is not None:
        raise PollError("api_error", message)
    items = payload.get("versions") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return None
    versions = []
    for item in items:
        ident = parse_worker_id(item.get("id")) if isinstance(item, dict) else None
        if ident is not None:
            versions.append(Version(ident, _text(item.get("version_label"))))
    return tuple(versions)


@dataclass(frozen=True)
class DeploymentsSettings:
    """Deployments: the version each runs, the last healthy one, and when it expires."""

    enabled: bool = setting(False, BOOL, "Read the account's deployments and their versions")
    interval: float = setting(
        60.0,
        DURATION,
        "How often the deployment list is read",
        Minimum(30.0, "must be at least 30s (Vast allows one call per 3 s per path)"),
    )


class DeploymentsRead(AccountRead):
    """The account's deployments (deployments.*) and their versions."""

    kind = Kind.DEPLOYMENTS
    section = "deployments"
    settings_type = DeploymentsSettings
    paths = (DEPLOYMENTS, VERSIONS)
    demo: ClassVar[Mapping[str, Any]] = {"enabled": True, "interval": 30.0}

    def __init__(self, context: ReadContext) -> None:
        super().__init__(context)
        self.found: tuple[Deployment, ...] | None = None
        self.versions: dict[int, KnownVersions] = {}  # by deployment id
        self.round = 0

    @classmethod
    def describe(cls, settings: DeploymentsSettings) -> str:
        return (
            f"on, every {settings.interval:g}s; versions when the current version changes, "
            f"else every {VERSIONS_EVERY} reads"
        )

    async def read(self) -> tuple[Deployment, ...]:
        """The list, then the versions of the deployments due. A failed versions call fails
        the read; those read before it are kept and not asked again."""
        listed = await self.context.client.get(DEPLOYMENTS.path, parse_deployments)
        self.round += 1
        wanted = {deployment.id for deployment in listed}
        self.versions = {key: known for key, known in self.versions.items() if key in wanted}
        for deployment in listed:
            if self._due(deployment):
                await self._read_versions(deployment)
        return listed

    def _due(self, deployment: Deployment) -> bool:
        known = self.versions.get(deployment.id)
        return (
            known is None
            or known.current != deployment.current
            or self.round - known.round >= VERSIONS_EVERY
        )

    async def _read_versions(self, deployment: Deployment) -> None:
        path = VERSIONS.format(id=deployment.id)
        try:
            versions = await self.context.client.get(path, parse_versions)
        except PollError as exc:
            if exc.reason != "not_found":
                raise
            versions = None  # gone since the list, or no versions: unknown, not a failure
        self.versions[deployment.id] = KnownVersions(versions, deployment.current, self.round)

    def apply(self, result: tuple[Deployment, ...]) -> None:
        self.found = result

    def clear(self) -> None:
        self.found, self.versions, self.round = None, {}, 0

    def view(self, fresh: bool) -> View | None:
        """The deployments of this replica's endpoints (the shard rule; one without endpoint by
        its own id), and the rollout counts of the workers this replica polls; nothing once the
        last success is older than stale_after, nor for an account without deployments."""
        if not self.found or not fresh:
            return None
        # Endpoints some replica polls (any shard): only theirs have workers to count.
        polled = {t.endpoint_id for t in self.context.targets if t.endpoint_id is not None}
        with_workers = any(d.endpoint_id in polled for d in self.found)
        counts = self.context.worker_versions() if with_workers else {}
        rows = tuple(
            row
            for deployment in self.found
            if (row := self._row(deployment, polled, counts)) is not None
        )
        return DeploymentsView(rows) if rows else None

    def _row(
        self,
        deployment: Deployment,
        polled: set[int],
        counts: Mapping[int, Counter[str | None]],
    ) -> DeploymentRow | None:
        owns = self.context.shard.owns
        endpoint = deployment.endpoint_id
        owned = (
            owns(Kind.ENDPOINT, endpoint)
            if endpoint is not None
            else owns(Kind.DEPLOYMENTS, deployment.id)
        )
        workers = None
        if endpoint in polled and (owned or endpoint in counts):
            workers = rollout(counts.get(endpoint, Counter()), deployment.current)
        if not owned and workers is None:
            return None
        known = self.versions.get(deployment.id)
        name = "" if endpoint is None else self.context.endpoint_names.get(endpoint, "")
        labels = (
            str(deployment.id),
            deployment.name,
            deployment.tag,
            "" if endpoint is None else str(endpoint),
            name,
        )
        versions = None if known is None else known.versions
        return DeploymentRow(labels, deployment, versions, owned, workers)


def rollout(versions: Counter[str | None], current: str | None) -> tuple[int, int]:
    """(workers on the current version, workers on another); a worker without
    deployment_version_id counts as neither."""
    on_current = versions.get(current, 0) if current is not None else 0
    reporting = sum(n for version, n in versions.items() if version is not None)
    return on_current, reporting - on_current


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    """One deployment as this replica exports it."""

    labels: tuple[str, str, str, str, str]  # LABELS
    deployment: Deployment
    versions: tuple[Version, ...] | None  # None: not known
    owned: bool  # this replica exports its deployment series (else only its workers)
    workers: tuple[int, int] | None  # (current, other); None: its endpoint is not polled


@dataclass(frozen=True)
class DeploymentsView(View):
    rows: tuple[DeploymentRow, ...]

    def families(self) -> Iterator[Metric]:
        """Each deployment's version, health, expiry and rollout (absent while the read is off)."""
        owned = [row for row in self.rows if row.owned]

        def gauge(name: str, help_text: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(
                f"vastai_deployment_{name}", f"{help_text}; {READ}.", labels=(*LABELS, *extra)
            )

        info = gauge("info", "Deployment of the account, with its image; value 1", ("image",))
        fields = {f.metric: gauge(f.metric, f.help) for f in DEPLOYMENT_FIELDS}
        healthy = gauge(
            "healthy",
            "1 if the deployment's current version is its last healthy one, 0 if not (absent "
            "when either is null)",
        )
        expiry = gauge(
            "expiry_timestamp_seconds",
            "Unix time the deployment is torn down without a new client heartbeat "
            "(last_client_heartbeat + ttl; absent without either)",
        )
        version = gauge(
            "version_info",
            "The deployment's current version, with its version_label; value 1",
            ("version_id", "version_label"),
        )
        stored = gauge("versions", "Versions the deployment stores (its versions list)")
        for row in owned:
            d = row.deployment
            info.add_metric((*row.labels, d.image), 1)
            for metric, value in d.values.items():
                fields[metric].add_metric(row.labels, value)
            if d.current is not None and d.last_healthy is not None:
                healthy.add_metric(row.labels, 1 if d.current == d.last_healthy else 0)
            beat = d.values.get("last_heartbeat_timestamp_seconds")
            ttl = d.values.get("ttl_seconds")
            if beat is not None and ttl is not None:
                expiry.add_metric(row.labels, beat + ttl)
            if d.current is not None:
                labels = {v.id: v.label for v in row.versions or ()}
                version.add_metric((*row.labels, d.current, labels.get(d.current, "")), 1)
            if row.versions is not None:
                stored.add_metric(row.labels, len(row.versions))
        workers = GaugeMetricFamily(
            "vastai_deployment_workers",
            "Workers of the deployment's endpoint that this exporter polls, on its current "
            "version or on another (their deployment_version_id; a worker without one is not "
            f"counted), each counted once: sum over replicas; {CACHED}.",
            labels=(*LABELS, "version"),
        )
        for row in self.rows:
            if row.workers is not None:
                workers.add_metric((*row.labels, CURRENT), row.workers[0])
                workers.add_metric((*row.labels, OTHER), row.workers[1])
        yield info
        yield from fields.values()
        yield from (healthy, expiry, version, stored, workers)
