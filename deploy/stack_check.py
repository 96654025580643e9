"""Scripted people for `make image-test`: they use the running stack through its public entry.

    python deploy/stack_check.py participant   # a campaign, a participant, its oTree page
    python deploy/stack_check.py failover C1 C2   # the leader killed, the standby takes over
    python deploy/stack_check.py partition C1 C2  # the leader cut off from the network
    python deploy/stack_check.py database-restart C1 C2 DB  # PostgreSQL killed and restarted
    python deploy/stack_check.py flood            # one address's flood cut off by the proxy

`participant`: an admin creates a Running campaign on the demo's one-player survey through the
proxy, a participant lands, agrees and is sent to oTree, and its oTree page opens through the proxy
too. `failover C1 C2` (the two mastok containers): a participant waits in a two-player campaign;
the leader's process is killed (`kill -9` of its pid, from the host); the page's socket closes; the
standby must lead within 5 seconds and the proxy send sockets to it; the participant resumes its
place with its token; a pause through the admin API reaches its page. `partition C1 C2`: a
participant waits; the leader's container is disconnected from the stack's network (no process
dies, no socket is closed: its machine gone, as the others see it); the proxy must close the page's
socket, another instance must lead within 12 seconds and the participant resume there; connected
again, the cut-off one stands by. `database-restart C1 C2 DB`: a participant waits; PostgreSQL's
server is killed (`kill -9`; podman restarts it); once it is back the participant must be in its
place again, its socket kept or closed by the proxy and its page back with its token; one instance
leads, the other stands by. `flood`: 1,200 connections from one address within a few seconds: the
proxy answers the first 1,000 and refuses the rest (haproxy.cfg's connection rate per address).
Settings come from deploy/.env (as compose reads it). Prints each step and its time; exits non-zero
on the first failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from dotenv import dotenv_values
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ENV = dotenv_values(Path(__file__).with_name(".env"))
ENTRY = f"http://127.0.0.1:{ENV.get('MASTOK_PUBLIC_PORT') or 8080}"
OTREE_ENTRY = f"http://127.0.0.1:{ENV.get('OTREE_PUBLIC_PORT') or 8000}"
ORIGIN = str(ENV["MASTOK_ORIGIN"])
AUTH = (ENV.get("MASTOK_LOGIN") or "mastok", str(ENV["MASTOK_PASSWORD"]))
CONSENT = "# Consent\n\n- [ ] I agree to take part\n\n[accept]I agree[/accept]"
FAILOVER_SECONDS = 5.0  # the standby leads within this (issue 12)
PROXY_CHECK_SECONDS = 2.0  # the proxy sees it within two checks a second apart (haproxy.cfg)
# A cut-off leader's lock is freed 5 s after PostgreSQL last heard from it (its keepalives and
# `tcp_user_timeout`, mastok.db.leader_lock), which was up to a second before the cut; then the
# standby rebuilds its rooms and `podman exec` finds it leading: 4.5-7.1 s seen here. 12 s holds
# that on a loaded machine; with the earlier 25 s settings it took 25.1 s.
PARTITION_SECONDS = 12.0
DATABASE_BACK_SECONDS = 60.0  # PostgreSQL restarted and recovered; not a target, a bound
STARTED = time.monotonic()


def say(what: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {what}", flush=True)


def campaign(namespace: str, config: str, per_session: int) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "slug": f"{namespace}_join",
        "otree_config_name": config,
        "per_session": per_session,
        "join_once": False,
        "show_nb_participants": True,
        "max_sessions": 2,
        "concurrent_sessions": 1,
        "session_duration": 30,
        "waiting_limit": 5,
        "consent": CONSENT,
        "grouping": "",
        "instructions": "Please wait for the others.",
        "paused": "We are paused.",
        "completed": "We are done, thank you.",
        "pending": "The room is full, please wait.",
    }


def create_running(admin: httpx.Client, fields: dict[str, Any]) -> None:
    created = admin.post("/api/campaigns", json=fields)
    assert created.status_code == 201, created.text
    running = admin.patch(f"/api/campaigns/{fields['namespace']}", json={"state": "Running"})
    assert running.status_code == 200, running.text


def wait_for(what: str, check: Any, within: float = 120.0) -> float:
    """Seconds until `check()` is true."""
    began = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - began
        except httpx.HTTPError:
            pass
        if time.monotonic() - began > within:
            raise SystemExit(f"FAILED: {what} not within {within:.0f} s")
        time.sleep(0.2)


class Page:
    """A participant's page: its join socket through the proxy."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    @classmethod
    async def open(cls, slug: str) -> Page:
        url = ENTRY.replace("http", "ws", 1) + f"/ws/join?slug={slug}"
        return cls(await connect(url, origin=ORIGIN))  # type: ignore[arg-type]

    async def send(self, kind: str, payload: Any = None) -> None:
        frame = {"kind": kind} if payload is None else {"kind": kind, "payload": payload}
        await self.socket.send(json.dumps(frame))

    async def until(self, kind: str, within: float = 30.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            frame = json.loads(
                await asyncio.wait_for(self.socket.recv(), max(deadline - time.monotonic(), 0.01))
            )
            if frame["kind"] == kind:
                return frame.get("payload")

    async def closed(self, within: float) -> float:
        """Seconds until the socket closes, whatever the frames before (a page then comes back
        with its token)."""
        began = time.monotonic()
        try:
            async with asyncio.timeout(within):
                async for _frame in self.socket:
                    pass
        except ConnectionClosed:  # closed with no close frame: cut, as the proxy does
            pass
        except TimeoutError:
            raise SystemExit(f"FAILED: the page's socket still open after {within:.0f} s") from None
        return time.monotonic() - began

    async def kept_in_place(self, token: str, within: float) -> bool:
        """True once the socket is told `Resume` with `token` (its leader took its rooms back,
        the socket kept in its place); False if it closes first."""
        try:
            async with asyncio.timeout(within):
                while True:
                    frame = json.loads(await self.socket.recv())
                    if frame["kind"] == "Resume":
                        assert frame.get("payload") == token, frame
                        return True
        except ConnectionClosed:
            return False
        except TimeoutError:
            raise SystemExit(
                f"FAILED: the page neither resumed nor closed in {within:.0f} s"
            ) from None

    async def arrive(self, fingerprint: str) -> str:
        """Land and agree; the resume token."""
        assert await self.until("State") == "Running"
        await self.send("Land", fingerprint)
        token = str(await self.until("Resume"))
        await self.until("Consent")
        await self.send("Agree")
        return token


async def participant() -> None:
    with httpx.Client(base_url=ENTRY, auth=AUTH, timeout=10) as admin:
        waited = wait_for(
            "mastok ready through the proxy", lambda: admin.get("/healthz").is_success
        )
        say(f"mastok answers through the proxy (waited {waited:.1f} s)")
        wait_for("oTree's configs", lambda: admin.get("/api/otree/configs").is_success)
        create_running(admin, campaign("image_test", "survey", 1))
        say("campaign image_test Running (the demo's survey, one a session)")
    page = await Page.open("image_test_join")
    await page.arrive("scripted-participant")
    start_url = str(await page.until("Starting"))
    say(f"participant sent to oTree: {start_url}")
    assert start_url.startswith(str(ENV["OTREE_PUBLIC_URL"])), start_url
    through_proxy = OTREE_ENTRY + start_url.removeprefix(str(ENV["OTREE_PUBLIC_URL"]))
    async with httpx.AsyncClient(timeout=20) as browser:
        otree_page = await browser.get(through_proxy, follow_redirects=True)
    assert otree_page.status_code == 200, otree_page.status_code
    assert "/p/" in str(otree_page.url) and "<form" in otree_page.text, otree_page.url
    say(f"the participant's oTree page opens through the proxy: {otree_page.url.path}")


def role(container: str) -> str:
    """The container's /readyz role, asked inside it ("down" when it does not answer)."""
    probe = (
        "import json,os,urllib.request as u,urllib.error as e\n"
        "url=f'http://127.0.0.1:{os.environ[\"MASTOK_PORT\"]}/readyz'\n"
        "try: print(json.load(u.urlopen(url,timeout=2))['role'])\n"
        "except e.HTTPError as x: print(json.load(x)['role'])\n"
    )
    return podman("exec", container, "python", "-c", probe) or "down"


def podman(*argv: str) -> str:
    return subprocess.run(
        ["podman", *argv], capture_output=True, text=True, timeout=30
    ).stdout.strip()


PAIR_ROLES = ["leader", "standby"]  # one instance leads, the other stands by


def roles_of(containers: list[str]) -> dict[str, str]:
    return {c: role(c) for c in containers}


async def the_leader(containers: list[str]) -> str:
    """The one instance leading; the other stands by."""
    roles = await asyncio.to_thread(roles_of, containers)
    assert sorted(roles.values()) == PAIR_ROLES, roles
    return next(c for c, r in roles.items() if r == "leader")


async def waiting_participant(namespace: str, fingerprint: str) -> tuple[Page, str]:
    """A participant waiting, 1/2, in a new two-player campaign; its page and resume token."""
    with httpx.Client(base_url=ENTRY, auth=AUTH, timeout=10) as admin:
        create_running(admin, campaign(namespace, "guess_two", 2))  # before any socket
    page = await Page.open(f"{namespace}_join")
    token = await page.arrive(fingerprint)
    assert await page.until("JoiningSize") == "1/2"
    return page, token


async def proxy_reaches_a_leader(within: float) -> None:
    with httpx.Client(base_url=ENTRY, timeout=5) as anyone:
        await asyncio.to_thread(
            wait_for,
            "the proxy sending to a leader",
            lambda: anyone.get("/readyz").status_code == 200,
            within,
        )


async def resume(namespace: str, token: str, within: float = 10.0) -> Page:
    """The page come back with its token, in its place (1/2); a handshake refused with 503 (no
    instance leading just then) is tried again a second later, as mastok's page does."""
    deadline = time.monotonic() + within
    while True:
        try:
            resumed = await Page.open(f"{namespace}_join")
            break
        except InvalidStatus as refused:
            if refused.response.status_code != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    assert await resumed.until("State") == "Running"
    await resumed.send("Resume", token)
    assert await resumed.until("Resume") == token
    assert await resumed.until("JoiningSize") == "1/2"
    return resumed


def leading_besides(containers: list[str], left: str) -> bool:
    return any(role(c) == "leader" for c in containers if c != left)


async def failover(containers: list[str]) -> None:
    leader = await the_leader(containers)
    say(f"{leader} leads")
    page, token = await waiting_participant("failover", "waiting-participant")
    say("a participant waits, 1/2")

    pid = int(podman("inspect", "--format", "{{.State.Pid}}", leader))
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)  # a crash: `podman kill` would count as stopped by hand
    say(f"killed {leader}'s mastok (kill -9 {pid}); podman restarts it, as a standby")
    gone = await page.closed(FAILOVER_SECONDS)
    say(f"the page's socket closed {gone:.1f} s after the kill")
    try:
        await asyncio.to_thread(
            wait_for,
            "the standby leading",
            lambda: leading_besides(containers, leader),
            FAILOVER_SECONDS + 10,
        )
    except SystemExit:
        say(f"roles then: {roles_of(containers)}")  # the restarted one leading?
        raise
    led = time.monotonic() - killed_at
    say(f"the standby leads {led:.1f} s after the kill")
    assert led <= FAILOVER_SECONDS + 1, f"failover took {led:.1f} s"
    await proxy_reaches_a_leader(FAILOVER_SECONDS + PROXY_CHECK_SECONDS + 5)
    say(f"the proxy reaches the new leader ({time.monotonic() - killed_at:.1f} s after the kill)")

    resumed = await resume("failover", token)
    say("the participant resumed its place through the proxy, 1/2")

    async with httpx.AsyncClient(base_url=ENTRY, auth=AUTH, timeout=10) as pauser:
        paused = await pauser.patch("/api/campaigns/failover", json={"state": "Paused"})
        assert paused.status_code == 200, paused.text
    # A pause ends every visit in the room: the campaign's Paused text, then Disconnect.
    assert await resumed.until("Paused", within=10) == "<p>We are paused.</p>\n"
    assert await resumed.until("Disconnect", within=5) == "Paused"
    say("a pause through the admin API reached the participant's page")
    await asyncio.to_thread(
        wait_for, "the killed one back, standing by", lambda: _one_leader(containers), 60
    )
    say(f"{leader} is back, a standby ({time.monotonic() - killed_at:.1f} s after the kill)")


