"""Visits end to end on the real server, both databases, real oTree: a Prolific-style study
from its join URL to oTree's participant label and vars, every outcome with its Exit frame and
its row in the participants' records, the records' API, files and erasure."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from mastok.db.tables import Campaign, Participant
from mastok.otree.local import LocalOTree
from tests.fixtures.live import FaultyOTree, LiveServer, Peer, ServerFactory, join
from tests.live.helpers import running_campaign

OUTCOMES = (
    "started",
    "timeout",
    "full",
    "paused",
    "completed",
    "rejected",
    "left",
    "not_ready",
    "missing_id",
    "landing_failed",
    "redirected",
    "away",
)
PROLIFIC = {
    "identity_param": "PROLIFIC_PID",
    "capture_params": ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"],
}


def every_exit() -> dict[str, Any]:
    """An exit for each outcome but `away`, which nobody is there to see (refused)."""
    back = "https://app.prolific.example/complete?cc={code}&pid={PROLIFIC_PID}"
    return {o: {"code": o.upper(), "url": back} for o in OUTCOMES if o != "away"}


async def arrive(server: LiveServer, slug: str, pid: str | None, browser: str) -> Peer:
    """A Prolific participant up to its consent."""
    query = {"PROLIFIC_PID": pid, "STUDY_ID": "study-9"} if pid else {"STUDY_ID": "study-9"}
    peer = await server.participant(slug, query)
    assert await peer.expect("State") in ("Running", "Busy")
    await peer.send("Land", browser)
    await peer.expect("Resume")
    await peer.expect("Consent")
    return peer


async def waiting(server: LiveServer, slug: str, pid: str) -> Peer:
    peer = await arrive(server, slug, pid, f"browser-{pid}")
    await peer.send("Agree")
    assert await peer.until("Waiting") is not None
    return peer


async def exits_with(peer: Peer, outcome: str, reason: str) -> dict[str, Any]:
    exit_ = await peer.until("Exit")
    assert exit_["outcome"] == outcome and exit_["code"] == outcome.upper()
    assert await peer.expect("Disconnect") == reason
    return exit_


def records(server: LiveServer, namespace: str) -> list[dict[str, Any]]:
    with server.admin() as admin:
        found = admin.get(f"/api/campaigns/{namespace}/participants", params={"limit": 1000})
        assert found.status_code == 200, found.text
        return found.json()["participants"]


def set_state(server: LiveServer, namespace: str, state: str) -> None:
    with server.admin() as admin:
        answer = admin.patch(f"/api/campaigns/{namespace}", json={"state": state})
        assert answer.status_code == 200, answer.text


async def test_every_outcome_has_its_exit_and_its_record(make_server: ServerFactory) -> None:
    server = make_server(resume_grace=30)
    clock = server.clock
    campaign = running_campaign(
        server,
        "outcomes",
        per_session=2,
        max_sessions=2,
        waiting_limit=1,
        join_once=True,
        require_identity=True,
        ready_check_seconds=10,
        exits=every_exit(),
        **PROLIFIC,
    )
    slug, namespace = campaign["slug"], campaign["namespace"]

    nobody = await server.participant(slug, {"STUDY_ID": "study-9"})
    assert (await exits_with(nobody, "missing_id", "MissingId"))["url"] == (
        "https://app.prolific.example/complete?cc=MISSING_ID&pid="
    )
    bad = await server.participant(slug, {"PROLIFIC_PID": "bad"})
    await bad.expect("State")
    await bad.send("Land", "")
    await exits_with(bad, "landing_failed", "LandingFailed")

    leaver = await waiting(server, slug, "leaver")
    await leaver.send("Leave")
    exit_ = await exits_with(leaver, "left", "Left")
    assert exit_["url"] == "https://app.prolific.example/complete?cc=LEFT&pid=leaver"

    gone = await waiting(server, slug, "gone")
    await gone.close()
    timing_out = await waiting(server, slug, "slow")
    await timing_out.after(clock, "Exit", seconds=5)  # gone is away after 30 s, slow at 60 s
    assert await timing_out.expect("Disconnect") == "Timeout"

    # The ready check: one answers, one never does; then a newcomer and the first start.
    first = await waiting(server, slug, "first")
    silent = await waiting(server, slug, "silent")
    assert await first.until("ReadyCheck") == 10
    assert await silent.until("ReadyCheck") == 10
    await first.send("Ready")
    await silent.after(clock, "Exit", seconds=2)
    assert await silent.expect("Disconnect") == "NotReady"
    second = await waiting(server, slug, "second")
    for peer in (first, second):
        assert await peer.until("ReadyCheck") == 10
        await peer.send("Ready")
    start_url = await first.until("Starting")
    assert "participant_label=first" in start_url
    await second.until("Starting")

    back = await arrive_redirected(server, slug)
    assert back.endswith("participant_label=first")

    present = await arrive(server, slug, "twice", "browser-twice-1")
    again = await server.participant(slug, {"PROLIFIC_PID": "twice"})
    await again.expect("State")
    await again.send("Land", "browser-twice-2")
    await exits_with(again, "rejected", "LandingFailed")
    await present.close()

    # Busy (one session live of one at once): newcomers wait in pending, 2 x (2 - 1 + 1) = 4.
    pending = [await waiting(server, slug, f"p{i}") for i in range(4)]
    over = await arrive(server, slug, "over", "browser-over")
    await over.send("Agree")
    await exits_with(over, "full", "Full")
    set_state(server, namespace, "Paused")
    for peer in pending:
        await exits_with(peer, "paused", "Paused")
    late = await server.participant(slug, {"PROLIFIC_PID": "late"})
    assert await late.expect("State") == "Paused"  # session 1 is live: maybe theirs
    await late.send("Land", "browser-late")
    assert await late.expect("Paused") == "<p>We are paused.</p>\n"
    await exits_with(late, "paused", "Paused")
    set_state(server, namespace, "Completed")
    after = await server.participant(slug, {"PROLIFIC_PID": "after"})
    assert await after.expect("State") == "Completed"
    await after.send("Land", "browser-after")
    await after.expect("Completed")
    await exits_with(after, "completed", "Completed")

    rows = records(server, namespace)
    by_outcome: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_outcome.setdefault(row["outcome"], []).append(row)
    assert set(by_outcome) == set(OUTCOMES)
    started = sorted(by_outcome["started"], key=lambda r: r["identity"])
    assert [r["identity"] for r in started] == ["first", "second"]
    assert all(r["session_number"] == 1 and r["otree_session"] for r in started)
    assert all(
        r["params"] == {"PROLIFIC_PID": r["identity"], "STUDY_ID": "study-9"} for r in started
    )
    assert started[0]["ready"] is not None and started[0]["consented"] is not None
    assert [r["identity"] for r in by_outcome["away"]] == ["gone"]
    assert [r["identity"] for r in by_outcome["not_ready"]] == ["silent"]
    assert by_outcome["missing_id"][0]["identity"] is None
    assert by_outcome["missing_id"][0]["params"] == {"STUDY_ID": "study-9"}
    timed_out = by_outcome["timeout"][0]
    assert timed_out["waited_seconds"] >= 60
    assert all(row["ended"] is not None for row in rows)


async def arrive_redirected(server: LiveServer, slug: str) -> str:
    """`first` again, from another browser: sent back to its own live session."""
    peer = await server.participant(slug, {"PROLIFIC_PID": "first"})
    await peer.expect("State")
    await peer.send("Land", "another-browser")
    await peer.until("Exit")
    reason = await peer.expect("Disconnect")
    assert reason.startswith("Redirect:")
    return reason.removeprefix("Redirect:")


async def test_otree_reports_the_label_and_the_vars(
    make_server: ServerFactory, otree_server: LocalOTree
) -> None:
    server = make_server()
    given = {"started": {"code": "C0MPLETE", "url": "https://example.org/done?pid={PROLIFIC_PID}"}}
    campaign = running_campaign(server, "prolific", exits=given, **PROLIFIC)
    slug = campaign["slug"]
    peers = []
    for pid in ("5f0aa1", "5f0bb2"):
        query = {"PROLIFIC_PID": pid, "STUDY_ID": "s-1", "SESSION_ID": f"x-{pid}"}
        peer = await server.participant(slug, query)
        await peer.expect("State")
        await peer.send("Land", f"browser-{pid}")
        await peer.until("Consent")
        await peer.send("Agree")
        peers.append(peer)
    urls = [await peer.until("Starting") for peer in peers]
    headers = {"otree-rest-key": otree_server.rest_key}
    async with httpx.AsyncClient(base_url=otree_server.url, headers=headers) as otree:
        for url in urls:  # oTree sets the label when the participant starts
            assert (await otree.get(url, follow_redirects=False)).status_code in (302, 307)
        (row, _) = sorted(records(server, "prolific"), key=lambda r: r["identity"])
        code = row["otree_session"]
        wanted = ["mastok_group", "mastok_waited_seconds", "PROLIFIC_PID", "STUDY_ID"]
        wanted += ["SESSION_ID", "mastok_exit_code", "mastok_exit_url"]
        answer = await otree.post(f"/api/get_session/{code}", json={"participant_vars": wanted})
        assert answer.status_code == 200, answer.text
        participants = {p["label"]: p for p in answer.json()["participants"]}
    assert set(participants) == {"5f0aa1", "5f0bb2"}
    seen = participants["5f0aa1"]
    assert seen["mastok_group"] == "default"
    assert seen["STUDY_ID"] == "s-1" and seen["SESSION_ID"] == "x-5f0aa1"
    assert seen["mastok_exit_code"] == "C0MPLETE"
    assert seen["mastok_exit_url"] == "https://example.org/done?pid=5f0aa1"
    assert isinstance(seen["mastok_waited_seconds"], int)


def mastok(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastok", *args], capture_output=True, text=True, timeout=120
    )


async def test_the_records_as_files_and_pages_and_erased(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server()
    campaign = running_campaign(server, "files", per_session=3, **PROLIFIC)
    slug = campaign["slug"]
    for pid in ("=HYPERLINK(1)", "a2"):
        peer = await arrive(server, slug, pid, f"b-{pid}")
        await peer.close()
    # Open until the pause below reaches the room: its Paused frame comes once the room has
    # written the visits' ends (an erasure before that is refused: people are still there).
    watching = await arrive(server, slug, "a3", "b-a3")
    with server.admin() as admin:
        first = admin.get("/api/campaigns/files/participants", params={"limit": 2}).json()
        assert [r["identity"] for r in first["participants"]] == ["a3", "a2"]  # newest first
        rest = admin.get(first["next"]).json()
        assert [r["identity"] for r in rest["participants"]] == ["=HYPERLINK(1)"]
        assert rest["next"] is None
        assert admin.get("/api/campaigns/files/participants?limit=0").status_code == 400
        assert admin.get("/api/campaigns/nope/participants").status_code == 404
        download = admin.get("/campaigns/files/participants.csv")
        assert download.status_code == 200
        assert "files-participants.csv" in download.headers["content-disposition"]
        table = list(csv.DictReader(io.StringIO(download.text)))
        assert [r["PROLIFIC_PID"] for r in table] == ["a3", "a2", "'=HYPERLINK(1)"]
        assert table[0]["STUDY_ID"] == "study-9" and table[0]["SESSION_ID"] == ""
        url = server.settings.database_url
        exported = mastok(
            "export", "--campaign", "files", "--output-dir", str(tmp_path), "--database", url
        )
        assert exported.returncode == 0, exported.stderr
        assert (tmp_path / "files-participants.csv").read_text() == download.text
        as_lines = mastok(
            "export",
            "--campaign",
            "files",
            "--output-dir",
            str(tmp_path),
            "--format",
            "json",
            "--database",
            url,
        )
        assert as_lines.returncode == 0, as_lines.stderr
        lines = (tmp_path / "files-participants.jsonl").read_text().splitlines()
        assert [json.loads(line)["identity"] for line in lines] == ["a3", "a2", "=HYPERLINK(1)"]
        unknown = mastok(
            "export", "--campaign", "nope", "--output-dir", str(tmp_path), "--database", url
        )
        assert unknown.returncode == 1 and "no campaign named 'nope'" in unknown.stderr
        running = mastok("erase-identities", "--campaign", "files", "--database", url)
        assert running.returncode == 1 and "pause it first" in running.stderr
        refused = admin.delete("/api/campaigns/files/identities")
        assert refused.status_code == 409, refused.text
        admin.patch("/api/campaigns/files", json={"state": "Paused"})
        assert await watching.until("Paused") is not None
        erased = admin.delete("/api/campaigns/files/identities")
        assert erased.json() == {"erased": 3}
        after = admin.get("/api/campaigns/files/participants").json()["participants"]
    again = mastok("erase-identities", "--campaign", "files", "--database", url)
    assert again.returncode == 0 and "erased the identities of 0 visits" in again.stdout
    assert [(r["identity"], r["params"]) for r in after] == [(None, {})] * 3
    assert all(r["browser_id"] for r in after)  # the rest of each record stays


async def stored_identities(server: LiveServer, *identities: str) -> list[str]:
    """Every value of the participants' rows (but browser ids) that holds one of these."""
    async with server.database() as session:
        rows = (await session.scalars(select(Participant))).all()
    columns = [c.name for c in Participant.__table__.columns if c.name != "browser_id"]
    values = [str(getattr(row, column)) for row in rows for column in columns]
    return [value for value in values if any(pid in value for pid in identities)]


