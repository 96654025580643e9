"""A trial's or an event's measure values as stored: one JSON object, measure id -> value text.

`{"12": "345", "13": "true"}`: the keys are the `lm_measures` ids of the trial's experiment
(JSON keys are strings), the values the text the post gave (results.py). An empty set of values
is stored as nothing (NULL, or no event row). Readers need not know the key order; the
migration from one row a value (0008) writes PostgreSQL's own spacing, which parses the same.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson


def encode(ids: Mapping[str, int], values: Mapping[str, str]) -> str | None:
    """The values posted under measure codes, keyed by their ids (None: no values)."""
    if not values:
        return None
    return orjson.dumps({str(ids[code]): value for code, value in values.items()}).decode()


def decode(stored: str | bytes | None) -> dict[int, str]:
    """The stored values by measure id."""
    if not stored:
        return {}
    return {int(key): value for key, value in orjson.loads(stored).items()}
