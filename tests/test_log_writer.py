"""Log lines written off the event loop (mastok/logs.py `LinesOffTheLoop`): a logging call
never waits for the stream, lines come out in order, past the bound they are dropped and
counted, closing writes what waits, the lines waiting go in one write, and only uvicorn's INFO
lines wait for others. The stream here is a gate the test opens."""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterator

import pytest

from mastok import logs
from mastok.config import PROJECT_ROOT
from mastok.logs import LinesOffTheLoop, TextFormatter


class GatedStream(io.StringIO):
    """A stream whose writes wait until the test opens it (a pipe nobody reads, a busy disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = threading.Event()
        self.writing = threading.Event()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        self.writing.set()
        assert self.opened.wait(10), "the gate was never opened"
        return super().write(text)


@pytest.fixture
def stream() -> GatedStream:
    return GatedStream()


@pytest.fixture
def handler(stream: GatedStream) -> Iterator[LinesOffTheLoop]:
    handler = LinesOffTheLoop(stream, waiting=3, gather=0)
    handler.setFormatter(TextFormatter())
    yield handler
    stream.opened.set()
    handler.close()


@pytest.fixture
def logger(handler: LinesOffTheLoop) -> Iterator[logging.Logger]:
    logger = logging.getLogger("mastok.test.lines")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


def messages(stream: GatedStream) -> list[str]:
    return [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]


def test_a_line_is_logged_while_the_stream_is_stuck(
    stream: GatedStream, handler: LinesOffTheLoop, logger: logging.Logger
) -> None:
    logger.info("first")
    assert stream.writing.wait(10)  # the writer's thread is stuck in the stream's write
    logger.info("second")

    assert stream.getvalue() == ""  # and neither call waited for it
    stream.opened.set()
    handler.close()
    assert messages(stream) == ["first", "second"]
    assert stream.getvalue().startswith(tuple("0123456789"))  # formatted: the time first


def test_past_the_bound_lines_are_dropped_and_counted(
    stream: GatedStream, handler: LinesOffTheLoop, logger: logging.Logger
) -> None:
    logger.info("being written")
    assert stream.writing.wait(10)
    for text in ("one", "two", "three", "lost", "lost too"):  # room for three waiting
        logger.info(text)
    assert handler.dropped == 2

    stream.opened.set()
    handler.drain()
    logger.info("after")
    handler.close()

    assert messages(stream) == [
        "being written",
        "one",
        "two",
        "three",
        "2 log lines dropped: stderr was not read fast enough",
        "after",
    ]
    assert "WARNING mastok: 2 log lines dropped" in stream.getvalue()


def test_an_error_keeps_its_traceback(
    stream: GatedStream, handler: LinesOffTheLoop, logger: logging.Logger
) -> None:
    try:
        raise ValueError("kept")
    except ValueError:
        logger.exception("failed")
    stream.opened.set()
    handler.close()

    written = stream.getvalue()
    assert "ERROR mastok.test.lines: failed" in written
    assert "ValueError: kept" in written


def test_the_lines_waiting_go_in_one_write(
    stream: GatedStream, handler: LinesOffTheLoop, logger: logging.Logger
) -> None:
    logger.info("first")
    assert stream.writing.wait(10)
    for text in ("two", "three", "four"):  # waiting while the first is written
        logger.info(text)
    stream.opened.set()
    handler.close()

    assert [len(text.splitlines()) for text in stream.writes] == [1, 3]
    assert messages(stream) == ["first", "two", "three", "four"]


def test_the_readme_says_how_lines_wait_as_the_writer_does() -> None:
    readme = " ".join((PROJECT_ROOT / "README.md").read_text().split())
    said = re.search(r"wait up to ([\d.]+) s for others", readme)
    bound = re.search(r"falls ([\d,]+) lines behind", readme)
    assert said is not None and bound is not None
    assert float(said.group(1)) == logs.GATHER_SECONDS
    assert int(bound.group(1).replace(",", "")) == logs.WAITING_LINES


class BrokenOnce(io.StringIO):
    """A stream whose first write fails (stderr's reader gone for a moment)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def write(self, text: str) -> int:
        if not self.failed:
            self.failed = True
            raise OSError("broken pipe")
        return super().write(text)


def test_a_failed_write_does_not_stop_the_lines_after_it() -> None:
    stream = BrokenOnce()
    handler = LinesOffTheLoop(stream, gather=0)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("mastok.test.broken")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        logger.info("lost with the write")
        handler.drain()
        logger.info("after")
    finally:
        logger.removeHandler(handler)
        handler.close()

    assert stream.failed
    assert [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()] == ["after"]


def test_only_uvicorns_info_lines_wait_for_others() -> None:
    """With a minute's gather, mastok's line (and every warning) still goes at once, taking
    uvicorn's line waiting before it along; uvicorn's line alone waits (until closed)."""
    stream = io.StringIO()
    handler = LinesOffTheLoop(stream, gather=60)
    handler.setFormatter(TextFormatter())
    uvicorn, mastok = logging.getLogger("uvicorn.error"), logging.getLogger("mastok.test.at_once")
    record = uvicorn.makeRecord("uvicorn.error", logging.INFO, "", 0, "socket accepted", (), None)
    assert logs.may_wait(record)
    assert not logs.may_wait(mastok.makeRecord("mastok", logging.INFO, "", 0, "x", (), None))
    assert not logs.may_wait(uvicorn.makeRecord("uvicorn", logging.WARNING, "", 0, "x", (), None))
    try:
        handler.handle(record)
        handler.handle(mastok.makeRecord("mastok.live", logging.INFO, "", 0, "started", (), None))
        for _ in range(1000):  # the writer writes both long before the minute is up
            if stream.getvalue().count("\n") == 2:
                break
            threading.Event().wait(0.01)
        assert stream.getvalue().splitlines()[0].endswith("uvicorn.error: socket accepted")
        assert stream.getvalue().splitlines()[1].endswith("mastok.live: started")
        handler.handle(record)
    finally:
        handler.close()  # writes the line still waiting, without its minute
    assert stream.getvalue().count("socket accepted") == 2