async def test_identities_are_not_erased_while_a_session_is_being_created(
    make_server: ServerFactory, faulty_otree: tuple[FaultyOTree, str]
) -> None:
    """A pause waits for the session being created, whose start links (labelled with the
    platform ids) are written once oTree answers: an erasure meanwhile would miss them."""
    proxy, proxy_url = faulty_otree
    asked, release = proxy.hold_creations()
    server = make_server(otree_api_url=proxy_url)
    campaign = running_campaign(server, "held", **PROLIFIC)
    first = await waiting(server, campaign["slug"], "pid-a")
    second = await waiting(server, campaign["slug"], "pid-b")
    assert await asyncio.to_thread(asked.wait, 10)
    set_state(server, "held", "Paused")
    with server.admin() as admin:
        early = admin.delete("/api/campaigns/held/identities")
    release.set()
    assert "participant_label=pid-a" in await first.until("Starting")
    assert "participant_label=pid-b" in await second.until("Starting")
    kept = await stored_identities(server, "pid-a", "pid-b")
    assert early.status_code == 409, f"answered {early.text}, yet the records keep {kept}"

    url = server.settings.database_url
    erased = mastok("erase-identities", "--campaign", "held", "--database", url)
    assert erased.returncode == 0, erased.stderr
    assert await stored_identities(server, "pid-a", "pid-b") == []


