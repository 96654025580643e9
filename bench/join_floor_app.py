"""The join's work-equivalent ceiling: a bare app that does at the wire and the database what a
join does in mastok, and nothing else (bench scenario 2).

Per participant, as mastok without grouping: on connect `State`; on `Land` a participant row
inserted, then `Resume` (its token) and `Consent`; on `Agree` the row updated once (consented and
queued in the joining pool: one statement, as mastok since issue 15's third round), then
`Instructions`, `JoiningSize` and `Waiting` to it and the new size to the others in the pool
(who is in it as of the Agree, as mastok's room tells after its turn's commit). The fourth
`Agree` of a campaign fills the pool: the session's number asked (the campaign's row updated, in the
same transaction), oTree's session created and read back and each participant's vars set (the same
calls to the same stub oTree, straight through aiohttp's client as mastok's), then one transaction
records it (the session's row, each participant's code and URL, the campaign's count) and each
member gets `Starting`, then `Disconnect` and the close. Each event's writes are one transaction,
committed together with those of the other events queued meanwhile (a group commit, as mastok's: one
transaction per event costs SQLite more than the join's other work), each statement straight to
aiosqlite as mastok's on SQLite (`mastok/live/sqlite_writes.py`). No state machine, no
supervisors, no checks: what is left when mastok's own machinery is taken away.

    python -m bench.join_floor_app PORT DATABASE_URL OTREE_URL
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    insert,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from bench.servers import CONSENT, INSTRUCTIONS, OTREE_KEY
from mastok.db.engine import async_url, create_engine
from mastok.live.sqlite_writes import stamp
from mastok.serving import serve_app

PER_SESSION = 4
CONFIG = "bench"  # the stub oTree's config (bench/stub_otree.py)
WAITING = {"waited": 0, "limit": 1800, "leave_after": 0}  # bench campaigns (bench/servers.py)

metadata = MetaData()
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(64), unique=True),
    Column("started_sessions", Integer, default=0),
    Column("session_asked", Integer, nullable=True),
)
sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", ForeignKey("campaigns.id")),
    Column("number", Integer),
    Column("mastok_id", String(128)),
    Column("otree_code", String(64)),
    Column("admin_url", String(512)),
    Column("size", Integer),
    Column("created_at", DateTime(timezone=True)),
)
participants = Table(
    "participants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign_id", ForeignKey("campaigns.id")),
    Column("token", String(64), unique=True),
    Column("browser_id", String(64)),
    Column("identity", String(256), nullable=True),
    Column("params", JSON, nullable=True),
    Column("step", String(16)),
    Column("group_label", String(64), nullable=True),
    Column("queued_at", DateTime(timezone=True), nullable=True),
    Column("consented_at", DateTime(timezone=True), nullable=True),
    Column("consent_hash", String(64), nullable=True),
    Column("session_id", ForeignKey("sessions.id"), nullable=True),
    Column("otree_code", String(64), nullable=True),
    Column("start_url", String(512), nullable=True),
    Column("assigned_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)
# Each statement straight to aiosqlite, in the transaction SQLAlchemy began: one crossing to the
# driver's thread each, as mastok's (`mastok/live/sqlite_writes.py`).
_ADD_PARTICIPANT = (
    "INSERT INTO participants (campaign_id, token, browser_id, step, created_at, updated_at) "
    "VALUES (?, ?, ?, 'landed', ?, ?)"
)
_AGREE = (  # the consent and the move into the pool, as mastok: one statement
    "UPDATE participants SET consented_at = ?, consent_hash = 'h', step = 'joining', "
    "group_label = 'default', queued_at = ?, updated_at = ? WHERE token IN (?)"
)
_ASK = "UPDATE campaigns SET session_asked = ? WHERE id = ?"
_ADD_SESSION = (
    "INSERT INTO sessions (campaign_id, number, mastok_id, otree_code, admin_url, size, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)
_ASSIGN = (
    "UPDATE participants SET step = 'started', session_id = ?, otree_code = ?, start_url = ?, "
    "assigned_at = ?, updated_at = ? WHERE token = ?"
)
_COUNT = "UPDATE campaigns SET started_sessions = ?, session_asked = NULL WHERE id = ?"


async def _driver(conn: AsyncConnection) -> Any:
    return (await conn.get_raw_connection()).driver_connection


def frame(kind: str, payload: Any = None) -> str:
    message: dict[str, Any] = {"kind": kind}
    if payload is not None:
        message["payload"] = payload
    return orjson.dumps(message).decode()  # as mastok's frames (mastok/live/protocol.py)


@dataclass
class Campaign:
    id: int
    slug: str
    started: int = 0
    pool: list[tuple[WebSocket, str]] = field(default_factory=list)


Write = Callable[[AsyncConnection], Awaitable[Any]]


class GroupCommit:
    """Writes queued while a transaction commits go together in the next one."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.queued: list[tuple[Write, asyncio.Future[Any]]] = []
        self.committing = False

    async def commit(self, write: Write) -> Any:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queued.append((write, done))
        if not self.committing:
            self.committing = True
            asyncio.get_running_loop().create_task(self._run())
        return await done

    async def _run(self) -> None:
        try:
            while self.queued:
                batch, self.queued = self.queued, []
                async with self.engine.begin() as conn:
                    results = [await write(conn) for write, _ in batch]
                for (_, done), result in zip(batch, results, strict=True):
                    done.set_result(result)
        finally:
            self.committing = False


