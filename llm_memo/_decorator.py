"""``@llm_cached``: a wrapt function wrapper with the cache helpers as methods.

The helpers are methods of a ``FunctionWrapper`` subclass and of its matching
``BoundFunctionWrapper`` subclass, so ``obj.method.cache_info()`` and
``Cls.method.cache_key(obj, ...)`` work as they do on plain functions. A plain
``setattr`` on a wrapt wrapper would land on the wrapped function instead.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

import wrapt

from ._config import Mode
from ._core import CacheInfo, Memo
from ._options import Options

__all__ = ["CachedFunction", "llm_cached"]

P = ParamSpec("P")
R = TypeVar("R")
_P2 = ParamSpec("_P2")
_S = TypeVar("_S")


class CachedFunction(Protocol[P, R]):
    """What ``@llm_cached`` returns: the function, plus cache helpers."""

    __wrapped__: Callable[P, R]
    # Copied from the wrapped function, as ``functools.wraps`` would.
    __name__: str
    __qualname__: str

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def cache_info(self) -> CacheInfo:
        """Hits, misses, coalesced waiters, stores, skipped stores and backend errors."""
        ...

    def cache_clear(self) -> int:
        """Remove this function's entries (and only them); returns how many."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The 64-hex key this call maps to."""
        ...

    def cache_invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget this call's entry; True if there was one."""
        ...

    def cache_parameters(self) -> dict[str, Any]:
        """The options in force (backend, ttl, namespace, ...)."""
        ...

    def with_options(self, **options: Any) -> CachedFunction[P, R]:
        """A variant with some options changed (same namespace, so the same entries)."""
        ...

    # A cached method read from an instance is bound, as a function would be: the
    # type checker then sees its parameters without ``self``. (Type checkers treat a
    # classmethod, or a staticmethod read from an instance, as unbound: call those
    # through the class, or silence the checker there.)
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> CachedFunction[P, R]: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[_S, _P2], R], instance: _S, owner: type[Any] | None = None
    ) -> CachedFunction[_P2, R]: ...

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any: ...


def _target(wrapped: Any) -> Any:
    """The plain function under a classmethod/staticmethod object."""
    return wrapped.__func__ if isinstance(wrapped, classmethod | staticmethod) else wrapped


def _driver(memo: Memo, func: Any) -> Callable[..., Any]:
    # The sync/async choice is made once, here, not on every call.
    if inspect.isasyncgenfunction(func):
        from ._stream import AsyncStreamDriver

        return AsyncStreamDriver(memo)
    if inspect.isgeneratorfunction(func):
        from ._stream import SyncStreamDriver

        return SyncStreamDriver(memo)
    if inspect.iscoroutinefunction(func):
        return memo.call_async
    return memo.call_sync


class _CachedWrapper(wrapt.FunctionWrapper[Any, Any]):
    def __init__(self, wrapped: Any, memo: Memo, options: Options) -> None:
        super().__init__(wrapped, _driver(memo, _target(wrapped)))
        self._self_memo = memo
        self._self_options = options

    def _memo_and_call(self, args: tuple[Any, ...]) -> tuple[Memo, Any, tuple[Any, ...]]:
        return self._self_memo, None, args

    def cache_info(self) -> CacheInfo:
        return self._self_memo.info()

    def cache_clear(self) -> int:
        return self._self_memo.clear()

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        memo, instance, args = self._memo_and_call(args)
        return memo.key_for(instance, args, kwargs)

    def cache_invalidate(self, *args: Any, **kwargs: Any) -> bool:
        memo, instance, args = self._memo_and_call(args)
        return memo.invalidate(memo.keys_for(instance, args, kwargs))

    def cache_parameters(self) -> dict[str, Any]:
        memo = self._self_memo
        resolved = {
            "backend": memo.backend.url,
            "ttl": memo.ttl,
            "namespace": memo.namespace,
            "version": memo.version,
            "ignore": memo.ignore,
            "key": memo.key_fn,
            "strict": memo.strict,
            # As declared: the mode a call runs in also depends on the environment
            # and on ``with llm_memo.mode(...)`` at the time of the call.
            "mode": memo.mode,
            "cache_if": memo.cache_if,
            "samples": memo.samples,
            "lease": memo.lease,
            "types": memo.options.get("types", ()),
            # Whether credentials are keyed by a fingerprint; never the HMAC secret itself.
            "isolate_credentials": memo.pepper is not None,
            "clock": memo.clock,
        }
        return resolved

    def with_options(self, **options: Any) -> Any:
        # The namespace is pinned, so the variant reads and writes the same entries.
        base = dataclasses.replace(self._self_options, namespace=self._self_memo.namespace)
        return _wrap(self.__wrapped__, base.replace("with_options", options))