def reconnection(container: str) -> list[str]:
    """`podman network connect`'s arguments that put the container back on its one network as it
    is now: its address and its names there (compose's service name among them, which the proxy
    looks up). A cable plugged back in changes neither."""
    networks = json.loads(
        podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", container)
    )
    ((name, settings),) = networks.items()
    aliases = [f"--alias={alias}" for alias in settings["Aliases"] or []]
    return ["network", "connect", f"--ip={settings['IPAddress']}", *aliases, name, container]


async def partition(containers: list[str]) -> None:
    """The leader cut off from the network (its machine gone, as the others see it): the standby
    leads once the database gives up on the lock's silent connection; a participant who waited
    resumes its place there; the network back, the cut-off process finds the lock taken and
    stands by."""
    leader = await the_leader(containers)
    page, token = await waiting_participant("partition", "cut-off-participant")
    say(f"a participant waits, 1/2, in {leader}'s room")

    reconnect = reconnection(leader)
    network = reconnect[-2]
    cut_at = time.monotonic()
    podman("network", "disconnect", network, leader)
    say(f"{leader} cut off from {network}")
    # Nothing reaches the page from its cut-off leader: the proxy must close its socket, or the
    # page would wait on a dead socket while its place's grace runs out.
    gone = await page.closed(PARTITION_SECONDS + 20)
    say(f"the page's socket closed {gone:.1f} s after the cut")
    await asyncio.to_thread(
        wait_for,
        "another process leading",
        lambda: leading_besides(containers, leader),
        PARTITION_SECONDS + 20,
    )
    led = time.monotonic() - cut_at
    say(f"another process leads {led:.1f} s after the cut")
    assert led <= PARTITION_SECONDS, f"taking over from a cut-off leader took {led:.1f} s"
    await proxy_reaches_a_leader(PROXY_CHECK_SECONDS + 5)
    await resume("partition", token)
    say(f"the participant resumed its place ({time.monotonic() - cut_at:.1f} s after the cut)")

    podman(*reconnect)
    await asyncio.to_thread(
        wait_for, "the cut-off process standing by", lambda: role(leader) == "standby", 30
    )
    new_leader = await the_leader(containers)
    say(f"the network back, {leader} stands by; {new_leader} leads")


