"""The trials and events exports: cell by cell after a client's run through the API, LightMill's
columns and their clashes, the web download, `mastok export`, and memory that stays flat."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import os
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import exc, text
from starlette.testclient import TestClient

from mastok.db import Database, async_url, migrate
from mastok.lightmill import export
from mastok.lightmill.design import parse_design
from mastok.lightmill.locks import LockPolicy
from mastok.lightmill.results import parse_results
from mastok.lightmill.store import LightMillStore
from tests.fixtures.app import ClientFactory
from tests.lightmill import bulk
from tests.lightmill.helpers import DESIGNS, imported, in_app, lock, post_trial, services

XP = "/experiments/pointing"
NOTE = 'a "quoted", comma\nand a new line'

# The effective factor values (distance, hand, size, technique) of every trial of pointing.xml.
FACTORS = {
    ("S0", 0, 0): ("near", "right", "large", "mouse"),
    ("S0", 0, 1): ("far", "right", "small", "mouse"),
    ("S0", 1, 0): ("far", "right", "small", "touch"),
    ("S0", 1, 1): ("near", "right", "large", "touch"),
    ("S0", 2, 0): ("near", "left", "large", "mouse"),
    ("S0", 2, 1): ("", "right", "large", "mouse"),
    ("S1", 0, 0): ("near", "right", "large", "touch"),
    ("S1", 1, 0): ("far", "right", "large", "mouse"),
    ("S2", 0, 0): ("near", "right", "large", "touch"),
    ("S2", 0, 1): ("far", "right", "large", "touch"),
}
PRACTICE = {("S0", 0), ("S1", 0)}
MEASURED = {("S0", 1): "0", ("S0", 2): "1", ("S1", 1): "0", ("S2", 0): "0"}

TRIAL_HEADER = (
    "experimentId,runId,blockNumber,measuredBlockNumber,trialNumber,practice,"
    "serverCompletionDate,distance,hand,size,technique,"
    "durations.movement,durations.reaction,hit,note,time"
)
EVENT_HEADER = (
    "experimentId,runId,blockNumber,measuredBlockNumber,trialNumber,practice,eventNumber,"
    "hit,label,x,y"
)


def results(block: int, trial: int) -> dict[str, Any]:
    return {
        "trial": {
            "time": 100 * block + trial,
            "durations": {"reaction": 200 + trial, "movement": 1.5},
            "hit": trial == 0,
            **({"note": NOTE} if (block, trial) == (1, 1) else {}),
        },
        "events": [
            {"x": block + 0.5, "y": -trial, "hit": False},
            {},
            {"label": f"b{block}t{trial}", "x": 1},
        ],
    }


def client_runs(client: TestClient) -> dict[tuple[str, int, int], int]:
    """All of S0 and the first trial of S1, through the API; their completion dates."""
    imported(client)
    dates = {}
    s0 = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    for run, trials in (("S0", s0), ("S1", [(0, 0)])):
        token = lock(client, run)
        for block, trial in trials:
            answer = post_trial(client, run, block, trial, token, results(block, trial))
            assert answer.status_code == 200, answer.text
            dates[(run, block, trial)] = answer.json()["completionDate"]
    return dates


def expected_trials(dates: dict[tuple[str, int, int], int], note: bool = True) -> list[list[str]]:
    """Measures: durations.movement, durations.reaction, hit, note (unless `note` is false:
    nobody posted one), time."""
    rows = []
    for (run, block, trial), factors in FACTORS.items():
        done = (run, block, trial) in dates
        measures = ["", "", "", "", ""] if note else ["", "", "", ""]
        if done:
            hit = "true" if trial == 0 else "false"
            measures = ["1.5", str(200 + trial), hit, str(100 * block + trial)]
            if note:
                measures.insert(3, NOTE if (block, trial) == (1, 1) else "")
        rows.append(
            [
                "pointing",
                run,
                str(block),
                MEASURED.get((run, block), ""),
                str(trial),
                "true" if (run, block) in PRACTICE else "false",
                str(dates[(run, block, trial)]) if done else "",
                *factors,
                *measures,
            ]
        )
    return rows


def expected_events(dates: dict[tuple[str, int, int], int]) -> list[list[str]]:
    rows = []
    for run, block, trial in dates:
        keys = [
            "pointing",
            run,
            str(block),
            MEASURED.get((run, block), ""),
            str(trial),
            "true" if (run, block) in PRACTICE else "false",
        ]
        rows += [
            [*keys, "0", "false", "", str(block + 0.5), str(-trial)],
            [*keys, "1", "", "", "", ""],
            [*keys, "2", "", f"b{block}t{trial}", "1", ""],
        ]
    return rows


def exported(client: TestClient, kind: export.Kind, format: export.Format = "csv") -> str:
    db = services(client).db
    out = io.StringIO(newline="")

    async def run() -> None:
        await export.write(db, "pointing", kind, out, format)

    in_app(client, run)
    return out.getvalue()


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


# --- The files, cell by cell ------------------------------------------------------------------


def test_the_trials_csv_after_a_client_run(client: TestClient) -> None:
    dates = client_runs(client)

    text = exported(client, "trials")

    assert text.startswith(TRIAL_HEADER + "\n")
    rows = cells(text)
    assert rows[0] == TRIAL_HEADER.split(",")
    assert len(rows) == 1 + 10
    for row, expected in zip(rows[1:], expected_trials(dates), strict=True):
        assert row == expected
    # CSV quoting keeps a value with quotes, a comma and a new line in its cell.
    assert '"a ""quoted"", comma\nand a new line"' in text
    # Completion dates are the API's `completionDate`.
    assert rows[1][6] == str(client.get("/api/trial/pointing/S0/0/0").json()["completionDate"])


def test_the_events_csv_after_a_client_run(client: TestClient) -> None:
    dates = client_runs(client)

    text = exported(client, "events")

    assert text.startswith(EVENT_HEADER + "\n")
    rows = cells(text)
    assert rows[1:] == expected_events(dates)
    assert len(rows) == 1 + 3 * 7
    # The events as the API gives them back.
    events = client.get("/api/trial/pointing/S0/1/0").json()["events"]
    header = rows[0]
    from_csv = [
        {k: v for k, v in zip(header[7:], row[7:], strict=True) if v}
        for row in rows[1:]
        if row[1:5] == ["S0", "1", "0", "0"]
    ]
    assert from_csv == events


def test_json_lines_hold_the_same_rows_typed(client: TestClient) -> None:
    dates = client_runs(client)

    trials = [json.loads(line) for line in exported(client, "trials", "json").splitlines()]
    events = [json.loads(line) for line in exported(client, "events", "json").splitlines()]

    assert len(trials) == 10 and len(events) == 21
    assert list(trials[0]) == TRIAL_HEADER.split(",")
    assert trials[0] == {
        "experimentId": "pointing",
        "runId": "S0",
        "blockNumber": 0,
        "measuredBlockNumber": None,
        "trialNumber": 0,
        "practice": True,
        "serverCompletionDate": dates[("S0", 0, 0)],
        "distance": "near",
        "hand": "right",
        "size": "large",
        "technique": "mouse",
        "durations.movement": "1.5",
        "durations.reaction": "200",
        "hit": "true",
        "note": None,
        "time": "0",
    }
    assert trials[3]["note"] == NOTE
    assert trials[-1]["serverCompletionDate"] is None
    assert events[2] == {
        "experimentId": "pointing",
        "runId": "S0",
        "blockNumber": 0,
        "measuredBlockNumber": None,
        "trialNumber": 0,
        "practice": True,
        "eventNumber": 2,
        "hit": None,
        "label": "b0t0",
        "x": "1",
        "y": None,
    }

    def as_cell(value: Any) -> str:
        if value is None:
            return ""
        return str(value).lower() if isinstance(value, bool) else str(value)

    csv_rows = cells(exported(client, "trials"))[1:]
    for row, line in zip(csv_rows, trials, strict=True):
        assert row == [as_cell(value) for value in line.values()]


def test_an_experiment_without_results_exports_its_plan(client: TestClient) -> None:
    imported(client)

    rows = cells(exported(client, "trials"))

    assert ",".join(rows[0]) == TRIAL_HEADER.replace(",note", "")
    assert rows[1:] == expected_trials({}, note=False)
    assert all(row[6] == "" and row[11:] == [""] * 4 for row in rows[1:])
    assert exported(client, "events") == EVENT_HEADER.replace(",label", "") + "\n"


# --- Columns ----------------------------------------------------------------------------------


def test_clashing_ids_are_prefixed() -> None:
    fixed = export.TRIAL_COLUMNS
    factors, measures = export.column_names(
        fixed, ["practice", "size", "time"], ["durations", "runId", "time"]
    )
    assert factors == ["_factor_practice", "size", "_factor_time"]
    assert measures == ["durations", "_measure_runId", "_measure_time"]
    # A prefixed name that is already taken gets a number.
    factors, measures = export.column_names(fixed, ["_factor_x", "x"], ["_factor_x", "x"])
    assert factors == ["_factor__factor_x", "_factor_x"]
    assert measures == ["_measure__factor_x", "_measure_x"]
    factors, measures = export.column_names(fixed, ["_factor_runId", "runId"], [])
    assert factors == ["_factor_runId", "_factor_runId_0"]


CLASH = b"""<experiment id="clash">
  <factor id="practice"><value id="p1"/><value id="p2" default="yes"/></factor>
  <factor id="time"><value id="t1" default="1"/></factor>
  <measure id="time" log="ok"/>
  <measure id="runId" log="ok"/>
  <measure id="eventNumber" cine="ok"/>
  <measure id="practice" cine_log="ok"/>
  <run id="R"><block><trial values="practice=p1"/></block></run>
