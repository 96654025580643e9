"""Helpers for LightMill's tests: design files, a client's calls, and the rows stored."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select
from starlette.testclient import TestClient

from mastok.app import Services
from mastok.lightmill import tables
from mastok.lightmill.importing import IMPORTED
from mastok.lightmill.measure_values import decode, decode_each
from mastok.lightmill.service import LightMill
from tests.fixtures.app import basic_auth

T = TypeVar("T")
DESIGNS = Path(__file__).parent / "designs"
XML = {"Content-Type": "application/xml"}
TEXT = {"Content-Type": "text/plain;charset=UTF-8"}
ORIGIN = {"Origin": "https://experiment.example.org"}
# What lightmill-connection sends with a design it imports (server-interface.js,
# postExperimentDesign), from the experiment's page.
CLIENT_XML = {**ORIGIN, "Content-Type": "text/xml", "Accept": "application/json"}
LM_TABLES = IMPORTED


def design(name: str = "pointing.xml") -> bytes:
    return (DESIGNS / name).read_bytes()


def import_design(client: TestClient, name: str = "pointing.xml") -> httpx.Response:
    return client.post("/api/import", content=design(name), headers={**basic_auth(), **XML})


def imported(client: TestClient, name: str = "pointing.xml") -> dict[str, Any]:
    response = import_design(client, name)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def lock(client: TestClient, run: str, xp: str = "pointing") -> str:
    response = client.get(f"/api/run/{xp}/{run}/lock")
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def post_trial(
    client: TestClient,
    run: str,
    block: int,
    trial: int,
    token: str,
    measures: dict[str, Any] | None = None,
    xp: str = "pointing",
) -> httpx.Response:
    """As lightmill-runner posts: JSON in a text/plain body (no CORS preflight)."""
    body = {"token": token, "measures": measures or {"trial": {}, "events": []}}
    return client.post(
        f"/api/trial/{xp}/{run}/{block}/{trial}", content=json.dumps(body), headers=TEXT
    )


def error(response: httpx.Response, status: int, type_: str) -> str:
    """The message of a LightMill error answer, after checking its status and type."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "type"}
    assert body["type"] == type_
    message: str = body["message"]
    return message


def services(client: TestClient) -> Services:
    found: Services = client.app.state.services  # type: ignore[attr-defined]
    return found


def lightmill(client: TestClient) -> LightMill:
    return services(client).lightmill


def in_app(client: TestClient, function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run a coroutine function on the app's own event loop (its database engine lives there)."""
    assert client.portal is not None, "the client is not started"
    return client.portal.call(function, *args)


def row_counts(client: TestClient) -> dict[str, int]:
    """Rows in every LightMill table, and the measure values stored (`trial values`, `event
    values`: a trial's are one JSON text, its events' one array of them)."""
    database = services(client).db

    async def count() -> dict[str, int]:
        async with database.session() as session:
            counts = {
                table.__tablename__: int(
                    await session.scalar(select(func.count()).select_from(table)) or 0
                )
                for table in LM_TABLES
            }
            trials = await session.scalars(select(tables.LMTrial.measure_values))
            counts["trial values"] = sum(len(decode(stored)) for stored in trials)
            events = await session.execute(
                select(tables.LMTrial.event_values, tables.LMTrial.event_count)
            )
            counts["event values"] = sum(
                len(values) for stored, count in events for values in decode_each(stored, count)
            )
            return counts

    return in_app(client, count)


def nothing_stored(client: TestClient) -> bool:
    return set(row_counts(client).values()) == {0}
