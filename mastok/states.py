"""The names of states and steps, shared by the rules, the tables, the room and the wire."""

from __future__ import annotations

from enum import StrEnum


class CampaignState(StrEnum):
    """A campaign's state as admins set it and the database keeps it."""

    PAUSED = "Paused"
    RUNNING = "Running"
    COMPLETED = "Completed"


class RoomState(StrEnum):
    """A campaign's state as participants and supervisors see it: Busy while its sessions are
    full, Unavailable (supervisors only) while oTree fails to create one."""

    PAUSED = "Paused"
    RUNNING = "Running"
    COMPLETED = "Completed"
    BUSY = "Busy"
    UNAVAILABLE = "Unavailable"


class Step(StrEnum):
    """Where a participant is, from Land on (the `step` column of the participants table)."""

    LANDED = "landed"  # read the consent
    AGREED = "agreed"  # consented, choosing a group
    JOINING = "joining"  # in its group's joining pool
    PENDING = "pending"  # in its group's pending pool
    STARTED = "started"  # sent to its oTree participant
    LEFT = "left"  # out of the room for good (`left_reason` says why)


WAITING_STEPS = (Step.LANDED, Step.AGREED, Step.JOINING, Step.PENDING)


class Outcome(StrEnum):
    """How a visit (one participant's time in a campaign's room) ended: exactly one each."""

    STARTED = "started"  # sent to its oTree participant
    TIMEOUT = "timeout"  # waited in the pools past the campaign's waiting limit
    FULL = "full"  # the pending pool was full
    PAUSED = "paused"  # the campaign was or became Paused
    COMPLETED = "completed"  # the campaign was or became Completed
    REJECTED = "rejected"  # join_once: this person was in the room or a session already
    LEFT = "left"  # chose to leave (the Leave frame)
    NOT_READY = "not_ready"  # did not answer the ready check in time
    MISSING_ID = "missing_id"  # the campaign requires a platform identity; none came
    LANDING_FAILED = "landing_failed"  # no usable browser id in Land
    REDIRECTED = "redirected"  # sent back to its live oTree session
    AWAY = "away"  # its socket dropped and it did not come back within the grace