class _BoundCachedWrapper(wrapt.BoundFunctionWrapper[Any, Any]):
    def _memo_and_call(self, args: tuple[Any, ...]) -> tuple[Memo, Any, tuple[Any, ...]]:
        """The instance and arguments the wrapper would see for this call (as wrapt does)."""
        parent = self._self_parent
        if self._self_binding in ("function", "callable"):
            instance = self._self_instance
            if instance is None and args and isinstance(args[0], self._self_owner):
                return parent._self_memo, args[0], args[1:]
            return parent._self_memo, instance, args
        return parent._self_memo, getattr(self.__wrapped__, "__self__", None), args

    cache_key = _CachedWrapper.cache_key
    cache_invalidate = _CachedWrapper.cache_invalidate

    def cache_info(self) -> CacheInfo:
        return self._self_parent.cache_info()  # type: ignore[no-any-return]

    def cache_clear(self) -> int:
        return self._self_parent.cache_clear()  # type: ignore[no-any-return]

    def cache_parameters(self) -> dict[str, Any]:
        return self._self_parent.cache_parameters()  # type: ignore[no-any-return]

    def with_options(self, **options: Any) -> Any:
        variant = self._self_parent.with_options(**options)
        return variant.__get__(self._self_instance, self._self_owner)


_CachedWrapper.__bound_function_wrapper__ = _BoundCachedWrapper  # type: ignore[misc]


@overload
def llm_cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def llm_cached(
    *,
    backend: Any = ...,
    ttl: Any = ...,
    namespace: str | None = ...,
    version: Any = ...,
    ignore: Iterable[str] = ...,
    key: Callable[..., Any] | None = ...,
    strict: bool = ...,
    mode: Mode | None = ...,
    cache_if: Callable[[Any], bool] | None = ...,
    samples: int | None = ...,
    lease: float | str | timedelta | None = ...,
    types: Iterable[type] = ...,
    isolate_credentials: bool | str | bytes = ...,
    clock: Callable[[], float] = ...,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def llm_cached(func: Any = None, /, **options: Any) -> Any:
    """Cache a function that calls an LLM.

    Use bare (``@llm_cached``) or with keyword options (``@llm_cached(backend="disk",
    ttl="7d")``). Works on functions, ``async def`` functions, generators, methods,
    classmethods and staticmethods.

    Options (all keyword-only; unset ones follow :func:`llm_memo.configure` and the
    environment):

    * ``backend``: ``"memory"`` (default), ``"disk"``, ``"disk:<path>"``,
      ``"sqlite:<path>"``, ``"redis://..."``, a tuple of these (tiers), or a Backend.
    * ``ttl``: ``None`` (never expires), seconds, a ``timedelta`` or ``"7d"``.
    * ``namespace``: defaults to ``module.qualname``; ``version``: bump to invalidate.
    * ``ignore``: parameter names left out of the key; ``key``: a callable taking
      the function's arguments and returning the key material instead.
    * ``strict``: raise :class:`~llm_memo.errors.BackendError` on backend faults
      instead of carrying on uncached.
    * ``mode``: ``"readwrite"``, ``"readonly"``, ``"refresh"``, ``"replay"``, ``"off"``.
    * ``cache_if``: a predicate on the result; False means "do not store".
    * ``samples``: keep N distinct results per key (for sampled, non-deterministic calls).
    * ``lease``: seconds (or ``"30s"``); on a miss, take a lease in the backend so that
      processes sharing it make one call, not one each (off by default; see ``_lease``).
    * ``types``: extra classes the cache may rebuild results as.
    * ``isolate_credentials``: arguments named like credentials (``api_key``,
      ``token``, ``password``...) are left out of the key; with True (or your own
      secret string as the HMAC key) they are keyed by an HMAC fingerprint instead,
      so different credentials never share answers.
    """
    checked = Options.of("llm_cached", options)
    if func is None:
        return lambda f: _wrap(f, checked)
    if not callable(func) and not isinstance(func, classmethod | staticmethod):
        raise TypeError(
            f"llm_cached: expected a function, got {type(func).__qualname__}; use @llm_cached(...)"
        )
    return _wrap(func, checked)


def _wrap(func: Any, options: Options) -> Any:
    return _CachedWrapper(func, Memo(_target(func), options), options)
