"""Tiers: a fast store in front of a shared one, e.g. ``backend=("memory", "redis://...")``.

Reads go through the tiers in order; a hit in a slower tier is copied into every
faster one (so the next read of a hot key is a memory hit), with a TTL no longer
than the entry's remaining lifetime (:func:`llm_memo.serialize.entry_expiry`). Writes,
deletes and clears go to every tier. A tier that fails is logged (rate-limited)
and skipped: the others carry on, and only when every tier fails does the
operation fail.

Each tier keeps its own bound (the memory backend is an LRU capped by entries and
bytes); ``upper_ttl`` additionally caps how long the faster tiers keep an entry,
so a change made to the shared store by another process (an invalidation, a
clear) shows through after at most that long.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from .._log import warn_limited
from ..errors import CorruptEntry
from ..serialize import entry_expiry
from .base import MISS, Backend, Miss, StoredEntry

__all__ = ["TieredBackend"]

T = TypeVar("T")


class TieredBackend(Backend):
    """Several backends read in order (fastest first) and written together.

    ``tiers`` are Backend instances or URL strings. ``clock`` (unix seconds) is
    what the remaining lifetime of an entry is measured against when it is copied
    up; ``upper_ttl`` (seconds) caps the TTL of every tier but the last.
    """

    def __init__(
        self,
        tiers: Sequence[Backend | str],
        *,
        upper_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        from . import from_url

        if not tiers:
            raise ValueError("TieredBackend needs at least one tier")
        self.tiers: tuple[Backend, ...] = tuple(from_url(t) if isinstance(t, str) else t for t in tiers)
        self.upper_ttl = upper_ttl
        self.clock = clock
        self.url = "(" + ", ".join(t.url for t in self.tiers) + ")"
        # `blocking` is a class attribute on Backend; this instance blocks if any tier does.
        vars(self)["blocking"] = any(t.blocking for t in self.tiers)
        vars(self)["atomic_add"] = self.tiers[-1].atomic_add

    # ---------------------------------------------------------------- helpers

    def _fault(self, tier: Backend, op: str, exc: BaseException) -> None:
        warn_limited(
            f"tier:{tier.url}:{op}:{type(exc).__name__}",
            "llm_memo: %s on tier %s failed (%s: %s); using the other tiers",
            op,
            tier.url,
            type(exc).__name__,
            exc,
        )

    def _ttl_for(self, index: int, ttl: float | None) -> float | None:
        """The TTL tier ``index`` gets for an entry that lives ``ttl`` more seconds."""
        if index == len(self.tiers) - 1 or self.upper_ttl is None:
            return ttl
        return self.upper_ttl if ttl is None else min(ttl, self.upper_ttl)

    def _remaining(self, value: bytes) -> tuple[bool, float | None]:
        """(may copy up, TTL to copy with), from the entry's own expiry."""
        try:
            expires = entry_expiry(value)
        except CorruptEntry:
            return False, None  # not an entry: its lifetime is unknown, so never copy it up
        if expires is None:
            return True, None
        remaining = expires - self.clock()
        return remaining > 0, remaining

    def _each(self, op: str, call: Callable[[int, Backend], T]) -> list[T]:
        """Run ``call`` on every tier; raise only if every tier failed."""
        results: list[T] = []
        error: BaseException | None = None
        for index, tier in enumerate(self.tiers):
            try:
                results.append(call(index, tier))
            except Exception as exc:
                self._fault(tier, op, exc)
                error = exc
        if not results and error is not None:
            raise error
        return results

    async def _aeach(self, op: str, call: Callable[[int, Backend], Awaitable[T]]) -> list[T]:
        results: list[T] = []
        error: BaseException | None = None
        for index, tier in enumerate(self.tiers):
            try:
                results.append(await call(index, tier))
            except Exception as exc:
                self._fault(tier, op, exc)
                error = exc
        if not results and error is not None:
            raise error
        return results

    # ---------------------------------------------------------------- sync API

    def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        """Set-if-absent on the last (shared) tier: leases coordinate through it."""
        return self.tiers[-1].add(namespace, key, value, ttl)

    def get(self, namespace: str, key: str) -> bytes | Miss:
        error: BaseException | None = None
        answered = False
        for index, tier in enumerate(self.tiers):
            try:
                value = tier.get(namespace, key)
            except Exception as exc:
                self._fault(tier, "get", exc)
                error = exc
                continue
            answered = True
            if value is MISS:
                continue
            assert isinstance(value, bytes)
            if index:
                self._fill(self.tiers[:index], namespace, key, value)
            return value
        if not answered and error is not None:
            raise error  # no tier could answer: let the front see the fault
        return MISS

    def _fills(self, tiers: Iterable[Backend], value: bytes) -> list[tuple[Backend, float | None]]:
        """The faster tiers to copy a hit into, each with its TTL (none if the entry's life is unknown)."""
        copy, ttl = self._remaining(value)
        return [(tier, self._ttl_for(index, ttl)) for index, tier in enumerate(tiers)] if copy else []

    def _fill(self, tiers: Iterable[Backend], namespace: str, key: str, value: bytes) -> None:
        for tier, ttl in self._fills(tiers, value):
            try:
                tier.set(namespace, key, value, ttl)
            except Exception as exc:
                self._fault(tier, "fill", exc)

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        self._each("set", lambda i, t: t.set(namespace, key, value, self._ttl_for(i, ttl)))

    def delete(self, namespace: str, key: str) -> bool:
        return any(self._each("delete", lambda _, t: t.delete(namespace, key)))

    def clear(self, namespace: str | None = None) -> int:
        # The same entry is usually in several tiers: report the largest tier's count.
        return max(self._each("clear", lambda _, t: t.clear(namespace)))

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        # The slowest tier usually holds everything; faster ones add what it lacks.
        seen: set[tuple[str, str]] = set()
        for tier in reversed(self.tiers):
            for entry in tier.entries(namespace):
                if (entry.namespace, entry.key) not in seen:
                    seen.add((entry.namespace, entry.key))
                    yield entry

    def close(self) -> None:
        self._each("close", lambda _, t: t.close())

    # ---------------------------------------------------------------- async API

    async def aget(self, namespace: str, key: str) -> bytes | Miss:
        error: BaseException | None = None
        answered = False
        for index, tier in enumerate(self.tiers):
            try:
                value = await tier.aget(namespace, key)
            except Exception as exc:
                self._fault(tier, "get", exc)
                error = exc
                continue
            answered = True
            if value is MISS:
                continue
            assert isinstance(value, bytes)
            for faster, fill_ttl in self._fills(self.tiers[:index], value) if index else ():
                try:
                    await faster.aset(namespace, key, value, fill_ttl)
                except Exception as exc:
                    self._fault(faster, "fill", exc)
            return value
        if not answered and error is not None:
            raise error
        return MISS

    async def aadd(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        return await self.tiers[-1].aadd(namespace, key, value, ttl)

    async def aset(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        await self._aeach("set", lambda i, t: t.aset(namespace, key, value, self._ttl_for(i, ttl)))

    async def adelete(self, namespace: str, key: str) -> bool:
        return any(await self._aeach("delete", lambda _, t: t.adelete(namespace, key)))

    async def aclear(self, namespace: str | None = None) -> int:
        return max(await self._aeach("clear", lambda _, t: t.aclear(namespace)))

    async def aclose(self) -> None:
        await self._aeach("close", lambda _, t: t.aclose())
