"""A batch's writes (mastok/lightmill/batch_write.py: PostgreSQL's one statement, SQLite's four),
on both backends: a run changed since its post was checked writes nothing of that post; the
others in the batch are stored whole, stamped as SQLAlchemy stamps them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import String, bindparam, cast, select
from starlette.testclient import TestClient

from mastok.lightmill import tables as t
from mastok.lightmill.batch_write import Checked, write_batch
from mastok.lightmill.measure_values import encode
from mastok.lightmill.results import TrialResults
from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import imported, in_app, lock, post_trial, row_counts, services

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def anonymous(make_client: ClientFactory) -> TestClient:
    client = make_client(authenticated=False)
    imported(client)
    return client


def first_trial(client: TestClient, run: str, position: int) -> tuple[int, int]:
    """The run's id and the id of its trial at `position`."""

    async def read() -> tuple[int, int]:
        async with services(client).db.session() as session:
            row = (
                await session.execute(
                    select(t.LMRun.id, t.LMTrial.id)
                    .join(t.LMTrial, t.LMTrial.run_id == t.LMRun.id)
                    .join(t.LMExperiment, t.LMRun.experiment_id == t.LMExperiment.id)
                    .where(
                        t.LMExperiment.code == "pointing",
                        t.LMRun.code == run,
                        t.LMTrial.position == position,
                    )
                )
            ).one()
            return row[0], row[1]

    return in_app(client, read)


def measure_id(client: TestClient, code: str) -> int:
    async def read() -> int:
        async with services(client).db.session() as session:
            found = await session.scalar(select(t.LMMeasure.id).where(t.LMMeasure.code == code))
            assert found is not None
            return found

    return in_app(client, read)


def test_a_run_changed_since_its_checks_gets_nothing_written(anonymous: TestClient) -> None:
    s0, s1 = lock(anonymous, "S0"), lock(anonymous, "S1")
    assert post_trial(anonymous, "S0", 0, 0, s0, {"trial": {"time": 1}}).status_code == 200
    time = measure_id(anonymous, "time")
    before = row_counts(anonymous)
    stale_run, stale_trial = first_trial(anonymous, "S0", 1)
    run, trial = first_trial(anonymous, "S1", 0)
    results = TrialResults(s0, {"time": "7"}, [{"time": "8"}, {"time": "9"}])

    async def write() -> set[int]:
        async with services(anonymous).db.engine.begin() as connection:
            return await write_batch(
                connection,
                [
                    # Checked when S0 was at its first trial: it has moved on since.
                    Checked(stale_run, 0, s0, stale_trial, {"time": time}, results),
                    Checked(run, 0, s1, trial, {"time": time}, TrialResults(s1, *_values())),
                ],
                NOW,
            )

    assert in_app(anonymous, write) == {run}
    after = row_counts(anonymous)
    assert after["trial values"] == before["trial values"] + 1
    assert after["event values"] == before["event values"] + 2
    assert at(anonymous, "S0") == at_position(anonymous, "S0", 1)
    assert anonymous.get("/api/trial/pointing/S0/0/1").json()["completionDate"] is None
    stored = anonymous.get("/api/trial/pointing/S1/0/0").json()
    assert stored["measures"] == {"time": "3"}
    assert stored["events"] == [{"time": "4"}, {"time": "5"}]
    assert at(anonymous, "S1") == at_position(anonymous, "S1", 1)
    assert stored["completionDate"] == int(NOW.timestamp() * 1000)  # read back as stored
    assert stamps(anonymous, trial) == (as_written(anonymous, NOW),) * 2


def stamps(client: TestClient, trial: int) -> tuple[str | None, str | None]:
    """The trial's completion and its run's heartbeat as the database holds them (SQLite: the
    text written)."""

    async def read() -> tuple[str | None, str | None]:
        async with services(client).db.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(cast(t.LMTrial.completed_at, String), cast(t.LMRun.heartbeat_at, String))
                    .join(t.LMRun, t.LMRun.id == t.LMTrial.run_id)
                    .where(t.LMTrial.id == trial)
                )
            ).one()
            return row[0], row[1]

    return in_app(client, read)


def as_written(client: TestClient, moment: datetime) -> str | None:
    """The moment as SQLAlchemy writes it in a datetime column."""

    async def read() -> str | None:
        stamp = bindparam("moment", moment, type_=t.LMTrial.completed_at.type)
        async with services(client).db.engine.connect() as connection:
            return await connection.scalar(select(cast(stamp, String)))

    return in_app(client, read)


def at(client: TestClient, run: str) -> tuple[int, int]:
    """The run's current trial: its block and number."""
    trial = client.get(f"/api/run/pointing/{run}/current_trial").json()
    return trial["blockNumber"], trial["number"]


def at_position(client: TestClient, run: str, position: int) -> tuple[int, int]:
    plan = client.get(f"/api/run/pointing/{run}/plan").json()
    trials = [(block["number"], trial["number"]) for block in plan for trial in block["trials"]]
    return trials[position]


def _values() -> tuple[dict[str, str], list[dict[str, str]]]:
    return {"time": "3"}, [{"time": "4"}, {"time": "5"}]


def test_a_trials_events_are_stored_as_one_array_of_each_ones_values_as_encode_writes_them(
    anonymous: TestClient,
) -> None:
    """An event without values is a null and the others keep their places; each element is
    exactly `encode`'s text, whatever the values' characters; a trial whose events have no
    values stores none."""
    s0, s1 = lock(anonymous, "S0"), lock(anonymous, "S1")
    time = measure_id(anonymous, "time")
    ids = {"time": time}
    odd = 'é "quoted" back\\slash \t tab \u2028 \U0001f600'
    events = [{"time": odd}, {}, {"time": "12.5"}]
    run0, trial0 = first_trial(anonymous, "S0", 0)
    run1, trial1 = first_trial(anonymous, "S1", 0)

    async def write() -> set[int]:
        async with services(anonymous).db.engine.begin() as connection:
            return await write_batch(
                connection,
                [
                    Checked(run0, 0, s0, trial0, ids, TrialResults(s0, {}, events)),
                    Checked(run1, 0, s1, trial1, ids, TrialResults(s1, {}, [{}, {}])),
                ],
                NOW,
            )

    assert in_app(anonymous, write) == {run0, run1}
    assert stored_events(anonymous, trial0) == (
        f"[{encode(ids, events[0])},null,{encode(ids, events[2])}]"
    )
    assert stored_events(anonymous, trial1) is None
    assert anonymous.get("/api/trial/pointing/S0/0/0").json()["events"] == [
        {"time": odd},
        {},
        {"time": "12.5"},
    ]
    assert anonymous.get("/api/trial/pointing/S1/0/0").json()["events"] == [{}, {}]


def stored_events(client: TestClient, trial: int) -> str | None:
    async def read() -> str | None:
        async with services(client).db.engine.connect() as connection:
            return await connection.scalar(
                select(t.LMTrial.event_values).where(t.LMTrial.id == trial)
            )

    return in_app(client, read)
