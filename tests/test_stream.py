"""Cached generators and async generators: record on the way through, store only a full run."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

import pytest

import llm_memo
from llm_memo import CacheInfo, CacheMiss, llm_cached
from llm_memo._core import Memo

N = 4


def memo_of(f: Any) -> Memo:
    """The memo behind a cached function (its counters, registries and backend)."""
    memo: Memo = f._self_memo
    return memo


def _items(prompt: str) -> list[dict[str, Any]]:
    return [{"i": i, "text": f"{prompt}-{i}", "tokens": [i]} for i in range(N)]


def _entries(f: Any) -> int:
    memo = memo_of(f)
    return sum(1 for _ in memo.backend.entries(memo.namespace))


class Source:
    """Counts how often the underlying generator starts, finishes and is closed."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.closed = 0


def make_sync(**options: Any) -> tuple[Any, Source]:
    src = Source()

    @llm_cached(**options)
    def stream(prompt: str) -> Iterator[dict[str, Any]]:
        src.started += 1
        try:
            yield from _items(prompt)
        except GeneratorExit:
            src.closed += 1
            raise
        src.finished += 1

    return stream, src


def make_async(**options: Any) -> tuple[Any, Source]:
    src = Source()

    @llm_cached(**options)
    async def stream(prompt: str) -> AsyncIterator[dict[str, Any]]:
        src.started += 1
        try:
            for item in _items(prompt):
                await asyncio.sleep(0)
                yield item
        except GeneratorExit:
            src.closed += 1
            raise
        src.finished += 1

    return stream, src


# ------------------------------------------------------------------ full runs and replay


def test_sync_full_run_stores_and_replays_as_a_generator() -> None:
    stream, src = make_sync()
    first = stream("p")
    assert inspect.isgenerator(first)
    assert list(first) == _items("p")
    assert _entries(stream) == 1
    again = stream("p")
    assert inspect.isgenerator(again)
    assert list(again) == _items("p")
    assert src.started == 1
    assert stream.cache_info() == CacheInfo(hits=1, misses=1, coalesced=0, stores=1, skipped=0, errors=0)


async def test_async_full_run_stores_and_replays_as_an_async_generator() -> None:
    stream, src = make_async()
    assert inspect.isasyncgenfunction(stream)
    first = stream("p")
    assert inspect.isasyncgen(first)
    assert [x async for x in first] == _items("p")
    assert _entries(stream) == 1
    again = stream("p")
    assert inspect.isasyncgen(again)
    assert [x async for x in again] == _items("p")
    assert src.started == 1
    assert stream.cache_info() == CacheInfo(hits=1, misses=1, coalesced=0, stores=1, skipped=0, errors=0)


def test_sync_items_pass_through_as_they_arrive() -> None:
    produced: list[int] = []

    @llm_cached
    def stream(n: int) -> Iterator[int]:
        for i in range(n):
            produced.append(i)
            yield i

    gen = stream(3)
    assert next(gen) == 0 and produced == [0]  # not buffered: one item out, one item produced
    assert next(gen) == 1 and produced == [0, 1]
    assert list(gen) == [2]


async def test_async_items_pass_through_as_they_arrive() -> None:
    release = asyncio.Event()

    @llm_cached
    async def stream(n: int) -> AsyncIterator[int]:
        yield 0
        await release.wait()  # the first item is out before the source can go on
        yield 1

    gen = stream(2)
    assert await asyncio.wait_for(anext(gen), 5) == 0
    release.set()
    assert [x async for x in gen] == [1]
    assert [x async for x in stream(2)] == [0, 1]


def test_sync_replay_close_works_and_the_entry_survives() -> None:
    stream, src = make_sync(backend="disk")
    list(stream("p"))
    replay = stream("p")
    assert next(replay) == _items("p")[0]
    replay.close()
    with pytest.raises(StopIteration):
        next(replay)
    assert list(stream("p")) == _items("p")
    assert src.started == 1


