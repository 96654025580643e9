"""A trial's or an event's measure values as stored: one JSON object, measure id -> value text.

`{"12": "345", "13": "true"}`: the keys are the `lm_measures` ids of the trial's experiment
(JSON keys are strings), the values the text the post gave (results.py). An empty set of values
is stored as nothing (NULL). A trial's events are stored together, as one JSON array of these
objects (`encode_each`), null for an event without values. Readers need not know the key
order; the migration from one row a value (0008) writes PostgreSQL's own spacing, which parses
the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson


def encode(ids: Mapping[str, int], values: Mapping[str, str]) -> str | None:
    """The values posted under measure codes, keyed by their ids (None: no values)."""
    if not values:
        return None
    return orjson.dumps(_by_id(ids, values)).decode()


def encode_each(ids: Mapping[str, int], each: Sequence[Mapping[str, str]]) -> str | None:
    """Events' values as one JSON array, an element an event in order: its values as `encode`
    writes them, or null for an event without any (None: no event has any)."""
    if not any(each):
        return None
    return orjson.dumps([_by_id(ids, values) or None for values in each]).decode()


def _by_id(ids: Mapping[str, int], values: Mapping[str, str]) -> dict[str, str]:
    return {str(ids[code]): value for code, value in values.items()}


def decode(stored: str | bytes | None) -> dict[int, str]:
    """The stored values by measure id."""
    if not stored:
        return {}
    return _by_pk(orjson.loads(stored))


def decode_each(stored: str | bytes | None, count: int) -> list[dict[int, str]]:
    """The `count` events' stored values, each by measure id (an event without any: {})."""
    each = orjson.loads(stored)[:count] if stored else []
    found = [_by_pk(values) if values else {} for values in each]
    return found + [{} for _ in range(count - len(each))]


def _by_pk(values: Mapping[str, str]) -> dict[int, str]:
    return {int(key): value for key, value in values.items()}
