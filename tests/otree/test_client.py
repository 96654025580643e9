"""OTreeClient against a real oTree 6 (the demo project), and against a stub server for the
failures a real oTree cannot produce on demand."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from mastok.otree import client as client_module
from mastok.otree.client import (
    OTreeAuthError,
    OTreeBadRequest,
    OTreeClient,
    OTreeNotConfigured,
    OTreeNotFound,
    OTreeServerError,
    OTreeTimeout,
    OTreeUnreachable,
    SessionSummary,
    parse_progress,
)
from mastok.otree.listing import SharedListing
from mastok.otree.local import LocalOTree
from tests.fixtures.otree import OTreeStub

OTREE_VERSION = "6.0.15"


def unique_label() -> str:
    """Tests share one oTree, so each labels its sessions uniquely."""
    return f"mk:test:{uuid.uuid4().hex[:12]}"


# Real oTree: reading


async def test_version(otree_client: OTreeClient) -> None:
    assert await otree_client.version() == OTREE_VERSION


async def test_list_configs_has_the_demo_configs(otree_client: OTreeClient) -> None:
    configs = {config.name: config for config in await otree_client.list_configs()}

    assert set(configs) == {"survey", "guess_two"}
    survey, guess = configs["survey"], configs["guess_two"]
    assert survey.display_name == "Survey (one player)"
    assert survey.app_sequence == ["survey"]
    assert survey.num_demo_participants == 1
    assert "age" in survey.doc
    assert guess.display_name == "Guess a number (two players)"
    assert guess.app_sequence == ["guess"]
    assert guess.num_demo_participants == 2
    assert "guess" in guess.doc


# Real oTree: sessions


async def test_create_session(otree_client: OTreeClient) -> None:
    label = unique_label()

    session = await otree_client.create_session(
        "guess_two", 2, label=label, modified_config={"mastok_id": "mk:ns:1"}
    )

    assert re.fullmatch(r"[a-z0-9]{8}", session.code)
    assert session.num_participants == 2
    assert session.config_name == "guess_two"
    assert session.label == label
    assert session.config["mastok_id"] == "mk:ns:1"
    assert session.config["app_sequence"] == ["guess"]
    assert [p.id_in_session for p in session.participants] == [1, 2]
    codes = [p.code for p in session.participants]
    assert len(set(codes)) == 2
    assert all(re.fullmatch(r"[a-z0-9]{8}", code) for code in codes)
    assert session.code not in codes
    assert session.admin_url.endswith(f"/SessionStartLinks/{session.code}")
    assert urlsplit(session.session_wide_url).path.startswith("/join/")

    listed = {s.code: s for s in await otree_client.list_sessions()}
    assert session.code in listed
    summary = listed[session.code]
    assert summary.label == label
    assert summary.num_participants == 2
    assert summary.config_name == "guess_two"
    assert summary.created_at is not None


async def test_get_session(otree_client: OTreeClient) -> None:
    created = await otree_client.create_session("survey", 3, label=unique_label())

    fetched = await otree_client.get_session(created.code)

    assert fetched == created
    assert fetched.config_name == "survey"
    assert fetched.num_participants == 3
    assert len(fetched.participants) == 3


async def test_a_session_is_found_by_its_label(otree_client: OTreeClient) -> None:
    label = unique_label()
    await otree_client.create_session("survey", 1, label=unique_label())
    created = await otree_client.create_session("survey", 1, label=label)
    listing = SharedListing(otree_client)

    found = await listing.find(label)

    assert found is not None
    assert found.code == created.code
    assert found.label == label
    assert await listing.find(unique_label()) is None


class CountingClient(OTreeClient):
    """The real client, counting oTree's listings; the first answers only on `release`."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(url, key)
        self.listings = 0
        self.listing = asyncio.Event()
        self.release = asyncio.Event()

    async def list_sessions(self) -> list[SessionSummary]:
        self.listings += 1
        found = await super().list_sessions()
        self.listing.set()
        if self.listings == 1:
            await self.release.wait()  # answered late: what was listed is old by then
        return found


