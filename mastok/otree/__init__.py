"""oTree: the REST client mastok drives sessions with, and a local oTree for dev and tests."""

from mastok.otree.client import (
    OTreeAuthError,
    OTreeBadRequest,
    OTreeClient,
    OTreeError,
    OTreeNotConfigured,
    OTreeNotFound,
    OTreeServerError,
    OTreeTimeout,
    OTreeUnreachable,
    Participant,
    Progress,
    Session,
    SessionConfig,
    SessionSummary,
)

__all__ = [
    "OTreeAuthError",
    "OTreeBadRequest",
    "OTreeClient",
    "OTreeError",
    "OTreeNotConfigured",
    "OTreeNotFound",
    "OTreeServerError",
    "OTreeTimeout",
    "OTreeUnreachable",
    "Participant",
    "Progress",
    "Session",
    "SessionConfig",
    "SessionSummary",
]
