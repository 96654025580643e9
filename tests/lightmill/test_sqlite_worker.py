"""The SQLite worker process (mastok/lightmill/sqlite_worker_main.py and sqlite_worker.py).

Its turns, driven through a pipe written beforehand (no process, no timing): each turn answers
in one line, writes one post a run in one transaction (another for the same run waits for the
next turn, also after its input ended), answers false for a post it does not move and for every
post of a batch that fails (writing nothing of it, and saying why), and null for a read that
fails. Then the real process behind an app on SQLite: posts are written by it and read back
whole; it ends with the app, killed if it does not; and if it is killed, ends before answering,
sends an error, answers garbage or cannot start, the app writes the posts itself, each stored
once, and logs why. It imports neither SQLAlchemy nor the server.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from mastok.lightmill import sqlite_worker
from mastok.lightmill.sqlite_batch import StoredPost
from mastok.lightmill.sqlite_worker import SqliteWorker
from mastok.lightmill.sqlite_worker_main import ERRORS, serve
from mastok.lightmill.trial_places import places_of
from mastok.sqlite_connection import connect
from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import (
    imported,
    in_app,
    lightmill,
    lock,
    post_trial,
    row_counts,
    services,
)
from tests.lightmill.test_batch_write import first_trial, measure_id
from tests.lightmill.test_trial_places import places

STAMP = "2026-12-02 10:00:00.000000"
ONE_EVENT = {"trial": {"time": 1}, "events": [{"x": 1}]}


@pytest.fixture
def database_url(sqlite_database_url: str) -> str:
    """The worker is SQLite's: these tests run on SQLite only."""
    return sqlite_database_url


@pytest.fixture
def anonymous(make_client: ClientFactory) -> TestClient:
    client = make_client(authenticated=False)
    imported(client)
    return client


def worker(client: TestClient) -> SqliteWorker:
    found = lightmill(client).store._worker
    assert found is not None
    return found


def turns(client: TestClient, *messages: list[Any]) -> list[list[list[Any]]]:
    """The lines `serve` writes for these messages, sent before it starts and then closed."""
    path = services(client).db.sqlite_file
    assert path is not None
    incoming, to_it = os.pipe()
    from_it, outgoing = os.pipe()
    os.write(to_it, b"".join(orjson.dumps(m) + b"\n" for m in messages))
    os.close(to_it)
    connection = connect(path)
    try:
        serve(connection, incoming, outgoing)
    finally:
        connection.close()
        os.close(incoming)
        os.close(outgoing)
    with os.fdopen(from_it, "rb") as answers:
        return [orjson.loads(line) for line in answers]


def write(ident: int, post: StoredPost) -> list[Any]:
    return ["write", ident, STAMP, *post]


def post_at(client: TestClient, run: str, position: int, token: str) -> StoredPost:
    """A post of the run's trial at `position`: its time 7, and one event whose time is 8."""
    run_pk, trial_pk = first_trial(client, run, position)
    time = measure_id(client, "time")
    events = json.dumps([{str(time): "8"}])
    return StoredPost(run_pk, position, token, trial_pk, 1, json.dumps({str(time): "7"}), events)


def completed(client: TestClient, run: str) -> int:
    """The run's completed trials, as stored."""
    service = lightmill(client)

    async def read() -> int:
        return (await service.store.run("pointing", run, service.policy)).completed_trials

    return in_app(client, read)


@pytest.fixture
def started(anonymous: TestClient) -> tuple[str, str]:
    """Runs S0 and S1 locked, S2's first trial posted (its measures are the experiment's)."""
    s2 = lock(anonymous, "S2")
    assert post_trial(anonymous, "S2", 0, 0, s2, {"trial": {"time": 1}}).status_code == 200
    return lock(anonymous, "S0"), lock(anonymous, "S1")


