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

import atexit
import importlib
import importlib.util
import os
import sys
import threading
from typing import Any, cast

import wrapt

from ._decorator import llm_cached
from ._log import log

__all__ = ["unwrap", "wrap", "wrap_from_env"]

_lock = threading.RLock()
_installed: dict[str, Any] = {}  # "pkg.mod:qualname" -> the installed wrapper
_pending: dict[str, dict[str, Any]] = {}  # deferred targets -> their options
_from_env: set[str] = set()  # targets named by LLM_MEMO_WRAP: reported on stderr


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
    if options is None:  # unwrapped (or wrapped eagerly) before the import
        return
    try:
        _install(key, module, key.partition(":")[2], options)
    except AttributeError as exc:
        # Raising here would fail the program's own import with wrapt's misleading
        # "partially initialized module" message: say what is wrong, run uncached.
        _report(key, str(exc))


def _report(key: str, reason: str) -> None:
    if key in _from_env:  # `llm-memo run`: one line on the program's stderr
        print(f"llm-memo: LLM_MEMO_WRAP: {key} is not cached: {reason}", file=sys.stderr)
    else:
        log.warning("llm_memo.wrap(%r): not cached: %s", key, reason)


def _check(module: Any, qualname: str) -> None:
    target: Any = module
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise AttributeError(f"module {module.__name__} has no attribute {qualname!r}")
        target = getattr(target, part)


def _install(key: str, module: Any, qualname: str, options: dict[str, Any]) -> Any:
    _check(module, qualname)
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
    keys = [":".join(_split(target)) for target in targets]  # validate them all before wrapping any
    if keys and not _from_env:
        atexit.register(_report_never_imported)
    _from_env.update(keys)
    for target in targets:
        wrap(target, defer=True)
    return targets


def _report_never_imported() -> None:
    """At exit: say which targets could never have been wrapped (their module does not exist).

    A module that exists but was not imported is not reported: a program need not
    use every module it is told about, and its subprocesses inherit the same list.
    """
    with _lock:
        waiting = [key for key in _from_env if key in _pending]
    for key in waiting:
        module_name = key.partition(":")[0]
        top = module_name.partition(".")[0]
        try:
            found = importlib.util.find_spec(module_name if top in sys.modules else top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            _report(key, f"no module named {module_name}")
