"""Deprecated: the fake LLM server is :mod:`llm_memo.testing`.

Kept for one release so ``from llm_memo._server import FakeLLMServer`` and
``python -m llm_memo._server`` go on working, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import warnings

from .testing import FakeLLMServer, RecordedRequest, main

__all__ = ["FakeLLMServer", "RecordedRequest", "main"]

warnings.warn(
    "llm_memo._server is deprecated and will be removed in the next release; "
    "use llm_memo.testing (from llm_memo.testing import FakeLLMServer)",
    DeprecationWarning,
    stacklevel=2,
)

if __name__ == "__main__":
    main()
