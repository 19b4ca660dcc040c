"""The Redis backend against real servers: layout, faults, breaker, async, Cluster.

Tests that break a server (kill, pause, fill, restart) get a private one from
``redis_server_factory``; time for the breaker is an injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.cluster
from _redis_fixtures import RedisServer, server_version
from conftest import FakeClock
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError

import llm_memo
from llm_memo.backends import MISS, from_url
from llm_memo.backends.redis import RedisBackend, escape_namespace, redact_url
from llm_memo.errors import BackendError, BackendUnavailable


def k(i: object) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Callable[[int], list[str]]:
    """The llm_memo log lines at ``level`` and above, from the backend's own logging."""
    caplog.set_level(logging.INFO, logger="llm_memo")

    def at(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "llm_memo" and r.levelno == level]

    return at


@pytest.fixture
def backends() -> Iterator[Callable[..., RedisBackend]]:
    made: list[RedisBackend] = []

    def make(target: Any, **kwargs: Any) -> RedisBackend:
        backend = RedisBackend(target, **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


# ------------------------------------------------------------------ URLs and layout


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://alice:s3cr3t@db.internal:6379/0", "s3cr3t"),
        ("redis://:s3cr3t@db.internal:6379/2", "s3cr3t"),
        ("rediss://alice:s3cr3t@db.internal:6380", "s3cr3t"),
        ("unix://:s3cr3t@/run/redis.sock?db=1", "s3cr3t"),
        ("unix:///run/redis.sock?db=1&password=s3cr3t", "s3cr3t"),
        ("redis+cluster://bob:s3cr3t@node1:7000", "s3cr3t"),
    ],
)
def test_credentials_never_in_url(url: str, secret: str) -> None:
    backend = from_url(url)  # nothing connects until first use
    assert isinstance(backend, RedisBackend)
    assert secret not in backend.url and "alice" not in backend.url and "bob" not in backend.url
    assert secret not in repr(backend)
    assert secret not in redact_url(url)
    assert backend.cluster == ("+cluster" in url)

    @llm_memo.llm_cached(backend=url)
    def f(x: int) -> int:
        return x

    assert secret not in str(f.cache_parameters())


def test_key_layout_and_prefix(redis_url: str, backends: Callable[..., RedisBackend]) -> None:
    plain = backends(redis_url)
    custom = backends(redis_url + "?prefix=team:proj")
    plain.set("app.ask", k(1), b"v", 60)
    custom.set("a:b*", k(2), b"w", None)
    with redis.Redis.from_url(redis_url) as raw:
        assert raw.get(f"llm-memo:app.ask:{k(1)}") == b"v"
        assert 0 < raw.pttl(f"llm-memo:app.ask:{k(1)}") <= 60_000
        assert raw.get(f"team:proj:a%3Ab%2A:{k(2)}") == b"w"
        assert raw.pttl(f"team:proj:a%3Ab%2A:{k(2)}") == -1  # no expiry
    assert custom.get("a:b*", k(2)) == b"w"
    assert plain.get("a:b*", k(2)) is MISS  # another prefix is another store


def test_escaping_is_reversible_and_glob_free() -> None:
    for ns in ["a", "a:b", "*", "?", "[x]", "\\", "%", "{tag}", "ünï code", "%3A"]:
        escaped = escape_namespace(ns)
        assert not set(escaped) & set(":*?[]\\{}")
    assert escape_namespace("%3A") != escape_namespace(":")


def test_clear_leaves_other_prefixes_and_foreign_keys(
    redis_url: str, backends: Callable[..., RedisBackend]
) -> None:
    mine = backends(redis_url)
    theirs = backends(redis_url, prefix="llm-memo:x")  # a prefix that extends ours
    mine.set("ns", k(1), b"1", None)
    theirs.set("ns", k(2), b"2", None)
    with redis.Redis.from_url(redis_url) as raw:
        raw.set("unrelated", b"u")
        raw.set("llm-memo:ns:not-a-digest", b"u")
        assert mine.clear() == 1
        assert raw.get("unrelated") == b"u" and raw.get("llm-memo:ns:not-a-digest") == b"u"
    assert theirs.get("ns", k(2)) == b"2"


