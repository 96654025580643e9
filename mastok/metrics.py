"""What Prometheus scrapes at `GET /metrics`: one app's metrics, in a registry of its own.

`Metrics` holds them all (prometheus_client's, never its global registry: two apps in one
process, as in the tests, count apart). The parts of mastok that do the counted work are handed
this object and call its methods: the room runners (outcomes, sessions, waits), the sockets,
oTree's client, LightMill. The waiting participants are read when Prometheus scrapes, from a
function the app gives (`watch_waiting`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mastok.live import events as ev
from mastok.states import Outcome

CONTENT_TYPE = CONTENT_TYPE_LATEST
WAIT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
OTREE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# (campaign, pool) -> people there; the pool is the step they are at (landed ... pending).
WaitingCounts = Callable[[], Mapping[tuple[str, str], int]]


class _Waiting(Collector):
    """`mastok_participants_waiting`, counted when scraped."""

    def __init__(self) -> None:
        self.count: WaitingCounts = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mastok_participants_waiting",
            "People in a campaign's room, by the step they are at (landed, agreed, joining, "
            "pending)",
            labels=["campaign", "pool"],
        )
        for (campaign, pool), people in sorted(self.count().items()):
            family.add_metric([campaign, pool], people)
        yield family


class Metrics:
    """mastok's metrics, and the calls that move them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.leader = Gauge(
            "mastok_leader", "1 while this process runs the waiting rooms", registry=registry
        )
        self.leader.set(1)  # until the app says who leads (`watch_leader`)
        self.sockets_open = Gauge(
            "mastok_sockets_open", "WebSockets open, by kind", ["kind"], registry=registry
        )
        self.outcomes = Counter(
            "mastok_participant_outcomes",
            "Visits ended, by campaign and outcome",
            ["campaign", "outcome"],
            registry=registry,
        )
        self.wait_seconds = Histogram(
            "mastok_wait_seconds",
            "How long people sent to an oTree session waited in the pools",
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.sessions_started = Counter(
            "mastok_sessions_started",
            "oTree sessions started and recorded, by campaign",
            ["campaign"],
            registry=registry,
        )
        self.otree_seconds = Histogram(
            "mastok_otree_request_seconds",
            "Calls to oTree's REST API, answered or not",
            buckets=OTREE_BUCKETS,
            registry=registry,
        )
        self.otree_errors = Counter(
            "mastok_otree_request_errors",
            "Calls to oTree's REST API that failed, by error",
            ["error"],
            registry=registry,
        )
        self.lightmill_trials = Counter(
            "mastok_lightmill_trials", "LightMill trial results recorded", registry=registry
        )
        self._waiting = _Waiting()
        registry.register(self._waiting)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def watch_leader(self, leading: Callable[[], bool]) -> None:
        """Read whether this process leads at each scrape."""
        self.leader.set_function(lambda: 1.0 if leading() else 0.0)

    @contextmanager
    def socket_open(self, kind: str) -> Iterator[None]:
        """Counts a socket as open while in this block."""
        with self.sockets_open.labels(kind=kind).track_inprogress():
            yield

    def watch_waiting(self, count: WaitingCounts) -> None:
        self._waiting.count = count

    def room_written(self, campaign: str, writes: Sequence[ev.Persist]) -> None:
        """A runner's turn wrote these changes: the visits that ended, the session started."""
        for write in writes:
            match write:
                case ev.AddParticipant(outcome=outcome) if outcome is not None:
                    self._ended(campaign, outcome, 1)
                case ev.Leave(tokens, outcome):
                    self._ended(campaign, outcome, len(tokens))
                case ev.RecordSession(assignments=assignments):
                    self._ended(campaign, Outcome.STARTED, len(assignments))
                    self.sessions_started.labels(campaign=campaign).inc()

    def _ended(self, campaign: str, outcome: Outcome, visits: int) -> None:
        if visits:
            self.outcomes.labels(campaign=campaign, outcome=outcome.value).inc(visits)

    def waited(self, seconds: Iterable[float]) -> None:
        """People sent to an oTree session waited this long."""
        for waited in seconds:
            self.wait_seconds.observe(waited)

    def otree_request(self, seconds: float, error: Exception | None) -> None:
        self.otree_seconds.observe(seconds)
        if error is not None:
            self.otree_errors.labels(error=type(error).__name__).inc()

    def trial_recorded(self) -> None:
        self.lightmill_trials.inc()
