"""Single-flight: concurrent identical calls make one underlying call.

Threads: the first caller of a key (the leader) runs the call; later callers of the
same key wait on an event and receive the leader's result or exception. Keys never
wait on each other: the registry lock is held only to look up, insert or remove.

asyncio: the call runs in its own task, and every caller (the first included)
awaits it through ``asyncio.shield``. Cancelling one caller therefore never cancels
the others; when the last caller has gone, the task is cancelled, so nothing is
stored for it, and it leaves the registry at once (a caller arriving after that
starts a new call instead of inheriting the cancellation). Entries leave the
registry when their call ends, whatever the outcome, so the registry drains to
empty.

Results: the leader's caller gets the value itself; each waiter gets
``copy(spare)``, where ``spare`` is one copy made *before* any caller returns, so a
caller mutating its result (the leader's included) can never change what another
caller receives.

Landings: each registry counts the flights that ended (``mark()``), and per key
the count when one last did (``landed_since()``). A caller that missed reads the
mark before its lookup; if a flight of its key ended since, the result may have
been stored after that lookup, so the new leader looks once more before calling.
Otherwise it calls at once: no second read of the store in the common case.

A re-entrant call (the call of a key, while running, calling the same key again
from the same thread or the same task) runs directly instead of waiting for
itself, which would deadlock.

A child process made by ``fork()`` starts with empty registries: the calls in
flight belong to threads that do not exist in the child, so a call there waiting
for one of them would wait forever.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncFlights", "Flights"]

_NO_SPARE: Any = object()

#: Per-key landings remembered; beyond, the registry forgets them all and answers
#: "maybe" (a second look) for marks taken before.
_MAX_LANDINGS = 4096


class _Landings:
    """When flights last ended, per key (see the module docstring)."""

    def __init__(self) -> None:
        self.count = 0
        self.floor = 0  # landings up to here are forgotten
        self.last: dict[str, int] = {}

    def land(self, key: str) -> None:
        self.count += 1
        if len(self.last) >= _MAX_LANDINGS:
            self.last.clear()
            self.floor = self.count
        self.last[key] = self.count

    def since(self, key: str, mark: int) -> bool:
        return self.floor > mark or self.last.get(key, 0) > mark


class _Flight:
    __slots__ = ("done", "error", "owner", "spare", "value", "waiters")

    def __init__(self, owner: int) -> None:
        self.done: threading.Event | None = None  # made by the first waiter, under the lock
        self.owner = owner
        self.waiters = 0
        self.value: Any = None
        self.spare: Any = _NO_SPARE
        self.error: BaseException | None = None


class Flights:
    """Per-key coordination of concurrent identical calls in threads."""

    def __init__(self) -> None:
        self._forget_all()
        _registries.add(self)

    def _forget_all(self) -> None:
        # A new lock too: at fork time another thread may have held this one.
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._landings = _Landings()

    def mark(self) -> int:
        """Read before a lookup; pass to :meth:`landed_since` after it missed."""
        return self._landings.count

    def landed_since(self, key: str, mark: int) -> bool:
        """Whether a flight of ``key`` ended since ``mark`` (or may have: then True)."""
        return self._landings.since(key, mark)

    def __len__(self) -> int:
        return len(self._flights)

    def waiting(self, key: str | None = None) -> int:
        """How many callers are waiting on a call in flight (of ``key``, or of any key)."""
        with self._lock:
            if key is not None:
                flight = self._flights.get(key)
                return flight.waiters if flight is not None else 0
            return sum(f.waiters for f in self._flights.values())

    def run(self, key: str, fn: Callable[[], Any], copy: Callable[[Any], Any]) -> tuple[Any, bool]:
        """Run ``fn`` once per key at a time; returns ``(value, led)``.

        Waiters get copies, so no two callers share one mutable result.
        """
        me = threading.get_ident()
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight(me)
                role = "lead"
            elif flight.owner == me:
                role = "reenter"
            else:
                flight.waiters += 1
                if flight.done is None:
                    flight.done = threading.Event()
                role = "wait"
        if role == "reenter":
            return fn(), True
        if role == "wait":
            assert flight.done is not None
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return copy(flight.value if flight.spare is _NO_SPARE else flight.spare), False
        try:
            value = fn()
        except BaseException as exc:
            flight.error = exc
            self._land(key, flight, copy)
            raise
        flight.value = value
        self._land(key, flight, copy)
        return value, True

    def _land(self, key: str, flight: _Flight, copy: Callable[[Any], Any]) -> None:
        """Leave the registry, make the waiters' spare copy, then wake them."""
        with self._lock:
            del self._flights[key]
            self._landings.land(key)  # after the leader stored: see landed_since()
            waiters = flight.waiters  # final: nobody can join a flight that left the registry
        if not waiters:
            return  # nobody to wake, and no Event was ever made
        assert flight.done is not None
        try:
            if waiters and flight.error is None:
                flight.spare = copy(flight.value)  # before the leader's caller can touch the value
        except Exception:
            pass  # the waiters copy the value itself
        finally:
            flight.done.set()


