"""The garbage collector set for serving and for a long command: what startup built frozen.

A full (generation 2) pass of CPython's garbage collector walks every tracked object and stops
the event loop while it does. mastok's imports alone (SQLAlchemy, Starlette, httpx, aiohttp ...)
leave about 131,000 of them: a full pass took 25 to 57 ms here before a single participant
came, and 45 to 122 ms with 500 supervisors watching, the slowest placements of bench scenario 7.
Modules, classes and functions live as long as the process, so passes need not walk them:
`gc.freeze()` (made for this) moves them to a generation no pass visits. Garbage is collected
first, so that nothing unreachable is kept for good.

What is left to walk is the sockets' objects (about 100 a socket), and a full pass came every
few seconds while people arrived (CPython makes one every `threshold2` passes of generation 1,
once a quarter more objects than the last full pass kept have come): 25 to 52 ms each with
500 supervisors connected, and a pool's start caught by one waited that long, all four
members. `FULL_PASS_AFTER` makes them ten times rarer: cycles that become garbage are freed a
little later, everything else (freed as soon as it is unused) is unchanged.

`mastok export` reads and writes in chunks that outlive the young passes, so full passes came
as often there: 15 of them took 0.52 of the 2.45 s an events file of 500,000 events took
(SQLite), and 0.015 s once the imports' objects were frozen.
"""

from __future__ import annotations

import gc

FULL_PASS_AFTER = 100  # passes of generation 1 (CPython's default: 10)


def set_for_serving() -> None:
    """Collect, freeze every object alive now, space out full passes."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_PASS_AFTER)


def set_for_one_job() -> None:
    """Freeze every object alive now, before a command's one long job (`mastok export`): its
    full passes then walk the job's objects only. Nothing is collected first: the process ends
    with the job."""
    gc.freeze()
