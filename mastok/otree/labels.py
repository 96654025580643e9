"""mastok's names for the oTree sessions it creates: the mastok id and the oTree label.

A session's mastok id is `mk:{namespace}:{n}` (its campaign and its number in the campaign);
its oTree label adds the campaign's uid, `mk:{namespace}:{n}:{uid}`, so that two campaigns that
reused a namespace never claim each other's sessions.
"""

from __future__ import annotations

PREFIX = "mk"


def mastok_id(namespace: str, number: int) -> str:
    return f"{PREFIX}:{namespace}:{number}"


def label(namespace: str, number: int, uid: str) -> str:
    return f"{mastok_id(namespace, number)}:{uid}"


def mastok_id_of(label: str) -> str | None:
    """The mastok id in a session's oTree label; None for a session mastok did not create."""
    parts = label.split(":")
    return ":".join(parts[:3]) if parts[0] == PREFIX and len(parts) >= 3 else None
