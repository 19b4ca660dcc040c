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

import importlib
from typing import TYPE_CHECKING, Any

from ._config import configure, mode, parse_ttl, reset_configuration
from ._core import CacheInfo
from ._events import CallEvent, Stats, add_hook, capture, remove_hook, stats
from .backends import MISS, Backend
from .backends.memory import MemoryBackend
from .errors import (
    BackendError,
    BackendUnavailable,
    CacheMiss,
    CorruptEntry,
    LLMMemoError,
    MissingExtra,
    UncacheableArgument,
    UnstorableResult,
)
from .keys import register_key_encoder
from .serialize import register_type

if TYPE_CHECKING:  # imported lazily at run time (see __getattr__ below)
    from ._decorator import CachedFunction, llm_cached
    from ._wrap_path import unwrap, wrap
    from .backends.disk import DiskBackend
    from .backends.redis import RedisBackend
    from .backends.sqlite import SQLiteBackend
    from .backends.tiered import TieredBackend
    from .integrations import patch_anthropic, patch_openai, unpatch_anthropic, unpatch_openai
    from .transfer import copy_entries, export_entries, import_entries

__all__ = [
    "MISS",
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "CacheInfo",
    "CacheMiss",
    "CachedFunction",
    "CallEvent",
    "CorruptEntry",
    "DiskBackend",
    "LLMMemoError",
    "MemoryBackend",
    "MissingExtra",
    "RedisBackend",
    "SQLiteBackend",
    "Stats",
    "TieredBackend",
    "UncacheableArgument",
    "UnstorableResult",
    "add_hook",
    "capture",
    "configure",
    "copy_entries",
    "export_entries",
    "import_entries",
    "llm_cached",
    "mode",
    "parse_ttl",
    "patch_anthropic",
    "patch_openai",
    "register_key_encoder",
    "register_type",
    "remove_hook",
    "reset_configuration",
    "stats",
    "unpatch_anthropic",
    "unpatch_openai",
    "unwrap",
    "wrap",
]

__version__ = "0.1.0"

# Optional extras are imported only when used: `import llm_memo` must stay fast and
# must work without redis or the SDKs installed.
_LAZY = {
    # Core pieces, loaded on first use: wrapt (with the asyncio and importlib.metadata
    # it imports) and diskcache are most of what `import llm_memo` would cost.
    "llm_cached": ("llm_memo._decorator", "llm_cached", ""),
    "CachedFunction": ("llm_memo._decorator", "CachedFunction", ""),
    "DiskBackend": ("llm_memo.backends.disk", "DiskBackend", ""),
    # sqlite3 alone costs a few ms; transfer and tiering are rarely needed at start-up.
    "SQLiteBackend": ("llm_memo.backends.sqlite", "SQLiteBackend", ""),
    "TieredBackend": ("llm_memo.backends.tiered", "TieredBackend", ""),
    "copy_entries": ("llm_memo.transfer", "copy_entries", ""),
    "export_entries": ("llm_memo.transfer", "export_entries", ""),
    "import_entries": ("llm_memo.transfer", "import_entries", ""),
    "wrap": ("llm_memo._wrap_path", "wrap", ""),
    "unwrap": ("llm_memo._wrap_path", "unwrap", ""),
    "RedisBackend": ("llm_memo.backends.redis", "RedisBackend", "redis"),
    # The SDK patches need no extra to install: they defer until the SDK is imported.
    "patch_openai": ("llm_memo.integrations", "patch_openai", "openai"),
    "unpatch_openai": ("llm_memo.integrations", "unpatch_openai", "openai"),
    "patch_anthropic": ("llm_memo.integrations", "patch_anthropic", "anthropic"),
    "unpatch_anthropic": ("llm_memo.integrations", "unpatch_anthropic", "anthropic"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'llm_memo' has no attribute {name!r}") from None
    if not extra:
        return getattr(importlib.import_module(module_name), attr)
    from ._extras import import_for

    return getattr(import_for(f"llm_memo.{name}", module_name), attr)