</experiment>"""


def test_an_export_with_clashing_ids(client: TestClient) -> None:
    headers = {"Content-Type": "application/xml"}
    assert client.post("/api/import", content=CLASH, headers=headers).status_code == 200
    token = lock(client, "R", xp="clash")
    body = {"trial": {"time": 5, "runId": "r", "practice": "y"}, "events": [{"eventNumber": 9}]}
    assert post_trial(client, "R", 0, 0, token, body, xp="clash").status_code == 200

    trials = cells(client.get("/experiments/clash/trials.csv").text)
    events = cells(client.get("/experiments/clash/events.csv").text)

    assert trials[0][7:] == [
        "_factor_practice",
        "_factor_time",
        "_measure_practice",
        "_measure_runId",
        "_measure_time",
    ]
    assert trials[1][5:] == ["false", trials[1][6], "p1", "t1", "y", "r", "5"]
    assert events[0][6:] == ["eventNumber", "_measure_eventNumber", "_measure_practice"]
    assert events[1][6:] == ["0", "9", ""]


# --- The web download -------------------------------------------------------------------------


def test_the_experiment_page_streams_both_files(make_client: ClientFactory) -> None:
    client = make_client()
    dates = client_runs(client)

    trials = client.get(f"{XP}/trials.csv")
    events = client.get(f"{XP}/events.csv")

    for response, name in ((trials, "pointing-trials.csv"), (events, "pointing-events.csv")):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert response.headers["cache-control"] == "no-store"
    assert trials.text.startswith(TRIAL_HEADER + "\n")
    assert cells(trials.text)[1:] == expected_trials(dates)
    assert cells(events.text)[1:] == expected_events(dates)
    assert trials.text == exported(client, "trials")
    anonymous = make_client(authenticated=False)
    assert anonymous.get(f"{XP}/trials.csv").status_code == 401
    assert anonymous.get(f"{XP}/events.csv").status_code == 401


def test_file_names_are_safe() -> None:
    assert export.file_name("pointing", "trials") == "pointing-trials.csv"
    assert export.file_name("pointing", "events") == "pointing-events.csv"
    assert export.file_name("a b/../c", "trials", "json") == "a_b_.._c-trials.jsonl"
    assert export.file_name("a b/../c", "events", "json") == "a_b_.._c-events.jsonl"
    assert export.file_name("..", "trials") == "experiment-trials.csv"
    assert export.file_name("été", "trials") == "_t_-trials.csv"


# --- `mastok export` --------------------------------------------------------------------------


async def prepare(url: str) -> None:
    """pointing imported, S0's first two trials done by a client."""
    database = Database(async_url(url))
    try:
        await migrate(database)
        store = LightMillStore(database)
        await store.import_design(parse_design((DESIGNS / "pointing.xml").read_bytes()))
        token = (await store.lock("pointing", "S0", LockPolicy(120))).token
        for trial in (0, 1):
            body = json.dumps({"token": token, "measures": results(0, trial)}).encode()
            await store.record_trial(
                "pointing", "S0", 0, trial, parse_results(body), fixed_measures=False
            )
    finally:
        await database.close()


