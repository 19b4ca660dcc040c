"""Cross-process single-flight through the backend: a lease with an expiry.

With ``@llm_cached(lease=30)``, a miss in ``readwrite`` mode first takes a lease
on the key: a small entry under ``<namespace>#lease`` (its own key, derived from
the call's) written with set-if-absent and a TTL of ``lease`` seconds. Then:

* the **holder** checks the store once more (the result may have landed just
  before), calls, stores, and releases the lease. While the call runs, the lease
  is renewed every ``lease / 3`` seconds, so a slow call keeps it but a holder
  that dies (SIGKILL, a lost machine) stops renewing and loses it within
  ``lease`` seconds;
* every other process (a **follower**) polls the store with a bounded, jittered
  backoff. When the result appears it returns it (counted as ``coalesced``); when
  the lease is gone without a result (the holder raised, was cancelled, its result
  was not storable, or it died) one follower takes the lease over and calls.

Within one process the in-memory single-flight (``_flight``) already lets only one
caller of a key reach this code, so the lease coordinates processes, not threads.

Set-if-absent is the backend method ``add(namespace, key, value, ttl) -> bool``
(and its twin ``aadd``). A backend that cannot do it atomically (its
``atomic_add`` is False) uses the interface's emulation (read, write, read back),
which can let two processes call at once in a narrow race; a warning says so once.
Backend faults fail open: the call goes ahead uncoordinated (or raises
:class:`~llm_memo.errors.BackendError` in strict mode), never blocks.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._log import warn_limited
from .backends import MISS, Backend
from .errors import CorruptEntry
from .keys import digest
from .serialize import decode_value, unpack_entry

if TYPE_CHECKING:
    import asyncio

    from ._core import Call, Memo

__all__ = ["LEASE_SUFFIX", "apeek", "lease_async", "lease_key", "lease_sync", "peek", "poll_delays"]

T = TypeVar("T")

#: Leases live in the cached function's namespace plus this suffix.
LEASE_SUFFIX = "#lease"


def lease_key(call_key: str) -> str:
    """The lease's own 64-hex key (stores such as disk and SQLite key on ``key`` alone)."""
    return digest(b"llm-memo-lease\0" + call_key.encode("ascii"))


def poll_delays(lease: float) -> tuple[float, float]:
    """(first, longest) pause between a follower's polls: quick at first, bounded."""
    first = min(0.02, lease / 20)
    return first, max(first, min(1.0, lease / 10))


class _Lease:
    """One attempt at one key: the names, the token, and the backend calls."""

    def __init__(self, memo: Memo, call: Call, ttl: float) -> None:
        self.memo = memo
        self.call = call
        self.ttl = ttl
        self.backend: Backend = memo.backend
        self.namespace = memo.namespace + LEASE_SUFFIX
        self.key = lease_key(call.key)
        import socket  # only here: `import llm_memo` must not pay for what lease= alone needs
        import uuid

        self.token = f"llm-memo-lease:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}".encode()
        self.delay, self.longest = poll_delays(ttl)

    def backoff(self) -> float:
        pause = self.delay * random.uniform(0.5, 1.0)  # jitter: followers do not poll in step
        self.delay = min(self.delay * 2, self.longest)
        return pause

    # ------------------------------------------------------------ sync backend calls

    def try_take(self) -> bool:
        if not self.backend.atomic_add:
            self.warn_emulated()
        return self.backend.add(self.namespace, self.key, self.token, self.ttl)

    def renew(self) -> bool:
        if self.backend.get(self.namespace, self.key) != self.token:
            return False  # lost it (expired and taken over): stop renewing
        self.backend.set(self.namespace, self.key, self.token, self.ttl)
        return True

    def release(self) -> None:
        try:
            if self.backend.get(self.namespace, self.key) == self.token:
                self.backend.delete(self.namespace, self.key)
        except Exception as exc:  # it expires anyway: never mask the call's outcome
            self.soft_fault("release", exc)

    # ------------------------------------------------------------ async backend calls

    async def atry_take(self) -> bool:
        if not self.backend.atomic_add:
            self.warn_emulated()
        return await self.backend.aadd(self.namespace, self.key, self.token, self.ttl)

    async def arenew(self) -> bool:
        if await self.backend.aget(self.namespace, self.key) != self.token:
            return False
        await self.backend.aset(self.namespace, self.key, self.token, self.ttl)
        return True

    async def arelease(self) -> None:
        try:
            if await self.backend.aget(self.namespace, self.key) == self.token:
                await self.backend.adelete(self.namespace, self.key)
        except Exception as exc:
            self.soft_fault("release", exc)

    # ------------------------------------------------------------ results and faults

    def peek(self) -> Any:
        return peek(self.memo, self.call)

    async def apeek(self) -> Any:
        return await apeek(self.memo, self.call)

    def soft_fault(self, op: str, exc: BaseException) -> None:
        self.memo.count("errors")
        warn_limited(
            f"lease:{self.backend.url}:{op}:{type(exc).__name__}",
            "llm_memo: lease %s on %s failed (%s: %s)",
            op,
            self.backend.url,
            type(exc).__name__,
            exc,
        )

    def warn_emulated(self) -> None:
        warn_limited(
            f"lease-emulated:{self.backend.url}",
            "llm_memo: %s has no atomic add() (set-if-absent); the lease is best-effort and two "
            "processes may occasionally call at once",
            self.backend.url,
        )


