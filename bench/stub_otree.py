"""A stub oTree that answers at once, so the benchmark's figures are mastok's, not oTree's.

It speaks the part of oTree 6's REST API mastok uses (shared/otree-notes.md): the version, the
session configs, sessions listed with their labels (as oTree does: every session), created, and
read back with their participants. Participant codes carry their session's code
(`{session}_{n}`), so a load generator can tell which participants shared a session.

    python -m bench.stub_otree PORT
"""

from __future__ import annotations

import itertools
import json
import sys
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CONFIGS = [
    {
        "name": "bench",
        "display_name": "Benchmark (any number of players)",
        "app_sequence": ["bench"],
        "num_demo_participants": 4,
        "doc": "The benchmark's stub session config.",
        "real_world_currency_per_point": 1.0,
        "participation_fee": 0.0,
    }
]
JSON = "application/json"


class Stub:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.counter = itertools.count(1)
        self.summaries: list[bytes] = []  # every session, pre-encoded, as GET /api/sessions lists
        self.details: dict[str, bytes] = {}
        self.created = 0

    async def version(self, request: Request) -> Response:
        return Response(b'{"version": "6.0.15"}', media_type=JSON)

    async def configs(self, request: Request) -> Response:
        return Response(json.dumps(CONFIGS), media_type=JSON)

    async def sessions(self, request: Request) -> Response:
        if request.method == "GET":
            return Response(b"[" + b",".join(self.summaries) + b"]", media_type=JSON)
        body = json.loads(await request.body())
        number = next(self.counter)
        code = f"s{number:07d}"
        count = int(body.get("num_participants") or 0)
        if count <= 0:
            return Response(b'{"detail": "num_participants must be positive"}', 400)
        config = dict(CONFIGS[0])
        config["name"] = body.get("session_config_name", "bench")
        config.update(body.get("modified_session_config_fields") or {})
        admin_url = f"{self.base_url}/SessionStartLinks/{code}"
        wide_url = f"{self.base_url}/join/{code}"
        summary = {
            "code": code,
            "num_participants": count,
            "created_at": time.time(),
            "label": body.get("label") or "",
            "config_name": config["name"],
            "session_wide_url": wide_url,
            "admin_url": admin_url,
        }
        self.summaries.append(json.dumps(summary).encode())
        detail = {
            "code": code,
            "num_participants": count,
            "config_name": config["name"],
            "config": config,
            "admin_url": admin_url,
            "session_wide_url": wide_url,
            "label": summary["label"],
            "participants": [
                {"id_in_session": n, "code": f"{code}_{n}", "label": None}
                for n in range(1, count + 1)
            ],
        }
        self.details[code] = json.dumps(detail).encode()
        self.created += 1
        answer = {"code": code, "session_wide_url": wide_url, "admin_url": admin_url}
        return Response(json.dumps(answer), media_type=JSON)

    async def session(self, request: Request) -> Response:
        detail = self.details.get(request.path_params["code"])
        if detail is None:
            return Response(b'{"detail": "session not found"}', 404, media_type=JSON)
        return Response(detail, media_type=JSON)


def create_app(base_url: str) -> Starlette:
    stub = Stub(base_url)
    return Starlette(
        routes=[
            Route("/api/otree_version", stub.version),
            Route("/api/session_configs", stub.configs),
            Route("/api/sessions", stub.sessions, methods=["GET", "POST"]),
            Route("/api/sessions/{code}", stub.session),
        ]
    )


def main() -> None:
    port = int(sys.argv[1])
    base_url = f"http://127.0.0.1:{port}"
    uvicorn.run(
        create_app(base_url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