def test_clear_uses_no_keys_or_flush(redis_url: str, backends: Callable[..., RedisBackend]) -> None:
    """A user barred from KEYS and FLUSH* can still clear: only SCAN + UNLINK are used."""
    with redis.Redis.from_url(redis_url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "memo", "on", ">pw", "~*", "+@all", "-keys", "-flushdb", "-flushall"
        )
        try:
            host_port = redis_url.split("//", 1)[1]
            backend = backends(f"redis://memo:pw@{host_port}")
            for i in range(1200):  # more than one SCAN page and one UNLINK batch
                backend.set("big", k(i), b"x", None)
            backend.set("other", k("o"), b"o", None)
            assert backend.clear("big") == 1200
            assert backend.get("other", k("o")) == b"o"
            assert list(backend.entries("big")) == []
        finally:
            admin.execute_command("ACL", "DELUSER", "memo")


def test_client_instance(redis_url: str, backends: Callable[..., RedisBackend]) -> None:
    with redis.Redis.from_url(redis_url) as client:
        backend = backends(client)
        backend.set("ns", k(1), b"v", None)
        assert asyncio.run(backend.aget("ns", k(1))) == b"v"  # through a thread
        backend.close()
        assert client.ping()  # the caller's client stays open
    with redis.Redis.from_url(redis_url, decode_responses=True) as text_client, pytest.raises(ValueError):
        RedisBackend(text_client)


# ------------------------------------------------------------------ faults


def _down_backend(
    server: RedisServer, clock: FakeClock, backends: Callable[..., RedisBackend], **kw: Any
) -> RedisBackend:
    return backends(server.url, socket_timeout=0.3, connect_timeout=0.3, clock=clock, **kw)


def test_breaker_fails_fast_then_probes_and_recovers(
    redis_server_factory: Callable[..., RedisServer],
    clock: FakeClock,
    backends: Callable[..., RedisBackend],
    records: Callable[[int], list[str]],
) -> None:
    server = redis_server_factory()
    backend = _down_backend(server, clock, backends)
    backend.set("ns", k(1), b"v", None)
    server.kill()
    with pytest.raises(RedisConnectionError):
        backend.get("ns", k(1))
    started = time.perf_counter()
    for _ in range(100):
        with pytest.raises(BackendUnavailable):
            backend.get("ns", k(1))
    assert time.perf_counter() - started < 0.5  # no network attempt while open
    assert len(records(logging.WARNING)) == 1  # one warning for the outage, not one per call

    clock.advance(5.1)  # cool-down over: one probe goes out, fails, and the wait doubles
    with pytest.raises(RedisConnectionError):
        backend.get("ns", k(1))
    clock.advance(5.1)
    with pytest.raises(BackendUnavailable):
        backend.get("ns", k(1))
    assert len(records(logging.WARNING)) == 1

    server.restart()
    clock.advance(5.0)
    assert backend.get("ns", k(1)) is MISS  # restarted empty; the probe succeeded
    backend.set("ns", k(1), b"again", None)
    assert backend.get("ns", k(1)) == b"again"
    assert len(records(logging.INFO)) == 1 and "reachable again" in records(logging.INFO)[0]


def test_paused_server_costs_one_timeout(
    redis_server_factory: Callable[..., RedisServer], clock: FakeClock, backends: Callable[..., RedisBackend]
) -> None:
    server = redis_server_factory()
    backend = _down_backend(server, clock, backends)
    backend.set("ns", k(1), b"one", None)
    backend.set("ns", k(2), b"two", None)
    server.stop()
    try:
        started = time.perf_counter()
        with pytest.raises(redis.exceptions.TimeoutError):
            backend.get("ns", k(1))
        first = time.perf_counter() - started
        assert first < 1.0  # the 0.3 s socket timeout, not redis-py's default retries
        started = time.perf_counter()
        for _ in range(50):
            with pytest.raises(BackendUnavailable):
                backend.get("ns", k(1))
        assert time.perf_counter() - started < 0.2
    finally:
        server.cont()
    clock.advance(6)
    # The timed-out connection must not hand its late reply ("one") to the next command.
    assert backend.get("ns", k(2)) == b"two"


