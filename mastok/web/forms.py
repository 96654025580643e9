"""The admin's campaign forms (WTForms, CSRF tied to the signed session cookie).

The forms only collect input; the rules live in `mastok.campaigns.rules`, whose messages are
attached back to the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from wtforms import BooleanField, Form, HiddenField, SelectField, StringField, TextAreaField
from wtforms.csrf.session import SessionCSRF
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import NumberInput

from mastok.campaigns.exits import ExitsError, exits_text, parse_exits_text
from mastok.campaigns.rules import PRESETS, RANGES, STATES, InvalidCampaign
from mastok.services import settings


class _WebFormData:
    """Starlette's form data in the shape WTForms reads (getlist)."""

    def __init__(self, data: FormData) -> None:
        self._data = data

    def __iter__(self) -> Any:
        return iter(self._data.keys())

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def getlist(self, key: str) -> list[Any]:
        return self._data.getlist(key)


class CSRFForm(Form):
    """A form whose CSRF token is tied to the admin's signed session cookie."""

    class Meta:
        csrf = True
        csrf_class = SessionCSRF
        csrf_time_limit = timedelta(hours=8)

    @classmethod
    def for_request(cls, request: Request, formdata: FormData | None = None, **kwargs: Any) -> Any:
        secret = settings(request).signing_key.encode()
        meta = {"csrf_secret": secret, "csrf_context": request.session}
        data = _WebFormData(formdata) if formdata is not None else None
        return cls(formdata=data, meta=meta, **kwargs)

    def values(self) -> dict[str, Any]:
        """What the admin typed, keyed as the rules name the fields."""
        return {name: field.data for name, field in self._fields.items() if name != "csrf_token"}

    def attach_errors(self, errors: Mapping[str, str]) -> list[str]:
        """Put each message on its field; return those that belong to no field of the form."""
        leftover = []
        for name, message in errors.items():
            field = self._fields.get(name)
            if field is None:
                leftover.append(f"{name}: {message}")
            else:
                field.errors = [*field.errors, message]
        return leftover


def _number(label: str, name: str, default: int) -> StringField:
    low, high = RANGES[name]
    return StringField(
        label,
        default=str(default),
        description=f"from {low} to {high}",
        widget=NumberInput(min=low, max=high),
    )


class ParamsField(StringField):
    """Query parameter names, shown and typed as one line separated by commas (the rules
    accept the line as it is)."""

    def _value(self) -> str:
        if isinstance(self.data, list | tuple):
            return ", ".join(str(name) for name in self.data)
        return super()._value()


class ExitsField(TextAreaField):
    """A campaign's exits, one line per outcome: `timeout: CODE https://…` (stored as a
    mapping; `values()` reads the lines back)."""

    def _value(self) -> str:
        if isinstance(self.data, dict):
            return exits_text(self.data)
        return super()._value()


def param_names(text: Any) -> tuple[str, ...]:
    """The names in a parameter field's line (or list), as the rules will read them."""
    if isinstance(text, str):
        return tuple(text.replace(",", " ").split())
    if isinstance(text, list | tuple):
        return tuple(str(name) for name in text)
    return ()


PRESET_CHOICES = {
    name: (identity, " ".join(params)) for name, (identity, params) in PRESETS.items()
}


class _CampaignFields(CSRFForm):
    presets = PRESET_CHOICES  # the platforms' buttons: (identity, parameters) by name
    slug = StringField(
        "Slug",
        description="public name in the share URL; a renamed campaign's old one still leads to it",
    )
    per_session = _number("Participants per session", "per_session", 2)
    max_sessions = _number("Maximum number of sessions", "max_sessions", 1)
    concurrent_sessions = _number("Sessions live at once", "concurrent_sessions", 1)
    session_duration = _number("Session duration (minutes)", "session_duration", 30)
    waiting_limit = _number("Waiting limit (minutes)", "waiting_limit", 5)
    join_once = BooleanField("Join once: a person may take part in only one session")
    show_nb_participants = BooleanField(
        "Show participants how many people are waiting", default=True
    )
    consent = TextAreaField(
        "Consent (markdown)",
        default="# Consent\n\n- [ ] I am over 18\n\n[accept]I agree[/accept]",
        description="must contain [accept]Button label[/accept]; '- [ ]' lines become checkboxes",
    )
    grouping = TextAreaField(
        "Grouping (optional)",
        description="a question line, one 'Label:size' line per group, then an action line",
    )
    instructions = TextAreaField("Instructions while waiting (markdown)")
    pending = TextAreaField("Message in the pending pool (markdown)")
    paused = TextAreaField("Message when Paused (markdown)")
    completed = TextAreaField("Message when Completed (markdown)")
    identity_param = StringField(
        "Identity parameter",
        default="",
        description="the join URL's query parameter holding the participant's platform id "
        "(e.g. PROLIFIC_PID); empty: none",
    )
    capture_params = ParamsField(
        "Parameters to record",
        default="",
        description="query parameters of the join URL recorded with each visit, separated by "
        "commas or spaces (e.g. PROLIFIC_PID, STUDY_ID, SESSION_ID)",
    )
    require_identity = BooleanField("Require the identity: turn away anyone who comes without it")
    exits = ExitsField(
        "Exits",
        default="",
        description="one line per outcome: 'outcome: CODE https://…'. Outcomes: timeout, full, "
        "paused, completed, rejected, left, not_ready, missing_id, landing_failed, redirected, "
        "started (who ends away is gone: no exit). A url may use {code}, {outcome} and recorded "
        "parameters, e.g. {PROLIFIC_PID}",
    )
    leave_after_seconds = _number("Leave allowed after (seconds)", "leave_after_seconds", 0)
    ready_check_seconds = _number(
        "Ready check (seconds to answer, 0: off)", "ready_check_seconds", 0
    )
    idle_flag_seconds = _number(
        "Flag a participant idle on one oTree page after (seconds, 0: never)",
        "idle_flag_seconds",
        300,
    )

    def values(self) -> dict[str, Any]:
        """The fields as the rules take them; the exits' lines read into their mapping.

        Raises InvalidCampaign when the exits' lines cannot be read."""
        values = super().values()
        text = values.get("exits")
        if isinstance(text, str):
            names = param_names(values.get("capture_params"))
            identity = values.get("identity_param")
            params = tuple(dict.fromkeys([*names, *([identity.strip()] if identity else [])]))
            try:
                values["exits"] = parse_exits_text(text, params)
            except ExitsError as error:
                raise InvalidCampaign({"exits": str(error)}) from None
        return values


class NewCampaignForm(_CampaignFields):
    namespace = StringField("Namespace", description="admin name, fixed after creation")
    otree_config_name = SelectField(
        "oTree session config", choices=[], validate_choice=False, description="fixed"
    )


class EditCampaignForm(_CampaignFields):
    state = SelectField("State", choices=[SelectChoice(s) for s in STATES])
    version = HiddenField()  # the campaign the form was opened on (CampaignService.version)