def read(path: Path) -> str:
    with path.open(newline="") as file:
        return file.read()


def mastok(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mastok", *args],
        env={**os.environ, "MASTOK_MODE": "TEST"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_writes_both_files(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.sqlite3'}"
    asyncio.run(prepare(url))
    out = tmp_path / "out" / "pointing"

    done = mastok("export", "--experiment", "pointing", "--output-dir", str(out), "--database", url)

    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'pointing-trials.csv'}" in done.stdout
    assert f"wrote {out / 'pointing-events.csv'}" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["pointing-events.csv", "pointing-trials.csv"]
    trials = cells(read(out / "pointing-trials.csv"))
    events = cells(read(out / "pointing-events.csv"))
    assert ",".join(trials[0]) == TRIAL_HEADER.replace(",note", "")
    assert len(trials) == 11
    assert trials[1][:6] + trials[1][7:] == [
        "pointing",
        "S0",
        "0",
        "",
        "0",
        "true",
        "near",
        "right",
        "large",
        "mouse",
        "1.5",
        "200",
        "true",
        "0",
    ]
    assert trials[1][6].isdigit() and trials[3][6] == ""
    assert ",".join(events[0]) == EVENT_HEADER
    assert [row[4:] for row in events[1:]] == [
        ["0", "true", "0", "false", "", "0.5", "0"],
        ["0", "true", "1", "", "", "", ""],
        ["0", "true", "2", "", "b0t0", "1", ""],
        ["1", "true", "0", "false", "", "0.5", "-1"],
        ["1", "true", "1", "", "", "", ""],
        ["1", "true", "2", "", "b0t1", "1", ""],
    ]

    as_json = mastok(
        "export",
        "--experiment",
        "pointing",
        "--output-dir",
        str(out),
        "--database",
        url,
        "--format",
        "json",
    )

    assert as_json.returncode == 0, as_json.stderr
    lines = (out / "pointing-trials.jsonl").read_text().splitlines()
    assert [json.loads(line)["trialNumber"] for line in lines] == [0, 1, 0, 1, 0, 1, 0, 0, 0, 1]
    assert len((out / "pointing-events.jsonl").read_text().splitlines()) == 6


def test_the_cli_names_what_is_missing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lab.sqlite3'}"
    asyncio.run(prepare(url))
    out = tmp_path / "out"

    unknown = mastok("export", "--experiment", "nope", "--output-dir", str(out), "--database", url)
    nowhere = tmp_path / "none.sqlite3"
    no_file = mastok(
        "export",
        "--experiment",
        "pointing",
        "--output-dir",
        str(out),
        "--database",
        f"sqlite:///{nowhere}",
    )
    no_option = mastok("export", "--output-dir", str(out))

    assert unknown.returncode == 1
    assert "Error: there is no experiment 'nope'" in unknown.stderr
    assert list(out.iterdir()) == []  # no file, not even a partial one
    assert no_file.returncode == 1
    assert f"Error: no database at {nowhere}" in no_file.stderr
    assert not nowhere.exists()
    assert no_option.returncode == 2
    assert "give either --experiment or --campaign" in no_option.stderr


# --- Memory -----------------------------------------------------------------------------------


class Sink:
    """A file that keeps nothing: counts lines."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


async def peak(db: Database, experiment: str, chunk: int) -> tuple[int, int, int]:
    """(peak traced bytes, trial lines, event lines) of exporting both files."""
    trials, events = Sink(), Sink()
    tracemalloc.start()
    try:
        await export.write(db, experiment, "trials", trials, chunk=chunk)
        await export.write(db, experiment, "events", events, chunk=chunk)
        _, high = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return high, trials.lines, events.lines


async def test_memory_does_not_grow_with_the_rows(database_url: str) -> None:
    db = Database(async_url(database_url))
    try:
        store = LightMillStore(db)
        for name, blocks in (("small", 10), ("large", 50)):  # 1,000 and 5,000 trials
            await store.import_design(bulk.big_design(name, runs=1, blocks=blocks, trials=100))
            await bulk.fill_results(db, name, events=3)
        await peak(db, "small", 250)  # warm up: compiled queries, pools

        small, small_trials, small_events = await peak(db, "small", 250)
        large, large_trials, large_events = await peak(db, "large", 250)

        assert (small_trials, small_events) == (1 + 1000, 1 + 3000)
        assert (large_trials, large_events) == (1 + 5000, 1 + 15000)
        # Read all at once, the peak grows about 4.5 times (measured); by chunks, 1.3 times.
        assert large < 2 * small, f"peak {small} B for 1,000 trials, {large} B for 5,000"

        # And the big one is right, cell by cell.
        out = io.StringIO(newline="")
        await export.write(db, "large", "trials", out, chunk=250)
        rows = cells(out.getvalue())
        assert len(rows) == 5001
        for position, row in enumerate(rows[1:]):
            block, trial = divmod(position, 100)
            measures = bulk.expected_trial_measures(position)
            assert row == [
                "large",
                "R0",
                str(block),
                "" if block == 0 else str(block - 1),
                str(trial),
                "true" if block == 0 else "false",
                str(int(bulk.COMPLETED_AT.timestamp() * 1000)),
                bulk.size(trial),
                bulk.technique(block),
                measures["durations.reaction"],
                measures["hit"],
                measures["time"],
            ]
        out = io.StringIO(newline="")
        await export.write(db, "large", "events", out, chunk=250)
        rows = cells(out.getvalue())
        for index, row in enumerate(rows[1:]):
            position, event = divmod(index, 3)
            expected = bulk.expected_event(position, event)
            assert row[6:] == [str(event), expected["hit"], expected["x"], expected["y"]]
    finally:
        await db.close()


@pytest.mark.parametrize("chunk", [1, 7, 1000])
async def test_chunks_do_not_change_the_files(database_url: str, chunk: int) -> None:
    db = Database(async_url(database_url))
    try:
        store = LightMillStore(db)
        await store.import_design(bulk.big_design("some", runs=3, blocks=4, trials=5))
        await bulk.fill_results(db, "some", events=2)
        files = []
        for size in (chunk, 10_000):
            trials, events = io.StringIO(), io.StringIO()
            await export.write(db, "some", "trials", trials, chunk=size)
            await export.write(db, "some", "events", events, chunk=size)
            files.append((trials.getvalue(), events.getvalue()))
        assert files[0] == files[1]
        assert files[0][0].count("\n") == 1 + 3 * 4 * 5
        assert files[0][1].count("\n") == 1 + 3 * 4 * 5 * 2
    finally:
        await db.close()


async def test_values_pivoted_in_python_or_by_the_database_are_the_same(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(async_url(database_url))
    try:
        await LightMillStore(db).import_design(bulk.big_design("some", runs=2, blocks=3, trials=4))
        await bulk.fill_results(db, "some", events=3)
        files = []
        for most in (export.PIVOT_MEASURES, 0):  # 0: every design pivoted in Python
            monkeypatch.setattr(export, "PIVOT_MEASURES", most)
            for kind in export.KINDS:
                for format in export.FORMATS:
                    out = io.StringIO()
                    await export.write(db, "some", kind, out, format, chunk=5)
                    files.append(out.getvalue())
        assert files[:4] == files[4:]
        assert files[0].count("\n") == 1 + 2 * 3 * 4
        assert files[2].count("\n") == 1 + 2 * 3 * 4 * 3
    finally:
        await db.close()


async def test_a_failing_scan_raises_as_sqlalchemy_does(database_url: str) -> None:
    """The hot scans go to the driver, yet their errors are SQLAlchemy's: the CLI and the web
    handle those."""
    db = Database(async_url(database_url))
    try:
        await LightMillStore(db).import_design(bulk.big_design("some", runs=1, blocks=1, trials=2))
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE lm_trial_factor_values"))
        with pytest.raises(exc.DBAPIError):
            await export.write(db, "some", "trials", io.StringIO())
    finally:
        await db.close()


def test_cells_a_spreadsheet_would_run_are_written_inert(client: TestClient) -> None:
    imported(client)
    token = lock(client, "S0")
    measures = {"trial": {'=HYPERLINK("x")': "@SUM(1)", "duration": -2}, "events": []}
    assert post_trial(client, "S0", 0, 0, token, measures).status_code == 200

    rows = cells(exported(client, "trials"))

    header, row = rows[0], rows[1]
    assert '\'=HYPERLINK("x")' in header
    assert not any(name.startswith("=") for name in header)
    assert row[header.index('\'=HYPERLINK("x")')] == "'@SUM(1)"
    assert not any(cell.startswith(("=", "@", "+")) for cell in row)


@pytest.mark.parametrize(
    ("stored", "cells"),
    [
        ('{"7": "a", "3": "b", "5": "c"}', ("a", "b", "c")),
        ('{"3": "b", "7": "a", "5": "c"}', ("a", "b", "c")),  # another order, placed anew
        ('{"5": "c"}', (None, None, "c")),
        ('{"9": "later", "7": "a"}', ("a", None, None)),  # registered after the start
        ("{}", (None, None, None)),
        (None, (None, None, None)),
    ],
)
def test_stored_values_land_in_their_columns(stored: str | None, cells: tuple[Any, ...]) -> None:
    columns = export.MeasureColumns([7, 3, 5])  # measure ids in the columns' order
    first = columns.cells('{"7": "x", "3": "y", "5": "z"}')  # an order placed before

    assert tuple(columns.cells(stored)) == cells
    assert tuple(first) == ("x", "y", "z")


# Values at a cell's start: every formula start, numbers `inert` leaves as they are (some a
# plain decimal, some not), and text around them.
STARTS = [
    "-1",
    "-1.5",
    "-.5",
    "-1.",
    "+3",
    "-1e5",
    "-2.5E-3",
    "+1e+2",
    "-0",
    "-1_000",
    "-inf",
    "-nan",
    "- 1",
    "-1-",
    "-1 ",
    "-1x",
    "-e5",
    "-.",
    "-",
    "+",
    "=",
    "=1+1",
    "@",
    "@SUM(1)",
    "\t1",
    "\t",
    "\r",
    "\rx",
    "1",
    "1.5",
    "x",
    "",
    "-\u0661",
    "\u22121",
    'a":"=b',
    '=1"',
    '-1"',
    "-1\\",
]


@pytest.mark.parametrize("spacing", ["orjson", "postgresql"])
def test_a_stored_objects_search_makes_the_same_cells_as_the_check_of_each(spacing: str) -> None:
    columns = export.MeasureColumns([1, 2, 3])
    csv_writer, json_writer = export._Writer([], "csv"), export._Writer([], "json")
    for first, second in itertools.product(STARTS, ["5", "-7", "=x"]):
        values = {"1": first, "3": second, "2": "ok"}
        stored = orjson.dumps(values).decode()
        if spacing == "postgresql":  # as PostgreSQL writes a jsonb's text
            stored = json.dumps(values, ensure_ascii=False)
        cells = columns.cells(stored)

        made = csv_writer.measures(columns, stored)

        assert list(made) == [export.inert(cell) for cell in cells], stored
        assert list(made) == list(csv_writer.text(cells))
        assert json_writer.measures(columns, stored) == cells
    assert list(csv_writer.measures(columns, None)) == [None, None, None]


def test_each_formula_start_is_caught_by_the_stored_objects_search() -> None:
    for start in export.FORMULA_STARTS:
        stored = orjson.dumps({"1": start + "x"}).decode()

        assert export._MAYBE_FORMULA.search(stored), start
        assert export._Writer([], "csv").measures(export.MeasureColumns([1]), stored) == [
            "'" + start + "x"
        ]
    for escaped in ("\\u0009", "\\u000d", "\\u000D"):  # JSON's long escapes of a tab, a return
        stored = '{"1": "' + escaped + 'x"}'

        assert export._Writer([], "csv").measures(export.MeasureColumns([1]), stored) == [
            "'" + orjson.loads(stored)["1"]
        ]


def test_one_column_of_stored_values() -> None:
    columns = export.MeasureColumns([4])

    assert tuple(columns.cells('{"4": "v"}')) == ("v",)
    assert tuple(columns.cells('{"8": "w"}')) == (None,)
    assert tuple(export.MeasureColumns([]).cells('{"4": "v"}')) == ()


def test_an_experiment_or_run_id_a_spreadsheet_would_run_is_inert_on_every_row() -> None:
    writer = export._Writer(["experimentId"], "csv")
    trials = [
        export.TrialRow(
            id=i,
            run=run,
            position=i,
            block=0,
            measured_block=None,
            number=i,
            practice=False,
            completed_at=None,
            factor_values=(),
            measures=(),
            event_count=0,
        )
        for i, run in enumerate(["=R1", "R2", "=R1", "-2"])
    ]

    keys = [writer.key("+xp", trial)[:2] for trial in trials]

    assert keys == [["'+xp", "'=R1"], ["'+xp", "R2"], ["'+xp", "'=R1"], ["'+xp", "-2"]]


def test_a_stored_time_is_read_in_utc_unless_it_says_its_zone() -> None:
    """SQLite's text is UTC without its zone, as SQLAlchemy writes it; a text with a zone keeps
    it; PostgreSQL's driver gives an aware time."""
    utc = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert export._moment("2026-03-01 12:00:00.123456") == utc
    assert export._moment("2026-03-01 12:00:00.123456").tzinfo is not None  # type: ignore[union-attr]
    assert export._moment("2026-03-01 14:00:00.123456+02:00") == utc
    assert export._moment("2026-03-01T12:00:00.123456Z") == utc
    assert export._moment(utc) == utc
    assert export._moment(None) is None
    assert export.epoch_ms(export._moment("2026-03-01 12:00:00.123456")) == 1772366400123


def test_a_trials_events_are_placed_a_row_each_and_searched_once_for_formulas() -> None:
    """An event without values (null, or past the stored array) has empty cells; a value a
    spreadsheet would run is made inert in the CSV only, and only where it is."""
    columns = export.MeasureColumns([1, 2])
    stored = orjson.dumps([{"1": "5", "2": "=x"}, None, {"2": "ok"}]).decode()
    csv_writer, json_writer = export._Writer([], "csv"), export._Writer([], "json")

    def placed(writer: export._Writer, stored: str | None, count: int) -> list[list[Any]]:
        return [list(cells) for cells in writer.measures_each(columns, stored, count)]

    empty = [None, None]
    assert placed(csv_writer, stored, 4) == [["5", "'=x"], empty, [None, "ok"], empty]
    assert placed(json_writer, stored, 4) == [["5", "=x"], empty, [None, "ok"], empty]
    assert placed(csv_writer, stored, 1) == [["5", "'=x"]]
    assert placed(csv_writer, None, 2) == [empty, empty]
    calm = orjson.dumps([{"1": "-3", "2": "ok"}]).decode()
    assert placed(csv_writer, calm, 1) == [["-3", "ok"]]
