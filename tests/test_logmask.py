"""Secrets out of the log (mastok/logmask.py): a real uvicorn server, configured as `mastok serve`
configures it, logs LightMill's lock tokens masked and the join socket's URL with its slug only."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from mastok import logmask
from mastok.logmask import mask_url
from mastok.serving import uvicorn_config


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def join(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close()


@pytest.fixture
def served(caplog: pytest.LogCaptureFixture) -> Iterator[int]:
    """A port where uvicorn serves, with mastok serve's options, logging and log filters; its
    log lines reach caplog's handler at the root (the root's own are put back afterwards)."""
    app = Starlette(routes=[Route("/api/run/xp/S0", ok), WebSocketRoute("/ws/join", join)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    server = uvicorn.Server(uvicorn_config(app))
    logmask.install()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    sock.close()
    root.handlers[:], root.level = handlers, level


def uvicorn_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What uvicorn logged (the test's own HTTP client logs its URLs too)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("uvicorn")]


def lines(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [line for line in uvicorn_lines(caplog) if all(w in line for w in words)]


def test_uvicorn_logs_tokens_masked_and_the_join_socket_with_its_slug_only(
    served: int, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"http://127.0.0.1:{served}"
    assert httpx.get(f"{base}/api/run/xp/S0?token=s3cr3t&x=1").text == "ok"

    async def land() -> None:
        url = f"ws://127.0.0.1:{served}/ws/join?slug=pilot&PROLIFIC_PID=5f1e&STUDY_ID=abc"
        async with connect(url) as websocket:
            await websocket.wait_closed()

    asyncio.run(land())
    deadline = time.monotonic() + 10
    while not (lines(caplog, "GET /api/run") and lines(caplog, "WebSocket")):
        assert time.monotonic() < deadline, uvicorn_lines(caplog)
        time.sleep(0.01)

    logged = "\n".join(uvicorn_lines(caplog))
    assert "s3cr3t" not in logged and "5f1e" not in logged and "abc" not in logged
    assert '"GET /api/run/xp/S0?token=***&x=1 HTTP/1.1" 200' in logged
    assert '"WebSocket /ws/join?slug=pilot" [accepted]' in logged


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("/api/run/xp/S0/plan", "/api/run/xp/S0/plan"),
        ("/api/run/xp/S0?token=abc", "/api/run/xp/S0?token=***"),
        ("/api/run/xp/S0?a=1&%74oken=abc", "/api/run/xp/S0?a=1&%74oken=***"),
        ("/lab/ws/join?PROLIFIC_PID=1&slug=s&SESSION_ID=2", "/lab/ws/join?slug=s"),
        ("/ws/join?PROLIFIC_PID=1", "/ws/join"),
        # The join page: its script reads the share URL's ids, mastok takes no parameter.
        ("/join/pilot?PROLIFIC_PID=1&STUDY_ID=2", "/join/pilot"),
        ("/lab/join/pilot?workerId=A1", "/lab/join/pilot"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
