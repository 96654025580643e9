"""Settings: config.yml defaults, environment overrides, checks for production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mastok import config_files
from mastok.config import (
    BY_NAME,
    DEFAULT_PASSWORD,
    PROJECT_ROOT,
    SETTINGS,
    ConfigError,
    Settings,
    load_settings,
)

REAL_CONFIG = PROJECT_ROOT / "config.yml"
SECRETS = {"password", "secret_key", "otree_api_key"}  # never in config.yml
PROD_VARIABLES = (
    "MASTOK_PASSWORD",
    "MASTOK_OTREE_PUBLIC_URL",
    "MASTOK_OTREE_API_URL",
    "MASTOK_OTREE_API_KEY",
    "MASTOK_ORIGIN",
    "MASTOK_SECRET_KEY",
)
PROD_ENVIRON = {
    "MASTOK_MODE": "PROD",
    "MASTOK_ORIGIN": "https://mastok.example.org",
    "MASTOK_SECRET_KEY": "a-long-random-key",
    "MASTOK_PASSWORD": "a long and secret passphrase",
    "MASTOK_OTREE_PUBLIC_URL": "https://otree.example.org/",
    "MASTOK_OTREE_API_URL": "http://127.0.0.1:8000/",
    "MASTOK_OTREE_API_KEY": "otree-rest-key",
}


def real_defaults() -> dict[str, Any]:
    data = yaml.safe_load(REAL_CONFIG.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A copy of the real config.yml that a test may change with `write_config`."""
    path = tmp_path / "config.yml"
    write_config(path, **real_defaults())
    return path


def write_config(path: Path, **values: Any) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def load(config_file: Path, **environ: str) -> Settings:
    return load_settings(environ=environ, config_path=config_file)


# --- The real config.yml ---------------------------------------------------------------------


def test_real_config_yml_gives_working_dev_settings() -> None:
    settings = load_settings(environ={}, config_path=REAL_CONFIG)

    assert (settings.mode, settings.host, settings.port) == ("DEV", "127.0.0.1", 8190)
    assert settings.origin == "http://localhost:8190"
    assert settings.web_prefix == ""
    assert (settings.login, settings.password) == ("mastok", DEFAULT_PASSWORD)
    assert (settings.database_url, settings.sqlite_path) == ("", "data/mastok.sqlite3")
    assert (settings.otree_timeout, settings.disable_live_redirect) == (10.0, False)
    assert settings.share_url_base == "http://localhost:8190/join/"
    settings.check_production()  # DEV: nothing to refuse


def test_the_secrets_are_the_password_and_the_keys() -> None:
    assert {row.name for row in SETTINGS if row.secret} == SECRETS


def test_real_config_yml_holds_the_table_defaults_but_the_secrets() -> None:
    table = {row.name: row.default for row in SETTINGS if not row.secret}

    assert real_defaults() == table


def test_real_config_yml_is_written_from_the_table() -> None:
    assert REAL_CONFIG.read_text() == config_files.config_yml(), (
        "config.yml differs from the table in mastok/config.py: "
        "run `mastok settings --format yaml > config.yml`"
    )


def test_real_config_yml_is_refused_in_prod_until_everything_is_set() -> None:
    settings = load_settings(environ={"MASTOK_MODE": "PROD"}, config_path=REAL_CONFIG)
    with pytest.raises(ConfigError):
        settings.check_production()

    load_settings(environ=PROD_ENVIRON, config_path=REAL_CONFIG).check_production()


# --- Defaults and overrides ------------------------------------------------------------------


def test_defaults_come_from_config_yml(tmp_path: Path) -> None:
    defaults = real_defaults() | {"port": 9100, "login": "lab", "otree_timeout": 2.5}
    path = write_config(tmp_path / "config.yml", **defaults)

    settings = load(path)

    assert (settings.port, settings.login, settings.otree_timeout) == (9100, "lab", 2.5)


def test_environment_overrides_config_yml(config_file: Path) -> None:
    settings = load(
        config_file,
        MASTOK_MODE="test",
        MASTOK_HOST="0.0.0.0",
        MASTOK_PORT="9001",
        MASTOK_ORIGIN="https://lab.example.org/",
        MASTOK_PASSWORD="hunter2",
        MASTOK_SECRET_KEY="fixed-key",
        MASTOK_DATABASE_URL="postgresql://u@db/mastok",
        MASTOK_OTREE_TIMEOUT="2.5",
        MASTOK_DISABLE_LIVE_REDIRECT="yes",
    )

    assert (settings.mode, settings.host, settings.port) == ("TEST", "0.0.0.0", 9001)
    assert settings.origin == "https://lab.example.org"
    assert (settings.password, settings.secret_key) == ("hunter2", "fixed-key")
    assert settings.database_url == "postgresql://u@db/mastok"
    assert (settings.otree_timeout, settings.disable_live_redirect) == (2.5, True)