def figures(server: LiveServer, namespace: str) -> dict[str, Any]:
    with server.admin() as admin:
        found = admin.get(f"/api/campaigns/{namespace}/stats")
        assert found.status_code == 200, found.text
        return found.json()


async def waiting_with_token(server: LiveServer, slug: str) -> tuple[Peer, str]:
    peer, token = await join(server, slug, "browser-1")
    await peer.send("Agree")
    assert await peer.until("Waiting") is not None
    return peer, token


async def test_a_page_away_during_a_pause_and_back_is_one_visit(
    make_server: ServerFactory,
) -> None:
    server = make_server(resume_grace=30)
    campaign = running_campaign(server, "pause_away", exits={"paused": {"code": "P1"}})
    slug, namespace = campaign["slug"], campaign["namespace"]
    peer, token = await waiting_with_token(server, slug)
    await peer.close()
    set_state(server, namespace, "Paused")
    back = await server.participant(slug)
    assert await back.expect("State") == "Paused"
    await back.send("Resume", token)
    assert (await back.expect("Exit"))["code"] == "P1"
    assert await back.expect("Disconnect") == "Paused"
    found = figures(server, namespace)
    assert found["funnel"]["arrived"] == 1
    assert found["outcomes"]["paused"] == 1


async def test_a_page_away_while_its_campaign_was_paused_without_its_room_is_one_visit(
    make_server: ServerFactory,
) -> None:
    """The pause written while no room ran to end the visits (through a standby between two
    leaders, or with mastok killed before the room wrote them): the room rebuilt ends them as
    the pause would have, and a page back with its token is told so, in the same visit; it
    was turned away as a second visit (arrived 2: paused, and its first visit away later)."""
    server = make_server(resume_grace=30)
    campaign = running_campaign(server, "pause_gap", exits={"paused": {"code": "P1"}})
    slug, namespace = campaign["slug"], campaign["namespace"]
    _, token = await waiting_with_token(server, slug)
    server.stop()
    async with server.database() as session:
        await session.execute(
            update(Campaign).where(Campaign.namespace == namespace).values(state="Paused")
        )
        await session.commit()
    again = make_server(server.clock, resume_grace=30)
    back = await again.participant(slug)
    if (await back.next())["kind"] == "State":  # the page resumes with its token
        await back.send("Resume", token)
    await back.closed()
    found = figures(again, namespace)
    assert (found["funnel"]["arrived"], found["funnel"]["in_room"]) == (1, 0), found["funnel"]
    assert found["outcomes"]["paused"] == 1
    assert [(f["kind"], f.get("payload")) for f in back.received] == [
        ("State", "Paused"),
        ("Exit", {"outcome": "paused", "code": "P1", "url": None}),
        ("Disconnect", "Paused"),
    ]


