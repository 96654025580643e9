"""What a valid campaign is: one set of rules for the admin forms and the JSON API.

Validation turns raw input (form fields or JSON) into clean values, or into a message per
field in words a researcher can act on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mastok.campaigns.exits import PARAM, ExitsError, check_exits
from mastok.campaigns.grouping import GroupingError, parse_grouping
from mastok.campaigns.markdown import render_consent
from mastok.states import CampaignState

STATES: tuple[str, ...] = tuple(CampaignState)
IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{2,128}$")
RANGES: dict[str, tuple[int, int]] = {
    "per_session": (1, 32),
    "max_sessions": (1, 128),
    "concurrent_sessions": (1, 99),
    "session_duration": (1, 1440),
    "waiting_limit": (1, 30),
    "leave_after_seconds": (0, 86_400),
    "ready_check_seconds": (0, 600),
    "idle_flag_seconds": (0, 86_400),
}
MAX_CAPTURED = 20
MAX_GROUP_LABEL = 255  # the participants' records hold a group label this long
PRESETS: dict[str, tuple[str, tuple[str, ...]]] = {
    # Recruitment platforms: the identity's query parameter and the parameters to record.
    "Prolific": ("PROLIFIC_PID", ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")),
    "MTurk": ("workerId", ("workerId", "assignmentId", "hitId")),
}
TEXT_LIMIT = 100_000
M = TypeVar("M", bound=BaseModel)
# Fixed at creation: a campaign's sessions and records refer to them.
IMMUTABLE = ("namespace", "otree_config_name")
READ_ONLY = ("started_sessions", "id", "uid", "share_url", "created_at", "updated_at")


def _ranged(name: str, description: str) -> Any:
    low, high = RANGES[name]
    return Annotated[int, Field(ge=low, le=high, description=f"{description} ({low} to {high})")]


def _lines(value: Any) -> Any:
    """A browser sends a textarea's lines ending with CRLF: the same text as the API's LF."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


Text = Annotated[str, BeforeValidator(_lines), Field(max_length=TEXT_LIMIT)]


