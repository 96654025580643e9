"""The SQLite worker process from the server's side: places asked of it and trial posts sent to
it, each awaited; started at the first, ended with the server (sqlite_worker_main.py is the
process).

Why a process: on SQLite a batch's statements ran on aiosqlite's thread beside the event loop,
and the two threads, each needing the GIL for most of its work, stayed under one core together
while the second core stood idle; a thread of its own for the writes changed nothing (bench/README,
scenario 6, ninth and tenth rounds). The worker has its own interpreter: the loop sends it
posts' stored values (those of one turn of the loop in one pipe write), and hears back once a
turn of the worker's, for all the posts of that turn. What goes wrong in the worker comes back
to be logged here, in the server's log format.

If the process is gone (it exited, could not start, or answered what cannot be read, and was
killed), every call waiting on it and every later one raises `WorkerUnavailable`, and the store
records trial posts itself, as without a worker. A post whose batch the process may have
committed before it went is recorded again by the store, whose checks then answer precisely
(its trial is already completed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, cast

import orjson

from mastok.lightmill.sqlite_batch import StoredPost
from mastok.lightmill.sqlite_worker_main import ERRORS
from mastok.lightmill.trial_places import Key, Place, places_of

log = logging.getLogger("mastok.lightmill")

CLOSE_TIMEOUT = 10.0  # seconds the process has to finish what it was sent, once told to end


def worker_command(path: str) -> tuple[str, ...]:
    """How the worker process for the SQLite file at `path` is started."""
    return (sys.executable, "-m", "mastok.lightmill.sqlite_worker_main", path)


class WorkerUnavailable(Exception):
    """The SQLite worker cannot answer this call (it is not running, or its read failed): the
    server does the work itself."""


class SqliteWorker:
    """One worker process for the SQLite file at `path`, started at the first call."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._starting: asyncio.Task[_Link | None] | None = None

    @property
    def pid(self) -> int | None:
        """The process's id while it runs: None before it started, and once it ended."""
        if self._starting is None or not self._starting.done() or self._starting.exception():
            return None
        link = self._starting.result()
        return None if link is None or link.ended else link.pid

    async def places(self, keys: Sequence[Key], ahead: int) -> dict[Key, Place]:
        """As trial_places.read_places, read by the process."""
        rows = await self._ask("places", json.dumps(keys), ahead)
        if rows is None:
            raise WorkerUnavailable("the SQLite worker could not read the places")
        return places_of(rows)

    async def write(self, post: StoredPost, stamp: str) -> bool:
        """Whether the post's run moved on (and its trial and events were written)."""
        moved: bool = await self._ask("write", stamp, *post)
        return moved

    async def aclose(self) -> None:
        """Let the process finish what it was sent, and end."""
        if self._starting is None:
            return
        link = (await asyncio.gather(self._starting, return_exceptions=True))[0]
        if isinstance(link, _Link):
            await link.close()

    async def _ask(self, *message: Any) -> Any:
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        link = await asyncio.shield(self._starting)
        if link is None or link.ended:
            raise WorkerUnavailable("the SQLite worker is not running")
        return await link.ask(message)

    async def _start(self) -> _Link | None:
        loop = asyncio.get_running_loop()
        try:
            _, link = await loop.subprocess_exec(
                _Link,
                *worker_command(self._path),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,  # the server's: its lines are the server's log's
            )
        except OSError as error:
            log.error(
                "the SQLite worker could not start (%s): trial posts written in-process", error
            )
            return None
        log.info("the SQLite worker started (pid %s) for LightMill's trial posts", link.pid)
        return link


class _Link(asyncio.SubprocessProtocol):
    """The pipes to a running worker process: each message's answer to the call waiting for
    it, and every waiting call failed once the process has ended."""

    def __init__(self) -> None:
        self._process: asyncio.SubprocessTransport | None = None
        self._input: asyncio.WriteTransport | None = None
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._outbox: list[bytes] = []  # messages to send at the end of this turn of the loop
        self._next = 0
        self._partial = b""
        self._closing = False
        self.ended = False
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def pid(self) -> int | None:
        return self._process.get_pid() if self._process is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._process = cast(asyncio.SubprocessTransport, transport)
        self._input = cast(asyncio.WriteTransport, self._process.get_pipe_transport(0))

    def ask(self, message: Sequence[Any]) -> asyncio.Future[Any]:
        """The message sent, with the loop's other messages of this turn in one write."""
        loop = asyncio.get_running_loop()
        self._next += 1
        answer: asyncio.Future[Any] = loop.create_future()
        self._waiting[self._next] = answer
        if not self._outbox:
            loop.call_soon(self._send)
        self._outbox.append(orjson.dumps([message[0], self._next, *message[1:]]))
        return answer

    def _send(self) -> None:
        assert self._input is not None
        if self.ended:  # every call waiting was told
            self._outbox = []
            return
        self._outbox.append(b"")  # the last message's line end
        self._input.write(b"\n".join(self._outbox))
        self._outbox = []

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        try:
            for line in lines:
                for ident, answer in orjson.loads(line):
                    if ident == ERRORS:
                        log.warning("the SQLite worker: %s", answer)
                    elif (waiting := self._waiting.pop(ident, None)) and not waiting.done():
                        waiting.set_result(answer)
        except (ValueError, TypeError) as error:
            log.error("the SQLite worker answered what cannot be read (%r): killed", error)
            assert self._process is not None
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                self._process.kill()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:  # after all it wrote was read: its exit may be seen before that
            self._end()

    def process_exited(self) -> None:
        if not self._closing:
            code = self._process.get_returncode() if self._process is not None else None
            log.warning("the SQLite worker exited with code %s", code)
        if not self.exited.done():
            self.exited.set_result(None)

    async def close(self) -> None:
        if self._process is None or self.exited.done():
            return
        self._closing = True
        assert self._input is not None
        if self._outbox:
            self._send()
        self._input.close()  # its input ends: it finishes what it read, and exits
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), CLOSE_TIMEOUT)
        except TimeoutError:
            log.error("the SQLite worker did not end within %s s: killed", CLOSE_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                self._process.kill()
            await self.exited
        self._process.close()

    def _end(self) -> None:
        """Its answers have ended: every call still waiting is failed."""
        if not self.ended and not self._closing:
            log.error(
                "the SQLite worker (pid %s) stopped answering: trial posts written in-process "
                "from now",
                self.pid,
            )
        self.ended = True
        waiting, self._waiting = self._waiting, {}
        for answer in waiting.values():
            if not answer.done():
                answer.set_exception(WorkerUnavailable("the SQLite worker ended before answering"))
