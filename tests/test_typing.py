"""The decorated function keeps its parameter types, for functions and methods (checked by mypy)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SNIPPET = textwrap.dedent(
    """
    from typing import assert_type

    from llm_memo import CacheInfo, llm_cached


    @llm_cached(ttl="7d")
    def ask(prompt: str, *, model: str = "m") -> str:
        return prompt


    @llm_cached
    async def aask(prompt: str) -> int:
        return len(prompt)


    class Bot:
        def __llm_memo_key__(self) -> str:
            return "bot"

        @llm_cached
        def reply(self, q: str) -> str:
            return q


    assert_type(ask("x", model="y"), str)
    assert_type(ask.cache_key("x"), str)
    assert_type(ask.cache_info(), CacheInfo)
    assert_type(Bot().reply("q"), str)
    assert_type(Bot().reply.cache_key("q"), str)
    assert_type(Bot.reply(Bot(), "q"), str)


    async def use() -> None:
        assert_type(await aask("x"), int)


    ask(1)  # E: wrong type
    Bot().reply()  # E: missing argument
    """
)


def test_decorated_functions_and_methods_keep_their_types(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    source = tmp_path / "typed_use.py"
    source.write_text(SNIPPET)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "c"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    lines = SNIPPET.splitlines()
    flagged = sorted(int(line.split(":")[1]) for line in errors)
    expected = sorted(i + 1 for i, text in enumerate(lines) if "# E:" in text)
    assert flagged == expected, result.stdout
