"""Jinja2 templates with the globals every page needs."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from mastok.config import PROJECT_ROOT

templates = Jinja2Templates(directory=PROJECT_ROOT / "templates")


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    settings = request.app.state.settings
    context = {"prefix": settings.web_prefix, "settings": settings, **context}
    return templates.TemplateResponse(request, name, context, status_code=status)
