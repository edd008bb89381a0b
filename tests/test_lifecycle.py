"""The lifecycle tracker with exact numbers: cold starts, scaling events, errors, state seconds.

Time is passed in (wall and monotonic seconds), so nothing sleeps. End-to-end checks over HTTP
are in test_lifecycle_http.py.
"""

from __future__ import annotations

from typing import Any

from exporter.config import Target
from exporter.lifecycle import (
    BUCKETS,
    MAX_COLD_START,
    MAX_STATUSES,
    OTHER_STATUS,
    EndpointLifecycle,
    LifecycleTracker,
)
from exporter.parsing import Worker, pack_figures

ENDPOINT = Target("endpoint", 10, "chat", 10, "chat")
GROUP = Target("worker_group", 20, "", 10, "chat")  # a group of endpoint 10
OTHER_GROUP = Target("worker_group", 30, "", 11, "img")  # a group whose endpoint is not polled


def w(worker_id: int, status: str | None = "ready", loaded: float = 0.0, **values: Any) -> Worker:
    fields = {"loaded_timestamp_seconds": loaded}
    if "started" in values:
        fields["started_timestamp_seconds"] = values.pop("started")
    if "created" in values:
        fields["created_timestamp_seconds"] = values.pop("created")
    assert not values
    return Worker(str(worker_id), status, pack_figures(fields))


def tracker(*polled: Target, all_targets: tuple[Target, ...] | None = None) -> LifecycleTracker:
    lifecycle = LifecycleTracker()
    lifecycle.set_targets(polled, all_targets if all_targets is not None else polled)
    return lifecycle


def of(lifecycle: LifecycleTracker, endpoint_id: str = "10") -> EndpointLifecycle:
    [found] = [e for e in lifecycle.view() if e.endpoint_id == endpoint_id]
    return found


def cold_starts(lifecycle: LifecycleTracker, endpoint_id: str = "10") -> list[int]:
    """Observations per bucket (not cumulative), +Inf last."""
    cumulative = of(lifecycle, endpoint_id).cold_start_buckets
    return [b - a for a, b in zip((0, *cumulative), cumulative, strict=False)]


def test_the_first_successful_poll_counts_nothing_and_sets_up_zeroed_series() -> None:
    lifecycle = tracker(ENDPOINT)
    assert lifecycle.view() == ()
    lifecycle.observe(ENDPOINT, [w(1, loaded=900, started=800), w(2, "error")], 1000, 0)
    assert lifecycle.view() == (
        EndpointLifecycle("10", "chat", (0,) * (len(BUCKETS) + 1), 0.0, 0, 0, 0, ()),
    )


def test_cold_start_once_per_worker_seen_loading_and_not_for_workers_loaded_at_start() -> None:
    lifecycle = tracker(ENDPOINT)
    already = w(1, loaded=900, started=800)  # loaded before the exporter looked: 100 s unseen
    lifecycle.observe(ENDPOINT, [already, w(2, "loading", started=990)], 1000, 0)
    lifecycle.observe(ENDPOINT, [already, w(2, loaded=1005, started=990)], 1010, 10)
    assert cold_starts(lifecycle) == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # 15 s: le="15"
    assert of(lifecycle).cold_start_sum == 15.0
    # Seen loaded again, reloaded later, or loaded_at gone and back: never a second observation.
    lifecycle.observe(ENDPOINT, [already, w(2, loaded=1005, started=990)], 1020, 20)
    lifecycle.observe(ENDPOINT, [already, w(2, "rebooting", started=990)], 1030, 30)
    lifecycle.observe(ENDPOINT, [already, w(2, loaded=1035, started=990)], 1040, 40)
    assert of(lifecycle).cold_start_buckets[-1] == 1


