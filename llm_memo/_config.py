"""Process-wide defaults, TTL parsing and cache modes.

Precedence, most specific first:

* **backend, ttl, strict**: the decorator's argument, then :func:`configure`, then
  the environment (``LLM_MEMO_BACKEND``, ``LLM_MEMO_TTL``), then the default
  (memory, no expiry, fail-open).
* **mode**: a ``with llm_memo.mode(...)`` block, then ``LLM_MEMO_MODE``, then the
  decorator's ``mode=``, then :func:`configure`, then ``"readwrite"``. The runtime
  switches win over code on purpose: ``LLM_MEMO_MODE=replay`` must make a CI run
  offline without editing any decorator.

Invalid values: in code (a decorator, :func:`configure`) they raise at once; in
the environment they log one warning naming the variable and what it accepts,
and the variable is ignored (the next source in the precedence applies).
Surrounding whitespace in environment values is ignored.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as _dt
import functools
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from ._log import log
from ._sentinel import Sentinel

__all__ = ["MODES", "UNSET", "Mode", "configure", "mode", "parse_ttl"]

Mode = Literal["readwrite", "readonly", "refresh", "replay", "off"]
MODES: Final = ("readwrite", "readonly", "refresh", "replay", "off")


class _Unset(Sentinel, name="UNSET"):
    """The type of :data:`UNSET`: "option not given", so ``ttl=None`` can mean "never expires"."""


UNSET: Final = _Unset()

_TTL_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_TTL_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_ttl(ttl: Any, *, name: str = "ttl") -> float | None:
    """``None`` (never), seconds, a ``timedelta``, or ``"90s"``/``"30m"``/``"12h"``/``"7d"``/``"1h30m"``."""
    if ttl is None:
        return None
    if isinstance(ttl, _dt.timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, bool):
        raise TypeError(f"{name}={ttl!r}: expected seconds, a timedelta or a string like '7d'")
    elif isinstance(ttl, int | float):
        seconds = float(ttl)
    elif isinstance(ttl, str):
        text = ttl.strip().lower()
        if text in ("none", "never", ""):
            return None
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _TTL_RE.finditer(text):
                if text[pos : match.start()].strip():
                    break
                seconds += float(match.group(1)) * _TTL_UNITS[match.group(2)]
                pos = match.end()
            if pos == 0 or text[pos:].strip():
                raise ValueError(
                    f"{name}={ttl!r}: cannot parse; use seconds or a duration like '90s', '30m', '12h', '7d'"
                ) from None
    else:
        raise TypeError(f"{name}={ttl!r}: expected seconds, a timedelta or a string like '7d'")
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"{name}={ttl!r}: must be a positive duration, or None for no expiry")
    return seconds


def check_mode(value: str, *, name: str = "mode") -> Mode:
    if value not in MODES:
        raise ValueError(f"{name}={value!r}: use one of {', '.join(MODES)}")
    return value  # type: ignore[return-value]


def check_strict(value: Any) -> Any:
    if value is not UNSET and not isinstance(value, bool):
        raise TypeError(f"strict={value!r}: expected True or False")
    return value


def check_backend(spec: Any) -> Any:
    """``spec`` if it can name a backend (checked by its form; nothing is opened)."""
    from .backends import Backend, check_store, check_url

    if spec is UNSET or isinstance(spec, Backend):
        return spec
    if isinstance(spec, str):
        return check_url(spec)
    if isinstance(spec, tuple | list):
        if not spec:
            raise ValueError("backend=(): name at least one tier")
        for tier in spec:
            check_backend(tier)
        return spec
    return check_store(spec)


# ------------------------------------------------------------------- the environment

_STRICT_TRUE = frozenset({"1", "true", "yes", "on"})
_STRICT_FALSE = frozenset({"", "0", "false", "no", "off"})
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def env_invalid(name: str, value: str, accepted: str, default: str) -> None:
    """Warn, once per variable and value, that an environment value is ignored."""
    with _warned_lock:
        if (name, value) in _warned:
            return
        _warned.add((name, value))
    log.warning("llm_memo: ignoring %s=%r: %s; using %s", name, value, accepted, default)


@functools.lru_cache(maxsize=16)
def _env_mode(raw: str) -> Mode | None:
    # Cached by the raw text: LLM_MEMO_MODE is read on every call.
    value = raw.strip().lower()
    if value in MODES:
        return value  # type: ignore[return-value]
    if value:
        env_invalid("LLM_MEMO_MODE", raw, f"use one of {', '.join(MODES)}", "the mode set in code")
    return None


@dataclass
class Settings:
    """What :func:`configure` set. ``UNSET`` fields fall through to the environment."""

    backend: Any = UNSET
    ttl: Any = UNSET
    mode: Any = UNSET
    strict: Any = UNSET
    store_material: bool = True
    #: Bumped by configure(), so cached functions re-resolve their defaults.
    generation: int = 0


settings = Settings()

_mode_override: contextvars.ContextVar[Mode | None] = contextvars.ContextVar("llm_memo_mode", default=None)


def configure(
    *,
    backend: Any = UNSET,
    ttl: Any = UNSET,
    mode: Any = UNSET,
    strict: Any = UNSET,
    store_material: bool | None = None,
) -> None:
    """Set defaults for every cached function that did not set the option itself.

    Call it before or after decorating: a function reads its defaults on its next
    call. ``configure(backend=UNSET)`` (or no arguments) leaves an option as it is;
    pass ``reset=True``-style behaviour by calling :func:`reset_configuration`.
    ``store_material=False`` stops storing key material beside entries (used by
    ``llm-memo explain``).
    """
    from ._options import Options  # it builds on this module's checks

    if mode is None:  # None is "not declared" on a decorator; here it names no mode
        raise ValueError(f"mode=None: use one of {', '.join(MODES)}")
    given = Options(backend=backend, ttl=ttl, mode=mode, strict=strict)
    for name in ("backend", "ttl", "mode", "strict"):
        value = getattr(given, name)
        if value is not UNSET:
            setattr(settings, name, value)
    if store_material is not None:
        settings.store_material = store_material
    settings.generation += 1


def reset_configuration() -> None:
    """Forget everything :func:`configure` set (the environment applies again)."""
    for name in ("backend", "ttl", "mode", "strict"):
        setattr(settings, name, UNSET)
    settings.store_material = True
    settings.generation += 1


@contextlib.contextmanager
def mode(value: Mode) -> Iterator[None]:
    """Apply a cache mode to every cached call inside the block.

    It is a context variable: asyncio tasks created inside the block, and
    ``asyncio.to_thread``, inherit it; a ``threading.Thread`` or executor thread
    started inside does not (it starts with an empty context before Python 3.14;
    run it in ``contextvars.copy_context().run`` to carry the mode). Other threads
    and tasks are never affected."""
    token = _mode_override.set(check_mode(value))
    try:
        yield
    finally:
        _mode_override.reset(token)


# os.environ.get() of an unset name raises and catches a KeyError inside (~0.7 us on
# every call); the mapping os.environ keeps in step with itself is read directly.
_environ_data: Any = getattr(os.environ, "_data", None)
try:
    _MODE_KEY: Any = os.environ.encodekey("LLM_MEMO_MODE")
    _decode_env: Callable[[Any], str] = os.environ.decodevalue
except AttributeError:  # pragma: no cover - another Python's os.environ
    _environ_data = None


def _env_mode_raw() -> str | None:
    if _environ_data is None:  # pragma: no cover
        return os.environ.get("LLM_MEMO_MODE")
    raw = _environ_data.get(_MODE_KEY)
    return None if raw is None else _decode_env(raw)


def effective_mode(declared: Mode | None) -> Mode:
    """The mode a call runs in now (see the precedence in the module docstring)."""
    override = _mode_override.get()
    if override is not None:
        return override
    env = _env_mode_raw()
    if env:
        parsed = _env_mode(env)
        if parsed is not None:
            return parsed
    if declared is not None:
        return declared
    if settings.mode is not UNSET:
        return settings.mode  # type: ignore[no-any-return]
    return "readwrite"


DEFAULT_BACKEND: Final = "memory"


def default_backend_spec() -> Any:
    if settings.backend is not UNSET:
        return settings.backend
    return env_backend() or DEFAULT_BACKEND


def env_backend() -> str | None:
    """``LLM_MEMO_BACKEND`` if set and well-formed (else one warning, and None)."""
    raw = os.environ.get("LLM_MEMO_BACKEND")
    value = (raw or "").strip()
    if not value:
        return None
    try:
        return check_backend(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        assert raw is not None
        env_invalid("LLM_MEMO_BACKEND", raw, str(exc).partition(": ")[2], f"the {DEFAULT_BACKEND} backend")
        return None


def default_ttl() -> float | None:
    if settings.ttl is not UNSET:
        return parse_ttl(settings.ttl)
    env = os.environ.get("LLM_MEMO_TTL")
    if not env:
        return None
    try:
        return parse_ttl(env, name="LLM_MEMO_TTL")
    except (TypeError, ValueError):
        accepted = "use seconds or a duration like 90s, 30m, 12h, 7d, 1h30m, or 'never'"
        env_invalid("LLM_MEMO_TTL", env, accepted, "no expiry")
        return None


def default_strict() -> bool:
    if settings.strict is not UNSET:
        return bool(settings.strict)
    raw = os.environ.get("LLM_MEMO_STRICT", "")
    value = raw.strip().lower()
    if value in _STRICT_TRUE:
        return True
    if value not in _STRICT_FALSE:
        env_invalid("LLM_MEMO_STRICT", raw, "use 1, true, yes or on; 0, false, no or off", "fail-open")
    return False
