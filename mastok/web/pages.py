"""The admin pages (HTTP Basic auth); each has a JSON twin in `mastok.web.api`.

Unknown campaigns and oTree's failures are answered by `mastok.web.errors`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from wtforms.fields.choices import SelectChoice

from mastok.campaigns.rules import InvalidCampaign
from mastok.otree import OTreeError, SessionConfig
from mastok.services import services, settings
from mastok.web import audit, participants, views
from mastok.web.errors import message_page
from mastok.web.forms import EditCampaignForm, NewCampaignForm
from mastok.web.templating import render

Save = Callable[[dict[str, Any]], Awaitable[str]]  # saves a form's values, says what it did


async def home(request: Request) -> Response:
    return RedirectResponse(settings(request).web_prefix + "/dashboard", 302)


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

    async def create(values: dict[str, Any]) -> str:
        campaign = await services(request).campaigns.create(values)
        await audit.audited(
            request, "campaign.created", campaign.namespace, audit.created(campaign)
        )
        return f"Campaign {campaign.namespace} created"

    return await _submit(request, "campaign_new.html", context, create)


async def campaign_edit(request: Request) -> Response:
    campaigns = services(request).campaigns
    namespace = request.path_params["namespace"]
    campaign = await campaigns.get(namespace)
    formdata = await request.form() if request.method == "POST" else None
    version = campaigns.version(campaign)
    form = EditCampaignForm.for_request(request, formdata, obj=campaign, version=version)
    context: dict[str, Any] = {"form": form, "campaign": campaign, "errors": []}
    context["share_url"] = campaigns.share_url(campaign)
    if formdata is None:
        return render(request, "campaign_edit.html", context)

    async def update(values: dict[str, Any]) -> str:
        edit = await campaigns.update(namespace, values, values.pop("version", None) or None)
        await audit.audited_edit(request, namespace, edit.before, edit.after)
        return f"Campaign {namespace} saved"

    return await _submit(request, "campaign_edit.html", context, update)


async def campaign_supervise(request: Request) -> Response:
    context = await views.supervise(request, request.path_params["namespace"])
    context["erase_form"] = participants.erase_form(request)
    context["heartbeat"] = f"{settings(request).page_heartbeat:g}"  # the page's, not the twin's
    return render(request, "campaign_supervise.html", context)


async def sessions_list(request: Request) -> Response:
    return render(request, "sessions.html", await views.sessions(request))


async def _configs(request: Request) -> tuple[list[SessionConfig] | None, str | None]:
    try:
        return await services(request).campaigns.otree_configs(), None
    except OTreeError as error:
        return None, error.message


async def _submit(request: Request, template: str, context: dict[str, Any], save: Save) -> Response:
    """Saves the posted form of `context` and goes back to the campaigns, or shows the form
    again with its errors (422) or refuses it (403, its CSRF token is wrong)."""
    form = context["form"]
    if not form.validate():
        return _csrf_failed(request, form) or render(request, template, context, 422)
    try:
        flash = await save(form.values())
    except InvalidCampaign as invalid:  # the rules' messages go back next to their fields
        context["errors"] = form.attach_errors(invalid.errors)
        return render(request, template, context, 422)
    return _see_campaigns(request, flash)


def _config_label(config: SessionConfig) -> str:
    if config.display_name and config.display_name != config.name:
        return f"{config.name} ({config.display_name})"
    return config.name


def _csrf_failed(request: Request, form: Any) -> Response | None:
    if "csrf_token" not in form.errors:
        return None
    message = "This form expired or did not come from mastok: reload the page and submit again."
    return message_page(request, "Form refused", message, 403)


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
