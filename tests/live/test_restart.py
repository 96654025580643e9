"""The waiting room survives the server process being killed and started again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from mastok.otree.local import LocalOTree, free_port
from tests.campaigns.factories import campaign_input
from tests.fixtures.app import LOGIN, PASSWORD
from tests.fixtures.live import FaultyOTree, Peer
from tests.fixtures.processes import wait_until_healthy


@contextmanager
def mastok_process(
    port: int, database_url: str, otree: LocalOTree, log: Path, api_url: str = ""
) -> Iterator[str]:
    """`api_url`: where mastok reaches oTree's API, if not oTree itself (a proxy)."""
    env = {
        **os.environ,
        "MASTOK_MODE": "TEST",
        "MASTOK_LOGIN": LOGIN,
        "MASTOK_PASSWORD": PASSWORD,
        "MASTOK_ORIGIN": f"http://127.0.0.1:{port}",
        "MASTOK_OTREE_API_URL": api_url or otree.url,
        "MASTOK_OTREE_PUBLIC_URL": otree.url,
        "MASTOK_OTREE_API_KEY": otree.rest_key,
    }
    command = [sys.executable, "-m", "mastok", "serve", "--port", str(port)]
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [*command, "--database", database_url],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, lambda: log.read_text()[-2000:])
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(10)


async def agreed(socket_url: str, origin: str, fingerprint: str) -> tuple[Peer, str]:
    """A participant landed in a Running campaign and agreed to its consent; its token."""
    peer = await Peer.open(socket_url, origin=origin)
    assert await peer.expect("State") == "Running"
    await peer.send("Land", fingerprint)
    token = await peer.expect("Resume")
    await peer.expect("Consent")
    await peer.send("Agree")
    return peer, token


async def test_waiting_participants_keep_their_places_across_a_crash(
    database_url: str, otree_server: LocalOTree, tmp_path: Path
) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    socket_url = f"ws://127.0.0.1:{port}/ws/join?slug=crash_join"

    async def arrive(fingerprint: str) -> tuple[Peer, str]:
        return await agreed(socket_url, origin, fingerprint)

    async def resume(token: str) -> Peer:
        peer = await Peer.open(socket_url, origin=origin)
        assert await peer.expect("State") == "Running"
        await peer.send("Resume", token)
        assert await peer.expect("Resume") == token
        return peer

    fields = campaign_input("crash", otree_config_name="survey", per_session=3, max_sessions=1)
    with mastok_process(port, database_url, otree_server, tmp_path / "mastok.log") as url:
        async with httpx.AsyncClient(base_url=url, auth=(LOGIN, PASSWORD)) as admin:
            assert (await admin.post("/api/campaigns", json=fields)).status_code == 201
            await admin.patch("/api/campaigns/crash", json={"state": "Running"})
        first, first_token = await arrive("a")
        await first.expect("Instructions")
        second, second_token = await arrive("b")
        await second.expect("Instructions")
        assert await second.expect("JoiningSize") == "2/3"
    # killed with SIGKILL: no goodbye to anyone
    with mastok_process(port, database_url, otree_server, tmp_path / "mastok.log") as url:
        first = await resume(first_token)
        await first.expect("Instructions")
        assert await first.expect("JoiningSize") == "2/3"
        second = await resume(second_token)
        await second.expect("Instructions")
        assert await second.expect("JoiningSize") == "2/3"
        third, _ = await arrive("c")
        await third.expect("Instructions")
        urls = {await peer.until("Starting") for peer in (first, second, third)}
        assert len(urls) == 3
        async with httpx.AsyncClient(base_url=url, auth=(LOGIN, PASSWORD)) as admin:
            assert (await admin.get("/api/campaigns/crash")).json()["state"] == "Completed"
    # One line per socket and one per session started; no chatter per connection or oTree call.
    log = (tmp_path / "mastok.log").read_text()
    assert '"WebSocket /ws/join?slug=crash_join" [accepted]' in log
    assert "crash: started oTree session" in log
    assert "connection open" not in log and "connection closed" not in log
    assert "HTTP Request:" not in log


