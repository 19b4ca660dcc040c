"""``llm-memo demo``: the real ``openai`` SDK, cached on disk, end to end, offline.

An embedded OpenAI-compatible server (:class:`~llm_memo.testing.FakeLLMServer`)
stands in for the API on loopback, with a realistic latency; ``--live`` talks to
the real API instead (``OPENAI_API_KEY``, model ``gpt-4o-mini``). The steps:

1. a chat completion: a miss, as slow as the model;
2. the same call again: a hit, in microseconds;
3. the same call from a second Python process (this module, run with
   ``--child``): served from the disk store;
4. a streamed call, printed as it arrives, then replayed from the cache;
5. a summary of calls, hits, and the time and tokens saved.

The cache lives in a fresh temporary directory (removed afterwards), so the
first call is a real one, unless ``--dir`` names one: that cache is kept, and the
next run with the same ``--dir`` is served from it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["DemoError", "run_demo"]

MODEL = "gpt-4o-mini"
DEMO_KEY = "demo-key-not-secret"
#: What the demo's client calls the embedded server, whatever its port (see _client).
DEMO_BASE_URL = "http://llm-memo-demo.localhost/v1"
EXTRA_HINT = "pip install 'llm-memo[openai]'"
PROMPT = "What does memoizing an LLM call mean?"
TIMES = "\u00d7"  # the multiplication sign, as in "3,000x faster"
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


class DemoError(Exception):
    """A one-line reason the demo cannot run; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------- output