async def test_async_replay_aclose_works_and_the_entry_survives() -> None:
    stream, src = make_async(backend="disk")
    assert [x async for x in stream("p")] == _items("p")
    replay = stream("p")
    assert await anext(replay) == _items("p")[0]
    await replay.aclose()
    with pytest.raises(StopAsyncIteration):
        await anext(replay)
    assert [x async for x in stream("p")] == _items("p")
    assert src.started == 1


def test_sync_consumer_mutations_do_not_reach_the_stored_items() -> None:
    stream, _ = make_sync()
    for item in stream("p"):
        item["text"] = "mutated"
        item["tokens"].append(99)
    assert list(stream("p")) == _items("p")
    replayed = list(stream("p"))
    replayed[0]["tokens"].append(7)
    assert list(stream("p")) == _items("p")  # a replay is never aliased to the entry either


async def test_async_consumer_mutations_do_not_reach_the_stored_items() -> None:
    stream, _ = make_async()
    async for item in stream("p"):
        item["text"] = "mutated"
        item["tokens"].append(99)
    assert [x async for x in stream("p")] == _items("p")


# ------------------------------------------------------------------ stopping early stores nothing


@pytest.mark.parametrize("k", range(N + 1))
def test_sync_closed_after_k_items_stores_nothing(k: int) -> None:
    stream, src = make_sync()
    gen = stream("p")
    got = [next(gen) for _ in range(k)]
    assert got == _items("p")[:k]
    gen.close()
    assert _entries(stream) == 0
    assert src.closed == (1 if k > 0 else 0)  # the source is closed too, not left suspended
    assert list(stream("p")) == _items("p")  # the next call runs the source again
    assert src.started == (2 if k > 0 else 1)
    assert _entries(stream) == 1


@pytest.mark.parametrize("k", range(N + 1))
def test_sync_break_and_garbage_collection_after_k_items_store_nothing(k: int) -> None:
    stream, src = make_sync()
    gen = stream("p")
    for i, _ in enumerate(gen):
        if i + 1 >= k:
            break
    if k == 0:
        gen = stream("p")  # never iterated at all
    del gen
    gc.collect()
    assert _entries(stream) == 0
    assert src.finished == 0
    assert stream.cache_info().stores == 0


@pytest.mark.parametrize("k", range(N + 1))
async def test_async_aclosed_after_k_items_stores_nothing(k: int) -> None:
    stream, src = make_async()
    gen = stream("p")
    got = [await anext(gen) for _ in range(k)]
    assert got == _items("p")[:k]
    await gen.aclose()
    assert _entries(stream) == 0
    assert src.closed == (1 if k > 0 else 0)
    assert [x async for x in stream("p")] == _items("p")
    assert _entries(stream) == 1


@pytest.mark.parametrize("k", range(1, N + 1))
async def test_async_garbage_collected_after_k_items_stores_nothing(k: int) -> None:
    stream, src = make_async()
    gen = stream("p")
    for _ in range(k):
        await anext(gen)
    del gen
    gc.collect()
    for _ in range(5):  # the loop's async-generator finalizer runs aclose() as a task
        await asyncio.sleep(0)
    assert src.closed == 1
    assert _entries(stream) == 0
    assert stream.cache_info().stores == 0


@pytest.mark.parametrize("k", range(N))
def test_sync_exception_mid_stream_stores_nothing_and_the_next_call_retries(k: int) -> None:
    fail = [True]

    @llm_cached
    def stream(prompt: str) -> Iterator[int]:
        for i in range(N):
            if i == k and fail[0]:
                raise RuntimeError(f"broke at {i}")
            yield i

    got: list[int] = []
    with pytest.raises(RuntimeError, match=f"broke at {k}"):
        for item in stream("p"):
            got.append(item)
    assert got == list(range(k))
    assert _entries(stream) == 0
    fail[0] = False
    assert list(stream("p")) == list(range(N))
    assert _entries(stream) == 1


