"""The client address behind a proxy (MASTOK_TRUSTED_PROXIES): uvicorn, configured as
`mastok serve` configures it, believes `X-Forwarded-For` from the trusted proxies only."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from mastok.proxies import UnknownProxy, trusted_addresses
from mastok.serving import uvicorn_config


async def client_address(request: Request) -> PlainTextResponse:
    assert request.client is not None
    return PlainTextResponse(f"{request.client.host} {request.url.scheme}")


@contextmanager
def served(trusted_proxies: str) -> Iterator[str]:
    app = Starlette(routes=[Route("/", client_address)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # uvicorn applies mastok's logging
    server = uvicorn.Server(uvicorn_config(app, trusted_proxies=trusted_proxies))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        root.handlers[:], root.level = handlers, level


FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize("trusted", ["127.0.0.1", "127.0.0.0/8", "10.0.0.9, 127.0.0.1"])
def test_a_trusted_proxy_forwards_the_client_address(trusted: str) -> None:
    with served(trusted) as url:
        assert httpx.get(url, headers=FORWARDED).text == "203.0.113.7 https"


@pytest.mark.parametrize("trusted", ["", "10.0.0.9"])
def test_anyone_else_forwards_nothing(trusted: str) -> None:
    with served(trusted) as url:
        assert httpx.get(url, headers=FORWARDED).text == "127.0.0.1 http"


def test_names_are_resolved_to_their_addresses() -> None:
    assert "127.0.0.1" in trusted_addresses("localhost")
    assert trusted_addresses(" 10.0.0.9, 10.1.0.0/16 ,") == ["10.0.0.9", "10.1.0.0/16"]
    assert trusted_addresses("") == []


def test_a_name_that_does_not_resolve_is_an_error() -> None:
    with pytest.raises(UnknownProxy, match=r"'proxy\.invalid'"):
        trusted_addresses("10.0.0.9,proxy.invalid")
