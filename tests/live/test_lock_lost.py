"""A leader whose lock connection drops (PostgreSQL through a TCP gate the test shuts): its rooms
stop at once; it takes the lock back when the database returns and rebuilds its rooms, or, the
lock taken meanwhile by another process, closes its sockets with 1012 and stands by. The
participant comes back with its token wherever the rooms now run."""

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


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_lock_taken_back_rebuilds_the_rooms(
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
    assert await peer.closed() == 1012  # rebuilt from the database: come back
    back = await resumes(server, campaign["slug"], token)
    await back.close()


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