class _AsyncFlight:
    __slots__ = ("callers", "spare", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None
        self.callers = 0
        self.spare: Any = _NO_SPARE


class AsyncFlights:
    """Per-key coordination of concurrent identical calls in asyncio tasks."""

    def __init__(self) -> None:
        self._forget_all()
        _registries.add(self)

    def _forget_all(self) -> None:
        # Keyed by (loop, key): a task can only be awaited from its own loop.
        self._flights: dict[tuple[asyncio.AbstractEventLoop, str], _AsyncFlight] = {}
        self._landings = _Landings()

    def mark(self) -> int:
        """Read before a lookup; pass to :meth:`landed_since` after it missed."""
        return self._landings.count

    def landed_since(self, key: str, mark: int) -> bool:
        """Whether a flight of ``key`` ended since ``mark`` (or may have: then True)."""
        return self._landings.since(key, mark)

    def __len__(self) -> int:
        return len(self._flights)

    def callers(self, key: str | None = None) -> int:
        """How many callers are awaiting a call in flight (of ``key``, or of any key)."""
        flights = list(self._flights.items())
        return sum(f.callers for (_, k), f in flights if key is None or k == key)

    async def run(
        self, key: str, fn: Callable[[], Awaitable[Any]], copy: Callable[[Any], Any]
    ) -> tuple[Any, bool]:
        import asyncio  # not at module level: `import llm_memo` must not pay for asyncio

        loop = asyncio.get_running_loop()
        slot = (loop, key)
        flight = self._flights.get(slot)
        if flight is not None and flight.task is asyncio.current_task():
            return await fn(), True  # re-entrant: awaiting our own task would never end
        leader = flight is None
        if flight is None:
            flight = self._flights[slot] = _AsyncFlight()
            flight.task = loop.create_task(_lead(flight, fn, copy))
            flight.task.add_done_callback(functools.partial(self._finished, slot, flight))
        task = flight.task
        assert task is not None
        flight.callers += 1
        try:
            value = await asyncio.shield(task)
        except BaseException:
            flight.callers -= 1
            if flight.callers == 0 and not task.done():
                # Only a cancelled caller leaves before the end, and nobody is left to want
                # the result: cancel the call, and let the next caller start a new one.
                task.cancel()
                self._forget(slot, flight)
            raise
        flight.callers -= 1
        if leader:
            return value, True
        return copy(value if flight.spare is _NO_SPARE else flight.spare), False

    def _forget(self, slot: tuple[asyncio.AbstractEventLoop, str], flight: _AsyncFlight) -> None:
        if self._flights.get(slot) is flight:
            del self._flights[slot]
            self._landings.land(slot[1])

    def _finished(
        self, slot: tuple[asyncio.AbstractEventLoop, str], flight: _AsyncFlight, task: asyncio.Task[Any]
    ) -> None:
        self._forget(slot, flight)
        if not task.cancelled():
            task.exception()  # mark retrieved: the callers (if any) re-raise it themselves


async def _lead(flight: _AsyncFlight, fn: Callable[[], Awaitable[Any]], copy: Callable[[Any], Any]) -> Any:
    value = await fn()
    if flight.callers > 1:
        # Made before any caller resumes: the leader's caller may mutate ``value`` as
        # soon as it has it, and the other callers must not see that.
        with contextlib.suppress(Exception):  # else the waiters copy the value itself
            flight.spare = copy(value)
    return value


_registries: weakref.WeakSet[Flights | AsyncFlights] = weakref.WeakSet()


def _forget_flights_in_child() -> None:
    for registry in list(_registries):
        registry._forget_all()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_flights_in_child)
