"""One suite, every backend: the behaviour the front relies on, against real stores.

Each store comes with ``advance(seconds)``, which moves its notion of time: the
injected clock for memory, SQLite, tiers and cassettes; diskcache's clock for disk; and, for
Redis, whose expiry is server-side, every key's remaining TTL shortened by that
much (so what is checked is the ``PX`` the backend set).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock

from llm_memo.backends import MISS, Backend, StoredEntry
from llm_memo.backends.cassette import CassetteBackend
from llm_memo.backends.disk import DiskBackend
from llm_memo.backends.memory import MemoryBackend
from llm_memo.backends.redis import RedisBackend
from llm_memo.backends.sqlite import SQLiteBackend
from llm_memo.backends.tiered import TieredBackend

KINDS = ["memory", "disk", "sqlite", "redis", "redis-cluster", "tiered", "cassette"]

# Namespaces that collide under any naive separator or glob: each must stay its own.
CRAFTED = ["a", "a:b", "a*", "a?", "a[b]", "a\\", "a%3A", "a b", "a{x}", "ünï·码", "", "a:*"]


def k(i: object) -> str:
    """A key shaped like the real ones (64 hex)."""
    return hashlib.sha256(str(i).encode()).hexdigest()


@dataclass
class Store:
    kind: str
    backend: Backend
    advance: Callable[[float], None]


def _redis_advance(client: Any, prefix: str) -> Callable[[float], None]:
    def advance(seconds: float) -> None:
        for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
            pttl = client.pttl(key)
            if pttl > 0:
                left = pttl - int(seconds * 1000)
                if left <= 0:
                    client.unlink(key)
                else:
                    client.pexpire(key, left)

    return advance


@pytest.fixture(params=KINDS)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    kind: str = request.param
    cleanup: list[Callable[[], None]] = []
    if kind == "memory":
        backend: Backend = MemoryBackend(clock=clock)
        advance: Callable[[float], None] = clock.advance
    elif kind == "disk":
        import diskcache.core

        fake_time = types.SimpleNamespace(time=clock, sleep=lambda s: None)
        monkeypatch.setattr(diskcache.core, "time", fake_time)
        backend = DiskBackend(tmp_path / "disk")
        advance = clock.advance
    elif kind == "sqlite":
        backend = SQLiteBackend(tmp_path / "c.sqlite3", clock=clock)
        advance = clock.advance
    elif kind == "tiered":
        backend = TieredBackend(
            [MemoryBackend(clock=clock), SQLiteBackend(tmp_path / "t.sqlite3", clock=clock)], clock=clock
        )
        advance = clock.advance
    elif kind == "cassette":
        backend = CassetteBackend(tmp_path / "cassette.json", clock=clock)
        advance = clock.advance
    elif kind == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        backend = RedisBackend(url, prefix="contract")
        client = redis.Redis.from_url(url)
        cleanup.append(client.close)
        advance = _redis_advance(client, "contract")
    else:
        import redis.cluster

        url = request.getfixturevalue("redis_cluster_url")
        backend = RedisBackend(url, prefix="contract")
        cluster_client = redis.cluster.RedisCluster.from_url(url.replace("+cluster", "", 1))
        cleanup.append(cluster_client.close)
        advance = _redis_advance(cluster_client, "contract")
    try:
        yield Store(kind, backend, advance)
    finally:
        backend.close()
        for fn in cleanup:
            fn()


def test_missing_key_is_miss_not_none(store: Store) -> None:
    assert store.backend.get("ns", k(1)) is MISS
    store.backend.set("ns", k(2), b"null", None)
    assert store.backend.get("ns", k(1)) is MISS


def test_set_get_overwrite(store: Store) -> None:
    b = store.backend
    b.set("ns", k(1), b"first", None)
    assert b.get("ns", k(1)) == b"first"
    b.set("ns", k(1), b"second", None)  # an upsert: no error, last write wins
    assert b.get("ns", k(1)) == b"second"
    assert [e.value for e in b.entries("ns")] == [b"second"]


def test_delete(store: Store) -> None:
    b = store.backend
    b.set("ns", k(1), b"v", None)
    b.set("ns", k(2), b"w", None)
    assert b.delete("ns", k(1)) is True
    assert b.get("ns", k(1)) is MISS
    assert b.delete("ns", k(1)) is False
    assert b.get("ns", k(2)) == b"w"


def test_crafted_namespaces_never_collide(store: Store) -> None:
    b = store.backend
    for i, ns in enumerate(CRAFTED):
        b.set(ns, k(ns), f"value-{i}".encode(), None)
    for ns in CRAFTED:
        listed = list(b.entries(ns))
        assert [(e.namespace, e.key) for e in listed] == [(ns, k(ns))], ns
    assert b.clear("a") == 1
    assert b.get("a", k("a")) is MISS
    for i, ns in enumerate(CRAFTED):
        if ns != "a":
            assert b.get(ns, k(ns)) == f"value-{i}".encode(), ns
    assert b.clear("a:*") == 1
    assert b.get("a:*", k("a:*")) is MISS
    assert b.get("a:b", k("a:b")) == f"value-{CRAFTED.index('a:b')}".encode()
    assert b.clear("no-such-namespace") == 0
    assert b.clear(None) == len(CRAFTED) - 2
    assert list(b.entries()) == []


def test_entries_lists_namespace_key_and_bytes(store: Store) -> None:
    b = store.backend
    b.set("one", k(1), b"\x00\x01", None)
    b.set("one", k(2), b"", None)
    b.set("two", k(3), b"x", 100)
    everything = sorted(b.entries())
    assert everything == sorted(
        [StoredEntry("one", k(1), b"\x00\x01"), StoredEntry("one", k(2), b""), StoredEntry("two", k(3), b"x")]
    )
    for entry in everything:
        assert type(entry.namespace) is str and type(entry.key) is str and type(entry.value) is bytes
    assert sorted(e.key for e in b.entries("one")) == sorted([k(1), k(2)])


def test_ttl_expires_with_the_clock(store: Store) -> None:
    b = store.backend
    b.set("ns", k("short"), b"s", 10)
    b.set("ns", k("long"), b"l", 1000)
    b.set("ns", k("never"), b"n", None)
    store.advance(9)
    assert b.get("ns", k("short")) == b"s"
    store.advance(2)
    assert b.get("ns", k("short")) is MISS
    assert b.get("ns", k("long")) == b"l"
    store.advance(10_000)
    assert b.get("ns", k("long")) is MISS
    assert b.get("ns", k("never")) == b"n"


def test_rewrite_resets_ttl(store: Store) -> None:
    b = store.backend
    b.set("ns", k(1), b"old", 10)
    store.advance(8)
    b.set("ns", k(1), b"new", None)
    store.advance(100)
    assert b.get("ns", k(1)) == b"new"


def test_zero_ttl_is_never_a_hit(store: Store) -> None:
    store.backend.set("ns", k(1), b"v", 0)
    assert store.backend.get("ns", k(1)) is MISS


def test_bytes_fidelity(store: Store) -> None:
    b = store.backend
    samples = [b"", b"\x00", bytes(range(256)), b"\xff\xfe invalid utf-8 \xc3\x28", b"MISS", "é".encode()]
    for i, value in enumerate(samples):
        b.set("ns", k(i), value, None)
    for i, value in enumerate(samples):
        got = b.get("ns", k(i))
        assert type(got) is bytes and got == value


def test_large_values(store: Store) -> None:
    b = store.backend
    big = os.urandom(6 * 1024 * 1024)  # incompressible, several MB
    b.set("ns", k("big"), big, 60)
    assert b.get("ns", k("big")) == big
    b.set("ns", k("big"), big[::-1], 60)
    assert b.get("ns", k("big")) == big[::-1]


def test_concurrent_writers(store: Store) -> None:
    b = store.backend
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(t: int) -> None:
        try:
            start.wait()
            for i in range(40):
                b.set("ns", k((t, i)), f"{t}:{i}".encode(), None)
                b.set("ns", k("shared"), f"{t}".encode(), None)  # everyone writes this one
                assert b.get("ns", k((t, i))) == f"{t}:{i}".encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for t in range(8):
        for i in range(40):
            assert b.get("ns", k((t, i))) == f"{t}:{i}".encode()
    assert b.get("ns", k("shared")) in {str(t).encode() for t in range(8)}
    assert b.clear("ns") == 8 * 40 + 1


def test_async_twins(store: Store) -> None:
    b = store.backend

    async def scenario() -> None:
        await b.aset("ns", k(1), b"async", None)
        await b.aset("other", k(2), b"keep", None)
        assert await b.aget("ns", k(1)) == b"async"
        assert await b.adelete("ns", k(1)) is True
        assert await b.aget("ns", k(1)) is MISS
        await b.aset("ns", k(3), b"x", None)
        assert await b.aclear("ns") == 1
        assert await b.aget("other", k(2)) == b"keep"

    asyncio.run(scenario())
    asyncio.run(scenario())  # a second event loop: clients bound to the first must not leak in
    assert b.get("other", k(2)) == b"keep"


def test_reopens_after_close(store: Store) -> None:
    b = store.backend
    b.set("ns", k(1), b"v", None)
    b.close()
    assert b.get("ns", k(1)) == b"v"  # close() releases connections, not entries
    b.set("ns", k(2), b"w", None)
    assert b.get("ns", k(2)) == b"w"


def test_add_is_set_if_absent_and_ignores_expired_entries(store: Store) -> None:
    # The cross-process lease relies on this being atomic in the store itself.
    b = store.backend
    assert b.add("lease", k(1), b"mine", 10) is True
    assert b.add("lease", k(1), b"theirs", 10) is False
    assert b.get("lease", k(1)) == b"mine"
    store.advance(11)
    assert b.add("lease", k(1), b"theirs", 10) is True
    assert b.get("lease", k(1)) == b"theirs"


def test_atomic_add_has_exactly_one_winner_among_threads(store: Store) -> None:
    b = store.backend
    if not b.atomic_add:
        assert store.kind == "cassette", "every store but the cassette does set-if-absent atomically"
        pytest.skip("a cassette holds recorded answers, not leases: its add() is the best-effort emulation")
    start = threading.Barrier(8)
    wins: list[bool] = []

    def contender(t: int) -> None:
        start.wait()
        wins.append(b.add("lease", k("one"), str(t).encode(), 30))

    threads = [threading.Thread(target=contender, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1
