"""`mastok serve`'s LightMill options, on a real server process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from mastok.db import Database, async_url, migrate
from mastok.lightmill.design import parse_design
from mastok.lightmill.locks import LockPolicy
from mastok.lightmill.store import LightMillStore
from mastok.otree.local import free_port
from tests.lightmill.helpers import CLIENT_XML, DESIGNS, ORIGIN, design

MASTOK = [sys.executable, "-m", "mastok"]
START_SECONDS = 30  # for `mastok serve` to answer, and for any request of a test
POINTING = DESIGNS / "pointing.xml"
# The browser's preflight before lightmill-connection posts a design (text/xml).
IMPORT_PREFLIGHT = {
    **ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


def environment() -> dict[str, str]:
    return {**os.environ, "MASTOK_MODE": "TEST"}


@contextmanager
def serving(*args: str) -> Iterator[tuple[httpx.Client, list[str]]]:
    """`mastok serve ARGS` until /healthz answers; then its client, and its log once stopped."""
    port = free_port()
    process = subprocess.Popen(
        [*MASTOK, "serve", "--port", str(port), *args],
        env=environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    # Each request may take as long as the start, not httpx's 5 s: on a loaded machine a test
    # here failed once (its cause not captured), and a slow answer is not what it checks.
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=START_SECONDS)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "mastok serve did not start"
            time.sleep(0.05)
        yield client, log
    finally:
        client.close()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        log.extend(stderr.splitlines())


def test_volatile_server_imports_the_design_and_honours_the_flags() -> None:
    with serving(
        "--volatile",
        "--experiment-design",
        str(POINTING),
        "--unprotected-runs",
        "--force",
        "--fixed-measures",
        "--client-import",
    ) as (client, log):
        assert client.get("/api/experiments").json() == {"pointing": "Pointing"}
        first = client.get("/api/run/pointing/S0/lock").json()["token"]
        second = client.get("/api/run/pointing/S0/lock").json()["token"]  # unprotected
        body = {"token": second, "measures": {"trial": {"unknown": 1}}}
        refused = client.post("/api/trial/pointing/S0/0/0", content=json.dumps(body))
        preflight = client.options("/api/import", headers=IMPORT_PREFLIGHT)
        other = design().replace(b'<experiment id="pointing"', b'<experiment id="other"')
        by_client = client.post("/api/import", content=other, headers=CLIENT_XML)
        again = client.post("/api/import", content=design(), headers=CLIENT_XML)
        listed = client.get("/api/experiments").json()
    assert first != second
    assert refused.status_code == 400
    assert refused.json()["type"] == "WrongMeasureKey"  # fixed measures
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert by_client.status_code == 200, by_client.text  # client import
    assert by_client.headers["access-control-allow-origin"] == "*"
    assert (again.status_code, again.json()["type"]) == (400, "CannotImportExperiment")
    assert listed == {"pointing": "Pointing", "other": "Pointing"}
    assert any("LIGHTMILL RUNS ARE UNPROTECTED" in line for line in log)
    assert any("experiment clients may import new designs" in line for line in log)
    assert any("imported experiment 'pointing' (3 runs)" in line for line in log)


async def prepare(url: str) -> None:
    """A database where `pointing` is already imported, with S0 locked."""
    database = Database(async_url(url))
    try:
        await migrate(database)
        store = LightMillStore(database)
        await store.import_design(parse_design(POINTING.read_bytes()))
        await store.lock("pointing", "S0", LockPolicy(120))
    finally:
        await database.close()


def test_an_experiment_already_there_is_skipped(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mastok.sqlite3'}"
    asyncio.run(prepare(url))

    with serving("--database", url, "--experiment-design", str(POINTING)) as (client, log):
        assert client.get("/api/experiments").json() == {"pointing": "Pointing"}
        assert client.get("/api/run/pointing/S0").json()["locked"] is True  # not re-imported
        preflight = client.options("/api/import", headers=IMPORT_PREFLIGHT)
        by_client = client.post("/api/import", content=design(), headers=CLIENT_XML)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert by_client.status_code == 401  # clients may not import by default
    assert by_client.json()["type"] == "ImportNotAllowed"
    assert by_client.headers["access-control-allow-origin"] == "*"
    assert any(
        "experiment 'pointing' already imported: its design file is not read again" in line
        for line in log
    )


def test_a_broken_design_stops_start_up_in_one_line() -> None:
    broken = DESIGNS / "unknown_value.xml"
    started = subprocess.run(
        [*MASTOK, "serve", "--volatile", "--experiment-design", str(broken)],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert started.returncode == 1
    assert started.stderr.splitlines() == [
        f"Error: cannot import {broken}: line 11: <trial values=\"size=medium\">: factor 'size' "
        "has no value 'medium'"
    ]


def test_unprotected_runs_ask_first_and_no_aborts() -> None:
    asked = subprocess.run(
        [*MASTOK, "serve", "--volatile", "--unprotected-runs"],
        env=environment(),
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert asked.returncode == 1
    assert "never use them in a real study. Continue? [y/N]" in asked.stdout
    assert asked.stderr.strip() == "Aborted!"