class Floor:
    def __init__(self, engine: AsyncEngine, otree: aiohttp.ClientSession) -> None:
        self.engine = engine
        self.writes = GroupCommit(engine)
        self.otree = otree
        self.campaigns: dict[str, Campaign] = {}
        self.creating = asyncio.Lock()
        self.stamp = stamp  # a time as SQLAlchemy stores it, written as mastok writes it

    async def campaign(self, slug: str) -> Campaign:
        async with self.creating:
            if slug not in self.campaigns:
                async with self.engine.begin() as conn:
                    result = await conn.execute(insert(campaigns).values(slug=slug))
                    pk = result.inserted_primary_key[0]
                self.campaigns[slug] = Campaign(pk, slug)
            return self.campaigns[slug]

    async def join(self, ws: WebSocket) -> None:
        campaign = await self.campaign(ws.query_params.get("slug", ""))
        await ws.accept()
        await ws.send_text(frame("State", "Running"))
        land = orjson.loads(await ws.receive_text())
        token, now = secrets.token_urlsafe(16), self.stamp(datetime.now(UTC))
        row = (campaign.id, token, str(land.get("payload"))[:64], now, now)

        async def write(conn: AsyncConnection) -> None:
            await (await _driver(conn)).execute(_ADD_PARTICIPANT, row)

        await self.writes.commit(write)
        await ws.send_text(frame("Resume", token))
        await ws.send_text(frame("Consent", CONSENT))
        await ws.receive_text()  # Agree
        await self.agree(campaign, ws, token)
        if ws.application_state == WebSocketState.CONNECTED:  # until the start closes it
            await ws.receive_text()

    async def agree(self, campaign: Campaign, ws: WebSocket, token: str) -> None:
        now = self.stamp(datetime.now(UTC))
        campaign.pool.append((ws, token))
        members = list(campaign.pool)  # told once the Agree is written, as mastok's room
        full = len(members) == PER_SESSION
        if full:
            campaign.pool, campaign.started = [], campaign.started + 1

        async def write(conn: AsyncConnection) -> None:
            driver = await _driver(conn)
            await driver.execute(_AGREE, (now, now, now, token))
            if full:
                await driver.execute(_ASK, (number, campaign.id))

        number = campaign.started
        await self.writes.commit(write)
        size = frame("JoiningSize", f"{len(members)}/{PER_SESSION}")
        await ws.send_text(frame("Instructions", INSTRUCTIONS))
        await ws.send_text(size)
        await ws.send_text(frame("Waiting", WAITING))
        for other, _ in members:
            if other is not ws:
                await other.send_text(size)
        if full:
            await self.start(campaign, number, members)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.otree.request(method, path, json=body) as response:
            return json.loads(await response.read() or b"{}")

    async def start(
        self, campaign: Campaign, number: int, pool: list[tuple[WebSocket, str]]
    ) -> None:
        label = f"mk:{campaign.slug}:{number}"
        body = {"session_config_name": CONFIG, "num_participants": PER_SESSION, "label": label}
        created = await self.call("POST", "/api/sessions", body)
        session = await self.call("GET", f"/api/sessions/{created['code']}")
        codes = [p["code"] for p in session["participants"]]
        await asyncio.gather(
            *(
                self.call("POST", f"/api/participant_vars/{code}", {"vars": {"g": "default"}})
                for code in codes
            )
        )
        now = self.stamp(datetime.now(UTC))
        urls = [f"http://otree.invalid/InitializeParticipant/{code}" for code in codes]

        async def write(conn: AsyncConnection) -> None:
            driver = await _driver(conn)
            row = (campaign.id, number, label, session["code"], session.get("admin_url", ""))
            added = await driver.execute_fetchall(_ADD_SESSION, (*row, PER_SESSION, now))
            session_id = next(iter(added))[0]
            rows = [
                (session_id, code, url, now, now, token)
                for (_, token), code, url in zip(pool, codes, urls, strict=True)
            ]
            await driver.executemany(_ASSIGN, rows)
            await driver.execute(_COUNT, (number, campaign.id))

        await self.writes.commit(write)
        for (ws, _), url in zip(pool, urls, strict=True):
            await ws.send_text(frame("Starting", url))
            await ws.send_text(frame("Disconnect", "Start"))
            await ws.close(1000)


def create_app(database_url: str, otree_url: str) -> Starlette:
    engine = create_engine(async_url(database_url))
    floor: Floor | None = None

    async def lifespan(app: Starlette) -> Any:
        nonlocal floor
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        otree = aiohttp.ClientSession(  # as mastok's client (mastok/otree/client.py)
            base_url=otree_url,
            headers={"otree-rest-key": OTREE_KEY},
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=10),
        )
        floor = Floor(engine, otree)
        yield
        await otree.close()
        await engine.dispose()

    async def join(ws: WebSocket) -> None:
        assert floor is not None, "the lifespan made it"
        with contextlib.suppress(WebSocketDisconnect):
            await floor.join(ws)

    return Starlette(routes=[WebSocketRoute("/ws/join", join)], lifespan=lifespan)


def main() -> None:
    port, database_url, otree_url = sys.argv[1:4]
    serve_app(create_app(database_url, otree_url), "127.0.0.1", int(port))


if __name__ == "__main__":
    main()
