"""Cached generators and streams: record while passing items through, replay on a hit.

The first call passes each item to the consumer as it arrives and snapshots it
(encodes it before the consumer can mutate it). The entry is written only when
the stream ends normally: a consumer that stops early, an exception mid-stream, a
cancelled task, or a generator closed or garbage-collected before its end stores
nothing. A hit replays the items in order, as a generator of the same kind.

A generator's ``return`` value is recorded with its items and returned again by
a replay. ``send()`` values (``asend()`` for async generators) reach the
generator on a live run; a replay has no generator to send them to, so it
ignores them and yields what was recorded. ``throw()`` reaches a live sync
generator too. The entry of a generator that returned something other than None
is ``{"items": [...], "returned": value}``; otherwise it is the list of items.

:class:`Recorder` is the shared machinery; the SDK stream adapters use it too.
The cache lookup happens on the first ``next()`` (an async generator cannot
await before it is iterated), so ``CacheMiss`` in replay mode surfaces there.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any

from ._core import Call, Memo
from ._events import StoreOutcome
from ._log import warn_limited
from ._plan import Plan
from .backends import MISS
from .serialize import decode_value, dump_tree, verified_tree

__all__ = [
    "AsyncStreamDriver",
    "Recorder",
    "SyncStreamDriver",
    "adrained",
    "arecorded",
    "drained",
    "recorded",
]


class Recorder:
    """Snapshots a stream's items; :meth:`commit` stores them as one entry."""

    __slots__ = ("began", "call", "enabled", "items", "memo", "returned", "skipped", "trees")

    def __init__(self, memo: Memo, call: Call, *, enabled: bool = True) -> None:
        self.began = time.perf_counter()  # the stream's cost is recorded with its entry
        self.memo = memo
        self.call = call
        self.enabled = enabled
        self.skipped = False  # an item could not be recorded: nothing will be stored
        self.items: list[Any] = []
        self.trees: list[Any] = []
        self.returned: Any = None  # the tree of a generator's return value, once it returned

    def add(self, item: Any) -> None:
        if not self.enabled:
            return
        try:
            self.trees.append(verified_tree(item, self.memo.types))
        except Exception as exc:  # unstorable, or a property that raises: never the consumer's problem
            self._give_up(item, "", exc)
            return
        self.items.append(item)

    def finish(self, returned: Any) -> None:
        """Record what the generator returned (snapshotted now, like the items)."""
        if returned is None or not self.enabled:
            return
        try:
            self.returned = verified_tree(returned, self.memo.types)
        except Exception as exc:
            self._give_up(returned, "its return value: ", exc)

    def _give_up(self, value: Any, what: str, exc: Exception) -> None:
        """Keep streaming to the consumer; just never store this stream."""
        self.enabled = False
        self.skipped = True
        self.memo.count("skipped")
        warn_limited(
            f"unstorable:{self.memo.namespace}:{type(value).__qualname__}",
            "llm_memo: not caching the stream of %s: %s%s",
            self.memo.namespace,
            what,
            exc,
        )

    def _snapshot(self) -> bytes | None:
        if not self.enabled:
            return None
        # A plain dict of str keys encodes as itself, so this is the tree of
        # {"items": items, "returned": value}: see split().
        tree = self.trees if self.returned is None else {"items": self.trees, "returned": self.returned}
        try:
            return dump_tree(tree)
        except Exception:
            self.skipped = True
            self.memo.count("skipped")
            return None

    def _judged(self, snapshot: bytes) -> Any:
        """The items ``cache_if`` judges: as they were yielded, not as the consumer left them."""
        if self.memo.cache_if is None:
            return self.items
        try:
            return split(decode_value(snapshot, self.memo.types))[0]
        except Exception:  # pragma: no cover - a snapshot we just encoded always decodes
            return self.items

    def _unstored(self) -> StoreOutcome | None:
        return "skipped" if self.skipped else None

    def commit(self) -> None:
        """Store the recording (the stream ended normally), then report the call."""
        cost = time.perf_counter() - self.began
        snapshot = self._snapshot()
        stored = self._unstored()
        if snapshot is not None:
            stored = self.memo.store(self.call, self._judged(snapshot), snapshot, cost)
        self.memo.missed(self.call, cost, stored)

    async def acommit(self) -> None:
        cost = time.perf_counter() - self.began
        snapshot = self._snapshot()
        stored = self._unstored()
        if snapshot is not None:
            stored = await self.memo.astore(self.call, self._judged(snapshot), snapshot, cost)
        self.memo.missed(self.call, cost, stored)


def split(value: Any) -> tuple[list[Any], Any]:
    """A stream entry's items and return value (see the module docstring for the two shapes)."""
    if isinstance(value, dict):
        return value["items"], value["returned"]
    return value, None


class _Tap:
    """An iterator over ``source`` that records each item; ``yield from`` passes send/throw/close on."""

    __slots__ = ("recorder", "source")

    def __init__(self, source: Iterator[Any], recorder: Recorder) -> None:
        self.source = source
        self.recorder = recorder

    def __iter__(self) -> _Tap:
        return self

    def __next__(self) -> Any:
        return self._seen(next(self.source))

    def send(self, value: Any) -> Any:
        if value is None:
            return self._seen(next(self.source))
        return self._seen(self.source.send(value))  # type: ignore[attr-defined]

    def throw(self, exc: BaseException) -> Any:
        throw = getattr(self.source, "throw", None)
        if throw is None:
            raise exc
        return self._seen(throw(exc))

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def _seen(self, item: Any) -> Any:
        self.recorder.add(item)  # snapshot first: consumers (and SDK helpers) mutate items
        return item


