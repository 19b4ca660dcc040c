"""An existing OpenAI app, cached without editing its calls. Offline: no API key, no network.

The app below is plain OpenAI SDK code. It talks to llm_memo's local fake server
(started here, with one second of simulated latency per answer). Cache it:

* with one line, ``patch_openai()`` (what ``--patch`` does here):

      python examples/existing_app.py --patch

* with no code change at all: ``llm-memo run`` patches the SDK at interpreter start-up
  and keeps answers on disk, so the second run makes no request at all:

      llm-memo run -- python examples/existing_app.py
      llm-memo run -- python examples/existing_app.py     # instant: served from disk
      llm-memo run --mode replay -- python examples/existing_app.py   # CI: never call the API
"""

from __future__ import annotations

import os
import sys
import time

import openai

from llm_memo.testing import FakeLLMServer

QUESTIONS = ["Tell me a joke about caches", "Summarise HTTP in one line", "Tell me a joke about caches"]


def app(client: openai.OpenAI) -> None:
    """The "existing" code: nothing in here knows about llm_memo."""
    for question in QUESTIONS:
        start = time.perf_counter()
        answer = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": question}],
            temperature=0,
        )
        elapsed = time.perf_counter() - start
        shown = f"{elapsed * 1e3:7.1f} ms" if elapsed < 0.5 else f"{elapsed:7.2f} s "
        print(f"{shown}  {question:<30} -> {(answer.choices[0].message.content or '')[:40]}...")


def main() -> None:
    if "--patch" in sys.argv:
        from llm_memo.integrations import patch_openai  # also exported as llm_memo.patch_openai

        patch_openai(backend="disk", ttl="7d")  # the one line

    # A fixed port: the base URL is part of the cache key, so runs must agree on it.
    port = int(os.environ.get("EXAMPLE_PORT", "47615"))
    with FakeLLMServer(port=port, latency=1.0) as server:
        client = openai.OpenAI(api_key="sk-example-not-a-real-key", base_url=server.openai_base_url)
        app(client)
        print(f"\nthe server received {server.count()} request(s) for {len(QUESTIONS)} calls")


if __name__ == "__main__":
    main()
