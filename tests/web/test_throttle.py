"""Admin login throttling (mastok/web/throttle.py): wrong credentials slowed, then refused with
429 for the address; requests without credentials and a few typos never locked out. The time is a
ManualClock and the waits are recorded, never slept."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from mastok.clock import ManualClock
from mastok.web.throttle import FREE_FAILURES, MAX_DELAY, LoginThrottle, delay_after
from tests.fixtures.app import LOGIN, ClientFactory, basic_auth

WRONG = basic_auth(LOGIN, "wrong")


class Waits:
    """Records what the throttle would have slept."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def waits() -> Waits:
    return Waits()


@pytest.fixture
def anonymous(make_client: ClientFactory, clock: ManualClock, waits: Waits) -> TestClient:
    return make_client(authenticated=False, clock=clock, sleep=waits)


def test_a_few_typos_cost_nothing_and_the_right_password_still_works(
    anonymous: TestClient, waits: Waits
) -> None:
    for _ in range(FREE_FAILURES):
        assert anonymous.get("/api/campaigns", headers=WRONG).status_code == 401
    assert waits.seconds == []
    assert anonymous.get("/api/campaigns", headers=basic_auth()).status_code == 200


def test_wrong_attempts_are_slowed_then_the_address_is_refused_with_429(
    anonymous: TestClient, clock: ManualClock, waits: Waits, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mastok.auth")
    answers = [anonymous.get("/api/campaigns", headers=WRONG) for _ in range(30)]

    assert [answer.status_code for answer in answers] == [401] * 29 + [429]
    assert answers[-1].headers["retry-after"] == "300"
    # Past the free ones each wrong attempt waited a little more, never more than MAX_DELAY.
    assert waits.seconds == [delay_after(n) for n in range(FREE_FAILURES + 1, 30)]
    assert waits.seconds == sorted(waits.seconds)
    assert waits.seconds[0] > 0 and max(waits.seconds) == MAX_DELAY

    # Locked out: even the right credentials are refused for a while.
    clock.advance(seconds=100)
    refused = anonymous.get("/campaigns", headers=basic_auth())
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "200"
    assert anonymous.get("/api/campaigns").status_code == 429
    # Public routes are not the admin's: they still answer.
    assert anonymous.get("/healthz").status_code == 200
    locked_lines = [r for r in caplog.records if "refused for 5 minutes" in r.getMessage()]
    assert len(locked_lines) == 1
    assert "testclient" in locked_lines[0].getMessage()

    clock.advance(seconds=201)
    assert anonymous.get("/api/campaigns", headers=basic_auth()).status_code == 200
    # The lockout forgot the failures: the next typo is free again.
    waits.seconds.clear()
    assert anonymous.get("/api/campaigns", headers=WRONG).status_code == 401
    assert waits.seconds == []


def test_requests_without_credentials_never_count(anonymous: TestClient, waits: Waits) -> None:
    # A browser before its challenge, LightMill's client posting a design: no Authorization.
    for _ in range(100):
        assert anonymous.get("/api/campaigns").status_code == 401
        assert anonymous.post("/api/import", content=b"<experiment/>").status_code == 401
    assert waits.seconds == []
    assert anonymous.get("/api/campaigns", headers=basic_auth()).status_code == 200


def test_failures_spread_beyond_the_window_never_lock_out(
    anonymous: TestClient, clock: ManualClock
) -> None:
    for _ in range(60):
        assert anonymous.get("/api/campaigns", headers=WRONG).status_code == 401
        clock.advance(seconds=11)  # 27 failures a 5-minute window at most
    assert anonymous.get("/api/campaigns", headers=basic_auth()).status_code == 200


def test_the_threshold_is_a_setting(make_client: ClientFactory, clock: ManualClock) -> None:
    client = make_client(authenticated=False, clock=clock, sleep=Waits(), login_max_failures=3)
    codes = [client.get("/api/campaigns", headers=WRONG).status_code for _ in range(3)]
    assert codes == [401, 401, 429]


async def test_addresses_are_counted_apart_and_their_number_is_bounded() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(clock, max_failures=3, sleep=Waits(), max_addresses=100)
    for _ in range(2):
        assert await throttle.failed("10.0.0.1") is None
    assert await throttle.failed("10.0.0.2") is None
    assert await throttle.failed("10.0.0.1") == 300
    assert throttle.retry_after("10.0.0.1") == 300
    assert throttle.retry_after("10.0.0.2") is None

    for n in range(1000):
        await throttle.failed(f"192.168.{n // 256}.{n % 256}")
    assert len(throttle) == 100


async def test_an_ipv6_subscribers_addresses_are_one_address() -> None:
    """A host given an IPv6 /64 (any VPS) has 2**64 addresses: counted apart, each would get
    its free guesses of the admin password and none would ever be locked out."""
    throttle = LoginThrottle(ManualClock(), max_failures=3, sleep=Waits())
    assert await throttle.failed("2001:db8:1:2::1") is None
    assert await throttle.failed("2001:db8:1:2::2") is None
    assert await throttle.failed("2001:db8:1:2:ffff::3") == 300
    assert throttle.retry_after("2001:db8:1:2::4") == 300
    assert throttle.retry_after("2001:db8:1:3::1") is None  # another subscriber
    throttle.succeeded("2001:db8:1:2::5")
    assert throttle.retry_after("2001:db8:1:2::1") is None


def test_lightmills_import_counts_wrong_credentials_too(
    anonymous: TestClient, clock: ManualClock
) -> None:
    design = {"Content-Type": "application/xml", "Origin": "http://elsewhere.example"}
    answers = [
        anonymous.post("/api/import", content=b"<experiment/>", headers={**design, **WRONG})
        for _ in range(30)
    ]
    assert [answer.status_code for answer in answers] == [401] * 29 + [429]
    assert answers[-1].json()["type"] == "TooManyAttempts"
    assert answers[-1].headers["retry-after"] == "300"
    assert answers[-1].headers["access-control-allow-origin"] == "*"
    assert anonymous.get("/api/campaigns", headers=basic_auth()).status_code == 429