def test_a_worker_that_appears_already_loaded_is_observed_if_it_loaded_since_the_last_poll():
    lifecycle = tracker(ENDPOINT)
    lifecycle.observe(ENDPOINT, [], 1000, 0)
    # Between the polls (say a failed poll in between): created, started and loaded.
    lifecycle.observe(ENDPOINT, [w(3, loaded=1100, started=1010)], 1200, 200)  # 90 s
    # Loaded long before the previous poll (at 1200): its cold start was not seen.
    lifecycle.observe(ENDPOINT, [w(3, loaded=1100, started=1010), w(4, loaded=700, started=600)],
                      1300, 300)  # fmt: skip
    assert cold_starts(lifecycle) == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert of(lifecycle).cold_start_sum == 90.0


def test_cold_start_from_created_at_and_implausible_values_dropped() -> None:
    lifecycle = tracker(ENDPOINT)
    start = [
        w(1, "loading", created=1000),  # no started_at: created_at
        w(2, "loading", started=2000),  # loaded before it started: a clock problem
        w(3, "loading", started=100),  # over a day
        w(4, "loading"),  # neither time
        w(5, "loading", started=1000, created=900),  # started_at wins
        w(6, "loading", started=1000),  # exactly a bucket bound: le="3600"
    ]
    lifecycle.observe(ENDPOINT, start, 1000, 0)
    loaded = [
        w(1, loaded=1500, created=1000),
        w(2, loaded=1500, started=2000),
        w(3, loaded=100 + MAX_COLD_START + 1, started=100),
        w(4, loaded=1500),
        w(5, loaded=1030, started=1000, created=900),
        w(6, loaded=4600, started=1000),
    ]
    lifecycle.observe(ENDPOINT, loaded, 5000, 4000)
    assert cold_starts(lifecycle) == [0, 1, 0, 0, 0, 1, 0, 0, 1, 0]  # 30, 500, 3600
    assert of(lifecycle).cold_start_sum == 4130.0


def test_a_very_slow_cold_start_lands_in_the_inf_bucket() -> None:
    lifecycle = tracker(ENDPOINT)
    lifecycle.observe(ENDPOINT, [w(1, "loading", started=1000)], 1000, 0)
    lifecycle.observe(ENDPOINT, [w(1, loaded=5000, started=1000)], 5000, 4000)
    assert cold_starts(lifecycle)[-1] == 1


def test_added_and_removed_between_successful_polls() -> None:
    lifecycle = tracker(ENDPOINT)
    lifecycle.observe(ENDPOINT, [w(1), w(2)], 1000, 0)  # present at start: not added
    lifecycle.observe(ENDPOINT, [w(1), w(2), w(3)], 1010, 10)
    assert (of(lifecycle).added, of(lifecycle).removed) == (1, 0)
    # Failed polls call nothing: 4 comes and goes during them unseen; 5 and 6 replace 1 and 2.
    lifecycle.observe(ENDPOINT, [w(3), w(5), w(6)], 1060, 60)
    assert (of(lifecycle).added, of(lifecycle).removed) == (3, 2)
    lifecycle.observe(ENDPOINT, [], 1070, 70)  # scaled to zero (or not ready: no workers)
    lifecycle.observe(ENDPOINT, [w(1)], 1080, 80)  # a returning worker is added again
    assert (of(lifecycle).added, of(lifecycle).removed) == (4, 5)


def test_state_seconds_charge_each_polls_status_for_the_time_since_the_previous_poll() -> None:
    lifecycle = tracker(ENDPOINT)
    lifecycle.observe(ENDPOINT, [w(1, "creating"), w(2)], 1000, 0)
    lifecycle.observe(ENDPOINT, [w(1, "loading"), w(2), w(3, "creating")], 1010, 10)
    lifecycle.observe(ENDPOINT, [w(1, "LOADING".lower()), w(3, None)], 1040, 40)  # 30 s later
    seconds = dict(of(lifecycle).state_seconds)
    assert seconds == {"loading": 40.0, "ready": 10.0, "creating": 10.0, "unknown": 30.0}
    assert sum(seconds.values()) == 10 * 3 + 30 * 2  # elapsed x workers, poll by poll
    # A wall-clock step does not matter: the elapsed time is monotonic.
    lifecycle.observe(ENDPOINT, [w(1), w(3)], 500, 45)
    assert sum(dict(of(lifecycle).state_seconds).values()) == 100.0