@pytest.mark.parametrize("k", range(N))
async def test_async_exception_mid_stream_stores_nothing_and_the_next_call_retries(k: int) -> None:
    fail = [True]

    @llm_cached
    async def stream(prompt: str) -> AsyncIterator[int]:
        for i in range(N):
            await asyncio.sleep(0)
            if i == k and fail[0]:
                raise RuntimeError(f"broke at {i}")
            yield i

    got: list[int] = []
    with pytest.raises(RuntimeError, match=f"broke at {k}"):
        async for item in stream("p"):
            got.append(item)
    assert got == list(range(k))
    assert _entries(stream) == 0
    fail[0] = False
    assert [x async for x in stream("p")] == list(range(N))
    assert _entries(stream) == 1


def test_sync_exception_thrown_in_by_the_consumer_stores_nothing() -> None:
    stream, _ = make_sync()
    gen = stream("p")
    next(gen)
    with pytest.raises(KeyError):
        gen.throw(KeyError("consumer gave up"))
    assert _entries(stream) == 0


@pytest.mark.parametrize("k", range(N))
async def test_async_cancelled_task_mid_stream_stores_nothing(k: int) -> None:
    reached = asyncio.Event()
    cancelled: list[bool] = []

    @llm_cached
    async def stream(prompt: str) -> AsyncIterator[int]:
        for i in range(N):
            if i == k:
                reached.set()
                try:
                    await asyncio.Event().wait()  # a slow model: never answers
                except asyncio.CancelledError:
                    cancelled.append(True)
                    raise
            yield i

    got: list[int] = []

    async def consume() -> None:
        async for item in stream("p"):
            got.append(item)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(reached.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == list(range(k))
    assert cancelled == [True]
    assert _entries(stream) == 0
    assert stream.cache_info().stores == 0


async def test_async_consumer_cancelled_between_items_stores_nothing() -> None:
    stream, src = make_async()
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream("p"):
            first.set()
            await asyncio.Event().wait()  # the consumer is slow, not the source

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gc.collect()
    for _ in range(5):
        await asyncio.sleep(0)
    assert _entries(stream) == 0
    assert src.finished == 0


# ------------------------------------------------------------------ modes and policies on streams


def test_sync_replay_mode_miss_raises_cache_miss_without_calling() -> None:
    stream, src = make_sync(mode="replay")
    gen = stream("p")
    with pytest.raises(CacheMiss) as info:
        next(gen)
    assert info.value.function == memo_of(stream).namespace
    assert info.value.key == stream.cache_key("p")
    assert src.started == 0
    with llm_memo.mode("readwrite"):
        list(stream("p"))
    assert list(stream("p")) == _items("p")
    assert src.started == 1


async def test_async_replay_mode_miss_raises_cache_miss_without_calling() -> None:
    stream, src = make_async(mode="replay")
    gen = stream("p")
    with pytest.raises(CacheMiss) as info:
        await anext(gen)
    assert info.value.function == memo_of(stream).namespace
    assert info.value.key == stream.cache_key("p")
    assert src.started == 0
    with llm_memo.mode("readwrite"):
        assert [x async for x in stream("p")] == _items("p")
    assert [x async for x in stream("p")] == _items("p")
    assert src.started == 1


def test_the_mode_is_taken_when_the_generator_is_created() -> None:
    stream, src = make_sync()
    with llm_memo.mode("replay"):
        gen = stream("p")
    with pytest.raises(CacheMiss):
        next(gen)
    assert src.started == 0


def test_sync_cache_if_judges_the_items_as_they_were_yielded() -> None:
    seen: list[Any] = []

    def keep(items: list[dict[str, Any]]) -> bool:
        seen.append(items)
        return all(item["text"] != "mutated" for item in items)

    stream, _ = make_sync(cache_if=keep)
    for item in stream("p"):
        item["text"] = "mutated"
    assert seen == [_items("p")]
    assert _entries(stream) == 1


async def test_async_cache_if_false_stores_nothing() -> None:
    stream, src = make_async(cache_if=lambda items: len(items) > N)
    assert [x async for x in stream("p")] == _items("p")
    assert [x async for x in stream("p")] == _items("p")
    assert src.started == 2
    assert _entries(stream) == 0
    assert stream.cache_info().skipped == 2


def test_unstorable_item_streams_on_and_stores_nothing() -> None:
    marker = object()

    @llm_cached
    def stream() -> Iterator[Any]:
        yield 1
        yield marker
        yield 3

    assert list(stream()) == [1, marker, 3]
    assert _entries(stream) == 0
    assert stream.cache_info().skipped == 1


# ------------------------------------------------------------------ return values and send()


def _echo(**options: Any) -> tuple[Any, list[Any]]:
    """A generator that yields what it is sent (doubled) and returns a summary."""
    received: list[Any] = []

    @llm_cached(**options)
    def chat(prompt: str) -> Any:
        reply = yield f"{prompt}?"
        while reply is not None:
            received.append(reply)
            reply = yield reply * 2
        return {"turns": len(received), "last": prompt}

    return chat, received


def _drive(gen: Any, sends: list[Any]) -> tuple[list[Any], Any]:
    """Run ``gen`` sending ``sends`` one per item (then None); its items and return value."""
    items = [next(gen)]
    try:
        for value in [*sends, None]:
            items.append(gen.send(value))
    except StopIteration as stop:
        return items, stop.value
    raise AssertionError("the generator did not end")  # pragma: no cover


def test_sync_return_value_is_kept_on_a_miss_and_replayed_on_a_hit() -> None:
    chat, received = _echo()
    live = _drive(chat("p"), ["a", "b"])
    assert live == (["p?", "aa", "bb"], {"turns": 2, "last": "p"})
    assert received == ["a", "b"]  # send() reached the live generator
    # A replay yields what was recorded, whatever is sent, and returns the recorded value.
    assert _drive(chat("p"), ["x", "y"]) == live
    assert received == ["a", "b"]
    assert chat.cache_info().hits == 1


def test_sync_return_value_through_yield_from_and_a_plain_for_loop() -> None:
    @llm_cached
    def numbered(n: int) -> Generator[int, None, int]:
        yield from range(n)
        return n * 10

    def consume() -> Any:
        return (yield from numbered(3))

    for _ in range(2):  # a miss, then a hit
        gen = consume()
        assert list(gen) == [0, 1, 2]
        outer = consume()
        for _ in outer:
            pass
    results = []
    for _ in range(2):
        gen = numbered(3)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                results.append(stop.value)
                break
    assert results == [30, 30]
    assert numbered.cache_info().misses == 1


def test_sync_throw_reaches_a_live_generator_that_handles_it() -> None:
    @llm_cached
    def tolerant(prompt: str) -> Generator[str, None, None]:
        for i in range(3):
            try:
                yield f"{prompt}{i}"
            except ValueError:
                yield "recovered"

    gen = tolerant("p")
    assert next(gen) == "p0"
    assert gen.throw(ValueError("retry")) == "recovered"
    assert list(gen) == ["p1", "p2"]


def test_sync_generator_returning_none_stores_the_plain_item_list() -> None:
    stream, _ = make_sync()
    assert list(stream("p")) == _items("p")
    memo = memo_of(stream)
    (stored,) = memo.backend.entries(memo.namespace)
    from llm_memo.serialize import decode_value, unpack_entry

    assert decode_value(unpack_entry(stored.value, None).value, memo.types) == _items("p")


async def test_async_asend_reaches_a_live_generator_and_a_replay_ignores_it() -> None:
    received: list[Any] = []

    @llm_cached
    async def chat(prompt: str) -> AsyncGenerator[str, Any]:
        reply = yield f"{prompt}?"
        while reply is not None:
            received.append(reply)
            reply = yield reply * 2

    async def drive(sends: list[Any]) -> list[Any]:
        gen = chat("p")
        items = [await gen.asend(None)]
        try:
            for value in [*sends, None]:
                items.append(await gen.asend(value))
        except StopAsyncIteration:
            return items
        raise AssertionError("the generator did not end")  # pragma: no cover

    assert await drive(["a", "b"]) == ["p?", "aa", "bb"]
    assert received == ["a", "b"]
    assert await drive(["x", "y"]) == ["p?", "aa", "bb"]  # replayed: what is sent is ignored
    assert received == ["a", "b"] and chat.cache_info().hits == 1
