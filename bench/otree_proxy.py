"""A timing proxy between mastok and a real oTree: forwards every call and writes down how long
oTree took to answer it, so a session start can be split into oTree's time and mastok's.

`GET /_bench/calls` lists the calls: method, path, status, oTree's time in ms, and what ties a
call to a session (the label of a creation, the session code, the participant codes);
`?clear=1` also forgets them.

    python -m bench.otree_proxy PORT OTREE_URL
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


class Proxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.calls: list[dict[str, Any]] = []
        self._client: httpx.AsyncClient | None = None

    async def forward(self, request: Request) -> Response:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.target, timeout=30)
        arrived = time.time() * 1000
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        begin = time.perf_counter()
        answer = await self._client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            content=body,
            headers=headers,
        )
        took = (time.perf_counter() - begin) * 1000
        call: dict[str, Any] = {
            "method": request.method,
            "path": request.url.path,
            "status": answer.status_code,
            "ms": round(took, 3),
            # Wall-clock milliseconds, comparable with the load generator's times.
            "arrived": arrived,
        }
        path = request.url.path
        try:
            if path == "/api/sessions" and request.method == "POST":
                call["label"] = json.loads(body).get("label")
                call["code"] = answer.json().get("code")
            elif path.startswith("/api/sessions/") and request.method == "GET":
                data = answer.json()
                call["code"] = data.get("code")
                call["participants"] = [p.get("code") for p in data.get("participants") or []]
        except ValueError:
            pass
        call["left"] = time.time() * 1000
        self.calls.append(call)
        skipped = {"content-length", "content-encoding", "transfer-encoding", "connection"}
        out_headers = {k: v for k, v in answer.headers.items() if k.lower() not in skipped}
        return Response(answer.content, answer.status_code, headers=out_headers)

    async def log(self, request: Request) -> Response:
        calls = self.calls
        if request.query_params.get("clear"):
            self.calls = []
        return JSONResponse(calls)


def main() -> None:
    port, target = int(sys.argv[1]), sys.argv[2]
    proxy = Proxy(target)
    app = Starlette(
        routes=[
            Route("/_bench/calls", proxy.log),
            Route("/{path:path}", proxy.forward, methods=METHODS),
        ]
    )
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )


if __name__ == "__main__":
    main()
