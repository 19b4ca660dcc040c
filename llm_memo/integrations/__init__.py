"""Transparent caching of LLM SDKs: patch the SDK once, every client call is cached.

``patch_openai()`` / ``patch_anthropic()`` need no code changes at the call sites;
``llm-memo run -- python app.py`` applies them without touching the program at all.
The SDKs themselves are optional: importing this package never imports them.
"""

from __future__ import annotations

from .anthropic import patch_anthropic, unpatch_anthropic
from .openai import patch_openai, unpatch_openai

__all__ = ["patch_anthropic", "patch_openai", "unpatch_anthropic", "unpatch_openai"]
