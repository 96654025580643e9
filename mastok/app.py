"""Builds the Starlette application from the settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from mastok.audit import AuditLog
from mastok.campaigns.service import CampaignService
from mastok.clock import Clock, SystemClock
from mastok.config import PROJECT_ROOT, Settings
from mastok.db import Database, async_url, migrate
from mastok.lightmill.design import Design
from mastok.lightmill.errors import LightMillError
from mastok.lightmill.service import LightMill
from mastok.live.events import Rules
from mastok.live.leader import Leader
from mastok.live.progress import ProgressPoller
from mastok.live.records import Records
from mastok.live.rooms import Rooms
from mastok.live.starter import SessionStarter
from mastok.metrics import Metrics
from mastok.otree import OTreeClient
from mastok.otree.probe import OTreeProbe
from mastok.services import Services
from mastok.tasks import TaskScope, task_scope
from mastok.web import (
    api,
    audit,
    experiments,
    health,
    join,
    lightmill_api,
    pages,
    participants,
    scrape,
    unavailable,
)
from mastok.web.auth import BasicAuthMiddleware
from mastok.web.body_limit import DEFAULT_LIMIT, MIB, BodyLimit
from mastok.web.errors import handlers as error_handlers
from mastok.web.headers import SecurityHeaders
from mastok.web.nul_urls import NulUrls
from mastok.web.participant_limits import JOIN_GATE, JoinGate, ParticipantLimits
from mastok.web.quick_lane import QuickLane
from mastok.web.server_error import server_error
from mastok.web.sockets import JOIN_PATH, SUPERVISE_PATH, join_socket, supervise_socket
from mastok.web.sockets_first import SocketsFirst, socket_app
from mastok.web.throttle import LoginThrottle, Sleep

log = logging.getLogger("mastok")


class FormSessions(SessionMiddleware):
    """Starlette's signed session cookie, which the admin forms' CSRF tokens and flash
    messages live in: on the admin's HTTP routes only. Public routes and sockets never read it,
    and it would cost every trial a LightMill client posts and every frame mastok sends."""

    def __init__(
        self,
        app: ASGIApp,
        public_prefixes: Sequence[str],
        secret_key: str,
        https_only: bool,
        path: str,
    ) -> None:
        super().__init__(
            app,
            secret_key=secret_key,
            session_cookie="mastok_session",
            path=path,
            same_site="strict",
            https_only=https_only,
        )
        self.public_prefixes = tuple(public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" or (
            scope["type"] == "http" and scope["path"].startswith(self.public_prefixes)
        ):
            await self.app(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def public_prefixes(settings: Settings) -> list[str]:
    """Paths anyone may reach: the join page and socket, static files, the health checks,
    LightMill's experiment client routes."""
    prefix = settings.web_prefix
    lightmill = [f"{prefix}{path}" for path in lightmill_api.CLIENT_PREFIXES]
    return [
        f"{prefix}/join/",
        f"{prefix}{JOIN_PATH}",
        f"{prefix}/front/",
        f"{prefix}/healthz",
        f"{prefix}/readyz",
        *lightmill,
    ]


