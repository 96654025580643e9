"""An answer of known length in one write, head and body (mastok/web/response_writes.py), on
uvicorn's own request cycle with a transport that records its writes; and no access record for
a stored trial post."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from mastok.web.response_writes import is_stored_trial_post, write_once


class Recording:
    """What a cycle writes, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Access(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def cycle_for(method: str, path: str, transport: Recording, access: Access) -> RequestResponseCycle:
    access_logger = logging.getLogger("tests.response_writes.access")
    access_logger.handlers = [access]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False
    scope: Any = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),  # uvicorn 0.55's access line reads it, as servers send it
        "query_string": b"",
        "http_version": "1.1",
        "client": ("127.0.0.1", 5000),
    }
    cycle = RequestResponseCycle(
        scope=scope,
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("tests.response_writes"),
        access_logger=access_logger,
        access_log=True,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    write_once(cycle)
    return cycle


def start(status: int = 200, **headers: bytes) -> Any:
    raw = [(name.replace("_", "-").encode(), value) for name, value in headers.items()]
    return {"type": "http.response.start", "status": status, "headers": raw}


def body(data: bytes, more: bool = False) -> Any:
    return {"type": "http.response.body", "body": data, "more_body": more}


@pytest.fixture
def transport() -> Recording:
    return Recording()


@pytest.fixture
def access() -> Access:
    return Access()


async def test_an_answer_of_known_length_is_one_write(transport: Recording, access: Access) -> None:
    cycle = cycle_for("GET", "/api/experiments", transport, access)
    await cycle.send(start(content_length=b"2", content_type=b"application/json"))
    assert transport.writes == []
    await cycle.send(body(b"{}"))
    assert transport.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"
    ]
    assert cycle.response_complete
    assert access.lines == ['127.0.0.1:5000 - "GET /api/experiments HTTP/1.1" 200']


async def test_a_streamed_answer_has_its_head_written_at_once(
    transport: Recording, access: Access
) -> None:
    cycle = cycle_for("GET", "/export.csv", transport, access)
    await cycle.send(start(content_type=b"text/csv"))
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in transport.writes[0]
    await cycle.send(body(b"a,b\n", more=True))
    await cycle.send(body(b""))
    assert transport.writes[1:] == [b"4\r\na,b\n\r\n", b"0\r\n\r\n"]


async def test_a_head_request_gets_its_head_with_the_empty_body(
    transport: Recording, access: Access
) -> None:
    cycle = cycle_for("HEAD", "/healthz", transport, access)
    await cycle.send(start(content_length=b"2"))
    await cycle.send(body(b""))
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"]


async def test_a_head_held_goes_out_before_the_connection_closes(
    transport: Recording, access: Access
) -> None:
    cycle = cycle_for("GET", "/broken", transport, access)
    await cycle.send(start(content_length=b"10"))
    cycle.transport.close()  # as uvicorn does when the app fails after the head
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"]
    assert transport.closed


async def test_a_stored_trial_post_makes_no_access_record(
    transport: Recording, access: Access
) -> None:
    stored = cycle_for("POST", "/api/trial/xp/S0/0/0", transport, access)
    await stored.send(start(content_length=b"2"))
    await stored.send(body(b"{}"))
    refused = cycle_for("POST", "/api/trial/xp/S0/0/1", Recording(), access)
    await refused.send(start(409, content_length=b"2"))
    await refused.send(body(b"{}"))
    assert access.lines == ['127.0.0.1:5000 - "POST /api/trial/xp/S0/0/1 HTTP/1.1" 409']


def test_which_posts_are_stored_trials() -> None:
    assert is_stored_trial_post("POST", "/api/trial/xp/S0/0/0", 200)
    assert is_stored_trial_post("POST", "/lab/api/trial/xp/S0/0/0", 200)  # under a web prefix
    assert not is_stored_trial_post("POST", "/api/trial/xp/S0/0/0", 409)
    assert not is_stored_trial_post("GET", "/api/trial/xp/S0/0/0", 200)
    assert not is_stored_trial_post("POST", "/api/run/xp/S0/unlock", 200)
