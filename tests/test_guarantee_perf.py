"""The fast paths keep every guarantee: a shortcut never serves another call's answer."""

from __future__ import annotations

import enum
import logging
import math
import subprocess
import sys
import uuid
from typing import Any

import pytest
from _internals import memo_of

from llm_memo import MemoryBackend, llm_cached


class Color(enum.Enum):
    RED = "red"


def test_calls_holding_none_keep_the_shortcut_and_nan_never_matches_them() -> None:
    calls = []

    @llm_cached(namespace="perf.none", backend="memory")
    def chat(messages: list[dict[str, Any]], max_tokens: float | None = None) -> int:
        calls.append(1)
        return len(calls)

    memo = memo_of(chat)
    history: list[dict[str, Any]] = [
        {"role": "assistant", "content": None},
        {"role": "user", "content": "hi"},
    ]
    assert chat(history) == 1
    assert len(memo._raw_keys) == 1  # remembered, although its JSON holds null
    assert chat(history) == 1
    # NaN and infinity are written as null too: never served the None call's answer.
    assert chat(history, max_tokens=math.nan) == 2
    assert chat(history, max_tokens=math.inf) == 3
    inf_history: list[dict[str, Any]] = [
        {"role": "assistant", "content": -math.inf},
        {"role": "user", "content": "hi"},
    ]
    assert chat(inf_history) == 4
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


def test_keyword_calls_bind_as_every_other_spelling() -> None:
    calls = []

    @llm_cached(namespace="perf.bind", backend=MemoryBackend(), ignore=["trace"])
    def create(a: int, /, *, model: str, temperature: float = 1.0, trace: object = None) -> int:
        calls.append(1)
        return len(calls)

    assert create(1, model="m") == 1
    assert create(1, model="m", temperature=1.0, trace=object()) == 1  # default spelled, ignored
    assert create(1, temperature=1, model="m") == 1
    with pytest.raises(TypeError):
        create(a=1, model="m")  # type: ignore[call-arg]  # positional-only: the function's own error
    with pytest.raises(TypeError):
        create(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        create(1, model="m", colour="red")  # type: ignore[call-arg]

    @llm_cached(namespace="perf.bind.kw", backend=MemoryBackend())
    def chat(*, model: str, max_tokens: int | None = None) -> int:
        calls.append(1)
        return len(calls)

    assert chat(model="m") == 2
    assert chat(max_tokens=None, model="m") == 2
    assert chat(model="m", max_tokens=5) == 3
    with pytest.raises(TypeError):
        chat()  # type: ignore[call-arg]


def test_mode_from_the_environment_applies_on_the_next_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_memo import CacheMiss

    @llm_cached(namespace="perf.env", backend=MemoryBackend())
    def double(x: int) -> int:
        return 2 * x

    monkeypatch.setenv("LLM_MEMO_MODE", "replay")
    with pytest.raises(CacheMiss):
        double(1)
    monkeypatch.delenv("LLM_MEMO_MODE")
    assert double(1) == 2
    monkeypatch.setenv("LLM_MEMO_MODE", "off")
    assert double(2) == 4
    assert double.cache_info().misses == 2  # replay's and readwrite's; "off" looks nothing up


def test_debug_log_still_names_hits_and_misses(caplog: pytest.LogCaptureFixture) -> None:
    @llm_cached(namespace="perf.log", backend=MemoryBackend())
    def double(x: int) -> int:
        return 2 * x

    with caplog.at_level(logging.DEBUG, logger="llm_memo"):
        double(1)
        double(1)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("llm_memo miss perf.log") for m in messages)
    assert any(m.startswith("llm_memo hit perf.log") for m in messages)


def test_import_and_first_decoration_load_neither_sockets_nor_sqlite() -> None:
    # (wrapt's asyncio imports socket at the first decoration: that one is not ours.)
    code = (
        "import sys, llm_memo\n"
        "print(sorted(m for m in ('socket', 'sqlite3', 'llm_memo.transfer') if m in sys.modules))\n"
        "llm_memo.llm_cached(lambda: 1)\n"
        "print(sorted(m for m in ('sqlite3', 'llm_memo.transfer') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "[]"]
