"""What a server process built before serving, frozen out of the collector's full passes.

A full (generation 2) pass of CPython's garbage collector walks every tracked object and stops
the event loop while it does. mastok's imports alone (SQLAlchemy, Starlette, httpx, aiohttp ...)
leave about 131,000 of them: a full pass took 25 to 57 ms here before a single participant
came, and 45 to 122 ms with 500 supervisors watching, the slowest placements of bench scenario 7.
Modules, classes and functions live as long as the process, so passes need not walk them:
`gc.freeze()` (made for this) moves them to a generation no pass visits. Garbage is collected
first, so that nothing unreachable is kept for good.
"""

from __future__ import annotations

import gc


def freeze_what_startup_built() -> int:
    """Collect, then freeze every object alive now; the number frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
