"""``llm-memo demo``: the real ``openai`` SDK, cached on disk, end to end, offline.

An embedded OpenAI-compatible server (:class:`~llm_memo.testing.FakeLLMServer`)
stands in for the API on loopback, with a realistic latency; ``--live`` talks to
the real API instead (``OPENAI_API_KEY``, model ``gpt-4o-mini``). The steps:

1. a chat completion: a miss, as slow as the model;
2. the same call again: a hit, in microseconds;
3. the same call from a second Python process (:mod:`._demo_child`): served
   from the disk store;
4. a streamed call, printed as it arrives, then replayed from the cache;
5. a summary of calls, hits, and the time and tokens saved.

The cache lives in a fresh temporary directory (removed afterwards), so the
first call is a real one, unless ``--dir`` names one: that cache is kept, and the
next run with the same ``--dir`` is served from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from ._command import Command, common, guarded
from ._demo_calls import MODEL, Outcome, client, measure_chat, measure_stream, patch, run_child
from ._output import CLIError, Style, seconds, short

__all__ = ["COMMANDS", "run_demo"]

EXTRA_HINT = "pip install 'llm-memo[openai]'"
TIMES = "\u00d7"  # the multiplication sign, as in "3,000x faster"


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
        from ..backends import from_url

        from_url(f"disk:{path}").close()
        shutil.rmtree(path, ignore_errors=True)


def _require_openai() -> None:
    try:
        import openai  # noqa: F401
    except ImportError:
        raise CLIError(f"needs the OpenAI SDK: {EXTRA_HINT}") from None


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

    Raises :class:`~llm_memo.cli._output.CLIError` for a reason it cannot run (no SDK, no API key...).
    """
    stream = out if out is not None else sys.stdout
    if live and not os.environ.get("OPENAI_API_KEY"):
        raise CLIError(
            "--live needs OPENAI_API_KEY set (without --live, an embedded server stands in for the API)",
            code=2,
        )
    if latency < 0:
        raise CLIError("--latency must be zero or more seconds", code=2)
    _require_openai()
    import llm_memo

    style = Style(stream)
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
            from ..testing import FakeLLMServer

            server = stack.enter_context(FakeLLMServer(latency=latency))
            base_url = server.openai_base_url
            where = f"embedded OpenAI-compatible server at {base_url} ({latency:g} s per completion)"
        patch(path)
        openai_client = stack.enter_context(client(base_url))
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
        first = measure_chat(openai_client, "first call")
        say(f'   "{short(first.text)}"')
        result(first)

        say()
        say(style.bold("2. The same call again") + ": served from the cache")
        again = measure_chat(openai_client, "same call again")
        say(f'   "{short(again.text)}"')
        ratio = first.seconds / again.seconds if again.hit and again.seconds > 0 else 0.0
        result(again, f", {ratio:,.0f}{TIMES} faster" if ratio >= 2 else "")

        say()
        say(style.bold("3. A second Python process") + " makes the same call")
        child, wall = run_child(path, base_url)
        how = "served from disk" if child.hit else "NOT served from the cache"
        say(f'   "{short(child.text)}"')
        result(child, f": {how} (the whole process took {seconds(wall)}, mostly importing openai)")

        say()
        say(style.bold("4. A streamed call") + " (stream=True), printed as it arrives")
        live_stream = measure_stream(openai_client, "stream", echo, "   ")
        result(live_stream)
        say("   ...and again: replayed from the cache, chunk by chunk")
        replay = measure_stream(openai_client, "stream replayed", echo, "   ")
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


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--latency", type=float, default=1.0, metavar="SECONDS", help="the embedded model's latency (1.0)"
    )
    parser.add_argument(
        "--dir", metavar="DIR", help="keep the cache in DIR (default: a fresh temporary directory)"
    )
    parser.add_argument("--live", action="store_true", help="call the real OpenAI API (needs OPENAI_API_KEY)")
    common(parser, backend=False)


def _demo(args: argparse.Namespace) -> int:
    return run_demo(latency=args.latency, directory=args.dir, live=args.live, as_json=args.json)


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "see caching work end to end: real openai SDK calls, offline", _configure_demo, guarded(_demo)
    ),
}
