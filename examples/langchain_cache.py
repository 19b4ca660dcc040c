"""LangChain on llm_memo's cache: ``set_llm_cache(LLMMemoCache(...))``.

Runs offline: a local fake OpenAI server (one simulated second per answer) stands in
for the API. Needs ``pip install 'llm-memo[examples]'`` (LangChain and its OpenAI model)::

    python examples/langchain_cache.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from langchain_core.globals import set_llm_cache
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

import llm_memo
from llm_memo.integrations.langchain import LLMMemoCache
from llm_memo.testing import FakeLLMServer


def main() -> None:
    with FakeLLMServer(latency=1.0) as server, tempfile.TemporaryDirectory() as directory:
        # Any llm_memo backend: "memory", "disk", "sqlite:<file>", "redis://...", tiers.
        cache = LLMMemoCache(f"sqlite:{Path(directory) / 'langchain.sqlite3'}", ttl="7d")
        set_llm_cache(cache)
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=server.openai_base_url, api_key=SecretStr("sk-local"))

        for attempt in ("first", "second"):
            started = time.perf_counter()
            answer = llm.invoke("Tell me a joke about caches")
            print(f"{attempt} invoke: {time.perf_counter() - started:.3f}s  {answer.content!r}")

        print("requests that reached the server:", server.count("/chat/completions"))
        print("cache_info():", cache.cache_info())
        stats = llm_memo.stats()
        print(f"llm_memo.stats(): hits={stats.hits} misses={stats.misses} saved={stats.seconds_saved:.1f}s")
        set_llm_cache(None)


if __name__ == "__main__":
    main()
