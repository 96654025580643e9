"""oTree's URLs as people reach them: oTree builds its URLs from the host mastok called it by.

A URL taken from oTree is only ever linked or sent when it is http(s) with a host (`http_url`):
anything else (`javascript:`, `data:`, a relative or protocol-relative URL) becomes "", which
pages and clients show as no link.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

LINKABLE_SCHEMES = ("http", "https")
LABEL = "participant_label"  # oTree's, in a start link: the platform id


def http_url(url: str) -> str:
    """`url` when it is an absolute http(s) URL with a host, else ""."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ""
    if parts.scheme.lower() not in LINKABLE_SCHEMES or not parts.netloc:
        return ""
    return url.strip()


def public_otree_url(url: str, public_url: str) -> str:
    """`url` (from oTree's API) on oTree's public origin and path, for people to follow; ""
    unless http(s)."""
    url = http_url(url)
    if not url or not public_url:
        return url
    public = urlsplit(public_url)
    parts = urlsplit(url)
    path = public.path.rstrip("/") + parts.path
    return http_url(urlunsplit((public.scheme, public.netloc, path, parts.query, parts.fragment)))


def start_url(public_url: str, participant_code: str, label: str | None = None) -> str:
    """Where a participant starts their oTree session (the code oTree gave, as one path
    segment); with its platform id as oTree's participant label (shown in oTree's admin and
    data exports)."""
    code = quote(participant_code, safe="")
    url = f"{public_url.rstrip('/')}/InitializeParticipant/{code}"
    return f"{url}?{urlencode({LABEL: label})}" if label else url


def unlabelled(url: str) -> str:
    """An oTree start link without its participant label (the platform id)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != LABEL]
    return urlunsplit(parts._replace(query=urlencode(query)))