async def test_look_ups_at_the_same_time_share_one_listing(otree_server: LocalOTree) -> None:
    client = CountingClient(otree_server.url, otree_server.rest_key)
    try:
        labels = [unique_label() for _ in range(3)]
        for label in labels:
            await client.create_session("survey", 1, label=label)
        listing = SharedListing(client)
        first = asyncio.create_task(listing.find(labels[0]))
        await client.listing.wait()
        # A session made while the first listing runs is in the listing its look-up waits for.
        late = unique_label()
        await client.create_session("survey", 1, label=late)
        others = [asyncio.create_task(listing.find(label)) for label in [*labels[1:], late]]
        client.release.set()
        found = await asyncio.gather(first, *others)
    finally:
        await client.aclose()

    assert [s.label if s else None for s in found] == [*labels, late]
    assert client.listings == 2  # one for the first look-up, one shared by the three others


# Real oTree: errors carry oTree's own message


async def test_wrong_key_is_an_auth_error(otree_server: LocalOTree) -> None:
    client = OTreeClient(otree_server.url, otree_server.rest_key + "-wrong")
    try:
        with pytest.raises(OTreeAuthError) as caught:
            await client.list_sessions()
    finally:
        await client.aclose()

    assert caught.value.status == 403
    assert caught.value.message == "HTTP Request Header otree-rest-key is incorrect"


async def test_unknown_config_is_a_bad_request(otree_client: OTreeClient) -> None:
    with pytest.raises(OTreeBadRequest) as caught:
        await otree_client.create_session("no_such_config", 2)

    assert caught.value.status == 400
    assert 'Session config "no_such_config" not found' in caught.value.message


async def test_participants_not_a_multiple_of_group_size(otree_client: OTreeClient) -> None:
    label = unique_label()

    with pytest.raises(OTreeBadRequest) as caught:
        await otree_client.create_session("guess_two", 3, label=label)

    assert caught.value.status == 400
    assert "Number of participants (3) is not a multiple of group size (2)" in (
        caught.value.message
    )
    assert await SharedListing(otree_client).find(label) is None


async def test_unknown_session_is_not_found(otree_client: OTreeClient) -> None:
    with pytest.raises(OTreeNotFound) as caught:
        await otree_client.get_session("nosuchcode")

    assert caught.value.status == 404
    assert "Not found" in caught.value.message


async def test_otree_crash_page_becomes_a_short_server_error(otree_client: OTreeClient) -> None:
    # oTree answers 500 with an HTML page to zero participants (and leaves an empty session).
    with pytest.raises(OTreeServerError) as caught:
        await otree_client.create_session("survey", 0, label=unique_label())

    assert caught.value.status == 500
    assert caught.value.message == "oTree answered 500 (Internal Server Error)"


# Real oTree: participant links and the demo project itself


async def test_initialize_participant_lands_on_the_first_page(
    otree_server: LocalOTree, otree_client: OTreeClient
) -> None:
    session = await otree_client.create_session("guess_two", 2, label=unique_label())
    participant = session.participants[0]

    async with httpx.AsyncClient(base_url=otree_server.url) as browser:
        start = await browser.get(f"/InitializeParticipant/{participant.code}")
        assert start.status_code == 307
        first_page = urljoin(str(start.url), start.headers["location"])
        assert urlsplit(first_page).path == f"/p/{participant.code}/guess/Guess/1"

        page = await browser.get(first_page)

    assert page.status_code == 200
    assert 'name="guess"' in page.text


async def _start(browser: httpx.AsyncClient, participant_code: str) -> str:
    response = await browser.get(f"/InitializeParticipant/{participant_code}")
    assert response.status_code == 307
    return str(response.headers["location"])


async def _submit(browser: httpx.AsyncClient, url: str, data: dict[str, str]) -> str:
    """POST a page's form; return the next page's URL."""
    response = await browser.post(url, data=data)
    assert response.status_code == 302, response.text[-500:]
    return str(response.headers["location"])


async def test_demo_guess_two_plays_to_the_end(
    otree_server: LocalOTree, otree_client: OTreeClient
) -> None:
    session = await otree_client.create_session("guess_two", 2, label=unique_label())
    first, second = session.participants
    async with (
        httpx.AsyncClient(base_url=otree_server.url) as one,
        httpx.AsyncClient(base_url=otree_server.url) as two,
    ):
        wait_one = await _submit(one, await _start(one, first.code), {"guess": "17"})
        assert "/guess/ResultsWaitPage/" in wait_one
        waiting = await one.get(wait_one)
        assert waiting.status_code == 200
        assert waiting.headers.get("otree-wait-page") == "1"

        wait_two = await _submit(two, await _start(two, second.code), {"guess": "83"})

        for browser, wait_url, mine, other in ((one, wait_one, 17, 83), (two, wait_two, 83, 17)):
            released = await browser.get(wait_url)
            assert released.status_code == 302
            results_url = released.headers["location"]
            assert "/guess/Results/" in results_url
            results = await browser.get(results_url)
            assert f'id="my-guess">{mine}<' in results.text
            assert f'id="other-guess">{other}<' in results.text
            end = await _submit(browser, results_url, {})
            assert "/OutOfRangeNotification/" in end