class CampaignSettings(BaseModel):
    """The fields an admin sets on any campaign, new or existing."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    slug: str = Field(
        description="Public name in the share URL: letters, digits, _ (2 to 128). Its old "
        "slugs stay a campaign's (their share URLs redirect to it): no other campaign may "
        "take them"
    )
    per_session: _ranged("per_session", "Participants per oTree session")  # type: ignore[valid-type]
    join_once: bool = Field(False, description="A fingerprint may join only one session")
    show_nb_participants: bool = Field(
        True, description="Show people how many are in their pool (as Go Mastok, on by default)"
    )
    max_sessions: _ranged("max_sessions", "Sessions before the campaign is Completed")  # type: ignore[valid-type]
    concurrent_sessions: _ranged("concurrent_sessions", "Sessions live at once")  # type: ignore[valid-type]
    session_duration: _ranged("session_duration", "Minutes a session stays live")  # type: ignore[valid-type]
    waiting_limit: _ranged("waiting_limit", "Minutes a participant may wait")  # type: ignore[valid-type]
    consent: Text = Field(description="Markdown; must contain [accept]Button label[/accept]")
    grouping: Text = Field("", description="Optional: question, Label:size lines, action")
    instructions: Text = Field("", description="Markdown shown while waiting")
    paused: Text = Field("", description="Markdown shown when the campaign is Paused")
    completed: Text = Field("", description="Markdown shown when the campaign is Completed")
    pending: Text = Field("", description="Markdown shown in the pending pool")
    identity_param: str = Field(
        "",
        max_length=64,
        description="The join URL's query parameter holding the platform id (e.g. PROLIFIC_PID)",
    )
    capture_params: list[str] = Field(
        default_factory=list,
        description=f"Query parameters recorded with each visit (at most {MAX_CAPTURED})",
    )
    require_identity: bool = Field(
        False, description="Turn away (outcome missing_id) anyone without the identity parameter"
    )
    exits: dict[str, Any] = Field(
        default_factory=dict,
        description='Per outcome, {"code": completion code or null, "url": return link or null}',
    )
    leave_after_seconds: _ranged(  # type: ignore[valid-type]
        "leave_after_seconds", "Seconds of waiting before someone may leave (and get its code)"
    ) = 0
    ready_check_seconds: _ranged(  # type: ignore[valid-type]
        "ready_check_seconds", "Seconds to confirm presence when a pool is full (0: no check)"
    ) = 0
    idle_flag_seconds: _ranged(  # type: ignore[valid-type]
        "idle_flag_seconds",
        "Seconds on one oTree page after which the supervise page flags a participant (0: never)",
    ) = 300

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if _holds_nul(value):  # PostgreSQL's text holds none: the save would fail (a 500)
            raise ValueError("holds a NUL character, which no text here may hold")
        return value

    @field_validator("slug")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return _check_identifier(value)

    @field_validator("consent")
    @classmethod
    def _has_accept_button(cls, value: str) -> str:
        # Rendered, not searched for: an [accept] in a code span or an image title is no button.
        if 'id="accept"' not in render_consent(value):
            raise ValueError("must contain an accept button: [accept]I agree[/accept]")
        return value

    @field_validator("grouping")
    @classmethod
    def _grouping_parses(cls, value: str) -> str:
        try:
            grouping = parse_grouping(value)
        except GroupingError as error:
            raise ValueError(str(error)) from None
        # Checked here, not when read: a campaign stored before still opens its room.
        for number, group in enumerate(grouping.groups if grouping else (), start=2):
            if len(group.label) > MAX_GROUP_LABEL:
                raise ValueError(f"line {number}: a label is at most {MAX_GROUP_LABEL} characters")
        return value

    @field_validator("identity_param")
    @classmethod
    def _parameter_name(cls, value: str) -> str:
        if value and not PARAM.match(value):
            raise ValueError("use letters, digits, _, . or - (at most 64)")
        return value

    @field_validator("capture_params", mode="before")
    @classmethod
    def _parameter_names(cls, value: Any) -> Any:
        if isinstance(value, str):  # the form's field: names separated by commas or spaces
            value = value.replace(",", " ").split()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of query parameter names")
        names = list(dict.fromkeys(v.strip() for v in value if v.strip()))
        if len(names) > MAX_CAPTURED:
            raise ValueError(f"at most {MAX_CAPTURED} parameters")
        wrong = [name for name in names if not PARAM.match(name)]
        if wrong:
            raise ValueError(f"{wrong[0]!r}: use letters, digits, _, . or - (at most 64)")
        return names

    @model_validator(mode="after")
    def _identity_and_exits(self) -> CampaignSettings:
        if self.require_identity and not self.identity_param:
            raise _FieldError("require_identity", "name the identity parameter (identity_param)")
        params = tuple(p for p in dict.fromkeys([*self.capture_params, self.identity_param]) if p)
        try:
            self.exits = check_exits(self.exits, params)
        except ExitsError as error:
            raise _FieldError("exits", str(error)) from None
        return self

    @model_validator(mode="after")
    def _groups_fill_a_session(self) -> CampaignSettings:
        grouping = parse_grouping(self.grouping)
        if grouping and grouping.total != self.per_session:
            raise _FieldError(
                "grouping",
                f"group sizes add up to {grouping.total} but a session takes "
                f"{self.per_session} participants (per_session)",
            )
        return self


class CampaignUpdate(CampaignSettings):
    """An existing campaign's editable fields, its state included."""

    state: CampaignState = Field(CampaignState.PAUSED, description="Paused, Running or Completed")


class CampaignCreate(CampaignSettings):
    """A new campaign: its settings plus what is fixed for life. New campaigns are Paused."""

    namespace: str = Field(description="Admin name, fixed: letters, digits, _ (2 to 128)")
    otree_config_name: str = Field(
        min_length=1, max_length=255, description="oTree session config, fixed"
    )

    @field_validator("namespace")
    @classmethod
    def _namespace_identifier(cls, value: str) -> str:
        return _check_identifier(value)


