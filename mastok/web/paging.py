"""Paging parameters of the admin's lists: whole numbers within bounds, or a 400."""

from __future__ import annotations

from starlette.requests import Request

from mastok.web.errors import BadRequest


def bounded_int(
    request: Request, name: str, default: int | None, low: int, high: int
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise BadRequest(400, f"{name} must be from {low} to {high}")
    return value
