"""What ``llm-memo run`` does inside the program, at interpreter start-up.

``llm_memo/_sitecustomize/sitecustomize.py`` (put first on ``PYTHONPATH`` by
``llm-memo run``) calls :func:`start`. It patches the OpenAI and Anthropic SDKs,
deferred, so neither is imported before the program imports it (nor needs to be
installed), and applies ``LLM_MEMO_WRAP``. Backend, TTL and mode need nothing
here: every cache reads ``LLM_MEMO_BACKEND`` / ``LLM_MEMO_TTL`` / ``LLM_MEMO_MODE``
by default.
"""

from __future__ import annotations

import sys

__all__ = ["start"]


def start() -> None:
    from ._wrap_path import wrap_from_env
    from .integrations import patch_anthropic, patch_openai

    patch_openai()
    patch_anthropic()
    try:
        wrap_from_env()
    except ValueError as exc:
        # Failing the user's program over a typo would be worse than running it
        # with that one target uncached; say so loudly instead.
        print(f"llm-memo: LLM_MEMO_WRAP: {exc}", file=sys.stderr)
