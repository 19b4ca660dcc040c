"""Fixtures of the example suite.

Offline (CI):  pytest examples/pytest_offline
    pytest.ini sets ``llm_memo_mode = replay``: every OpenAI call is answered from
    cassettes/test_assistant.json, no API key or network needed; a call that was never
    recorded fails its test, naming the call.

Record:        python -m llm_memo.testing --port 8000 &    # or your real API, see below
               OPENAI_API_KEY=sk-local pytest examples/pytest_offline --llm-memo=readwrite
    then review the cassette diff (git diff examples/pytest_offline/cassettes) and commit it.

The base URL is part of each call's key: this example talks to the local fake server
on port 8000 (``LLM_MEMO_EXAMPLE_BASE_URL`` changes it; record again if you do).
"""

from __future__ import annotations

import os

import pytest
from openai import OpenAI

BASE_URL = os.environ.get("LLM_MEMO_EXAMPLE_BASE_URL", "http://127.0.0.1:8000/v1")


@pytest.fixture
def client() -> OpenAI:
    return OpenAI(base_url=BASE_URL, max_retries=0)  # the key comes from OPENAI_API_KEY
