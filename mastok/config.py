"""Settings: one table declares each setting; config.yml, the environment and flags fill it in.

`Settings` is the table: a row per setting with its name, type, default and help, and whether it
is secret (never in config.yml, kept out of the repr). Everything else comes from it: the typing
and parsing here, config.yml, `.env.example` and README's table (`mastok settings`), and the help
of the command-line flags that override a setting (`mastok.cli`).

config.yml holds the non-secret defaults; every setting `key` is read from the environment
variable `MASTOK_<KEY>`, which overrides it; command-line flags override both. In DEV mode a `.env`
file is loaded first (without replacing variables already set).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from dotenv import load_dotenv
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

ROOT_VARIABLE = "MASTOK_ROOT"
DEFAULT_PASSWORD = "mastok"
MIN_PASSWORD_LENGTH = 12
# Where config.yml, templates/ and front/ are: the source tree, or MASTOK_ROOT when mastok is
# installed as a package (the container image sets it to /app).
PROJECT_ROOT = Path(os.environ.get(ROOT_VARIABLE) or Path(__file__).resolve().parent.parent)
VARIABLE_PREFIX = "MASTOK_"


class ConfigError(Exception):
    """A setting is missing or wrong; the message says what to set."""


def _text(raw: Any) -> str:
    return "" if raw is None else str(raw)


def _flag(raw: Any) -> Any:
    # An empty variable (`MASTOK_X=`) means off, as in .env.example.
    if isinstance(raw, str):
        return raw.strip() or False
    return raw


def _prefix(prefix: str) -> str:
    prefix = prefix.strip().rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix


# The types of the table's rows: how each reads text from the environment or YAML scalars.
Mode = Annotated[Literal["DEV", "TEST", "PROD"], BeforeValidator(lambda raw: _text(raw).upper())]
Text = Annotated[str, BeforeValidator(_text)]
LogFormat = Annotated[Literal["text", "json"], BeforeValidator(lambda raw: _text(raw).lower())]
Url = Annotated[Text, AfterValidator(lambda url: url.rstrip("/"))]
Prefix = Annotated[Text, AfterValidator(_prefix)]
Flag = Annotated[bool, BeforeValidator(_flag)]
# Numbers bounded where a value out of range would be taken and misbehave (a port past 65535,
# a negative grace, a lock that expires at once and so protects no run).
Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]
Amount = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
Timeout = Annotated[float, Field(gt=0)]


def setting(default: Any, help: str, *, secret: bool = False) -> Any:
    """A row of the table: the default, what the setting means (one phrase, markdown), and
    whether it is a secret."""
    return Field(default, description=help, repr=not secret)


class Settings(BaseModel):
    """mastok's settings, one row each. Adding a setting is adding a row; then
    `mastok settings --format yaml > config.yml` (if not secret), `--format env > .env.example`,
    and README's table from `--format markdown` (tests/test_docs.py says what differs)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    mode: Mode = setting(
        "DEV",
        "`DEV` loads `.env`; `TEST`; `PROD` refuses to start with settings that break a study "
        "(a default origin, no secret key, a short password, no oTree settings, unsafe flags)",
    )
    host: Text = setting("127.0.0.1", "address to listen on")
    port: Port = setting(8190, "port to listen on")
    trusted_proxies: Text = setting(
        "",
        "addresses, networks or host names (comma-separated, e.g. `10.89.0.10`, `10.89.0.0/24`, "
        "`proxy`; names resolved at start) of the proxies whose `X-Forwarded-For` and "
        "`X-Forwarded-Proto` headers are believed; empty: nobody's",
    )
    log_format: LogFormat = setting(
        "text",
        "how log lines look: `text` (each starts with its ISO 8601 UTC time) or `json` (one "
        "object a line, with its `time`)",
    )
    origin: Url = setting(
        "http://localhost:8190",
        "where people reach mastok (behind a proxy: the public origin); trusted for WebSockets "
        "and used in share URLs",
    )
    web_prefix: Prefix = setting("", "path prefix when served under a sub-path, e.g. `/mastok`")
    login: Text = setting("mastok", "HTTP Basic login of the admin pages and API")
    password: Text = setting(
        DEFAULT_PASSWORD,
        "HTTP Basic password of the admin pages and API; `PROD` refuses the default and any "
        "shorter than 12 characters",
        secret=True,
    )
    sockets_per_address: Count = setting(
        200,
        "participant sockets one client address may hold open at once (a lab behind one "
        "address counts as one)",
    )
    landings_per_minute: Count = setting(
        120,
        "participant landings (Land) one client address may make a minute, at once or spread; "
        "beyond it Land is refused with LandingFailed",
    )
    sockets_per_minute: Count = setting(
        600,
        "participant sockets one client address may open a minute, at once or spread; beyond "
        "it a handshake is answered 429 (a page that reconnects now and then never gets near)",
    )
    login_max_failures: Count = setting(
        30,
        "wrong admin credentials from one address within 5 minutes before its admin requests "
        "are refused (429) for 5 minutes; each wrong attempt past the fifth is answered a "
        "little later",
    )
    secret_key: Text = setting(
        "",
        "signs the admin session cookie (CSRF tokens); empty: random at each start (`PROD` "
        "refuses it empty)",
        secret=True,
    )
    database_url: Text = setting(
        "",
        "`postgres://user:pass@host/db` (asyncpg) or `sqlite:///path`; empty: the SQLite file "
        "at `MASTOK_SQLITE_PATH`",
    )
    sqlite_path: Text = setting("data/mastok.sqlite3", "the embedded database when no URL is set")
    otree_public_url: Url = setting("", "oTree as participants reach it")
    otree_api_url: Url = setting("", "oTree's REST API as mastok reaches it (same oTree server)")
    otree_api_key: Text = setting("", "oTree's `OTREE_REST_KEY`", secret=True)
    otree_timeout: Timeout = setting(
        10.0, "seconds to wait for each call to oTree's API, its whole answer included"
    )
    disable_live_redirect: Flag = setting(
        False, "do not send people coming back to their live oTree session"
    )
    allow_missing_origin: Flag = setting(
        False,
        "accept WebSocket handshakes without an `Origin` header (scripts; browsers always "
        "send one)",
    )
    resume_grace: Seconds = setting(
        30.0,
        "seconds a participant whose connection dropped keeps its place (the join page keeps "
        "reconnecting that long)",
    )
    # A Ping costs 29-34 us of mastok's CPU (30,000 over 1,000 sockets): every 15 s from each of
    # 10,000 quiet pages, about 2% of a core.
    page_heartbeat: Seconds = setting(
        15.0,
        "seconds of silence after which the join and supervise pages send `Ping` to check "
        "their socket; with no answer within 5 s they reconnect (a socket cut without a close: "
        "a dead leader, a changed network). 0: never",
    )
    left_grace: Seconds = setting(
        3.0,
        "seconds a participant whose page closed its socket on leaving (close code 1000: a "
        "reload, say) keeps its place",
    )
    land_within: Timeout = setting(
        30.0, "seconds a participant socket may stay open without landing (then it is closed)"
    )
    lock_timeout: Timeout = setting(
        120.0, "LightMill: seconds of silence after which a run's lock counts as released"
    )
    unprotected_runs: Flag = setting(
        False, "LightMill: let any client take over a locked run (never in a real study)"
    )
    fixed_measures: Flag = setting(
        False, "LightMill: refuse results with measures the design lacks"
    )
    max_new_measures: Amount = setting(
        2000,
        "LightMill: measures clients may add to an experiment besides its design's; a result "
        "post that would add more is refused and nothing of it stored",
    )
    max_design_mib: Count = setting(
        64, "LightMill: the largest design an import takes, in MiB (larger ones are refused)"
    )
    sqlite_trials_in_process: Flag = setting(
        False,
        "LightMill on SQLite: write trial posts in the server's process, not in a worker "
        "process beside it (which logs 1.5 to 2 times the trials a second on two cores)",
    )
    client_import: Flag = setting(
        False,
        "LightMill: let experiment clients import new designs without credentials, as "
        "LightMill did (never replacing one)",
    )

    @cached_property
    def signing_key(self) -> str:
        """The key that signs the admin session cookie: `secret_key`, or a random one for the
        life of these settings when it is empty."""
        return self.secret_key or secrets.token_urlsafe(32)

    @property
    def share_url_base(self) -> str:
        """Where a campaign's public join page lives, without the slug."""
        return f"{self.origin}{self.web_prefix}/join/"

    def with_overrides(self, **changes: Any) -> Settings:
        """These settings with `changes` (None: unchanged) parsed as any other source."""
        given = {key: value for key, value in changes.items() if value is not None}
        return validated(self.model_dump() | given)

    def check_production(self) -> None:
        """Refuse, in PROD, settings that break a study, in one line naming each variable."""
        if self.mode != "PROD":
            return
        wrong = production_problems(self)
        if wrong:
            raise ConfigError("PROD mode refuses these settings: set " + ", ".join(wrong))


