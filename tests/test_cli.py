"""The `mastok` command: help, migrate, PROD refusal, and `mastok dev` (what `make dev` runs)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mastok import config_files
from mastok.config import BY_NAME
from mastok.config_files import sentence
from mastok.otree.local import free_port, port_is_free
from tests.fixtures.processes import wait_until_healthy

MASTOK = [sys.executable, "-m", "mastok"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MASTOK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MASTOK_MODE": "TEST", **(env or {})},
    )


def test_help_everywhere() -> None:
    top = run("--help")
    assert top.returncode == 0
    for command in ("serve", "migrate", "dev"):
        assert command in top.stdout
        sub = run(command, "--help")
        assert sub.returncode == 0, sub.stderr
        assert "Usage: python -m mastok" in sub.stdout
    assert "--database" in run("serve", "--help").stdout


def test_the_commands_that_do_not_serve_load_no_web_server_and_no_migrations() -> None:
    # `mastok export` is a fresh process each time: these were 0.5 s of its 100,000 trials'
    # 4.5 s (bench scenario 6), before the export read a row.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, mastok.cli; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    assert "click" in loaded and "sqlalchemy" in loaded
    for heavy in ("uvicorn", "starlette", "httpx", "aiohttp", "alembic", "mastok.app"):
        assert heavy not in loaded, heavy


def test_flags_that_override_a_setting_say_so_with_its_help() -> None:
    serve = " ".join(run("serve", "--help").stdout.split())
    for name in (
        "host",
        "port",
        "database_url",
        "unprotected_runs",
        "fixed_measures",
        "client_import",
    ):
        row = BY_NAME[name]
        assert f"{sentence(row)} [{row.variable}; default: " in serve


@pytest.mark.parametrize("format_", ["env", "yaml", "markdown", "text"])
def test_settings_prints_the_table(format_: str) -> None:
    printed = run("settings", "--format", format_)

    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == config_files.FORMATS[format_]()
    assert "MASTOK_LOCK_TIMEOUT" in printed.stdout or "lock_timeout" in printed.stdout


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    database = tmp_path / "fresh.sqlite3"
    done = run("migrate", "--database", f"sqlite:///{database}")
    assert done.returncode == 0, done.stderr
    assert f"migrated {database}" in done.stdout
    tables = {
        name
        for (name,) in sqlite3.connect(database).execute(
            "select name from sqlite_master where type='table'"
        )
    }
    assert {"campaigns", "participants", "sessions", "alembic_version"} <= tables


def test_prod_refuses_unsafe_settings_in_one_line() -> None:
    refused = run(
        "serve",
        "--unprotected-runs",
        "--force",
        env={
            "MASTOK_MODE": "PROD",
            "MASTOK_PASSWORD": "mastok",
            "MASTOK_OTREE_API_URL": "",
            "MASTOK_OTREE_PUBLIC_URL": "http://otree.example",
            "MASTOK_OTREE_API_KEY": "",
        },
    )
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert lines == [
        "Error: PROD mode refuses these settings: set MASTOK_ORIGIN (the public origin people "
        "reach mastok at, not the default), MASTOK_PASSWORD (not the default, 12 characters or "
        "more), MASTOK_SECRET_KEY (a long random text, the same for every instance), "
        "MASTOK_OTREE_API_URL, MASTOK_OTREE_API_KEY, MASTOK_UNPROTECTED_RUNS (off)"
    ]


def test_bad_settings_are_named(tmp_path: Path) -> None:
    refused = run("migrate", env={"MASTOK_PORT": "eighty"})
    assert refused.returncode != 0
    assert "MASTOK_PORT must be a number" in refused.stderr


def test_dev_starts_the_demo_otree_and_mastok_then_stops_both(tmp_path: Path) -> None:
    port, otree_port = free_port(), free_port()
    env = {
        **os.environ,
        "MASTOK_MODE": "TEST",
        "MASTOK_SQLITE_PATH": str(tmp_path / "data" / "mastok.sqlite3"),
    }
    env.pop("MASTOK_ORIGIN", None)
    process = subprocess.Popen(
        [*MASTOK, "dev", "--port", str(port), "--otree-port", str(otree_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        explain = process.stderr.read  # type: ignore[union-attr]
        wait_until_healthy(f"http://127.0.0.1:{port}", process, explain)
        admin = httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=("mastok", "mastok"))
        configs = admin.get("/api/otree/configs").json()
        assert {c["name"] for c in configs} == {"survey", "guess_two"}
        dashboard = admin.get("/api/dashboard").json()
        assert dashboard["otree"]["public_url"] == f"http://127.0.0.1:{otree_port}"
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert f"mastok admin at http://localhost:{port}/" in stderr
    assert "login: mastok  password: mastok" in stderr
    # The same logging as `mastok serve` (mastok/logs.py): each line starts with its UTC time.
    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z INFO mastok: mastok ready", stderr, re.M)
    assert (tmp_path / "data" / "mastok.sqlite3").exists()
    assert port_is_free("127.0.0.1", otree_port), "oTree was left running"


def test_healthcheck_follows_the_configured_port(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MASTOK_MODE": "TEST", "MASTOK_PORT": str(port)}
    process = subprocess.Popen(
        [*MASTOK, "serve", "--volatile"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process, process.stderr.read)  # type: ignore[union-attr]
        healthy = run("healthcheck", env={"MASTOK_PORT": str(port)})
        assert healthy.returncode == 0, healthy.stderr
        assert healthy.stdout == f"http://127.0.0.1:{port}/healthz: ok\n"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    refused = run("healthcheck", env={"MASTOK_PORT": str(port)})
    assert refused.returncode != 0
    assert f"http://127.0.0.1:{port}/healthz" in refused.stderr


def test_mastok_root_says_where_config_templates_and_front_are(tmp_path: Path) -> None:
    shown = subprocess.run(
        [sys.executable, "-c", "from mastok.config import PROJECT_ROOT; print(PROJECT_ROOT)"],
        capture_output=True,
        text=True,
        env={**os.environ, "MASTOK_ROOT": str(tmp_path)},
        timeout=60,
    )
    assert shown.stdout.strip() == str(tmp_path)
    missing = run("migrate", env={"MASTOK_ROOT": str(tmp_path)})
    assert f"{tmp_path / 'config.yml'} not found" in missing.stderr
