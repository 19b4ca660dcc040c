"""A store given as a plain object works like any backend, or is refused up front."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llm_memo import llm_cached
from llm_memo.backends import MISS


class Dict:
    """A user's store: the four methods, no ``url``, no async twins, no ``add``."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.down = False

    def get(self, namespace: str, key: str) -> Any:
        if self.down:
            raise OSError("store is down")
        return self.data.get((namespace, key), MISS)

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        if self.down:
            raise OSError("store is down")
        self.data[(namespace, key)] = value

    def delete(self, namespace: str, key: str) -> bool:
        return self.data.pop((namespace, key), None) is not None

    def clear(self, namespace: str | None = None) -> int:
        doomed = [k for k in self.data if namespace in (None, k[0])]
        for k in doomed:
            del self.data[k]
        return len(doomed)


def test_a_duck_typed_store_caches_sync_and_async_calls() -> None:
    store = Dict()
    calls: list[str] = []

    @llm_cached(backend=store)
    async def ask(prompt: str) -> str:
        calls.append(prompt)
        return prompt.upper()

    async def twice() -> list[str]:
        return [await ask("q"), await ask("q")]

    assert asyncio.run(twice()) == ["Q", "Q"]
    assert calls == ["q"]
    assert len(store.data) == 1


def test_a_failing_duck_typed_store_is_a_miss_on_the_async_path_too() -> None:
    # The fault path names the store in its warning; a store without `url` crashed it.
    store = Dict()
    store.down = True

    @llm_cached(backend=store)
    async def ask(prompt: str) -> str:
        return prompt.upper()

    @llm_cached(backend=store)
    def ask_sync(prompt: str) -> str:
        return prompt.upper()

    assert asyncio.run(ask("q")) == "Q"
    assert ask_sync("q") == "Q"
    assert ask.cache_info().errors >= 1
    assert ask_sync.cache_info().errors >= 1


def test_a_duck_typed_store_can_hold_a_lease() -> None:
    store = Dict()

    @llm_cached(backend=store, lease=30)
    async def ask(prompt: str) -> str:
        return prompt.upper()

    assert asyncio.run(ask("q")) == "Q"
    assert asyncio.run(ask("q")) == "Q"
    assert not [k for k in store.data if k[0].endswith("#lease")]  # released


def test_an_object_missing_store_methods_is_refused_naming_them() -> None:
    class Half:
        def get(self, namespace: str, key: str) -> Any:
            return MISS

        def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
            pass

    def ask(prompt: str) -> str:
        return prompt

    with pytest.raises(TypeError, match=r"no delete\(\), clear\(\)"):
        llm_cached(backend=Half())(ask)


def test_stores_read_expiry_and_fingerprint_through_serialize_only() -> None:
    from llm_memo.errors import CorruptEntry
    from llm_memo.serialize import entry_expiry, entry_fingerprint, pack_entry

    fp = bytes(range(16))
    data = pack_entry(b'"v"', fp, 100.0, 200.0, b"{}")
    assert entry_expiry(data) == 200.0
    assert entry_expiry(pack_entry(b'"v"', fp, 100.0, None)) is None
    assert entry_fingerprint(data) == fp
    torn = data[:-1] + bytes([data[-1] ^ 1])
    for read in (entry_expiry, entry_fingerprint):
        with pytest.raises(CorruptEntry):
            read(torn)
        with pytest.raises(CorruptEntry):
            read(b"not an entry")


def test_markers_are_falsy_named_and_kept_by_copy() -> None:
    import copy

    from llm_memo import MISS
    from llm_memo._config import UNSET
    from llm_memo.explain import ABSENT

    for marker, name in ((MISS, "MISS"), (UNSET, "UNSET"), (ABSENT, "ABSENT")):
        assert not marker and repr(marker) == name
        assert copy.copy(marker) is marker and copy.deepcopy({"option": marker})["option"] is marker
        assert type(marker)() is marker
    assert len({id(MISS), id(UNSET), id(ABSENT)}) == 3
