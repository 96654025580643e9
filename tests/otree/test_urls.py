"""oTree's URLs moved to its public origin, and participants' start URLs."""

from __future__ import annotations

import pytest

from mastok.otree.client import _session, _summary
from mastok.otree.urls import http_url, public_otree_url, start_url


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


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        " JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "//evil.example/SessionMonitor/abc",
        "/SessionMonitor/abc",
        "http:///no-host",
        "http://[::1",
        "",
    ],
)
def test_only_http_urls_from_otree_are_kept(url: str) -> None:
    assert http_url(url) == ""
    assert public_otree_url(url, "https://otree.example.org") == ""
    assert public_otree_url(url, "") == ""
    listed = {"code": "abc", "admin_url": url, "session_wide_url": url}
    assert _summary(listed).admin_url == "" and _session(listed).session_wide_url == ""


@pytest.mark.parametrize("url", ["http://otree.example.org/x", "HTTPS://otree.example.org/x"])
def test_http_urls_from_otree_are_kept(url: str) -> None:
    assert http_url(url) == url
    assert _summary({"code": "abc", "admin_url": url}).admin_url == url


def test_a_participant_code_stays_one_path_segment() -> None:
    assert start_url("https://o.example", "a/../b?c") == (
        "https://o.example/InitializeParticipant/a%2F..%2Fb%3Fc"
    )