def test_errors_count_transitions_into_an_error_status() -> None:
    lifecycle = tracker(ENDPOINT)
    lifecycle.observe(ENDPOINT, [w(1, "error"), w(2), w(3)], 1000, 0)  # at start: not counted
    lifecycle.observe(ENDPOINT, [w(1, "error"), w(2, "error"), w(3, "unavail")], 1010, 10)
    assert of(lifecycle).errors == 2
    lifecycle.observe(ENDPOINT, [w(1, "rebooting"), w(2, "unavail"), w(3, "offline")], 1020, 20)
    assert of(lifecycle).errors == 2  # error -> unavail -> offline is one error
    lifecycle.observe(
        ENDPOINT, [w(1, "error"), w(2, "ready"), w(3, "exited"), w(4, "error")], 1030, 30
    )
    assert of(lifecycle).errors == 4  # 1 again, and 4 appeared in error


def test_a_worker_of_an_endpoint_and_its_group_is_counted_once() -> None:
    lifecycle = tracker(ENDPOINT, GROUP, OTHER_GROUP)
    assert lifecycle.counts(ENDPOINT) and not lifecycle.counts(GROUP)
    assert lifecycle.counts(OTHER_GROUP)
    for target in (ENDPOINT, GROUP, OTHER_GROUP):
        lifecycle.observe(target, [w(1, "loading", started=990)], 1000, 0)
    for target in (ENDPOINT, GROUP):
        lifecycle.observe(target, [w(1, loaded=1010, started=990), w(2, "creating")], 1010, 10)
    lifecycle.observe(OTHER_GROUP, [w(7, "creating")], 1010, 10)
    chat, img = of(lifecycle, "10"), of(lifecycle, "11")
    assert (chat.endpoint_name, chat.added, chat.removed, chat.cold_start_buckets[-1]) == (
        "chat", 1, 0, 1)  # fmt: skip
    assert sum(dict(chat.state_seconds).values()) == 20.0
    assert (img.endpoint_name, img.added, img.removed, dict(img.state_seconds)) == (
        "img", 1, 1, {"creating": 10.0})  # fmt: skip


def test_sharding_an_endpoint_split_across_replicas_is_counted_once() -> None:
    configured = (ENDPOINT, GROUP)
    owner, other = tracker(ENDPOINT, all_targets=configured), tracker(GROUP, all_targets=configured)
    for lifecycle, target in ((owner, ENDPOINT), (other, GROUP)):
        lifecycle.observe(target, [], 1000, 0)
        lifecycle.observe(target, [w(1, "creating")], 1010, 10)
    assert of(owner).added == 1 and other.view() == ()
    # With discovery only (no endpoint target), each replica counts the groups it polls.
    sibling = Target("worker_group", 21, "", 10, "chat")
    groups = (GROUP, sibling)
    first, second = tracker(GROUP, all_targets=groups), tracker(sibling, all_targets=groups)
    for lifecycle, target, worker_id in ((first, GROUP, 1), (second, sibling, 2)):
        lifecycle.observe(target, [], 1000, 0)
        lifecycle.observe(target, [w(worker_id, "creating")], 1010, 10)
    assert of(first).added == of(second).added == 1


def test_targets_not_polled_or_gone_are_forgotten_and_so_are_their_endpoints() -> None:
    lifecycle = tracker(ENDPOINT, OTHER_GROUP)
    lifecycle.observe(Target("endpoint", 99, "x", 99, "x"), [w(1)], 1000, 0)  # not polled
    for target in (ENDPOINT, OTHER_GROUP):
        lifecycle.observe(target, [w(1)], 1000, 0)
    assert [e.endpoint_id for e in lifecycle.view()] == ["10", "11"]
    lifecycle.set_targets([ENDPOINT], [ENDPOINT])
    assert [e.endpoint_id for e in lifecycle.view()] == ["10"]
    lifecycle.set_targets([OTHER_GROUP], [OTHER_GROUP])
    lifecycle.set_targets([ENDPOINT, OTHER_GROUP], [ENDPOINT, OTHER_GROUP])
    lifecycle.observe(ENDPOINT, [w(1), w(2)], 1010, 10)  # a first poll again: no event
    assert of(lifecycle).added == 0 and of(lifecycle).state_seconds == ()


