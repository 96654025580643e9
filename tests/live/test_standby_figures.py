"""The supervise page's figures from a standby (PostgreSQL, a second mastok on the leader's
database): its room is rebuilt from the database, so the funnel, who waits (away: a standby
cannot see the leader's sockets), the sessions and their progress are the leader's, written
there; and a session the leader saw finish in oTree is no longer live there either."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.live import LiveServer, ServerFactory, join
from tests.live.helpers import running_campaign
from tests.live.test_progress import live_until, play_to_the_end


def role(server: LiveServer) -> str:
    return str(httpx.get(f"{server.url}/readyz", timeout=5).json()["role"])


def stats(server: LiveServer, namespace: str, identities: bool = False) -> dict[str, Any]:
    with server.admin() as admin:
        answer = admin.get(
            f"/api/campaigns/{namespace}/stats", params={"identities": 1} if identities else {}
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_standby_shows_the_leaders_figures_and_progress(
    make_server: ServerFactory,
) -> None:
    leader = make_server()
    campaign = running_campaign(leader, "watched", per_session=2, concurrent_sessions=1)
    standby = make_server(leader=False)
    assert role(standby) == "standby"

    first, _ = await join(leader, campaign["slug"], "first")
    await first.send("Agree")
    assert await first.until("JoiningSize") == "1/2"
    here, there = stats(leader, "watched"), stats(standby, "watched")
    assert there["state"] == here["state"] == "Running"
    assert (
        there["funnel"]
        == here["funnel"]
        == {
            "arrived": 1,
            "consented": 1,
            "joined": 1,
            "started": 0,
            "in_room": 1,
        }
    )
    assert [(p["step"], p["present"]) for p in here["waiting"]] == [("joining", True)]
    assert [(p["step"], p["present"]) for p in there["waiting"]] == [("joining", False)]
    assert "identity" not in there["waiting"][0]
    assert "identity" in stats(standby, "watched", identities=True)["waiting"][0]
    with standby.admin() as admin:
        assert admin.get("/campaigns/supervise/watched").status_code == 200

    second, _ = await join(leader, campaign["slug"], "second")
    await second.send("Agree")
    urls = [await first.until("Starting"), await second.until("Starting")]
    there = stats(standby, "watched")
    assert there["funnel"]["started"] == 2
    assert there["state"] == "Busy"  # one session at a time, and it is live
    live = await live_until(
        standby, "watched", lambda a: bool(a["sessions"] and a["sessions"][0]["participants"])
    )
    (session,) = live["sessions"]
    assert session["live"] is True
    assert live["live"]["state"] == "Busy"
    assert len(session["participants"]) == 2

    await play_to_the_end(leader.settings.otree_public_url, urls)
    # The leader's poller sees them finish, ends the session and records it; the standby
    # reads it from the database, long before session_duration.
    live = await live_until(standby, "watched", lambda a: a["sessions"][0]["live"] is False)
    (session,) = live["sessions"]
    assert session["finished_at"] is not None
    assert [p["finished"] for p in session["participants"]] == [True, True]
    assert live["live"]["state"] == "Running"
    assert stats(standby, "watched")["state"] == "Running"