def _decode(memo: Memo, call: Call, data: Any) -> Any:
    if data is MISS:
        return MISS
    try:
        entry = unpack_entry(data, call.fingerprint)
        if entry.expires is not None and memo.clock() >= entry.expires:
            return MISS
        return decode_value(entry.value, memo.types)
    except CorruptEntry:
        return MISS


def peek(memo: Memo, call: Call) -> Any:
    """The stored result of ``call``, or MISS; counts nothing and never raises.

    A leader looks once more before calling: the result may have been stored since
    its own lookup missed (by a flight that ended just before this one began, or by
    another process). That lookup already counted the miss, and any fault of the
    store, so this second look is silent: a failure is just a miss.
    """
    try:
        data = memo.backend.get(memo.namespace, call.key)
    except Exception:
        return MISS
    return _decode(memo, call, data)


async def apeek(memo: Memo, call: Call) -> Any:
    """The asyncio twin of :func:`peek`."""
    try:
        data = await memo.backend.aget(memo.namespace, call.key)
    except Exception:
        return MISS
    return _decode(memo, call, data)


def lease_sync(memo: Memo, call: Call, ttl: float, compute: Callable[[], T]) -> T:
    """Run ``compute`` (call and store) once across processes sharing the backend.

    ``ttl``: the lease's lifetime in seconds (how long a dead holder can block the others).
    """
    lease = _Lease(memo, call, ttl)
    while True:
        try:
            taken = lease.try_take()
        except Exception as exc:
            memo.fault("lease", exc)  # raises in strict mode
            return compute()  # cannot coordinate: call as if there were no lease
        if taken:
            return _hold(lease, compute)
        value = lease.peek()
        if value is not MISS:
            memo.count("coalesced")
            return value  # type: ignore[no-any-return]
        time.sleep(lease.backoff())


def _hold(lease: _Lease, compute: Callable[[], T]) -> T:
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(lease.ttl / 3):
            try:
                if not lease.renew():
                    return
            except Exception as exc:
                lease.soft_fault("renew", exc)

    beat = threading.Thread(target=heartbeat, name="llm-memo-lease", daemon=True)
    try:
        value = lease.peek()  # the result may have landed between our miss and the lease
        if value is not MISS:
            lease.memo.count("coalesced")
            return value  # type: ignore[no-any-return]
        beat.start()
        return compute()
    finally:
        stop.set()
        if beat.is_alive():
            beat.join()  # a renewal in progress must not re-take the lease after the release
        lease.release()


async def lease_async(memo: Memo, call: Call, ttl: float, compute: Callable[[], Awaitable[T]]) -> T:
    """The asyncio twin of :func:`lease_sync`."""
    import asyncio  # not at module level: `import llm_memo` must not pay for asyncio

    lease = _Lease(memo, call, ttl)
    while True:
        try:
            taken = await lease.atry_take()
        except Exception as exc:
            memo.fault("lease", exc)
            return await compute()
        if taken:
            return await _ahold(lease, compute)
        value = await lease.apeek()
        if value is not MISS:
            memo.count("coalesced")
            return value  # type: ignore[no-any-return]
        await asyncio.sleep(lease.backoff())


async def _ahold(lease: _Lease, compute: Callable[[], Awaitable[T]]) -> T:
    import asyncio

    stop = asyncio.Event()

    async def heartbeat() -> None:
        while True:
            try:
                await asyncio.wait_for(stop.wait(), lease.ttl / 3)
                return
            except TimeoutError:
                pass
            try:
                if not await lease.arenew():
                    return
            except Exception as exc:
                lease.soft_fault("renew", exc)

    beat: asyncio.Task[None] | None = None
    try:
        value = await lease.apeek()  # the result may have landed between our miss and the lease
        if value is not MISS:
            lease.memo.count("coalesced")
            return value  # type: ignore[no-any-return]
        beat = asyncio.create_task(heartbeat())
        return await compute()
    finally:
        stop.set()
        if beat is not None:
            await asyncio.wait([beat])  # let a renewal in progress finish before releasing
        await lease.arelease()  # also when cancelled: the followers take over at once
