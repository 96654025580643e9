"""A join socket whose campaign was being read when this process stopped leading is refused
as a standby's are (503 and `Retry-After`: the page comes back, to the leader), not failed."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from mastok.live.rooms import Rooms, RoomsClosed
from mastok.web import sockets
from tests.fixtures.app import ClientFactory
from tests.lightmill.helpers import services


def test_a_socket_waiting_when_the_term_ends_is_sent_back(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client: TestClient = make_client(authenticated=False)

    async def term_ended(self: Rooms, slug: str) -> None:
        raise RoomsClosed(f"the rooms closed while {slug!r} was read")

    monkeypatch.setattr(Rooms, "runner_for_slug", term_ended)
    origin = {"origin": services(client).settings.origin}

    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        client.websocket_connect("/ws/join?slug=any", headers=origin),
    ):
        pass

    assert refused.value.status_code == 503
    assert refused.value.headers["retry-after"] == str(sockets.RETRY_AFTER)
