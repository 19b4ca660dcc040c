"""Cached generators and streams: record while passing items through, replay on a hit.

The first call passes each item to the consumer as it arrives and snapshots it
(encodes it before the consumer can mutate it). The entry is written only when
the stream ends normally: a consumer that stops early, an exception mid-stream, a
cancelled task, or a generator closed or garbage-collected before its end stores
nothing. A hit replays the items in order, as a generator of the same kind.

:class:`Recorder` is the shared machinery; the SDK stream adapters use it too.
The cache lookup happens on the first ``next()`` (an async generator cannot
await before it is iterated), so ``CacheMiss`` in replay mode surfaces there.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

from ._config import Mode
from ._core import Call, Memo
from ._log import warn_limited
from .backends import MISS
from .errors import CacheMiss, CorruptEntry, UnstorableResult
from .serialize import decode_value, dump_tree, verified_tree

__all__ = ["AsyncStreamDriver", "Recorder", "SyncStreamDriver", "arecorded", "recorded"]


class Recorder:
    """Snapshots a stream's items; :meth:`commit` stores them as one entry."""

    __slots__ = ("began", "call", "enabled", "items", "memo", "trees")

    def __init__(self, memo: Memo, call: Call, *, enabled: bool = True) -> None:
        self.began = time.perf_counter()  # the stream's cost is recorded with its entry
        self.memo = memo
        self.call = call
        self.enabled = enabled
        self.items: list[Any] = []
        self.trees: list[Any] = []

    def add(self, item: Any) -> None:
        if not self.enabled:
            return
        try:
            self.trees.append(verified_tree(item, self.memo.types))
        except UnstorableResult as exc:
            self.enabled = False  # keep streaming to the consumer; just never store this one
            self.memo.count("skipped")
            warn_limited(
                f"unstorable:{self.memo.namespace}:{type(item).__qualname__}",
                "llm_memo: not caching the stream of %s: %s",
                self.memo.namespace,
                exc,
            )
            return
        self.items.append(item)

    def _snapshot(self) -> bytes | None:
        if not self.enabled:
            return None
        try:
            return dump_tree(self.trees)
        except UnstorableResult:
            self.memo.count("skipped")
            return None

    def _judged(self, snapshot: bytes) -> Any:
        """The items ``cache_if`` judges: as they were yielded, not as the consumer left them."""
        if self.memo.cache_if is None:
            return self.items
        try:
            return decode_value(snapshot, self.memo.types)
        except CorruptEntry:  # pragma: no cover - a snapshot we just encoded always decodes
            return self.items

    def _ended(self) -> float:
        cost = time.perf_counter() - self.began
        self.memo.missed(self.call, cost)
        return cost

    def commit(self) -> None:
        cost = self._ended()
        snapshot = self._snapshot()
        if snapshot is not None:
            self.memo.store(self.call, self._judged(snapshot), snapshot, cost)

    async def acommit(self) -> None:
        cost = self._ended()
        snapshot = self._snapshot()
        if snapshot is not None:
            await self.memo.astore(self.call, self._judged(snapshot), snapshot, cost)


def recorded(source: Iterator[Any], recorder: Recorder) -> Iterator[Any]:
    """Pass ``source``'s items through, snapshotting each; commit only after a normal end."""
    try:
        for item in source:
            recorder.add(item)  # snapshot first: consumers (and SDK helpers) mutate items
            yield item
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()  # stopped early: close the source too (a no-op once exhausted)
    recorder.commit()  # reached only when the source ended normally


async def arecorded(source: AsyncIterator[Any], recorder: Recorder) -> AsyncGenerator[Any, None]:
    """The async twin of :func:`recorded`."""
    try:
        async for item in source:
            recorder.add(item)
            yield item
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
    await recorder.acommit()


class SyncStreamDriver:
    """The wrapt wrapper of a cached generator function."""

    def __init__(self, memo: Memo) -> None:
        self.memo = memo

    def __call__(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        mode = self.memo.current_mode()
        if mode == "off":
            return wrapped(*args, **kwargs)
        call = self.memo.prepare(instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return self._run(wrapped, call, mode)

    def _run(self, wrapped: Callable[..., Any], call: Call, mode: Mode) -> Iterator[Any]:
        memo = self.memo
        if mode != "refresh":
            items = memo.lookup(call)
            if items is not MISS:
                yield from items
                return
            if mode == "replay":
                raise CacheMiss(memo.namespace, call.key)
        recorder = Recorder(memo, call, enabled=mode != "readonly")
        yield from recorded(wrapped(*call.args, **call.kwargs), recorder)


class AsyncStreamDriver:
    """The wrapt wrapper of a cached async generator function."""

    def __init__(self, memo: Memo) -> None:
        self.memo = memo

    def __call__(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        mode = self.memo.current_mode()
        if mode == "off":
            return wrapped(*args, **kwargs)
        call = self.memo.prepare(instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return self._run(wrapped, call, mode)

    async def _run(self, wrapped: Callable[..., Any], call: Call, mode: Mode) -> AsyncIterator[Any]:
        memo = self.memo
        if mode != "refresh":
            items = await memo.alookup(call)
            if items is not MISS:
                for item in items:
                    yield item
                return
            if mode == "replay":
                raise CacheMiss(memo.namespace, call.key)
        recorder = Recorder(memo, call, enabled=mode != "readonly")
        inner = arecorded(wrapped(*call.args, **call.kwargs), recorder)
        try:
            async for item in inner:
                yield item
        finally:
            await inner.aclose()  # no `yield from` here: close the inner stream ourselves
