"""Single-flight: concurrent identical calls make one underlying call, in threads and in asyncio."""

from __future__ import annotations

import asyncio
import copy
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llm_memo import CacheInfo, llm_cached
from llm_memo._core import Memo
from llm_memo._flight import AsyncFlights, Flights

WAITERS = 8
TIMEOUT = 10.0  # generous: only reached when something is broken


def memo_of(f: Any) -> Memo:
    """The memo behind a cached function (its counters, registries and backend)."""
    memo: Memo = f._self_memo
    return memo


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


async def async_wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0)


def entries(f: Any) -> int:
    memo = memo_of(f)
    return sum(1 for _ in memo.backend.entries(memo.namespace))


def run_threads(n: int, target: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``target(i)`` in n threads started together; collect results and errors."""
    start = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []
    lock = threading.Lock()

    def body(i: int) -> None:
        start.wait(timeout=TIMEOUT)
        try:
            results[i] = target(i)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive(), "a thread is stuck"
    return results, errors


@pytest.fixture
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


# ------------------------------------------------------------------ threads


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_threads_one_underlying_call_and_equal_unshared_results(backend: str) -> None:
    calls: list[str] = []

    @llm_cached(backend=backend)
    def ask(prompt: str) -> dict[str, Any]:
        calls.append(prompt)
        # Hold the call until every other caller is waiting on it.
        wait_until(lambda: memo_of(ask).flights.waiting() == WAITERS - 1)
        return {"answer": prompt, "tokens": [1, 2]}

    results, errors = run_threads(WAITERS, lambda i: ask("q"))
    assert errors == []
    assert calls == ["q"]
    assert all(r == {"answer": "q", "tokens": [1, 2]} for r in results)
    assert len({id(r) for r in results}) == WAITERS  # equal, never the same object
    assert len({id(r["tokens"]) for r in results}) == WAITERS
    assert ask.cache_info() == CacheInfo(
        hits=0, misses=WAITERS, coalesced=WAITERS - 1, stores=1, skipped=0, errors=0
    )
    assert len(memo_of(ask).flights) == 0
    assert ask("q") == {"answer": "q", "tokens": [1, 2]} and calls == ["q"]


def test_threads_leader_mutating_its_result_does_not_reach_the_waiters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mutated = threading.Event()
    leader_thread: list[int] = []

    @llm_cached
    def ask(prompt: str) -> dict[str, Any]:
        leader_thread.append(threading.get_ident())
        wait_until(lambda: memo_of(ask).flights.waiting() == 1)
        return {"answer": prompt}

    memo = memo_of(ask)
    real_copy = memo.fresh_copy

    def slow_copy(value: Any) -> Any:
        if threading.get_ident() != leader_thread[0]:
            mutated.wait(TIMEOUT)  # a waiter copies only after the leader's caller mutated
        return real_copy(value)

    monkeypatch.setattr(memo, "fresh_copy", slow_copy)

    def caller(i: int) -> dict[str, Any]:
        result: dict[str, Any] = ask("q")
        if threading.get_ident() == leader_thread[0]:
            result["answer"] = "mutated by the leader's caller"
            mutated.set()
        return result

    results, errors = run_threads(2, caller)
    assert errors == []
    assert sorted(r["answer"] for r in results) == ["mutated by the leader's caller", "q"]


def test_threads_distinct_keys_never_wait_on_each_other() -> None:
    both_inside = threading.Barrier(2)

    @llm_cached
    def ask(prompt: str) -> str:
        # Each call can only finish once the other one is running too: a global lock
        # (or keys waiting on each other) breaks the barrier.
        both_inside.wait(timeout=TIMEOUT)
        return prompt

    results, errors = run_threads(2, lambda i: ask(f"q{i}"))
    assert errors == []
    assert sorted(results) == ["q0", "q1"]
    assert ask.cache_info().coalesced == 0


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_threads_leader_exception_reaches_every_waiter_and_nothing_is_stored(backend: str) -> None:
    calls: list[int] = []

    class Boom(Exception):
        pass

    @llm_cached(backend=backend)
    def ask(prompt: str) -> str:
        calls.append(1)
        if len(calls) == 1:
            wait_until(lambda: memo_of(ask).flights.waiting() == WAITERS - 1)
            raise Boom("rate limited")
        return prompt

    _, errors = run_threads(WAITERS, lambda i: ask("q"))
    assert len(errors) == WAITERS
    assert all(isinstance(e, Boom) and str(e) == "rate limited" for e in errors)
    assert calls == [1]
    assert entries(ask) == 0
    assert ask.cache_info().stores == 0
    assert len(memo_of(ask).flights) == 0
    assert ask("q") == "q"  # the next call tries again
    assert len(calls) == 2 and entries(ask) == 1


def test_threads_reentrant_call_of_the_same_key_does_not_deadlock() -> None:
    attempts: list[int] = []

    @llm_cached
    def ask(prompt: str) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            return ask(prompt)  # e.g. a retry that calls itself
        return prompt.upper()

    done: list[str] = []
    t = threading.Thread(target=lambda: done.append(ask("q")), daemon=True)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive(), "deadlocked on its own flight"
    assert done == ["Q"]
    assert len(memo_of(ask).flights) == 0


def test_threads_counters_exact_under_load(fast_switching: None) -> None:
    threads, per_thread, keys = 8, 1000, 10

    @llm_cached
    def ask(worker: int, k: int) -> int:
        return worker * 100 + k

    def work(worker: int) -> list[int]:
        return [ask(worker, i % keys) for i in range(per_thread)]

    results, errors = run_threads(threads, work)
    assert errors == []
    assert results == [[w * 100 + i % keys for i in range(per_thread)] for w in range(threads)]
    assert ask.cache_info() == CacheInfo(
        hits=threads * (per_thread - keys),
        misses=threads * keys,
        coalesced=0,
        stores=threads * keys,
        skipped=0,
        errors=0,
    )


def test_threads_counters_add_up_with_shared_keys(fast_switching: None) -> None:
    threads, per_thread, keys = 8, 1000, 25
    calls: list[int] = []
    lock = threading.Lock()

    @llm_cached
    def ask(k: int) -> int:
        with lock:
            calls.append(k)
        return k

    _, errors = run_threads(threads, lambda w: [ask((w + i) % keys) for i in range(per_thread)])
    assert errors == []
    info = ask.cache_info()
    assert info.hits + info.misses == threads * per_thread
    assert info.stores == len(calls) >= keys  # every underlying call stored once
    assert info.misses == len(calls) + info.coalesced  # each miss either led or waited
    assert sorted(calls) == list(range(keys))  # exactly one underlying call per key
    assert len(memo_of(ask).flights) == 0


def test_threads_a_miss_just_before_the_leader_stored_does_not_call_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    @llm_cached
    def ask(prompt: str) -> str:
        calls.append(prompt)
        return prompt

    memo = memo_of(ask)
    real_lookup = memo.lookup
    raced: list[bool] = []

    def lookup_then_lose_the_race(call: Any, *rest: Any) -> Any:
        value = real_lookup(call, *rest)
        if not raced:
            raced.append(True)
            ask("q")  # another caller's whole flight runs between our miss and our flight
        return value

    monkeypatch.setattr(memo, "lookup", lookup_then_lose_the_race)
    assert ask("q") == "q"
    assert calls == ["q"]
    info = ask.cache_info()
    assert (info.misses, info.coalesced, info.stores) == (2, 1, 1)


def test_flights_registry_unit() -> None:
    flights = Flights()
    assert flights.run("k", lambda: [1], copy.deepcopy) == ([1], True)

    def boom() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        flights.run("k", boom, copy.deepcopy)
    assert len(flights) == 0 and flights.waiting() == 0


# ------------------------------------------------------------------ asyncio


def make_async(**options: Any) -> tuple[Any, dict[str, Any]]:
    """An async cached function that blocks on ``state['release']`` and records what it saw."""
    state: dict[str, Any] = {"calls": 0, "started": asyncio.Event(), "release": asyncio.Event()}
    state["outcome"] = []

    @llm_cached(**options)
    async def ask(prompt: str) -> dict[str, Any]:
        state["calls"] += 1
        state["started"].set()
        try:
            await state["release"].wait()
        except asyncio.CancelledError:
            state["outcome"].append("cancelled")
            raise
        state["outcome"].append("finished")
        return {"answer": prompt, "tokens": [1, 2]}

    return ask, state


@pytest.mark.parametrize("backend", ["memory", "disk"])
async def test_async_gather_one_underlying_call_and_equal_unshared_results(backend: str) -> None:
    ask, state = make_async(backend=backend)
    tasks = [asyncio.create_task(ask("q")) for _ in range(WAITERS)]
    await async_wait_until(lambda: memo_of(ask).aflights.callers() == WAITERS)
    state["release"].set()
    results = await asyncio.gather(*tasks)
    assert state["calls"] == 1
    assert all(r == {"answer": "q", "tokens": [1, 2]} for r in results)
    assert len({id(r) for r in results}) == WAITERS
    assert len({id(r["tokens"]) for r in results}) == WAITERS
    assert ask.cache_info() == CacheInfo(
        hits=0, misses=WAITERS, coalesced=WAITERS - 1, stores=1, skipped=0, errors=0
    )
    assert len(memo_of(ask).aflights) == 0


async def test_async_leader_mutating_its_result_does_not_reach_the_waiters() -> None:
    ask, state = make_async()

    async def leader() -> dict[str, Any]:
        result: dict[str, Any] = await ask("q")
        result["answer"] = "mutated by the leader's caller"  # at once, before the others resume
        return result

    first = asyncio.create_task(leader())
    await state["started"].wait()
    others = [asyncio.create_task(ask("q")) for _ in range(3)]
    await async_wait_until(lambda: memo_of(ask).aflights.callers() == 4)
    state["release"].set()
    assert (await first)["answer"] == "mutated by the leader's caller"
    assert [r["answer"] for r in await asyncio.gather(*others)] == ["q", "q", "q"]


async def test_async_distinct_keys_never_wait_on_each_other() -> None:
    both_inside = asyncio.Barrier(2)

    @llm_cached
    async def ask(prompt: str) -> str:
        async with asyncio.timeout(TIMEOUT):
            await both_inside.wait()
        return prompt

    assert sorted(await asyncio.gather(ask("a"), ask("b"))) == ["a", "b"]
    assert ask.cache_info().coalesced == 0


async def test_async_leader_exception_reaches_every_waiter_and_nothing_is_stored() -> None:
    release = asyncio.Event()
    calls: list[int] = []

    @llm_cached(backend="disk")
    async def ask(prompt: str) -> str:
        calls.append(1)
        if len(calls) == 1:
            await release.wait()
            raise ValueError("refused")
        return prompt

    tasks = [asyncio.create_task(ask("q")) for _ in range(WAITERS)]
    await async_wait_until(lambda: memo_of(ask).aflights.callers() == WAITERS)
    release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, ValueError) and str(o) == "refused" for o in outcomes)
    assert calls == [1]
    assert entries(ask) == 0
    assert len(memo_of(ask).aflights) == 0
    assert await ask("q") == "q"
    assert len(calls) == 2


async def test_async_cancelling_one_waiter_leaves_the_others_alone() -> None:
    ask, state = make_async()
    tasks = [asyncio.create_task(ask("q")) for _ in range(3)]
    await async_wait_until(lambda: memo_of(ask).aflights.callers() == 3)
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    assert memo_of(ask).aflights.callers() == 2
    state["release"].set()
    assert await tasks[0] == await tasks[2] == {"answer": "q", "tokens": [1, 2]}
    assert state["outcome"] == ["finished"]
    assert state["calls"] == 1 and entries(ask) == 1
    assert len(memo_of(ask).aflights) == 0


async def test_async_cancelling_the_leaders_caller_leaves_the_call_running() -> None:
    ask, state = make_async()
    leader = asyncio.create_task(ask("q"))
    await state["started"].wait()
    waiters = [asyncio.create_task(ask("q")) for _ in range(2)]
    await async_wait_until(lambda: memo_of(ask).aflights.callers() == 3)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    state["release"].set()
    results = await asyncio.gather(*waiters)
    assert results == [{"answer": "q", "tokens": [1, 2]}] * 2
    assert results[0] is not results[1]
    assert state["outcome"] == ["finished"]  # the underlying call was never cancelled
    assert state["calls"] == 1 and entries(ask) == 1
    assert len(memo_of(ask).aflights) == 0


async def test_async_cancelling_every_caller_cancels_the_call_and_stores_nothing() -> None:
    ask, state = make_async()
    tasks = [asyncio.create_task(ask("q")) for _ in range(3)]
    await async_wait_until(lambda: memo_of(ask).aflights.callers() == 3)
    await state["started"].wait()
    for t in tasks:
        t.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
    await async_wait_until(lambda: state["outcome"] == ["cancelled"])
    assert len(memo_of(ask).aflights) == 0
    assert entries(ask) == 0 and ask.cache_info().stores == 0
    state["release"].set()
    assert await ask("q") == {"answer": "q", "tokens": [1, 2]}  # the next call runs it again
    assert state["calls"] == 2


async def test_async_a_caller_arriving_after_everyone_left_starts_a_fresh_call() -> None:
    calls: list[str] = []
    gate = asyncio.Event()

    @llm_cached
    async def ask(prompt: str) -> str:
        calls.append("start")
        try:
            await gate.wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # cleanup that takes a moment
            await asyncio.sleep(0)
            raise
        return prompt

    first = asyncio.create_task(ask("q"))
    await async_wait_until(lambda: calls == ["start"])
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # The old call is still winding down: a new caller must not inherit its cancellation.
    second = asyncio.create_task(ask("q"))
    await async_wait_until(lambda: len(calls) == 2)
    gate.set()
    assert await second == "q"
    assert len(memo_of(ask).aflights) == 0


async def test_async_waiter_timeout_does_not_disturb_the_others() -> None:
    ask, state = make_async()
    keeper = asyncio.create_task(ask("q"))
    await state["started"].wait()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await ask("q")
    state["release"].set()
    assert await keeper == {"answer": "q", "tokens": [1, 2]}
    assert state["outcome"] == ["finished"] and len(memo_of(ask).aflights) == 0


async def test_async_reentrant_call_of_the_same_key_does_not_deadlock() -> None:
    attempts: list[int] = []

    @llm_cached
    async def ask(prompt: str) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            return await ask(prompt)
        return prompt.upper()

    assert await asyncio.wait_for(ask("q"), TIMEOUT) == "Q"
    assert len(memo_of(ask).aflights) == 0


async def test_async_a_miss_just_before_the_leader_stored_does_not_call_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    @llm_cached(backend="disk")
    async def ask(prompt: str) -> str:
        calls.append(prompt)
        return prompt

    memo = memo_of(ask)
    real_lookup = memo.alookup
    raced: list[bool] = []

    async def lookup_then_lose_the_race(call: Any, *rest: Any) -> Any:
        value = await real_lookup(call, *rest)
        if not raced:
            raced.append(True)
            await ask("q")
        return value

    monkeypatch.setattr(memo, "alookup", lookup_then_lose_the_race)
    assert await ask("q") == "q"
    assert calls == ["q"]
    assert ask.cache_info().coalesced == 1


async def test_async_flights_registry_unit() -> None:
    flights = AsyncFlights()

    async def value() -> list[int]:
        return [1]

    async def boom() -> None:
        raise KeyError("x")

    assert await flights.run("k", value, copy.deepcopy) == ([1], True)
    with pytest.raises(KeyError):
        await flights.run("k", boom, copy.deepcopy)
    assert len(flights) == 0 and flights.callers() == 0


def test_async_flights_are_per_event_loop() -> None:
    """Two loops in two threads: the same key runs in each, no cross-loop awaiting."""
    inside = threading.Barrier(2)
    calls: list[int] = []

    @llm_cached
    async def ask(prompt: str) -> str:
        calls.append(1)
        await asyncio.to_thread(inside.wait, TIMEOUT)
        return prompt

    results, errors = run_threads(2, lambda i: asyncio.run(ask("q")))
    assert errors == []
    assert results == ["q", "q"] and len(calls) == 2
    assert len(memo_of(ask).aflights) == 0