async def database_restart(containers: list[str], database: str) -> None:
    """PostgreSQL killed (`kill -9` of its server; podman restarts it and it recovers): the
    leader loses its lock and the standby its wait; once the database is back one of them leads,
    and a participant who waited is in its place again: its socket kept and told `Resume` (its
    leader took the lock back), or closed (by the proxy, its leader not ready for two checks, or
    by its leader finding the other took the lock) and its page back with its token."""
    await the_leader(containers)
    page, token = await waiting_participant("restart", "database-restart-participant")
    say("a participant waits, 1/2")

    pid = int(podman("inspect", "--format", "{{.State.Pid}}", database))
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    say(f"killed {database}'s PostgreSQL (kill -9 {pid}); podman restarts it")
    if await page.kept_in_place(token, DATABASE_BACK_SECONDS):
        assert await page.until("JoiningSize") == "1/2"
        how = "its socket kept, told Resume"
    else:
        await proxy_reaches_a_leader(DATABASE_BACK_SECONDS)
        await resume("restart", token)
        how = "its socket closed, the page back with its token"
    back = time.monotonic() - killed_at
    say(f"the participant is in its place again, 1/2, {back:.1f} s after the kill ({how})")
    await asyncio.to_thread(
        wait_for, "one leader and one standby", lambda: _one_leader(containers), 30
    )
    say(f"{await the_leader(containers)} leads, the other stands by")