def production_problems(settings: Settings) -> list[str]:
    """What PROD refuses, each as its variable and what it needs, in the table's order."""
    problems = {
        "origin": settings.origin in ("", BY_NAME["origin"].default)
        and "MASTOK_ORIGIN (the public origin people reach mastok at, not the default)",
        "password": (
            len(settings.password) < MIN_PASSWORD_LENGTH or settings.password == DEFAULT_PASSWORD
        )
        and f"MASTOK_PASSWORD (not the default, {MIN_PASSWORD_LENGTH} characters or more)",
        "secret_key": not settings.secret_key
        and "MASTOK_SECRET_KEY (a long random text, the same for every instance)",
        "allow_missing_origin": settings.allow_missing_origin
        and "MASTOK_ALLOW_MISSING_ORIGIN (off)",
        "unprotected_runs": settings.unprotected_runs and "MASTOK_UNPROTECTED_RUNS (off)",
    }
    for key in ("otree_public_url", "otree_api_url", "otree_api_key"):
        problems[key] = not getattr(settings, key) and BY_NAME[key].variable
    return [str(text) for name in BY_NAME if (text := problems.get(name))]


@dataclass(frozen=True)
class Setting:
    """A row of the table, as the docs, the generated files and the CLI read it."""

    name: str
    type: Any
    default: Any
    help: str
    secret: bool
    bounds: str = ""  # a number's, as error messages say them: " from 1 to 65535"

    @property
    def variable(self) -> str:
        return VARIABLE_PREFIX + self.name.upper()

    @property
    def kind(self) -> str:
        """What a value must be, as error messages say it."""
        if self.type is bool:
            return "true or false"
        if self.type in (int, float):
            return "a number" + self.bounds
        if get_origin(self.type) is Literal:
            return "one of " + ", ".join(get_args(self.type))
        return "text"


