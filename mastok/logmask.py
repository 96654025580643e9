"""Secrets out of the log: the URLs uvicorn logs lose lock tokens and participants' ids.

uvicorn logs each request's path with its query string (its access log, and its line per
WebSocket). LightMill's clients send their run's lock token as `?token=`, and the join socket's
URL carries the platform's ids of a participant (`PROLIFIC_PID=...`), as does the join page's
(the share URL a platform opens). `MaskSecrets`, installed on uvicorn's loggers by `mastok serve`
and `mastok dev` (`install`), rewrites those arguments before anything formats them:
`token=***`, `/ws/join` keeps its `slug` parameter only, and `/join/{slug}` none.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

MASKED = "***"
SECRET_PARAMETERS = frozenset({"token"})
JOIN_SOCKET = "/ws/join"
JOIN_KEPT = frozenset({"slug"})
JOIN_PAGE = re.compile(r"/join/[^/]+$")  # its script reads the query; the server takes none
LOGGERS = ("uvicorn.access", "uvicorn.error")


def mask_url(url: str) -> str:
    """`url` (a path with its query string, as uvicorn logs it) without its secrets."""
    path, question, query = url.partition("?")
    if not question:
        return url
    if JOIN_PAGE.search(path):
        return path
    kept = []
    for item in query.split("&"):
        name = unquote_plus(item.partition("=")[0])
        if path.endswith(JOIN_SOCKET) and name not in JOIN_KEPT:
            continue
        kept.append(f"{item.partition('=')[0]}={MASKED}" if name in SECRET_PARAMETERS else item)
    return f"{path}?{'&'.join(kept)}" if kept else path


class MaskSecrets(logging.Filter):
    """Masks the URLs among a record's arguments (text starting with `/` and holding a `?`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                mask_url(arg) if isinstance(arg, str) and arg.startswith("/") else arg
                for arg in record.args
            )
        return True


def install() -> None:
    """Mask the URLs of uvicorn's log lines (after uvicorn configured its logging)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskSecrets) for f in logger.filters):
            logger.addFilter(MaskSecrets())
