"""Erasing a campaign's identities (DELETE /api/campaigns/{namespace}/identities) leaves no
platform id in its participants' records, on both databases; an erasure and a resume of the
campaign by another process at the same moment are ordered by its row's lock on PostgreSQL, by
the file's write lock on SQLite."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import Engine

from mastok.campaigns import store
from mastok.campaigns.service import CampaignService
from mastok.db import Database, async_url
from mastok.db.engine import sqlite_file
from mastok.db.tables import Campaign, OTreeSession, Participant
from mastok.otree import OTreeClient
from mastok.otree.urls import start_url
from mastok.sqlite_connection import connect
from mastok.states import CampaignState
from tests.campaigns.factories import campaign_input
from tests.fixtures.app import ClientFactory

PID = "5f0aa1e2b3"
# The backend waiting for a lock another one holds (the server's view, read afresh by each
# transaction).
WAITING_FOR = text("SELECT pid FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))")


async def a_started_visit(database_url: str, namespace: str) -> None:
    db = Database(async_url(database_url))
    try:
        async with db.session() as session:
            campaign_id = await session.scalar(
                select(Campaign.id).where(Campaign.namespace == namespace)
            )
            assert campaign_id is not None
            record = OTreeSession(
                campaign_id=campaign_id, number=1, mastok_id="mk:x:1", otree_code="s1", size=2
            )
            session.add(record)
            await session.flush()
            session.add(
                Participant(
                    campaign_id=campaign_id,
                    token=secrets.token_hex(8),
                    browser_id="b1",
                    identity=PID,
                    params={"PROLIFIC_PID": PID},
                    step="started",
                    outcome="started",
                    session_id=record.id,
                    otree_code="p1",
                    start_url=start_url("https://otree.example", "p1", PID),
                )
            )
            await session.commit()
    finally:
        await db.close()


async def stored(database_url: str) -> list[str]:
    """Every participant row's values, as text."""
    db = Database(async_url(database_url))
    try:
        async with db.session() as session:
            rows = (await session.scalars(select(Participant))).all()
            columns = Participant.__table__.columns.keys()
            return [str(getattr(row, column)) for row in rows for column in columns]
    finally:
        await db.close()


async def test_erasing_leaves_no_identity_in_the_records(
    make_client: ClientFactory, database_url: str
) -> None:
    client = make_client()
    given = campaign_input("erased", identity_param="PROLIFIC_PID")
    assert client.post("/api/campaigns", json=given).status_code == 201
    await a_started_visit(database_url, "erased")
    assert any(PID in value for value in await stored(database_url))

    assert client.delete("/api/campaigns/erased/identities").json() == {"erased": 1}
    values = await stored(database_url)
    assert not [value for value in values if PID in value]
    # The start link still leads to the participant's oTree page (without its label).
    assert "https://otree.example/InitializeParticipant/p1" in values


@pytest.fixture
async def other_process(database_url: str) -> AsyncIterator[Database]:
    """The database as another process has it (a standby, the CLI): its own connections."""
    db = Database(async_url(database_url))
    try:
        yield db
    finally:
        await db.close()


async def backend(session: Any) -> int:
    return int(await session.scalar(text("SELECT pg_backend_pid()")))


async def waiting_for(db: Database, holder: int, until: asyncio.Future[Any]) -> int | None:
    """The backend that waits for a lock `holder` holds, once one does; None if `until` is
    done first (what was to wait did not)."""
    while not until.done():
        async with db.session() as session:
            waiting = await session.scalar(WAITING_FOR, {"holder": holder})
        if waiting is not None:
            return int(waiting)
    return None


