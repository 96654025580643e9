"""Several `mastok serve` processes on one database, as real processes: one leads (the waiting
rooms), the others stand by; a killed leader's place is taken within 5 seconds. On SQLite, one
process a file.

Every wait here is bounded and polled: none sleeps for a time that must be long enough.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from mastok.otree.client import OTreeClient
from mastok.otree.local import LocalOTree
from tests.fixtures.app import LOGIN, PASSWORD, basic_auth
from tests.fixtures.live import Peer
from tests.fixtures.processes import ORIGIN, Serving, start_serving, wait_for
from tests.live.helpers import running_campaign

FAILOVER_SECONDS = 5.0


@pytest.fixture
def serving(tmp_path: Path, otree_server: LocalOTree) -> Iterator[Callable[..., Serving]]:
    """Starts `mastok serve` processes (`serving(name, database_url)`), all stopped after."""
    started: list[Serving] = []

    def start(name: str, database_url: str, **env: str) -> Serving:
        settings = {
            "MASTOK_MODE": "TEST",
            "MASTOK_LOGIN": LOGIN,
            "MASTOK_PASSWORD": PASSWORD,
            "MASTOK_DATABASE_URL": database_url,
            "MASTOK_ORIGIN": ORIGIN,
            "MASTOK_OTREE_API_URL": otree_server.url,
            "MASTOK_OTREE_PUBLIC_URL": otree_server.url,
            "MASTOK_OTREE_API_KEY": otree_server.rest_key,
            "MASTOK_OTREE_TIMEOUT": "5",
            **env,
        }
        process = start_serving(settings, tmp_path / f"{name}.log", LOGIN, PASSWORD)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def leads(process: Serving) -> bool:
    status, report = process.readyz()
    return status == 200 and report["role"] == "leader"


async def refused_status(url: str, **options: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=ORIGIN, **options):  # type: ignore[arg-type]
            pass
    return refused.value.response.status_code


async def participant(process: Serving, slug: str) -> Peer:
    peer = await Peer.open(process.ws_url(f"/ws/join?slug={slug}"), origin=ORIGIN)
    assert await peer.expect("State") == "Running"
    return peer


async def waiting(process: Serving, slug: str, browser: str, size: str) -> tuple[Peer, str]:
    """A participant in the joining pool: (its socket, its resume token)."""
    peer = await participant(process, slug)
    await peer.send("Land", browser)
    token = await peer.expect("Resume")
    await peer.expect("Consent")
    await peer.send("Agree")
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == size
    return peer, token


async def test_a_standby_leads_within_5_s_of_the_leaders_death_and_its_participants_resume(
    serving: Callable[..., Serving], postgres_database_url: str, otree_client: OTreeClient
) -> None:
    first = serving("first", postgres_database_url)
    first.wait_healthy()
    wait_for(lambda: leads(first), 10, "the only process leads")
    second = serving("second", postgres_database_url)
    second.wait_healthy()
    status, report = second.readyz()
    assert (status, report["role"], report["database"]) == (503, "standby", "ok")
    wait_for(lambda: first.readyz()[1]["otree"] == "ok", 15, "oTree probed")
    assert first.readyz() == (200, {"role": "leader", "database": "ok", "otree": "ok"})
    assert "mastok is a standby" not in second.output()

    campaign = running_campaign(first, "failover", per_session=2, concurrent_sessions=2)  # type: ignore[arg-type]
    slug = campaign["slug"]
    # The standby's sockets are refused (the page retries; a proxy sends it to the leader).
    assert await refused_status(second.ws_url(f"/ws/join?slug={slug}")) == 503
    supervise = second.ws_url("/ws/campaigns/supervise?namespace=failover")
    assert await refused_status(supervise, additional_headers=basic_auth()) == 503
    # Its admin API works, the room as the database has it included.
    peer, token = await waiting(first, slug, "browser-a", "1/2")
    with second.admin() as admin:
        assert admin.get("/api/campaigns/failover/live").json()["live"]["joining"] == "1/2"

    first.kill()
    took = wait_for(lambda: leads(second), FAILOVER_SECONDS, "the standby leads")
    assert took < FAILOVER_SECONDS
    assert await peer.closed() in (None, 1006, 1011, 1012)

    back = await participant(second, slug)
    await back.send("Resume", token)
    assert await back.expect("Resume") == token
    await back.expect("Instructions")
    assert await back.expect("JoiningSize") == "1/2"
    other, _ = await waiting(second, slug, "browser-b", "2/2")
    urls = {await back.until("Starting"), await other.until("Starting")}
    assert len(urls) == 2  # each their own place in one session:

    sessions = [s for s in await otree_client.list_sessions() if s.label.endswith(campaign["uid"])]
    assert len(sessions) == 1
    with second.admin() as admin:
        assert len(admin.get("/api/campaigns/failover/live").json()["sessions"]) == 1

    # The killed process restarts as a standby; a pause through it reaches the leader's room.
    again = serving("first-again", postgres_database_url)
    again.wait_healthy()
    assert again.readyz()[1]["role"] == "standby"
    late, _ = await waiting(second, slug, "browser-c", "1/2")
    with again.admin() as admin:
        paused = admin.patch("/api/campaigns/failover", json={"state": "Paused"})
        assert paused.status_code == 200, paused.text
    assert await late.until("Disconnect", within=5) == "Paused"  # the leader's room paused
    assert await late.closed() == 1000
    for open_peer in (back, other):
        await open_peer.close()
    # A refused socket is one line, not an error: uvicorn logs one after every denial response
    # (Kludex/uvicorn#3138), which would be thousands when a leader dies under its participants.
    refusals = second.output()
    assert f'"WebSocket /ws/join?slug={slug}" 503' in refusals
    assert "without completing handshake" not in refusals
    assert "connection rejected (503" not in refusals


async def test_processes_started_together_on_a_fresh_database_all_come_up(
    serving: Callable[..., Serving], postgres_empty_database_url: str
) -> None:
    processes = [serving(f"p{n}", postgres_empty_database_url) for n in range(3)]
    for process in processes:
        process.wait_healthy()
    wait_for(lambda: any(leads(p) for p in processes), 10, "one of them leads")
    roles = sorted(process.readyz()[1]["role"] for process in processes)
    assert roles == ["leader", "standby", "standby"]
    for process in processes:
        assert "UniqueViolation" not in process.output()


def test_a_second_process_on_the_same_sqlite_file_exits_naming_the_first(
    serving: Callable[..., Serving], tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'data' / 'mastok.sqlite3'}"
    first = serving("first", database)
    first.wait_healthy()
    assert first.readyz()[1]["role"] == "leader"  # alone on its file, always

    second = subprocess.run(
        [sys.executable, "-m", "mastok", "serve", "--port", "1"],  # exits before listening
        env={**os.environ, "MASTOK_MODE": "TEST", "MASTOK_DATABASE_URL": database},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert f"is already served by mastok pid {first.process.pid} " in second.stderr
    assert "stop it first" in second.stderr

    # The lock dies with its process, SIGKILL included: the killed one restarts at once.
    first.kill()
    restarted = serving("restarted", database)
    started = time.monotonic()
    restarted.wait_healthy()
    assert time.monotonic() - started < 60
    assert restarted.readyz()[1]["role"] == "leader"
