"""Binding a call's arguments to the signature, fast.

``inspect.Signature.bind`` + ``apply_defaults`` costs several microseconds per
call; this precomputes the signature's shape once and binds with dict operations.
Anything unusual (a missing argument, a duplicate, an unknown keyword) returns
``None``: the caller then simply calls the function, which raises its own
``TypeError`` exactly as it would uncached.

Defaults are the function's as they are at call time: ``__defaults__`` and
``__kwdefaults__`` may be reassigned at runtime (checked by identity on each call:
two attribute reads). A default object mutated in place is read as it is when keyed.
"""

from __future__ import annotations

import inspect
import io
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .errors import UncacheableArgument

__all__ = ["MAX_ITERATOR_ITEMS", "Binder", "Materialized", "materialize"]

_P = inspect.Parameter

#: A key reads a one-shot iterator argument whole; past this many items it gives up
#: (an infinite generator must raise, not hang the call).
MAX_ITERATOR_ITEMS = 100_000


class Binder:
    __slots__ = (
        "defaults",
        "ignore",
        "lenient",
        "live",
        "n_params",
        "positional",
        "seen_defaults",
        "seen_kwdefaults",
        "var_kw",
        "var_pos",
        "with_kw",
    )

    def __init__(
        self,
        signature: inspect.Signature,
        ignore: Iterable[str] = (),
        func: Callable[..., Any] | None = None,
        *,
        lenient: bool = False,
    ) -> None:
        #: Under a functools.wraps decorator a required parameter may be supplied by the
        #: decorator itself: a call without it still binds (and the parameter is not keyed).
        self.lenient = lenient
        self.positional: tuple[str, ...] = tuple(
            p.name
            for p in signature.parameters.values()
            if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)
        )
        self.with_kw: frozenset[str] = frozenset(
            p.name
            for p in signature.parameters.values()
            if p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)
        )
        self.var_pos: str | None = next(
            (p.name for p in signature.parameters.values() if p.kind is _P.VAR_POSITIONAL), None
        )
        self.var_kw: str | None = next(
            (p.name for p in signature.parameters.values() if p.kind is _P.VAR_KEYWORD), None
        )
        self.defaults: dict[str, Any] = {
            p.name: p.default for p in signature.parameters.values() if p.default is not _P.empty
        }
        #: The function whose ``__defaults__``/``__kwdefaults__`` the signature shows, if
        #: they can be followed (not with a ``__signature__`` that says otherwise).
        self.live = _live_defaults_owner(signature, func)
        self.seen_defaults: Any = None
        self.seen_kwdefaults: Any = None
        if self.live is not None:
            self.seen_defaults = self.live.__defaults__
            self.seen_kwdefaults = self.live.__kwdefaults__
        self.n_params = sum(
            1 for p in signature.parameters.values() if p.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)
        )
        self.ignore = frozenset(ignore)
        unknown = self.ignore - set(signature.parameters)
        if unknown and self.var_kw is None:  # with **kwargs, an ignored name may arrive there
            raise ValueError(
                f"ignore={sorted(self.ignore)!r}: {', '.join(sorted(unknown))} "
                "is not a parameter of the function"
            )

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """Map every parameter to its value (defaults applied), minus ignored names."""
        positional = self.positional
        n = len(args)
        if n > len(positional) and self.var_pos is None:
            return None
        live = self.live
        if live is not None and (
            live.__defaults__ is not self.seen_defaults or live.__kwdefaults__ is not self.seen_kwdefaults
        ):
            self._reload(live)
        if not n and self.var_kw is None and kwargs.keys() <= self.with_kw:
            # Keyword-only calls (SDK style): no positional to clash with, every name known.
            out = {**self.defaults, **kwargs}
            if self.var_pos is not None:
                out[self.var_pos] = []
            if len(out) - (self.var_pos is not None) < self.n_params and not self.lenient:
                return None  # a required argument is missing
            for name in self.ignore:
                out.pop(name, None)
            return out
        out = dict(self.defaults)
        out.update(zip(positional, args, strict=False))
        if self.var_pos is not None:
            out[self.var_pos] = list(args[len(positional) :])
        extra: dict[str, Any] = {}
        if kwargs:
            taken = positional[:n]
            for name, value in kwargs.items():
                if name in self.with_kw:
                    if name in taken:
                        return None
                    out[name] = value
                elif self.var_kw is not None:
                    extra[name] = value
                else:
                    return None
        filled = len(out) - (self.var_pos is not None)
        if filled < self.n_params and not self.lenient:
            return None  # a required argument is missing
        if self.var_kw is not None:
            out[self.var_kw] = extra
        if self.ignore:
            for name in self.ignore:
                out.pop(name, None)
                if extra:
                    extra.pop(name, None)
        return out

    def _reload(self, live: Any) -> None:
        defaults, kwdefaults = live.__defaults__ or (), live.__kwdefaults__
        # The positional defaults fill the last len(defaults) positional parameters.
        positional = self.positional
        tail = positional[max(0, len(positional) - len(defaults)) :]
        fresh = dict(zip(tail, defaults[len(defaults) - len(tail) :], strict=True))
        fresh.update(kwdefaults or {})
        self.defaults = fresh
        self.seen_defaults, self.seen_kwdefaults = live.__defaults__, kwdefaults


