"""Test your own code offline: a fake OpenAI and Anthropic API on loopback.

:class:`FakeLLMServer` is a small local HTTP server (standard library only) that
the real ``openai`` and ``anthropic`` SDKs talk to over real HTTP, so a test
exercises their whole stack (connection pools, streaming, response parsing)
without a network or an API key::

    import openai
    from llm_memo.testing import FakeLLMServer

    with FakeLLMServer() as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert server.count("/chat/completions") == 1

Endpoints: OpenAI chat completions, completions, embeddings and responses
(``openai_base_url``), and Anthropic messages (``anthropic_base_url``), streamed
or not. Answers are deterministic functions of the request body, so two equal
calls get equal answers (ids and request-id headers carry a per-server serial,
so two live calls are still told apart). ``latency`` (seconds, changeable while
the server runs) makes it as slow as a model. Put one of these in the last user
message to get the matching kind of answer: ``[length]``, ``[filter]``,
``[tool]``, ``[json]``, ``[error500]``, ``[stream-error]`` and, for the
Responses API, ``[incomplete]``.

Every request is recorded as a :class:`RecordedRequest` (:attr:`FakeLLMServer.requests`,
:meth:`FakeLLMServer.count`, :meth:`FakeLLMServer.reset`). From a shell:
``python -m llm_memo.testing --port 8000 --latency 1.0``.
"""

from __future__ import annotations

from ._http import FakeLLMServer, RecordedRequest, main

__all__ = ["FakeLLMServer", "RecordedRequest", "main"]
