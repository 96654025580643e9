"""LightMill's public routes under abuse: measures clients add capped per experiment, ids and
nesting bounded, designs parsed off the event loop and bounded in depth, an aborted post one line
in the log."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest

from mastok.config import BY_NAME
from mastok.lightmill import service
from mastok.lightmill.design import parse_design
from tests.fixtures.app import ClientFactory, basic_auth
from tests.fixtures.live import ServerFactory
from tests.lightmill.helpers import (
    XML,
    design,
    error,
    imported,
    lock,
    nothing_stored,
    post_trial,
    row_counts,
)


def names(prefix: str, count: int) -> dict[str, int]:
    return {f"{prefix}{n}": n for n in range(count)}


def test_measures_clients_add_are_capped_per_experiment(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False, max_new_measures=5)
    imported(client)  # its design declares 6 measures: they do not count
    token = lock(client, "S0")
    before = row_counts(client)

    refused = post_trial(client, "S0", 0, 0, token, {"trial": {"time": 1, **names("m", 6)}})

    assert "takes at most 5 measures besides its design's" in error(refused, 400, "TooManyMeasures")
    assert row_counts(client) == before
    assert client.get("/api/run/pointing/S0").json()["started"] is False
    # Up to the cap, over posts (trial and event measures alike), then no further.
    three = {"trial": names("a", 2), "events": [names("e", 1)]}
    assert post_trial(client, "S0", 0, 0, token, three).status_code == 200
    assert error(
        post_trial(client, "S0", 0, 1, token, {"trial": names("b", 3)}), 400, "TooManyMeasures"
    )
    assert post_trial(client, "S0", 0, 1, token, {"trial": names("b", 2)}).status_code == 200
    known = {"trial": {"time": 2, **names("a", 2)}, "events": [names("e", 1)]}
    assert post_trial(client, "S0", 1, 0, token, known).status_code == 200


def test_the_default_cap_refuses_a_post_with_thousands_of_new_measures(
    make_client: ClientFactory,
) -> None:
    assert BY_NAME["max_new_measures"].default == 2000
    client = make_client(authenticated=False)
    imported(client)
    token = lock(client, "S0")
    before = row_counts(client)

    flood = post_trial(client, "S0", 0, 0, token, {"trial": names("=HYPERLINK", 50_000)})

    assert error(flood, 400, "TooManyMeasures").endswith("nothing of it was stored")
    assert row_counts(client) == before


def deep(levels: int) -> Any:
    node: Any = 1
    for _ in range(levels):
        node = {"a": node}
    return node


@pytest.mark.parametrize(
    ("measures", "message"),
    [
        ({"trial": {"x" * 256: 1}}, "is too long"),
        ({"trial": {"a" * 200: {"b" * 60: 1}}}, "is too long"),
        ({"events": [{"": 1, "x": {"y": [1]}}]}, "a measure id is empty"),
        ({"trial": {"deep": deep(40)}}, "nest deeper than 32 levels"),
    ],
    ids=["long id", "long dotted id", "empty id", "deep"],
)
def test_measure_ids_and_nesting_are_bounded(
    make_client: ClientFactory, measures: dict[str, Any], message: str
) -> None:
    client = make_client(authenticated=False)
    imported(client)
    token = lock(client, "S0")
    before = row_counts(client)

    assert message in error(post_trial(client, "S0", 0, 0, token, measures), 400, "InvalidBody")
    assert row_counts(client) == before


def nested_blocks(levels: int) -> bytes:
    head = design().split(b"<run ", 1)[0]
    blocks = b"<block>" * levels + b"</block>" * levels
    return head + b'<run id="R">' + blocks + b"</run></experiment>"


def test_a_design_nested_200000_deep_is_refused_not_a_crash(make_client: ClientFactory) -> None:
    client = make_client(authenticated=False)

    answer = client.post(
        "/api/import", content=nested_blocks(200_000), headers={**basic_auth(), **XML}
    )

    assert "elements nest deeper than 64" in error(answer, 400, "CannotImportExperiment")
    assert nothing_stored(client)


def test_designs_are_parsed_in_a_worker_thread(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(authenticated=False)
    threads: list[threading.Thread] = []

    def parse(data: bytes) -> Any:
        threads.append(threading.current_thread())
        return parse_design(data)

    monkeypatch.setattr(service, "parse_design", parse)
    imported(client)

    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert client.portal is not None
    loop_thread = client.portal.call(lambda: threading.current_thread())
    assert threads[0] is not loop_thread


def test_an_aborted_post_is_one_line_in_the_log(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = make_server()
    request = (
        "POST /api/trial/pointing/S0/0/0?token=secret HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nContent-Type: text/plain\r\n"
        "Content-Length: 100000\r\n\r\n"
        '{"token": "secret", "measures": {"trial": {'
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request.encode())

    deadline = time.monotonic() + 10
    while not any("went away" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "no log line for the aborted request"
        time.sleep(0.01)
    lines = [r for r in caplog.records if "went away" in r.getMessage()]
    assert [r.getMessage() for r in lines] == [
        "POST /api/trial/pointing/S0/0/0 from 127.0.0.1: the client went away mid-request"
    ]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
