"""The wire format: every frame is a JSON text {"kind": K, "payload": P} (docs/protocol.md).

Written and read by orjson: json's encoder and decoder were 2.3% of mastok's time on a join
(py-spy, bench scenario 2), and a join runs 3.4% fewer instructions with orjson (callgrind,
bench/instructions.py). A frame's text from `encode` is compact, its non-ASCII characters as
they are (UTF-8 on the wire, as JSON allows), not escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

MAX_FRAME_BYTES = 64 * 1024
MAX_FINGERPRINT = 256  # a browser id, Land's payload
MAX_PARAM = 128  # a query parameter's value (a platform id, say)


class Kind(StrEnum):
    """Every frame kind, both ways (docs/protocol.md lists each; tests/test_docs.py checks)."""

    # participant -> server
    LAND = "Land"
    RESUME = "Resume"  # also server -> participant: the token to come back with
    AGREE = "Agree"
    CONNECT = "Connect"
    LEAVE = "Leave"
    READY = "Ready"
    PING = "Ping"  # also supervisor -> server: is anyone there? (answered with Pong)
    # server -> participant
    STATE = "State"  # also supervisor <-> server
    PAUSED = "Paused"
    COMPLETED = "Completed"
    CONSENT = "Consent"
    GROUPING = "Grouping"
    INSTRUCTIONS = "Instructions"
    JOINING_SIZE = "JoiningSize"  # also server -> supervisor
    PENDING = "Pending"
    STARTING = "Starting"
    WAITING = "Waiting"
    READY_CHECK = "ReadyCheck"
    EXIT = "Exit"
    ERROR = "Error"  # also server -> supervisor
    DISCONNECT = "Disconnect"
    PONG = "Pong"  # also server -> supervisor: the answer to Ping
    # server -> supervisor
    PENDING_SIZE = "PendingSize"
    SESSION_START = "SessionStart"


class Reason(StrEnum):
    """Why a participant's socket is closed (`Disconnect`'s payload). `Redirect:{URL}` is
    built by `redirect`. How the visit ended is its `Outcome` (`mastok.states`)."""

    START = "Start"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    FULL = "Full"
    LANDING_FAILED = "LandingFailed"
    REPLACED = "Replaced"
    TIMEOUT = "Timeout"
    LEFT = "Left"
    NOT_READY = "NotReady"
    MISSING_ID = "MissingId"
    AWAY = "Away"  # never sent: the participant was gone longer than the grace period


def redirect(url: str) -> str:
    return f"Redirect:{url}"


class FrameError(ValueError):
    """A frame that is not {"kind": str, "payload": ...}; the message says why."""


@dataclass(frozen=True)
class Frame:
    kind: str
    payload: Any = None


def encode(kind: str, payload: Any = None) -> str:
    message: dict[str, Any] = {"kind": kind}
    if payload is not None:
        message["payload"] = payload
    return orjson.dumps(message).decode()


def decode(text: str) -> Frame:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as error:  # 60 KB of `[[[[` too: orjson stops at 1,024 deep
        if str(error).startswith("depth limit"):
            raise FrameError("frames must not nest so deeply") from None
        raise FrameError("frames must be JSON") from None
    if not isinstance(data, dict):
        raise FrameError('frames must be objects like {"kind": "Land", "payload": "..."}')
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise FrameError('frames need a "kind" string')
    return Frame(kind, data.get("payload"))
