"""How the process's log lines look: each starts with its ISO 8601 UTC time, as text or JSON.

`dict_config(format)` is the one logging configuration of `mastok serve` and `mastok dev`
(uvicorn applies it when it starts: `mastok.serving.uvicorn_config`): one handler on stderr at the
root, which mastok's, uvicorn's (its access log included) and Alembic's loggers all reach.
`text` writes `2025-01-31T12:00:00.123Z INFO mastok: message`; `json` writes one object a line
(`time`, `level`, `logger`, `message`, and the exception's traceback when there is one), through
python-json-logger. uvicorn's URLs are masked before either formats them (`mastok.logmask`).

The handler formats a line where it is logged and leaves writing it to a thread of its own
(`LinesOffTheLoop`): a write to stderr waits for whoever reads it (a pipe to the container's
log driver, a busy disk), and the event loop then waited with it, every participant's socket
and every page: 500 supervisors connecting (a line each) stopped the loop for 20 to 54 ms at a
time while the disk was busy (bench scenario 7). At most `WAITING_LINES` wait; past that, lines
are dropped and counted, and the count is written once there is room again.

The thread writes the lines waiting together, in one write. Woken for each line (uvicorn's line
for each participant's socket), it took a twentieth of the server's CPU, and the loop's thread
lost the GIL to it each time (bench/README.md, scenario 1). So uvicorn's own lines (`may_wait`:
its INFO lines, one a socket and one a request) wait up to `GATHER_SECONDS` for others; any other
line (mastok's, and every warning and error) is written at once, with those waiting before it:
a process killed outright loses at most the last moment of uvicorn's lines, not mastok's.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import queue
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_LAYOUT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
# Left out of JSON lines: uvicorn's copy of its message with terminal colours.
JSON_LEFT_OUT = (*RESERVED_ATTRS, "color_message")
# uvicorn's own loggers: they keep no handler of their own and reach the root's.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
WAITING_LINES = 10_000
DRAIN_SECONDS = 5.0  # how long a stopping server waits for its lines to be written
GATHER_SECONDS = 0.05  # how long uvicorn's lines wait for more before they are written


def utc_time(record: logging.LogRecord) -> str:
    """The record's time in ISO 8601, UTC, to the millisecond: `2025-01-31T12:00:00.123Z`."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: MESSAGE`, the time in UTC."""

    def __init__(self) -> None:
        super().__init__(TEXT_LAYOUT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)


class JsonLines(JsonFormatter):
    """One JSON object a line: `time` (UTC), `level`, `logger`, `message`."""

    def __init__(self) -> None:
        super().__init__(JSON_FIELDS, rename_fields=JSON_NAMES, reserved_attrs=JSON_LEFT_OUT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)


def dict_config(log_format: LogFormat = "text", level: str = "INFO") -> dict[str, Any]:
    """The `logging.config.dictConfig` of the whole process (uvicorn's `log_config`)."""
    formatter = {"()": JsonLines if log_format == "json" else TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,  # mastok's loggers exist before this is applied
        "formatters": {"mastok": formatter},
        "handlers": {"stderr": {"()": LinesOffTheLoop, "formatter": "mastok"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True, "level": level}
                for name in UVICORN_LOGGERS
            },
            # Alembic 1.17 logs a line for each of its plugins set up, at every start.
            "alembic.runtime.plugins": {"level": "WARNING"},
            # websockets' lines about each socket (mastok.web.ws_protocol): its errors only.
            "mastok.websockets": {"level": "WARNING"},
        },
    }


def may_wait(record: logging.LogRecord) -> bool:
    """uvicorn's INFO lines (one a socket, one a request) may wait for others to be written."""
    return record.name in UVICORN_LOGGERS and record.levelno < logging.WARNING


class LinesOffTheLoop(logging.handlers.QueueHandler):
    """Formats each record where it is logged; a thread of its own writes the lines to
    `stream` (stderr by default), in order, those waiting together: after `gather` seconds
    for more to come if the first `may_wait`, at once if not, or once one that may not comes.
    Closing it writes what waits, then ends the thread."""

    def __init__(
        self, stream: Any = None, waiting: int = WAITING_LINES, gather: float = GATHER_SECONDS
    ) -> None:
        super().__init__(queue.Queue(waiting))
        self.dropped = 0
        self.stream = stream if stream is not None else sys.stderr
        self.gather = gather
        self._hurry = threading.Event()  # a line that may not wait is waiting
        self._writer: threading.Thread | None = threading.Thread(
            target=self._write_lines, name="mastok-log-lines", daemon=True
        )
        self._writer.start()

    def _write_lines(self) -> None:
        """Until the end (a None): the lines waiting, in one write."""
        waiting: queue.Queue[logging.LogRecord | None] = self.queue  # type: ignore[assignment]
        most = waiting.maxsize or WAITING_LINES  # a write's lines: the bound, if any
        ended = False
        while not ended:
            taken = [waiting.get()]
            if taken[0] is not None and may_wait(taken[0]):
                self._hurry.wait(self.gather)
            self._hurry.clear()  # what made it hurry is taken below
            with contextlib.suppress(queue.Empty):
                while taken[-1] is not None and len(taken) <= most:
                    taken.append(waiting.get_nowait())
            ended = taken[-1] is None
            self._write(record for record in taken if record is not None)
            for _ in taken:
                waiting.task_done()

    def _write(self, records: Iterable[logging.LogRecord]) -> None:
        text = "".join(f"{record.msg}\n" for record in records)  # formatted by `prepare`
        if not text:
            return
        # With stderr broken there is nowhere to say so, and the thread must live on for the
        # lines after it (logging's own handlers go on the same way).
        with contextlib.suppress(Exception):
            self.stream.write(text)
            self.stream.flush()

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.dropped:
            lost = logging.makeLogRecord(
                {
                    "name": "mastok",
                    "levelno": logging.WARNING,
                    "levelname": "WARNING",
                    "msg": f"{self.dropped} log lines dropped: stderr was not read fast enough",
                }
            )
            with contextlib.suppress(queue.Full):
                self.queue.put_nowait(self.prepare(lost))
                self.dropped = 0
                self._hurry.set()
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            return
        if not may_wait(record):
            self._hurry.set()

    def drain(self, within: float = DRAIN_SECONDS) -> None:
        """Wait until every line waiting is written (at most `within` seconds)."""
        deadline = time.monotonic() + within
        self._hurry.set()
        waiting: queue.Queue[logging.LogRecord] = self.queue  # type: ignore[assignment]
        while waiting.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            self.drain()
            with contextlib.suppress(queue.Full):  # lines not written in time are left
                self.queue.put_nowait(None)
                writer.join(DRAIN_SECONDS)
        super().close()


def drain() -> None:
    """Write every line the process's handlers hold (a server stopping: before a re-raised
    SIGTERM ends the process without running `atexit`)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LinesOffTheLoop):
            handler.drain()
