"""LightMill's monitoring pages (admin, HTTP Basic) and their JSON twins under
`/api/monitoring/`, the design import form, the admin's unlock, the exports' downloads.

Pages, each with its twin under /api/monitoring (the same path after it):

- `/experiments`: experiments and their progress; POST: the design import form.
- `/experiments/{xp}`: the runs' states and locks, the download links; live.
- `POST /experiments/{xp}/runs/{run}/unlock`: the Unlock button (a CSRF-protected form).
- `/experiments/{xp}/runs/{run}?page=N`: the run's trials, 500 a page.
- `/experiments/{xp}/runs/{run}/trials/{block}/{trial}`: a trial's events.
- `/experiments/{xp}/trials.csv`, `/experiments/{xp}/events.csv`: the exports (no twin).

Each page and its twin are built from the same dictionary (the `*_view` functions). The
experiment page follows its runs live by polling its twin (front/js/experiment.js). An
experiment, run, block, trial or page that is not there (UnknownElement) is a 404: a page, or
`{"error": ...}` from a twin (`_or_404`), not LightMill's client answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from wtforms import FileField

from mastok.clock import iso
from mastok.lightmill import export
from mastok.lightmill.errors import CannotImportExperiment, UnknownElement
from mastok.lightmill.monitoring import ExperimentSummary, Monitoring, RunState
from mastok.lightmill.service import LightMill
from mastok.services import services, settings
from mastok.web.audit import audited
from mastok.web.errors import BadRequest, media_type, message_page, not_found
from mastok.web.forms import CSRFForm
from mastok.web.lightmill_api import MIB, path_number
from mastok.web.templating import render

PAGE = re.compile(r"[1-9]\d{0,8}")
POLL_SECONDS = 2

View = Callable[[Request], Awaitable[Response]]


class ImportDesignForm(CSRFForm):
    design = FileField("TouchStone design (experiment.xml)")


class UnlockForm(CSRFForm):
    """Only its CSRF token: the run is in the URL."""


# --- Data shared by the pages and their twins -------------------------------------------------


def _lightmill(request: Request) -> LightMill:
    return services(request).lightmill


def _monitoring(request: Request) -> Monitoring:
    return _lightmill(request).monitoring


def _flags(request: Request) -> dict[str, Any]:
    policy = _lightmill(request).policy
    return {"unprotected_runs": policy.unprotected, "lock_timeout": policy.timeout}


def experiment_json(summary: ExperimentSummary) -> dict[str, Any]:
    """The summary's fields, its date in ISO 8601."""
    return {**asdict(summary), "imported_at": iso(summary.imported_at)}


def run_json(run: RunState) -> dict[str, Any]:
    current = None
    if run.current_block is not None and run.status != "completed":
        current = {"block": run.current_block, "trial": run.current_trial}
    return {
        "id": run.id,
        "status": run.status,
        "trials_done": run.completed_trials,
        "trials_total": run.trial_count,
        "blocks": run.block_count,
        "current": current,
        "lock": run.lock,
        "locked_since": iso(run.locked_at),
        "last_heartbeat": iso(run.heartbeat_at),
        "lock_expires_at": iso(run.lock_expires_at),
    }


def _path(request: Request, *parts: str) -> str:
    """An absolute path under mastok's prefix, each part %-encoded."""
    prefix: str = request.app.state.settings.web_prefix
    return prefix + "".join("/" + _quote(part) for part in parts)


def _quote(part: str) -> str:
    return quote(part, safe="")


async def experiments_view(request: Request) -> dict[str, Any]:
    found = await _monitoring(request).experiments()
    return {"experiments": [experiment_json(s) for s in found], **_flags(request)}


async def experiment_view(request: Request, experiment: str) -> dict[str, Any]:
    """Raises UnknownElement."""
    monitoring = _monitoring(request)
    summary = await monitoring.experiment(experiment)
    runs = await monitoring.runs(experiment)
    return {
        "experiment": experiment_json(summary),
        "runs": [run_json(run) for run in runs],
        "downloads": {
            "trials": _path(request, "experiments", experiment, "trials.csv"),
            "events": _path(request, "experiments", experiment, "events.csv"),
        },
        **_flags(request),
    }


