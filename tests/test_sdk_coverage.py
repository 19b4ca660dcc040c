"""What the SDK patches cover: the real openai and anthropic SDKs over real HTTP.

Every check counts the local server's requests; nothing inside the SDKs is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from llm_memo import MemoryBackend
from llm_memo.integrations.anthropic import patch_anthropic, unpatch_anthropic
from llm_memo.integrations.openai import patch_openai, unpatch_openai

MSG: list[Any] = [{"role": "user", "content": "Tell me about caches"}]
CHAT: dict[str, Any] = {"model": "gpt-test", "messages": MSG}
RESPONSE: dict[str, Any] = {"model": "gpt-test", "input": "Tell me about caches"}
ASK: dict[str, Any] = {"model": "claude-test", "max_tokens": 100, "messages": MSG}


@pytest.fixture
def store() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def patched(store: MemoryBackend) -> Iterator[MemoryBackend]:
    patch_openai(backend=store)
    patch_anthropic(backend=store)
    yield store
    unpatch_openai()
    unpatch_anthropic()


@pytest.fixture
def client(llm_server: Any) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test-key", base_url=llm_server.openai_base_url) as c:
        yield c


@pytest.fixture
def aclient(llm_server: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test-key", base_url=llm_server.openai_base_url)


@pytest.fixture
def claude(llm_server: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="sk-ant-test", base_url=llm_server.anthropic_base_url) as c:
        yield c


# --------------------------------------------------------------------------- store


@pytest.mark.parametrize("endpoint", ["responses", "chat"])
def test_store_is_in_the_key(llm_server: Any, client: openai.OpenAI, patched: Any, endpoint: str) -> None:
    if endpoint == "responses":

        def call(**extra: Any) -> Any:
            return client.responses.create(**RESPONSE, **extra)

    else:

        def call(**extra: Any) -> Any:
            return client.chat.completions.create(**CHAT, **extra)

    call(store=False)
    call(store=True)  # a store=False answer's id cannot be used later: never served here
    assert llm_server.count() == 2
    call(store=True)
    call(store=False)
    assert llm_server.count() == 2