def create_app(
    settings: Settings,
    designs: Sequence[Design] = (),
    *,
    clock: Clock | None = None,
    sleep: Sleep | None = None,
) -> SocketsFirst:
    """`designs`: LightMill experiments to import at start (those already there are skipped);
    `clock`: the time every rule reads (the system's; tests pass one they move by hand), kept
    on `app.state.clock`; `sleep`: how the admin login throttle waits (tests record it)."""
    clock = clock or SystemClock()
    metrics = Metrics()
    throttle = LoginThrottle(clock, settings.login_max_failures, sleep or asyncio.sleep)
    participant_limits = ParticipantLimits(
        clock,
        settings.sockets_per_address,
        settings.landings_per_minute,
        settings.sockets_per_minute,
    )
    join_gate = JoinGate(participant_limits, settings.web_prefix + JOIN_PATH)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        # Left in reverse: rooms drained, every task cancelled, oTree's client and the
        # database closed (also when starting fails half-way).
        async with contextlib.AsyncExitStack() as stack:
            db = Database(async_url(settings.database_url, settings.sqlite_path))
            stack.push_async_callback(db.close)
            await migrate(db)
            otree = OTreeClient(
                settings.otree_api_url,
                settings.otree_api_key,
                timeout=settings.otree_timeout,
                metrics=metrics,
            )
            stack.push_async_callback(otree.aclose)
            campaigns = CampaignService(db, otree, settings.share_url_base)
            tasks = await stack.enter_async_context(task_scope())
            records = Records(db, tasks.spawn)
            starter = SessionStarter(otree, settings.otree_public_url, tasks.spawn)
            rules = Rules(
                grace=timedelta(seconds=settings.resume_grace),
                live_redirect=not settings.disable_live_redirect,
                left_grace=timedelta(seconds=settings.left_grace),
                land_within=timedelta(seconds=settings.land_within),
            )

            def make_rooms(term_tasks: TaskScope) -> Rooms:
                return Rooms(campaigns, records, starter, rules, clock, term_tasks, metrics)

            leader = Leader(db, make_rooms, records, rules, clock, tasks)
            metrics.watch_waiting(lambda: leader.rooms.waiting_counts() if leader.rooms else {})
            metrics.watch_leader(lambda: leader.rooms is not None)
            campaigns.on_change(leader.campaign_changed)
            stack.push_async_callback(leader.stop)
            probe = OTreeProbe(otree)
            tasks.spawn(probe.run(), "mastok otree probe")
            lightmill = LightMill.from_settings(db, settings, clock, tasks.spawn, metrics)
            stack.push_async_callback(lightmill.aclose)
            for design in designs:
                await lightmill.import_at_start(design)
            if settings.unprotected_runs:
                log.warning(
                    "LIGHTMILL RUNS ARE UNPROTECTED: any client can take over a locked run. "
                    "Never run a real study like this."
                )
            if settings.client_import:
                log.info("LightMill: experiment clients may import new designs (client_import)")
            audit = AuditLog(db, clock)
            services = Services(
                settings=settings,
                db=db,
                otree=otree,
                campaigns=campaigns,
                records=records,
                leader=leader,
                lightmill=lightmill,
                audit=audit,
                otree_probe=probe,
            )
            app.state.services = services
            await leader.start()
            # oTree's progress of the leader's live sessions (a standby has none to read).
            poller = ProgressPoller(leader, otree, db, records, clock)
            tasks.spawn(poller.run(), "mastok progress")
            log.info(
                "mastok ready: listening on http://%s:%d%s (public origin %s), %s",
                settings.host,
                settings.port,
                settings.web_prefix or "/",
                settings.origin,
                leader.shown_role,
            )
            yield {JOIN_GATE: join_gate}  # the lifespan state: uvicorn hands it to protocols

    # LightMill's first: the router tries each route's pattern in turn, and a client posts
    # thousands of trials (no route before them matches a path under /api).
    routes: list[BaseRoute] = [
        *lightmill_api.routes,
        *pages.routes,
        *experiments.page_routes,
        *participants.page_routes,
        *audit.page_routes,
        *join.routes,
        Mount("/api", routes=api.routes),
        *health.routes,
        Route("/metrics", scrape.metrics),
        Mount("/front", StaticFiles(directory=PROJECT_ROOT / "front"), name="front"),
    ]
    if settings.web_prefix:
        routes = [Mount(settings.web_prefix, routes=routes)]
    prefix = settings.web_prefix
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            NulUrls,
            exempt_prefixes=[prefix + path for path in lightmill_api.CLIENT_PREFIXES],
            api_prefix=prefix + "/api/",
        ),
        Middleware(
            BodyLimit,
            exempt_prefixes=[prefix + path for path in lightmill_api.CLIENT_PREFIXES],
            api_prefix=prefix + "/api/",
            # The design upload form: the file, and its other fields within the usual bound.
            path_limits={prefix + "/experiments": settings.max_design_mib * MIB + DEFAULT_LIMIT},
        ),
        Middleware(
            BasicAuthMiddleware,
            login=settings.login,
            password=settings.password,
            public_prefixes=public_prefixes(settings),
            throttle=throttle,
        ),
        Middleware(
            FormSessions,
            public_prefixes=public_prefixes(settings),
            secret_key=settings.signing_key,
            https_only=settings.origin.startswith("https://"),
            path=settings.web_prefix or "/",
        ),
    ]
    supervising = BasicAuthMiddleware(
        socket_app(supervise_socket),
        login=settings.login,
        password=settings.password,
        public_prefixes=(),
        throttle=throttle,
    )
    app = SocketsFirst(
        {prefix + JOIN_PATH: socket_app(join_socket), prefix + SUPERVISE_PATH: supervising},
        quick_lane=QuickLane(lightmill_api.TRIAL_POST, prefix),
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            **error_handlers,
            **unavailable.handlers,
            LightMillError: lightmill_api.lightmill_error,
            500: server_error,
        },
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.metrics = metrics
    app.state.login_throttle = throttle
    app.state.participant_limits = participant_limits
    return app