def test_restart_is_transparent(
    redis_server_factory: Callable[..., RedisServer], clock: FakeClock, backends: Callable[..., RedisBackend]
) -> None:
    server = redis_server_factory()
    backend = _down_backend(server, clock, backends)
    backend.set("ns", k(1), b"v", None)
    server.restart()
    # The pooled connection is dead; the one bounded retry reconnects, no breaker trip.
    assert backend.get("ns", k(1)) is MISS
    assert backend._breaker.open_until is None


def test_decorator_fails_open_and_resumes(
    redis_server_factory: Callable[..., RedisServer], clock: FakeClock, backends: Callable[..., RedisBackend]
) -> None:
    server = redis_server_factory()
    backend = _down_backend(server, clock, backends)
    calls: list[int] = []

    @llm_memo.llm_cached(backend=backend)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(3) == 9 and square(3) == 9
    assert calls == [3]
    server.kill()
    assert [square(4) for _ in range(5)] == [16] * 5  # correct values, computed each time
    assert calls == [3, 4, 4, 4, 4, 4]
    assert square.cache_info().errors >= 5
    server.restart()
    clock.advance(6)
    assert square(4) == 16 and square(4) == 16
    assert calls == [3, 4, 4, 4, 4, 4, 4]  # caching resumed by itself

    server.kill()

    @llm_memo.llm_cached(backend=backend, strict=True)
    def strict(x: int) -> int:
        return x

    with pytest.raises(BackendError):
        strict(1)


def test_out_of_memory_refuses_writes_not_reads(
    redis_server_factory: Callable[..., RedisServer],
    clock: FakeClock,
    backends: Callable[..., RedisBackend],
    records: Callable[[int], list[str]],
) -> None:
    server = redis_server_factory()
    backend = _down_backend(server, clock, backends)
    backend.set("ns", k("kept"), b"kept", None)
    with server.client() as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1mb")
        with contextlib.suppress(OutOfMemoryError):  # refused if already over the limit
            admin.set("filler", os.urandom(2 * 1024 * 1024))
        for _ in range(3):
            with pytest.raises(OutOfMemoryError):
                backend.set("ns", k("new"), b"x" * 1000, None)
        assert backend.get("ns", k("kept")) == b"kept"  # reads go on
        assert backend._breaker.open_until is None
        assert len([m for m in records(logging.WARNING) if "refuses writes" in m]) == 1

        @llm_memo.llm_cached(backend=backend)
        def double(x: int) -> int:
            return 2 * x

        assert double(21) == 42  # the failed store does not reach the caller

        admin.config_set("maxmemory", "0")
    backend.set("ns", k("new"), b"x", None)
    assert backend.get("ns", k("new")) == b"x"
    assert any("accepts writes again" in m for m in records(logging.INFO))


def test_loading_is_a_fault_then_recovers(
    redis_server_factory: Callable[..., RedisServer],
    redis_binary: Path,
    clock: FakeClock,
    backends: Callable[..., RedisBackend],
) -> None:
    """A server replaying a big dump answers LOADING: a fault, then normal service."""
    if server_version(redis_binary)[1] < (7, 0, 0):
        pytest.skip(
            "making loading slow enough to observe needs loading-process-events-interval-bytes (7.0+)"
        )
    server = redis_server_factory(
        "--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024"
    )  # fmt: skip
    with server.client() as admin:
        pipe = admin.pipeline(transaction=False)
        for i in range(2000):  # ~1 s to load at 500 us a key
            pipe.set(f"filler{i}", b"x" * 100)
        pipe.execute()
        admin.save()
    backend = _down_backend(server, clock, backends)
    backend.set("ns", k(1), b"v", None)
    with server.client() as admin:
        admin.save()
    server.restart()  # returns as soon as the server answers, which is LOADING
    with pytest.raises(redis.exceptions.BusyLoadingError):
        backend.get("ns", k(1))
    with pytest.raises(BackendUnavailable):
        backend.get("ns", k(1))
    with server.client() as admin:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                admin.ping()
                break
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.05)  # the server's own load time: no clock to inject here
    clock.advance(6)
    assert backend.get("ns", k(1)) == b"v"


