"""Counts of what a server does, taken inside it: each crossing to aiosqlite's thread (by call
and statement), each commit with the writes it held, each frame sent (by kind, through the ASGI
send or written together) and each call to oTree (by method and path). Not loaded by anything:
put this directory on `PYTHONPATH` and name a directory for the counts (bench/README.md,
"Profiling the server"):

    BENCH_COUNTS_DIR=/tmp/counts PYTHONPATH=bench/counting .venv/bin/python -m bench ceiling

Python imports `sitecustomize` at start-up in every process of the run; only `mastok serve` and
the work-equivalent app (`bench/join_floor_app.py`, started with a port) count. Each writes
`counts.PID.json` in that directory every second: the last write is the run's. Counting costs
CPU: read the counts, not the rates, of a run that counts.

With `BENCH_OPCODES_DIR` instead, the same servers count the Python opcodes their event loop's
thread runs, by function, between two SIGUSR1 (`bench.instructions --opcodes` sends them).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

COUNTS: Counter[str] = Counter()


def _counting() -> bool:
    argv = sys.argv
    return len(argv) > 1 and (argv[1] == "serve" or (argv[1].isdigit() and len(argv) == 4))


def _count_frames() -> None:
    from starlette.websockets import WebSocket

    send = WebSocket.send

    async def counted(self: WebSocket, message: Any) -> None:
        text = message.get("text")
        kind = json.loads(text).get("kind") if text else None
        COUNTS[f"frame {message['type']} {kind or ''}".rstrip()] += 1
        await send(self, message)

    setattr(WebSocket, "send", counted)  # noqa: B010 (mypy refuses an assignment)
    _count_frames_written_together()


def _count_frames_written_together() -> None:
    """The frames mastok writes without the ASGI send (`mastok.web.ws_protocol`: a step's
    frames to a socket, a supervisors' update), counted as those sent, and each such write."""
    from mastok.web.ws_protocol import MastokWebSocketProtocol

    write_texts = MastokWebSocketProtocol.write_texts

    def counted(self: MastokWebSocketProtocol, texts: tuple[str, ...]) -> bool:
        written = write_texts(self, texts)
        if written:
            COUNTS[f"write of {len(texts)} frames"] += 1
            for text in texts:
                COUNTS[f"frame websocket.send {json.loads(text).get('kind') or ''}".rstrip()] += 1
        return written

    setattr(MastokWebSocketProtocol, "write_texts", counted)  # noqa: B010


def _count_crossings() -> None:
    from aiosqlite.core import Connection

    execute = Connection._execute
    writes: dict[int, int] = {}

    async def counted(self: Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", "call")
        sql = args[0] if args and isinstance(args[0], str) else ""
        COUNTS[f"crossing {name} {sql[:40]}".rstrip()] += 1
        if name == "commit":
            COUNTS[f"commit holding {writes.pop(id(self), 0)} writes"] += 1
        elif name == "room_statements" or sql.startswith(("INSERT", "UPDATE", "DELETE")):
            # room_statements: a transaction's room writes, together (mastok/live/sqlite_writes)
            writes[id(self)] = writes.get(id(self), 0) + 1
        return await execute(self, fn, *args, **kwargs)

    setattr(Connection, "_execute", counted)  # noqa: B010


def _count_calls() -> None:
    from aiohttp import ClientSession

    request = ClientSession._request

    def counted(self: ClientSession, method: str, url: Any, *args: Any, **kwargs: Any) -> Any:
        path = str(url).split("?")[0].split("/api/", 1)[-1]
        route, _, code = path.partition("/")  # participant_vars/CODE: one key for all codes
        COUNTS[f"call {method} {route}{'/X' if code else ''}"] += 1
        return request(self, method, url, *args, **kwargs)

    setattr(ClientSession, "_request", counted)  # noqa: B010


def _write_every_second(directory: str) -> None:
    path = os.path.join(directory, f"counts.{os.getpid()}.json")
    while True:
        time.sleep(1)
        with open(path + ".tmp", "w") as out:
            json.dump({"argv": sys.argv, "counts": dict(COUNTS)}, out, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)


def _trace_opcodes_on_signal(directory: str) -> None:
    """SIGUSR1 starts counting the Python opcodes the main thread runs, by function (each one's
    own, not its callees') with its calls; the next SIGUSR1 stops and writes
    `opcodes.PID.json`. Deterministic where timings are not, and by Python function where
    callgrind's instructions are not; C functions' work is not counted. Tracing makes the
    server tens of times slower: read the counts, not the rates (`bench.instructions
    --opcodes`)."""
    opcodes: Counter[CodeType] = Counter()
    calls: Counter[CodeType] = Counter()

    def each_opcode(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            opcodes[frame.f_code] += 1
        return each_opcode

    def each_call(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True  # a suspended coroutine's frame too, as it resumes
        calls[frame.f_code] += 1
        return each_opcode

    def toggle(signum: int, frame: FrameType | None) -> None:
        if sys.gettrace() is None:
            opcodes.clear()
            calls.clear()
            sys.settrace(each_call)
            return
        sys.settrace(None)
        counted = {
            f"{code.co_filename}:{code.co_firstlineno}:{code.co_qualname}": [n, calls[code]]
            for code, n in opcodes.items()
        }
        path = os.path.join(directory, f"opcodes.{os.getpid()}.json")
        with open(path + ".tmp", "w") as out:
            json.dump(counted, out)
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR1, toggle)


if _counting() and (opcodes_dir := os.environ.get("BENCH_OPCODES_DIR")):
    os.makedirs(opcodes_dir, exist_ok=True)
    _trace_opcodes_on_signal(opcodes_dir)

if _counting() and (counts_dir := os.environ.get("BENCH_COUNTS_DIR")):
    os.makedirs(counts_dir, exist_ok=True)
    _count_frames()
    _count_crossings()
    _count_calls()
    threading.Thread(target=_write_every_second, args=(counts_dir,), daemon=True).start()
