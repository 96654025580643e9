"""The ceiling: a bare Starlette WebSocket echo app, served exactly as `mastok serve` serves
mastok (uvicorn, same options, same logging), so the ratio of mastok's flow rate to this one's is
what mastok's own work costs.

A flow is: connect, 3 request/response frames, then the server closes (as mastok does after
`Disconnect`). A socket that sends nothing just waits: that is the idle reference for memory.

    python -m bench.echo_app PORT
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

FRAMES = 3


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        for _ in range(FRAMES):
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        return
    await websocket.close(1000, "Start")


app = Starlette(routes=[WebSocketRoute("/ws/echo", echo)])


def main() -> None:
    # As mastok.cli._run does.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        proxy_headers=True,
        log_level="info",
        ws_per_message_deflate=False,  # as `mastok serve`
    )


if __name__ == "__main__":
    main()