def test_a_turn_answers_in_one_line_one_post_a_run_the_next_waiting_for_the_next_turn(
    anonymous: TestClient, started: tuple[str, str]
) -> None:
    s0, s1 = started
    first, second = post_at(anonymous, "S0", 0, s0), post_at(anonymous, "S0", 1, s0)
    other = post_at(anonymous, "S1", 0, s1)
    keys = json.dumps([["pointing", "S1", 0, 0]])

    lines = turns(
        anonymous,
        write(1, first),
        write(2, second),
        ["places", 3, keys, 2],
        write(4, other),
    )

    assert [[ident for ident, _ in line] for line in lines] == [[3, 1, 4], [2]]
    assert [answer for _, answer in lines[0][1:]] == [True, True]
    assert lines[1] == [[2, True]]
    read = places_of(lines[0][0][1])
    assert len(read) == 2
    assert read == places(anonymous, [("pointing", "S1", 0, 0)], ahead=2)  # as the server reads
    assert completed(anonymous, "S0") == 2
    assert completed(anonymous, "S1") == 1
    stored = anonymous.get("/api/trial/pointing/S0/0/1").json()
    assert stored["measures"]["time"] == "7"
    assert stored["events"] == [{"time": "8"}]


def test_each_post_of_a_turn_is_stored_completed_at_its_own_time(
    anonymous: TestClient, started: tuple[str, str]
) -> None:
    # The server answers each post with its own time as `completionDate`; a later read (the
    # trial, the plan, the export) must give the same, whichever posts shared its turn.
    s0, s1 = started
    early, late = "2026-12-02 10:00:00.000000", "2026-12-02 10:00:05.000000"

    turns(
        anonymous,
        ["write", 1, early, *post_at(anonymous, "S0", 0, s0)],
        ["write", 2, late, *post_at(anonymous, "S1", 0, s1)],
    )

    first = anonymous.get("/api/trial/pointing/S0/0/0").json()["completionDate"]
    second = anonymous.get("/api/trial/pointing/S1/0/0").json()["completionDate"]
    assert second - first == 5000


def test_a_post_its_run_is_not_at_or_not_locked_with_is_answered_false(
    anonymous: TestClient, started: tuple[str, str]
) -> None:
    s0, _ = started
    ahead = post_at(anonymous, "S0", 1, s0)  # S0 is at its first trial
    wrong = post_at(anonymous, "S1", 0, "made-up")
    before = row_counts(anonymous)

    assert turns(anonymous, write(1, ahead), write(2, wrong)) == [[[1, False], [2, False]]]
    assert row_counts(anonymous) == before


def test_a_batch_that_fails_writes_nothing_answers_false_for_each_post_and_says_why(
    anonymous: TestClient, started: tuple[str, str]
) -> None:
    s0, s1 = started
    good = post_at(anonymous, "S0", 0, s0)
    # Its run moves on, but its trial's event count is missing: a NOT NULL constraint fails.
    bad = post_at(anonymous, "S1", 0, s1)._replace(event_count=None)
    before = row_counts(anonymous)

    [line] = turns(anonymous, write(1, good), write(2, bad))

    assert line[:2] == [[1, False], [2, False]]
    assert line[2][0] == ERRORS and "NOT NULL constraint failed" in line[2][1]
    assert row_counts(anonymous) == before
    assert completed(anonymous, "S0") == 0
    assert completed(anonymous, "S1") == 0


def test_a_read_that_fails_is_answered_null_and_its_error_sent_to_be_logged(
    anonymous: TestClient,
) -> None:
    [[answer, error]] = turns(anonymous, ["places", 1, "not JSON", 2])

    assert answer == [1, None]
    assert error[0] == ERRORS and "malformed JSON" in error[1]


# --- The process behind the app ---------------------------------------------------------------