async def run_view(request: Request, experiment: str, run: str) -> dict[str, Any]:
    """Raises UnknownElement (also for a page that is not there)."""
    page = _page(request)
    monitoring = _monitoring(request)
    summary = await monitoring.experiment(experiment)
    found = await monitoring.run_trials(experiment, run, page)
    layout = found.layout
    return {
        "experiment": {"id": summary.id, "name": summary.name},
        "run": run_json(found.run),
        "factors": list(layout.factors),
        "measures": list(layout.trial_measures),
        "trials": [
            {
                "block": t.block,
                "measured_block": t.measured_block,
                "trial": t.number,
                "practice": t.practice,
                "completed_at": iso(t.completed_at),
                "factor_values": _present(layout.factors, t.factor_values),
                "measures": _present(layout.trial_measures, t.measures),
                "events": t.event_count,
            }
            for t in found.trials
        ],
        "page": found.page,
        "pages": found.pages,
        "page_size": found.page_size,
        **_flags(request),
    }


async def trial_view(
    request: Request, experiment: str, run: str, block: int, trial: int
) -> dict[str, Any]:
    """Raises UnknownElement."""
    lightmill = _lightmill(request)
    summary = await _monitoring(request).experiment(experiment)
    info = await lightmill.store.trial(experiment, run, block, trial, events=True)
    design = await lightmill.experiment(experiment)
    events = info.events or []
    event_measures = {m.id for m in design.measures if m.event_level}
    event_measures.update(code for event in events for code in event)
    return {
        "experiment": {"id": summary.id, "name": summary.name},
        "run": run,
        "block": info.block_number,
        "measured_block": info.measured_block_number,
        "trial": info.number,
        "practice": info.practice,
        "completed_at": iso(info.completed_at),
        "factor_values": info.factor_values,
        "measures": dict(sorted(info.measures.items())),
        "event_measures": sorted(event_measures),
        "events": [{"number": n, "measures": values} for n, values in enumerate(events)],
        **_flags(request),
    }


def _present(codes: tuple[str, ...], cells: Sequence[str | None]) -> dict[str, str]:
    return {code: value for code, value in zip(codes, cells, strict=True) if value is not None}


