"""The garbage collector set for serving (mastok/heap.py): what startup built frozen out of its
passes, after collecting what is garbage, and full passes spaced out; by `mastok serve`'s uvicorn
server once the app has started. And for `mastok export`'s one job: what the imports built
frozen before it starts."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from mastok.cli import main
from mastok.heap import FULL_PASS_AFTER, set_for_one_job, set_for_serving
from mastok.lightmill import export
from mastok.serving import MastokServer, uvicorn_config


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def as_it_was() -> Iterator[None]:
    """The test process's collector as it was, and its objects back in the collector's care."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_live_objects_are_frozen_and_garbage_is_not(as_it_was: None) -> None:
    kept = Cycle()
    garbage = weakref.ref(Cycle())  # unreachable at once, but only a pass frees a cycle
    assert garbage() is not None

    set_for_serving()

    # Not compared with a count taken earlier: a frozen object freed by another thread (an idle
    # worker thread of an earlier test ending) leaves the frozen generation at any moment.
    assert gc.get_freeze_count() > 0
    assert all(obj is not kept for obj in gc.get_objects())  # no pass walks it any more
    assert garbage() is None  # collected, not kept for good


def test_full_passes_are_spaced_out_and_the_others_kept(as_it_was: None) -> None:
    young, middle, _ = gc.get_threshold()

    set_for_serving()

    assert gc.get_threshold() == (young, middle, FULL_PASS_AFTER)


async def test_serve_sets_the_collector_once_the_app_has_started(as_it_was: None) -> None:
    started: list[int] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(gc.get_freeze_count())
        yield

    app = Starlette(lifespan=lifespan)
    server = MastokServer(uvicorn_config(app, host="127.0.0.1", port=0, log_config=None))
    server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)

    await server.startup()
    try:
        assert started == [0]  # not while the app was starting
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[2] == FULL_PASS_AFTER
    finally:
        await server.shutdown()


def test_one_job_freezes_what_is_alive_and_keeps_the_passes(as_it_was: None) -> None:
    kept = Cycle()
    threshold = gc.get_threshold()

    set_for_one_job()

    assert gc.get_freeze_count() > 0
    assert all(obj is not kept for obj in gc.get_objects())
    assert gc.get_threshold() == threshold


def test_the_export_freezes_the_imports_before_it_reads_a_row(
    as_it_was: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "lab.sqlite3"
    database.touch()
    frozen_at_write: list[int] = []

    async def write(db: Any, experiment: str, kind: str, out: TextIO, format: str) -> None:
        frozen_at_write.append(gc.get_freeze_count())

    monkeypatch.setattr(export, "write", write)
    assert gc.get_freeze_count() == 0

    out, url = str(tmp_path / "out"), f"sqlite:///{database}"
    done = CliRunner().invoke(
        main, ["export", "--experiment", "xp", "--output-dir", out, "--database", url]
    )

    assert done.exit_code == 0, done.output
    assert len(frozen_at_write) == 2 and all(count > 0 for count in frozen_at_write)
