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

_BY_EQUALITY = (str, int, bool, bytes, type(None), _dt.date, _dt.timedelta, set, frozenset)
_MAX_DEPTH = 600  # the encoder refuses deeper values before this check runs


def first_difference(original: Any, copy: Any) -> str | None:
    """Where ``copy`` first differs from ``original`` (``"Answer.items[2].score: ..."``), or None."""
    try:
        return _diff(original, copy, type(original).__qualname__, 0)
    except Exception as exc:  # a user __eq__ that raises: not provably equal
        return f"comparing raised {type(exc).__name__}"


def _diff(a: Any, b: Any, path: str, depth: int) -> str | None:
    t = type(a)
    if t is not type(b):
        return f"{path} would come back as {type(b).__qualname__}, not {t.__qualname__}"
    if t is float:
        return None if a == b or (a != a and b != b) else f"{path} would come back as a different float"
    if t in _BY_EQUALITY:
        return None if a == b else f"{path} would come back different"
    if depth > _MAX_DEPTH:
        return f"{path} is nested too deeply to compare"
    depth += 1
    if t is list or t is tuple:
        if len(a) != len(b):
            return f"{path} would come back with {len(b)} items, not {len(a)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _diff(x, y, f"{path}[{i}]", depth)
            if found:
                return found
        return None
    if t is dict:
        return _diff_mapping(a, b, path, depth)
    if hasattr(t, "__pydantic_fields__"):
        return _diff_model(a, b, path, depth)
    if dataclasses.is_dataclass(t):
        return _diff_mapping(dataclass_state(a), dataclass_state(b), path, depth, ".")
    if t is _dt.datetime or t is _dt.time:
        if a != b or a.fold != b.fold or not _same_zone(a.tzinfo, b.tzinfo):
            return f"{path} would come back in another time zone or fold"
        return None
    if isinstance(a, enum.Enum):
        return None if a is b else f"{path} would come back as another member"
    if t is decimal.Decimal:  # str keeps NaN and the exponent (1.0 vs 1.00), which == ignores
        return None if str(a) == str(b) else f"{path} would come back different"
    return None if a == b else f"{path} would come back different"


def _same_zone(x: Any, y: Any) -> bool:
    if x is y:
        return True
    if type(x) is not type(y):
        return False
    key = getattr(x, "key", None)  # ZoneInfo: no __eq__, but one key names one zone
    return x == y or (key is not None and key == getattr(y, "key", None))


def _diff_mapping(a: dict[Any, Any], b: dict[Any, Any], path: str, depth: int, dot: str = "") -> str | None:
    if list(a) != list(b):
        missing = [k for k in a if k not in b]
        added = [k for k in b if k not in a]
        if missing:
            return f"{path}{_step(missing[0], dot)} would be missing"
        if added:
            return f"{path}{_step(added[0], dot)} would be added"
        return f"{path} would come back with its keys in another order or of other types"
    for (k, x), (key_b, y) in zip(a.items(), b.items(), strict=True):
        if type(k) is not type(key_b):
            return f"{path}{_step(k, dot)} would come back with a key of type {type(key_b).__qualname__}"
        found = _diff(x, y, f"{path}{_step(k, dot)}", depth)
        if found:
            return found
    return None


def _step(key: Any, dot: str) -> str:
    return f".{key}" if dot and type(key) is str else f"[{key!r:.60}]"


def _diff_model(a: Any, b: Any, path: str, depth: int) -> str | None:
    fields_a, set_a, private_a, extra_a, attrs_a = model_state(a)
    fields_b, set_b, private_b, extra_b, attrs_b = model_state(b)
    found = _diff_mapping(fields_a, fields_b, path, depth, ".")
    if found:
        return found
    if set_a != set_b:
        return f"{path} would come back with other fields marked as set"
    for part_a, part_b in ((private_a, private_b), (extra_a, extra_b), (attrs_a, attrs_b)):
        if part_a is None or part_b is None:
            if part_a is not part_b:
                return f"{path} would come back with other private or extra attributes"
            continue
        found = _diff_mapping(part_a, part_b, path, depth, ".")
        if found:
            return found
    return None
