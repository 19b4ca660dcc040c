"""Tests of LLM-backed code that run offline and give the same answers every time."""

from __future__ import annotations

from assistant import similarity, stream_reply, summarize
from openai import OpenAI


def test_summary_mentions_the_subject(client: OpenAI) -> None:
    summary = summarize(client, "The tides are caused mainly by the gravity of the Moon.")
    assert "tides" in summary


def test_streamed_reply(client: OpenAI) -> None:
    reply = stream_reply(client, "Why is the sky blue?")
    assert "sky" in reply


def test_a_text_is_most_similar_to_itself(client: OpenAI) -> None:
    assert similarity(client, "cats", "cats") > 0.999
