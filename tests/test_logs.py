"""The process's log lines (mastok/logs.py): `mastok serve` for real, its stderr read whole.
Every line starts with an ISO 8601 UTC time (text) or is one JSON object with its `time`
(json); uvicorn's access and socket lines, Alembic's and mastok's own are among them, masked."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from mastok import serving
from mastok.otree.local import free_port
from mastok.web import sockets
from tests.fixtures.processes import wait_until_healthy

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
SECRETS = ("s3cr3t", "5f1e")


def served_lines(tmp_path: Path, log_format: str) -> list[str]:
    """Everything `mastok serve` wrote to stderr around a LightMill request with a lock token
    and a join socket with a platform id."""
    port = free_port()
    env = {
        **os.environ,
        "MASTOK_MODE": "TEST",
        "MASTOK_LOG_FORMAT": log_format,
        "MASTOK_PORT": str(port),
        "MASTOK_ORIGIN": f"http://127.0.0.1:{port}",
        "MASTOK_SQLITE_PATH": str(tmp_path / "mastok.sqlite3"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "mastok", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process, lambda: process.communicate(timeout=10)[1])
        httpx.get(f"{base}/api/experiment/xp/run/S0/plan?token=s3cr3t")
        httpx.post(f"{base}/api/trial/xp/S0/0/0", content=b"{}")  # refused: its line stays

        async def join() -> None:
            url = f"ws://127.0.0.1:{port}/ws/join?slug=pilot&PROLIFIC_PID=5f1e"
            async with connect(url, origin=Origin(base)) as socket:  # no such campaign
                with pytest.raises(ConnectionClosed):
                    while True:
                        await socket.recv()
            with pytest.raises(InvalidStatus):  # no Origin header: refused, and logged
                async with connect(url):
                    pass

        asyncio.run(join())
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode in (0, -signal.SIGTERM), stderr  # uvicorn re-raises SIGTERM
    return stderr.splitlines()


def assert_masked(text: str) -> None:
    assert not any(secret in text for secret in SECRETS), text
    assert "token=***" in text
    assert '"WebSocket /ws/join?slug=pilot" [accepted]' in text
    assert "participant sockets refused to 127.0.0.1: 1, the last from another origin" in text
    assert '"WebSocket /ws/join?slug=pilot" 403' not in text  # mastok's own line instead
    assert "connection open" not in text and "connection closed" not in text  # websockets'
    assert "connection rejected" not in text


def lines_pid(lines: list[str]) -> str:
    started = next(line for line in lines if "Started server process [" in line)
    return started.rsplit("[", 1)[1].rstrip("]")


def assert_recent_utc(stamp: str) -> None:
    moment = datetime.fromisoformat(stamp)
    assert moment.utcoffset() == timedelta(0)


def test_text_lines_start_with_their_utc_time(tmp_path: Path) -> None:
    lines = served_lines(tmp_path, "text")

    assert lines
    for line in lines:
        assert ISO_UTC.match(line), line
        assert_recent_utc(line.split(" ", 1)[0])
    names = [line.split(" ")[2].rstrip(":") for line in lines]
    assert {"mastok", "uvicorn.error", "uvicorn.access"} <= set(names)
    assert any(name.startswith("alembic") for name in names)
    assert not any("setup plugin" in line for line in lines)  # Alembic's chatter at each start
    assert_masked("\n".join(lines))
    # uvicorn's last line, logged just before it re-raises SIGTERM: written by then
    assert lines[-1].endswith(f"uvicorn.error: Finished server process [{lines_pid(lines)}]")


def test_json_lines_are_one_object_each(tmp_path: Path) -> None:
    lines = served_lines(tmp_path, "json")

    records = [json.loads(line) for line in lines]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert ISO_UTC.fullmatch(record["time"]), record
        assert_recent_utc(record["time"])
        assert "color_message" not in record
    names = {record["logger"] for record in records}
    assert {"mastok", "uvicorn.error", "uvicorn.access"} <= names
    assert any(name.startswith("alembic") for name in names)
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any("GET /api/experiment/xp/run/S0/plan?token=*** HTTP/1.1" in m for m in access)
    assert any('"POST /api/trial/xp/S0/0/0 HTTP/1.1" 4' in m for m in access), access
    assert_masked("\n".join(r["message"] for r in records))


def access_record(method: str, path: str, status: int) -> logging.LogRecord:
    """A record as uvicorn's access log makes it."""
    args = ("127.0.0.1:5000", method, path, "1.1", status)
    return logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None
    )


def test_stored_trial_posts_leave_no_access_line() -> None:
    serving._quiet_per_connection_lines()
    access = logging.getLogger("uvicorn.access")
    stored = access_record("POST", "/mastok/api/trial/xp/S0/0/0", 200)
    kept = [
        access_record("POST", "/api/trial/xp/S0/0/0", 405),  # refused
        access_record("GET", "/api/trial/xp/S0/0/0?token=s3cr3t", 200),  # a client's read
        access_record("POST", "/api/import", 200),
    ]

    assert not access.filter(stored)
    assert all(access.filter(record) for record in kept)


def test_what_uvicorn_logs_after_a_denied_handshake_is_dropped_only_after_one() -> None:
    serving._quiet_per_connection_lines()
    socket_log = logging.getLogger("uvicorn.error")
    after_denial = [
        logging.LogRecord(
            "uvicorn.error",
            logging.ERROR,
            "",
            0,
            "ASGI callable returned without completing handshake.",
            None,
            None,
        ),
    ]

    def denied_then_filtered() -> list[bool]:
        sockets.handshake_denied.set(True)
        return [socket_log.filter(record) for record in after_denial]

    # A standby's 503: each handled in the task of its own handshake.
    assert contextvars.copy_context().run(denied_then_filtered) == [False]
    # Any other socket: uvicorn's error is a real one and stays.
    assert [socket_log.filter(record) for record in after_denial] == [True]
