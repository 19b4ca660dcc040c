"""Guarantee 2: fail-open. No backend fault reaches the caller; ``strict=True`` raises BackendError.

Every scenario runs through ``@llm_cached`` against a real store and a real fault:
a lock held by another process, damaged and truncated files, a full filesystem (a
real tmpfs when it can be mounted, else a file-size limit in a child process), and a
real ``redis-server`` killed, paused, restarted into LOADING, or out of memory. Each
checks that every call returns the correct value, in bounded time; that warnings are
rate-limited; that caching comes back once the fault is gone; and that strict mode
turns the same faults into ``BackendError`` (with the driver's error as ``__cause__``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _fault_helpers import (
    FullDisk,
    LockHolder,
    assert_rate_limited,
    llm_warnings,
    run_with_file_size_limit,
    seeded_random,
    stress,
)
from _redis_fixtures import RedisServer, server_version
from conftest import FakeClock

from llm_memo import BackendError, llm_cached
from llm_memo.backends.disk import DiskBackend
from llm_memo.backends.sqlite import SQLiteBackend

LOCAL = ("disk", "sqlite")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    return seeded_random(request)


@pytest.fixture(autouse=True)
def _warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_memo")


def expected(i: int) -> dict[str, Any]:
    return {"i": i, "text": f"answer {i} " * (1 + i % 7)}


class Cached:
    """A fail-open and a strict cached function on one backend, and what they computed."""

    def __init__(self, backend: Any, namespace: str = "faults") -> None:
        self.computed: list[int] = []
        lock = threading.Lock()

        def answer(i: int) -> dict[str, Any]:
            with lock:
                self.computed.append(i)
            return expected(i)

        self.open = llm_cached(backend=backend, namespace=namespace)(answer)
        self.strict = llm_cached(backend=backend, namespace=namespace, strict=True)(answer)

    def check(self, i: int) -> float:
        """One fail-open call: the right value, never an exception. Returns its duration."""
        started = time.monotonic()
        assert self.open(i) == expected(i)
        return time.monotonic() - started

    def strict_outcome(self, i: int) -> str:
        """One strict call: the right value, or BackendError caused by the driver; nothing else."""
        try:
            assert self.strict(i) == expected(i)
        except BackendError as exc:
            cause = exc.__cause__
            assert cause is not None, "BackendError must chain the driver's error"
            return f"BackendError: {type(cause).__name__}: {cause}"
        return "ok"

    def hits_again(self, i: int, tries: int = 5) -> bool:
        """Whether caching works: a store then a hit of a fresh key (within a few tries)."""
        for attempt in range(tries):
            key = i + attempt
            self.check(key)
            before = len(self.computed)
            self.check(key)
            if len(self.computed) == before:
                return True
        return False


def _local(kind: str, root: Path, **kw: Any) -> Any:
    return DiskBackend(root / "disk", **kw) if kind == "disk" else SQLiteBackend(root / "c.sqlite3", **kw)


def _db_file(backend: Any) -> Path:
    return backend.directory / "cache.db" if isinstance(backend, DiskBackend) else backend.path


def _remove_store(backend: Any) -> None:
    if isinstance(backend, DiskBackend):
        if backend.directory.is_dir():
            shutil.rmtree(backend.directory)
        else:
            backend.directory.unlink(missing_ok=True)
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(f"{backend.path}{suffix}")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- locked


@pytest.mark.parametrize("kind", LOCAL)
def test_a_database_locked_by_another_process(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = _local(kind, tmp_path, timeout=0.05)
    cached = Cached(backend)
    for i in range(5):
        cached.check(i)
    with LockHolder(_db_file(backend)):
        durations = [cached.check(i % 12) for i in range(24)]  # stored ones and new ones
        assert max(durations) < 3.0, durations  # a bounded wait, never a hang
        outcomes = {cached.strict_outcome(100 + i) for i in range(3)}
        # SQLite says "database is locked"; diskcache raises its own (message-less) Timeout.
        assert any(
            o.startswith(("BackendError: OperationalError: database is locked", "BackendError: Timeout"))
            for o in outcomes
        ), outcomes
    assert cached.open.cache_info().errors >= 1
    assert_rate_limited(caplog, faulted_calls=cached.open.cache_info().errors)
    assert cached.hits_again(1000)  # the lock is gone: caching is back, same backend object
    backend.close()


# --------------------------------------------------------------------------- damaged files


def _damage(path: Path, how: str, rng: random.Random) -> None:
    data = path.read_bytes()
    if how == "garbage-pages":
        buf = bytearray(data)
        for page in range(1, len(buf) // 4096):
            if rng.random() < 0.7:
                start = page * 4096 + rng.randrange(0, 2048)
                buf[start : start + 1024] = rng.randbytes(1024)
        path.write_bytes(bytes(buf))
    elif how == "garbage-every-page":  # the header survives: the file opens, every read fails
        buf = bytearray(data)
        for page in range(1, len(buf) // 4096 + 1):
            buf[page * 4096 : (page + 1) * 4096] = rng.randbytes(4096)
        path.write_bytes(bytes(buf[: len(data)]))
    elif how == "garbage-header":
        path.write_bytes(rng.randbytes(100) + data[100:])
    elif how == "truncated-half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "truncated-1k":
        path.write_bytes(data[:1000])
    elif how == "not-a-database":
        path.write_bytes(b"this is not a database\n" * 500)
    elif how == "garbage-wal":
        Path(f"{path}-wal").write_bytes(rng.randbytes(64 * 1024))
    elif how == "replaced-by-a-directory":
        path.unlink()
        path.mkdir()
    else:  # pragma: no cover
        raise ValueError(how)


DAMAGES = [
    "garbage-pages",
    "garbage-every-page",
    "garbage-header",
    "truncated-half",
    "truncated-1k",
    "not-a-database",
    "garbage-wal",
    "replaced-by-a-directory",
]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", LOCAL)
def test_a_damaged_store_is_a_miss_and_recovers_once_replaced(
    kind: str, how: str, tmp_path: Path, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    first = _local(kind, tmp_path)
    warm = Cached(first)
    for i in range(60):
        warm.check(i)  # ~60 entries over many pages (some above the compression threshold)
    first.close()
    _damage(_db_file(first), how, rng)

    backend = _local(kind, tmp_path)  # as a new process would open it
    cached = Cached(backend)
    for i in rng.sample(range(90), 40):
        cached.check(i)  # stored ones, damaged ones and new ones: always the right value
    outcomes = [cached.strict_outcome(i) for i in range(0, 90, 9)]
    assert all(o == "ok" or o.startswith("BackendError") for o in outcomes)
    if how != "garbage-wal":  # SQLite ignores a WAL whose header does not check out
        assert cached.open.cache_info().errors >= 1, "the damage was not even noticed"
    assert_rate_limited(caplog, faulted_calls=max(1, cached.open.cache_info().errors))

    _remove_store(backend)  # what an operator does with a damaged cache: delete it
    assert cached.hits_again(10_000), "caching did not come back after the damaged store was removed"
    backend.close()


@pytest.mark.parametrize("kind", LOCAL)
def test_a_store_path_taken_by_something_else(kind: str, tmp_path: Path) -> None:
    """The store's directory is a file (disk), or the SQLite file is a directory."""
    target = tmp_path / "disk" if kind == "disk" else tmp_path / "c.sqlite3"
    if kind == "disk":
        target.write_bytes(b"a file where a directory should be")
    else:
        target.mkdir()
    backend = _local(kind, tmp_path)
    cached = Cached(backend)
    for i in range(10):
        cached.check(i % 3)
    assert cached.open.cache_info().errors >= 1
    assert cached.strict_outcome(1).startswith("BackendError")
    _remove_store(backend)
    assert cached.hits_again(100)
    backend.close()


