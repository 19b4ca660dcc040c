"""The decision for one call, made once, that every driver then carries out.

A mode fixes what a cached call does: whether it looks the key up, whether a miss
calls the function or raises ``CacheMiss``, whether the result is stored, and
whether a miss may take a cross-process lease. :meth:`Memo.plan` turns the mode in
force and the call's key into a :class:`Plan`; the drivers (sync, async, generator,
async generator) only do the I/O it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from ._core import Call

__all__ = ["POLICIES", "Plan", "Policy"]


class Policy(NamedTuple):
    """What a mode decides, the same for every call made in it."""

    #: False: the call runs as if it were not cached (mode "off").
    cache: bool
    #: Read the key before calling (every mode but "refresh").
    lookup: bool
    #: A miss raises ``CacheMiss`` instead of calling (mode "replay").
    replay: bool
    #: Store the result of a call that ran ("readonly" stores nothing).
    store: bool
    #: A miss may take a lease, so processes sharing the backend make one call.
    lease: bool


# Decided once per mode, not per call: the hit path only looks its mode up.
POLICIES: Final[dict[str, Policy]] = {
    "readwrite": Policy(cache=True, lookup=True, replay=False, store=True, lease=True),
    "readonly": Policy(cache=True, lookup=True, replay=False, store=False, lease=False),
    "refresh": Policy(cache=True, lookup=False, replay=False, store=True, lease=False),
    "replay": Policy(cache=True, lookup=True, replay=True, store=False, lease=False),
    "off": Policy(cache=False, lookup=False, replay=False, store=False, lease=False),
}


class Plan(NamedTuple):
    """One call, decided: its key and what to do with it."""

    call: Call
    #: Read the key before calling (and peek again after a concurrent flight landed).
    lookup: bool
    #: A miss raises ``CacheMiss`` rather than calling.
    replay: bool
    #: Store the result of the call.
    store: bool
    #: Seconds of the lease a miss takes; None: no lease.
    lease: float | None
