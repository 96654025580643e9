from typing import Any

import pytest

from mastok.campaigns.rules import InvalidCampaign, validate_new, validate_update
from mastok.db.tables import Participant
from tests.campaigns.factories import campaign_input


def errors_of(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidCampaign) as caught:
        validate_new(raw)
    return caught.value.errors


def test_valid_input_is_kept() -> None:
    campaign = validate_new(campaign_input())
    assert campaign.namespace == "study_1"
    assert campaign.per_session == 2
    assert campaign.show_nb_participants is True


def test_form_strings_are_converted() -> None:
    campaign = validate_new(campaign_input(per_session="4", join_once="true"))
    assert campaign.per_session == 4
    assert campaign.join_once is True


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("namespace", "a", "2 to 128 letters, digits or underscores"),
        ("namespace", "has space", "2 to 128 letters"),
        ("namespace", "x" * 129, "2 to 128 letters"),
        ("slug", "é_accent", "2 to 128 letters"),
        ("per_session", 0, "from 1 to 32"),
        ("per_session", 33, "from 1 to 32"),
        ("per_session", "two", "whole number from 1 to 32"),
        ("max_sessions", 129, "from 1 to 128"),
        ("concurrent_sessions", 100, "from 1 to 99"),
        ("waiting_limit", 31, "from 1 to 30"),
        ("session_duration", 0, "from 1 to 1440"),
        ("consent", "I agree", "[accept]"),
        ("join_once", "maybe", "true or false"),
        ("otree_config_name", "", "is required"),
    ],
)
def test_each_rule_names_its_field(field: str, value: Any, message: str) -> None:
    errors = errors_of(campaign_input(**{"slug": "a_slug", field: value}))
    assert list(errors) == [field]
    assert message in errors[field]


def test_every_missing_field_is_reported() -> None:
    errors = errors_of({})
    for field in ("namespace", "slug", "otree_config_name", "per_session", "consent"):
        assert errors[field] == "is required"


def test_grouping_sizes_must_fill_a_session() -> None:
    errors = errors_of(campaign_input(grouping="Gender?\nFemale:2\nMale:2\nNext"))
    assert errors == {
        "grouping": "group sizes add up to 4 but a session takes 2 participants (per_session)"
    }
    ok = validate_new(campaign_input(per_session=4, grouping="Gender?\nFemale:2\nMale:2\nNext"))
    assert ok.grouping.startswith("Gender?")


def test_a_group_label_the_records_cannot_hold_is_refused() -> None:
    # PostgreSQL refuses a longer group_label: whoever picked that group could never join.
    longest = Participant.__table__.c.group_label.type.length
    fits = validate_new(campaign_input(grouping=f"Pick\n{'x' * longest}:2\nGo"))
    assert fits.grouping
    errors = errors_of(campaign_input(grouping=f"Pick\n{'x' * (longest + 1)}:2\nGo"))
    assert errors == {"grouping": f"line 2: a label is at most {longest} characters"}


def test_new_campaigns_cannot_choose_their_state_or_unknown_fields() -> None:
    assert errors_of(campaign_input(state="Running")) == {"state": "is Paused for a new campaign"}
    assert errors_of(campaign_input(colour="red")) == {"colour": "is not a campaign field"}


def test_update_merges_and_checks_the_whole_campaign() -> None:
    current = validate_new(campaign_input()).model_dump()
    updated = validate_update(current, {"per_session": 4, "state": "Running"})
    assert updated.per_session == 4
    assert updated.state == "Running"
    assert updated.slug == "study_1_join"


def test_update_refuses_fixed_and_computed_fields() -> None:
    current = validate_new(campaign_input()).model_dump()
    with pytest.raises(InvalidCampaign) as caught:
        validate_update(current, {"namespace": "other", "started_sessions": 9})
    assert caught.value.errors == {
        "namespace": "cannot be changed after creation",
        "started_sessions": "is set by mastok, not editable",
    }


@pytest.mark.parametrize("state", ["Paused", "Completed", "Running"])
def test_a_running_campaigns_slug_is_kept_whatever_state_the_same_edit_sets(state: str) -> None:
    # Paused in the same edit, the pages of those whose session is live (or whose visit just
    # ended) still come back, their token kept under the slug: reloaded after a rename, they
    # would land on the new slug without it.
    current = {**validate_new(campaign_input()).model_dump(), "state": "Running"}
    with pytest.raises(InvalidCampaign) as caught:
        validate_update(current, {"state": state, "slug": "renamed"})
    assert caught.value.errors == {"slug": "cannot change while the campaign is Running: pause it"}
    paused = {**current, "state": "Paused"}
    assert validate_update(paused, {"slug": "renamed"}).slug == "renamed"


def test_update_checks_cross_field_rules_against_current_values() -> None:
    current = validate_new(campaign_input(per_session=2)).model_dump()
    with pytest.raises(InvalidCampaign) as caught:
        validate_update(current, {"grouping": "Q\nA:1\nB:2\nGo"})
    assert "add up to 3" in caught.value.errors["grouping"]
    with pytest.raises(InvalidCampaign) as caught:
        validate_update(current, {"state": "Busy"})
    assert caught.value.errors == {"state": "must be one of Paused, Running, Completed"}


@pytest.mark.parametrize("field", ["namespace", "consent", "otree_config_name", "exits"])
def test_a_nul_is_refused_in_any_text(field: str) -> None:
    """PostgreSQL's text holds none: the save failed with a 500."""
    raw = campaign_input()
    raw[field] = {"timeout": {"code": "C\x001", "url": None}} if field == "exits" else "a\x00b"
    assert errors_of(raw) == {field: "holds a NUL character, which no text here may hold"}


def test_a_campaign_runs_only_with_sessions_left_to_start() -> None:
    """Running at max_sessions, it would start nothing and hold everyone until their limit."""
    current = {**validate_new(campaign_input(max_sessions=4)).model_dump(), "started_sessions": 4}
    message = "max_sessions is 4 and 4 are started: raise it to run the campaign"
    completed = {**current, "state": "Completed"}
    with pytest.raises(InvalidCampaign) as caught:
        validate_update(completed, {"state": "Running"})
    assert caught.value.errors == {"state": message}
    running = {**current, "max_sessions": 6, "state": "Running", "started_sessions": 4}
    with pytest.raises(InvalidCampaign) as caught:
        validate_update(running, {"max_sessions": 3})
    assert caught.value.errors == {"max_sessions": message.replace("is 4", "is 3")}

    assert validate_update(completed, {"state": "Running", "max_sessions": 5}).state == "Running"
    assert validate_update(running, {"max_sessions": 5}).max_sessions == 5
    assert validate_update(completed, {"state": "Paused"}).state == "Paused"


@pytest.mark.parametrize(
    "consent",
    [
        "Nothing to accept",
        "`[accept]Go[/accept]`",
        '![i](x.png "[accept]Go[/accept]")',
        "\\[accept]Go[/accept]",
    ],
)
def test_a_consent_needs_an_accept_button_that_renders(consent: str) -> None:
    with pytest.raises(InvalidCampaign) as raised:
        validate_new(campaign_input("ns_accept", consent=consent))
    assert raised.value.errors == {
        "consent": "must contain an accept button: [accept]I agree[/accept]"
    }