async def started_link(server: LiveServer, slug: str, token: str) -> str:
    """What a page that comes back with the token of a live session's member is sent to."""
    page = await server.participant(slug)
    await page.expect("State")
    await page.send("Resume", token)
    url: str = await page.expect("Starting")
    await page.close()
    return url


async def test_an_erasure_through_the_api_leaves_no_identity_in_the_running_room(
    make_server: ServerFactory,
) -> None:
    await leaves_no_identity_in_the_running_room(make_server(), "api")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_erasure_by_the_cli_leaves_no_identity_in_the_running_room(
    make_server: ServerFactory, database_url: str
) -> None:
    """NOTIFYed to the room (on SQLite a running mastok learns of it when it restarts, as the
    README says)."""
    await leaves_no_identity_in_the_running_room(make_server(), "cli")


async def leaves_no_identity_in_the_running_room(server: LiveServer, erasing: str) -> None:
    """The room remembers who started a session and how the visits of pages away ended, for
    those pages to come back: once the identities are erased it sends none of them, as a room
    rebuilt from the erased records would."""
    url = server.settings.database_url
    back = "https://app.prolific.example/complete?cc={code}&pid={PROLIFIC_PID}"
    given = {"paused": {"code": "P", "url": back}}
    campaign = running_campaign(server, "forget", exits=given, **PROLIFIC)
    slug = campaign["slug"]
    tokens = {}
    peers = {}
    for pid in ("pid-a", "pid-b", "pid-c"):
        peer = await server.participant(slug, {"PROLIFIC_PID": pid})
        await peer.expect("State")
        await peer.send("Land", f"browser-{pid}")
        tokens[pid] = await peer.expect("Resume")
        await peer.until("Consent")
        await peer.send("Agree")
        await peer.until("Waiting")
        peers[pid] = peer
    assert "participant_label=pid-a" in await peers["pid-a"].until("Starting")
    await peers["pid-c"].close()  # the next pool's, away when the campaign is paused
    set_state(server, "forget", "Paused")
    if erasing == "api":
        with server.admin() as admin:
            erased = admin.delete("/api/campaigns/forget/identities")
        assert erased.json() == {"erased": 3}
        assert "pid-a" not in await started_link(server, slug, tokens["pid-a"])
    else:
        done = await asyncio.to_thread(
            mastok, "erase-identities", "--campaign", "forget", "--database", url
        )
        assert done.returncode == 0, done.stderr
        for _ in range(50):  # NOTIFYed: the room reads the campaign again in a moment
            if "pid-a" not in await started_link(server, slug, tokens["pid-a"]):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the room still sends pid-a's label")
    ended = await server.participant(slug)
    await ended.expect("State")
    await ended.send("Resume", tokens["pid-c"])
    exit_ = await ended.expect("Exit")
    assert exit_["code"] == "P" and "pid-c" not in exit_["url"]
