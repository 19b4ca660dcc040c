"""Options: one checked value behind ``@llm_cached``, ``with_options``, the SDK patches and LangChain."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import openai
import pytest

import llm_memo
from llm_memo import MemoryBackend, llm_cached
from llm_memo.integrations.openai import patch_openai, unpatch_openai
from llm_memo.testing import FakeLLMServer

CHAT: dict[str, Any] = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def declared_options() -> list[str]:
    """The keyword options of ``@llm_cached(...)``'s typed signature."""
    with_options = [
        o for o in typing.get_overloads(llm_cached) if "backend" in inspect.signature(o).parameters
    ]
    return list(inspect.signature(with_options[0]).parameters)


# ------------------------------------------------------------------ unknown names


def test_a_typo_is_rejected_at_decoration_with_the_closest_name() -> None:
    with pytest.raises(TypeError) as caught:
        llm_cached(tll="7d")  # type: ignore[call-overload]
    assert str(caught.value) == "llm_cached() got an unexpected option 'tll'; did you mean 'ttl'?"


def test_a_name_close_to_nothing_lists_the_options() -> None:
    with pytest.raises(
        TypeError, match=r"llm_cached\(\) got an unexpected option 'colour'; the options are backend,"
    ):
        llm_cached(colour="red")  # type: ignore[call-overload]


def test_with_options_rejects_a_typo_naming_itself() -> None:
    @llm_cached
    def ask(prompt: str) -> str:
        return prompt

    with pytest.raises(
        TypeError, match=r"with_options\(\) got an unexpected option 'namespase'; did you mean 'namespace'\?"
    ):
        ask.with_options(namespase="x")


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"samples": 0}, ValueError),
        ({"lease": "soon"}, ValueError),
        ({"ttl": -1}, ValueError),
        ({"mode": "sometimes"}, ValueError),
        ({"strict": "yes"}, TypeError),
        ({"clock": 5}, TypeError),
        ({"cache_if": "yes"}, TypeError),
        ({"namespace": 3}, TypeError),
        ({"isolate_credentials": 1.5}, TypeError),
        ({"version": object()}, Exception),
    ],
)
def test_a_bad_value_fails_at_decoration(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        llm_cached(**options)


# ------------------------------------------------------------------ cache_parameters / with_options


def test_cache_parameters_lists_every_option_resolved() -> None:
    def keep(result: str) -> bool:
        return True

    @llm_cached(ttl="7d", lease=timedelta(seconds=30), samples=3, version=2, ignore=["noise"], cache_if=keep)
    def ask(prompt: str, noise: int = 0) -> str:
        return prompt

    parameters = ask.cache_parameters()
    assert list(parameters) == declared_options()
    assert parameters["ttl"] == 7 * 86400.0 and parameters["lease"] == 30.0
    assert parameters["samples"] == 3 and parameters["version"] == 2 and parameters["ignore"] == ("noise",)
    assert parameters["cache_if"] is keep and parameters["backend"] == "memory"
    assert (
        parameters["key"] is None and parameters["types"] == () and parameters["isolate_credentials"] is False
    )


def test_cache_parameters_never_shows_the_credential_secret() -> None:
    @llm_cached(isolate_credentials="my-hmac-secret")
    def ask(prompt: str, api_key: str) -> str:
        return prompt

    assert ask.cache_parameters()["isolate_credentials"] is True
    assert "my-hmac-secret" not in repr(ask.cache_parameters())


def test_with_options_changes_one_option_and_keeps_the_rest() -> None:
    store = MemoryBackend()

    @llm_cached(backend=store, ttl="1h", samples=2, version="v3", ignore=["noise"], lease=10)
    def ask(prompt: str, noise: int = 0) -> str:
        return prompt

    variant = ask.with_options(mode="refresh")
    before, after = ask.cache_parameters(), variant.cache_parameters()
    assert after["mode"] == "refresh" and before["mode"] is None
    assert {k: v for k, v in after.items() if k != "mode"} == {k: v for k, v in before.items() if k != "mode"}


# ------------------------------------------------------------------ patches and LangChain


def test_patches_reject_unknown_options() -> None:
    with pytest.raises(TypeError, match="tll"):
        patch_openai(tll="7d")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="samples"):
        patch_openai(samples=0)


def test_langchain_cache_rejects_unknown_options() -> None:
    pytest.importorskip("langchain_core")
    from llm_memo.integrations.langchain import LLMMemoCache

    with pytest.raises(TypeError, match="tll"):
        LLMMemoCache(tll="7d")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="ttl"):
        LLMMemoCache(ttl="soon")


class RecordingBackend(MemoryBackend):
    """A memory backend that notes the namespaces set-if-absent (leases) was used in."""

    def __init__(self) -> None:
        super().__init__()
        self.added: list[str] = []

    def add(self, namespace: str, key: str, value: bytes, ttl: float | None) -> bool:
        self.added.append(namespace)
        return super().add(namespace, key, value, ttl)


@pytest.fixture
def client(llm_server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="sk-test-key", base_url=llm_server.openai_base_url) as c:
        yield c
    unpatch_openai()


def test_patch_keeps_samples(llm_server: FakeLLMServer, client: openai.OpenAI) -> None:
    patch_openai(backend=MemoryBackend(), samples=2)
    answers = [client.chat.completions.create(**CHAT).id for _ in range(4)]
    assert llm_server.count("/chat/completions") == 2  # two slots, then each replays
    assert answers[0] == answers[2] and answers[1] == answers[3]


def test_patch_takes_a_lease(llm_server: FakeLLMServer, client: openai.OpenAI) -> None:
    store = RecordingBackend()
    patch_openai(backend=store, lease="30s")
    first = client.chat.completions.create(**CHAT)
    assert client.chat.completions.create(**CHAT) == first
    assert llm_server.count("/chat/completions") == 1
    assert store.added == ["openai.chat.completions.create#lease"]


def test_configure_checks_values_through_the_same_options() -> None:
    with pytest.raises(ValueError, match="ttl"):
        llm_memo.configure(ttl="soon")
    with pytest.raises(ValueError, match="mode"):
        llm_memo.configure(mode=None)
