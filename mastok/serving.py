"""How mastok is served: uvicorn's options, its server and its logging, as `mastok serve` runs
them (the benchmark's ceiling apps are served by this too, so the comparison is fair).

A module of its own so that the commands that do not serve (`mastok export`, `migrate`,
`backup`) do not import the web stack: it was about 0.4 s of every such command.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import click
import uvicorn

from mastok import heap, logmask, logs
from mastok.live.protocol import MAX_FRAME_BYTES
from mastok.proxies import UnknownProxy, trusted_addresses
from mastok.web.http_protocol import BoundedHttpToolsProtocol
from mastok.web.response_writes import is_stored_trial_post
from mastok.web.sockets import handshake_denied
from mastok.web.ws_protocol import MastokWebSocketProtocol


def serve_app(
    app: Any,
    host: str,
    port: int,
    log_format: logs.LogFormat = "text",
    trusted_proxies: str = "",
) -> None:
    """Serve as `mastok serve` does: these uvicorn options, this logging (the benchmark's
    ceiling apps are served by this too, so the comparison is fair)."""
    try:
        trusted = ",".join(trusted_addresses(trusted_proxies))
    except UnknownProxy as error:
        raise click.ClickException(str(error)) from None
    config = uvicorn_config(
        app, log_format=log_format, trusted_proxies=trusted, host=host, port=port
    )
    _quiet_per_connection_lines()
    logmask.install()
    MastokServer(config).run()


class MastokServer(uvicorn.Server):
    """uvicorn's server, which sets the garbage collector for serving (`mastok.heap`) once the
    app has started."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        heap.set_for_serving()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises a SIGTERM it caught as this ends: the lines still waiting to be
        # written (`mastok.logs`) would be lost with the process.
        with super().capture_signals():
            try:
                yield
            finally:
                logs.drain()


def uvicorn_config(
    app: Any, log_format: logs.LogFormat = "text", trusted_proxies: str = "", **options: Any
) -> uvicorn.Config:
    """uvicorn's options as `mastok serve` sets them (`options`: where to listen, and any
    option a test changes), with the process's logging (`mastok.logs`), which uvicorn applies
    as it loads them, and the client address forwarded by `trusted_proxies` only (addresses and
    networks, comma-separated; empty: nobody; `mastok.proxies` makes them from
    MASTOK_TRUSTED_PROXIES)."""
    chosen: dict[str, Any] = {
        "proxy_headers": bool(trusted_proxies.strip()),
        "forwarded_allow_ips": trusted_proxies.strip() or None,
        "log_config": logs.dict_config(log_format),
        "log_level": "info",
        # No `server: uvicorn` on every answer: it tells a scanner what to try, and it was a
        # tenth of the headers uvicorn checks (two regular expressions each) on a trial's.
        "server_header": False,
        # httptools, bounded: request heads of 64 KiB, slow heads and bodies closed.
        "http": BoundedHttpToolsProtocol,
        # websockets-sansio (uvicorn's "auto"), and one write for a supervisors' update.
        "ws": MastokWebSocketProtocol,
        # Frames are small JSON; per-message compression would keep ~45 KiB of zlib state on
        # every waiting participant's socket (bench/results: 77 vs 31.5 KiB a participant).
        "ws_per_message_deflate": False,
        # A frame past mastok's limit closes the socket (1009) before uvicorn buffers it whole.
        "ws_max_size": MAX_FRAME_BYTES,
        **options,
    }
    return uvicorn.Config(app, **chosen)


def _quiet_per_connection_lines() -> None:
    """Keep one line per socket (uvicorn's `"WebSocket /ws/join?slug=..." [accepted]`) and
    mastok's own lines; drop uvicorn's line per refused handshake, what it adds to a standby's
    503 line, and httpx's line per oTree call (mastok logs each session it starts, and every
    oTree error). websockets' own line for each socket ("connection open") is not even made
    (`mastok.web.ws_protocol`)."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_not_connection_chatter)
    # Before the masking filter: a line dropped is not masked first.
    access = logging.getLogger("uvicorn.access")
    if _not_a_stored_trial not in access.filters:
        access.filters.insert(0, _not_a_stored_trial)


def _not_connection_chatter(record: logging.LogRecord) -> bool:
    if record.msg in _AFTER_A_DENIAL and handshake_denied.get():
        return False
    return record.msg not in _CHATTER


# uvicorn's line per refused handshake (mastok logs refused participant sockets itself, at most
# once a minute an address: a flood is not a flood of lines).
_CHATTER = ('%s - "WebSocket %s" 403',)
# What uvicorn (websockets-sansio) logs after a handshake answered with a response (a standby's
# 503, its own line kept): an error that is none. A standby refuses every page of a dead leader,
# several times each, until it leads (bench/README.md, scenario 11).
_AFTER_A_DENIAL = ("ASGI callable returned without completing handshake.",)


def _not_a_stored_trial(record: logging.LogRecord) -> bool:
    """Drop the access line of a LightMill trial POST answered 2xx: a client posts thousands a
    second, each trial is in the database with its time, and the line is a write to stderr a
    request: the bare POST's CPU a request went from 0.117 to 0.095 ms without it (bench,
    issue 15). A refused post keeps its line, with its status; every other request too."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 5 and isinstance(args[4], int):
        return not is_stored_trial_post(str(args[1]), str(args[2]), args[4])
    return True
