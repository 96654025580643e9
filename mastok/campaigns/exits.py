"""Exits: the completion code and return link a campaign gives for each way a visit ends.

A campaign's `exits` maps an outcome to `{"code": str | None, "url": str | None}`. Admins
write them one per line in the form (`timeout: C1TIMEOUT https://…?cc={code}`); the JSON API
takes the mapping itself. A url may hold placeholders filled per visit, URL-encoded: `{code}`,
`{outcome}` and any captured query parameter by name (`{PROLIFIC_PID}`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from mastok.states import Outcome

MAX_CODE = 64
MAX_URL = 2048
PARAM = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
BUILT_IN = ("code", "outcome")

Exits = dict[str, dict[str, str | None]]


class ExitsError(ValueError):
    """Exits that break the rules; the message says which line or outcome and why."""


def check_exits(raw: Any, params: tuple[str, ...]) -> Exits:
    """Clean exits from the JSON API's mapping; `params` are the placeholders a url may use
    besides {code} and {outcome}."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ExitsError('must map outcomes to {"code": ..., "url": ...}')
    clean: Exits = {}
    for outcome, value in raw.items():
        name = _outcome(outcome)
        if not isinstance(value, Mapping) or set(value) - {"code", "url"}:
            raise ExitsError(f'{name}: give {{"code": ..., "url": ...}} (either may be null)')
        code = _code(name, value.get("code"))
        url = _url(name, value.get("url"), params)
        if code is not None or url is not None:
            clean[name] = {"code": code, "url": url}
    return dict(sorted(clean.items()))


def parse_exits_text(text: str, params: tuple[str, ...]) -> Exits:
    """Exits from the form's lines: `outcome: [code] [url]` (a url starts with http)."""
    raw: dict[str, dict[str, str | None]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        outcome, colon, rest = line.partition(":")
        if not colon:
            raise ExitsError(f"line {number}: write 'outcome: CODE https://…'")
        code: str | None = None
        url: str | None = None
        for word in rest.split():
            if word.lower().startswith(("http://", "https://")):
                if url is not None:
                    raise ExitsError(f"line {number}: one url per outcome")
                url = word
            elif code is None:
                code = word
            else:
                raise ExitsError(f"line {number}: a code is one word; the url starts with http")
        if outcome.strip() in raw:
            raise ExitsError(f"line {number}: {outcome.strip()} appears twice")
        raw[outcome.strip()] = {"code": code, "url": url}
    return check_exits(raw, params)


def exits_text(exits: Mapping[str, Mapping[str, str | None]] | None) -> str:
    """The form's lines for stored exits."""
    lines = []
    for outcome, exit_ in (exits or {}).items():
        words = [w for w in (exit_.get("code"), exit_.get("url")) if w]
        lines.append(f"{outcome}: {' '.join(words)}")
    return "\n".join(lines)


def fill_url(template: str, values: Mapping[str, str]) -> str:
    """The url with each placeholder replaced by its value, URL-encoded (unknown or missing
    values become empty)."""
    out = []
    for literal, field, _, _ in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append(quote(values.get(field, ""), safe=""))
    return "".join(out)


def _outcome(value: Any) -> str:
    if value not in tuple(Outcome):
        raise ExitsError(f"{value!r} is not an outcome (one of {', '.join(Outcome)})")
    if value == Outcome.AWAY:  # taken, it would never be shown to anyone
        raise ExitsError(
            "away: nobody is there to be told (a page back later lands again, as a new visit)"
        )
    return str(value)


def _code(outcome: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_CODE or not value.isprintable():
        raise ExitsError(f"{outcome}: a code is text of at most {MAX_CODE} printable characters")
    code = value.strip()
    if len(code.split()) > 1:  # the form's line could not hold it: its words are code and url
        raise ExitsError(f"{outcome}: a code is one word (no spaces)")
    return code or None


def _url(outcome: str, value: Any, params: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL or not value.isprintable():
        raise ExitsError(f"{outcome}: a url is text of at most {MAX_URL} printable characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        raise ExitsError(f"{outcome}: the url must be an absolute http(s) URL")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError:
        raise ExitsError(f"{outcome}: unbalanced {{ or }} in the url") from None
    allowed = (*BUILT_IN, *params)
    for field in fields:
        if field not in allowed:
            known = ", ".join(f"{{{name}}}" for name in allowed)
            raise ExitsError(f"{outcome}: unknown placeholder {{{field}}} (use {known})")
    return value
