"""Guarantee: every step after the paid call is fail-open, and the runtime never strands a caller.

What is checked here, through the public API:

* encoding or storing a result that the function already returned never raises
  to the caller (a raising ``computed_field``, a raising ``usage`` property, on
  the store and on a hit; a stream item that cannot be encoded);
* an invalid environment value logs one warning naming the variable and what it
  accepts, and the default applies; an invalid value in code raises where it is
  written (the decorator, ``configure()``, an SDK patch, ``llm-memo --backend``);
* a forked child never waits for a call that was in flight in another thread of
  its parent;
* async Redis with more concurrent lookups than redis-py's pool holds waits for a
  connection instead of treating the pool as an outage;
* ``capture()`` records one event per call; ``CacheMiss`` names the function and
  carries the key and key material; cassettes hold no request id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest
from _cli import run_cli

import llm_memo
from llm_memo import CacheMiss, llm_cached
from llm_memo import _config as config
from llm_memo.backends import MISS


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    # "Once per variable and value" is per process: start each test with none given.
    config._warned.clear()
    config._env_mode.cache_clear()
    yield
    config._warned.clear()
    config._env_mode.cache_clear()


def llm_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "llm_memo" and r.levelno >= logging.WARNING]


# ------------------------------------------------------------------ the store step never raises


class Reply(pydantic.BaseModel):
    text: str

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def shouted(self) -> str:
        if self.text == "boom":
            raise RuntimeError("computed_field failed")
        return self.text.upper()


class WithUsage(pydantic.BaseModel):
    text: str

    @property
    def usage(self) -> Any:
        raise RuntimeError("usage is not available")


def test_a_raising_computed_field_is_never_evaluated_by_the_store() -> None:
    calls = 0

    @llm_cached
    def ask(prompt: str) -> Reply:
        nonlocal calls
        calls += 1
        return Reply(text=prompt)

    first, second = ask("boom"), ask("boom")
    assert calls == 1 and first == second and type(second) is Reply
    with pytest.raises(RuntimeError, match="computed_field failed"):
        second.shouted  # noqa: B018 - computed on access, as on the original


class _EncoderFault(RuntimeError):
    pass


@pytest.fixture
def encoder_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoding raises something unexpected (a library bug, an attribute that raises)."""

    def broken(value: Any, registry: Any) -> bytes:
        raise _EncoderFault("encoder failed")

    monkeypatch.setattr("llm_memo._core.encode_verified", broken)


@pytest.mark.usefixtures("encoder_fault")
def test_an_exception_while_encoding_is_not_stored_and_the_caller_gets_its_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    @llm_cached
    def ask(prompt: str) -> Reply:
        nonlocal calls
        calls += 1
        return Reply(text=prompt)

    assert ask("boom").text == "boom" and ask("boom").text == "boom"
    assert calls == 2  # never stored: each call runs
    info = ask.cache_info()
    assert (info.stores, info.skipped, info.errors) == (0, 2, 0)
    messages = llm_warnings(caplog)
    assert len(messages) == 1 and "_EncoderFault" in messages[0]


@pytest.mark.usefixtures("encoder_fault")
async def test_async_an_exception_while_encoding_never_reaches_the_caller() -> None:
    @llm_cached
    async def ask(prompt: str) -> Reply:
        return Reply(text=prompt)

    assert (await ask("boom")).text == "boom"
    assert ask.cache_info().skipped == 1


def test_a_raising_usage_property_breaks_neither_the_store_nor_a_hit() -> None:
    @llm_cached
    def ask(prompt: str) -> WithUsage:
        return WithUsage(text=prompt)

    with llm_memo.capture() as calls:
        assert ask("a").text == "a"
        assert ask("a").text == "a"  # a hit reads `usage` for the tokens saved
    assert [(c.kind, c.saved_tokens) for c in calls] == [("miss", None), ("hit", None)]
    assert ask.cache_info().hits == 1


def test_a_stream_item_that_cannot_be_encoded_streams_on_and_stores_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llm_memo import _stream, serialize

    real = serialize.verified_tree

    def fails_on_boom(item: Any, registry: Any) -> Any:
        if isinstance(item, Reply) and item.text == "boom":
            raise _EncoderFault("encoder failed")
        return real(item, registry)

    monkeypatch.setattr(_stream, "verified_tree", fails_on_boom)

    @llm_cached
    def stream(prompt: str) -> Iterator[Reply]:
        yield Reply(text=prompt)
        yield Reply(text="boom")

    assert [r.text for r in stream("a")] == ["a", "boom"]
    assert [r.text for r in stream("a")] == ["a", "boom"]
    assert stream.cache_info().stores == 0


