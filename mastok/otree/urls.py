"""oTree's URLs as people reach them: oTree builds its URLs from the host mastok called it by."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit


def public_otree_url(url: str, public_url: str) -> str:
    """`url` (from oTree's API) on oTree's public origin and path, for people to follow."""
    if not url or not public_url:
        return url
    public = urlsplit(public_url)
    parts = urlsplit(url)
    path = public.path.rstrip("/") + parts.path
    return urlunsplit((public.scheme, public.netloc, path, parts.query, parts.fragment))


def start_url(public_url: str, participant_code: str, label: str | None = None) -> str:
    """Where a participant starts their oTree session; with its platform id as oTree's
    participant label (shown in oTree's admin and data exports)."""
    url = f"{public_url.rstrip('/')}/InitializeParticipant/{participant_code}"
    return f"{url}?{urlencode({'participant_label': label})}" if label else url