def test_posts_are_written_by_the_worker_process_and_read_back_whole(
    anonymous: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[StoredPost] = []
    write_in_worker = SqliteWorker.write

    async def counted(self: SqliteWorker, post: StoredPost, stamp: str) -> bool:
        written.append(post)
        return await write_in_worker(self, post, stamp)

    monkeypatch.setattr(SqliteWorker, "write", counted)
    token = lock(anonymous, "S0")
    measures = {"trial": {"time": 1, "hit": True}, "events": [{"x": 1}, {"x": 2, "y": "a"}]}
    added = {"trial": {"time": 2, "new": "b"}, "events": []}
    for block, trial, posted in [(0, 0, measures), (0, 1, measures), (1, 0, measures)]:
        assert post_trial(anonymous, "S0", block, trial, token, posted).status_code == 200
    assert post_trial(anonymous, "S0", 1, 1, token, added).status_code == 200
    assert post_trial(anonymous, "S0", 2, 0, token, added).status_code == 200

    # An experiment's first post reads its measures, and a post adding one registers it: the
    # server writes them; the worker the others.
    assert [post.position for post in written] == [1, 2, 4]
    pid = worker(anonymous).pid
    assert pid is not None and pid != os.getpid()
    stored = anonymous.get("/api/trial/pointing/S0/1/0").json()
    assert stored["measures"] == {"hit": "true", "time": "1"}
    assert stored["events"] == [{"x": "1"}, {"x": "2", "y": "a"}]
    assert anonymous.get("/api/trial/pointing/S0/2/0").json()["measures"] == {
        "new": "b",
        "time": "2",
    }
    assert completed(anonymous, "S0") == 5


def test_the_worker_process_ends_with_the_app(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False)
    imported(client)
    token = lock(client, "S0")
    for trial in (0, 1):
        assert post_trial(client, "S0", 0, trial, token).status_code == 200
    pid = worker(client).pid
    assert pid is not None

    client.__exit__(None, None, None)

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_killed_worker_leaves_the_posts_to_the_server_each_stored_once(
    anonymous: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = lock(anonymous, "S0")
    for trial in (0, 1):
        assert post_trial(anonymous, "S0", 0, trial, token, ONE_EVENT).status_code == 200
    pid = worker(anonymous).pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    for block, trial in [(1, 0), (1, 1), (2, 0)]:
        assert post_trial(anonymous, "S0", block, trial, token, ONE_EVENT).status_code == 200

    assert completed(anonymous, "S0") == 5
    assert row_counts(anonymous)["event values"] == 5
    assert worker(anonymous).pid is None
    assert any("stopped answering" in r.getMessage() for r in caplog.records)


READ_ONE = "import sys; sys.stdin.buffer.readline(); "


@pytest.mark.parametrize(
    ("command", "logged"),
    [
        # Reads the first message, then exits without answering.
        ((sys.executable, "-c", READ_ONE), "stopped answering"),
        # Sends an error line for the server's log instead, then exits.
        (
            (sys.executable, "-c", READ_ONE + "print('[[0, \"boom\"]]', flush=True)"),
            "the SQLite worker: boom",
        ),
        # Answers what cannot be read, then would wait for ever: the server kills it.
        (
            (sys.executable, "-c", READ_ONE + "print('{', flush=True); sys.stdin.buffer.read()"),
            "the SQLite worker answered what cannot be read",
        ),
        (("/nonexistent/python",), "the SQLite worker could not start"),
    ],
    ids=["ends-before-answering", "sends-an-error", "answers-garbage", "cannot-start"],
)
def test_without_a_worker_the_server_writes_the_posts(
    make_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    command: tuple[str, ...],
    logged: str,
) -> None:
    monkeypatch.setattr(sqlite_worker, "worker_command", lambda path: command)
    client = make_client(authenticated=False)
    imported(client)
    token = lock(client, "S0")
    for block, trial in [(0, 0), (0, 1), (1, 0)]:
        assert post_trial(client, "S0", block, trial, token, ONE_EVENT).status_code == 200

    assert completed(client, "S0") == 3
    assert row_counts(client)["event values"] == 3
    assert worker(client).pid is None
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(logged in line for line in lines), lines


def test_a_worker_that_does_not_end_when_told_is_killed(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Answers the first message (a read of places) as failed, then ignores its input's end.
    stays = READ_ONE + "print('[[1, null]]', flush=True); import time; time.sleep(3600)"
    monkeypatch.setattr(sqlite_worker, "worker_command", lambda path: (sys.executable, "-c", stays))
    monkeypatch.setattr(sqlite_worker, "CLOSE_TIMEOUT", 0.05)
    client = make_client(authenticated=False)
    imported(client)
    token = lock(client, "S0")
    assert post_trial(client, "S0", 0, 0, token).status_code == 200
    pid = worker(client).pid
    assert pid is not None

    client.__exit__(None, None, None)

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert any("did not end within" in r.getMessage() for r in caplog.records)


def test_the_worker_process_imports_neither_sqlalchemy_nor_the_server() -> None:
    """It starts at a post: what it imports is the time that post waits."""
    code = (
        "import sys, mastok.lightmill.sqlite_worker_main; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mastok', 'sqlalchemy')))"
    )
    imported_modules = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert json.loads(imported_modules.replace("'", '"')) == [
        "mastok",
        "mastok.lightmill",
        "mastok.lightmill.sqlite_batch",
        "mastok.lightmill.sqlite_worker_main",
        "mastok.lightmill.trial_sql",
        "mastok.sqlite_connection",
    ]