def test_a_coalesced_waiter_gets_a_value_that_cannot_be_copied_through_the_encoder() -> None:
    entered, release = threading.Event(), threading.Event()

    @llm_cached
    def ask(prompt: str) -> Reply:
        entered.set()
        release.wait()
        return Reply(text=prompt)

    results: list[Any] = []
    leader = threading.Thread(target=lambda: results.append(ask("boom")))
    leader.start()
    entered.wait()
    waiter = threading.Thread(target=lambda: results.append(ask("boom")))
    waiter.start()
    memo = ask._self_memo  # type: ignore[attr-defined]
    while memo.flights.waiting() == 0:  # the waiter has joined the flight
        threading.Event().wait(0.001)
    release.set()
    leader.join()
    waiter.join()
    assert [r.text for r in results] == ["boom", "boom"]


# ------------------------------------------------------------------ invalid settings


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("LLM_MEMO_TTL", "soon", "90s"),
        ("LLM_MEMO_TTL", "-5", "90s"),
        ("LLM_MEMO_MODE", "on", "readwrite, readonly"),
        ("LLM_MEMO_BACKEND", "floppy", "disk:<dir>"),
        ("LLM_MEMO_BACKEND", "redis://host:port", "port"),
        ("LLM_MEMO_STRICT", "maybe", "true"),
    ],
)
def test_an_invalid_environment_value_warns_once_and_the_default_applies(
    name: str, value: str, accepted: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(name, value)
    calls = 0

    @llm_cached
    def ask(prompt: str) -> str:
        nonlocal calls
        calls += 1
        return prompt

    assert [ask("a") for _ in range(3)] == ["a"] * 3
    assert calls == 1  # cached, in the default memory backend, no expiry, readwrite
    parameters = ask.cache_parameters()
    assert parameters["backend"] == "memory" and parameters["ttl"] is None and parameters["strict"] is False
    messages = llm_warnings(caplog)
    assert len(messages) == 1, messages
    assert name in messages[0] and repr(value) in messages[0] and accepted in messages[0]


def test_environment_values_ignore_surrounding_whitespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_MEMO_BACKEND", "disk ")
    monkeypatch.setenv("LLM_MEMO_MODE", " readonly\n")
    monkeypatch.setenv("LLM_MEMO_STRICT", " on ")
    monkeypatch.setenv("LLM_MEMO_TTL", " 7d ")

    @llm_cached
    def ask(prompt: str) -> str:
        return prompt

    assert ask("a") == "a"
    parameters = ask.cache_parameters()
    assert parameters["backend"].startswith("disk:")
    assert parameters["strict"] is True and parameters["ttl"] == 7 * 86400
    assert ask.cache_info().stores == 0  # readonly


@pytest.mark.parametrize(
    "options",
    [
        {"backend": "disk "},
        {"backend": "floppy"},
        {"backend": ("memory", "redis://h:x")},
        {"backend": 42},
        {"strict": "yes"},
        {"ttl": "soon"},
        {"mode": "on"},
    ],
)
def test_an_invalid_value_in_code_raises_at_decoration_and_at_configure(options: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        llm_cached(**options)(lambda p: p)
    with pytest.raises((TypeError, ValueError)):
        llm_memo.configure(**options)


def test_an_invalid_backend_raises_when_the_sdk_is_patched() -> None:
    pytest.importorskip("openai")
    with pytest.raises(ValueError, match="unknown backend"):
        llm_memo.patch_openai(backend="floppy")


@pytest.mark.parametrize("command", [["run"], ["ls"]])
@pytest.mark.parametrize(("url", "says"), [("floppy", "unknown backend"), ("redis://h:x", "port")])
def test_llm_memo_backend_is_checked_with_a_one_line_error(command: list[str], url: str, says: str) -> None:
    args = [*command, "--backend", url]
    done = run_cli(*args, "--", "python", "-c", "pass") if command == ["run"] else run_cli(*args)
    assert done.returncode == 2, done
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


# ------------------------------------------------------------------ fork


def test_a_forked_child_never_waits_for_a_call_in_flight_in_another_parent_thread() -> None:
    parent = os.getpid()
    entered, release = threading.Event(), threading.Event()

    @llm_cached
    def ask(prompt: str) -> str:
        if os.getpid() == parent:
            entered.set()
            release.wait()
        return f"{prompt}!"

    holder = threading.Thread(target=ask, args=("k",))
    holder.start()
    entered.wait()  # key "k" is in flight in another thread
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads, on purpose
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            code = 0 if ask("k") == "k!" else 1
        except BaseException:
            code = 2
        os.write(write, bytes([code]))
        os._exit(0)
    os.close(write)
    try:
        # Generous: a child that is going to answer does so in milliseconds.
        answered = select.select([read], [], [], 60)[0]
        if not answered:
            os.kill(pid, signal.SIGKILL)
        assert answered, "the child waited for a call that only its parent's thread was making"
        assert os.read(read, 1) == b"\x00"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
        release.set()
        holder.join()


# ------------------------------------------------------------------ Redis back-pressure


async def test_async_redis_beyond_the_pool_size_waits_for_connections(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from llm_memo.backends.redis import RedisBackend

    # Long timeouts: this is about the pool, and a loaded machine (several suites at once
    # on two cores) can be slow to answer 300 commands without anything being wrong.
    backend = RedisBackend(redis_url, prefix="backpressure", socket_timeout=15.0, connect_timeout=15.0)
    computed: list[int] = []

    @llm_cached(backend=backend, namespace="backpressure")
    async def answer(i: int) -> int:
        computed.append(i)
        return i * 2

    n = 300  # redis-py's pool holds 100 connections
    try:
        assert await asyncio.gather(*(answer(i) for i in range(n))) == [i * 2 for i in range(n)]
        assert await asyncio.gather(*(answer(i) for i in range(n))) == [i * 2 for i in range(n)]
        info = answer.cache_info()
        assert info.errors == 0 and info.stores == n and info.hits == n
        assert sorted(computed) == list(range(n))  # nothing called twice
        assert not [m for m in llm_warnings(caplog) if "unavailable" in m]
    finally:
        await backend.aclear("backpressure")
        await backend.aclose()


# ------------------------------------------------------------------ capture(): one record per call


class _FailingWrites:
    """A duck-typed backend whose reads miss and whose writes fail."""

    url = "failing:"

    def get(self, namespace: str, key: str) -> Any:
        return MISS

    def set(self, namespace: str, key: str, value: bytes, ttl: float | None) -> None:
        raise OSError("disk full")

    def delete(self, namespace: str, key: str) -> bool:
        return False

    def clear(self, namespace: str | None = None) -> int:
        return 0


def test_capture_records_one_event_per_call_with_the_store_outcome() -> None:
    @llm_cached
    def ask(prompt: str) -> str:
        return prompt

    keep_none = ask.with_options(cache_if=lambda r: False)
    failing = ask.with_options(backend=_FailingWrites())
    stores: list[llm_memo.CallEvent] = []
    llm_memo.add_hook("store", stores.append)
    try:
        with llm_memo.capture() as calls:
            ask("a")
            ask("a")
            with llm_memo.mode("readonly"):
                ask("b")
            keep_none("c")
            failing("d")
    finally:
        llm_memo.remove_hook("store", stores.append)
    assert [(c.kind, c.stored) for c in calls] == [
        ("miss", "stored"),
        ("hit", None),
        ("miss", None),
        ("miss", "skipped"),
        ("miss", "failed"),
    ]
    assert [s.key for s in stores] == [ask.cache_key("a")]  # hooks still see stores


def test_capture_records_a_cached_generator_once() -> None:
    @llm_cached
    def stream(prompt: str) -> Iterator[str]:
        yield from prompt

    with llm_memo.capture() as calls:
        assert list(stream("ab")) == ["a", "b"]
        assert list(stream("ab")) == ["a", "b"]
    assert [(c.kind, c.stored) for c in calls] == [("miss", "stored"), ("hit", None)]


# ------------------------------------------------------------------ CacheMiss


def test_cache_miss_names_the_function_and_carries_key_and_material() -> None:
    @llm_cached(namespace="shared-name", mode="replay")
    def summarise(text: str, *, words: int = 20) -> str:
        return text  # pragma: no cover

    with pytest.raises(CacheMiss) as info:
        summarise("the quick brown fox", words=5)
    error = info.value
    test = "test_cache_miss_names_the_function_and_carries_key_and_material"
    function = f"{__name__}.{test}.<locals>.summarise"
    assert error.function == function and error.namespace == "shared-name"
    assert error.key == summarise.cache_key("the quick brown fox", words=5)
    assert function in str(error) and error.key in str(error) and "shared-name" in str(error)
    assert error.material is not None
    material = orjson.loads(error.material)
    assert "the quick brown fox" in str(material) and "shared-name" in str(material)


# ------------------------------------------------------------------ cassettes


def test_a_cassette_holds_no_request_id_so_the_same_answer_records_identically(tmp_path: Path) -> None:
    chat = pytest.importorskip("openai.types.chat")
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
    }
    files = []
    for request_id in ("req_first", "req_second"):
        path = tmp_path / f"{request_id}.json"

        def ask(prompt: str, request_id: str = request_id) -> Any:
            completion = chat.ChatCompletion.model_validate(answer)
            completion._request_id = request_id
            return completion

        cached = llm_cached(backend=f"cassette:{path}", namespace="chat", ignore=["request_id"])(ask)
        assert cached("hello").choices[0].message.content == "hi"
        assert cached("hello").choices[0].message.content == "hi"  # served from the cassette
        files.append(path.read_bytes())
    assert files[0] == files[1]
    assert b"req_" not in files[0]
