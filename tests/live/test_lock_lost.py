"""A leader whose lock connection drops (PostgreSQL through a TCP gate the test shuts, or
restarted): its rooms stop at once; it takes the lock back when the database returns and
rebuilds its rooms, its participants' sockets kept in their places; or, the lock taken meanwhile
by another process, it closes its sockets with 1012 and stands by, and the participant comes
back with its token where the rooms now run."""

from __future__ import annotations

import time

import httpx
import pytest
from websockets.protocol import State

from tests.fixtures.gate import TcpGate
from tests.fixtures.live import LiveServer, Peer, ServerFactory, join
from tests.fixtures.postgres import PostgresServer
from tests.live.helpers import running_campaign

WITHIN = 10.0


def role(server: LiveServer) -> str:
    return str(httpx.get(f"{server.url}/readyz", timeout=5).json()["role"])


def wait_role(server: LiveServer, expected: str) -> None:
    deadline = time.monotonic() + WITHIN
    while role(server) != expected:
        assert time.monotonic() < deadline, f"not {expected} within {WITHIN} s"
        time.sleep(0.05)


def gated(url: str, postgres: PostgresServer, gate: TcpGate) -> str:
    return url.replace(f":{postgres.port}/", f":{gate.port}/")


async def waiting(server: LiveServer, slug: str, browser: str) -> tuple[Peer, str]:
    peer, token = await join(server, slug, browser)
    await peer.send("Agree")
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/2"
    return peer, token


async def resumes(server: LiveServer, slug: str, token: str) -> Peer:
    back = await server.participant(slug)
    assert await back.expect("State") == "Running"
    await back.send("Resume", token)
    assert await back.expect("Resume") == token
    await back.expect("Instructions")
    assert await back.expect("JoiningSize") == "1/2"
    return back


async def kept_in_place(server: LiveServer, slug: str, peer: Peer, token: str) -> None:
    """The socket, still open, is in its place in the room rebuilt: told so, and started with
    the next one."""
    assert await peer.expect("Resume", within=WITHIN) == token
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/2"
    await started_with_another(server, slug, peer)


async def started_with_another(server: LiveServer, slug: str, peer: Peer) -> None:
    other, _ = await join(server, slug, "b")
    await other.send("Agree")
    urls = {await peer.until("Starting"), await other.until("Starting")}
    assert len(urls) == 2
    await other.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_lock_taken_back_rebuilds_the_rooms_sockets_kept(
    make_server: ServerFactory,
    database_url: str,
    postgres_server: PostgresServer,
    postgres_gate: TcpGate,
) -> None:
    server = make_server(database_url=gated(database_url, postgres_server, postgres_gate))
    campaign = running_campaign(server, "adrift")
    peer, token = await waiting(server, campaign["slug"], "a")

    postgres_gate.shut()
    wait_role(server, "standby")  # its rooms stopped; the socket is still open
    assert peer.socket.state is State.OPEN
    postgres_gate.open()
    wait_role(server, "leader")
    await kept_in_place(server, campaign["slug"], peer, token)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_database_restart_keeps_the_leaders_sockets_in_their_places(
    make_server: ServerFactory, database_url: str, postgres_server: PostgresServer
) -> None:
    server = make_server(database_url=database_url)
    campaign = running_campaign(server, "restarted")
    peer, token = await join(server, campaign["slug"], "a")  # at the consent

    postgres_server.restart()  # every session ended, the lock's included
    assert await peer.expect("Resume", within=WITHIN) == token
    await peer.expect("Consent")
    # What the page sends on the same socket reaches the room rebuilt.
    await peer.send("Agree")
    await peer.expect("Instructions")
    assert await peer.expect("JoiningSize") == "1/2"
    await started_with_another(server, campaign["slug"], peer)
    assert role(server) == "leader"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_lock_taken_by_another_process_makes_a_standby_never_two_leaders(
    make_server: ServerFactory,
    database_url: str,
    postgres_server: PostgresServer,
    postgres_gate: TcpGate,
) -> None:
    first = make_server(database_url=gated(database_url, postgres_server, postgres_gate))
    second = make_server(leader=False)
    assert role(second) == "standby"
    campaign = running_campaign(first, "taken")
    peer, token = await waiting(first, campaign["slug"], "a")

    postgres_gate.shut()  # the first's session ends: the lock is free
    wait_role(second, "leader")
    assert role(first) == "standby"
    # The first keeps its sockets while it cannot know who leads.
    assert peer.socket.state is State.OPEN
    postgres_gate.open()
    assert await peer.closed(within=WITHIN) == 1012
    assert role(first) == "standby"
    assert role(second) == "leader"
    back = await resumes(second, campaign["slug"], token)
    await back.close()
