"""The exceptions llm_memo raises.

::

    LLMMemoError                      base of everything below
    ├── UncacheableArgument(TypeError)   a call's arguments cannot form a key
    ├── UnstorableResult(TypeError)      a result cannot be encoded (logged, never raised to callers)
    ├── CorruptEntry(ValueError)         stored bytes failed a check (read as a miss)
    ├── BackendError                     a store failed; raised only with ``strict=True``
    ├── BackendUnavailable(ConnectionError)  a backend's circuit breaker is open (fails fast)
    ├── MissingExtra(ImportError)        a feature's optional dependency is not installed
    └── CacheMiss(LookupError)           ``mode="replay"`` found no entry

The user's own exceptions always propagate unchanged: nothing here ever wraps or
replaces them.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "CacheMiss",
    "CorruptEntry",
    "LLMMemoError",
    "MissingExtra",
    "UncacheableArgument",
    "UnstorableResult",
]


class LLMMemoError(Exception):
    """Base class of every error raised by llm_memo."""


class UncacheableArgument(LLMMemoError, TypeError):
    """An argument cannot be turned into key material.

    ``path`` names the argument (``messages[2]["content"]``) so the message can
    say exactly which value is at fault.
    """

    def __init__(self, path: str, value: object, reason: str = "") -> None:
        self.path = path
        self.value = value
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        kind = type(self.value).__qualname__
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"{self.path}: cannot build a key from <{kind}>{why}; pass ignore=[...] to leave the "
            f"argument out, key=... to build the key yourself, or register an encoder with "
            f"llm_memo.register_key_encoder({kind}, fn)"
        )

    def with_prefix(self, segment: str) -> UncacheableArgument:
        """Return the same error one level further out (``content`` -> ``messages[2]["content"]``)."""
        path = segment + self.path if self.path.startswith(("[", ".")) else segment + "." + self.path
        return UncacheableArgument(path if self.path else segment, self.value, self.reason)


class UnstorableResult(LLMMemoError, TypeError):
    """A result has a type the value format cannot represent or reconstruct."""


class CorruptEntry(LLMMemoError, ValueError):
    """Stored bytes failed a structural, checksum or fingerprint check."""


class BackendError(LLMMemoError):
    """A backend operation failed and the cache is in strict mode.

    Outside strict mode the same faults are logged and the call goes on as a
    miss. The driver's exception is chained as ``__cause__``.
    """


class BackendUnavailable(LLMMemoError, ConnectionError):
    """A backend is known to be down and is not being tried (its circuit breaker is open).

    Raised by backends so the front can fail open at once instead of waiting for
    another timeout. It is a backend fault like any other: a miss with a logged
    warning, or a :class:`BackendError` in strict mode.
    """


class CacheMiss(LLMMemoError, LookupError):
    """``mode="replay"`` met a call that has no stored entry.

    ``function`` is the cached function (``module.qualname``, or the SDK endpoint),
    ``key`` the call's key, ``namespace`` where its entries live and ``material``
    the call's key material (canonical JSON bytes, or None), for tools that explain
    the miss.
    """

    def __init__(
        self,
        function: str,
        key: str,
        *,
        namespace: str | None = None,
        material: bytes | None = None,
        reason: str | None = None,
    ) -> None:
        self.function = function
        self.key = key
        self.namespace = function if namespace is None else namespace
        self.material = material
        if reason is not None:  # a call that is never cached: recording it would not help
            super().__init__(f"llm_memo replay mode: {function} is not cached ({reason}); not calling out")
            return
        where = "" if self.namespace == function else f" in namespace {self.namespace}"
        super().__init__(
            f"llm_memo replay mode: no cached entry for {function}{where} (key {key}); "
            f"record it first with mode='readwrite' or LLM_MEMO_MODE=readwrite"
        )


class MissingExtra(LLMMemoError, ImportError):
    """A feature needs an optional dependency that is not installed.

    The message names the ``pip install 'llm-memo[extra]'`` command; ``extra`` is
    the extra's name. It is a setup error, not a store fault: it is raised, never
    turned into a miss.
    """

    def __init__(self, message: str, extra: str) -> None:
        super().__init__(message)
        self.extra = extra
