"""The mastok ids and oTree labels of the sessions mastok creates."""

from __future__ import annotations

import pytest

from mastok.otree.labels import label, mastok_id, mastok_id_of


def test_a_label_is_the_mastok_id_and_the_campaign_uid() -> None:
    assert mastok_id("pilot", 3) == "mk:pilot:3"
    assert label("pilot", 3, "c0ffee00") == "mk:pilot:3:c0ffee00"


def test_the_mastok_id_is_read_back_from_the_label() -> None:
    assert mastok_id_of(label("pilot", 3, "c0ffee00")) == "mk:pilot:3"
    assert mastok_id_of("mk:pilot:3") == "mk:pilot:3"


@pytest.mark.parametrize("foreign", ["", "pilot", "mk:pilot", "km:pilot:3:c0ffee00"])
def test_sessions_mastok_did_not_create_have_no_mastok_id(foreign: str) -> None:
    assert mastok_id_of(foreign) is None
