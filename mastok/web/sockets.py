"""The WebSocket endpoints: participants join by slug, supervisors watch by namespace."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from mastok.campaigns.rules import InvalidCampaign
from mastok.campaigns.service import CampaignNotFound
from mastok.live.connection import Connection, RateLimit
from mastok.live.protocol import (
    MAX_FRAME_BYTES,
    MAX_PARAM,
    Frame,
    FrameError,
    Kind,
    Reason,
    decode,
)
from mastok.live.rooms import RoomsClosed
from mastok.states import CampaignState
from mastok.web import audit
from mastok.web.participant_limits import ParticipantLimits

UNKNOWN = 4404
POLICY = 1008
TOO_BIG = 1009
TRY_AGAIN_LATER = 1013
RETRY_AFTER = 1  # seconds: a standby may lead within the next
MAX_QUERY_ITEMS = 32
MAX_QUERY_NAME = 64
# True in the task of a handshake answered with an HTTP response (a standby's 503): uvicorn then
# logs "connection rejected" and, at ERROR, "ASGI callable returned without completing
# handshake." (Kludex/uvicorn#3138), which `mastok.serving` drops for such a task only.
handshake_denied: ContextVar[bool] = ContextVar("handshake_denied", default=False)


def origin_allowed(websocket: WebSocket) -> bool:
    settings = websocket.app.state.settings
    origin = websocket.headers.get("origin")
    if origin is None:
        return bool(settings.allow_missing_origin)
    return origin.rstrip("/") == settings.origin


async def not_leading(websocket: WebSocket) -> None:
    """The rooms run in another process: the page retries, and a proxy that follows `/readyz`
    sends it there."""
    await try_again_later(websocket, "this mastok is a standby: the waiting rooms run elsewhere")


async def try_again_later(websocket: WebSocket, why: str) -> None:
    """Refuse the handshake with 503 and `Retry-After` (a socket already open: close 1013)."""
    if websocket.client_state != WebSocketState.CONNECTING:
        await websocket.close(TRY_AGAIN_LATER)
    elif "websocket.http.response" in websocket.scope.get("extensions", {}):
        handshake_denied.set(True)
        response = PlainTextResponse(
            why, status_code=503, headers={"Retry-After": str(RETRY_AFTER)}
        )
        await websocket.send_denial_response(response)
    else:
        await websocket.close(TRY_AGAIN_LATER)


async def join_socket(websocket: WebSocket) -> None:
    limits: ParticipantLimits = websocket.app.state.participant_limits
    address = websocket.client.host if websocket.client else ""
    if not origin_allowed(websocket):
        limits.turned_away(address)
        await _refuse(websocket, limits, address, "from another origin")
        return
    refused = limits.opened(address)  # most are refused before this (`JoinGate`)
    if refused is not None:
        await _refuse(websocket, limits, address, refused)
        return
    try:
        await _join(websocket, limits, address)
    finally:
        limits.closed(address)


async def _refuse(websocket: WebSocket, limits: ParticipantLimits, address: str, why: str) -> None:
    """Answer the handshake 403, logged at most once a minute an address (uvicorn's line per
    refused handshake is dropped: `mastok.serving`)."""
    limits.note_refused(address, why)
    await websocket.close(POLICY)  # before accept: the handshake is answered 403


async def _join(websocket: WebSocket, limits: ParticipantLimits, address: str) -> None:
    services = websocket.app.state.services
    rooms = services.leader.rooms
    if rooms is None:
        await not_leading(websocket)
        return
    slug = websocket.query_params.get("slug", "")
    try:
        runner = await rooms.runner_for_slug(slug) if _may_name(slug) else None
    except RoomsClosed:  # the term ended meanwhile: the page comes back to the leader
        await not_leading(websocket)
        return
    await websocket.accept()
    connection = Connection(websocket)
    if runner is None:
        connection.send("Error", f"no campaign at {slug!r}")
        connection.close(UNKNOWN, "unknown campaign")
        await connection.wait_closed()
        return
    with websocket.app.state.metrics.socket_open("participant"):
        conn = await runner.participant_arrives(connection, _query(websocket))

        async def on_frame(frame: Frame) -> None:
            if frame.kind == Kind.LAND and not limits.may_land(address):
                connection.disconnect(Reason.LANDING_FAILED)  # a burst of made-up ids: refused
                return
            await runner.participant_frame(conn, frame)

        code = None
        try:
            code = await _read_frames(websocket, connection, on_frame)
        finally:
            runner.participant_leaves(conn, code)
            await connection.stop()


async def supervise_socket(websocket: WebSocket) -> None:
    if not origin_allowed(websocket):
        await websocket.close(POLICY)
        return
    services = websocket.app.state.services
    rooms = services.leader.rooms
    if rooms is None:
        await not_leading(websocket)
        return
    namespace = websocket.query_params.get("namespace", "")
    await websocket.accept()
    connection = Connection(websocket)
    try:
        if not _may_name(namespace):
            raise CampaignNotFound(namespace)
        campaign = await services.campaigns.get(namespace)
    except CampaignNotFound:
        connection.send("Error", f"no campaign named {namespace!r}")
        connection.close(UNKNOWN, "unknown campaign")
        await connection.wait_closed()
        return
    runner = await rooms.runner(campaign)
    await runner.supervisor_arrives(connection)

    async def on_frame(frame: Frame) -> None:
        if frame.kind != Kind.STATE:
            connection.send("Error", f"supervisors can send State, not {frame.kind!r}")
            return
        if frame.payload not in tuple(CampaignState):
            connection.send("Error", "State must be Running, Paused or Completed")
            return
        try:
            edit = await services.campaigns.update(namespace, {"state": frame.payload})
        except InvalidCampaign as refused:  # Running with every session started, say
            connection.send("Error", "; ".join(refused.errors.values()))
            return
        await audit.audited_edit(websocket, namespace, edit.before, edit.after)

    with websocket.app.state.metrics.socket_open("supervisor"):
        try:
            await _read_frames(websocket, connection, on_frame)
        finally:
            runner.supervisor_leaves(connection)
            await connection.stop()


async def _read_frames(
    websocket: WebSocket,
    connection: Connection,
    handle: Callable[[Frame], Awaitable[None]],
) -> int | None:
    """Hand each well-formed frame to `handle`; answer bad ones; close abusive sockets. The
    close code the peer sent when it closed the socket (None when mastok closed it)."""
    limit = RateLimit()
    while not connection.closing:
        try:
            message = await websocket.receive()
        except WebSocketDisconnect as disconnect:
            return disconnect.code
        except RuntimeError:
            return None
        if message["type"] == "websocket.disconnect":
            return int(message.get("code", 1005))
        text = message.get("text")
        if text is None:
            connection.close(POLICY, "frames must be JSON text")
            return None
        if len(text) > MAX_FRAME_BYTES // 4 and len(text.encode()) > MAX_FRAME_BYTES:
            connection.close(TOO_BIG, "frame too big")
            return None
        if not limit.allow():
            connection.close(POLICY, "too many frames")
            return None
        try:
            frame = decode(text)
        except FrameError as error:
            connection.send("Error", str(error))
            continue
        if frame.kind == Kind.PING:  # the page checking its socket lives: not the room's
            connection.send(Kind.PONG)
            continue
        await handle(frame)
    return None


def _may_name(name: str) -> bool:
    """Whether `name` may be a campaign's slug or namespace: not empty, and without a NUL,
    which PostgreSQL's text cannot hold (a search for one fails, and the socket with it)."""
    return bool(name) and "\x00" not in name


# Served ahead of the router (`mastok.web.sockets_first`).
JOIN_PATH = "/ws/join"
SUPERVISE_PATH = "/ws/campaigns/supervise"


def _query(websocket: WebSocket) -> tuple[tuple[str, str], ...]:
    """The socket URL's parameters but the slug, bounded: the room keeps those its campaign
    declares (a platform id, say) and checks their values."""
    kept = [
        (name[:MAX_QUERY_NAME], value[: MAX_PARAM + 1])
        for name, value in websocket.query_params.multi_items()
        if name != "slug"
    ]
    return tuple(kept[:MAX_QUERY_ITEMS])
