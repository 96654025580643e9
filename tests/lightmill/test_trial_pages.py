"""A trial completed on PostgreSQL stays on the page its design's import wrote it to: the
UPDATE that completes it is a heap-only tuple (HOT) update, which writes no entry in any of
`lm_trials`' three indexes. On pages the import packed full, each completed trial moved to
another page, and each of its indexes took a new entry (they doubled as a study ran)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from tests.fixtures.app import ClientFactory
from tests.lightmill import bulk
from tests.lightmill.helpers import TEXT, in_app, lightmill, lock, services

TRIALS = 120  # a few pages' worth of imported trials, one block


def pages(client: TestClient) -> dict[int, int]:
    """Each trial's page in `lm_trials` (the block number of its current version's ctid)."""

    async def read() -> dict[int, int]:
        async with services(client).db.session() as session:
            rows = await session.execute(
                text("SELECT id, (ctid::text::point)[0]::int FROM lm_trials ORDER BY id")
            )
            return {row[0]: row[1] for row in rows}

    return in_app(client, read)


def trial_body(token: str, position: int) -> str:
    """What a pointing experiment posts: a few trial measures and 5 events of 3 measures each."""
    events = [{"x": 400.25 + 3.5 * e + position, "y": 288.5 - e, "hit": e == 4} for e in range(5)]
    trial = {"time": 600 + position, "durations": {"reaction": 215}, "hit": True}
    return json.dumps({"token": token, "measures": {"trial": trial, "events": events}})


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_completed_trial_stays_on_its_page(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False)
    design = bulk.big_design("hot", runs=1, blocks=1, trials=TRIALS)
    in_app(client, lightmill(client).store.import_design, design)
    token = lock(client, "R0", xp="hot")
    imported = pages(client)

    for n in range(TRIALS):
        response = client.post(
            f"/api/trial/hot/R0/0/{n}", content=trial_body(token, n), headers=TEXT
        )
        assert response.status_code == 200, response.text

    moved = {trial for trial, page in pages(client).items() if page != imported[trial]}
    assert len(imported) == TRIALS and not moved, f"{len(moved)} of {TRIALS} trials moved"
