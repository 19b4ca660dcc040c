"""Guarantees 4 and 6: concurrency, and bounded resources.

4. Many processes, each with many threads, share one disk store and one SQLite file;
   children are started with fork, spawn and forkserver *after* the parent used the
   store; async callers under load keep the event loop free (a heartbeat shows it)
   while the disk is slow.
6. The memory backend stays within its bounds over 100,000 distinct calls, and the
   in-flight registries drain to empty after errors and cancellations.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import random
import threading
import time
import warnings
from collections.abc import Generator
from multiprocessing.context import ForkContext, ForkServerContext, SpawnContext
from pathlib import Path
from typing import Any, cast

import pytest
from _fault_helpers import (
    LockHolder,
    deterministic_answer,
    integrity_check,
    queue_worker,
    seeded_random,
    stress,
)
from _internals import memo_of

from llm_memo import llm_cached
from llm_memo._core import _MAX_RAW_BYTES, _RAW_ENTRY_OVERHEAD
from llm_memo.backends import StoredEntry, from_url
from llm_memo.backends.disk import DiskBackend
from llm_memo.backends.memory import MemoryBackend
from llm_memo.backends.sqlite import SQLiteBackend

LOCAL = ("disk", "sqlite")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return seeded_random(request)


def _spec(kind: str, root: Path) -> str:
    return f"disk:{root / 'disk'}" if kind == "disk" else f"sqlite:{root / 'shared.sqlite3'}"


def _db_file(kind: str, root: Path) -> Path:
    return root / "disk" / "cache.db" if kind == "disk" else root / "shared.sqlite3"


def _size(i: int) -> int:
    return 200 + (i * 37) % 3000  # as in _fault_helpers.shared_store_worker


def _run_children(
    method: str, spec: str, namespace: str, processes: int, threads: int, keys: int, rounds: int
) -> list[dict[str, Any]]:
    # Every start method's context has a Process class; the base class does not declare it.
    ctx = cast(SpawnContext | ForkContext | ForkServerContext, multiprocessing.get_context(method))
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=queue_worker, args=(queue, spec, namespace, w, keys, threads, rounds))
        for w in range(processes)
    ]
    with warnings.catch_warnings():
        # Python 3.12+ warns when forking a process that has threads; other tests'
        # servers (the fake LLM API) may have left one running. The store has none.
        warnings.simplefilter("ignore", DeprecationWarning)
        for proc in procs:
            proc.start()
    try:
        reports = [queue.get(timeout=180) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
        queue.close()
        queue.join_thread()
    crashes = [r["crash"] for r in reports if "crash" in r]
    assert not crashes, crashes[0]
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return reports


def _check_reports(reports: list[dict[str, Any]]) -> None:
    for report in reports:
        assert report["wrong"] == [], report["wrong"][:5]  # every value was the right one
        assert report["errors"] == [], report["errors"][0]
        assert report["info"][5] == 0, f"backend faults in worker {report['worker']}: {report['info']}"


# --------------------------------------------------------------------------- processes and threads


def _processes_and_threads(kind: str, root: Path, processes: int, threads: int, rounds: int) -> None:
    spec = _spec(kind, root)
    keys = 60
    reports = _run_children("spawn", spec, "mp", processes, threads, keys, rounds)
    _check_reports(reports)
    hits = sum(r["info"][0] for r in reports)
    assert hits > 0
    assert integrity_check(_db_file(kind, root)) == "ok"
    backend = from_url(spec)
    stored = {e.key for e in backend.entries("mp")}

    @llm_cached(backend=spec, namespace="mp", version=1)
    def answer(i: int) -> dict[str, Any]:
        return deterministic_answer(i, _size(i))

    assert len(stored) <= keys and stored <= {answer.cache_key(i) for i in range(keys)}


@pytest.mark.parametrize("kind", LOCAL)
def test_many_processes_and_threads_on_one_store(kind: str, tmp_path: Path) -> None:
    _processes_and_threads(kind, tmp_path, processes=4, threads=4, rounds=60)


@stress
@pytest.mark.parametrize("kind", LOCAL)
def test_stress_many_processes_and_threads(kind: str, tmp_path: Path) -> None:
    _processes_and_threads(kind, tmp_path, processes=8, threads=8, rounds=400)


# --------------------------------------------------------------------------- after the parent used it


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("kind", LOCAL)
def test_children_started_after_the_parent_used_the_store(kind: str, method: str, tmp_path: Path) -> None:
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{method} is not available here")
    spec = _spec(kind, tmp_path)
    keys = 30

    @llm_cached(backend=spec, namespace="inherited", version=1)
    def answer(i: int) -> dict[str, Any]:
        return deterministic_answer(i, _size(i))

    # The parent opens the store (connections, a read snapshot, a write) before children start.
    for i in range(0, keys, 2):
        assert answer(i) == deterministic_answer(i, _size(i))
    assert answer(0) == deterministic_answer(0, _size(0)) and answer.cache_info().hits == 1
    backend = from_url(spec)
    # The stores list lazily, with a generator: one a parent leaves open, and closes later.
    listing = cast(Generator[StoredEntry, None, None], backend.entries("inherited"))
    next(listing)  # an unfinished iteration, as a parent might hold one while forking
    reports = _run_children(method, spec, "inherited", processes=3, threads=3, keys=keys, rounds=30)
    listing.close()
    _check_reports(reports)
    # Children read what the parent wrote...
    assert sum(r["info"][0] for r in reports) > 0
    # ...and the parent's own connections still work, and see what the children wrote.
    before = answer.cache_info()
    for i in range(keys):
        assert answer(i) == deterministic_answer(i, _size(i))
    after = answer.cache_info()
    assert after.errors == before.errors == 0
    assert after.hits - before.hits == keys  # every key: stored by the parent or a child
    assert integrity_check(_db_file(kind, tmp_path)) == "ok"


# --------------------------------------------------------------------------- async under load


@pytest.mark.parametrize("kind", LOCAL)
async def test_async_callers_never_block_the_event_loop_on_disk_io(kind: str, tmp_path: Path) -> None:
    """While another process holds the write lock, writes wait (in threads), the loop does not."""
    backend: Any = (
        DiskBackend(tmp_path / "disk", timeout=5)
        if kind == "disk"
        else SQLiteBackend(tmp_path / "shared.sqlite3", timeout=5)
    )
    computed: list[int] = []

    @llm_cached(backend=backend, namespace="async-load")
    async def answer(i: int) -> dict[str, Any]:
        computed.append(i)
        await asyncio.sleep(0)
        return deterministic_answer(i, _size(i))

    for i in range(10):
        await answer(i)  # stored before the lock is taken

    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def staggered(i: int) -> dict[str, Any]:
        # Arrivals spread over ~60 ms: the loop's own work per tick stays small, so a
        # long gap can only be the loop waiting on I/O.
        await asyncio.sleep((i % 30) * 0.002)
        return await answer(i % 40)

    hold = 2.0
    holder = LockHolder(_db_file(kind, tmp_path))
    release = threading.Timer(hold, holder.release)  # the writes wait that long
    beat = asyncio.create_task(heartbeat())
    # A full collection of a large heap (late in a whole run) stalls any loop for a
    # good part of a second: only the objects made from here on are collected.
    gc.freeze()
    try:
        release.start()
        started = time.monotonic()
        results = await asyncio.gather(*(staggered(i) for i in range(300)))
        elapsed = time.monotonic() - started
    finally:
        gc.unfreeze()
        await asyncio.to_thread(release.join)  # never block the loop being measured
        holder.close()
    done.set()
    await beat
    assert results == [deterministic_answer(i % 40, _size(i % 40)) for i in range(300)]
    assert elapsed > hold, "the lock did not slow the writes: the test proves nothing"
    # A write run on the loop would stall it until the lock is released: nearly all of
    # `hold`. Half of it leaves a wide margin for a loaded machine's scheduling.
    assert max(gaps) < hold / 2, f"the event loop was blocked for {max(gaps):.3f}s"
    assert answer.cache_info().hits >= 10  # reads went on while writes waited
    assert answer.cache_info().errors == 0  # every wait ended within the timeout
    backend.close()


# --------------------------------------------------------------------------- guarantee 6: bounds


def _bounded_memory(calls: int) -> None:
    default = MemoryBackend()
    small = MemoryBackend(max_entries=None, max_bytes=512 * 1024)

    @llm_cached(backend=default, namespace="bounded")
    def ask(i: int) -> str:
        return f"answer {i} " + "x" * (i % 100)

    @llm_cached(backend=small, namespace="bounded-bytes")
    def big(i: int) -> str:
        return "y" * (2000 + i % 3000)

    @llm_cached(backend=default, namespace="sampled", samples=3)
    def sampled(i: int) -> int:
        return i

    for i in range(calls):
        assert ask(i) == f"answer {i} " + "x" * (i % 100)
        if i % 10 == 0:
            big(i)
            sampled(i)
        if i % 20_000 == 0:
            assert len(default) <= 10_000 and small.nbytes <= 512 * 1024
    assert len(default) == 10_000  # full, and never beyond the default bound
    assert default.nbytes <= 256 * 1024 * 1024
    assert small.nbytes <= 512 * 1024
    memo = memo_of(ask)
    # The key shortcut cache is bounded too (by bytes, counting each entry's overhead).
    assert memo._raw_size <= _MAX_RAW_BYTES
    assert len(memo._raw_keys) <= _MAX_RAW_BYTES // _RAW_ENTRY_OVERHEAD
    assert len(memo_of(sampled)._turns) <= 100_000
    assert len(memo.flights) == 0 and len(memo.aflights) == 0
    assert ask.cache_info().misses == calls


def test_the_memory_backend_stays_bounded_over_100k_distinct_calls() -> None:
    _bounded_memory(100_000)


@stress
def test_stress_the_memory_backend_over_a_million_calls() -> None:
    _bounded_memory(1_000_000)


class Flaky(Exception):
    pass


def test_the_thread_registry_drains_after_errors(rng: random.Random) -> None:
    seeds = [rng.randrange(2**32) for _ in range(16)]

    @llm_cached(namespace="drain-threads")
    def ask(i: int, salt: int) -> int:
        time.sleep(0.001)
        r = random.Random(i * 7919 + salt)
        if r.random() < 0.3:
            raise Flaky(i)
        if r.random() < 0.05:
            raise KeyboardInterrupt
        return i

    def worker(t: int) -> None:
        r = random.Random(seeds[t])
        for _ in range(200):
            i, salt = r.randrange(5), r.randrange(3)
            with contextlib.suppress(Flaky, KeyboardInterrupt):
                assert ask(i, salt) == i

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in pool)
    memo = memo_of(ask)
    assert len(memo.flights) == 0 and memo.flights.waiting() == 0


async def test_the_async_registry_drains_after_errors_and_cancellations(rng: random.Random) -> None:
    @llm_cached(namespace="drain-async")
    async def ask(i: int, salt: int) -> int:
        r = random.Random(i * 7919 + salt)
        await asyncio.sleep(r.uniform(0, 0.02))
        if r.random() < 0.3:
            raise Flaky(i)
        return i

    async def call(i: int, salt: int) -> None:
        with contextlib.suppress(Flaky):
            assert await ask(i, salt) == i

    for _ in range(5):
        tasks = [asyncio.create_task(call(rng.randrange(6), rng.randrange(3))) for _ in range(200)]
        await asyncio.sleep(rng.uniform(0, 0.015))
        for task in rng.sample(tasks, 80):
            task.cancel()  # leaders and waiters, at random moments
        await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0)
    memo = memo_of(ask)
    assert len(memo.aflights) == 0 and memo.aflights.callers() == 0
