"""`/healthz` and `/readyz`: public, nothing secret in them, oTree's state from the background
probe (never asked while `/readyz` waits)."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

from tests.fixtures.app import ClientFactory


def ready_when(client: TestClient, otree: str, within: float = 15) -> tuple[int, dict[str, Any]]:
    """`/readyz` once the probe has seen oTree `otree` (bounded)."""
    deadline = time.monotonic() + within
    while True:
        answer = client.get("/readyz")
        if answer.json()["otree"] == otree or time.monotonic() > deadline:
            return answer.status_code, answer.json()
        time.sleep(0.05)


def test_a_process_alone_on_its_database_is_a_ready_leader(make_client: ClientFactory) -> None:
    anonymous = make_client(authenticated=False)
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    status, report = ready_when(anonymous, "ok")
    assert (status, report) == (200, {"role": "leader", "database": "ok", "otree": "ok"})


def test_otree_away_does_not_make_mastok_unready(
    make_client: ClientFactory, refused_url: str
) -> None:
    client = make_client(authenticated=False, otree_api_url=refused_url)
    status, report = ready_when(client, "unreachable")
    assert (status, report) == (200, {"role": "leader", "database": "ok", "otree": "unreachable"})
    assert refused_url not in client.get("/readyz").text
