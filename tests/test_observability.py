"""Observability: stats(), capture(), hooks and the llm_memo logger."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

import llm_memo
from llm_memo import CallEvent, llm_cached


def fake_completion(prompt: str) -> dict[str, Any]:
    return {"text": prompt.upper(), "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


def test_capture_records_hits_and_misses_with_latency_age_and_savings(clock: Any) -> None:
    @llm_cached(clock=clock)
    def ask(prompt: str) -> dict[str, Any]:
        time.sleep(0.02)
        return fake_completion(prompt)

    with llm_memo.capture() as calls:
        ask("a")
        clock.advance(30)
        ask("a")
    kinds = [c.kind for c in calls]
    assert kinds == ["miss", "hit"]  # one record per call: the miss carries its store's outcome
    miss, hit = calls
    assert miss.stored == "stored" and hit.stored is None
    assert miss.function == hit.function
    assert miss.key == hit.key == ask.cache_key("a")
    assert miss.latency is not None and miss.latency >= 0.02
    assert hit.latency is not None and hit.latency < miss.latency
    assert hit.age == pytest.approx(30)
    assert hit.saved_seconds is not None and hit.saved_seconds >= 0.02  # the original call's cost
    assert hit.saved_tokens == 7
    ask("a")
    assert len(calls) == 2  # outside the block nothing is recorded


def test_stats_sum_time_and_tokens_saved_across_functions_and_processes(tmp_path: Any) -> None:
    store = f"disk:{tmp_path / 'store'}"

    def make() -> Any:
        @llm_cached(backend=store, namespace="ask")
        def ask(prompt: str) -> dict[str, Any]:
            time.sleep(0.05)
            return fake_completion(prompt)

        return ask

    before = llm_memo.stats()
    first = make()
    first("a")
    # A second "run" (a fresh wrapper over the same store): hits carry the saved cost.
    second = make()
    second("a"), second("a")
    after = llm_memo.stats()
    assert after.hits - before.hits == 2
    assert after.misses - before.misses == 1
    assert after.tokens_saved - before.tokens_saved == 14
    assert after.seconds_saved - before.seconds_saved >= 0.1
    assert after.functions["ask"]["hits"] >= 2
    assert 0 < after.hit_ratio < 1


def test_hooks_see_every_event_and_a_failing_hook_never_breaks_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[CallEvent] = []

    def broken(event: CallEvent) -> None:
        raise RuntimeError("metrics backend down")

    @llm_cached
    def ask(prompt: str) -> str:
        return prompt

    llm_memo.add_hook("hit", seen.append)
    llm_memo.add_hook("miss", seen.append)
    llm_memo.add_hook("hit", broken)
    try:
        with caplog.at_level(logging.WARNING, logger="llm_memo"):
            assert ask("x") == "x" and ask("x") == "x"
    finally:
        llm_memo.remove_hook("hit", seen.append)
        llm_memo.remove_hook("miss", seen.append)
        llm_memo.remove_hook("hit", broken)
    assert [e.kind for e in seen] == ["miss", "hit"]
    assert any("metrics backend down" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="kind must be one of"):
        llm_memo.add_hook("nope", print)  # type: ignore[arg-type]


def test_debug_log_has_one_line_per_call_with_a_key_prefix_and_no_prompt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @llm_cached
    def ask(prompt: str) -> str:
        return prompt

    secret_prompt = "my private prompt text"
    with caplog.at_level(logging.DEBUG, logger="llm_memo"):
        ask(secret_prompt), ask(secret_prompt)
    lines = [r.getMessage() for r in caplog.records if r.name == "llm_memo"]
    key = ask.cache_key(secret_prompt)
    assert [line.split()[1] for line in lines] == ["miss", "hit"]
    assert all(key[:16] in line for line in lines)
    assert not any(secret_prompt in line for line in lines)


async def test_async_calls_are_captured_too() -> None:
    @llm_cached
    async def ask(prompt: str) -> str:
        return prompt

    with llm_memo.capture() as calls:
        await ask("x")
        await ask("x")
    assert [(c.kind, c.stored) for c in calls] == [("miss", "stored"), ("hit", None)]