def _live_defaults_owner(signature: inspect.Signature, func: Any) -> Any:
    """The function whose defaults the signature shows, when its own defaults say the same."""
    if func is None:
        return None
    owner = inspect.unwrap(func)
    if not hasattr(owner, "__defaults__") or not hasattr(owner, "__kwdefaults__"):
        return None
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
    shown = tuple(p.default for p in positional if p.default is not _P.empty)
    defaults = owner.__defaults__ or ()
    if len(shown) != len(defaults) or any(a is not b for a, b in zip(shown, defaults, strict=True)):
        return None
    shown_kw = {p.name: p.default for p in params if p.kind is _P.KEYWORD_ONLY and p.default is not _P.empty}
    kw = owner.__kwdefaults__ or {}
    if shown_kw.keys() != kw.keys() or any(shown_kw[k] is not v for k, v in kw.items()):
        return None
    return owner


#: A call's arguments twice: as the key reads them (``key_args, key_kwargs``), then as
#: the function receives them (``args, kwargs``). A plain tuple: made on every call.
Materialized = tuple[tuple[Any, ...], dict[str, Any], tuple[Any, ...], dict[str, Any]]


def materialize(
    args: tuple[Any, ...], kwargs: dict[str, Any], names: Sequence[str] = (), offset: int = 0
) -> Materialized:
    """Read one-shot iterators among the arguments, for the key and for the function.

    The key is built from the items (a list); the function gets a fresh iterator over
    the same items, so building the key consumes nothing it would have seen, and it
    still receives an iterator. ``names[offset + i]`` names positional argument ``i``
    in errors. Open files are left alone: the key refuses them.
    """
    key_args = call_args = args
    key_kwargs = call_kwargs = kwargs
    if args and _any_one_shot(args):
        key_list, call_list = [], []
        for index, value in enumerate(args):
            if _is_one_shot(value):
                at = offset + index
                items = _read(value, names[at] if at < len(names) else f"<positional {index}>")
                key_list.append(items)
                call_list.append(iter(items))
            else:
                key_list.append(value)
                call_list.append(value)
        key_args, call_args = tuple(key_list), tuple(call_list)
    if kwargs and _any_one_shot(kwargs.values()):
        key_kwargs, call_kwargs = {}, {}
        for name, value in kwargs.items():
            if _is_one_shot(value):
                items = _read(value, name)
                key_kwargs[name], call_kwargs[name] = items, iter(items)
            else:
                key_kwargs[name] = call_kwargs[name] = value
    return key_args, key_kwargs, call_args, call_kwargs


def _read(iterator: Any, name: str) -> list[Any]:
    items = list(itertools.islice(iterator, MAX_ITERATOR_ITEMS + 1))
    if len(items) > MAX_ITERATOR_ITEMS:
        raise UncacheableArgument(
            name,
            iterator,
            f"an iterator of more than {MAX_ITERATOR_ITEMS:,} items, perhaps endless: a key reads "
            "every item; pass a list",
        )
    return items


# The types a prompt is made of are never iterators: tested by identity, no hasattr().
_PLAIN = frozenset({str, int, float, bool, type(None), bytes, list, tuple, dict})


def _is_one_shot(value: Any) -> bool:
    t = type(value)
    return t not in _PLAIN and hasattr(t, "__next__") and not isinstance(value, io.IOBase)


def _any_one_shot(values: Iterable[Any]) -> bool:
    for value in values:  # on every call: no function call per argument
        t = type(value)
        if t not in _PLAIN and hasattr(t, "__next__") and not isinstance(value, io.IOBase):
            return True
    return False
