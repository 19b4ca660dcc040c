"""``llm-memo demo``, run as a newcomer runs it: a subprocess, the real openai SDK, offline."""

from __future__ import annotations

import re
from pathlib import Path

from _cli import parse_json, run_cli


def test_demo_shows_caching_end_to_end() -> None:
    done = run_cli("demo", "--latency", "0.2", timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    steps = ["1. First call", "2. The same call again", "3. A second Python process", "4. A streamed call"]
    assert all(step in out for step in [*steps, "5. Summary"]), out
    assert "miss → stored" in out and "served from disk" in out
    assert "replayed from the cache" in out
    assert re.search(r"hit, [\d,]+\u00d7 faster", out), out
    assert "calls         5 (3 from the cache, 2 to the model)" in out
    assert re.search(r"time saved +[\d.]+ m?s\n", out) and re.search(r"tokens saved +[1-9]\d*", out), out
    # The streamed answer was printed as it arrived, then again from the cache.
    streamed = [line for line in out.splitlines() if "Write a haiku" in line]
    assert len(streamed) == 2 and streamed[0] == streamed[1]
    assert "\x1b[" not in out and done.stderr == ""


def test_demo_json_numbers_and_kept_directory(tmp_path: Path) -> None:
    directory = tmp_path / "demo-cache"
    report = parse_json(run_cli("demo", "--latency", "0.2", "--dir", str(directory), "--json", timeout=60))
    first, again, child, stream, replay = report["calls"]
    assert [c["outcome"] for c in report["calls"]] == ["miss", "hit", "hit", "miss", "hit"]
    assert first["seconds"] >= 0.2 and stream["seconds"] >= 0.2
    assert again["seconds"] < first["seconds"] / 10 and replay["seconds"] < stream["seconds"] / 10
    assert child["step"] == "second process" and child["seconds"] < first["seconds"]
    assert again["answer"] == first["answer"] == child["answer"] and replay["answer"] == stream["answer"]
    summary = report["summary"]
    assert summary == {**summary, "calls": 5, "hits": 3, "misses": 2}
    assert summary["seconds_saved"] > 0.5 and summary["tokens_saved"] > 0
    assert summary["seconds"] < 20
    assert report["backend"] == f"disk:{directory}" and not report["temporary"]

    # The store is kept, and the store commands read it.
    listed = parse_json(run_cli("ls", "--backend", f"disk:{directory}", "--json"))
    assert sorted(e["function"] for e in listed) == ["openai.chat.completions.create"] * 2


def test_demo_without_the_openai_sdk_names_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "no-sdk" / "openai"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named openai')\n")
    done = run_cli("demo", env={"PYTHONPATH": str(blocker.parent)})
    assert done.returncode == 1
    assert done.stderr.strip() == "llm-memo demo: needs the OpenAI SDK: pip install 'llm-memo[openai]'"


def test_demo_live_needs_a_key() -> None:
    done = run_cli("demo", "--live", env={"OPENAI_API_KEY": None})
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "OPENAI_API_KEY" in lines[0]
