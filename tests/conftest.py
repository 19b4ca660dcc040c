"""Shared test setup: every test starts from a clean configuration and a private cache dir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import llm_memo
from llm_memo import _log, backends

# Fixtures that start real servers live in their own modules.
pytest_plugins = ["_redis_fixtures", "_llm_fixtures"]


#: Read by the library, the SDKs, or Python in the child processes tests start; a
#: developer's shell (or a CI runner) must not change what a test sees.
_SCRUBBED = (
    "PYTHONUNBUFFERED",  # the order in which processes sharing a pipe print
    "PYTHONWARNINGS",
    "PYTHONDEVMODE",
    "PYTHONASYNCIODEBUG",
    "PYTHONHASHSEED",
    "NO_COLOR",
    "FORCE_COLOR",
    "TERM",
    "HTTP_PROXY",  # httpx would send the fake LLM server's loopback traffic there
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
)
#: LLM_MEMO_TEST_* are the suite's own knobs (a Redis server to use, a random seed).
_SCRUBBED_PREFIXES = ("LLM_MEMO_", "OPENAI_", "AZURE_OPENAI_", "ANTHROPIC_", "LANGCHAIN_", "LANGSMITH_")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        upper = name.upper()  # proxies are also spelled in lower case
        if upper in _SCRUBBED or (
            upper.startswith(_SCRUBBED_PREFIXES) and not upper.startswith("LLM_MEMO_TEST_")
        ):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # nothing reads or writes the developer's ~
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("LLM_MEMO_DIR", str(tmp_path / "llm-memo"))
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps help to the terminal's width
    monkeypatch.setenv("LINES", "24")
    llm_memo.reset_configuration()
    backends._reset_for_tests()
    _log._reset_for_tests()
    yield
    llm_memo.reset_configuration()
    backends._reset_for_tests()


class FakeClock:
    """An injectable clock: tests move time instead of sleeping."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
