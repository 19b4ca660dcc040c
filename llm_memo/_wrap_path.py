"""``llm_memo.wrap("pkg.mod:qualname")``: cache a function of someone else's module, in place.

The function (or method: ``"pkg.mod:Class.method"``) is replaced on its module or
class by the same wrapper ``@llm_cached`` builds, installed with
``wrapt.wrap_object``, so :func:`unwrap` restores the original object exactly.
Code that looks the name up after wrapping gets the cached version; a reference
taken before (``from pkg.mod import fn`` run earlier) keeps the original, which
is why ``LLM_MEMO_WRAP`` wraps each module as soon as it is imported.

``LLM_MEMO_WRAP="pkg.mod:fn,pkg.mod:Class.method"`` (read by ``llm-memo run``)
does the same from the environment, deferred until each module is imported.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any, cast

import wrapt

from ._decorator import llm_cached

__all__ = ["unwrap", "wrap", "wrap_from_env"]

_lock = threading.RLock()
_installed: dict[str, Any] = {}  # "pkg.mod:qualname" -> the installed wrapper
_pending: dict[str, dict[str, Any]] = {}  # deferred targets -> their options


def _split(target: str) -> tuple[str, str]:
    module, sep, qualname = target.strip().partition(":")
    if not sep or not module or not qualname or not all(p.isidentifier() for p in qualname.split(".")):
        raise ValueError(f"{target!r}: expected 'package.module:function' or 'package.module:Class.method'")
    return module, qualname


def wrap(target: str, *, defer: bool = False, **options: Any) -> Any:
    """Cache ``"package.module:function"`` (or ``"...:Class.method"``) in place.

    ``options`` are :func:`llm_memo.llm_cached`'s (``backend``, ``ttl``, ``ignore``,
    ...). Returns the installed wrapper, with ``cache_info()`` and friends. Wrapping
    the same target again replaces the previous wrapper (one layer, new options).

    ``defer=True`` does not import the module: the function is wrapped when the
    module is first imported (and ``None`` is returned if that has not happened yet).
    """
    module_name, qualname = _split(target)
    key = f"{module_name}:{qualname}"
    if defer and module_name not in sys.modules:
        with _lock:
            first = key not in _pending
            _pending[key] = options
        if first:
            wrapt.register_post_import_hook(lambda module: _install_pending(key, module), module_name)
        return _installed.get(key)
    module = importlib.import_module(module_name)
    return _install(key, module, qualname, options)


def _install_pending(key: str, module: Any) -> None:
    with _lock:
        options = _pending.pop(key, None)
    if options is not None:  # None: unwrapped (or wrapped eagerly) before the import
        _install(key, module, key.partition(":")[2], options)


def _install(key: str, module: Any, qualname: str, options: dict[str, Any]) -> Any:
    with _lock:
        _pending.pop(key, None)
        previous = _installed.pop(key, None)
        if previous is not None:
            wrapt.unwrap_object(module, qualname, previous, missing_ok=True)
        handle = wrapt.wrap_object(module, qualname, cast(Any, _cached), (options,))
        _installed[key] = handle
        return handle


def _cached(original: Any, options: dict[str, Any]) -> Any:
    # llm_cached's wrapper is a wrapt FunctionWrapper, which unwrap_object can remove.
    return llm_cached(**options)(original)


def unwrap(target: str) -> bool:
    """Undo :func:`wrap`; True if a wrapper was removed (or a deferred wrap cancelled)."""
    module_name, qualname = _split(target)
    key = f"{module_name}:{qualname}"
    with _lock:
        cancelled = _pending.pop(key, None) is not None
        handle = _installed.pop(key, None)
        module = sys.modules.get(module_name)
        if handle is None or module is None:
            return cancelled
        return wrapt.unwrap_object(module, qualname, handle, missing_ok=True) is not None or cancelled


def wrap_from_env(value: str | None = None) -> list[str]:
    """Apply ``LLM_MEMO_WRAP`` (comma-separated targets), each deferred until imported.

    Returns the targets taken; a malformed entry raises ``ValueError`` naming it.
    """
    spec = os.environ.get("LLM_MEMO_WRAP", "") if value is None else value
    targets = [t.strip() for t in spec.split(",") if t.strip()]
    for target in targets:
        _split(target)  # validate them all before wrapping any
    for target in targets:
        wrap(target, defer=True)
    return targets
