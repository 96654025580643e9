"""A stub oTree that answers at once, except for listing sessions, which costs what oTree's does.

It speaks the part of oTree 6's REST API mastok uses (shared/otree-notes.md): the version, the
session configs, sessions listed with their labels (as oTree does: every session), created, and
read back with their participants, participant vars set, and a session's wide export (every
participant still playing, so sessions stay live for their `session_duration`). Participant
codes carry their session's code (`{session}_{n}`), so a load generator can tell which
participants shared a session.

Listing is the one call whose cost grows with oTree's history: oTree 6 took 1.5 s (374 kB) to
list 1,500 sessions and served concurrent listings one after the other (issue 9). So a listing
here takes `--list-ms-per-session` (1.0 by default) times the sessions held, one listing at a
time, and `--sessions N` starts the stub holding N sessions of other studies. `GET
/_bench/stats` (`?clear=1` to reset) counts the listings, the sessions created, the
participant vars set and the progress reads.

    python -m bench.stub_otree PORT [--sessions N] [--list-ms-per-session MS]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mastok.otree.client import PROGRESS_COLUMNS  # the columns of oTree's wide export mastok reads

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
LIST_MS_PER_SESSION = 1.0  # oTree 6: 1.5 s for 1,500 sessions


def _others(count: int, base_url: str) -> list[bytes]:
    """`count` sessions of other studies (labels mastok never made), as oTree lists them."""
    now = time.time() - 86_400 * 365
    out = []
    for n in range(count):
        code = f"o{n:07d}"
        summary = {
            "code": code,
            "num_participants": 8 + n % 24,
            "created_at": now + 3600 * n,
            "label": f"lab-study-{n % 41}:wave-{n // 41}",
            "config_name": f"study_{n % 41}",
            "session_wide_url": f"{base_url}/join/{code}",
            "admin_url": f"{base_url}/SessionStartLinks/{code}",
        }
        out.append(json.dumps(summary).encode())
    return out


class Stub:
    def __init__(
        self, base_url: str, sessions: int = 0, list_ms_per_session: float = LIST_MS_PER_SESSION
    ) -> None:
        self.base_url = base_url
        self.counter = itertools.count(1)
        # Every session, pre-encoded, as GET /api/sessions lists them.
        self.summaries: list[bytes] = _others(sessions, base_url)
        self.details: dict[str, bytes] = {}
        self.participants: set[str] = set()
        self.list_ms_per_session = list_ms_per_session
        self.listing = asyncio.Lock()  # oTree served one listing at a time
        self.stats = _zero_stats()

    async def bench_stats(self, request: Request) -> Response:
        answer = {**self.stats, "sessions_held": len(self.summaries)}
        if request.query_params.get("clear"):
            self.stats = _zero_stats()
        return Response(json.dumps(answer), media_type=JSON)

    async def _list(self) -> Response:
        self.stats["listings_asked"] += 1
        async with self.listing:
            cost = self.list_ms_per_session * len(self.summaries) / 1000
            await asyncio.sleep(cost)
            body = b"[" + b",".join(self.summaries) + b"]"
            self.stats["listings"] += 1
            self.stats["listing_s"] = round(self.stats["listing_s"] + cost, 3)
            self.stats["listed_bytes"] += len(body)
        return Response(body, media_type=JSON)

    async def version(self, request: Request) -> Response:
        return Response(b'{"version": "6.0.15"}', media_type=JSON)

    async def configs(self, request: Request) -> Response:
        return Response(json.dumps(CONFIGS), media_type=JSON)

    async def sessions(self, request: Request) -> Response:
        if request.method == "GET":
            return await self._list()
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
        self.participants.update(p["code"] for p in detail["participants"])
        self.stats["created"] += 1
        answer = {"code": code, "session_wide_url": wide_url, "admin_url": admin_url}
        return Response(json.dumps(answer), media_type=JSON)

    async def session(self, request: Request) -> Response:
        detail = self.details.get(request.path_params["code"])
        if detail is None:
            return Response(b'{"detail": "session not found"}', 404, media_type=JSON)
        return Response(detail, media_type=JSON)

    async def participant_vars(self, request: Request) -> Response:
        """What mastok tells oTree of each entrant before sending them there (issue 11)."""
        if request.path_params["code"] not in self.participants:
            return Response(b'{"detail": "participant not found"}', 404, media_type=JSON)
        json.loads(await request.body())
        self.stats["participant_vars"] += 1
        return Response(b"{}", media_type=JSON)

    async def export_wide(self, request: Request) -> Response:
        """Every participant of the session on its first page of five: still playing, so a
        session counts as live for its whole `session_duration`, as before progress was read."""
        code = request.query_params.get("session_code", "")
        detail = self.details.get(code)
        if detail is None:
            return Response(b'{"detail": "session not found"}', 404, media_type=JSON)
        self.stats["progress_reads"] += 1
        lines = [",".join(PROGRESS_COLUMNS)]
        lines += [f"{p['code']},1,5" for p in json.loads(detail)["participants"]]
        return Response("\n".join(lines) + "\n", media_type="text/csv")


def _zero_stats() -> dict[str, Any]:
    return {
        "listings_asked": 0,
        "listings": 0,
        "listing_s": 0.0,
        "listed_bytes": 0,
        "created": 0,
        "participant_vars": 0,
        "progress_reads": 0,
    }


def create_app(
    base_url: str, sessions: int = 0, list_ms_per_session: float = LIST_MS_PER_SESSION
) -> Starlette:
    stub = Stub(base_url, sessions, list_ms_per_session)
    return Starlette(
        routes=[
            Route("/_bench/stats", stub.bench_stats),
            Route("/api/otree_version", stub.version),
            Route("/api/session_configs", stub.configs),
            Route("/api/sessions", stub.sessions, methods=["GET", "POST"]),
            Route("/api/sessions/{code}", stub.session),
            Route("/api/participant_vars/{code}", stub.participant_vars, methods=["POST"]),
            Route("/api/export_wide", stub.export_wide),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stub_otree")
    parser.add_argument("port", type=int)
    parser.add_argument("--sessions", type=int, default=0, help="other studies' sessions held [0]")
    parser.add_argument(
        "--list-ms-per-session",
        type=float,
        default=LIST_MS_PER_SESSION,
        help=f"a listing's cost per session held, ms [{LIST_MS_PER_SESSION:g}: oTree 6's]",
    )
    args = parser.parse_args()
    base_url = f"http://127.0.0.1:{args.port}"
    uvicorn.run(
        create_app(base_url, args.sessions, args.list_ms_per_session),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
