"""Tiers: read-through with backfill bounded by the entry's expiry, writes to all, fault isolation."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import FakeClock

import llm_memo
from llm_memo.backends import MISS, Backend, Miss, StoredEntry
from llm_memo.backends.memory import MemoryBackend
from llm_memo.backends.sqlite import SQLiteBackend
from llm_memo.backends.tiered import TieredBackend
from llm_memo.serialize import pack_entry


def k(i: object) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def entry(clock: FakeClock, ttl: float | None, payload: bytes = b'"v"') -> bytes:
    expires = None if ttl is None else clock.now + ttl
    return pack_entry(payload, b"\0" * 16, clock.now, expires)


class Broken(Backend):
    """A tier whose every operation fails like a dead server."""

    blocking = False
    url = "broken://"

    def get(self, namespace: str, key: str) -> bytes | Miss:
        raise ConnectionError("down")

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        raise ConnectionError("down")

    def delete(self, namespace: str, key: str) -> bool:
        raise ConnectionError("down")

    def clear(self, namespace: str | None = None) -> int:
        raise ConnectionError("down")

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        raise ConnectionError("down")


class Recording(MemoryBackend):
    """A memory tier that notes which methods (sync or async) were used."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.calls: list[str] = []
        self.ttls: list[float | None] = []

    def get(self, namespace: str, key: str) -> bytes | Miss:
        self.calls.append("get")
        return super().get(namespace, key)

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        self.calls.append("set")
        self.ttls.append(ttl)
        super().set(namespace, key, value, ttl)

    async def aget(self, namespace: str, key: str) -> bytes | Miss:
        self.calls.append("aget")
        return super().get(namespace, key)

    async def aset(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        self.calls.append("aset")
        self.ttls.append(ttl)
        super().set(namespace, key, value, ttl)


@pytest.fixture
def slow(tmp_path: Path, clock: FakeClock) -> Iterator[SQLiteBackend]:
    backend = SQLiteBackend(tmp_path / "slow.db", clock=clock)
    yield backend
    backend.close()


def test_hit_in_slow_tier_fills_fast_tier_until_the_entry_expires(
    slow: SQLiteBackend, clock: FakeClock
) -> None:
    fast = Recording(clock)
    tiers = TieredBackend([fast, slow], clock=clock)
    data = entry(clock, ttl=100)
    slow.set("ns", k(1), data, 1000)  # the store's TTL may be longer than the entry's own life
    clock.advance(40)
    assert tiers.get("ns", k(1)) == data
    assert fast.ttls == [pytest.approx(60)]  # the entry's remaining lifetime, not the slow tier's
    assert fast.get("ns", k(1)) == data
    fast.calls.clear()
    assert tiers.get("ns", k(1)) == data
    assert fast.calls == ["get"]  # served by the fast tier alone
    clock.advance(61)
    assert fast.get("ns", k(1)) is MISS  # gone from the fast tier no later than the entry


def test_no_fill_for_expired_or_unknown_lifetimes(slow: SQLiteBackend, clock: FakeClock) -> None:
    fast = Recording(clock)
    tiers = TieredBackend([fast, slow], clock=clock)
    slow.set("ns", k("old"), entry(clock, ttl=10), None)
    slow.set("ns", k("raw"), b"not an entry", None)
    slow.set("ns", k("forever"), entry(clock, ttl=None), None)
    clock.advance(11)
    assert tiers.get("ns", k("old")) != MISS  # returned (the front decides it is stale) ...
    assert tiers.get("ns", k("raw")) == b"not an entry"
    assert fast.ttls == []  # ... but neither is copied up
    assert tiers.get("ns", k("forever")) != MISS
    assert fast.ttls == [None]


def test_upper_ttl_caps_the_fast_tiers(slow: SQLiteBackend, clock: FakeClock) -> None:
    fast = Recording(clock)
    tiers = TieredBackend([fast, slow], upper_ttl=5, clock=clock)
    tiers.set("ns", k(1), entry(clock, None), None)
    assert fast.ttls == [5]
    clock.advance(6)
    assert fast.get("ns", k(1)) is MISS
    assert slow.get("ns", k(1)) != MISS
    tiers.get("ns", k(1))
    assert fast.ttls == [5, 5]


def test_writes_deletes_and_clears_reach_every_tier(slow: SQLiteBackend, clock: FakeClock) -> None:
    fast = MemoryBackend(clock=clock)
    tiers = TieredBackend([fast, slow], clock=clock)
    tiers.set("a", k(1), b"1", 30)
    tiers.set("a", k(2), b"2", None)
    tiers.set("b", k(3), b"3", None)
    assert fast.get("a", k(1)) == b"1" and slow.get("a", k(1)) == b"1"
    clock.advance(31)
    assert fast.get("a", k(1)) is MISS and slow.get("a", k(1)) is MISS
    assert tiers.delete("a", k(2)) is True
    assert fast.get("a", k(2)) is MISS and slow.get("a", k(2)) is MISS
    slow.set("b", k(4), b"4", None)  # only in the slow tier
    assert sorted(e.key for e in tiers.entries("b")) == sorted([k(3), k(4)])
    assert tiers.clear("b") == 2
    assert list(tiers.entries("b")) == []
    assert {e.namespace for e in tiers.entries()} <= {"a"}


def test_a_failing_tier_degrades_to_the_others(
    slow: SQLiteBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tiers = TieredBackend([MemoryBackend(clock=clock), Broken(), slow], clock=clock)
    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        for i in range(20):
            tiers.set("ns", k(i), b"v", None)
            assert tiers.get("ns", k(i)) == b"v"
        assert tiers.get("ns", k("missing")) is MISS
        assert tiers.delete("ns", k(0)) is True
        assert tiers.clear("ns") == 19
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 <= len(warnings) <= 4  # rate-limited per operation, not one per call
    assert all("broken://" in r.getMessage() for r in warnings)


def test_every_tier_failing_is_a_fault() -> None:
    tiers = TieredBackend([Broken(), Broken()])
    with pytest.raises(ConnectionError):
        tiers.get("ns", k(1))
    with pytest.raises(ConnectionError):
        tiers.set("ns", k(1), b"v", None)


def test_async_uses_each_tiers_async_methods(slow: SQLiteBackend, clock: FakeClock) -> None:
    fast = Recording(clock)
    tiers = TieredBackend([fast, slow], clock=clock)
    data = entry(clock, ttl=50)
    slow.set("ns", k(1), data, None)

    async def scenario() -> None:
        assert await tiers.aget("ns", k(1)) == data
        await tiers.aset("ns", k(2), b"x", None)
        assert await tiers.adelete("ns", k(2)) is True
        assert await tiers.aclear("ns") == 1

    asyncio.run(scenario())
    assert fast.calls == ["aget", "aset", "aset"]
    assert fast.ttls == [pytest.approx(50), None]


def test_blocking_follows_the_tiers(slow: SQLiteBackend) -> None:
    assert TieredBackend([MemoryBackend(), MemoryBackend()]).blocking is False
    assert TieredBackend([MemoryBackend(), slow]).blocking is True
    assert TieredBackend.blocking is True  # the class default is untouched


def test_tuple_spec_makes_a_hot_redis_key_a_memory_hit(redis_url: str) -> None:
    calls: list[str] = []

    @llm_memo.llm_cached(backend=("memory", redis_url))
    def ask(prompt: str) -> dict[str, str]:
        calls.append(prompt)
        return {"answer": prompt.upper()}

    with redis.Redis.from_url(redis_url) as admin:
        assert ask("hi") == {"answer": "HI"}
        admin.config_resetstat()
        for _ in range(50):
            assert ask("hi") == {"answer": "HI"}
        gets = admin.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
    assert calls == ["hi"]
    assert gets == 0  # every repeat was answered by the memory tier

    # Another process (simulated by a fresh memory tier) finds it in Redis and fills memory.
    ask_elsewhere = ask.with_options(backend=(MemoryBackend(), redis_url))

    assert ask_elsewhere("hi") == {"answer": "HI"}
    assert calls == ["hi"]
