"""oTree's URLs moved to its public origin, and participants' start URLs."""

from __future__ import annotations

import pytest

from mastok.otree.urls import public_otree_url, start_url


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("https://otree.example.org", "https://otree.example.org/SessionMonitor/abc?tab=1#top"),
        ("https://example.org/lab/", "https://example.org/lab/SessionMonitor/abc?tab=1#top"),
        ("", "http://127.0.0.1:8000/SessionMonitor/abc?tab=1#top"),
    ],
)
def test_urls_from_otree_api_move_to_its_public_origin(public: str, expected: str) -> None:
    assert (
        public_otree_url("http://127.0.0.1:8000/SessionMonitor/abc?tab=1#top", public) == expected
    )


def test_no_url_stays_none() -> None:
    assert public_otree_url("", "https://otree.example.org") == ""


@pytest.mark.parametrize("public", ["https://example.org/lab", "https://example.org/lab/"])
def test_a_participant_starts_at_initialize_participant(public: str) -> None:
    assert start_url(public, "p1x2") == "https://example.org/lab/InitializeParticipant/p1x2"