def test_memory_holds_only_the_last_polls_workers_and_a_bounded_set_of_statuses() -> None:
    lifecycle = tracker(ENDPOINT)
    for step in range(50):
        workers = [w(step * 100 + i, f"status-{step}") for i in range(10)]
        lifecycle.observe(ENDPOINT, workers, 1000 + step, step)
    memory = lifecycle._last[ENDPOINT.key].workers
    assert sorted(memory) == sorted(str(4900 + i) for i in range(10))
    seconds = dict(of(lifecycle).state_seconds)
    assert len(seconds) == MAX_STATUSES + 1 and seconds[OTHER_STATUS] == 10.0 * (49 - MAX_STATUSES)
    assert (of(lifecycle).added, of(lifecycle).removed) == (490, 490)


def test_a_renamed_endpoint_keeps_its_counts_under_the_new_name() -> None:
    lifecycle = tracker(ENDPOINT)
    lifecycle.observe(ENDPOINT, [], 1000, 0)
    lifecycle.observe(ENDPOINT, [w(1)], 1010, 10)
    renamed = Target("endpoint", 10, "chat-v2", 10, "chat-v2")
    lifecycle.set_targets([renamed], [renamed])
    lifecycle.observe(renamed, [w(1), w(2)], 1020, 20)
    assert (of(lifecycle).endpoint_name, of(lifecycle).added) == ("chat-v2", 2)


def test_the_demo_simulation_gives_every_lifecycle_series_data_within_minutes() -> None:
    """The simulator's workers (seed 1, as --demo runs it) polled every 2 s like the demo:
    cold starts of tens of seconds, scale-ups and downs and errors come within minutes, and
    the fresh endpoint cold-starts after its not-ready spell."""
    from exporter.parsing import parse_workers_payload
    from exporter.sim import FRESH_ENDPOINT_ID, Simulation, demo_targets

    now = [1_800_000_000.0]
    sim = Simulation(seed=1, clock=lambda: now[0])
    endpoints = [
        Target("endpoint", t.id, t.name, t.id, t.name)
        for t in demo_targets()
        if t.kind == "endpoint"
    ]
    lifecycle = tracker(*endpoints)
    first_cold_start = None
    for step in range(0, 180, 2):  # three minutes
        for target in endpoints:
            listed = [] if sim.not_ready(int(target.id)) else sim.endpoint_workers(int(target.id))
            lifecycle.observe(target, parse_workers_payload(listed), now[0], now[0])
        if first_cold_start is None and any(e.cold_start_buckets[-1] for e in lifecycle.view()):
            first_cold_start = step
        now[0] += 2.0
    view = {e.endpoint_id: e for e in lifecycle.view()}
    assert first_cold_start is not None and first_cold_start <= 40
    observed = sum(e.cold_start_buckets[-1] for e in view.values())
    mean = sum(e.cold_start_sum for e in view.values()) / observed
    assert observed >= 4 and 20 <= mean <= 150  # tens of seconds
    assert view[str(FRESH_ENDPOINT_ID)].cold_start_buckets[-1] >= 1
    assert view[str(FRESH_ENDPOINT_ID)].added >= 2  # after the not-ready spell, no baseline
    assert sum(e.added for e in view.values()) >= 4
    assert sum(e.removed for e in view.values()) >= 1
    assert sum(e.errors for e in view.values()) >= 1
    statuses = {s for e in view.values() for s, _ in e.state_seconds}
    assert {"creating", "loading", "model_loading", "ready", "error"} <= statuses
