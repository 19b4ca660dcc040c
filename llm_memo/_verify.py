"""Would a stored value come back as the original? The check a store makes before writing.

Stricter than ``==`` where ``==`` is too lenient for a cache (``1 == 1.0 == True``,
a datetime equal to the same instant in another zone, a model's ``==`` that ignores
which fields were set) and lenient where ``==`` is too strict (NaN equals NaN, a
dataclass declared with ``eq=False`` compares by its attributes). Types must match
exactly at every level. Runs on the store path only; a hit never pays for it.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
from typing import Any

from ._objects import dataclass_state, model_state

__all__ = ["first_difference"]

_BY_EQUALITY = frozenset((str, int, bool, bytes, type(None), _dt.date, _dt.timedelta, set, frozenset))
_MAX_DEPTH = 600  # the encoder refuses deeper values before this check runs


class _Found:
    """A difference: why, and the path to it (collected innermost first, on the way out)."""

    __slots__ = ("reason", "steps")

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.steps: list[str] = []

    def at(self, step: str) -> _Found:
        self.steps.append(step)
        return self


def first_difference(original: Any, copy: Any) -> str | None:
    """Where ``copy`` first differs from ``original`` (``"Answer.items[2].score ..."``), or None."""
    try:
        found = _diff(original, copy, 0)
    except Exception as exc:  # a user __eq__ that raises: not provably equal
        return f"comparing raised {type(exc).__name__}"
    if found is None:
        return None
    return f"{type(original).__qualname__}{''.join(reversed(found.steps))} {found.reason}"


def _diff(a: Any, b: Any, depth: int) -> _Found | None:
    t = type(a)
    if t is not type(b):
        return _Found(f"would come back as {type(b).__qualname__}, not {t.__qualname__}")
    if t is float:
        return None if a == b or (a != a and b != b) else _Found("would come back as another float")
    if t in _BY_EQUALITY:
        return None if a == b else _Found("would come back different")
    if depth > _MAX_DEPTH:
        return _Found("is nested too deeply to compare")
    depth += 1
    if t is list or t is tuple:
        if len(a) != len(b):
            return _Found(f"would come back with {len(b)} items, not {len(a)}")
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _diff(x, y, depth)
            if found is not None:
                return found.at(f"[{i}]")
        return None
    if t is dict:
        return _diff_mapping(a, b, depth, False)
    if hasattr(t, "__pydantic_fields__"):
        return _diff_model(a, b, depth)
    if dataclasses.is_dataclass(t):
        return _diff_mapping(dataclass_state(a), dataclass_state(b), depth, True)
    if t is _dt.datetime or t is _dt.time:
        if a != b or a.fold != b.fold or not _same_zone(a.tzinfo, b.tzinfo):
            return _Found("would come back in another time zone or fold")
        return None
    if isinstance(a, enum.Enum):
        return None if a is b else _Found("would come back as another member")
    if t is decimal.Decimal:  # str keeps NaN and the exponent (1.0 vs 1.00), which == ignores
        return None if str(a) == str(b) else _Found("would come back different")
    return None if a == b else _Found("would come back different")


def _same_zone(x: Any, y: Any) -> bool:
    if x is y:
        return True
    if type(x) is not type(y):
        return False
    key = getattr(x, "key", None)  # ZoneInfo: no __eq__, but one key names one zone
    return bool(x == y) or (key is not None and key == getattr(y, "key", None))


def _diff_mapping(a: dict[Any, Any], b: dict[Any, Any], depth: int, attrs: bool) -> _Found | None:
    if len(a) != len(b) or list(a) != list(b):
        missing = [k for k in a if k not in b]
        if missing:
            return _Found("would be missing").at(_step(missing[0], attrs))
        added = [k for k in b if k not in a]
        if added:
            return _Found("would be added").at(_step(added[0], attrs))
        return _Found("would come back with its keys in another order")
    for (k, x), (key_b, y) in zip(a.items(), b.items(), strict=True):
        if type(k) is not type(key_b):
            return _Found(f"would come back as a key of type {type(key_b).__qualname__}").at(_step(k, attrs))
        found = _diff(x, y, depth)
        if found is not None:
            return found.at(_step(k, attrs))
    return None


def _step(key: Any, attrs: bool) -> str:
    return f".{key}" if attrs and type(key) is str else f"[{key!r:.60}]"


def _diff_model(a: Any, b: Any, depth: int) -> _Found | None:
    dict_a, dict_b = a.__dict__, b.__dict__
    if list(dict_a) == list(dict_b):  # the usual case: fields and other attributes alike
        found = _diff_mapping(dict_a, dict_b, depth, True)
    else:  # perhaps only a cached_property computed on one of them: compare what is stored
        state_a, state_b = model_state(a), model_state(b)
        found = _diff_mapping(state_a[0], state_b[0], depth, True) or _diff_mapping(
            state_a[4], state_b[4], depth, True
        )
    if found is not None:
        return found
    if a.__pydantic_fields_set__ != b.__pydantic_fields_set__:
        return _Found("would come back with other fields marked as set")
    for part_a, part_b in (
        (a.__pydantic_private__, b.__pydantic_private__),
        (a.__pydantic_extra__, b.__pydantic_extra__),
    ):
        if part_a is None or part_b is None:
            if part_a is not part_b:
                return _Found("would come back with other private attributes or extra fields")
            continue
        found = _diff_mapping(part_a, part_b, depth, True)
        if found is not None:
            return found
    return None
