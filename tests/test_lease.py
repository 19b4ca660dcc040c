"""Cross-process single-flight: a lease in the backend, taken with set-if-absent.

In-process tests use two wrappers of one function (each with its own in-memory
single-flight), which is what two processes look like to the backend; the
process tests use real spawned processes on one disk store, including a leader
killed with SIGKILL in the middle of its call.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_memo import MemoryBackend, llm_cached
from llm_memo._core import Memo
from llm_memo._lease import LEASE_SUFFIX, lease_key, poll_delays
from llm_memo.backends import MISS, Backend
from llm_memo.backends.disk import DiskBackend

TIMEOUT = 20.0


def memo_of(f: Any) -> Memo:
    """The memo behind a cached function (its counters, registries and backend)."""
    memo: Memo = f._self_memo
    return memo


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


# ------------------------------------------------------------------ backend add()


class TickingClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_memory_add_is_set_if_absent_and_respects_expiry() -> None:
    clock = TickingClock()
    backend = MemoryBackend(clock=clock)
    assert backend.add("ns", "k", b"a", 10) is True
    assert backend.add("ns", "k", b"b", 10) is False
    assert backend.get("ns", "k") == b"a"
    clock.now = 10.0
    assert backend.add("ns", "k", b"c", None) is True  # the old one expired: absent
    assert backend.add("ns", "k", b"d", 10) is False  # no expiry now
    assert backend.get("ns", "k") == b"c" and backend.nbytes == 1


def test_memory_add_has_exactly_one_winner_among_threads() -> None:
    backend = MemoryBackend()
    start = threading.Barrier(8)
    wins: list[bool] = []

    def racer(i: int) -> None:
        start.wait(TIMEOUT)
        wins.append(backend.add("ns", "k", str(i).encode(), 10))

    threads = [threading.Thread(target=racer, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert sorted(wins) == [False] * 7 + [True]


def test_disk_add_is_set_if_absent_and_respects_expiry(tmp_path: Path) -> None:
    backend = DiskBackend(tmp_path / "d")
    try:
        assert backend.add("ns", "k", b"a", 0.2) is True
        assert backend.add("ns", "k", b"b", 10) is False
        assert backend.get("ns", "k") == b"a"
        wait_until(lambda: backend.get("ns", "k") is MISS)
        assert backend.add("ns", "k", b"c", 10) is True
        assert backend.get("ns", "k") == b"c"
    finally:
        backend.close()


def test_lease_key_and_delays() -> None:
    key = "ab" * 32
    assert lease_key(key) != key and len(lease_key(key)) == 64
    first, longest = poll_delays(30)
    assert 0 < first <= longest <= 1.0
    assert poll_delays(0.1)[1] <= 0.1


def test_lease_option_is_validated() -> None:
    with pytest.raises(ValueError, match="lease"):
        llm_cached(lease=0)(lambda x: x)
    f = llm_cached(lease="1m")(lambda x: x)
    assert f.cache_parameters()["lease"] == 60.0
    assert llm_cached(lambda x: x).cache_parameters()["lease"] is None  # off by default


# ------------------------------------------------------------------ in process: two wrappers, one store


def twins(backend: Any, lease: float, fn: Callable[..., Any]) -> tuple[Any, Any]:
    """Two wrappers of one function: separate single-flights, one store, like two processes."""
    first = llm_cached(backend=backend, lease=lease, namespace="tests.lease")(fn)
    return first, first.with_options()


@pytest.mark.parametrize("backend", ["memory", "disk"])
def test_follower_waits_for_the_holders_result(backend: str) -> None:
    calls: list[str] = []
    release = threading.Event()

    def ask(prompt: str) -> dict[str, str]:
        calls.append(prompt)
        release.wait(TIMEOUT)
        return {"answer": prompt}

    a, b = twins(backend, 30, ask)
    results: list[Any] = []
    holder = threading.Thread(target=lambda: results.append(a("q")), daemon=True)
    holder.start()
    wait_until(lambda: calls == ["q"])
    follower = threading.Thread(target=lambda: results.append(b("q")), daemon=True)
    follower.start()
    wait_until(lambda: b.cache_info().misses == 1)  # the follower missed and is polling
    release.set()
    holder.join(TIMEOUT)
    follower.join(TIMEOUT)
    assert results == [{"answer": "q"}, {"answer": "q"}]
    assert calls == ["q"]
    assert b.cache_info().coalesced == 1 and b.cache_info().stores == 0
    memo = memo_of(a)
    assert list(memo.backend.entries(memo.namespace + LEASE_SUFFIX)) == []  # released


def test_holder_exception_releases_the_lease_at_once() -> None:
    calls: list[str] = []
    release = threading.Event()

    def ask(prompt: str) -> str:
        calls.append(prompt)
        if len(calls) == 1:
            release.wait(TIMEOUT)
            raise RuntimeError("model overloaded")
        return prompt.upper()

    a, b = twins("memory", 60, ask)  # a long lease: waiting it out would fail the time bound
    errors: list[BaseException] = []

    def holder() -> None:
        try:
            a("q")
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    wait_until(lambda: len(calls) == 1)
    got: list[str] = []
    f = threading.Thread(target=lambda: got.append(b("q")), daemon=True)
    f.start()
    wait_until(lambda: b.cache_info().misses == 1)
    started = time.monotonic()
    release.set()
    f.join(TIMEOUT)
    assert time.monotonic() - started < 10  # far less than the 60 s lease
    assert len(errors) == 1 and got == ["Q"]
    assert calls == ["q", "q"]  # the follower took over and called


def test_a_slow_but_live_holder_keeps_its_lease() -> None:
    calls: list[str] = []

    def ask(prompt: str) -> str:
        calls.append(prompt)
        if len(calls) == 1:
            time.sleep(1.2)  # four times the lease: only renewals keep the follower out
        return prompt

    a, b = twins("disk", 0.3, ask)
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(a("q")), daemon=True)
    t.start()
    wait_until(lambda: len(calls) == 1)
    assert b("q") == "q"
    t.join(TIMEOUT)
    assert got == ["q"] and calls == ["q"]


def test_the_holder_checks_the_store_once_more_after_taking_the_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def ask(prompt: str) -> str:
        calls.append(prompt)
        return prompt

    a, b = twins("memory", 30, ask)
    memo = memo_of(b)
    real_lookup = memo.lookup

    def stale_lookup(call: Any, *rest: Any) -> Any:
        value = real_lookup(call, *rest)
        a("q")  # another process stores the result right after our miss
        return value

    monkeypatch.setattr(memo, "lookup", stale_lookup)
    assert b("q") == "q"
    assert calls == ["q"]
    assert b.cache_info().coalesced == 1


@pytest.mark.parametrize("mode", ["refresh", "readonly"])
def test_no_lease_outside_readwrite(mode: Any) -> None:
    calls: list[str] = []
    memory = MemoryBackend()

    def ask(prompt: str) -> str:
        calls.append(prompt)
        return prompt

    f = llm_cached(backend=memory, lease=30, mode=mode)(ask)
    lease_ns = memo_of(f).namespace + LEASE_SUFFIX
    memory.set(lease_ns, lease_key(f.cache_key("q")), b"someone else", 30)
    assert f("q") == "q"  # not blocked by another holder's lease
    assert calls == ["q"]


def test_backend_without_add_falls_back_to_a_best_effort_lease(caplog: pytest.LogCaptureFixture) -> None:
    class NoAdd(MemoryBackend):
        atomic_add = False
        add = Backend.add  # the interface's emulation

    calls: list[str] = []

    def ask(prompt: str) -> str:
        calls.append(prompt)
        return prompt

    a, b = twins(NoAdd(), 30, ask)
    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        assert a("q") == "q" and b("q") == "q"
    assert calls == ["q"]
    assert "best-effort" in caplog.text


def test_lease_faults_fail_open() -> None:
    class Broken(MemoryBackend):
        def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
            raise OSError("store is down")

    calls: list[str] = []

    def ask(prompt: str) -> str:
        calls.append(prompt)
        return prompt

    f = llm_cached(backend=Broken(), lease=30)(ask)
    assert f("q") == "q" and calls == ["q"]
    assert f.cache_info().errors == 1


async def test_async_follower_waits_for_the_holders_result() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def ask(prompt: str) -> str:
        calls.append(prompt)
        await release.wait()
        return prompt.upper()

    a, b = twins("disk", 30, ask)
    first = asyncio.create_task(a("q"))
    while calls != ["q"]:
        await asyncio.sleep(0.001)
    second = asyncio.create_task(b("q"))
    while b.cache_info().misses != 1:
        await asyncio.sleep(0.001)
    release.set()
    assert list(await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)) == ["Q", "Q"]
    assert calls == ["q"] and b.cache_info().coalesced == 1


async def test_async_cancelled_holder_releases_the_lease() -> None:
    calls: list[str] = []
    started = asyncio.Event()

    async def ask(prompt: str) -> str:
        calls.append(prompt)
        if len(calls) == 1:
            started.set()
            await asyncio.Event().wait()
        return prompt.upper()

    a, b = twins("memory", 60, ask)
    holder = asyncio.create_task(a("q"))
    await started.wait()
    follower = asyncio.create_task(b("q"))
    while b.cache_info().misses != 1:
        await asyncio.sleep(0.001)
    holder.cancel()
    assert await asyncio.wait_for(follower, 10) == "Q"  # long before the 60 s lease ends
    assert calls == ["q", "q"]


# ------------------------------------------------------------------ real processes on one disk store


LEASE = 1.5


def _worker(store: str, role: str, start: Any, started: Any, out: Any) -> None:
    """Call the shared cached function; report (role, result, whether this process called, when)."""
    called: list[float] = []

    @llm_cached(backend=store, lease=LEASE, namespace="tests.lease.proc", ignore=["role"])
    def ask(prompt: str, role: str) -> str:
        called.append(time.time())
        if role == "hang":
            started.set()
            time.sleep(3600)  # killed here, holding the lease
        elif role == "slow":
            started.set()
            time.sleep(0.8)
        return f"answer to {prompt} from {os.getpid()}"

    start.wait(TIMEOUT)
    result = ask("q", role=role)
    out.put((role, result, called[0] if called else None, time.time()))


def _spawn(store: str, roles: list[str], start: Any, started: Any, out: Any, ctx: Any) -> list[Any]:
    procs = [ctx.Process(target=_worker, args=(store, role, start, started, out)) for role in roles]
    for p in procs:
        p.start()
    return procs


def _collect(out: Any, n: int, procs: list[Any], timeout: float = 60) -> list[Any]:
    """n reports from the queue; fails fast when the workers died without reporting."""
    reports: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(reports) < n:
        try:
            reports.append(out.get(timeout=0.2))
        except queue.Empty:
            if all(not p.is_alive() for p in procs) or time.monotonic() > deadline:
                raise AssertionError(f"workers died or hung; reports so far: {reports}") from None
    return reports


def _reap(procs: list[Any]) -> None:
    for p in procs:
        p.join(TIMEOUT)
        if p.is_alive():
            p.kill()
            p.join()
        p.close()


def test_processes_make_one_call_between_them(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    store = f"disk:{tmp_path / 'store'}"
    roles = ["slow"] * 4
    start, started, out = ctx.Barrier(len(roles)), ctx.Event(), ctx.Queue()
    procs = _spawn(store, roles, start, started, out, ctx)
    try:
        reports = _collect(out, len(roles), procs)
    finally:
        _reap(procs)
    callers = [r for r in reports if r[2] is not None]
    assert len(callers) == 1, reports  # one process called; the others waited for its result
    assert len({r[1] for r in reports}) == 1


def test_processes_take_over_from_a_leader_killed_mid_call(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    store = f"disk:{tmp_path / 'store'}"
    out = ctx.Queue()
    # Kept referenced until the children have them: a collected primitive is unlinked.
    started, unused, solo, trio = ctx.Event(), ctx.Event(), ctx.Barrier(1), ctx.Barrier(3)
    leader = _spawn(store, ["hang"], solo, started, out, ctx)
    followers: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while not started.wait(0.2):
            assert leader[0].is_alive() and time.monotonic() < deadline, "the leader never started its call"
        taken_at = time.time()  # the lease was taken just before this
        followers = _spawn(store, ["slow", "slow", "slow"], trio, unused, out, ctx)
        time.sleep(0.3)  # let the followers reach the lease (a follower arriving later works too)
        os.kill(leader[0].pid, signal.SIGKILL)
        killed_at = time.time()
        reports = _collect(out, len(followers), followers)
    finally:
        _reap(leader + followers)
    callers = [r for r in reports if r[2] is not None]
    assert len(callers) == 1, reports  # exactly one follower took over
    assert len({r[1] for r in reports}) == 1
    took_over = callers[0][2]
    assert took_over >= taken_at + LEASE * 0.8  # nobody called while the lease was held...
    assert max(r[3] for r in reports) - killed_at < LEASE + 10  # ...nor waited long past it