# --------------------------------------------------------------------------- full disk


def _full_disk_scenario(
    kind: str, directory: Path, fill: Callable[[], None], free: Callable[[], None], calls: int
) -> dict[str, Any]:
    """Runs in this process (tmpfs) or in a file-size-limited child: plain data out."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("llm_memo").addHandler(handler)
    try:
        backend = _local(kind, directory)
        cached = Cached(backend)
        for i in range(10):
            cached.check(i)
        fill()
        durations = [cached.check(i % 40) for i in range(calls)]
        full_errors = cached.open.cache_info().errors
        strict = [cached.strict_outcome(500 + i) for i in range(3)]
        free()
        recovered = cached.hits_again(1000)
        backend.close()
        # A store created while the disk is full.
        fill()
        late = _local(kind, directory / "late")
        late_cached = Cached(late, namespace="late")
        for i in range(10):
            late_cached.check(i % 4)
        free()
        late_recovered = late_cached.hits_again(2000)
        late.close()
    finally:
        logging.getLogger("llm_memo").removeHandler(handler)
    groups: dict[tuple[str, tuple[str, ...]], int] = {}
    for r in records:
        args = tuple(str(a) for a in (r.args if isinstance(r.args, tuple) else ())[:3])
        groups[(str(r.msg), args)] = groups.get((str(r.msg), args), 0) + 1
    return {
        "max_duration": max(durations),
        "full_errors": full_errors,
        "strict": strict,
        "recovered": recovered,
        "late_recovered": late_recovered,
        "warnings": [r.getMessage() for r in records],
        "most_repeated": max(groups.values(), default=0),
    }


def _run_full_disk(kind: str, tmp_path: Path, calls: int) -> dict[str, Any]:
    disk = FullDisk(tmp_path, size_mib=16)
    try:
        print(f"full disk by {disk.method}")
        if disk.method == "tmpfs":
            return _full_disk_scenario(kind, disk.dir, disk.fill, disk.free, calls)
        import resource

        def fill() -> None:  # every write to a regular file now fails (EFBIG)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

        def free() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

        return run_with_file_size_limit(
            lambda: _full_disk_scenario(kind, disk.dir, fill, free, calls), resource.RLIM_INFINITY
        )
    finally:
        disk.close()


@pytest.mark.parametrize("kind", LOCAL)
def test_a_full_disk(kind: str, tmp_path: Path) -> None:
    seen = _run_full_disk(kind, tmp_path, calls=120)
    assert seen["max_duration"] < 5.0
    assert seen["full_errors"] >= 1  # the fault was real
    assert all(o == "ok" or o.startswith("BackendError") for o in seen["strict"])
    failures = [o for o in seen["strict"] if o != "ok"]
    assert failures, "strict mode must raise BackendError while the disk is full"
    # The error says what is wrong (full), not a secondary error from cleaning up.
    assert all("full" in o.lower() or "space" in o.lower() or "i/o" in o.lower() for o in failures), failures
    assert seen["most_repeated"] <= 1, seen["warnings"]
    assert seen["recovered"], "caching did not come back after space was freed"
    assert seen["late_recovered"], "a store created on a full disk never started caching"


# --------------------------------------------------------------------------- Redis


def _redis_backend(server: RedisServer, clock: FakeClock, **kw: Any) -> Any:
    from llm_memo.backends.redis import RedisBackend

    return RedisBackend(server.url, clock=clock, **kw)  # the documented 1 s timeouts


@contextlib.contextmanager
def _always_running(server: RedisServer) -> Iterator[RedisServer]:
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.cont()  # never leave a stopped server behind


def _threads(n: int, body: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            body(t)
        except BaseException as exc:  # reported to the test, not lost in a thread
            errors.append(exc)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(n)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in pool), "a caller hung"
    return errors


def _redis_outage(
    server: RedisServer,
    clock: FakeClock,
    rng: random.Random,
    caplog: pytest.LogCaptureFixture,
    break_it: Callable[[], None],
    mend_it: Callable[[], None],
    *,
    threads: int = 4,
) -> None:
    """Callers in threads keep calling while the server breaks under them, at a random moment."""
    backend = _redis_backend(server, clock)
    cached = Cached(backend)
    for i in range(10):
        cached.check(i)
    durations: list[float] = []
    after_break: list[int] = []
    done, broken = threading.Event(), threading.Event()

    def worker(t: int) -> None:
        r = random.Random(rng.random() + t)
        while not done.is_set():
            durations.append(cached.check(r.randrange(30)))
            if broken.is_set():
                after_break.append(t)

    pool = threading.Thread(target=lambda: errors.extend(_threads(threads, worker)))
    errors: list[BaseException] = []
    with _always_running(server):
        pool.start()
        time.sleep(rng.uniform(0.02, 0.2))  # mid-run: callers are between and inside calls
        break_it()
        broken.set()
        deadline = time.monotonic() + 10
        while len(after_break) < 20 * threads and time.monotonic() < deadline:
            time.sleep(0.05)
        done.set()
        pool.join(timeout=60)
        assert not pool.is_alive(), "a caller hung"
        assert not errors, errors
        assert len(after_break) >= 20 * threads
        assert max(durations) < 2.5, f"a call took {max(durations):.2f}s (timeouts are 1 s)"
        faulted = cached.open.cache_info().errors
        assert faulted >= 1
        outcome = cached.strict_outcome(999)
        assert outcome.startswith("BackendError"), outcome
        mend_it()
    clock.advance(120)  # past any cool-down: the next call probes
    assert cached.hits_again(5000), "caching did not resume after the server came back"
    assert_rate_limited(caplog, faulted_calls=faulted)
    backend.close()


def test_redis_killed_mid_run(
    redis_server_factory: Callable[..., RedisServer],
    clock: FakeClock,
    rng: random.Random,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory()
    _redis_outage(server, clock, rng, caplog, server.kill, server.restart)


def test_redis_paused_mid_run_never_hangs_past_the_timeout(
    redis_server_factory: Callable[..., RedisServer],
    clock: FakeClock,
    rng: random.Random,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SIGSTOP: connections are accepted, nothing is ever answered."""
    server = redis_server_factory()
    _redis_outage(server, clock, rng, caplog, server.stop, server.cont)