# ------------------------------------------------------------------ async


def test_async_uses_redis_asyncio_per_loop(redis_url: str, backends: Callable[..., RedisBackend]) -> None:
    backend = backends(redis_url)
    loops: list[Any] = []

    async def scenario(i: int) -> None:
        await backend.aset("ns", k(i), str(i).encode(), 30)
        assert await backend.aget("ns", k(i)) == str(i).encode()
        client = backend._loops[asyncio.get_running_loop()].client
        assert isinstance(client, redis.asyncio.Redis)
        loops.append(client)

    for i in range(3):
        asyncio.run(scenario(i))
    assert backend._sync is None  # the sync client was never needed
    assert len({id(c) for c in loops}) == 3  # one client per event loop
    assert len(backend._loops) == 0  # each closed with its loop
    assert backend.get("ns", k(2)) == b"2"


def test_async_decorator_end_to_end(redis_url: str) -> None:
    calls: list[str] = []

    @llm_memo.llm_cached(backend=redis_url)
    async def ask(prompt: str) -> dict[str, str]:
        calls.append(prompt)
        return {"answer": prompt.upper()}

    assert asyncio.run(ask("hi")) == {"answer": "HI"}
    assert asyncio.run(ask("hi")) == {"answer": "HI"}
    assert calls == ["hi"]


def test_async_breaker(
    redis_server_factory: Callable[..., RedisServer], clock: FakeClock, backends: Callable[..., RedisBackend]
) -> None:
    server = redis_server_factory()
    backend = _down_backend(server, clock, backends)
    server.kill()

    async def scenario() -> None:
        with pytest.raises(RedisConnectionError):
            await backend.aget("ns", k(1))
        with pytest.raises(BackendUnavailable):
            await backend.aget("ns", k(1))

    asyncio.run(scenario())


# ------------------------------------------------------------------ cluster


def test_cluster_spreads_keys_and_clears_one_namespace(
    redis_cluster_url: str, backends: Callable[..., RedisBackend]
) -> None:
    backend = backends(redis_cluster_url)
    for i in range(300):
        backend.set("app.fn", k(i), b"v", None)
    for i in range(20):
        backend.set("app.other", k(("o", i)), b"o", None)
    slots = {key_slot(f"llm-memo:app.fn:{k(i)}".encode()) for i in range(300)}
    assert len(slots) > 250  # no hash tag: one function's keys spread over the slots
    with redis.cluster.RedisCluster.from_url(redis_cluster_url.replace("+cluster", "", 1)) as raw:
        per_node = [raw.dbsize(target_nodes=node) for node in raw.get_primaries()]
        assert len(per_node) == 3 and all(n > 50 for n in per_node), per_node
    assert len(list(backend.entries("app.fn"))) == 300
    assert backend.clear("app.fn") == 300
    assert list(backend.entries("app.fn")) == []
    assert len(list(backend.entries("app.other"))) == 20

    async def scenario() -> None:
        await backend.aset("app.fn", k("a"), b"async", None)
        assert await backend.aget("app.fn", k("a")) == b"async"
        assert await backend.aclear("app.other") == 20

    asyncio.run(scenario())
    assert backend.clear() == 1


def test_cluster_client_instance(redis_cluster_url: str, backends: Callable[..., RedisBackend]) -> None:
    with redis.cluster.RedisCluster.from_url(redis_cluster_url.replace("+cluster", "", 1)) as client:
        backend = backends(client)
        assert backend.cluster
        backend.set("ns", k(1), b"v", None)
        assert backend.get("ns", k(1)) == b"v"
        assert backend.clear("ns") == 1


async def test_native_async_add_is_set_if_absent(redis_url: str) -> None:
    from llm_memo.backends.redis import RedisBackend

    backend = RedisBackend(redis_url, prefix="aadd")
    try:
        assert await backend.aadd("lease", "a" * 64, b"mine", 10) is True
        assert await backend.aadd("lease", "a" * 64, b"theirs", 10) is False
        assert await backend.aget("lease", "a" * 64) == b"mine"
    finally:
        await backend.aclose()
        backend.close()
