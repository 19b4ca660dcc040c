"""Single-flight: concurrent identical calls make one underlying call.

Threads: the first caller of a key (the leader) runs the call; later callers of the
same key wait on an event and receive the leader's result or exception. Keys never
wait on each other: the registry lock is held only to look up or insert.

asyncio: the call runs in its own task, and every caller (the first included)
awaits it through ``asyncio.shield``. Cancelling one caller therefore never cancels
the others; when the last caller has gone, the task is cancelled, so nothing is
stored for it. Entries leave the registry when their call ends, whatever the
outcome, so the registry drains to empty.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["AsyncFlights", "Flights"]


class _Flight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class Flights:
    """Per-key coordination of concurrent identical calls in threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def run(self, key: str, fn: Callable[[], Any], copy: Callable[[Any], Any]) -> tuple[Any, bool]:
        """Run ``fn`` once per key at a time; returns ``(value, led)``.

        Waiters get ``copy(value)``, so no two callers share one mutable result.
        """
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return copy(flight.value), False
        try:
            flight.value = fn()
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.value, True


class _AsyncFlight:
    __slots__ = ("callers", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.callers = 0


class AsyncFlights:
    """Per-key coordination of concurrent identical calls in asyncio tasks."""

    def __init__(self) -> None:
        # Keyed by (loop, key): a task can only be awaited from its own loop.
        self._flights: dict[tuple[asyncio.AbstractEventLoop, str], _AsyncFlight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(
        self, key: str, fn: Callable[[], Awaitable[Any]], copy: Callable[[Any], Any]
    ) -> tuple[Any, bool]:
        loop = asyncio.get_running_loop()
        slot = (loop, key)
        flight = self._flights.get(slot)
        leader = flight is None
        if flight is None:
            task = loop.create_task(_as_coroutine(fn))
            flight = self._flights[slot] = _AsyncFlight(task)
            task.add_done_callback(functools.partial(self._finished, slot, flight))
        flight.callers += 1
        try:
            value = await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            flight.callers -= 1
            if flight.callers == 0 and not flight.task.done():
                flight.task.cancel()  # nobody is left to want the result
            raise
        flight.callers -= 1
        return (value, True) if leader else (copy(value), False)

    def _finished(
        self, slot: tuple[asyncio.AbstractEventLoop, str], flight: _AsyncFlight, task: asyncio.Task[Any]
    ) -> None:
        if self._flights.get(slot) is flight:
            del self._flights[slot]
        if not task.cancelled():
            task.exception()  # mark retrieved: the callers (if any) re-raise it themselves


async def _as_coroutine(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()
