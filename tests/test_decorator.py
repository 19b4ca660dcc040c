"""The decorator: what a user sees on functions, coroutines and methods."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

import llm_memo
from llm_memo import (
    MISS,
    Backend,
    BackendError,
    CacheInfo,
    MemoryBackend,
    llm_cached,
)
from llm_memo.backends import StoredEntry
from llm_memo.backends.base import Miss

T = TypeVar("T")


class Counter:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, value: T) -> T:
        self.calls.append(value)
        return value


def test_bare_and_configured_forms_cache_and_keep_metadata() -> None:
    seen = Counter()

    @llm_cached
    def ask(prompt: str, *, model: str = "m") -> str:
        """Ask the model."""
        return seen(f"{model}:{prompt}")

    assert ask("hi") == "m:hi"
    assert ask(prompt="hi") == "m:hi"
    assert seen.calls == ["m:hi"]
    assert ask.cache_info() == CacheInfo(hits=1, misses=1, coalesced=0, stores=1, skipped=0, errors=0)
    assert ask.__name__ == "ask" and ask.__doc__ == "Ask the model."
    assert inspect.signature(ask) == inspect.signature(ask.__wrapped__)
    assert list(inspect.signature(ask).parameters) == ["prompt", "model"]
    assert ask.__wrapped__("x") == "m:x"  # bypasses the cache
    assert ask.cache_info().misses == 1


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        llm_cached("memory")  # type: ignore[call-overload]


async def test_async_functions_stay_coroutine_functions() -> None:
    seen = Counter()

    @llm_cached(ttl=60)
    async def ask(prompt: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        return seen({"answer": prompt})

    assert inspect.iscoroutinefunction(ask)
    first = await ask("q")
    second = await ask("q")
    assert first == second == {"answer": "q"}
    assert len(seen.calls) == 1
    second["answer"] = "mutated"
    assert (await ask("q")) == {"answer": "q"}  # a hit is never aliased to the stored value


def test_none_is_a_cacheable_value() -> None:
    seen = Counter()

    @llm_cached
    def f(x: int) -> None:
        seen(x)

    assert f(1) is None and f(1) is None
    assert seen.calls == [1]


def test_results_are_never_aliased() -> None:
    @llm_cached
    def f() -> dict[str, list[int]]:
        return {"a": [1]}

    first = f()
    first["a"].append(2)
    hit = f()
    assert hit == {"a": [1]}
    hit["a"].append(3)
    assert f() == {"a": [1]}


def test_exceptions_propagate_unchanged_and_are_never_cached() -> None:
    attempts: list[int] = []

    class Boom(Exception):
        pass

    @llm_cached
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise Boom("first call fails")
        return x

    with pytest.raises(Boom, match="first call fails"):
        flaky(1)
    assert flaky(1) == 1
    assert flaky(1) == 1
    assert attempts == [1, 1]


def test_wrong_arguments_raise_the_functions_own_type_error() -> None:
    @llm_cached
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="argument"):
        f()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        f(1, y=2)  # type: ignore[call-arg]


def test_helpers_key_invalidate_and_clear_only_touch_their_own_function() -> None:
    seen = Counter()

    @llm_cached(backend="disk")
    def a(x: int) -> int:
        return seen(x)

    @llm_cached(backend="disk")
    def b(x: int) -> int:
        return seen(-x)

    a(1), a(2), b(1)
    assert a.cache_invalidate(1) is True
    assert a.cache_invalidate(1) is False
    a(1)
    assert seen.calls == [1, 2, -1, 1]
    assert a.cache_clear() == 2
    b(1)
    assert seen.calls == [1, 2, -1, 1]  # b's entry survived a's clear
    a(2)
    assert seen.calls[-1] == 2


class Persona(BaseModel):
    name: str

    def __llm_memo_key__(self) -> str:
        return self.name


class Bot:
    def __init__(self, persona: str) -> None:
        self.persona = persona
        self.calls = 0

    def __llm_memo_key__(self) -> str:
        return self.persona

    @llm_cached
    def ask(self, q: str) -> str:
        self.calls += 1
        return f"{self.persona}:{q}"

    @llm_cached
    @classmethod
    def kind(cls, q: str) -> str:
        return f"{cls.__name__}:{q}"

    @classmethod
    @llm_cached
    def kind2(cls, q: str) -> str:
        return f"{cls.__name__}:{q}"

    @llm_cached
    @staticmethod
    def shout(q: str) -> str:
        return q.upper()


def test_methods_classmethods_and_staticmethods() -> None:
    a, b = Bot("pirate"), Bot("poet")
    assert a.ask("hi") == "pirate:hi" and a.ask("hi") == "pirate:hi"
    assert b.ask("hi") == "poet:hi"
    assert a.calls == 1 and b.calls == 1
    # Helpers work through bound methods, and unbound with the instance first.
    assert a.ask.cache_key("hi") == Bot.ask.cache_key(a, "hi") != b.ask.cache_key("hi")
    assert a.ask.cache_info().hits == 1
    # Type checkers see a cached classmethod as unbound, and bind a cached staticmethod
    # read from an instance as a method (see CachedFunction.__get__).
    assert Bot.kind("x") == Bot.kind("x") == "Bot:x"  # type: ignore[call-arg, arg-type]
    assert Bot.kind.cache_info().hits == 1
    assert Bot.kind2("x") == Bot.kind2("x") == "Bot:x"  # type: ignore[call-arg, arg-type]
    assert Bot.kind2.cache_info().hits == 1
    assert Bot.shout("x") == a.shout("x") == "X"  # type: ignore[call-arg]
    assert Bot.shout.cache_info().hits == 1
    assert a.ask.cache_invalidate("hi") is True
    a.ask("hi")
    assert a.calls == 2


def test_ignore_and_custom_key() -> None:
    seen = Counter()

    @llm_cached(ignore=["request_id"])
    def f(prompt: str, request_id: int) -> str:
        return seen(prompt)

    f("x", 1), f("x", 2)
    assert seen.calls == ["x"]

    @llm_cached(key=lambda prompt, **_: prompt.lower())
    def g(prompt: str, **kwargs: Any) -> str:
        return seen(prompt)

    g("Hello", a=1), g("hello", a=2)
    assert seen.calls == ["x", "Hello"]
    with pytest.raises(ValueError, match="not a parameter"):
        llm_cached(ignore=["nope"])(lambda x: x)


def test_ttl_expires_exactly_on_an_injected_clock(clock: Any) -> None:
    seen = Counter()

    @llm_cached(ttl="90s", clock=clock)
    def f(x: int) -> int:
        return seen(x)

    f(1)
    clock.advance(89.999)
    f(1)
    assert seen.calls == [1]
    clock.advance(0.001)
    f(1)
    assert seen.calls == [1, 1]


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [
        (None, None),
        (5, 5.0),
        (2.5, 2.5),
        (dt.timedelta(minutes=2), 120.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("12h", 43200.0),
        ("7d", 604800.0),
        ("1h30m", 5400.0),
        ("never", None),
    ],
)
def test_ttl_forms(ttl: Any, seconds: float | None) -> None:
    assert llm_memo.parse_ttl(ttl) == seconds


@pytest.mark.parametrize("bad", ["soon", "-5s", 0, -1, "7 days", True, [1]])
def test_bad_ttl_is_a_clear_error(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="ttl="):
        llm_cached(ttl=bad)(lambda: 1)


def test_unstorable_result_is_returned_untouched_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    class Handle:
        pass

    handle = Handle()

    @llm_cached
    def f(x: int) -> Handle:
        return handle

    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        assert f(1) is handle
        assert f(1) is handle
        assert f(2) is handle
    warnings = [r for r in caplog.records if "not caching" in r.getMessage()]
    assert len(warnings) == 1
    assert f.cache_info().stores == 0 and f.cache_info().skipped == 3


def test_pydantic_results_come_back_as_their_annotated_type() -> None:
    class Answer(BaseModel):
        text: str

    @llm_cached
    def f(q: str) -> Answer:
        return Answer(text=q)

    assert f("a") == f("a") == Answer(text="a")
    assert type(f("a")) is Answer
    assert f.cache_info().hits == 2


class ExplodingBackend(Backend):
    blocking = False
    url = "exploding"

    def __init__(self) -> None:
        self.broken = True
        self.inner = MemoryBackend()

    def _check(self) -> None:
        if self.broken:
            raise OSError("disk on fire")

    def get(self, namespace: str, key: str) -> bytes | Miss:
        self._check()
        return self.inner.get(namespace, key)

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        self._check()
        self.inner.set(namespace, key, value, ttl)

    def delete(self, namespace: str, key: str) -> bool:
        self._check()
        return self.inner.delete(namespace, key)

    def clear(self, namespace: str | None = None) -> int:
        self._check()
        return self.inner.clear(namespace)

    def entries(self, namespace: str | None = None) -> Iterator[StoredEntry]:
        return self.inner.entries(namespace)


def test_backend_faults_fail_open_with_a_rate_limited_warning(caplog: pytest.LogCaptureFixture) -> None:
    backend = ExplodingBackend()
    seen = Counter()

    @llm_cached(backend=backend)
    def f(x: int) -> int:
        return seen(x)

    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        assert [f(1) for _ in range(5)] == [1] * 5
    assert len(seen.calls) == 5
    faults = [r for r in caplog.records if "disk on fire" in r.getMessage()]
    assert len(faults) == 2  # one for get, one for set: not one per call
    assert f.cache_info().errors == 10
    backend.broken = False  # recovery is automatic
    f(1), f(1)
    assert len(seen.calls) == 6


async def test_strict_mode_raises_backend_error_from_the_fault() -> None:
    backend = ExplodingBackend()

    @llm_cached(backend=backend, strict=True)
    def f(x: int) -> int:
        return x

    @llm_cached(backend=backend, strict=True)
    async def g(x: int) -> int:
        return x

    with pytest.raises(BackendError, match="disk on fire") as info:
        f(1)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(BackendError):
        await g(1)


def test_user_exception_is_not_masked_by_a_backend_fault() -> None:
    backend = ExplodingBackend()

    @llm_cached(backend=backend)
    def f() -> int:
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        f()


def test_configure_and_environment_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    @llm_cached
    def f(x: int) -> int:
        return x

    assert f.cache_parameters()["backend"] == "memory"
    monkeypatch.setenv("LLM_MEMO_BACKEND", "disk")
    monkeypatch.setenv("LLM_MEMO_TTL", "1h")
    llm_memo.configure()  # defaults are re-read on the next call after configure()
    params = f.cache_parameters()
    assert params["backend"].startswith("disk:") and params["ttl"] == 3600.0
    llm_memo.configure(backend="disk:" + str(tmp_path / "explicit"), ttl=None)
    params = f.cache_parameters()
    assert params["backend"] == "disk:" + str(tmp_path / "explicit") and params["ttl"] is None

    @llm_cached(backend="memory", ttl=5)
    def g(x: int) -> int:
        return x

    assert g.cache_parameters()["backend"] == "memory" and g.cache_parameters()["ttl"] == 5.0


def test_unknown_backend_is_a_clear_error_at_decoration() -> None:
    with pytest.raises(ValueError, match="unknown backend"):

        @llm_cached(backend="floppy:/a")
        def f() -> int:
            return 1  # pragma: no cover


def test_version_bump_invalidates() -> None:
    seen = Counter()

    def make(version: int) -> Any:
        @llm_cached(backend="disk", namespace="ask", version=version)
        def ask(q: str) -> str:
            return seen(q)

        return ask

    make(1)("x"), make(1)("x"), make(2)("x")
    assert seen.calls == ["x", "x"]


def test_memory_backend_is_bounded_and_lru() -> None:
    backend = MemoryBackend(max_entries=3, max_bytes=1000)
    for i in range(5):
        backend.set("ns", f"k{i}", b"x" * 10, None)
    assert len(backend) == 3 and backend.get("ns", "k0") is MISS
    backend.get("ns", "k2")  # k2 becomes most recent
    backend.set("ns", "k5", b"x" * 10, None)
    assert backend.get("ns", "k2") != MISS and backend.get("ns", "k3") is MISS
    backend.set("ns", "big", b"x" * 900, None)
    assert backend.nbytes <= 1000
    backend.set("ns", "huge", b"x" * 5000, None)  # larger than the whole bound: not stored
    assert backend.get("ns", "huge") is MISS and backend.get("ns", "big") != MISS


def test_memory_backend_stays_bounded_over_many_calls() -> None:
    backend = MemoryBackend(max_entries=500, max_bytes=200_000)

    @llm_cached(backend=backend)
    def f(i: int) -> str:
        return "x" * (i % 700)

    for i in range(20_000):
        f(i)
    assert len(backend) <= 500 and backend.nbytes <= 200_000


def test_register_scheme_makes_a_url_name_a_custom_backend() -> None:
    from llm_memo.backends import register_scheme

    made: list[str] = []

    def factory(url: str, rest: str) -> MemoryBackend:
        made.append(rest)
        return MemoryBackend(max_entries=int(rest))

    register_scheme("tiny", factory)

    @llm_cached(backend="tiny:2")
    def f(x: int) -> int:
        return x

    f(1), f(1)
    assert made == ["2"] and f.cache_info().hits == 1
    assert f.cache_parameters()["backend"] == "memory"
