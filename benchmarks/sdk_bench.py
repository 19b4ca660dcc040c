"""How much a cache hit of the patched OpenAI SDK costs, next to the alternatives.

Three ways to get the answer of the same ``chat.completions.create`` request
(``benchmarks/chat_call.json``), against the local fake server (no latency):

* **live**: the real SDK over HTTP to the server, unpatched;
* **core hit**: a hit of ``@llm_cached`` on a function taking the request and
  returning the SDK's ``ChatCompletion`` (the memory backend);
* **patched hit**: a hit of ``client.chat.completions.create`` after
  ``llm_memo.patch_openai(backend="memory")``.

Targets: patched hit within 3x of the core hit, and at least 50x faster than live.

    python benchmarks/sdk_bench.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from llm_memo import llm_cached

try:  # the local server's public home, where it has one
    from llm_memo.testing import FakeLLMServer  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from llm_memo._server import FakeLLMServer
from llm_memo.integrations.openai import patch_openai, unpatch_openai

HERE = Path(__file__).resolve().parent


def per_call(fn: Callable[[], Any], calls: int, repeats: int = 5) -> float:
    """Seconds per call: the best of ``repeats`` runs (the least disturbed one)."""
    fn()  # warm: the first call may be the miss that fills the cache
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed run of a hit")
    args = parser.parse_args()
    request: dict[str, Any] = json.loads((HERE / "chat_call.json").read_text())["request"]

    with FakeLLMServer(latency=0.0) as server:
        client = openai.OpenAI(api_key="sk-bench-not-a-key", base_url=server.openai_base_url)

        live = per_call(lambda: client.chat.completions.create(**request), max(20, args.calls // 20))

        @llm_cached(backend="memory")
        def chat(**req: Any) -> ChatCompletion:
            completion: ChatCompletion = client.chat.completions.create(**req)
            return completion

        core = per_call(lambda: chat(**request), args.calls)

        patch_openai(backend="memory")
        try:
            before = server.count()
            patched = per_call(lambda: client.chat.completions.create(**request), args.calls)
            assert server.count() - before == 1, "the patched calls must be hits after the first"
        finally:
            unpatch_openai()
        client.close()

    print(f"live SDK call (local server) {live * 1e6:10.1f} µs")
    print(f"core @llm_cached hit         {core * 1e6:10.1f} µs")
    print(f"patched create() hit         {patched * 1e6:10.1f} µs")
    print(f"patched hit / core hit       {patched / core:10.2f} x   (target <= 3)")
    print(f"live / patched hit           {live / patched:10.1f} x   (target >= 50)")


if __name__ == "__main__":
    main()
