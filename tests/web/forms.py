"""Submitting admin forms the way a browser does: read the page's CSRF token, post the form."""

from __future__ import annotations

import re
from typing import Any

from httpx import Response
from starlette.testclient import TestClient

TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(page: str) -> str:
    found = TOKEN.search(page)
    assert found, "the page has no CSRF token"
    return found.group(1)


def hidden_fields(page: str, *names: str) -> dict[str, str]:
    """The page's hidden inputs of these names (those it has)."""
    found = {}
    for name in names:
        match = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', page)
        if match:
            found[name] = match.group(1)
    return found


def as_form(values: dict[str, Any]) -> dict[str, str]:
    """Checkboxes are sent as 'y' when ticked and left out otherwise, like a browser does."""
    form = {}
    for key, value in values.items():
        if value is True:
            form[key] = "y"
        elif value is not False:
            form[key] = str(value)
    return form


def submit(client: TestClient, path: str, values: dict[str, Any]) -> Response:
    page = client.get(path)
    assert page.status_code == 200, page.text
    data = {**as_form(values), "csrf_token": csrf_token(page.text)}
    return client.post(path, data={**data, **hidden_fields(page.text, "version")})
