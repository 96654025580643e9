"""The ceilings: a bare Starlette app, served exactly as `mastok serve` serves mastok (uvicorn,
same options, same logging), so the ratio of mastok's rate to this one's is what mastok's own
work costs.

WebSocket echo (`/ws/echo`): a flow is connect, 3 request/response frames, then the server closes
(as mastok does after `Disconnect`). A socket that sends nothing just waits: that is the idle
reference for memory.

JSON POST (`/api/trial/...`, the logging scenario's ceiling): the body read whole and parsed as
JSON whatever its Content-Type (as LightMill's trial POST reads it), a small JSON answer.

    python -m bench.echo_app PORT
"""

from __future__ import annotations

import json
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from mastok.serving import serve_app

FRAMES = 3


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        for _ in range(FRAMES):
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        return
    await websocket.close(1000, "Start")


async def post_json(request: Request) -> JSONResponse:
    body = json.loads((await request.body()).decode("utf-8"))
    events = body.get("measures", {}).get("events", [])
    return JSONResponse({"ok": True, "events": len(events)})


app = Starlette(
    routes=[
        WebSocketRoute("/ws/echo", echo),
        Route("/api/trial/{xp}/{run}/{block}/{trial}", post_json, methods=["POST"]),
    ]
)


def main() -> None:
    serve_app(app, "127.0.0.1", int(sys.argv[1]))  # uvicorn's options and logging as mastok's


if __name__ == "__main__":
    main()
