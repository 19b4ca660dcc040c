"""The seed scenario: LangChain's LLM-caching how-to, timed the way it times it.

``llm.invoke("Tell me a joke")`` on ``OpenAI(model="gpt-3.5-turbo-instruct", n=2,
best_of=2)`` (the legacy completions endpoint) and on ``ChatOpenAI``, with
``set_llm_cache(...)`` of LangChain's ``InMemoryCache`` / ``SQLiteCache`` and of
llm_memo's ``LLMMemoCache`` on the memory / SQLite backend, against llm_memo's
local OpenAI-compatible server (no latency added). "first call" is the how-to's
first ``invoke`` (a miss that reaches the server), "cached call" its second.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _peers import Unavailable

PROMPT = "Tell me a joke"
MODELS = ("OpenAI(gpt-3.5-turbo-instruct, n=2, best_of=2)", "ChatOpenAI(gpt-4o-mini)")
CACHES = (
    "LangChain InMemoryCache",
    'LLMMemoCache(backend="memory")',
    "LangChain SQLiteCache",
    'LLMMemoCache(backend="sqlite:...")',
)


def server_class() -> Any:
    """The local server: ``llm_memo.testing`` if it exists, else ``llm_memo._server``."""
    for name in ("llm_memo.testing", "llm_memo._server"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found = getattr(module, "FakeLLMServer", None)
        if found is not None:
            return found
    raise Unavailable("llm_memo's local server is not importable")


def models(base_url: str) -> dict[str, Any]:
    try:
        from langchain_openai import ChatOpenAI, OpenAI
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None
    common: dict[str, Any] = {"base_url": base_url, "api_key": "sk-bench", "max_retries": 0}
    return {
        MODELS[0]: OpenAI(model="gpt-3.5-turbo-instruct", n=2, best_of=2, **common),
        MODELS[1]: ChatOpenAI(model="gpt-4o-mini", **common),
    }


def cache_factories(tmp: Path) -> dict[str, Callable[[str], Any]]:
    """A new, empty cache of each kind per call (``tag`` keeps their files apart)."""
    try:
        from langchain_community.cache import SQLiteCache
        from langchain_core.caches import InMemoryCache

        from llm_memo.integrations.langchain import LLMMemoCache
    except ImportError as exc:
        raise Unavailable(f"{exc.name} is not installed") from None

    def memo_memory(tag: str) -> Any:
        cache = LLMMemoCache(backend="memory", namespace=f"seed.{tag}")
        cache.clear()
        return cache

    return {
        CACHES[0]: lambda tag: InMemoryCache(),
        CACHES[1]: memo_memory,
        CACHES[2]: lambda tag: SQLiteCache(database_path=str(tmp / f"seed-langchain-{tag}.sqlite3")),
        CACHES[3]: lambda tag: LLMMemoCache(backend=f"sqlite:{tmp / f'seed-memo-{tag}.sqlite3'}"),
    }


def close(cache: Any) -> None:
    engine = getattr(cache, "engine", None)
    if engine is not None:
        engine.dispose()


def comparable(result: Any) -> Any:
    return getattr(result, "content", result)
