"""An async client for oTree 6's REST API (facts: shared/otree-notes.md).

Every failure of oTree or of the way to it becomes an `OTreeError` subclass carrying oTree's
own message, so callers can show it and never crash on it.

Calls go straight through aiohttp's client. A session start makes a call per participant (its
vars): through httpx (on aiohttp's transport since httpx's own cost 0.7 ms of CPU a call here,
aiohttp's 0.3), httpx's requests, URLs, responses and cookie jar were 16% of mastok's CPU on a
join (py-spy, bench scenario 2), as much as aiohttp's own work underneath. TLS is verified as
httpx verifies it (`httpx.create_ssl_context`: certifi's authorities, or SSL_CERT_FILE).
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import httpx

from mastok.otree.urls import http_url

if TYPE_CHECKING:
    from mastok.metrics import Metrics


# oTree's server (uvicorn) closes a connection idle for 5 s: a pooled one is dropped sooner, so
# a call never goes out on a connection oTree is closing.
_MAX_CONNECTIONS = 100
_KEEPALIVE = 4.0
# The largest answer read: a session's progress (`export_wide`) at 500 participants, 200
# columns of 10 bytes each, is 1 MB.
MAX_ANSWER_BYTES = 64 << 20


class OTreeError(Exception):
    """oTree could not do what was asked; `message` is oTree's own text where it gave one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class OTreeNotConfigured(OTreeError):
    """mastok has no oTree API URL."""


class OTreeUnreachable(OTreeError):
    """No answer: connection refused, unknown host, or a network error."""


class OTreeTimeout(OTreeUnreachable):
    """oTree did not answer in time (it may still have done the work)."""


class OTreeAuthError(OTreeError):
    """403: missing or wrong REST key (oTree also answers 403 to malformed arguments)."""


class OTreeBadRequest(OTreeError):
    """400: e.g. unknown session config, participant count not a multiple of the group size."""


class OTreeNotFound(OTreeError):
    """404: e.g. unknown session code."""


class OTreeServerError(OTreeError):
    """5xx, or an answer mastok cannot read."""


_BY_STATUS: dict[int, type[OTreeError]] = {
    400: OTreeBadRequest,
    403: OTreeAuthError,
    404: OTreeNotFound,
}


@dataclass(frozen=True)
class SessionConfig:
    name: str
    display_name: str
    num_demo_participants: int | None
    app_sequence: list[str]
    doc: str


@dataclass(frozen=True)
class SessionSummary:
    code: str
    num_participants: int
    config_name: str
    label: str
    admin_url: str
    session_wide_url: str
    created_at: datetime | None


@dataclass(frozen=True)
class Participant:
    code: str
    id_in_session: int
    label: str | None


@dataclass(frozen=True)
class Session:
    code: str
    num_participants: int
    config_name: str
    admin_url: str
    session_wide_url: str
    config: dict[str, Any] = field(default_factory=dict)
    participants: list[Participant] = field(default_factory=list)
    label: str = ""


@dataclass(frozen=True)
class Progress:
    """Where a participant is in its session, from oTree's wide export: page `index` out of
    the session's `page_count` pages (`_max_page_index`); finished past the last one."""

    code: str
    index: int
    page_count: int

    @property
    def finished(self) -> bool:
        return self.index > self.page_count


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    reason: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class OTreeClient:
    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.metrics = metrics
        self._headers = {"otree-rest-key": api_key}
        # The whole call, its answer's last byte included: an answer trickling in would
        # otherwise hold a session start (and its pool) for as long as it trickles.
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None  # made on the first call, in its loop

    async def aclose(self) -> None:
        """Close the connections; a later call opens new ones."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    async def version(self) -> str:
        data = await self._request("GET", "/api/otree_version")
        return str(_dict(data).get("version", ""))

    async def list_configs(self) -> list[SessionConfig]:
        return [_config(item) for item in _list(await self._request("GET", "/api/session_configs"))]

    async def list_sessions(self) -> list[SessionSummary]:
        return [_summary(item) for item in _list(await self._request("GET", "/api/sessions"))]

    async def get_session(self, code: str) -> Session:
        session = _session(_dict(await self._request("GET", f"/api/sessions/{code}")))
        if session.code != code:  # e.g. none: its progress would be read as every session's
            raise OTreeServerError(
                f"oTree sent session {session.code!r} instead of session {code}", 200
            )
        return session

    async def create_session(
        self,
        config_name: str,
        num_participants: int,
        *,
        label: str | None = None,
        modified_config: dict[str, Any] | None = None,
    ) -> Session:
        """Create a session and return it with its participants.

        oTree's creation answer has no participant codes, so the session is read back.
        """
        body: dict[str, Any] = {
            "session_config_name": config_name,
            "num_participants": num_participants,
        }
        if label is not None:
            body["label"] = label
        if modified_config:
            body["modified_session_config_fields"] = modified_config
        created = _dict(await self._request("POST", "/api/sessions", json=body))
        code = created.get("code")
        if not isinstance(code, str) or not code:
            raise OTreeServerError(f"oTree created a session but gave no code: {created!r}")
        return await self.get_session(code)

    async def set_participant_vars(self, participant_code: str, values: dict[str, Any]) -> None:
        """Set participant vars (`participant.vars` in the oTree project)."""
        await self._request(
            "POST", f"/api/participant_vars/{participant_code}", json={"vars": values}
        )

    async def session_progress(self, code: str) -> list[Progress]:
        """Each participant's page in session `code` (`GET /api/export_wide?session_code=`),
        in the export's order."""
        answer = await self._send("GET", "/api/export_wide", params={"session_code": code})
        return parse_progress(answer.text)

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """oTree's answer as JSON."""
        answer = await self._send(method, path, **kwargs)
        if not answer.content:
            return {}
        try:
            return json.loads(answer.content)
        except ValueError:
            raise OTreeServerError(
                f"oTree answered {method} {path} with something that is not JSON",
                answer.status,
            ) from None

    async def _send(self, method: str, path: str, **kwargs: Any) -> _Answer:
        """oTree's answer; each call timed and its error counted in the metrics."""
        started = time.perf_counter()
        error: OTreeError | None = None
        try:
            return await self._exchange(method, path, **kwargs)
        except OTreeError as failed:
            error = failed
            raise
        finally:
            if self.metrics is not None:
                self.metrics.otree_request(time.perf_counter() - started, error)

    async def _exchange(self, method: str, path: str, **kwargs: Any) -> _Answer:
        if not self.api_url:
            raise OTreeNotConfigured("oTree's API URL is not set (MASTOK_OTREE_API_URL)")
        try:
            async with self._session().request(
                method, self.api_url + path, headers=self._headers, **kwargs
            ) as response:
                content = await _read_bounded(response, method, path)
                answer = _Answer(response.status, response.reason or "", content)
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            raise OTreeTimeout(f"oTree did not answer in time ({method} {path})") from None
        except aiohttp.ClientError as error:
            raise OTreeUnreachable(
                f"cannot reach oTree at {self.api_url}: {error or type(error).__name__}"
            ) from None
        if answer.status >= 400:
            raise _error_for(answer)
        return answer

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            connector = aiohttp.TCPConnector(
                limit=_MAX_CONNECTIONS,
                keepalive_timeout=_KEEPALIVE,
                ssl=httpx.create_ssl_context(),
            )
            self._http = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._http


