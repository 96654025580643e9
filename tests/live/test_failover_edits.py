"""A campaign edited while no process runs its room (through a standby, its leader just dead:
its NOTIFY reaches nobody) is compared with the room the next leader rebuilds from the database
(PostgreSQL, two mastoks; the test holds the leader lock between the two leaderships)."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from mastok.db.leader_lock import LEADER_KEY
from tests.fixtures.live import LiveServer, ServerFactory, join
from tests.live.helpers import running_campaign
from tests.live.test_lock_lost import wait_role

BEFORE = "Your team?\nRed:1\nBlue:1\nJoin"
AFTER = "Your team?\nGreen:1\nBlue:1\nJoin"


def role(server: LiveServer) -> str:
    return str(httpx.get(f"{server.url}/readyz", timeout=5).json()["role"])


async def held_lock(database_url: str) -> asyncpg.Connection:
    """The leader lock, taken by the test (free once the leader stopped)."""
    connection = await asyncpg.connect(database_url)
    assert await connection.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_KEY)
    return connection


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_grouping_edited_through_a_standby_before_a_failover_reaches_the_rebuilt_room(
    make_server: ServerFactory, database_url: str
) -> None:
    first = make_server()
    campaign = running_campaign(first, "regrouped", grouping=BEFORE)
    slug = campaign["slug"]
    peer, token = await join(first, slug, "a")
    await peer.send("Agree")
    assert await peer.expect("Grouping") == BEFORE
    await peer.send("Connect", "Red")
    await peer.expect("Instructions")
    await peer.close()

    first.stop()  # the leader dies (its lock freed), its participant in Red
    lock = await held_lock(database_url)  # nobody leads a moment
    standby = make_server(leader=False)
    assert role(standby) == "standby"
    with standby.admin() as admin:  # NOTIFYed to no leader: none listens
        edited = admin.patch("/api/campaigns/regrouped", json={"grouping": AFTER})
        assert edited.status_code == 200, edited.text
    await lock.close()
    wait_role(standby, "leader")  # its rooms rebuilt from the database

    back = await standby.participant(slug)
    assert await back.expect("State") == "Running"
    await back.send("Resume", token)
    assert await back.expect("Resume") == token
    assert await back.expect("Grouping") == AFTER  # Red is gone: it chooses again
    await back.send("Connect", "Green")
    await back.expect("Instructions")
    other, _ = await join(standby, slug, "b")
    await other.send("Agree")
    await other.expect("Grouping")
    await other.send("Connect", "Blue")
    urls = {await back.until("Starting"), await other.until("Starting")}
    assert len(urls) == 2
    for open_peer in (back, other):
        await open_peer.close()
