"""The database away (mastok/web/unavailable.py): every HTTP route answers 503 with its own
error shape and `Retry-After` while the database cannot be reached, and works again once it is
back, without a restart.

Both backends are made unreachable for real, so the errors are the drivers' own: SQLite's file
is moved away (a directory put in its place) after the pool's connections are closed; PostgreSQL
is reached through a TCP gate (tests/fixtures/gate.py) that the test shuts, cutting the pooled
connections and closing new ones.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from mastok.web import sockets
from mastok.web.unavailable import RETRY_AFTER, is_database_away
from tests.campaigns.factories import campaign_input
from tests.fixtures.app import ClientFactory
from tests.fixtures.gate import TcpGate
from tests.fixtures.postgres import PostgresServer
from tests.lightmill.helpers import ORIGIN, imported, in_app, lock, post_trial, services

Switch = tuple[Callable[[], None], Callable[[], None]]  # away, back


def sqlite_switch(client: TestClient, url: str) -> Switch:
    path = Path(url.split(":///", 1)[1])
    moved = path.with_name(path.name + ".away")
    db = services(client).db

    def away() -> None:
        in_app(client, db.engine.dispose)  # the pool's connections closed: the file is free
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                source.rename(moved.with_name(moved.name + suffix))
        path.mkdir()  # what SQLite finds instead: "unable to open database file"

    def back() -> None:
        shutil.rmtree(path)
        for suffix in ("", "-wal", "-shm"):
            source = moved.with_name(moved.name + suffix)
            if source.exists():
                source.rename(path.with_name(path.name + suffix))

    return away, back


@pytest.fixture
def away_and_back(
    request: pytest.FixtureRequest, database_url: str, make_client: ClientFactory
) -> tuple[TestClient, Switch]:
    """An admin's client of an app whose database the test can make unreachable, and back."""
    if database_url.startswith("sqlite"):
        client = make_client()
        return client, sqlite_switch(client, database_url)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    gate: TcpGate = request.getfixturevalue("postgres_gate")
    gated = database_url.replace(f":{server.port}/", f":{gate.port}/")
    return make_client(database_url=gated), (gate.shut, gate.open)


def test_every_route_answers_503_in_its_shape_then_recovers(
    away_and_back: tuple[TestClient, Switch], caplog: pytest.LogCaptureFixture
) -> None:
    client, (away, back) = away_and_back
    caplog.set_level(logging.WARNING)
    assert client.post("/api/campaigns", json=campaign_input("kept")).status_code == 201
    imported(client)
    token = lock(client, "S0")

    away()

    api = client.get("/api/campaigns")
    assert api.status_code == 503
    assert api.headers["retry-after"] == str(RETRY_AFTER)
    assert set(api.json()) == {"error"}
    created = client.post("/api/campaigns", json=campaign_input("lost"))
    assert created.status_code == 503
    page = client.get("/campaigns")
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "cannot be reached" in page.text
    assert page.headers["retry-after"] == str(RETRY_AFTER)
    assert client.get("/api/monitoring/experiments").status_code == 503
    for answer in (
        client.get("/api/experiments", headers=ORIGIN),
        client.get("/api/run/pointing/S0", headers=ORIGIN),
        post_trial(client, "S0", 0, 0, token, {"trial": {"time": 1}}),
    ):
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"] == "DatabaseUnavailable"
        assert set(answer.json()) == {"message", "type"}
        assert answer.headers["retry-after"] == str(RETRY_AFTER)
    assert (
        client.get("/api/experiments", headers=ORIGIN).headers["access-control-allow-origin"] == "*"
    )
    with (
        pytest.raises(WebSocketDenialResponse) as refused,  # a campaign read from the database
        client.websocket_connect("/ws/join?slug=any", headers=same_origin(client)),
    ):
        pass
    assert refused.value.status_code == 503
    assert refused.value.headers["retry-after"] == str(sockets.RETRY_AFTER)
    supervising = "/ws/campaigns/supervise?namespace=kept"
    with (
        client.websocket_connect(supervising, headers=same_origin(client)) as socket,
        pytest.raises(WebSocketDisconnect) as closed,  # the campaign is read once open
    ):
        socket.receive_json()
    assert closed.value.code == sockets.TRY_AGAIN_LATER
    assert client.get("/healthz").status_code == 200  # reads no database
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["database"] == "unreachable"

    back()

    assert [c["namespace"] for c in client.get("/api/campaigns").json()] == ["kept"]
    assert client.get("/campaigns").status_code == 200
    assert client.get("/api/experiments").json() == {"pointing": "Pointing"}
    assert post_trial(client, "S0", 0, 0, token, {"trial": {"time": 1}}).status_code == 200
    leading_again(client)  # its lock was lost with the database: a standby refuses the socket
    with client.websocket_connect("/ws/join?slug=any", headers=same_origin(client)) as socket:
        assert socket.receive_json() == {"kind": "Error", "payload": "no campaign at 'any'"}
    away_lines = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(away_lines) == 1  # one line for the outage, not one a request
    assert not [r for r in caplog.records if r.exc_info]


def leading_again(client: TestClient, within: float = 30.0) -> None:
    """Until the process leads again: it takes its lock back at its next check."""
    deadline = time.monotonic() + within
    while client.get("/readyz").json()["role"] != "leader":
        assert time.monotonic() < deadline, "the process did not lead again"
        time.sleep(0.05)


def same_origin(client: TestClient) -> dict[str, str]:
    return {"origin": services(client).settings.origin}


def test_other_database_errors_are_not_taken_for_an_outage() -> None:
    from sqlalchemy import exc

    integrity = exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    assert not is_database_away(integrity)
    assert is_database_away(ConnectionRefusedError(111, "Connection refused"))
    invalidated = exc.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    assert is_database_away(invalidated)