def test_other_environment_variables_are_ignored(config_file: Path) -> None:
    key = {"MASTOK_SECRET_KEY": "fixed"}

    assert load(config_file, **key, PORT="1", MASTOK_PROT="2") == load(config_file, **key)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("On", True), ("0", False), ("no", False), ("", False)],
)
def test_booleans(config_file: Path, raw: str, expected: bool) -> None:
    assert load(config_file, MASTOK_DISABLE_LIVE_REDIRECT=raw).disable_live_redirect is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mastok/", "/mastok"),
        ("/mastok/", "/mastok"),
        ("mastok", "/mastok"),
        (" /lab/mastok/ ", "/lab/mastok"),
        ("/", ""),
        ("", ""),
    ],
)
def test_web_prefix_is_normalised(config_file: Path, raw: str, expected: str) -> None:
    settings = load(config_file, MASTOK_WEB_PREFIX=raw)

    assert settings.web_prefix == expected
    assert settings.share_url_base == f"http://localhost:8190{expected}/join/"


def test_urls_lose_their_trailing_slash(config_file: Path) -> None:
    settings = load(
        config_file,
        MASTOK_OTREE_PUBLIC_URL="https://otree.example.org/",
        MASTOK_OTREE_API_URL="http://127.0.0.1:8000/",
    )

    assert settings.otree_public_url == "https://otree.example.org"
    assert settings.otree_api_url == "http://127.0.0.1:8000"


def test_an_empty_secret_key_signs_with_a_random_one(config_file: Path) -> None:
    first, second = load(config_file), load(config_file)

    assert first.secret_key == ""  # PROD can tell it was not set
    assert len(first.signing_key) >= 32
    assert first.signing_key == first.signing_key != second.signing_key


def test_a_set_secret_key_signs(config_file: Path) -> None:
    assert load(config_file, MASTOK_SECRET_KEY="fixed-key").signing_key == "fixed-key"


def test_overrides_skip_none(config_file: Path) -> None:
    settings = load(config_file).with_overrides(port=9999, host=None)

    assert (settings.port, settings.host) == (9999, "127.0.0.1")


def test_overrides_are_parsed_as_the_environment_is(config_file: Path) -> None:
    settings = load(config_file).with_overrides(web_prefix="lab/", fixed_measures="yes")

    assert (settings.web_prefix, settings.fixed_measures) == ("/lab", True)
    with pytest.raises(
        ConfigError, match="MASTOK_PORT must be a number from 1 to 65535, not 'eighty'"
    ):
        settings.with_overrides(port="eighty")


def test_secrets_stay_out_of_the_repr(config_file: Path) -> None:
    settings = load(
        config_file, MASTOK_PASSWORD="hunter2", MASTOK_SECRET_KEY="k3y", MASTOK_OTREE_API_KEY="r3st"
    )

    for secret in ("hunter2", "k3y", "r3st"):
        assert secret not in repr(settings)
    assert "port=8190" in repr(settings)


# --- Errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("MASTOK_PORT", "eighty"),
        ("MASTOK_PORT", ""),
        ("MASTOK_OTREE_TIMEOUT", "soon"),
        ("MASTOK_DISABLE_LIVE_REDIRECT", "maybe"),
        ("MASTOK_MODE", "STAGING"),
    ],
)
def test_bad_values_name_their_variable(config_file: Path, variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load(config_file, **{variable: raw})


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("MASTOK_PORT", "70000", "MASTOK_PORT must be a number from 1 to 65535, not '70000'"),
        ("MASTOK_PORT", "0", "MASTOK_PORT must be a number from 1 to 65535, not '0'"),
        ("MASTOK_RESUME_GRACE", "-5", "MASTOK_RESUME_GRACE must be a number of at least 0"),
        ("MASTOK_LOCK_TIMEOUT", "0", "MASTOK_LOCK_TIMEOUT must be a number above 0, not '0'"),
        ("MASTOK_SOCKETS_PER_ADDRESS", "0", "MASTOK_SOCKETS_PER_ADDRESS must be a number of at"),
        ("MASTOK_MAX_NEW_MEASURES", "-1", "MASTOK_MAX_NEW_MEASURES must be a number of at least 0"),
    ],
)
def test_numbers_out_of_range_are_refused(
    config_file: Path, variable: str, raw: str, message: str
) -> None:
    """A value the setting would take and misbehave with: a lock expiring at once protects no
    run; the flag `--port` refused 70000 where the variable took it."""
    with pytest.raises(ConfigError, match=message):
        load(config_file, **{variable: raw})


