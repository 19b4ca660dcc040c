"""The fast paths keep every guarantee: a shortcut never serves another call's answer."""

from __future__ import annotations

import enum
import math
import uuid
from typing import Any

import pytest

from llm_memo import MemoryBackend, llm_cached


class Color(enum.Enum):
    RED = "red"


def test_calls_holding_none_keep_the_shortcut_and_nan_never_matches_them() -> None:
    calls = []

    @llm_cached(namespace="perf.none", backend="memory")
    def chat(messages: list[dict[str, Any]], max_tokens: float | None = None) -> int:
        calls.append(1)
        return len(calls)

    memo = chat._self_memo
    history = [{"role": "assistant", "content": None}, {"role": "user", "content": "hi"}]
    assert chat(history) == 1
    assert len(memo._raw_keys) == 1  # remembered, although its JSON holds null
    assert chat(history) == 1
    # NaN and infinity are written as null too: never served the None call's answer.
    assert chat(history, max_tokens=math.nan) == 2
    assert chat(history, max_tokens=math.inf) == 3
    assert chat([{"role": "assistant", "content": -math.inf}, {"role": "user", "content": "hi"}]) == 4
    assert chat(history) == 1
    assert chat(history, max_tokens=math.nan) == 2


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Color.RED, "red"),
        ("red", Color.RED),
        (uuid.UUID(int=7), str(uuid.UUID(int=7))),
        (str(uuid.UUID(int=7)), uuid.UUID(int=7)),
    ],
)
def test_an_enum_or_uuid_under_a_credentials_name_never_shares_the_credentials_answer(
    first: Any, second: Any
) -> None:
    # Both are written as the same JSON str, but a credential is hidden from the key
    # and an enum's value is not: two different keys, whichever comes first.
    calls = []

    @llm_cached(namespace="perf.credential", backend=MemoryBackend())
    def call(options: dict[str, Any]) -> int:
        calls.append(1)
        return len(calls)

    assert call({"api_key": first}) == 1
    assert call({"api_key": second}) == 2
    assert call({"api_key": first}) == 1


class CountingBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, namespace: str, key: str) -> Any:
        self.gets += 1
        return super().get(namespace, key)


def test_a_miss_reads_the_store_once() -> None:
    # The second look before calling is only for a flight of the key that ended
    # since the lookup (tests/test_flight.py races one): on Redis it is a round trip.
    backend = CountingBackend()

    @llm_cached(namespace="perf.miss", backend=backend)
    def double(x: int) -> int:
        return 2 * x

    assert double(2) == 4
    assert backend.gets == 1
    assert double(2) == 4
    assert backend.gets == 2


async def test_an_async_miss_reads_the_store_once() -> None:
    backend = CountingBackend()

    @llm_cached(namespace="perf.amiss", backend=backend)
    async def double(x: int) -> int:
        return 2 * x

    assert await double(2) == 4
    assert backend.gets == 1
