"""Shared fixtures. Servers (PostgreSQL, oTree, the browser) start once per test session;
each test gets fresh state instead of a fresh server."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.otree",
    "tests.fixtures.app",
    "tests.fixtures.live",
    "tests.fixtures.browser",
    "tests.fixtures.gate",
]