def test_numbers_at_their_bounds_are_taken(config_file: Path) -> None:
    settings = load(config_file, MASTOK_PORT="65535", MASTOK_RESUME_GRACE="0")

    assert (settings.port, settings.resume_grace, settings.max_new_measures) == (65535, 0, 2000)
    assert load(config_file, MASTOK_MAX_NEW_MEASURES="0").max_new_measures == 0


def test_bad_values_in_config_yml_name_their_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.yml", **real_defaults() | {"port": "http"})

    with pytest.raises(
        ConfigError, match="MASTOK_PORT must be a number from 1 to 65535, not 'http'"
    ):
        load(path)


def test_unknown_settings_in_config_yml_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path / "config.yml", **real_defaults() | {"prot": 1})

    with pytest.raises(ConfigError, match=r"unknown settings in config\.yml: prot"):
        load(path)


def test_missing_settings_in_config_yml_name_their_variables(tmp_path: Path) -> None:
    defaults = real_defaults()
    del defaults["port"], defaults["origin"]
    path = write_config(tmp_path / "config.yml", **defaults)

    with pytest.raises(ConfigError, match="MASTOK_ORIGIN, MASTOK_PORT"):
        load(path)
    assert load(path, MASTOK_PORT="8000", MASTOK_ORIGIN="http://x").port == 8000


def test_a_missing_config_file_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set MASTOK_CONFIG"):
        load(tmp_path / "nowhere.yml")


def test_config_yml_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("- port\n- host\n")

    with pytest.raises(ConfigError, match="must be a mapping"):
        load(path)


# --- Production ------------------------------------------------------------------------------


def prod_error(config_file: Path, **environ: str) -> str:
    settings = load(config_file, **environ)
    with pytest.raises(ConfigError) as raised:
        settings.check_production()
    return str(raised.value)


def test_prod_names_every_missing_variable_in_one_message(config_file: Path) -> None:
    message = prod_error(config_file, MASTOK_MODE="PROD")

    assert "\n" not in message
    for variable in PROD_VARIABLES:
        assert variable in message


@pytest.mark.parametrize("password", [DEFAULT_PASSWORD, "", "eleven char"])
def test_prod_refuses_the_default_or_a_short_password(config_file: Path, password: str) -> None:
    message = prod_error(config_file, **PROD_ENVIRON | {"MASTOK_PASSWORD": password})

    assert [v for v in PROD_VARIABLES if v in message] == ["MASTOK_PASSWORD"]
    assert "12 characters" in message


def test_prod_takes_a_password_of_12_characters(config_file: Path) -> None:
    load(config_file, **PROD_ENVIRON | {"MASTOK_PASSWORD": "twelve chars"}).check_production()


def test_prod_refuses_the_default_origin_even_when_written_out(config_file: Path) -> None:
    default = BY_NAME["origin"].default
    message = prod_error(config_file, **PROD_ENVIRON | {"MASTOK_ORIGIN": default})

    assert [v for v in PROD_VARIABLES if v in message] == ["MASTOK_ORIGIN"]


@pytest.mark.parametrize("variable", ["MASTOK_ALLOW_MISSING_ORIGIN", "MASTOK_UNPROTECTED_RUNS"])
def test_prod_refuses_unsafe_flags(config_file: Path, variable: str) -> None:
    message = prod_error(config_file, **PROD_ENVIRON | {variable: "true"})

    assert message == f"PROD mode refuses these settings: set {variable} (off)"


def test_prod_names_each_offending_variable_once_in_one_line(config_file: Path) -> None:
    message = prod_error(
        config_file,
        MASTOK_MODE="PROD",
        MASTOK_PASSWORD="short",
        MASTOK_UNPROTECTED_RUNS="1",
        MASTOK_ALLOW_MISSING_ORIGIN="1",
    )

    expected = [*PROD_VARIABLES, "MASTOK_ALLOW_MISSING_ORIGIN", "MASTOK_UNPROTECTED_RUNS"]
    assert all(message.count(variable) == 1 for variable in expected)
    assert message.count("MASTOK_") == len(expected)
    assert "\n" not in message


@pytest.mark.parametrize("variable", PROD_VARIABLES[1:])
def test_prod_refuses_a_missing_setting(config_file: Path, variable: str) -> None:
    message = prod_error(config_file, **PROD_ENVIRON | {variable: ""})

    assert [v for v in PROD_VARIABLES if v in message] == [variable]


def test_prod_with_everything_set_passes(config_file: Path) -> None:
    settings = load(config_file, **PROD_ENVIRON)

    assert settings.mode == "PROD"
    settings.check_production()


@pytest.mark.parametrize("mode", ["DEV", "TEST"])
def test_other_modes_accept_the_defaults(config_file: Path, mode: str) -> None:
    load(config_file, MASTOK_MODE=mode).check_production()