def _one_leader(containers: list[str]) -> bool:
    return sorted(roles_of(containers).values()) == PAIR_ROLES


FLOOD = 1200
FLOOD_ALLOWED = 1000  # new connections in 10 s per address (haproxy.cfg)


async def _healthz_once() -> bool:
    """One new connection asking /healthz: answered, or refused by the proxy."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(ENTRY.rsplit(":", 1)[1]))
    except OSError:
        return False
    try:
        writer.write(b"GET /healthz HTTP/1.0\r\nHost: mastok\r\n\r\n")
        return (await reader.read(12)).startswith(b"HTTP/1.")
    except OSError:
        return False
    finally:
        writer.close()


async def flood() -> None:
    gate = asyncio.Semaphore(50)

    async def one() -> bool:
        async with gate:
            return await _healthz_once()

    answered = sum(await asyncio.gather(*(one() for _ in range(FLOOD))))
    say(f"{FLOOD} connections from one address: {answered} answered, {FLOOD - answered} refused")
    assert FLOOD_ALLOWED * 0.9 <= answered <= FLOOD_ALLOWED + 1, answered


def main(argv: list[str]) -> None:
    if argv[:1] == ["participant"]:
        asyncio.run(participant())
    elif argv[:1] == ["failover"] and len(argv) == 3:
        asyncio.run(failover(argv[1:]))
    elif argv[:1] == ["partition"] and len(argv) == 3:
        asyncio.run(partition(argv[1:]))
    elif argv[:1] == ["database-restart"] and len(argv) == 4:
        asyncio.run(database_restart(argv[1:3], argv[3]))
    elif argv[:1] == ["flood"]:
        asyncio.run(flood())
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
