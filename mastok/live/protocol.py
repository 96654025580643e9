"""The wire format: every frame is a JSON text {"kind": K, "payload": P} (docs/protocol.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_FRAME_BYTES = 64 * 1024
MAX_FINGERPRINT = 256


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
    return json.dumps(message, separators=(",", ":"))


def decode(text: str) -> Frame:
    try:
        data = json.loads(text)
    except ValueError:
        raise FrameError("frames must be JSON") from None
    if not isinstance(data, dict):
        raise FrameError('frames must be objects like {"kind": "Land", "payload": "..."}')
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise FrameError('frames need a "kind" string')
    return Frame(kind, data.get("payload"))