def recorded(source: Iterator[Any], recorder: Recorder) -> Generator[Any, Any, Any]:
    """Pass ``source``'s items through, snapshotting each; commit only after a normal end.

    What the consumer sends or throws goes to ``source``; what it returns is
    recorded, and returned.
    """
    tap = _Tap(source, recorder)
    try:
        returned = yield from tap
    finally:
        tap.close()  # stopped early: close the source too (a no-op once exhausted)
    recorder.finish(returned)  # reached only when the source ended normally
    recorder.commit()
    return returned


async def arecorded(source: AsyncIterator[Any], recorder: Recorder) -> AsyncGenerator[Any, Any]:
    """The async twin of :func:`recorded` (an async generator returns nothing; ``asend`` passes on)."""
    asend = getattr(source, "asend", None)
    try:
        sent = None
        while True:
            try:
                item = await (asend(sent) if asend is not None else anext(source))
            except StopAsyncIteration:
                break
            recorder.add(item)
            sent = yield item
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
    await recorder.acommit()


def _drain(source: Iterator[Any], recorder: Recorder, more: Callable[[], bool]) -> tuple[list[Any], bool]:
    """Read what is left of ``source`` after its terminal item: the items, and whether it ended."""
    rest: list[Any] = []
    while more():  # the first call starts the budget
        try:
            item = next(source)
        except StopIteration:
            return rest, True
        recorder.add(item)
        rest.append(item)
    return rest, False


def drained(
    source: Iterator[Any], recorder: Recorder, terminal: Callable[[Any], bool], more: Callable[[], bool]
) -> Generator[Any, None, None]:
    """Like :func:`recorded`, for a stream whose consumer may stop at its terminal item.

    Once ``terminal(item)`` holds the answer is complete, and consumers (agent
    loops, helpers) often stop reading right there, before the end of the HTTP
    response: the rest (a usage chunk, ``[DONE]``) is read here first, while
    ``more()`` allows (a budget of bytes and time), and the whole stream is
    stored before the terminal item is handed on. A rest that cannot be read
    means nothing is stored; one that runs over the budget is stored only if the
    consumer reads it to the end. The consumer gets every item (and any error)
    as the live stream gives them.
    """
    try:
        for item in source:
            recorder.add(item)
            if not terminal(item):
                yield item
                continue
            try:
                rest, ended = _drain(source, recorder, more)
            except Exception:
                yield item  # the error comes after the items the consumer has not seen yet...
                raise  # ...but a consumer that stops at the terminal item never sees it, as live
            if ended:
                recorder.commit()
            yield item
            yield from rest
            if not ended:  # over budget: stored only if the consumer reads on to the end
                for later in source:
                    recorder.add(later)
                    yield later
                recorder.commit()
            return
        recorder.commit()  # no terminal item, but a normal end: cache_if judges it
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


async def _adrain(
    source: AsyncIterator[Any], recorder: Recorder, more: Callable[[], bool]
) -> tuple[list[Any], bool]:
    rest: list[Any] = []
    while more():
        try:
            item = await anext(source)
        except StopAsyncIteration:
            return rest, True
        recorder.add(item)
        rest.append(item)
    return rest, False


async def adrained(
    source: AsyncIterator[Any], recorder: Recorder, terminal: Callable[[Any], bool], more: Callable[[], bool]
) -> AsyncGenerator[Any, None]:
    """The async twin of :func:`drained`."""
    try:
        async for item in source:
            recorder.add(item)
            if not terminal(item):
                yield item
                continue
            try:
                rest, ended = await _adrain(source, recorder, more)
            except Exception:
                yield item
                raise
            if ended:
                await recorder.acommit()
            yield item
            for later in rest:
                yield later
            if not ended:
                async for later in source:
                    recorder.add(later)
                    yield later
                await recorder.acommit()
            return
        await recorder.acommit()
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


class SyncStreamDriver:
    """The wrapt wrapper of a cached generator function."""

    def __init__(self, memo: Memo) -> None:
        self.memo = memo

    def __call__(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        plan = self.memo.plan(instance, args, kwargs)
        if plan is None:
            return wrapped(*args, **kwargs)
        return self._run(wrapped, plan)

    def _run(self, wrapped: Callable[..., Any], plan: Plan) -> Generator[Any, Any, Any]:
        memo, call = self.memo, plan.call
        if plan.lookup:
            entry = memo.lookup(call)
            if entry is not MISS:
                items, returned = split(entry)
                # Not `yield from items`: a list iterator has no send(). What is sent is
                # ignored: the recording already says what comes next.
                for item in items:  # noqa: UP028
                    yield item
                return returned
            memo.on_miss(plan)
        recorder = Recorder(memo, call, enabled=plan.store)
        return (yield from recorded(wrapped(*call.args, **call.kwargs), recorder))


class AsyncStreamDriver:
    """The wrapt wrapper of a cached async generator function."""

    def __init__(self, memo: Memo) -> None:
        self.memo = memo

    def __call__(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        plan = self.memo.plan(instance, args, kwargs)
        if plan is None:
            return wrapped(*args, **kwargs)
        return self._run(wrapped, plan)

    async def _run(self, wrapped: Callable[..., Any], plan: Plan) -> AsyncGenerator[Any, Any]:
        memo, call = self.memo, plan.call
        if plan.lookup:
            entry = await memo.alookup(call)
            if entry is not MISS:
                for item in split(entry)[0]:
                    yield item
                return
            memo.on_miss(plan)
        recorder = Recorder(memo, call, enabled=plan.store)
        inner = arecorded(wrapped(*call.args, **call.kwargs), recorder)
        try:
            sent = None
            while True:
                try:
                    item = await inner.asend(sent)
                except StopAsyncIteration:
                    return
                sent = yield item
        finally:
            await inner.aclose()  # no `yield from` here: close the inner stream ourselves