async def test_demo_survey_asks_age_and_shows_it(
    otree_server: LocalOTree, otree_client: OTreeClient
) -> None:
    session = await otree_client.create_session("survey", 1, label=unique_label())
    async with httpx.AsyncClient(base_url=otree_server.url) as browser:
        page = await _start(browser, session.participants[0].code)
        assert "/survey/Demographics/" in page
        refused = await browser.post(page, data={"age": "abc"})
        assert refused.status_code == 200  # the form again, with an error
        results_url = await _submit(browser, page, {"age": "34"})
        assert "/survey/Results/" in results_url
        results = await browser.get(results_url)

    assert 'id="age">34<' in results.text


# Stub server: failures a real oTree cannot produce on demand


async def test_server_error_carries_the_body_text(otree_stub: OTreeStub) -> None:
    otree_stub.respond(500, "database is locked", content_type="text/plain")
    client = OTreeClient(otree_stub.url, "the-key")
    try:
        with pytest.raises(OTreeServerError) as caught:
            await client.list_sessions()
    finally:
        await client.aclose()

    assert caught.value.status == 500
    assert caught.value.message == "database is locked"
    assert [(r.method, r.path) for r in otree_stub.requests] == [("GET", "/api/sessions")]
    assert otree_stub.requests[0].headers["otree-rest-key"] == "the-key"


async def test_a_closed_client_opens_new_connections_when_called_again(
    otree_stub: OTreeStub,
) -> None:
    otree_stub.respond(200, "[]")
    client = OTreeClient(otree_stub.url, "k")
    try:
        assert await client.list_sessions() == []
        await client.aclose()

        assert await client.list_sessions() == []
    finally:
        await client.aclose()

    assert len(otree_stub.requests) == 2


async def test_slow_answer_is_a_timeout(otree_stub: OTreeStub) -> None:
    otree_stub.respond(200, "[]", delay=2.0)
    client = OTreeClient(otree_stub.url, "k", timeout=0.5)
    try:
        with pytest.raises(OTreeTimeout) as caught:
            await client.list_sessions()
    finally:
        await client.aclose()

    assert "did not answer in time" in caught.value.message
    assert len(otree_stub.requests) == 1


@contextlib.asynccontextmanager
async def raw_server(
    answer: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A server that reads a request's head and hands its socket to `answer`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await answer(writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def test_an_answer_trickling_in_is_a_timeout_of_the_whole_call() -> None:
    """A byte every 10 ms never trips a wait between reads: the call as a whole times out."""

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        while True:  # until the client hangs up
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with raw_server(trickle) as url, aclosing(OTreeClient(url, "k", timeout=0.5)) as client:
        async with asyncio.timeout(30):  # the call would trickle on for 10,000 s
            with pytest.raises(OTreeTimeout) as caught:
                await client.version()

    assert "did not answer in time (GET /api/otree_version)" in caught.value.message


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "chunked"])
async def test_an_answer_over_the_limit_is_refused(
    declared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_ANSWER_BYTES", 1000)

    async def flood(writer: asyncio.StreamWriter) -> None:
        length = b"Content-Length: 100000" if declared else b"Transfer-Encoding: chunked"
        writer.write(b"HTTP/1.1 200 OK\r\n" + length + b"\r\n\r\n")
        for _ in range(100):
            chunk = b"[" * 1000
            writer.write(chunk if declared else b"3e8\r\n" + chunk + b"\r\n")
            await writer.drain()

    async with raw_server(flood) as url, aclosing(OTreeClient(url, "k", timeout=10)) as client:
        with pytest.raises(OTreeServerError) as caught:
            await client.list_sessions()

    assert caught.value.message == "oTree's answer to GET /api/sessions is over 1,000 bytes"
    assert caught.value.status == 200


async def test_an_answer_under_the_limit_without_a_length_is_read_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "MAX_ANSWER_BYTES", 1000)

    async def chunked(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"version"', b': "6.0.15"}'):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with raw_server(chunked) as url, aclosing(OTreeClient(url, "k", timeout=10)) as client:
        assert await client.version() == "6.0.15"