async def _heartbeat(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


@pytest.mark.parametrize("fault", ["kill", "stop"])
async def test_redis_outage_under_async_load_never_blocks_the_loop(
    fault: str,
    redis_server_factory: Callable[..., RedisServer],
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory()
    backend = _redis_backend(server, clock)
    computed: list[int] = []

    async def answer(i: int) -> dict[str, Any]:
        computed.append(i)
        await asyncio.sleep(0)
        return expected(i)

    cached = llm_cached(backend=backend, namespace="async-faults")(answer)
    strict = llm_cached(backend=backend, namespace="async-faults", strict=True)(answer)
    for i in range(5):
        assert await cached(i) == expected(i)
    stop, gaps = asyncio.Event(), list[float]()
    beat = asyncio.create_task(_heartbeat(stop, gaps))
    with _always_running(server):
        (server.kill if fault == "kill" else server.stop)()
        started = time.monotonic()
        results = await asyncio.gather(*(cached(i % 20) for i in range(200)))
        elapsed = time.monotonic() - started
        assert results == [expected(i % 20) for i in range(200)]
        assert elapsed < 3.0, elapsed  # one timeout at most, then the breaker answers at once
        with pytest.raises(BackendError):
            await strict(12345)
        stop.set()
        await beat
        assert max(gaps) < 0.3, f"the event loop stalled for {max(gaps):.2f}s"
        (server.restart if fault == "kill" else server.cont)()
    clock.advance(120)
    assert await cached(777) == expected(777)
    before = len(computed)
    assert await cached(777) == expected(777)
    assert len(computed) == before, "caching did not resume"
    assert_rate_limited(caplog, faulted_calls=cached.cache_info().errors)
    await backend.aclose()


def test_redis_restarting_and_loading(
    redis_server_factory: Callable[..., RedisServer],
    redis_binary: Path,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A restarted server answers LOADING while it replays its dump: a fault, then its old entries."""
    if server_version(redis_binary)[1] < (7, 0, 0):
        pytest.skip("a slow enough load needs loading-process-events-interval-bytes (7.0+)")
    server = redis_server_factory(
        "--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024"
    )  # fmt: skip
    with server.client() as admin:
        pipe = admin.pipeline(transaction=False)
        for i in range(4000):  # about two seconds to load
            pipe.set(f"filler{i}", b"x" * 100)
        pipe.execute()
    backend = _redis_backend(server, clock)
    cached = Cached(backend)
    for i in range(10):
        cached.check(i)
    with server.client() as admin:
        admin.save()
    server.restart()  # back as soon as it answers, which is LOADING
    durations = [cached.check(i) for i in range(20)]
    assert max(durations) < 2.5
    assert cached.open.cache_info().errors >= 1
    clock.advance(10)
    assert cached.strict_outcome(12345).startswith("BackendError")
    deadline = time.monotonic() + 30
    with server.client() as admin:
        while time.monotonic() < deadline:
            try:
                admin.ping()
                break
            except Exception:
                time.sleep(0.05)
    clock.advance(120)
    computed = len(cached.computed)
    for i in range(10):
        cached.check(i)  # the entries stored before the restart are hits again
    assert len(cached.computed) == computed
    assert_rate_limited(caplog, faulted_calls=cached.open.cache_info().errors)
    backend.close()


def test_redis_out_of_memory(
    redis_server_factory: Callable[..., RedisServer], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server_factory()
    backend = _redis_backend(server, clock)
    cached = Cached(backend)
    for i in range(10):
        cached.check(i)
    with server.client() as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1mb")
        with contextlib.suppress(Exception):
            admin.set("filler", os.urandom(2 * 1024 * 1024))
        computed = len(cached.computed)
        for i in range(10):
            cached.check(i)  # reads go on: stored entries are hits
        assert len(cached.computed) == computed
        for i in range(100, 160):
            cached.check(i)  # new answers are computed, returned, not stored
        assert cached.open.cache_info().errors >= 1
        outcome = cached.strict_outcome(999)
        assert outcome.startswith("BackendError") and "OutOfMemory" in outcome, outcome
        assert_rate_limited(caplog, faulted_calls=cached.open.cache_info().errors)
        admin.config_set("maxmemory", "0")
    assert cached.hits_again(5000)
    assert any("refuses writes" in r.getMessage() for r in llm_warnings(caplog))
    backend.close()


# --------------------------------------------------------------------------- stress


@stress
@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_stress_repeated_redis_outages(
    fault: str,
    redis_server_factory: Callable[..., RedisServer],
    clock: FakeClock,
    rng: random.Random,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory()
    for _ in range(8):
        caplog.clear()
        from llm_memo import _log

        _log._reset_for_tests()
        if fault == "kill":
            _redis_outage(server, clock, rng, caplog, server.kill, server.restart, threads=8)
        else:
            _redis_outage(server, clock, rng, caplog, server.stop, server.cont, threads=8)


@stress
@pytest.mark.parametrize("kind", LOCAL)
def test_stress_full_disk(kind: str, tmp_path: Path) -> None:
    seen = _run_full_disk(kind, tmp_path, calls=2000)
    assert seen["recovered"] and seen["late_recovered"] and seen["most_repeated"] <= 1
