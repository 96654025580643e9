"""The `mastok` command (also `python -m mastok`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from mastok import config_files, heap
from mastok.config import BY_NAME, ConfigError, Settings, load_settings
from mastok.db import Database, async_url, file_lock, migrate

if TYPE_CHECKING:
    from mastok.db.tables import Campaign
    from mastok.lightmill.design import Design

# The web stack, oTree's client and the audit log are imported by the commands that use them:
# `mastok export` runs in a fresh process each time, and they were about 0.4 s of it.

DEMO_OTREE_PORT = 8180
PORT = click.IntRange(1, 65535)
Command = TypeVar("Command", bound=Callable[..., Any])


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings().with_overrides(**overrides)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def setting_option(name: str, *flags: str, **options: Any) -> Callable[[Command], Command]:
    """A flag that overrides the setting `name`, with the setting's help, variable and default
    (a boolean setting makes an on-only flag: leaving it out keeps the setting)."""
    row = BY_NAME[name]
    default = config_files.shown(row.default) or "empty"
    help = f"{config_files.sentence(row)} [{row.variable}; default: {default}]"
    if row.type is bool:
        options = {"is_flag": True, "default": None, **options}
    elif row.type in (int, float):
        options = {"type": row.type, **options}
    return click.option(*(flags or ["--" + name.replace("_", "-")]), help=help, **options)


def _check(settings: Settings) -> None:
    try:
        settings.check_production()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _run(settings: Settings, designs: Sequence[Design] = ()) -> None:
    from mastok.app import create_app
    from mastok.serving import serve_app

    with _sqlite_held(settings):
        serve_app(
            create_app(settings, designs),
            settings.host,
            settings.port,
            settings.log_format,
            settings.trusted_proxies,
        )


@contextlib.contextmanager
def _sqlite_held(settings: Settings) -> Iterator[None]:
    """One process per SQLite file: exit at once if another serves it (PostgreSQL: processes
    share the database, one of them leading)."""
    url = async_url(settings.database_url, settings.sqlite_path)
    if not url.startswith("sqlite") or ":memory:" in url or url.endswith("://"):
        yield
        return
    try:
        handle = file_lock.hold(Path(url.split(":///", 1)[1].split("?", 1)[0]))
    except (file_lock.DatabaseInUse, OSError) as error:
        raise click.ClickException(str(error)) from None
    with handle:
        yield


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mastok: campaigns, a live waiting room and oTree sessions for online experiments."""


@main.command()
@setting_option("host")
@setting_option("port", type=PORT)
@setting_option("database_url", "--database")
@click.option(
    "--experiment-design",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="LightMill: import this TouchStone design at start (skipped if its id is there).",
)
@setting_option("unprotected_runs")
@setting_option("fixed_measures")
@setting_option("client_import")
@click.option("--volatile", is_flag=True, help="Keep everything in memory (in-memory SQLite).")
@click.option("--force", is_flag=True, help="Do not ask for confirmations.")
def serve(
    host: str | None,
    port: int | None,
    database: str | None,
    experiment_design: Path | None,
    unprotected_runs: bool | None,
    fixed_measures: bool | None,
    client_import: bool | None,
    volatile: bool,
    force: bool,
) -> None:
    """Apply migrations and serve mastok."""
    if volatile:
        if database:
            raise click.UsageError("--volatile and --database exclude each other")
        database = "sqlite:///:memory:"
    settings = _settings(
        host=host,
        port=port,
        database_url=database,
        unprotected_runs=unprotected_runs,
        fixed_measures=fixed_measures,
        client_import=client_import,
    )
    _check(settings)
    designs = [_read_design(experiment_design)] if experiment_design else []
    if unprotected_runs and not force:
        click.confirm(
            "Unprotected runs let any client take over a run another client is doing: "
            "never use them in a real study. Continue?",
            abort=True,
        )
    _run(settings, designs)


def _read_design(path: Path) -> Design:
    from mastok.lightmill.design import DesignError, parse_design

    try:
        return parse_design(path.read_bytes())
    except (OSError, DesignError) as error:
        raise click.ClickException(f"cannot import {path}: {error}") from None


@main.command(name="migrate")
@setting_option("database_url", "--database")
def migrate_command(database: str | None) -> None:
    """Bring the database schema up to date, then exit."""
    settings = _settings(database_url=database)

    async def run() -> None:
        db = Database(async_url(settings.database_url, settings.sqlite_path))
        try:
            await migrate(db)
        finally:
            await db.close()

    asyncio.run(run())
    click.echo(f"migrated {_describe(settings)}")


