"""llm_memo: memoize LLM calls with canonical keys and safe, data-only storage.

>>> from llm_memo import llm_cached
>>> @llm_cached(ttl="7d")
... def ask(prompt: str, *, model: str = "gpt-4o-mini") -> str:
...     return prompt.upper()  # a real function would call an LLM here
>>> ask("hi"), ask(prompt="hi")
('HI', 'HI')
>>> ask.cache_info().hits
1
"""

from __future__ import annotations

from ._config import configure, mode, parse_ttl, reset_configuration
from ._core import CacheInfo
from ._decorator import CachedFunction, llm_cached
from .backends import MISS, Backend
from .backends.disk import DiskBackend
from .backends.memory import MemoryBackend
from .errors import (
    BackendError,
    CacheMiss,
    CorruptEntry,
    LLMMemoError,
    UncacheableArgument,
    UnstorableResult,
)
from .keys import register_key_encoder
from .serialize import register_type

__all__ = [
    "MISS",
    "Backend",
    "BackendError",
    "CacheInfo",
    "CacheMiss",
    "CachedFunction",
    "CorruptEntry",
    "DiskBackend",
    "LLMMemoError",
    "MemoryBackend",
    "UncacheableArgument",
    "UnstorableResult",
    "configure",
    "llm_cached",
    "mode",
    "parse_ttl",
    "register_key_encoder",
    "register_type",
    "reset_configuration",
]

__version__ = "0.1.0"