async def test_a_pool_paused_while_its_session_was_created_gets_it_across_a_crash(
    database_url: str,
    otree_server: LocalOTree,
    faulty_otree: tuple[FaultyOTree, str],
    tmp_path: Path,
) -> None:
    """The campaign paused while oTree created the pool's session (the pause waits for it),
    mastok killed before it recorded the session, which oTree then made: the mastok started
    again finds it by its label and sends the pool there, the campaign paused for anyone else."""
    proxy, proxy_url = faulty_otree
    asked, release = proxy.hold_creations()
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    socket_url = f"ws://127.0.0.1:{port}/ws/join?slug=held_join"
    log = tmp_path / "mastok.log"

    async def arrive(fingerprint: str) -> tuple[Peer, str]:
        peer, token = await agreed(socket_url, origin, fingerprint)
        await peer.expect("Instructions")
        return peer, token

    fields = campaign_input("held", otree_config_name="survey", per_session=2, max_sessions=2)
    with mastok_process(port, database_url, otree_server, log, proxy_url) as url:
        async with httpx.AsyncClient(base_url=url, auth=(LOGIN, PASSWORD)) as admin:
            assert (await admin.post("/api/campaigns", json=fields)).status_code == 201
            await admin.patch("/api/campaigns/held", json={"state": "Running"})
            _, first_token = await arrive("a")
            _, second_token = await arrive("b")
            # Session 1 written down as asked, then asked of oTree: held there.
            assert await asyncio.to_thread(asked.wait, 10)
            paused = await admin.patch("/api/campaigns/held", json={"state": "Paused"})
            assert paused.status_code == 200, paused.text
    # killed with SIGKILL before oTree answered; the creation then reaches oTree
    release.set()
    assert await asyncio.to_thread(proxy.created.wait, 10)
    assert proxy.session_posts == 1
    with mastok_process(port, database_url, otree_server, log, proxy_url) as url:
        urls = []
        for token in (first_token, second_token):
            peer = await Peer.open(socket_url, origin=origin)
            assert await peer.expect("State") == "Paused"  # it may be someone of the pool
            await peer.send("Resume", token)
            urls.append(await peer.until("Starting"))
            assert await peer.until("Disconnect") == "Start"
        assert len(set(urls)) == 2
        assert proxy.session_posts == 1  # found by its label, not made twice
        newcomer = await Peer.open(socket_url, origin=origin)
        assert await newcomer.expect("State") == "Paused"  # sessions live: it may be back
        await newcomer.send("Land", "c")
        assert await newcomer.expect("Paused")
        assert await newcomer.expect("Disconnect") == "Paused"
        async with httpx.AsyncClient(base_url=url, auth=(LOGIN, PASSWORD)) as admin:
            campaign = (await admin.get("/api/campaigns/held")).json()
            assert (campaign["state"], campaign["started_sessions"]) == ("Paused", 1)


async def test_an_oversized_frame_closes_the_socket_before_it_is_buffered(
    database_url: str, otree_server: LocalOTree, tmp_path: Path
) -> None:
    """`mastok serve` gives uvicorn mastok's frame limit: a 1 MiB frame closes its socket with
    1009 (message too big) from uvicorn's protocol, and the server stays healthy."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    socket_url = f"ws://127.0.0.1:{port}/ws/join?slug=big_join"
    fields = campaign_input("big", otree_config_name="survey", per_session=3, max_sessions=1)
    with mastok_process(port, database_url, otree_server, tmp_path / "mastok.log") as url:
        async with httpx.AsyncClient(base_url=url, auth=(LOGIN, PASSWORD)) as admin:
            assert (await admin.post("/api/campaigns", json=fields)).status_code == 201
            await admin.patch("/api/campaigns/big", json={"state": "Running"})
        peer = await Peer.open(socket_url, origin=origin, max_size=None)
        assert await peer.expect("State") == "Running"
        with contextlib.suppress(ConnectionClosed):
            await peer.socket.send("x" * (1024 * 1024))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(peer.socket.recv(), 10)
        # not mastok's own check, which closes with the same code once the frame is buffered
        assert peer.socket.close_reason != "frame too big"
        assert peer.socket.close_code == 1009, peer.socket.close_reason

        async with httpx.AsyncClient(base_url=url, timeout=5) as anyone:
            assert (await anyone.get("/healthz")).status_code == 200
        genuine = await Peer.open(socket_url, origin=origin)
        assert await genuine.expect("State") == "Running"
        await genuine.send("Land", "genuine")
        assert await genuine.expect("Resume")