class _Style:
    """ANSI colour only on a terminal, and never with ``NO_COLOR`` set."""

    def __init__(self, stream: IO[str]) -> None:
        isatty = getattr(stream, "isatty", None)
        self.on = bool(isatty and isatty()) and not os.environ.get("NO_COLOR")

    def __call__(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text

    def bold(self, text: str) -> str:
        return self(text, "1")

    def dim(self, text: str) -> str:
        return self(text, "2")

    def green(self, text: str) -> str:
        return self(text, "32")

    def yellow(self, text: str) -> str:
        return self(text, "33")


def seconds(value: float) -> str:
    """``1.02 s``, ``12.3 ms``, ``212 µs``."""
    if value >= 1.0:
        return f"{value:.2f} s"
    if value >= 0.001:
        return f"{value * 1000:.1f} ms"
    return f"{value * 1e6:.0f} µs"


def _short(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------- measured calls


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


def _chat(client: Any, step: str) -> Outcome:
    import llm_memo

    with llm_memo.capture() as events:
        started = time.perf_counter()
        response = client.chat.completions.create(**chat_call())
        elapsed = time.perf_counter() - started
    text = response.choices[0].message.content or ""
    return _outcome(step, elapsed, events, text, _tokens(response.usage))


def _stream(client: Any, step: str, echo: IO[str] | None, indent: str) -> Outcome:
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


# --------------------------------------------------------------------- the child process


def _patch(directory: Path) -> None:
    from .integrations.openai import patch_openai

    # Explicit options, so LLM_MEMO_TTL / LLM_MEMO_BACKEND cannot change what the demo shows.
    patch_openai(backend=f"disk:{directory}", ttl=None, strict=False, defer=False)


def _client(base_url: str | None) -> Any:
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


def child_main(argv: list[str]) -> int:
    """``python -m llm_memo._demo --child --dir DIR [--base-url URL]``: one call, a JSON report."""
    parser = argparse.ArgumentParser(prog="python -m llm_memo._demo")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--base-url")
    args = parser.parse_args(argv)

    import llm_memo

    _patch(Path(args.dir))
    with llm_memo.mode("readwrite"), _client(args.base_url) as client:
        outcome = _chat(client, "second process")
    print(json.dumps({**outcome.to_json(), "pid": os.getpid()}))
    return 0


def _run_child(directory: Path, base_url: str | None) -> tuple[Outcome, float]:
    command = [sys.executable, "-m", "llm_memo._demo", "--child", "--dir", str(directory)]
    if base_url is not None:
        command += ["--base-url", base_url]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    wall = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DemoError(f"the second process failed (exit {done.returncode}): {last}")
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


# --------------------------------------------------------------------- the demo


@contextmanager
def _directory(given: str | None) -> Iterator[tuple[Path, bool]]:
    if given:
        path = Path(given).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        yield path, False
        return
    path = Path(tempfile.mkdtemp(prefix="llm-memo-demo-"))
    try:
        yield path, True
    finally:
        from .backends import from_url

        from_url(f"disk:{path}").close()
        shutil.rmtree(path, ignore_errors=True)


def _require_openai() -> None:
    try:
        import openai  # noqa: F401
    except ImportError:
        raise DemoError(f"needs the OpenAI SDK: {EXTRA_HINT}") from None


def _saved(outcome: Outcome, original: Outcome | None) -> float:
    """Seconds a hit saved: the cache's own figure, else the measured original call.

    (Entries of recorded streams carry no duration, so the demo falls back to
    the time it measured for that stream's first, live run.)
    """
    if outcome.saved_seconds > 0:
        return outcome.saved_seconds
    return max(original.seconds - outcome.seconds, 0.0) if original else 0.0


def _original_tokens(original: Outcome | None) -> int:
    return original.tokens if original else 0


def run_demo(
    *,
    latency: float = 1.0,
    directory: str | None = None,
    live: bool = False,
    as_json: bool = False,
    out: IO[str] | None = None,
) -> int:
    """Run the demo, printing to ``out`` (stdout); returns the exit status.

    Raises :class:`DemoError` for a reason it cannot run (no SDK, no API key...).
    """
    stream = out if out is not None else sys.stdout
    if live and not os.environ.get("OPENAI_API_KEY"):
        raise DemoError(
            "--live needs OPENAI_API_KEY set (without --live, an embedded server stands in for the API)",
            code=2,
        )
    if latency < 0:
        raise DemoError("--latency must be zero or more seconds", code=2)
    _require_openai()
    import llm_memo

    style = _Style(stream)
    echo = None if as_json else stream

    def say(text: str = "") -> None:
        if not as_json:
            print(text, file=stream, flush=True)

    began = time.perf_counter()

    with ExitStack() as stack:
        path, temporary = stack.enter_context(_directory(directory))
        base_url: str | None = None
        if live:
            where = f"the OpenAI API ({MODEL})"
        else:
            from .testing import FakeLLMServer

            server = stack.enter_context(FakeLLMServer(latency=latency))
            base_url = server.openai_base_url
            where = f"embedded OpenAI-compatible server at {base_url} ({latency:g} s per completion)"
        _patch(path)
        client = stack.enter_context(_client(base_url))
        stack.enter_context(llm_memo.mode("readwrite"))

        say(style.bold("llm-memo demo") + ": real openai SDK calls, cached by llm_memo on disk")
        say(f"  model  {where}")
        say(f"  cache  disk:{path}" + style.dim(" (a fresh directory)" if temporary else ""))
        say(f'  code   patch_openai(backend="disk:..."); client.chat.completions.create(model="{MODEL}"...)')

        def result(outcome: Outcome, extra: str = "") -> None:
            label = style.green("hit") if outcome.hit else style.yellow("miss") + " → stored"
            say(f"   {style.bold(seconds(outcome.seconds)):>10}  {label}{extra}")

        say()
        if temporary:
            say(style.bold("1. First call") + ": nothing cached yet, so the model answers")
        else:
            say(
                style.bold("1. First call")
                + f": the model answers, unless an earlier run cached it in {path}"
            )
        first = _chat(client, "first call")
        say(f'   "{_short(first.text)}"')
        result(first)

        say()
        say(style.bold("2. The same call again") + ": served from the cache")
        again = _chat(client, "same call again")
        say(f'   "{_short(again.text)}"')
        ratio = first.seconds / again.seconds if again.hit and again.seconds > 0 else 0.0
        result(again, f", {ratio:,.0f}{TIMES} faster" if ratio >= 2 else "")

        say()
        say(style.bold("3. A second Python process") + " makes the same call")
        child, wall = _run_child(path, base_url)
        how = "served from disk" if child.hit else "NOT served from the cache"
        say(f'   "{_short(child.text)}"')
        result(child, f": {how} (the whole process took {seconds(wall)}, mostly importing openai)")

        say()
        say(style.bold("4. A streamed call") + " (stream=True), printed as it arrives")
        live_stream = _stream(client, "stream", echo, "   ")
        result(live_stream)
        say("   ...and again: replayed from the cache, chunk by chunk")
        replay = _stream(client, "stream replayed", echo, "   ")
        result(replay)

        calls = [first, again, child, live_stream, replay]
        hits = [c for c in calls if c.hit]
        originals = {"same call again": first, "second process": first, "stream replayed": live_stream}
        saved_seconds = sum(_saved(c, originals.get(c.step)) for c in hits)
        saved_tokens = sum(c.saved_tokens or _original_tokens(originals.get(c.step)) for c in hits)
        total = time.perf_counter() - began
        stats = llm_memo.stats()

        say()
        say(style.bold("5. Summary"))
        misses = len(calls) - len(hits)
        say(f"   calls         {len(calls)} ({len(hits)} from the cache, {misses} to the model)")
        say(f"   time saved    {seconds(saved_seconds)}")
        say(f"   tokens saved  {saved_tokens}")
        say(style.dim(f"   (demo ran in {total:.1f} s)"))
        if temporary:
            say(style.dim("   Keep the cache with --dir DIR, then: llm-memo ls --backend disk:DIR"))
        else:
            say(style.dim(f"   Look inside: llm-memo ls --backend disk:{path}"))

        if as_json:
            report = {
                "backend": f"disk:{path}",
                "temporary": temporary,
                "server": base_url or "api.openai.com",
                "latency": None if live else latency,
                "calls": [c.to_json() for c in calls],
                "child_process_seconds": wall,
                "summary": {
                    "calls": len(calls),
                    "hits": len(hits),
                    "misses": misses,
                    "seconds_saved": saved_seconds,
                    "tokens_saved": saved_tokens,
                    "seconds": total,
                },
                "stats": {
                    "hits": stats.hits,
                    "misses": stats.misses,
                    "seconds_saved": stats.seconds_saved,
                    "tokens_saved": stats.tokens_saved,
                },
            }
            print(json.dumps(report, indent=2, ensure_ascii=False), file=stream)
    return 0 if all(c.hit for c in (again, child, replay)) else 1


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
