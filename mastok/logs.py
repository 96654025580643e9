"""How the process's log lines look: each starts with its ISO 8601 UTC time, as text or JSON.

`dict_config(format)` is the one logging configuration of `mastok serve` and `mastok dev`
(uvicorn applies it when it starts: `mastok.cli.uvicorn_config`): one handler on stderr at the
root, which mastok's, uvicorn's (its access log included) and Alembic's loggers all reach.
`text` writes `2025-01-31T12:00:00.123Z INFO mastok: message`; `json` writes one object a line
(`time`, `level`, `logger`, `message`, and the exception's traceback when there is one), through
python-json-logger. uvicorn's URLs are masked before either formats them (`mastok.logmask`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_LAYOUT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
# Left out of JSON lines: uvicorn's copy of its message with terminal colours.
JSON_LEFT_OUT = (*RESERVED_ATTRS, "color_message")
# uvicorn's own loggers: they keep no handler of their own and reach the root's.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def utc_time(record: logging.LogRecord) -> str:
    """The record's time in ISO 8601, UTC, to the millisecond: `2025-01-31T12:00:00.123Z`."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: MESSAGE`, the time in UTC."""

    def __init__(self) -> None:
        super().__init__(TEXT_LAYOUT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)


class JsonLines(JsonFormatter):
    """One JSON object a line: `time` (UTC), `level`, `logger`, `message`."""

    def __init__(self) -> None:
        super().__init__(JSON_FIELDS, rename_fields=JSON_NAMES, reserved_attrs=JSON_LEFT_OUT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)


def dict_config(log_format: LogFormat = "text", level: str = "INFO") -> dict[str, Any]:
    """The `logging.config.dictConfig` of the whole process (uvicorn's `log_config`)."""
    formatter = {"()": JsonLines if log_format == "json" else TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,  # mastok's loggers exist before this is applied
        "formatters": {"mastok": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "mastok",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": level} for name in UVICORN_LOGGERS
        },
    }
