"""Quickstart: cache a slow "LLM" call in memory and on disk. Offline, no API key.

Run it twice: the first run pays for the call once, the second is served from disk.

    python examples/quickstart.py
"""

from __future__ import annotations

import time

from llm_memo import llm_cached


@llm_cached(backend="disk", ttl="7d")
def ask(prompt: str, *, model: str = "gpt-4o-mini", temperature: float = 0.0) -> str:
    """A stand-in for a real LLM call: slow, and deterministic at temperature 0."""
    time.sleep(1.0)
    return f"[{model}] A joke about {prompt.lower()!r}: ... and that's why it never compiled."


def timed(label: str, prompt: str, **kwargs: object) -> None:
    start = time.perf_counter()
    answer = ask(prompt, **kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    shown = f"{elapsed * 1e6:.0f} µs" if elapsed < 0.01 else f"{elapsed:.2f} s"
    print(f"{label:<34} {shown:>10}   {answer[:48]}...")


if __name__ == "__main__":
    timed("first call (miss, or disk hit)", "Tell me a joke")
    timed("same call again", "Tell me a joke")
    timed("same call, keyword spelling", prompt="Tell me a joke")
    timed("different temperature (new key)", "Tell me a joke", temperature=0.7)
    info = ask.cache_info()
    key = ask.cache_key("Tell me a joke")
    print(f"\n{info.hits} hits, {info.misses} misses, {info.stores} stored; key {key[:16]}...")
    print("Run me again: the first call is now served from the disk cache.")
