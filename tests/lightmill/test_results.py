"""A trial POST's body read quickly (orjson, flattening without json.dumps) gives what json
gave (mastok/lightmill/results.py): the same measures in the same order, or the same error."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from mastok.lightmill.errors import InvalidBody
from mastok.lightmill.results import MAX_DEPTH, TrialResults, _results, parse_results
from mastok.web.lightmill_api import json_answer


def body(trial: str, events: str = "[]") -> bytes:
    return f'{{"token": "T", "measures": {{"trial": {trial}, "events": {events}}}}}'.encode()


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("123456789012345678901234567890", "123456789012345678901234567890"),  # orjson: a float
        ("-9223372036854775809", "-9223372036854775809"),
        ("18446744073709551615", "18446744073709551615"),
        ("1e30", "1e+30"),
        ("NaN", "NaN"),
        ("-Infinity", "-Infinity"),
        ("1e400", "Infinity"),
        ('"\\ud800"', "\ufffd"),  # half a character: neither database stores it
        ("300.5", "300.5"),
        ("-0.0", "-0.0"),
        ("true", "true"),
    ],
)
def test_values_are_stored_as_json_reads_and_writes_them(value: str, stored: str) -> None:
    results = parse_results(body(f'{{"a": {value}}}', f'[{{"e": {value}}}]'))
    assert results.trial == {"a": stored}
    assert results.events == [{"e": stored}]


def test_nested_measures_keep_their_order_and_the_last_value_of_an_id() -> None:
    results = parse_results(body('{"a.b": 1, "z": null, "a": {"b": 2, "c": [true, null, "x"]}}'))
    assert list(results.trial.items()) == [("a.b", "2"), ("a.c.0", "true"), ("a.c.2", "x")]


def nested(depth: int) -> str:
    return '{"k": ' * (depth - 1) + "1" + "}" * (depth - 1)


def test_ids_of_up_to_the_maximum_depth_are_stored_and_no_deeper() -> None:
    deepest = parse_results(body(nested(MAX_DEPTH + 1)))
    assert deepest.trial == {".".join(["k"] * MAX_DEPTH): "1"}
    with pytest.raises(InvalidBody, match="deeper than"):
        parse_results(body(nested(MAX_DEPTH + 2)))


def test_an_id_too_long_is_refused_unless_its_value_is_null() -> None:
    assert parse_results(body(f'{{"{"x" * 300}": null}}')).trial == {}
    with pytest.raises(InvalidBody, match="is too long"):
        parse_results(body(f'{{"a": {{"{"x" * 300}": 1}}}}'))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(trial=st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_the_quick_reading_is_the_exact_one(trial: dict[str, Any]) -> None:
    raw = json.dumps({"token": "T", "measures": {"trial": trial, "events": [trial]}})
    exact = outcome(lambda: _results(json.loads(raw), exact=True))
    assert outcome(lambda: parse_results(raw.encode())) == exact


def outcome(read: Callable[[], TrialResults | None]) -> TrialResults | str | None:
    try:
        return read()
    except InvalidBody as error:
        return str(error)


def test_answers_are_the_bytes_json_response_writes() -> None:
    answer = {
        "experimentId": "xp",
        "factorValues": {"size": "large", "é": '\u2028\x00"\\'},
        "measures": {},
        "practice": False,
        "measuredBlockNumber": None,
        "completionDate": 1796102663794,
    }
    ours = json_answer(answer)
    theirs = JSONResponse(answer)
    assert (ours.body, ours.headers.items()) == (theirs.body, theirs.headers.items())
    odd = {1: 2**70}  # orjson writes neither a key that is not text nor such an integer
    assert json_answer(odd).body == JSONResponse(odd).body
