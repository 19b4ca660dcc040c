"""Fixtures that start the local OpenAI/Anthropic-compatible server (a pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llm_memo.testing import FakeLLMServer


@pytest.fixture(scope="session")
def _llm_server_session() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(latency=0.0) as server:
        yield server


@pytest.fixture
def llm_server(_llm_server_session: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The running server, with its request log emptied and no latency."""
    _llm_server_session.reset()
    _llm_server_session.latency = 0.0
    yield _llm_server_session
