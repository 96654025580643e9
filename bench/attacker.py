"""`python -m bench.attacker KIND HOST PORT COUNT SECONDS SLUG`: one attack on a running
mastok, from one address, for SECONDS (bench/attacks.py measures /healthz meanwhile).

Each of COUNT connections does the attack again as soon as the server closes it:
- idle_sockets: a join socket's handshake, then nothing (never `Land`);
- slow_headers: a request head sent a byte every 5 s;
- slow_bodies: a LightMill result post (public, read by the route) with its body a byte every 5 s;
- big_frames: a join socket that sends one 16 MiB frame;
- big_headers: a request with a 64 MiB header.
Prints one JSON line: how many connections were opened, refused or closed by the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time

TRICKLE_S = 5.0
REFUSED_PAUSE_S = 5.0  # an attacker holding sockets retries a refused one, not a flood


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


SLUG = "attack"


def _upgrade(host: str, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws/join?slug={SLUG} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: http://{host}:{port}\r\n\r\n"
    ).encode()


def _frame(size: int) -> bytes:
    """The head of a masked text frame of `size` bytes (the payload follows)."""
    return bytes([0x81, 0xFF]) + size.to_bytes(8, "big") + os.urandom(4)


async def _one(kind: str, host: str, port: int, counts: dict[str, int]) -> None:
    reader, writer = await _open(host, port)
    counts["opened"] += 1
    try:
        if kind == "idle_sockets":
            writer.write(_upgrade(host, port))
            answer = await reader.readline()
            if b" 101 " not in answer:
                counts["refused"] += 1
                await asyncio.sleep(REFUSED_PAUSE_S)  # keeps trying to hold its sockets
                return
            await reader.read()  # until the server closes it
        elif kind == "slow_headers":
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(TRICKLE_S)
        elif kind == "slow_bodies":
            writer.write(
                b"POST /api/trial/attack/r/0/0 HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
            )
            while True:
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(TRICKLE_S)
        elif kind == "big_frames":
            writer.write(_upgrade(host, port))
            if b" 101 " not in await reader.readline():
                counts["refused"] += 1
                return
            writer.write(_frame(16 << 20))
            chunk = os.urandom(1 << 16)
            for _ in range(256):
                writer.write(chunk)
                await writer.drain()
        elif kind == "big_headers":
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * (1 << 16)
            for _ in range(1024):
                writer.write(chunk)
                await writer.drain()
            writer.write(b"\r\n\r\n")
            await reader.read()
    except (ConnectionError, OSError):
        pass
    finally:
        counts["closed"] += 1
        writer.close()


async def _slot(kind: str, host: str, port: int, until: float, counts: dict[str, int]) -> None:
    while time.monotonic() < until:
        try:
            await asyncio.wait_for(_one(kind, host, port, counts), until - time.monotonic())
        except (TimeoutError, ConnectionError, OSError):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.01)


async def main(kind: str, host: str, port: int, count: int, seconds: float) -> None:
    counts = {"opened": 0, "refused": 0, "closed": 0}
    until = time.monotonic() + seconds
    await asyncio.gather(*(_slot(kind, host, port, until, counts) for _ in range(count)))
    print(json.dumps({"kind": kind, "count": count, **counts}), flush=True)


if __name__ == "__main__":
    kind_, host_, port_, count_, seconds_, SLUG = sys.argv[1:7]
    asyncio.run(main(kind_, host_, int(port_), int(count_), float(seconds_)))
