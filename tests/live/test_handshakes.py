"""Who may open which socket: Origin checks and the supervisor's Basic credentials."""

from __future__ import annotations

import base64

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.fixtures.live import LiveServer, ServerFactory
from tests.live.helpers import running_campaign


@pytest.fixture
def server(make_server: ServerFactory) -> LiveServer:
    return make_server()


async def refused_status(url: str, **options: object) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, **options):  # type: ignore[arg-type]
            pass
    return refused.value.response.status_code


async def test_participant_socket_from_another_origin_is_refused(server: LiveServer) -> None:
    campaign = running_campaign(server)
    url = server.ws_url(f"/ws/join?slug={campaign['slug']}")
    assert await refused_status(url, origin="https://evil.example") == 403
    assert await refused_status(url) == 403  # no Origin header


async def test_missing_origin_is_accepted_when_configured(make_server: ServerFactory) -> None:
    server = make_server(allow_missing_origin=True)
    campaign = running_campaign(server)
    async with connect(server.ws_url(f"/ws/join?slug={campaign['slug']}")) as socket:
        assert '"State"' in str(await socket.recv())
    url = server.ws_url(f"/ws/join?slug={campaign['slug']}")
    assert await refused_status(url, origin="https://evil.example") == 403


async def test_supervisor_socket_challenges_without_credentials(server: LiveServer) -> None:
    running_campaign(server, "guarded")
    url = server.ws_url("/ws/campaigns/supervise?namespace=guarded")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin=server.origin):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"admin:wrong").decode()
    status = await refused_status(
        url, origin=server.origin, additional_headers={"Authorization": f"Basic {wrong}"}
    )
    assert status == 401


async def test_supervisor_socket_checks_origin_too(server: LiveServer) -> None:
    running_campaign(server, "guarded")
    token = base64.b64encode(b"admin:test-password").decode()
    url = server.ws_url("/ws/campaigns/supervise?namespace=guarded")
    status = await refused_status(
        url, origin="https://evil.example", additional_headers={"Authorization": f"Basic {token}"}
    )
    assert status == 403


@pytest.mark.parametrize("namespace", ["ghost", "a%00b"], ids=["unknown", "a NUL"])
async def test_unknown_namespace_is_closed(server: LiveServer, namespace: str) -> None:
    supervisor = await server.supervisor(namespace)
    assert "no campaign" in await supervisor.expect("Error")
    assert await supervisor.closed() == 4404


def test_join_page_is_public_and_unknown_slugs_are_404(server: LiveServer) -> None:
    campaign = running_campaign(server, "page", slug="page_slug")
    with httpx.Client(base_url=server.url) as anonymous:
        page = anonymous.get("/join/page_slug")
        assert page.status_code == 200
        assert 'data-ws-path="/ws/join?slug=page_slug"' in page.text
        assert "/front/js/join.js" in page.text
        missing = anonymous.get("/join/nothing_here")
        assert missing.status_code == 404
        assert "does not lead to any study" in missing.text
        assert anonymous.get("/front/js/join.js").status_code == 200
    assert campaign["slug"] == "page_slug"
