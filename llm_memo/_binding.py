"""Binding a call's arguments to the signature, fast.

``inspect.Signature.bind`` + ``apply_defaults`` costs several microseconds per
call; this precomputes the signature's shape once and binds with dict operations.
Anything unusual (a missing argument, a duplicate, an unknown keyword) returns
``None``: the caller then simply calls the function, which raises its own
``TypeError`` exactly as it would uncached.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

__all__ = ["Binder", "materialize"]

_P = inspect.Parameter


class Binder:
    __slots__ = ("defaults", "ignore", "lenient", "n_params", "positional", "var_kw", "var_pos", "with_kw")

    def __init__(
        self, signature: inspect.Signature, ignore: Iterable[str] = (), *, lenient: bool = False
    ) -> None:
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


def materialize(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn one-shot iterators among the arguments into lists.

    The key is built from the items, and the same list is passed on to the
    function, so it sees every item (building the key must not consume them).
    """
    if args and _any_one_shot(args):
        args = tuple(list(a) if hasattr(type(a), "__next__") else a for a in args)
    if kwargs and _any_one_shot(kwargs.values()):
        kwargs = {k: list(v) if hasattr(type(v), "__next__") else v for k, v in kwargs.items()}
    return args, kwargs


# The types a prompt is made of are never iterators: tested by identity, no hasattr().
_PLAIN = frozenset({str, int, float, bool, type(None), bytes, list, tuple, dict})


def _any_one_shot(values: Iterable[Any]) -> bool:
    for value in values:
        t = type(value)
        if t not in _PLAIN and hasattr(t, "__next__"):
            return True
    return False
