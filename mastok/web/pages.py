"""The admin pages (HTTP Basic auth); each has a JSON twin in `mastok.web.api`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from wtforms.fields.choices import SelectChoice

from mastok.campaigns.rules import InvalidCampaign
from mastok.campaigns.service import CampaignNotFound
from mastok.otree import OTreeError, SessionConfig
from mastok.services import services, settings
from mastok.web import views
from mastok.web.forms import EditCampaignForm, NewCampaignForm
from mastok.web.templating import render


async def home(request: Request) -> Response:
    return RedirectResponse(settings(request).web_prefix + "/dashboard", 302)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def dashboard(request: Request) -> Response:
    return render(request, "dashboard.html", await views.dashboard(request))


async def campaigns_list(request: Request) -> Response:
    context = await views.campaigns(request)
    context["flash"] = request.session.pop("flash", None)
    return render(request, "campaigns.html", context)


async def campaign_new(request: Request) -> Response:
    configs, otree_problem = await _configs(request)
    formdata = await request.form() if request.method == "POST" else None
    form = NewCampaignForm.for_request(request, formdata)
    if configs is not None:
        form.otree_config_name.choices = [SelectChoice(c.name, _config_label(c)) for c in configs]
    context = {"form": form, "configs": configs, "otree_problem": otree_problem, "errors": []}
    if formdata is None:
        return render(request, "campaign_new.html", context)
    if not form.validate():
        return _csrf_failed(request, form) or render(request, "campaign_new.html", context, 422)
    try:
        campaign = await services(request).campaigns.create(form.values())
    except InvalidCampaign as invalid:
        context["errors"] = form.attach_errors(invalid.errors)
        return render(request, "campaign_new.html", context, 422)
    return _see_campaigns(request, f"Campaign {campaign.namespace} created")


async def campaign_edit(request: Request) -> Response:
    campaigns = services(request).campaigns
    namespace = request.path_params["namespace"]
    try:
        campaign = await campaigns.get(namespace)
    except CampaignNotFound:
        return _not_found(request, f"No campaign named {namespace!r}.")
    formdata = await request.form() if request.method == "POST" else None
    form = EditCampaignForm.for_request(request, formdata, obj=campaign)
    context: dict[str, Any] = {"form": form, "campaign": campaign, "errors": []}
    context["share_url"] = campaigns.share_url(campaign)
    if formdata is None:
        return render(request, "campaign_edit.html", context)
    if not form.validate():
        return _csrf_failed(request, form) or render(request, "campaign_edit.html", context, 422)
    try:
        await campaigns.update(namespace, form.values())
    except InvalidCampaign as invalid:
        context["errors"] = form.attach_errors(invalid.errors)
        return render(request, "campaign_edit.html", context, 422)
    return _see_campaigns(request, f"Campaign {namespace} saved")


async def campaign_supervise(request: Request) -> Response:
    namespace = request.path_params["namespace"]
    try:
        context = await views.supervise(request, namespace)
    except CampaignNotFound:
        return _not_found(request, f"No campaign named {namespace!r}.")
    return render(request, "campaign_supervise.html", context)


async def sessions_list(request: Request) -> Response:
    return render(request, "sessions.html", await views.sessions(request))


async def _configs(request: Request) -> tuple[list[SessionConfig] | None, str | None]:
    try:
        return await services(request).campaigns.otree_configs(), None
    except OTreeError as error:
        return None, error.message


def _config_label(config: SessionConfig) -> str:
    if config.display_name and config.display_name != config.name:
        return f"{config.name} ({config.display_name})"
    return config.name


def _csrf_failed(request: Request, form: Any) -> Response | None:
    if "csrf_token" not in form.errors:
        return None
    message = "This form expired or did not come from mastok: reload the page and submit again."
    return render(request, "message.html", {"title": "Form refused", "message": message}, 403)


def _not_found(request: Request, message: str) -> Response:
    return render(request, "message.html", {"title": "Not found", "message": message}, 404)


def _see_campaigns(request: Request, flash: str) -> Response:
    request.session["flash"] = flash
    return RedirectResponse(settings(request).web_prefix + "/campaigns", 303)


routes = [
    Route("/", home),
    Route("/dashboard", dashboard),
    Route("/campaigns", campaigns_list),
    Route("/campaigns/new", campaign_new, methods=["GET", "POST"]),
    Route("/campaigns/edit/{namespace}", campaign_edit, methods=["GET", "POST"]),
    Route("/campaigns/supervise/{namespace}", campaign_supervise),
    Route("/sessions", sessions_list),
]