@main.command(name="export")
@click.option(
    "--experiment", "experiment", help="A LightMill experiment's id: its trials and events."
)
@click.option("--campaign", "campaign", help="A campaign's namespace: its participants' records.")
@click.option(
    "--output-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the files (created if missing).",
)
@click.option(
    "--format",
    "format_",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv: LightMill's columns; json: JSON Lines (one object a line, same keys).",
)
@setting_option("database_url", "--database")
def export_command(
    experiment: str | None,
    campaign: str | None,
    output_dir: Path,
    format_: str,
    database: str | None,
) -> None:
    """Write a LightMill experiment's trials and events files, or a campaign's participants.

    ID-trials.csv and ID-events.csv, or NAMESPACE-participants.csv (.jsonl with --format json)
    in the output folder; a file appears only once complete. Participants' files hold their
    platform identities: keep them as safely as the database.
    """
    if (experiment is None) == (campaign is None):
        raise click.UsageError("give either --experiment or --campaign")
    settings = _settings(database_url=database)
    url = _existing_database(settings)
    heap.set_for_one_job()
    if campaign is not None:
        _export_participants(url, settings, campaign, output_dir, format_)
        return
    assert experiment is not None
    from mastok.lightmill import export
    from mastok.lightmill.errors import UnknownElement

    fmt: export.Format = "json" if format_ == "json" else "csv"
    names = {kind: export.file_name(experiment, kind, fmt) for kind in export.KINDS}

    async def run() -> None:
        db = Database(url)
        try:
            for kind, name in names.items():
                path = output_dir / name
                partial = path.with_name(path.name + ".part")
                with partial.open("w", encoding="utf-8", newline="") as out:
                    await export.write(db, experiment, kind, out, fmt)
                partial.replace(path)
                click.echo(f"wrote {path}")
        finally:
            await db.close()

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with _export_errors(experiment, settings):
            asyncio.run(run())
    except UnknownElement as error:
        raise click.ClickException(f"{error.message} in {_describe(settings)}") from None
    finally:
        for name in names.values():
            (output_dir / (name + ".part")).unlink(missing_ok=True)
    click.echo(f"exported {experiment!r} in {time.monotonic() - started:.1f} s")


def _existing_database(settings: Settings) -> str:
    """The database's async URL; an embedded file that is not there is an error, not created."""
    url = async_url(settings.database_url, settings.sqlite_path)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.is_file():
        raise click.ClickException(f"no database at {sqlite_file}")
    return url


