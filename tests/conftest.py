"""Shared test setup: every test starts from a clean configuration and a private cache dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import llm_memo
from llm_memo import _log, backends

# Fixtures that start real servers live in their own modules.
pytest_plugins = ["_redis_fixtures", "_llm_fixtures"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LLM_MEMO_BACKEND", "LLM_MEMO_TTL", "LLM_MEMO_MODE", "LLM_MEMO_STRICT", "LLM_MEMO_WRAP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLM_MEMO_DIR", str(tmp_path / "llm-memo"))
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
