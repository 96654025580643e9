"""Settings: config.yml holds the non-secret defaults, the environment overrides them.

Every setting `key` is read from the environment variable `MASTOK_<KEY>`; command-line flags
(see `mastok.cli`) override both. In DEV mode a `.env` file is loaded first (without replacing
variables already set).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from dotenv import load_dotenv

Mode = Literal["DEV", "TEST", "PROD"]
MODES: tuple[Mode, ...] = ("DEV", "TEST", "PROD")
DEFAULT_PASSWORD = "mastok"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing or wrong; the message says what to set."""


@dataclasses.dataclass(frozen=True)
class Settings:
    mode: Mode
    host: str
    port: int
    origin: str
    web_prefix: str
    login: str
    password: str
    secret_key: str
    database_url: str
    sqlite_path: str
    otree_public_url: str
    otree_api_url: str
    otree_api_key: str
    otree_timeout: float
    disable_live_redirect: bool
    allow_missing_origin: bool
    resume_grace: float
    lock_timeout: float
    unprotected_runs: bool
    fixed_measures: bool

    @property
    def share_url_base(self) -> str:
        """Where a campaign's public join page lives, without the slug."""
        return f"{self.origin}{self.web_prefix}/join/"

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check_production(self) -> None:
        """Refuse unsafe production settings in one line that says what to set."""
        if self.mode != "PROD":
            return
        missing = []
        if not self.password or self.password == DEFAULT_PASSWORD:
            missing.append("MASTOK_PASSWORD (not the default)")
        for key in ("otree_public_url", "otree_api_url", "otree_api_key"):
            if not getattr(self, key):
                missing.append(f"MASTOK_{key.upper()}")
        if missing:
            raise ConfigError("PROD mode needs these settings: set " + ", ".join(missing))


def _parse_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"MASTOK_{key.upper()} must be true or false, not {raw!r}")


def _parse_number(key: str, raw: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"MASTOK_{key.upper()} must be a number, not {raw!r}") from None


def _normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip().rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix


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
    values: dict[str, Any] = {"password": DEFAULT_PASSWORD, "secret_key": "", "otree_api_key": ""}
    values.update(read_defaults(config_path))
    fields = {f.name for f in dataclasses.fields(Settings)}
    unknown = set(values) - fields
    if unknown:
        raise ConfigError(f"unknown settings in config.yml: {', '.join(sorted(unknown))}")
    for key in fields:
        env_key = f"MASTOK_{key.upper()}"
        if env_key in environ:
            values[key] = environ[env_key]
    missing = sorted(f"MASTOK_{key.upper()}" for key in fields - set(values))
    if missing:
        raise ConfigError(f"missing settings: set {', '.join(missing)} (or add them to config.yml)")
    return _typed(values)


def _typed(values: dict[str, Any]) -> Settings:
    mode = str(values.get("mode", "DEV")).upper()
    if mode not in MODES:
        raise ConfigError(f"MASTOK_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    strings = {k: "" if v is None else str(v) for k, v in values.items()}
    return Settings(
        mode=mode,
        host=strings["host"],
        port=_parse_number("port", values["port"], int),
        origin=strings["origin"].rstrip("/"),
        web_prefix=_normalise_prefix(strings["web_prefix"]),
        login=strings["login"],
        password=strings["password"],
        secret_key=strings["secret_key"] or secrets.token_urlsafe(32),
        database_url=strings["database_url"],
        sqlite_path=strings["sqlite_path"],
        otree_public_url=strings["otree_public_url"].rstrip("/"),
        otree_api_url=strings["otree_api_url"].rstrip("/"),
        otree_api_key=strings["otree_api_key"],
        otree_timeout=_parse_number("otree_timeout", values["otree_timeout"], float),
        disable_live_redirect=_parse_bool("disable_live_redirect", values["disable_live_redirect"]),
        allow_missing_origin=_parse_bool("allow_missing_origin", values["allow_missing_origin"]),
        resume_grace=_parse_number("resume_grace", values["resume_grace"], float),
        lock_timeout=_parse_number("lock_timeout", values["lock_timeout"], float),
        unprotected_runs=_parse_bool("unprotected_runs", values["unprotected_runs"]),
        fixed_measures=_parse_bool("fixed_measures", values["fixed_measures"]),
    )