async def test_refused_connection_is_unreachable(refused_url: str) -> None:
    client = OTreeClient(refused_url, "k", timeout=2.0)
    try:
        with pytest.raises(OTreeUnreachable) as caught:
            await client.version()
    finally:
        await client.aclose()

    assert not isinstance(caught.value, OTreeTimeout)
    assert refused_url in caught.value.message


async def test_a_connection_closed_without_an_answer_is_unreachable() -> None:
    """oTree (or what stands in front of it) hangs up on the request: reported as what it
    is, not as a timeout (the HTTP layer underneath calls every connection error one)."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    client = OTreeClient(url, "k", timeout=5.0)
    try:
        with pytest.raises(OTreeUnreachable) as caught:
            await client.version()
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()

    assert not isinstance(caught.value, OTreeTimeout)
    assert caught.value.message.startswith(f"cannot reach oTree at {url}: ")


async def test_answer_that_is_not_json_is_a_server_error(otree_stub: OTreeStub) -> None:
    otree_stub.respond(200, "<html><body>Welcome</body></html>", content_type="text/html")
    client = OTreeClient(otree_stub.url, "k")
    try:
        with pytest.raises(OTreeServerError) as caught:
            await client.version()
    finally:
        await client.aclose()

    assert caught.value.status == 200
    assert "not JSON" in caught.value.message


async def test_json_of_the_wrong_shape_is_a_server_error(otree_stub: OTreeStub) -> None:
    otree_stub.respond(200, '{"sessions": []}')
    client = OTreeClient(otree_stub.url, "k")
    try:
        with pytest.raises(OTreeServerError, match="where a list was expected"):
            await client.list_sessions()
    finally:
        await client.aclose()


@pytest.mark.parametrize("answer", ['{"participants": []}', '{"code": "other"}', "{}", ""])
async def test_a_session_read_back_that_is_not_the_one_asked_is_a_server_error(
    otree_stub: OTreeStub, answer: str
) -> None:
    # A session without its code was started, recorded under "": its progress was then read
    # with `?session_code=`, which oTree answers with every session's participants.
    otree_stub.respond(200, answer)
    client = OTreeClient(otree_stub.url, "k")
    try:
        with pytest.raises(OTreeServerError, match="instead of session abc"):
            await client.get_session("abc")
    finally:
        await client.aclose()


async def test_no_api_url_is_not_configured(otree_stub: OTreeStub) -> None:
    client = OTreeClient("", "k")
    try:
        with pytest.raises(OTreeNotConfigured):
            await client.list_configs()
    finally:
        await client.aclose()

    assert otree_stub.requests == []


async def test_session_progress_follows_the_participants_to_the_end(
    otree_server: LocalOTree, otree_client: OTreeClient
) -> None:
    session = await otree_client.create_session("guess_two", 2, label=unique_label())
    first, second = session.participants
    before = await otree_client.session_progress(session.code)
    assert [(p.code, p.index, p.finished) for p in before] == [
        (first.code, 0, False),
        (second.code, 0, False),
    ]
    pages = before[0].page_count
    assert pages >= 3  # Guess, ResultsWaitPage, Results
    async with (
        httpx.AsyncClient(base_url=otree_server.url) as one,
        httpx.AsyncClient(base_url=otree_server.url) as two,
    ):
        wait_one = await _submit(one, await _start(one, first.code), {"guess": "17"})
        middle = {p.code: p for p in await otree_client.session_progress(session.code)}
        assert middle[first.code].index > middle[second.code].index
        wait_two = await _submit(two, await _start(two, second.code), {"guess": "83"})
        for browser, wait_url in ((one, wait_one), (two, wait_two)):
            results_url = (await browser.get(wait_url)).headers["location"]
            await _submit(browser, results_url, {})
    after = await otree_client.session_progress(session.code)
    assert all(p.finished and p.index > p.page_count for p in after)


def test_progress_parses_the_export_with_a_bom() -> None:
    text = (
        "\ufeffparticipant.id_in_session,participant.code,participant._index_in_pages,"
        "participant._max_page_index\r\n1,abc,0,3\r\n2,def,4,3\r\n"
    )
    assert [(p.code, p.index, p.page_count, p.finished) for p in parse_progress(text)] == [
        ("abc", 0, 3, False),
        ("def", 4, 3, True),
    ]
    with pytest.raises(OTreeServerError):
        parse_progress("participant.code\r\nabc\r\n")
