"""LightMill's HTTP API at LightMill's paths (under `/api`) and in its JSON shapes.

Its routes sit beside mastok's admin API rather than in its mount: they have their own
documentation (docs/lightmill.md) and their own access rules.

Experiment clients (lightmill-runner) call every route from other origins without credentials:
the routes are public (the auth middleware lets them through) and CORS-open. `/import` changes
what the server holds, so it decides itself who may: the admin (HTTP Basic), and anyone when the
settings let clients import new designs as LightMill did (`client_import`). Anyone else gets
LightMill's error shape with the CORS headers, so a client can show why. Being CORS-open does
not open the admin's import to other sites: its XML Content-Type takes a preflight, whose answer
(any origin, no `Access-Control-Allow-Credentials`) forbids a page elsewhere to send the admin's
cached credentials with it.

The routes answer with what the service returns, as JSON; a `LightMillError` they raise is
answered by `lightmill_error`, which the app registers as its exception handler (inside each
route's CORS middleware, so error answers carry the CORS headers too).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any

import orjson
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response

from mastok.lightmill.design import Factor, Measure
from mastok.lightmill.errors import (
    ImportNotAllowed,
    InvalidBody,
    LightMillError,
    TooManyAttempts,
    UnknownElement,
    UnsupportedMediaType,
)
from mastok.lightmill.export import epoch_ms
from mastok.lightmill.results import parse_json, parse_results, read_token
from mastok.lightmill.service import LightMill
from mastok.lightmill.store import BlockInfo, ExperimentInfo, Lock, PlanBlock, RunInfo, TrialInfo
from mastok.services import services, settings
from mastok.web.audit import audited
from mastok.web.auth import check_credentials
from mastok.web.errors import media_type
from mastok.web.quick_post import QuickPost

MIB = 1 << 20
MAX_RESULTS_BYTES = 16 * MIB
XML_TYPES = ("application/xml", "text/xml")
NUMBER = re.compile(r"\d{1,9}")

Handler = Callable[[Request], Awaitable[Response]]


def _lightmill(request: Request) -> LightMill:
    return services(request).lightmill


async def lightmill_error(request: Request, error: Exception) -> Response:
    """LightMill's `{"message", "type"}` with the error's status (the app's handler)."""
    assert isinstance(error, LightMillError)
    headers = None if error.retry_after is None else {"Retry-After": str(error.retry_after)}
    return JSONResponse(error.to_json(), error.status, headers=headers)


def _answering_json(handler: Callable[[Request], Awaitable[Any]]) -> Handler:
    """JSON for what the handler returns."""

    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":  # not a CORS preflight (those never get here)
            return Response(status_code=200)
        return json_answer(await handler(request))

    endpoint.__name__ = handler.__name__
    return endpoint


def json_answer(content: Any) -> Response:
    """JSONResponse's bytes and headers, written by orjson (a trial's answer: 0.7 µs, where
    JSONResponse took 10). They are the same bytes for LightMill's answers, which hold text,
    integers, booleans and nulls, no floats (orjson writes 1e16 where json writes 1e+16);
    what orjson cannot write (a key that is not text, an integer past 64 bits) JSONResponse
    writes as before."""
    try:
        body = orjson.dumps(content)
    except TypeError:
        return JSONResponse(content)
    return Response(body, media_type=JSONResponse.media_type)


# --- Routes -----------------------------------------------------------------------------------


async def list_experiments(request: Request) -> Any:
    return await _lightmill(request).experiments()


async def import_experiment(request: Request) -> Any:
    await _check_may_import(request)
    if media_type(request) not in XML_TYPES:
        raise UnsupportedMediaType(
            "send the TouchStone design as the body with Content-Type: application/xml"
        )
    data = await _read_body(request, settings(request).max_design_mib * MIB)
    info = await _lightmill(request).import_xml(data)
    await audited(request, "experiment.imported", info.id)  # the admin, or a client if allowed
    return experiment_json(info)


async def get_experiment(request: Request) -> Any:
    return experiment_json(await _lightmill(request).experiment(_experiment_path(request)))


async def available_run(request: Request) -> Any:
    return run_json(await _lightmill(request).available_run(_experiment_path(request)))


async def get_run(request: Request) -> Any:
    return run_json(await _lightmill(request).run(*_run_path(request), _token(request)))


async def lock_run(request: Request) -> Any:
    return lock_json(await _lightmill(request).lock(*_run_path(request)))


async def unlock_run(request: Request) -> Any:
    token = read_token(parse_json(await _read_body(request, MIB)))
    return run_json(await _lightmill(request).unlock(*_run_path(request), token))


async def run_plan(request: Request) -> Any:
    plan = await _lightmill(request).plan(*_run_path(request), _token(request))
    return [plan_block_json(block) for block in plan]


async def current_trial(request: Request) -> Any:
    lightmill = _lightmill(request)
    return trial_json(await lightmill.current_trial(*_run_path(request), _token(request)))


async def next_trial(request: Request) -> Any:
    lightmill = _lightmill(request)
    return trial_json(await lightmill.next_trial(*_run_path(request), _token(request)))


async def get_block(request: Request) -> Any:
    xp, run = _run_path(request)
    block = path_number(request, "block")
    return block_json(await _lightmill(request).block(xp, run, block, _token(request)))


async def get_trial(request: Request) -> Any:
    xp, run = _run_path(request)
    block, trial = path_number(request, "block"), path_number(request, "trial")
    info = await _lightmill(request).trial(xp, run, block, trial, _token(request))
    return {**trial_json(info), "events": info.events}


async def post_trial(request: Request) -> Any:
    # Clients send the JSON as text/plain (or nothing) to spare a preflight: read the bytes.
    results = parse_results(await _read_body(request, MAX_RESULTS_BYTES))
    xp, run = _run_path(request)
    block, trial = path_number(request, "block"), path_number(request, "trial")
    return trial_json(await _lightmill(request).record_trial(xp, run, block, trial, results))


async def _check_may_import(request: Request) -> None:
    """The admin may import; clients too when the settings say so. Raises ImportNotAllowed
    (without a Basic challenge: a participant's browser is to show its message, not a login
    prompt), or TooManyAttempts when the admin login throttle locked the address out."""
    config = settings(request)
    if config.client_import:
        return
    throttle = request.app.state.login_throttle
    verdict = await check_credentials(throttle, request.scope, config.login, config.password)
    if verdict.allowed:
        return
    if verdict.retry_after is not None:
        raise TooManyAttempts(
            "too many wrong credentials from your address: try again later",
            retry_after=verdict.retry_after,
        )
    raise ImportNotAllowed(
        "importing a design needs mastok's admin credentials: the experimenter imports it "
        "beforehand (mastok serve --experiment-design, or the /experiments page), or lets "
        "clients import new designs (MASTOK_CLIENT_IMPORT)"
    )


def _experiment_path(request: Request) -> str:
    """The path's experiment id. Raises UnknownElement for one holding a NUL: no design holds
    one (XML has none), and PostgreSQL fails on a search for it."""
    xp: str = request.path_params["xp"]
    if "\x00" in xp:
        raise UnknownElement(f"there is no experiment {xp!r}")
    return xp


def _run_path(request: Request) -> tuple[str, str]:
    """The path's experiment and run ids (as `_experiment_path`)."""
    xp, run = _experiment_path(request), request.path_params["run"]
    if "\x00" in run:
        raise UnknownElement(f"experiment {xp!r} has no run {run!r}")
    return xp, run


def _token(request: Request) -> str | None:
    """A `token` query parameter: the call keeps the run's lock alive (service.py)."""
    return request.query_params.get("token")


def path_number(request: Request, name: str) -> int:
    """A block or trial number of the path. Raises UnknownElement."""
    raw = request.path_params[name]
    if not NUMBER.fullmatch(raw):
        raise UnknownElement(f"{name} numbers are whole numbers from 0, not {raw!r}")
    return int(raw)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidBody(f"the body is larger than {limit // MIB} MiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidBody(f"the body is larger than {limit // MIB} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


# --- JSON shapes (LightMill's) ----------------------------------------------------------------


def experiment_json(info: ExperimentInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "description": info.description,
        "runs": list(info.runs),
        "factors": {factor.id: factor_json(factor) for factor in info.factors},
        "measures": {measure.id: measure_json(measure) for measure in info.measures},
    }


def factor_json(factor: Factor) -> dict[str, Any]:
    found: dict[str, Any] = {
        "tag": factor.tag,
        "name": factor.name,
        "type": factor.type,
        "values": {value.id: value.name for value in factor.values},
        "defaultValue": factor.default,
    }
    if factor.default is not None:
        found["default_value"] = factor.default  # LightMill gave both spellings
    return found


def measure_json(measure: Measure) -> dict[str, Any]:
    levels = [
        level
        for level, on in (("trial", measure.trial_level), ("event", measure.event_level))
        if on
    ]
    return {"name": measure.name, "levels": levels, "type": measure.type}


def run_json(info: RunInfo) -> dict[str, Any]:
    return _camel(
        info, "id", "experiment_id", "completed", "started", "trial_count", "block_count", "locked"
    )


def lock_json(lock: Lock) -> dict[str, Any]:
    return _camel(lock, "token", "run_id", "experiment_id")


def block_json(info: BlockInfo) -> dict[str, Any]:
    return {
        "number": info.number,
        "measuredBlockNumber": info.measured_number,
        **_camel(info, "factor_values", "trial_count", "practice"),
    }


def plan_block_json(plan: PlanBlock) -> dict[str, Any]:
    found: dict[str, Any] = {
        "number": plan.block.number,
        "factorValues": plan.block.factor_values,
        "trials": [
            {
                "number": trial.number,
                "factorValues": trial.factor_values,
                "completionDate": epoch_ms(trial.completed_at),
            }
            for trial in plan.trials
        ],
        "practice": plan.block.practice,
    }
    if not plan.block.practice:  # LightMill's plan leaves it out for practice blocks
        found["measuredBlockNumber"] = plan.block.measured_number
    return found


def trial_json(info: TrialInfo) -> dict[str, Any]:
    """Written out, not by `_camel`: every trial posted is answered with it."""
    return {
        "experimentId": info.experiment_id,
        "runId": info.run_id,
        "number": info.number,
        "blockNumber": info.block_number,
        "measuredBlockNumber": info.measured_block_number,
        "factorValues": info.factor_values,
        "measures": info.measures,
        "practice": info.practice,
        "completionDate": epoch_ms(info.completed_at),
    }


def _camel(info: object, *attributes: str) -> dict[str, Any]:
    """The attributes' values under LightMill's names for them: theirs in camelCase
    (`experiment_id`: `experimentId`), in this order."""
    return {_camel_case(name): getattr(info, name) for name in attributes}


@cache  # a handful of names, converted for every answer
def _camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


# --- Routing ----------------------------------------------------------------------------------

CORS_OPTIONS: dict[str, Any] = {
    "allow_origins": ["*"],
    "allow_methods": ["GET", "POST"],
    "allow_headers": ["*"],
    "allow_private_network": True,
}
CORS = [Middleware(CORSMiddleware, **CORS_OPTIONS)]


def _client_route(path: str, handler: Callable[[Request], Awaitable[Any]], method: str) -> Route:
    return Route(path, _answering_json(handler), methods=[method, "OPTIONS"], middleware=CORS)


def _quick_post_route(path: str, handler: Callable[[Request], Awaitable[Any]]) -> Route:
    """`_client_route` for a POST, its successful answers written straight (quick_post.py)."""
    route = CORSMiddleware(request_response(_answering_json(handler)), **CORS_OPTIONS)
    return Route(path, QuickPost(handler, json_answer, route), methods=["POST", "OPTIONS"])


# Paths anyone may call (public_prefixes in mastok/app.py lists their prefixes); `/api/import`
# checks who calls it itself.
CLIENT_PREFIXES = (
    "/api/import",
    "/api/experiments",
    "/api/experiment/",
    "/api/run/",
    "/api/block/",
    "/api/trial/",
)


def is_client_route(connection: HTTPConnection) -> bool:
    """Whether the request is to one of LightMill's client routes (under any web prefix)."""
    prefix = settings(connection).web_prefix
    return connection.url.path.startswith(tuple(prefix + path for path in CLIENT_PREFIXES))


EXPERIMENT = "/api/experiment/{xp}"
RUN = "/api/run/{xp}/{run}"
TRIAL = "/api/trial/{xp}/{run}/{block}/{trial}"

# Also served ahead of the app's middleware when it succeeds (mastok/web/quick_lane.py).
TRIAL_POST = _quick_post_route(TRIAL, post_trial)

routes = [
    TRIAL_POST,  # first: the route clients call most
    _client_route("/api/experiments", list_experiments, "GET"),
    _client_route(EXPERIMENT, get_experiment, "GET"),
    _client_route(EXPERIMENT + "/available_run", available_run, "GET"),
    _client_route(RUN, get_run, "GET"),
    _client_route(RUN + "/lock", lock_run, "GET"),
    _client_route(RUN + "/unlock", unlock_run, "POST"),
    _client_route(RUN + "/plan", run_plan, "GET"),
    _client_route(RUN + "/current_trial", current_trial, "GET"),
    _client_route(RUN + "/next_trial", next_trial, "GET"),
    _client_route("/api/block/{xp}/{run}/{block}", get_block, "GET"),
    _client_route(TRIAL, get_trial, "GET"),
    _client_route("/api/import", import_experiment, "POST"),
]
