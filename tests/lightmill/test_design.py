"""TouchStone designs: what is read, what is recomputed, what is refused and why."""

from __future__ import annotations

import time

import pytest

from mastok.lightmill.design import Design, DesignError, parse_design
from tests.lightmill.helpers import design


def pointing() -> Design:
    return parse_design(design("pointing.xml"))


def refused(xml: str) -> str:
    with pytest.raises(DesignError) as raised:
        parse_design(xml)
    return str(raised.value)


def test_experiment_factors_and_values() -> None:
    found = pointing()

    assert (found.id, found.name, found.author) == ("pointing", "Pointing", "Ada Lovelace")
    assert found.description == "Mouse or touch, small or large targets"
    assert [f.id for f in found.factors] == ["technique", "size", "hand", "distance"]
    technique = found.factors[0]
    assert (technique.name, technique.type, technique.kind, technique.tag) == (
        "Technique",
        "String",
        "key",
        "Within Subject",
    )
    assert [(v.id, v.name) for v in technique.values] == [
        ("mouse", "Mouse"),
        ("touch", "Touch screen"),
    ]
    assert found.factors[1].values[0].name is None  # name="" is no name
    assert found.defaults == {"size": "large", "hand": "right"}


@pytest.mark.parametrize("spelling", ["true", "1", "True", "yes", "Yes"])
def test_every_spelling_of_a_default(spelling: str) -> None:
    found = parse_design(
        f'<experiment id="x"><factor id="f"><value id="a"/><value id="b" default="{spelling}"/>'
        "</factor></experiment>"
    )
    assert found.factors[0].default == "b"


@pytest.mark.parametrize("spelling", ["false", "no", "0", "TRUE", ""])
def test_other_spellings_are_not_defaults(spelling: str) -> None:
    found = parse_design(
        f'<experiment id="x"><factor id="f"><value id="a" default="{spelling}"/></factor>'
        "</experiment>"
    )
    assert found.factors[0].default is None


def test_measure_levels_come_from_attribute_names() -> None:
    levels = {m.id: (m.trial_level, m.event_level) for m in pointing().measures}

    assert levels == {
        "time": (True, False),
        "durations.reaction": (True, False),
        "durations.movement": (True, False),
        "x": (False, True),
        "y": (False, True),
        "hit": (True, True),
    }
    odd = parse_design(
        '<experiment id="x"><measure id="m" my_log_flag=" OK "/><measure id="n" cine="no"'
        ' trial_log="ok"/></experiment>'
    )
    assert [(m.trial_level, m.event_level) for m in odd.measures] == [(True, False), (True, False)]


def test_blocks_are_numbered_in_document_order_and_practice_is_not_measured() -> None:
    s0 = pointing().runs[0]

    assert [(b.number, b.practice, b.measured_number) for b in s0.blocks] == [
        (0, True, None),
        (1, False, 0),
        (2, False, 1),
    ]
    assert [t.number for t in s0.blocks[1].trials] == [0, 1]  # number/total attributes ignored
    assert s0.trial_count == 6
    assert [r.id for r in pointing().runs] == ["S0", "S1", "S2"]


def test_factor_values_layer_defaults_then_block_then_trial() -> None:
    s0 = pointing().runs[0]

    assert s0.blocks[1].factor_values == {"technique": "touch", "size": "small"}
    assert [t.factor_values for t in s0.blocks[1].trials] == [
        {"size": "small", "hand": "right", "technique": "touch", "distance": "far"},
        {"size": "large", "hand": "right", "technique": "touch", "distance": "near"},
    ]
    assert s0.blocks[2].trials[1].factor_values == {
        "size": "large",
        "hand": "right",
        "technique": "mouse",
    }


def test_unknown_elements_and_spaces_in_values_are_fine() -> None:
    found = parse_design(
        '<experiment id="x"><factor id="t"><value id="Sigma Menu"/><value id="b"/></factor>'
        '<run id="S"><setup class="A"/><intertitle/><block values=" t=Sigma Menu , ">'
        '<trial values="t=b"/><note/></block></run><whatever/></experiment>'
    )
    assert found.runs[0].blocks[0].factor_values == {"t": "Sigma Menu"}
    assert found.runs[0].blocks[0].trials[0].factor_values == {"t": "b"}


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            '<experiment id="x">\n<factor id="size"><value id="1"/></factor>\n<run id="S">\n'
            '<block values="size=2"/></run></experiment>',
            "line 4: <block values=\"size=2\">: factor 'size' has no value '2'",
        ),
        (
            '<experiment id="x">\n<run id="S"><block>\n<trial values="shape=round"/>'
            "</block></run></experiment>",
            "line 3: <trial values=\"shape=round\">: unknown factor 'shape'",
        ),
        (
            '<experiment id="x"><factor id="f"><value id="a"/></factor><run id="S">'
            '<block values="f"/></run></experiment>',
            "line 1: <block values=\"f\">: 'f' is not factor=value",
        ),
        (
            '<experiment id="x"><factor id="f"><value id="a"/></factor><run id="S">'
            '<block values="f=a,f=a"/></run></experiment>',
            "factor 'f' is given twice",
        ),
        ("<experiment name='no id'/>", "line 1: <experiment>: the 'id' attribute is missing"),
        ("<design id='x'/>", "the root element must be <experiment>"),
        (f'<experiment id="{"x" * 256}"/>', "the 'id' attribute is longer than 255 characters"),
        ('<experiment id="x"><measure id="m" type="Integer"/></experiment>', "has no level"),
        ('<experiment id="x"><run id="S"/><run id="S"/></experiment>', "two runs have the id 'S'"),
        (
            '<experiment id="x"><factor id="f"><value id="a" default="true"/>'
            '<value id="b" default="yes"/></factor></experiment>',
            "factor 'f' already has a default value ('a')",
        ),
        ('<experiment id="x">\n  <run id="S">\n</experiment>', "line 3: not well-formed XML"),
        ("", "line 1: not well-formed XML: no element found"),
    ],
)
def test_mistakes_are_named_with_their_line(xml: str, message: str) -> None:
    assert message in refused(xml)


def test_malformed_file() -> None:
    assert refused(design("malformed.xml").decode()).startswith(
        "line 9: not well-formed XML: mismatched tag"
    )


def test_billion_laughs_is_refused_at_once() -> None:
    started = time.monotonic()
    message = refused(design("billion_laughs.xml").decode())

    assert message == (
        "line 3: entity declarations are not accepted (entity 'lol'): write the values out instead"
    )
    assert time.monotonic() - started < 1


def test_external_entities_are_never_fetched() -> None:
    message = refused(design("external_entity.xml").decode())

    assert "entity 'secret' pointing to 'file:///etc/passwd'" in message
    assert "root:" not in message


def test_external_dtd_is_refused() -> None:
    message = refused('<!DOCTYPE experiment SYSTEM "file:///etc/passwd"><experiment id="x"/>')

    assert (
        message == "line 1: external references are not accepted pointing to 'file:///etc/passwd'"
    )


def test_an_internal_dtd_without_entities_is_accepted() -> None:
    found = parse_design('<!DOCTYPE experiment [<!ELEMENT experiment ANY>]><experiment id="x"/>')
    assert found.id == "x"


def test_latin1_files_are_read() -> None:
    found = parse_design(
        '<?xml version="1.0" encoding="ISO-8859-1"?><experiment id="x" name="Pr\xe9test"/>'.encode(
            "latin-1"
        )
    )
    assert found.name == "Prétest"