def _sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None: PostgreSQL, or SQLite in memory)."""
    if not url.startswith("sqlite") or ":memory:" in url:
        return None
    return Path(url.split(":///", 1)[-1].split("?", 1)[0])


@main.command(name="backup")
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The copy to write (replaced if there; complete or not there at all).",
)
@setting_option("database_url", "--database")
def backup_command(output: Path, database: str | None) -> None:
    """Copy the SQLite database safely, also while mastok serves from it (SQLite's online
    backup API). PostgreSQL: pg_dump and pg_restore (README: "Backup and restore")."""
    from mastok.backup import backup_sqlite

    settings = _settings(database_url=database)
    url = _existing_database(settings)
    source = _sqlite_file(url)
    if source is None:
        raise click.ClickException(
            f"{_describe(settings)} is not an SQLite file: back PostgreSQL up with pg_dump "
            "(README: Backup and restore)"
        )
    started = time.monotonic()
    try:
        backup_sqlite(source, output)
    except (OSError, sqlite3.Error) as error:
        raise click.ClickException(f"cannot back {source} up to {output}: {error}") from None
    click.echo(f"backed {source} up to {output} in {time.monotonic() - started:.1f} s")


async def _campaign_named(db: Database, namespace: str) -> Campaign:
    from mastok.campaigns import store

    async with db.session() as session:
        found = await store.get_campaign(session, namespace)
    if found is None:
        raise click.ClickException(f"no campaign named {namespace!r}")
    return found


def _export_participants(
    url: str, settings: Settings, namespace: str, output_dir: Path, format_: str
) -> None:
    from mastok.campaigns import visits

    fmt: visits.Format = "json" if format_ == "json" else "csv"

    async def run() -> Path:
        db = Database(url)
        try:
            campaign = await _campaign_named(db, namespace)
            path = output_dir / visits.file_name(campaign, fmt)
            partial = path.with_name(path.name + ".part")
            try:
                with partial.open("w", encoding="utf-8", newline="") as out:
                    async for text in visits.stream(db, campaign, fmt):
                        out.write(text)
                partial.replace(path)
            finally:
                partial.unlink(missing_ok=True)
            return path
        finally:
            await db.close()

    with _export_errors(namespace, settings):
        output_dir.mkdir(parents=True, exist_ok=True)
        path = asyncio.run(run())
    click.echo(f"wrote {path}")


@contextlib.contextmanager
def _export_errors(name: str, settings: Settings) -> Iterator[None]:
    """A file or database that fails an export, as one line naming what and why."""
    try:
        yield
    except OSError as error:
        raise click.ClickException(f"cannot export {name!r}: {error}") from None
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise click.ClickException(
            f"cannot export {name!r} from {_describe(settings)}: {reason} "
            "(a mastok database? `mastok migrate` brings its schema up to date)"
        ) from None


@main.command(name="erase-identities")
@click.option("--campaign", "namespace", required=True, help="The campaign's namespace.")
@setting_option("database_url", "--database")
def erase_identities_command(namespace: str, database: str | None) -> None:
    """Erase a campaign's platform identities and captured parameters from its participants'
    records (the rest stays). The campaign must not be Running. Backups still hold them. On
    PostgreSQL the mastok that runs the waiting rooms forgets them too; on SQLite a mastok
    running on the same file forgets them when it restarts (its supervise page's erasure, or
    the API's, at once)."""
    from mastok.audit import Actor, AuditLog
    from mastok.campaigns import visits
    from mastok.clock import SystemClock
    from mastok.live.leader import notify_campaign

    settings = _settings(database_url=database)
    url = _existing_database(settings)

    async def run() -> int:
        db = Database(url)
        try:
            campaign = await _campaign_named(db, namespace)
            try:
                erased = await visits.erase_identities(db, campaign)
            except visits.CampaignRunning:
                raise click.ClickException(f"{namespace} is Running: pause it first") from None
            except visits.StillInRoom:
                raise click.ClickException(
                    f"{namespace}: people are still in its waiting room; try again in a moment"
                ) from None
            if not db.is_sqlite:  # its waiting room, if it runs, forgets them too
                await notify_campaign(db, campaign.id)
            actor = Actor(os.environ.get("USER", "") or "cli", "mastok erase-identities")
            await AuditLog(db, SystemClock()).record(
                actor, "identities.erased", namespace, {"visits": erased}
            )
            return erased
        finally:
            await db.close()

    erased = asyncio.run(run())
    click.echo(f"erased the identities of {erased} visits of {namespace}")


@main.command()
@setting_option("port", type=PORT)
@click.option("--otree-port", default=DEMO_OTREE_PORT, show_default=True, help="oTree's port.")
def dev(port: int | None, otree_port: int) -> None:
    """Start the demo oTree project, then mastok on SQLite, for trying mastok locally."""
    from mastok.otree.local import DEMO_PROJECT, LocalOTree, LocalOTreeError, find_otree_venv

    base = _settings(port=port)
    key = secrets.token_urlsafe(16)
    try:
        otree = LocalOTree(
            DEMO_PROJECT,
            otree_port,
            key,
            venv=find_otree_venv(),
            data_dir=Path(base.sqlite_path).parent / "otree-demo",
        )
        otree.start()
    except LocalOTreeError as error:
        raise click.ClickException(str(error)) from None
    # uvicorn re-raises SIGTERM once it has shut down: make that unwind to the `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        settings = base.with_overrides(
            otree_api_url=otree.url, otree_public_url=otree.url, otree_api_key=key
        )
        if "MASTOK_ORIGIN" not in os.environ:
            settings = settings.with_overrides(origin=f"http://localhost:{settings.port}")
        admin = f"{settings.origin}{settings.web_prefix}/"
        click.echo(
            f"\n  oTree demo at {otree.url} (admin password: {otree.admin_password})"
            f"\n  mastok admin at {admin}"
            f"\n  login: {settings.login}  password: {settings.password}"
            f"\n  database: {_describe(settings)}\n",
            err=True,
        )
        _run(settings)
    finally:
        otree.stop()


@main.command(name="healthcheck")
@setting_option("port", type=PORT)
def healthcheck_command(port: int | None) -> None:
    """Exit 0 if the mastok serving with these settings answers /healthz (the image's
    HEALTHCHECK: it follows MASTOK_PORT, MASTOK_HOST and MASTOK_WEB_PREFIX)."""
    import httpx

    settings = _settings(port=port)
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}{settings.web_prefix}/healthz"
    try:
        answer = httpx.get(url, timeout=5)
    except httpx.HTTPError as error:
        raise click.ClickException(f"{url}: {error or type(error).__name__}") from None
    if answer.status_code != 200:
        raise click.ClickException(f"{url}: {answer.status_code}")
    click.echo(f"{url}: ok")


@main.command(name="settings")
@click.option(
    "--format",
    "format_",
    type=click.Choice(list(config_files.FORMATS)),
    default="text",
    show_default=True,
    help="env: .env.example; yaml: config.yml; markdown: README's table; text: for reading.",
)
def settings_command(format_: str) -> None:
    """Print every setting: its variable, default and meaning, from the table in
    mastok/config.py (e.g. `mastok settings --format env > .env.example`)."""
    click.echo(config_files.FORMATS[format_](), nl=False)


def _describe(settings: Settings) -> str:
    url = async_url(settings.database_url, settings.sqlite_path)
    if url.startswith("sqlite"):
        return url.split("///", 1)[-1]
    return url.split("@")[-1]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