def _page(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    if not PAGE.fullmatch(raw):
        raise UnknownElement(f"pages are numbered from 1, not {raw!r}")
    return int(raw)


# --- Pages ------------------------------------------------------------------------------------


async def experiments_page(request: Request) -> Response:
    formdata = await request.form(max_files=1, max_fields=8) if request.method == "POST" else None
    form = ImportDesignForm.for_request(request, formdata)
    context: dict[str, Any] = {"form": form, "import_error": None}
    if formdata is not None:
        if not form.validate():
            return _csrf_failed(request)
        try:
            limit = settings(request).max_design_mib * MIB
            design = await _design_bytes(formdata.get("design"), limit)
            info = await _lightmill(request).import_xml(design)
        except CannotImportExperiment as error:
            context["import_error"] = error.message
        else:
            await audited(request, "experiment.imported", info.id)
            request.session["flash"] = f"Experiment {info.id} imported."
            return _see(request, _path(request, "experiments", info.id))
    context.update(await experiments_view(request))
    context["flash"] = request.session.pop("flash", None)
    status = 422 if context["import_error"] else 200
    return render(request, "experiments.html", context, status)


async def _design_bytes(upload: Any, limit: int) -> bytes:
    """The uploaded file's bytes, at most `limit`. Raises CannotImportExperiment."""
    if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
        raise CannotImportExperiment("choose a TouchStone design file (experiment.xml) to import")
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise CannotImportExperiment(f"the file is larger than {limit // MIB} MiB")
    if not data:
        raise CannotImportExperiment(f"the file {upload.filename!r} is empty")
    return data


async def experiment_page(request: Request) -> Response:
    experiment = request.path_params["xp"]
    context = await experiment_view(request, experiment)
    context["csrf"] = UnlockForm.for_request(request).csrf_token.current_token
    context["flash"] = request.session.pop("flash", None)
    context["api"] = _path(request, "api", "monitoring", "experiments", experiment)
    context["poll_seconds"] = POLL_SECONDS
    return render(request, "experiment.html", context)


async def unlock_page(request: Request) -> Response:
    """The Unlock button: releases the run's lock, whoever holds it."""
    experiment, run = request.path_params["xp"], request.path_params["run"]
    form = UnlockForm.for_request(request, await request.form(max_files=0, max_fields=4))
    if not form.validate():
        return _csrf_failed(request)
    released = await _lightmill(request).store.admin_unlock(experiment, run)
    await audited(request, "run.unlocked", f"{experiment}/{run}", {"released": released})
    if released:
        request.session["flash"] = f"Run {run} unlocked: any client may take it now."
    else:
        request.session["flash"] = f"Run {run} held no lock."
    return _see(request, _path(request, "experiments", experiment))


async def run_page(request: Request) -> Response:
    experiment, run = request.path_params["xp"], request.path_params["run"]
    return render(request, "experiment_run.html", await run_view(request, experiment, run))


async def trial_page(request: Request) -> Response:
    experiment, run = request.path_params["xp"], request.path_params["run"]
    block, trial = path_number(request, "block"), path_number(request, "trial")
    context = await trial_view(request, experiment, run, block, trial)
    return render(request, "experiment_trial.html", context)


async def download_trials(request: Request) -> Response:
    return await _download(request, "trials")


async def download_events(request: Request) -> Response:
    return await _download(request, "events")


async def _download(request: Request, kind: export.Kind) -> Response:
    """A CSV file, streamed as it is read (see mastok.lightmill.export)."""
    experiment = request.path_params["xp"]
    lightmill = _lightmill(request)
    if not await lightmill.store.has_experiment(experiment):
        return not_found(request, f"there is no experiment {experiment!r}")
    name = export.file_name(experiment, kind)
    return StreamingResponse(
        _encoded(export.stream(services(request).db, experiment, kind)),
        media_type=export.MEDIA_TYPES["csv"],
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


async def _encoded(stream: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for text in stream:
        yield text.encode()


def _see(request: Request, path: str) -> Response:
    return RedirectResponse(path, 303)


def _csrf_failed(request: Request) -> Response:
    message = "This form expired or did not come from mastok: reload the page and submit again."
    return message_page(request, "Form refused", message, 403)


def _or_404(view: View) -> View:
    """UnknownElement answered as a 404 (a page, or JSON under /api/), not as LightMill's client
    API answers it."""

    @functools.wraps(view)
    async def endpoint(request: Request) -> Response:
        try:
            return await view(request)
        except UnknownElement as error:
            return not_found(request, error.message)

    return endpoint


# --- JSON twins -------------------------------------------------------------------------------


async def api_experiments(request: Request) -> Response:
    return JSONResponse(await experiments_view(request))


async def api_experiment(request: Request) -> Response:
    return JSONResponse(await experiment_view(request, request.path_params["xp"]))


async def api_unlock(request: Request) -> Response:
    """Like the Unlock button. `Content-Type: application/json` is required (the admin API's
    protection against cross-site posts); the body is ignored."""
    if media_type(request) != "application/json":
        raise BadRequest(415, "send the request with Content-Type: application/json")
    experiment, run = request.path_params["xp"], request.path_params["run"]
    released = await _lightmill(request).store.admin_unlock(experiment, run)
    await audited(request, "run.unlocked", f"{experiment}/{run}", {"released": released})
    state = (await _monitoring(request).runs(experiment, run))[0]
    return JSONResponse({"released": released, "run": run_json(state)})


async def api_run(request: Request) -> Response:
    experiment, run = request.path_params["xp"], request.path_params["run"]
    return JSONResponse(await run_view(request, experiment, run))


async def api_trial(request: Request) -> Response:
    experiment, run = request.path_params["xp"], request.path_params["run"]
    block, trial = path_number(request, "block"), path_number(request, "trial")
    return JSONResponse(await trial_view(request, experiment, run, block, trial))


RUN = "/experiments/{xp}/runs/{run}"

page_routes = [
    Route("/experiments", experiments_page, methods=["GET", "POST"]),
    Route("/experiments/{xp}", _or_404(experiment_page)),
    Route("/experiments/{xp}/trials.csv", download_trials),
    Route("/experiments/{xp}/events.csv", download_events),
    Route(RUN, _or_404(run_page)),
    Route(RUN + "/unlock", _or_404(unlock_page), methods=["POST"]),
    Route(RUN + "/trials/{block}/{trial}", _or_404(trial_page)),
]

# Mounted under /api with the rest of the admin API.
api_routes = [
    Route("/monitoring/experiments", api_experiments, methods=["GET"]),
    Route("/monitoring/experiments/{xp}", _or_404(api_experiment), methods=["GET"]),
    Route("/monitoring" + RUN, _or_404(api_run), methods=["GET"]),
    Route("/monitoring" + RUN + "/unlock", _or_404(api_unlock), methods=["POST"]),
    Route("/monitoring" + RUN + "/trials/{block}/{trial}", _or_404(api_trial), methods=["GET"]),
]
