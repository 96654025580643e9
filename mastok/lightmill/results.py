"""A trial POST's body, read and checked before anything is stored.

`{"token": "...", "measures": {"trial": {...}, "events": [{...}, ...]}}`. Nested objects become
dotted measure ids (`durations.trial`), list items `.0`, `.1`, ...; nulls are dropped, as
LightMill did. Values are stored as text: strings as they are, numbers and booleans as JSON
writes them (`42`, `1.5`, `true`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mastok.lightmill.errors import InvalidBody

MAX_DEPTH = 32
MAX_ID_LENGTH = 255


@dataclass(frozen=True)
class TrialResults:
    token: str
    trial: dict[str, str]
    events: list[dict[str, str]]


def parse_json(body: bytes) -> Any:
    """A JSON document from raw bytes, whatever the Content-Type said. Raises InvalidBody."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InvalidBody(f"the body is not UTF-8 text: {error}") from None
    except json.JSONDecodeError as error:
        raise InvalidBody(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidBody("the body nests too deeply") from None


def read_token(body: Any) -> str:
    if not isinstance(body, dict):
        raise InvalidBody('the body must be a JSON object like {"token": "..."}')
    token = body.get("token")
    if token is None or token == "":
        raise InvalidBody("the body has no token: take the run's lock and send its token")
    if not isinstance(token, str):
        raise InvalidBody('"token" must be the string the lock gave')
    return token


def parse_results(raw: bytes) -> TrialResults:
    """A trial POST's body. Raises InvalidBody with what is wrong and where."""
    body = parse_json(raw)
    token = read_token(body)
    measures = body.get("measures")
    if not isinstance(measures, dict):
        raise InvalidBody('"measures" must be an object: {"trial": {...}, "events": [...]}')
    # Other keys are ignored, as LightMill ignored them.
    trial = _or_default(measures.get("trial"), {})
    if not isinstance(trial, dict):
        raise InvalidBody('"measures.trial" must be an object of measure values')
    events = _or_default(measures.get("events"), [])
    if not isinstance(events, list):
        raise InvalidBody('"measures.events" must be a list of objects')
    for number, event in enumerate(events):
        if not isinstance(event, dict):
            raise InvalidBody(f'"measures.events.{number}" must be an object of measure values')
    return TrialResults(
        token=token,
        trial=flatten(trial, "measures.trial"),
        events=[flatten(e, f"measures.events.{n}") for n, e in enumerate(events)],
    )


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


def flatten(measures: dict[str, Any], where: str) -> dict[str, str]:
    """`{"a": {"b": 1, "c": [true, null]}}` → `{"a.b": "1", "a.c.0": "true"}`."""
    flat = _flat_already(measures)
    if flat is not None:
        return flat
    flat = {}
    for path, value in _leaves(measures, [], where):
        measure_id = ".".join(path)
        if len(measure_id) > MAX_ID_LENGTH:
            raise InvalidBody(f"{where}: measure id {measure_id[:40]!r}... is too long")
        flat[measure_id] = value
    return flat


def _flat_already(measures: dict[str, Any]) -> dict[str, str] | None:
    """The common case, values that are all text, numbers, booleans or nulls under ids that
    need no check, at a fraction of the cost; None for anything else."""
    flat: dict[str, str] = {}
    for key, value in measures.items():
        if not key or len(key) > MAX_ID_LENGTH:
            return None
        kind = type(value)
        if kind is str:
            flat[key] = value
        elif kind is int:
            flat[key] = int.__repr__(value)  # as json.dumps writes them
        elif kind is float and math.isfinite(value):
            flat[key] = float.__repr__(value)
        elif kind is bool:
            flat[key] = "true" if value else "false"
        elif value is not None:
            return None
    return flat


def _leaves(node: Any, path: list[str], where: str) -> Iterator[tuple[list[str], str]]:
    if len(path) > MAX_DEPTH:
        raise InvalidBody(f"{where}: measures nest deeper than {MAX_DEPTH} levels")
    if isinstance(node, dict):
        for key, child in node.items():
            if not key:
                raise InvalidBody(f"{where}: a measure id is empty (under {'.'.join(path)!r})")
            yield from _leaves(child, [*path, key], where)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _leaves(child, [*path, str(index)], where)
    elif node is not None:
        yield path, node if isinstance(node, str) else json.dumps(node)
