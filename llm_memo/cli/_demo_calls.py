"""The measured calls of ``llm-memo demo``, made the same way in both of its processes.

The demo's client is the real ``openai`` SDK, patched to cache on disk, and talks
either to the embedded :class:`~llm_memo.testing.FakeLLMServer` or (``--live``) to
the real API.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._output import CLIError

__all__ = ["MODEL", "Outcome", "client", "measure_chat", "measure_stream", "patch", "run_child"]

MODEL = "gpt-4o-mini"
DEMO_KEY = "demo-key-not-secret"
#: What the demo's client calls the embedded server, whatever its port (see _client).
DEMO_BASE_URL = "http://llm-memo-demo.localhost/v1"
PROMPT = "What does memoizing an LLM call mean?"
STREAM_PROMPT = "Write a haiku about a cache."


def chat_call() -> dict[str, Any]:
    """The kwargs of the demo's chat completion (the same in both processes)."""
    return {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "temperature": 0}


def stream_call() -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": STREAM_PROMPT}],
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@dataclass
class Outcome:
    """One demo call: how long it took and what the cache did."""

    step: str
    seconds: float
    hit: bool
    text: str = ""
    #: What the cache reports this hit saved (the original call's time and tokens).
    saved_seconds: float = 0.0
    saved_tokens: int = 0
    tokens: int = 0
    events: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seconds": self.seconds,
            "outcome": "hit" if self.hit else "miss",
            "saved_seconds": self.saved_seconds,
            "saved_tokens": self.saved_tokens,
            "tokens": self.tokens,
            "answer": self.text,
        }


def _tokens(usage: Any) -> int:
    total = getattr(usage, "total_tokens", None)
    return total if isinstance(total, int) else 0


def _outcome(step: str, elapsed: float, events: list[Any], text: str, tokens: int) -> Outcome:
    hits = [e for e in events if e.kind == "hit"]
    return Outcome(
        step,
        elapsed,
        bool(hits),
        text,
        saved_seconds=sum(e.saved_seconds or 0.0 for e in hits),
        saved_tokens=sum(e.saved_tokens or 0 for e in hits),
        tokens=tokens,
        events=[e.kind for e in events],
    )


def measure_chat(client: Any, step: str) -> Outcome:
    import llm_memo

    with llm_memo.capture() as events:
        started = time.perf_counter()
        response = client.chat.completions.create(**chat_call())
        elapsed = time.perf_counter() - started
    text = response.choices[0].message.content or ""
    return _outcome(step, elapsed, events, text, _tokens(response.usage))


def measure_stream(client: Any, step: str, echo: IO[str] | None, indent: str) -> Outcome:
    import llm_memo

    pieces: list[str] = []
    tokens = 0
    with llm_memo.capture() as events:
        started = time.perf_counter()
        if echo is not None:
            echo.write(indent)
        for chunk in client.chat.completions.create(**stream_call()):
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                pieces.append(delta)
                if echo is not None:
                    echo.write(delta.lstrip() if len(pieces) == 1 else delta)
                    echo.flush()
            if chunk.usage is not None:
                tokens = _tokens(chunk.usage)
        elapsed = time.perf_counter() - started
    if echo is not None:
        echo.write("\n")
    return _outcome(step, elapsed, events, "".join(pieces).strip(), tokens)


def patch(directory: Path) -> None:
    from ..integrations.openai import patch_openai

    # Explicit options, so LLM_MEMO_TTL / LLM_MEMO_BACKEND cannot change what the demo shows.
    patch_openai(backend=f"disk:{directory}", ttl=None, strict=False, defer=False)


def client(base_url: str | None) -> Any:
    import openai

    if base_url is None:  # --live: the real API, the key from OPENAI_API_KEY
        return openai.OpenAI(timeout=60, max_retries=1)
    # The client's base URL is part of every key, and the embedded server's port is
    # new each run: the client is named DEMO_BASE_URL and its requests are routed to
    # the server, so a cache kept with --dir serves the next run too.
    http_client = openai.DefaultHttpxClient(transport=_to_server(base_url), trust_env=False)
    return openai.OpenAI(base_url=DEMO_BASE_URL, api_key=DEMO_KEY, max_retries=0, http_client=http_client)


def _to_server(base_url: str) -> Any:
    """An HTTP transport sending every request to ``base_url``'s host and port."""
    import openai

    # The HTTP library the installed SDK is built on (httpx, or a successor with its API).
    base = next(c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    http: Any = importlib.import_module(base.__module__.partition(".")[0])
    target = http.URL(base_url)

    class ToEmbeddedServer(http.HTTPTransport):  # type: ignore[misc]
        def handle_request(self, request: Any) -> Any:
            request.url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
            request.headers["host"] = f"{target.host}:{target.port}"
            return super().handle_request(request)

    return ToEmbeddedServer()


def run_child(directory: Path, base_url: str | None) -> tuple[Outcome, float]:
    command = [sys.executable, "-m", "llm_memo.cli._demo_child", "--child", "--dir", str(directory)]
    if base_url is not None:
        command += ["--base-url", base_url]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    wall = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CLIError(f"the second process failed (exit {done.returncode}): {last}")
    report = json.loads(lines[-1])
    outcome = Outcome(
        "second process",
        float(report["seconds"]),
        report["outcome"] == "hit",
        str(report.get("answer", "")),
        saved_seconds=float(report.get("saved_seconds") or 0.0),
        saved_tokens=int(report.get("saved_tokens") or 0),
        tokens=int(report.get("tokens") or 0),
    )
    return outcome, wall