def _bounds(metadata: list[Any]) -> str:
    """A number's bounds (pydantic's `ge`, `gt`, `le` constraints), as error messages say them."""
    keys = ("ge", "gt", "le")
    found = {key: getattr(m, key) for m in metadata for key in keys if hasattr(m, key)}
    if "ge" in found and "le" in found:
        return f" from {found['ge']} to {found['le']}"
    if "ge" in found:
        return f" of at least {found['ge']}"
    if "gt" in found:
        return f" above {found['gt']}"
    return ""


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(
        name,
        field.annotation,
        field.default,
        field.description or "",
        not field.repr,
        _bounds(field.metadata),
    )
    for name, field in Settings.model_fields.items()
)
BY_NAME = {row.name: row for row in SETTINGS}


def validated(values: Mapping[str, Any]) -> Settings:
    """Settings from raw values (text from the environment, YAML scalars, flags' values)."""
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise ConfigError("; ".join(_explain(problem) for problem in error.errors())) from None


def _explain(problem: Any) -> str:
    name = str(problem["loc"][0])
    if name not in BY_NAME:
        return f"unknown setting {name}"
    row = BY_NAME[name]
    return f"{row.variable} must be {row.kind}, not {problem['input']!r}"


def read_defaults(path: Path | None = None) -> dict[str, Any]:
    path = path or Path(os.environ.get("MASTOK_CONFIG", PROJECT_ROOT / "config.yml"))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: set MASTOK_CONFIG to mastok's config.yml") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of settings")
    return data


def load_settings(
    environ: Mapping[str, str] | None = None, config_path: Path | None = None
) -> Settings:
    """Build the settings from config.yml and the environment (os.environ by default)."""
    if environ is None:
        if os.environ.get("MASTOK_MODE", "DEV").upper() == "DEV":
            load_dotenv(PROJECT_ROOT / ".env", override=False)
        environ = os.environ
    values: dict[str, Any] = {row.name: row.default for row in SETTINGS if row.secret}
    values.update(read_defaults(config_path))
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise ConfigError(f"unknown settings in config.yml: {', '.join(sorted(unknown))}")
    values.update({row.name: environ[row.variable] for row in SETTINGS if row.variable in environ})
    missing = sorted(row.variable for row in SETTINGS if row.name not in values)
    if missing:
        raise ConfigError(f"missing settings: set {', '.join(missing)} (or add them to config.yml)")
    return validated(values)