def _holds_nul(value: Any) -> bool:
    """Whether a NUL is in the text, or in any text of the list or mapping."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    if isinstance(value, Mapping):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    return False


def _check_identifier(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError("use 2 to 128 letters, digits or underscores (A-Z, a-z, 0-9, _)")
    return value


class _FieldError(ValueError):
    """A cross-field rule broken at one field (pydantic reports model errors at the root)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidCampaign(Exception):
    """The input breaks the rules: `errors` maps each wrong field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def validate_new(raw: Mapping[str, Any]) -> CampaignCreate:
    return _validate(CampaignCreate, _without(raw, ("state",), "is Paused for a new campaign"))


def validate_update(current: Mapping[str, Any], changes: Mapping[str, Any]) -> CampaignUpdate:
    """The campaign `current` with `changes` applied, checked as a whole."""
    errors = {key: "cannot be changed after creation" for key in IMMUTABLE if key in changes}
    errors.update({key: "is set by mastok, not editable" for key in READ_ONLY if key in changes})
    if errors:
        raise InvalidCampaign(errors)
    editable = set(CampaignUpdate.model_fields)
    merged = {key: value for key, value in current.items() if key in editable}
    merged.update(changes)
    updated = _validate(CampaignUpdate, merged)
    _check_sessions_left(updated, int(current.get("started_sessions") or 0), "state" in changes)
    _check_slug_kept(current, updated)
    return updated


def _check_slug_kept(current: Mapping[str, Any], campaign: CampaignUpdate) -> None:
    """The join page keeps its resume token under the slug it was opened at (front/js/join.js).
    An old slug still leads to its campaign, but a page reloaded there is redirected to the new
    one and finds no token: landing as the same person gives a waiting member its place back,
    not what the token alone does (its session, started while the page was away, with live
    redirects off; its visit's ending, with its exit code): the page lands as a new visit. So
    also not in the edit that pauses it: pages come back for those after a pause too."""
    running = current.get("state") == CampaignState.RUNNING
    if running and campaign.slug != current.get("slug"):
        raise InvalidCampaign({"slug": "cannot change while the campaign is Running: pause it"})


def _check_sessions_left(campaign: CampaignUpdate, started: int, state_changed: bool) -> None:
    """Running with every session started, it would start none (the room never goes past
    max_sessions), and those who came would wait out their limit for nothing."""
    if campaign.state == CampaignState.RUNNING and started >= campaign.max_sessions:
        field = "state" if state_changed else "max_sessions"
        message = (
            f"max_sessions is {campaign.max_sessions} and {started} are started: raise it to "
            "run the campaign"
        )
        raise InvalidCampaign({field: message})


def _without(raw: Mapping[str, Any], keys: tuple[str, ...], reason: str) -> Mapping[str, Any]:
    present = [key for key in keys if key in raw]
    if present:
        raise InvalidCampaign({key: reason for key in present})
    return raw


def _validate(model: type[M], raw: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(dict(raw))
    except ValidationError as error:
        raise InvalidCampaign(_messages(error)) from None


def _messages(error: ValidationError) -> dict[str, str]:
    messages: dict[str, str] = {}
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        context = item.get("ctx") or {}
        cause = context.get("error")
        if isinstance(cause, _FieldError):
            field, text = cause.field, cause.message
        else:
            text = _message(field, item["type"], item["msg"], context)
        messages.setdefault(field or "campaign", text)
    return messages


def _message(field: str, kind: str, default: str, context: Mapping[str, Any]) -> str:
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a campaign field"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return _range_text(field, "must be a whole number")
    if kind in ("greater_than_equal", "less_than_equal"):
        return _range_text(field, "is out of range")
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind == "enum":
        return f"must be one of {', '.join(STATES)}"
    if kind == "string_too_long":
        return f"is too long (at most {context.get('max_length')} characters)"
    if kind == "string_too_short":
        return "is required"
    if kind == "string_type":
        return "must be text"
    if kind == "value_error":
        return default.removeprefix("Value error, ")
    return default


def _range_text(field: str, fallback: str) -> str:
    if field in RANGES:
        low, high = RANGES[field]
        return f"must be a whole number from {low} to {high}"
    return fallback
