"""`GET /metrics` (mastok/metrics.py) on a real server once an oTree session has started, parsed
with prometheus_client's own parser; LightMill's trials and oTree's failed calls are counted."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from mastok.metrics import Metrics
from mastok.otree import OTreeClient
from mastok.otree.client import OTreeUnreachable
from tests.fixtures.live import LiveServer, ServerFactory, join
from tests.lightmill.helpers import imported, lock, post_trial
from tests.live.helpers import running_campaign

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parsed(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape(server: LiveServer) -> Samples:
    with server.admin() as admin:
        answer = admin.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return parsed(answer.text)


def scraped_until(server: LiveServer, name: str, expected: float, **labels: str) -> Samples:
    """The metrics once `name` reads `expected` (a socket's close is counted just after)."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(server)
        if value(samples, name, **labels) == expected or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


async def test_metrics_after_a_session_has_started(make_server: ServerFactory) -> None:
    server = make_server()
    campaign = running_campaign(server, "metered", per_session=2, max_sessions=2)
    first, _ = await join(server, campaign["slug"], "fp-1")
    second, _ = await join(server, campaign["slug"], "fp-2")
    await first.send("Agree")
    await first.until("JoiningSize")
    server.clock.advance(seconds=42)
    await second.send("Agree")
    for peer in (first, second):
        await peer.until("Starting")
        assert await peer.closed() == 1000
    waiting, _ = await join(server, campaign["slug"], "fp-3")

    samples = scraped_until(server, "mastok_sockets_open", 1, kind="participant")

    assert value(samples, "mastok_leader") == 1
    assert value(samples, "mastok_sessions_started_total", campaign="metered") == 1
    started = {"campaign": "metered", "outcome": "started"}
    assert value(samples, "mastok_participant_outcomes_total", **started) == 2
    assert value(samples, "mastok_wait_seconds_count") == 2
    assert value(samples, "mastok_wait_seconds_sum") == 42
    assert value(samples, "mastok_wait_seconds_bucket", le="30.0") == 1
    assert value(samples, "mastok_participants_waiting", campaign="metered", pool="landed") == 1
    assert value(samples, "mastok_sockets_open", kind="participant") == 1
    assert (value(samples, "mastok_otree_request_seconds_count") or 0) >= 1
    assert value(samples, "mastok_lightmill_trials_total") == 0

    await waiting.send("Leave")
    await waiting.closed()
    left = {"campaign": "metered", "outcome": "left"}
    samples = scraped_until(server, "mastok_participant_outcomes_total", 1, **left)
    assert value(samples, "mastok_participant_outcomes_total", **left) == 1
    assert value(samples, "mastok_participants_waiting", campaign="metered", pool="landed") is None


def test_metrics_need_the_admin_credentials(make_server: ServerFactory) -> None:
    server = make_server()
    assert httpx.get(f"{server.url}/metrics").status_code == 401


def test_recorded_trials_are_counted(make_client: Any) -> None:
    client: TestClient = make_client(authenticated=False)
    imported(client)
    token = lock(client, "S0")
    assert post_trial(client, "S0", 0, 0, token, {"trial": {"time": 1}}).status_code == 200

    samples = parsed(client.app.state.metrics.exposition().decode())  # type: ignore[attr-defined]
    assert value(samples, "mastok_lightmill_trials_total") == 1


async def test_failed_otree_calls_are_timed_and_counted(refused_url: str) -> None:
    metrics = Metrics()
    otree = OTreeClient(refused_url, "key", metrics=metrics)
    with pytest.raises(OTreeUnreachable):
        await otree.list_sessions()
    await otree.aclose()

    samples = parsed(metrics.exposition().decode())
    assert value(samples, "mastok_otree_request_seconds_count") == 1
    assert value(samples, "mastok_otree_request_errors_total", error="OTreeUnreachable") == 1


def test_two_apps_count_apart() -> None:
    one, other = Metrics(), Metrics()
    one.trial_recorded()
    other.set_leader(False)

    assert value(parsed(one.exposition().decode()), "mastok_lightmill_trials_total") == 1
    assert value(parsed(other.exposition().decode()), "mastok_lightmill_trials_total") == 0
    assert value(parsed(other.exposition().decode()), "mastok_leader") == 0