async def _read_bounded(response: aiohttp.ClientResponse, method: str, path: str) -> bytes:
    """The answer's body, refused past MAX_ANSWER_BYTES (a wrong URL, or a runaway oTree,
    must not fill mastok's memory)."""
    declared = response.content_length
    if declared is not None:
        if declared > MAX_ANSWER_BYTES:
            raise _too_big(response.status, method, path)
        return await response.read()  # aiohttp reads no more than the length declared
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise _too_big(response.status, method, path)
    return bytes(body)


def _too_big(status: int, method: str, path: str) -> OTreeServerError:
    limit = f"{MAX_ANSWER_BYTES:,}"
    return OTreeServerError(f"oTree's answer to {method} {path} is over {limit} bytes", status)


def _error_for(response: _Answer) -> OTreeError:
    status = response.status
    kind = _BY_STATUS.get(status, OTreeServerError)
    return kind(_message_of(response) or f"oTree answered {status}", status)


def _message_of(response: _Answer) -> str:
    """oTree's own error text: a JSON detail, or the plain text it sent (not an HTML page)."""
    text = response.text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("detail", "message", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])
    if isinstance(data, str):
        return data
    if text.lower().startswith(("<!doctype", "<html")):
        return f"oTree answered {response.status} ({response.reason})"
    return text[:500]


def _list(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise OTreeServerError(f"oTree sent a {type(data).__name__} where a list was expected")
    return data


def _dict(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise OTreeServerError(f"oTree sent a {type(data).__name__} where an object was expected")
    return data


def _config(item: dict[str, Any]) -> SessionConfig:
    demo = item.get("num_demo_participants")
    return SessionConfig(
        name=str(item.get("name", "")),
        display_name=str(item.get("display_name") or item.get("name", "")),
        num_demo_participants=demo if isinstance(demo, int) else None,
        app_sequence=[str(app) for app in item.get("app_sequence") or []],
        doc=str(item.get("doc") or ""),
    )


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _summary(item: dict[str, Any]) -> SessionSummary:
    return SessionSummary(
        code=str(item.get("code", "")),
        num_participants=int(item.get("num_participants") or 0),
        config_name=str(item.get("config_name") or ""),
        label=str(item.get("label") or ""),
        admin_url=http_url(str(item.get("admin_url") or "")),
        session_wide_url=http_url(str(item.get("session_wide_url") or "")),
        created_at=_timestamp(item.get("created_at")),
    )


def _session(item: dict[str, Any]) -> Session:
    participants = [
        Participant(
            code=str(p.get("code", "")),
            id_in_session=int(p.get("id_in_session") or 0),
            label=p.get("label"),
        )
        for p in item.get("participants") or []
        if isinstance(p, dict)
    ]
    config = item.get("config")
    return Session(
        code=str(item.get("code", "")),
        num_participants=int(item.get("num_participants") or len(participants)),
        config_name=str(item.get("config_name") or ""),
        admin_url=http_url(str(item.get("admin_url") or "")),
        session_wide_url=http_url(str(item.get("session_wide_url") or "")),
        label=str(item.get("label") or ""),
        config=config if isinstance(config, dict) else {},
        participants=sorted(participants, key=lambda p: p.id_in_session),
    )


PROGRESS_COLUMNS = (
    "participant.code",
    "participant._index_in_pages",
    "participant._max_page_index",
)


def parse_progress(text: str) -> list[Progress]:
    """The participants' pages in oTree's wide CSV export (it may start with a BOM)."""
    rows = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in PROGRESS_COLUMNS if c not in (rows.fieldnames or ())]
    if missing:
        raise OTreeServerError(f"oTree's export has no column {', '.join(missing)}")
    found = []
    for row in rows:
        code, index, count = (row[column] for column in PROGRESS_COLUMNS)
        try:
            found.append(Progress(code, int(index or 0), int(count or 0)))
        except ValueError:
            raise OTreeServerError(f"oTree's export has a page index {index!r}") from None
    return found
