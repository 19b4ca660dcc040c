"""The application code under test: a few LLM-backed helpers (any code using the SDK works)."""

from __future__ import annotations

import math

from openai import OpenAI

MODEL = "gpt-4o-mini"


def summarize(client: OpenAI, text: str) -> str:
    answer = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        messages=[
            {"role": "system", "content": "Summarise the user's text in one sentence."},
            {"role": "user", "content": text},
        ],
    )
    return answer.choices[0].message.content or ""


def stream_reply(client: OpenAI, question: str) -> str:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}], stream=True
    )
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def similarity(client: OpenAI, first: str, second: str) -> float:
    result = client.embeddings.create(model="text-embedding-3-small", input=[first, second])
    a, b = (item.embedding for item in result.data)
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
