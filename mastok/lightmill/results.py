"""A trial POST's body, read and checked before anything is stored.

`{"token": "...", "measures": {"trial": {...}, "events": [{...}, ...]}}`. Nested objects become
dotted measure ids (`durations.trial`), list items `.0`, `.1`, ...; nulls are dropped, as
LightMill did. Values are stored as text: strings as they are, numbers and booleans as JSON
writes them (`42`, `1.5`, `true`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from math import isfinite
from typing import Any, NamedTuple

import orjson

from mastok.lightmill.errors import InvalidBody

MAX_DEPTH = 32
MAX_ID_LENGTH = 255
_HUGE = 2.0**63  # orjson reads an integer past 64 bits as a float of at least this
_SURROGATE = re.compile("[\ud800-\udfff]")  # what is left of them once json joined the pairs


class TrialResults(NamedTuple):
    """A post's token and its flattened values (named tuples here and down the trial path:
    a frozen dataclass's `__init__` sets each field through `object.__setattr__`)."""

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
    if token.isascii():  # as every token the lock gives: nothing to look for, on every post
        return token
    return _SURROGATE.sub("\ufffd", token)  # half a character: text no driver can send


def parse_results(raw: bytes) -> TrialResults:
    """A trial POST's body. Raises InvalidBody with what is wrong and where.

    orjson reads it first (a fifth of json's time), and the common measures are flattened
    without a generator or json.dumps (with the nested object bench scenario 6 posts, this
    took 42 µs a body, now 9). Anything orjson refuses, or may read otherwise than json does
    (it reads an integer past 64 bits as a float), and anything the quick flattening does not
    take, is read again as it always was: the same results, or the same error."""
    quick = _read_quickly(raw)
    if quick is not None:
        found = _results(quick, exact=False)
        if found is not None:
            return found
    found = _results(parse_json(raw), exact=True)
    assert found is not None  # the exact reading flattens anything, or raises
    return found


def _read_quickly(raw: bytes) -> Any:
    """orjson's reading of the body, or None where it refuses it (json may not: NaN, an
    integer past 64 bits, a lone surrogate, or it refuses it with its own message)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _results(body: Any, exact: bool) -> TrialResults | None:
    """The results of a parsed body; not `exact`: None for any measures `flatten` would
    have to take the long way (or read otherwise: a float past 2**63 may be an integer orjson
    read)."""
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
    if exact:
        return TrialResults(
            token=token,
            trial=_well_formed(flatten(trial, "measures.trial")),
            events=[_well_formed(flatten(e, f"measures.events.{n}")) for n, e in enumerate(events)],
        )
    flat_trial = _flat_quickly(trial, huge_floats=False)
    if flat_trial is None:
        return None
    flat_events = []
    for event in events:
        flat = _flat_quickly(event, huge_floats=False)
        if flat is None:
            return None
        flat_events.append(flat)
    return TrialResults(token=token, trial=flat_trial, events=flat_events)


def _well_formed(flat: dict[str, str]) -> dict[str, str]:
    """Lone surrogates (half a character: a browser's JSON.stringify writes one as `\\ud83d`,
    which json reads and orjson refuses) replaced by U+FFFD, as a browser's TextEncoder does:
    neither database stores them, and the post would fail at every try."""
    return {_SURROGATE.sub("\ufffd", k): _SURROGATE.sub("\ufffd", v) for k, v in flat.items()}


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


def flatten(measures: dict[str, Any], where: str) -> dict[str, str]:
    """`{"a": {"b": 1, "c": [true, null]}}` → `{"a.b": "1", "a.c.0": "true"}`."""
    flat = _flat_quickly(measures, huge_floats=True)
    if flat is not None:
        return flat
    flat = {}
    for path, value in _leaves(measures, [], where):
        measure_id = ".".join(path)
        if len(measure_id) > MAX_ID_LENGTH:
            raise InvalidBody(f"{where}: measure id {measure_id[:40]!r}... is too long")
        flat[measure_id] = value
    return flat


def _flat_quickly(measures: dict[str, Any], huge_floats: bool) -> dict[str, str] | None:
    """As `_leaves` flattens them, at a fraction of the cost; None where `_leaves` would
    raise, for a value json.dumps writes otherwise (NaN, infinities), and unless
    `huge_floats`, for a float of 2**63 or more (what orjson reads an integer past 64 bits
    as)."""
    flat: dict[str, str] = {}
    return flat if _flat_into(flat, measures.items(), "", 1, huge_floats) else None


def _flat_into(
    flat: dict[str, str], items: Iterable[tuple[str, Any]], prefix: str, length: int, huge: bool
) -> bool:
    """Add the leaves of a dict's or a list's `items` (their keys as text) under `prefix`
    (`length`: the number of parts of their ids); False where `_flat_quickly` gives up. The
    common kinds first, and no id built for a top-level key: its loop runs once a leaf, 25
    times a trial for bench scenario 6's bodies, and it had the most time of any function of
    mastok's on a trial post (cProfile)."""
    if length > MAX_DEPTH:
        return False
    for key, value in items:
        if key == "" or "\x00" in key:
            return False
        measure_id = prefix + key if prefix else key
        kind = type(value)
        if kind is str:
            text = value
        elif kind is float:
            if not (isfinite(value) and (huge or -_HUGE < value < _HUGE)):
                return False
            text = float.__repr__(value)
        elif kind is int:
            text = int.__repr__(value)  # as json.dumps writes them
        elif kind is bool:
            text = "true" if value else "false"
        elif kind is dict:
            if not _flat_into(flat, value.items(), measure_id + ".", length + 1, huge):
                return False
            continue
        elif kind is list:
            indexed = zip(map(str, range(len(value))), value, strict=True)
            if not _flat_into(flat, indexed, measure_id + ".", length + 1, huge):
                return False
            continue
        elif value is None:
            continue
        else:
            return False
        if len(measure_id) > MAX_ID_LENGTH:
            return False
        flat[measure_id] = text
    return True


def _leaves(node: Any, path: list[str], where: str) -> Iterator[tuple[list[str], str]]:
    if len(path) > MAX_DEPTH:
        raise InvalidBody(f"{where}: measures nest deeper than {MAX_DEPTH} levels")
    if isinstance(node, dict):
        for key, child in node.items():
            if not key:
                raise InvalidBody(f"{where}: a measure id is empty (under {'.'.join(path)!r})")
            if "\x00" in key:  # PostgreSQL's text holds none: the post would fail at every try
                raise InvalidBody(f"{where}: measure id {key!r} holds a NUL character")
            yield from _leaves(child, [*path, key], where)
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _leaves(child, [*path, str(index)], where)
    elif node is not None:
        yield path, node if isinstance(node, str) else json.dumps(node)
