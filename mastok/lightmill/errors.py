"""LightMill's errors: each answers with its class name as `type`, a message and a status.

Experiment clients switch on `type` (lightmill-runner puts it on the errors it throws), so the
names and statuses are LightMill's own.
"""

from __future__ import annotations

from typing import ClassVar


class LightMillError(Exception):
    """`retry_after`: seconds after which the client may try again (a `Retry-After` header)."""

    status: ClassVar[int] = 400

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        return type(self).__name__

    def to_json(self) -> dict[str, str]:
        return {"message": self.message, "type": self.type}


class UnknownElement(LightMillError):
    status = 400


class InvalidBody(LightMillError):
    """mastok's own: a request body that is not what the route takes (LightMill answered 500)."""

    status = 400


class UnsupportedMediaType(LightMillError):
    """mastok's own: an import whose Content-Type is not XML."""

    status = 415


class CannotImportExperiment(LightMillError):
    status = 400


class ImportNotAllowed(LightMillError):
    """mastok's own: an import without the admin's credentials while clients may not import."""

    status = 401


class TooManyAttempts(LightMillError):
    """mastok's own: an import from an address locked out after too many wrong credentials."""

    status = 429


class RunAlreadyLocked(LightMillError):
    status = 405


class RunNotLocked(LightMillError):
    status = 405


class WrongToken(LightMillError):
    status = 405


class ExperimentProgressError(LightMillError):
    status = 405


class WrongMeasureKey(LightMillError):
    status = 400


class TooManyMeasures(LightMillError):
    """mastok's own: a result post that would take an experiment past the measures clients may
    add (MASTOK_MAX_NEW_MEASURES)."""

    status = 400


class NoAvailableRuns(LightMillError):
    status = 410


class RunCompleted(LightMillError):
    status = 410