async def erasures(db: Database, namespace: str) -> tuple[str, int]:
    async with db.session() as session:
        campaign = await store.get_campaign(session, namespace)
        assert campaign is not None
        return campaign.state, campaign.identity_erasures


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_erasure_waits_for_a_resume_under_way_and_is_refused_once_it_is_running(
    make_client: ClientFactory, database_url: str, other_process: Database
) -> None:
    """The resume holds the campaign's row (as `CampaignService.update` does) when the erasure
    comes: the erasure waits for it, then finds the campaign Running."""
    client = make_client()
    given = campaign_input("resumed", identity_param="PROLIFIC_PID")
    assert client.post("/api/campaigns", json=given).status_code == 201
    await a_started_visit(database_url, "resumed")
    async with other_process.session() as resume:
        campaign = await store.get_campaign(resume, "resumed", for_update=True)
        assert campaign is not None
        campaign.state = CampaignState.RUNNING
        await resume.flush()
        erasing = asyncio.ensure_future(
            asyncio.to_thread(client.delete, "/api/campaigns/resumed/identities")
        )
        try:
            waited = await waiting_for(other_process, await backend(resume), erasing)
        finally:
            await resume.commit()
        answer = await erasing
    assert waited is not None, f"the erasure did not wait for the resume: {answer.text}"
    assert answer.status_code == 409, f"erased while Running: {answer.text}"
    assert answer.json() == {"error": "pause the campaign first: its waiting room still knows them"}
    assert any(PID in value for value in await stored(database_url))
    assert await erasures(other_process, "resumed") == ("Running", 0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_resume_waits_for_an_erasure_under_way_and_follows_it(
    make_client: ClientFactory, database_url: str, other_process: Database
) -> None:
    """The erasure is held at the visit it rewrites (its row locked here) when the resume
    comes: the resume waits for the erasure to end, then runs the campaign."""
    client = make_client()
    given = campaign_input("erasing", identity_param="PROLIFIC_PID")
    assert client.post("/api/campaigns", json=given).status_code == 201
    await a_started_visit(database_url, "erasing")
    resumer = CampaignService(other_process, OTreeClient("", "k"), "http://mastok.test/join/")
    async with other_process.session() as visit:
        await visit.execute(select(Participant).with_for_update())
        erasing = asyncio.ensure_future(
            asyncio.to_thread(client.delete, "/api/campaigns/erasing/identities")
        )
        try:
            eraser = await waiting_for(other_process, await backend(visit), erasing)
            assert eraser is not None, "the erasure did not come to the visit held"
            resuming = asyncio.ensure_future(resumer.update("erasing", {"state": "Running"}))
            waited = await waiting_for(other_process, eraser, resuming)
        finally:
            await visit.rollback()
        answer = await erasing
    await resuming
    assert waited is not None, "the campaign was resumed while its identities were erased"
    assert answer.json() == {"erased": 1}
    assert not [value for value in await stored(database_url) if PID in value]
    assert await erasures(other_process, "erasing") == ("Running", 1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_on_sqlite_an_erasure_that_comes_during_a_resume_waits_and_is_refused(
    make_client: ClientFactory, database_url: str, other_process: Database
) -> None:
    """Another process's resume holds the file's write lock, its state written but not yet
    committed (a Paused campaign to any other reader), when the erasure comes to its first
    write: the resume is committed then, and the erasure, waiting for the lock, finds the
    campaign Running. SQLite tells nobody who waits for a lock: it is enough to know that the
    erasure has come to its writes while the lock is held."""
    client = make_client()
    given = campaign_input("resumed", identity_param="PROLIFIC_PID")
    assert client.post("/api/campaigns", json=given).status_code == 201
    await a_started_visit(database_url, "resumed")
    path = sqlite_file(database_url)
    assert path is not None
    writing = threading.Event()

    def before_a_write(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        """The erasure's writes, whichever comes first: the visits' identities, or its count."""
        if statement.lstrip().startswith("UPDATE") and "identit" in statement:
            writing.set()

    resume = connect(path)
    try:
        resume.execute("BEGIN IMMEDIATE")
        resume.execute("UPDATE campaigns SET state = 'Running' WHERE namespace = 'resumed'")
        event.listen(Engine, "before_cursor_execute", before_a_write)
        try:
            erasing = asyncio.ensure_future(
                asyncio.to_thread(client.delete, "/api/campaigns/resumed/identities")
            )
            came = await asyncio.to_thread(writing.wait, 30)
        finally:
            event.remove(Engine, "before_cursor_execute", before_a_write)
            resume.execute("COMMIT")
        answer = await erasing
    finally:
        resume.close()
    assert came, f"the erasure came to no write: {answer.text}"
    assert answer.status_code == 409, f"erased while Running: {answer.text}"
    assert answer.json() == {"error": "pause the campaign first: its waiting room still knows them"}
    assert any(PID in value for value in await stored(database_url))
    assert await erasures(other_process, "resumed") == ("Running", 0)
