import pytest

from mastok.campaigns.grouping import Group, GroupingError, parse_grouping


def test_blank_text_means_no_grouping() -> None:
    assert parse_grouping("") is None
    assert parse_grouping("  \n\n ") is None


def test_question_groups_and_action_are_read() -> None:
    grouping = parse_grouping("What is your gender?\nFemale:2\n Male : 1 \nNext\n")
    assert grouping is not None
    assert grouping.question == "What is your gender?"
    assert grouping.groups == (Group("Female", 2), Group("Male", 1))
    assert grouping.action == "Next"
    assert grouping.total == 3
    assert grouping.size_of("Male") == 1
    assert grouping.size_of("Other") is None
    # As Go Mastok sends it, whatever blank lines and spaces the admin typed.
    assert grouping.as_text() == "What is your gender?\nFemale:2\nMale:1\nNext"


def test_labels_may_contain_colons() -> None:
    grouping = parse_grouping("Pick\nTeam: red:2\nGo")
    assert grouping is not None
    assert grouping.groups == (Group("Team: red", 2),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Question\nGo", "question line"),
        ("Q\nFemale\nGo", "line 2 must read 'Label:size'"),
        ("Q\n:2\nGo", "line 2 must read 'Label:size'"),
        ("Q\nA:two\nGo", "whole number"),
        ("Q\nA:0\nGo", "at least 1"),
        ("Q\nA:1\nA:1\nGo", "A is repeated"),
    ],
)
def test_malformed_grouping_is_explained(text: str, message: str) -> None:
    with pytest.raises(GroupingError, match=message):
        parse_grouping(text)
