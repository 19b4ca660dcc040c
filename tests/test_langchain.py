"""LLMMemoCache: LangChain's own standard cache suites, and ChatOpenAI over real HTTP.

Uses the real ``langchain-core``, ``langchain-tests`` and ``langchain-openai``
packages (the ``langchain`` and ``test`` extras) against the local server.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")
langchain_openai = pytest.importorskip("langchain_openai")

from langchain_core.globals import get_llm_cache, set_llm_cache  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from langchain_core.outputs import ChatGeneration, Generation  # noqa: E402
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite  # noqa: E402

import llm_memo  # noqa: E402
from llm_memo import CacheMiss  # noqa: E402
from llm_memo.backends import Backend  # noqa: E402
from llm_memo.backends.disk import DiskBackend  # noqa: E402
from llm_memo.backends.memory import MemoryBackend  # noqa: E402
from llm_memo.backends.sqlite import SQLiteBackend  # noqa: E402
from llm_memo.integrations.langchain import LLMMemoCache  # noqa: E402
from llm_memo.testing import FakeLLMServer  # noqa: E402

ChatOpenAI = langchain_openai.ChatOpenAI


def _backend(kind: str, tmp_path: Path) -> Backend:
    if kind == "memory":
        return MemoryBackend()
    if kind == "disk":
        return DiskBackend(tmp_path / "disk")
    return SQLiteBackend(tmp_path / "cache.sqlite3")


# ---------------------------------------------------------------------- LangChain's standard suites


class TestSyncMemory(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self) -> LLMMemoCache:
        return LLMMemoCache(MemoryBackend())


class TestSyncDisk(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> LLMMemoCache:
        return LLMMemoCache(_backend("disk", tmp_path), ttl="1h")


class TestSyncSQLite(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> LLMMemoCache:
        return LLMMemoCache(_backend("sqlite", tmp_path))


class TestAsyncMemory(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self) -> LLMMemoCache:
        return LLMMemoCache(MemoryBackend())


class TestAsyncDisk(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, tmp_path: Path) -> LLMMemoCache:
        return LLMMemoCache(_backend("disk", tmp_path), ttl="1h")


class TestAsyncSQLite(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, tmp_path: Path) -> LLMMemoCache:
        return LLMMemoCache(_backend("sqlite", tmp_path))


# ---------------------------------------------------------------------- ChatOpenAI end to end


@pytest.fixture
def global_cache() -> Iterator[None]:
    previous = get_llm_cache()
    yield
    set_llm_cache(previous)


class Chats:
    """ChatOpenAI models on HTTP clients of their own, closed after the test.

    (Left to itself, langchain-openai shares one cached client per base URL for the
    whole process, whose sockets are only closed by the garbage collector.)
    """

    def __init__(self, server: FakeLLMServer) -> None:
        self.server = server
        self.clients: list[Any] = []

    def __call__(self, **kwargs: Any) -> Any:
        sync_client, async_client = openai.DefaultHttpxClient(), openai.DefaultAsyncHttpxClient()
        self.clients += [sync_client, async_client]
        return ChatOpenAI(
            model="gpt-4o-mini",
            base_url=self.server.openai_base_url,
            api_key="sk-langchain-test",
            max_retries=0,
            http_client=sync_client,
            http_async_client=async_client,
            **kwargs,
        )

    async def aclose(self) -> None:
        for client in self.clients:
            if isinstance(client, openai.DefaultAsyncHttpxClient):
                await client.aclose()
            else:
                client.close()


@pytest.fixture
async def chat(llm_server: FakeLLMServer) -> AsyncIterator[Chats]:
    chats = Chats(llm_server)
    yield chats
    await chats.aclose()


@pytest.mark.parametrize("kind", ["memory", "disk", "sqlite"])
def test_chat_openai_second_invoke_is_served_from_cache(
    kind: str, chat: Chats, llm_server: FakeLLMServer, tmp_path: Path, global_cache: None
) -> None:
    cache = LLMMemoCache(_backend(kind, tmp_path), ttl="7d")
    set_llm_cache(cache)
    llm = chat()

    first = llm.invoke("Tell me a joke")
    second = llm.invoke("Tell me a joke")

    assert llm_server.count("/chat/completions") == 1
    assert isinstance(second, AIMessage)
    assert second.content == first.content
    assert "Tell me a joke" in str(first.content)
    assert cache.cache_info().hits == 1
    assert cache.cache_info().stores == 1
    # A different prompt is a different call.
    llm.invoke("Tell me another joke")
    assert llm_server.count("/chat/completions") == 2


async def test_chat_openai_async_and_stats(
    chat: Chats, llm_server: FakeLLMServer, global_cache: None
) -> None:
    set_llm_cache(LLMMemoCache(MemoryBackend(), namespace="lc-async-e2e"))
    llm = chat(temperature=0)

    first = await llm.ainvoke("What is 2 + 2?")
    second = await llm.ainvoke("What is 2 + 2?")
    third = llm.invoke("What is 2 + 2?")  # sync and async share entries

    assert llm_server.count("/chat/completions") == 1
    assert first.content == second.content == third.content
    assert first.response_metadata["model_name"] == second.response_metadata["model_name"]
    entry = llm_memo.stats().functions["lc-async-e2e"]
    assert (entry["hits"], entry["misses"]) == (2, 1)
    assert entry["seconds_saved"] > 0  # the model call's time, measured between miss and update


def test_model_parameters_are_in_the_key(chat: Chats, llm_server: FakeLLMServer, global_cache: None) -> None:
    set_llm_cache(LLMMemoCache(MemoryBackend()))
    chat(temperature=0).invoke("hello")
    chat(temperature=0.5).invoke("hello")
    chat(temperature=0).invoke("hello")
    assert llm_server.count("/chat/completions") == 2


def test_per_model_cache_and_replay_mode(chat: Chats, llm_server: FakeLLMServer) -> None:
    backend = MemoryBackend()
    recorder = chat(cache=LLMMemoCache(backend))
    recorded = recorder.invoke("Summarise the plot of Hamlet")

    replaying = chat(cache=LLMMemoCache(backend, mode="replay"))
    assert replaying.invoke("Summarise the plot of Hamlet").content == recorded.content
    with pytest.raises(CacheMiss, match="langchain"):
        replaying.invoke("Summarise the plot of Macbeth")
    assert llm_server.count("/chat/completions") == 1  # replay never called the model


def test_modes_off_readonly_refresh() -> None:
    backend = MemoryBackend()
    answer = [Generation(text="cached")]
    LLMMemoCache(backend, mode="readonly").update("p", "llm", answer)
    assert LLMMemoCache(backend).lookup("p", "llm") is None
    LLMMemoCache(backend).update("p", "llm", answer)
    assert LLMMemoCache(backend, mode="refresh").lookup("p", "llm") is None
    assert LLMMemoCache(backend, mode="off").lookup("p", "llm") is None
    assert LLMMemoCache(backend).lookup("p", "llm") == answer
    with llm_memo.mode("off"):
        assert LLMMemoCache(backend).lookup("p", "llm") is None


# ---------------------------------------------------------------------- values: data, never code


def test_chat_generations_round_trip_with_tool_calls() -> None:
    cache = LLMMemoCache(MemoryBackend())
    message = AIMessage(
        content=[{"type": "text", "text": "calling"}],
        tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "tool_calls"},
        id="run-1",
    )
    generations = [ChatGeneration(message=message, generation_info={"finish_reason": "tool_calls"})]
    cache.update("prompt", "llm", generations)
    found = cache.lookup("prompt", "llm")
    assert found == generations
    assert found is not None and type(found[0]) is ChatGeneration
    assert type(found[0].message) is AIMessage
    assert cache.lookup("prompt", "llm") is not found  # every hit is a fresh object


def _plant(backend: Backend, prompt: str, llm_string: str, value: Any) -> None:
    """Store ``value`` under exactly the key LLMMemoCache looks up (its own memo, its own key)."""
    memo = LLMMemoCache(backend)._memo
    call = memo.prepare(None, (prompt, llm_string), {})
    assert call is not None
    memo.store(call, value)


CONSTRUCTOR = {
    "lc": 1,
    "type": "constructor",
    "id": ["llm_memo_planted_canary", "Boom"],
    "kwargs": {"text": "pwned"},
}


def test_planted_langchain_constructor_stays_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import langchain_core.load as lc_load

    lc_load_module = importlib.import_module("langchain_core.load.load")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("LangChain's loads() must never read cache content")

    monkeypatch.setattr(lc_load, "loads", refuse)
    monkeypatch.setattr(lc_load_module, "loads", refuse)
    monkeypatch.setattr(lc_load_module, "load", refuse)
    backend = MemoryBackend()
    cache = LLMMemoCache(backend)

    # As the whole value, and as a generation: not an allowed shape, so a miss.
    _plant(backend, "p1", "llm", CONSTRUCTOR)
    assert cache.lookup("p1", "llm") is None
    _plant(backend, "p2", "llm", [CONSTRUCTOR])
    assert cache.lookup("p2", "llm") is None
    # Naming a class outside the allow-list: a miss.
    _plant(backend, "p3", "llm", [{"class": "Popen", "data": {"args": ["true"]}}])
    assert cache.lookup("p3", "llm") is None
    # As the message: a miss.
    _plant(backend, "p4", "llm", [{"class": "ChatGeneration", "data": {}, "message": CONSTRUCTOR}])
    assert cache.lookup("p4", "llm") is None
    # Inside allowed data: it stays a plain dict.
    _plant(
        backend,
        "p5",
        "llm",
        [{"class": "Generation", "data": {"text": "hi", "generation_info": {"x": CONSTRUCTOR}}}],
    )
    found = cache.lookup("p5", "llm")
    assert found is not None
    assert found == [Generation(text="hi", generation_info={"x": CONSTRUCTOR})]
    assert type(found[0].generation_info["x"]) is dict
    assert "llm_memo_planted_canary" not in sys.modules


def test_unstorable_generations_are_skipped_not_raised() -> None:
    cache = LLMMemoCache(MemoryBackend())
    odd = Generation(text="x", generation_info={"obj": object()})
    cache.update("p", "llm", [odd])  # pydantic cannot dump it to JSON: not stored
    assert cache.lookup("p", "llm") is None
    assert cache.cache_info().skipped == 1


def test_clear_forgets_only_its_namespace() -> None:
    backend = MemoryBackend()
    first, second = LLMMemoCache(backend), LLMMemoCache(backend, namespace="other")
    first.update("p", "llm", [Generation(text="a")])
    second.update("p", "llm", [Generation(text="b")])
    first.clear()
    assert first.lookup("p", "llm") is None
    assert second.lookup("p", "llm") == [Generation(text="b")]
    assert first.cache_key("p", "llm") != second.cache_key("p", "llm")


def test_url_backend_and_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = LLMMemoCache(f"sqlite:{tmp_path / 'lc.sqlite3'}", ttl="1h")
    cache.update("p", "llm", [Generation(text="a")])
    assert LLMMemoCache(f"sqlite:{tmp_path / 'lc.sqlite3'}").lookup("p", "llm") == [Generation(text="a")]
    assert "sqlite" in repr(cache)
