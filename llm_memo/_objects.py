"""Objects taken apart into plain state and put back together, without running their code.

A cached pydantic model or dataclass is stored as its state (field values, the
fields that were set, private and extra attributes) and rebuilt with
``object.__new__`` plus direct writes: no ``__init__``, no validator, no
``__post_init__``, no ``default_factory`` runs on a hit, so the object comes back as
it was, not as its class would build it again.

Rebuilding from stored data must not become a way to run code, so every write goes
to the instance's own ``__dict__`` (or a slot), never through ``setattr`` on the
class's descriptors, and an attribute name is refused when it is not an identifier,
is a dunder, or names anything the class defines (a method, a property): a planted
entry cannot shadow behaviour, only supply data.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import weakref
from typing import Any, NamedTuple

__all__ = ["BadState", "build_dataclass", "build_model", "dataclass_state", "model_state"]


class BadState(ValueError):
    """The state cannot be taken (encoding) or put back (decoding)."""


_MISSING = object()
# Kept in a root model's __dict__ but taken separately, as for every other model.
_PYDANTIC_SLOTS = frozenset(("__pydantic_private__", "__pydantic_extra__"))


class _ClassNames(NamedTuple):
    defined: frozenset[str]  # every name the class or a base defines
    cached: frozenset[str]  # the functools.cached_property ones among them


_class_names: weakref.WeakKeyDictionary[type, _ClassNames] = weakref.WeakKeyDictionary()


def _names(cls: type) -> _ClassNames:
    names = _class_names.get(cls)
    if names is None:
        defined = {name for klass in cls.__mro__ for name in vars(klass)}
        # A cached_property keeps its result in the instance __dict__: a cache of a
        # computation, not part of the value; the next access recomputes it.
        cached = {
            name
            for klass in cls.__mro__
            for name, attr in vars(klass).items()
            if isinstance(attr, functools.cached_property)
        }
        names = _class_names[cls] = _ClassNames(frozenset(defined), frozenset(cached))
    return names


def _plain_name(cls: type, name: Any) -> bool:
    return (
        type(name) is str
        and name.isidentifier()
        and not name.startswith("__")
        and name not in _names(cls).defined
    )


def _extra_attrs(obj: Any, known: Any) -> dict[str, Any]:
    """Instance attributes that are not fields (the SDKs' ``_request_id``, for one)."""
    cls = type(obj)
    cached = _names(cls).cached
    attrs: dict[str, Any] = {}
    for name, value in getattr(obj, "__dict__", {}).items():
        if name in known or name in cached or name in _PYDANTIC_SLOTS:
            continue
        if not _plain_name(cls, name):
            raise BadState(f"attribute {str(name)[:80]!r} of {cls.__qualname__} cannot be stored")
        attrs[name] = value
    return attrs


# --------------------------------------------------------------------- pydantic


def model_state(
    obj: Any,
) -> tuple[dict[str, Any], set[str], dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]:
    """Fields, fields set, private attributes, extra fields and other attributes of a model."""
    known = type(obj).__pydantic_fields__
    fields = {k: v for k, v in obj.__dict__.items() if k in known}
    private = obj.__pydantic_private__
    extra = obj.__pydantic_extra__
    return (
        fields,
        set(obj.__pydantic_fields_set__),
        None if private is None else dict(private),
        None if extra is None else dict(extra),
        _extra_attrs(obj, known),
    )


def build_model(
    cls: Any,
    fields: dict[str, Any],
    fields_set: Any,
    private: dict[str, Any] | None,
    extra: dict[str, Any] | None,
    attrs: dict[str, Any],
) -> Any:
    """A model instance holding exactly this state (``fields_set=None``: every field and extra)."""
    known = cls.__pydantic_fields__
    for name in fields:
        if name not in known:
            raise BadState(f"{cls.__qualname__} has no field {str(name)[:80]!r}")
    values = dict(fields)
    defaulted: set[str] = set()
    if len(values) != len(known):
        for name, info in known.items():
            if name in values:
                continue
            # A field added to the class since the entry was written: its plain default is
            # what validating the old data would give; a factory or a required field misses.
            if info.default_factory is not None or info.is_required():
                raise BadState(f"the entry has no value for {cls.__qualname__}.{name}")
            values[name] = info.get_default(call_default_factory=False)
            defaulted.add(name)
    for name, value in attrs.items():
        if name in known or not _plain_name(cls, name):
            raise BadState(f"attribute {str(name)[:80]!r} cannot be set on {cls.__qualname__}")
        values[name] = value
    if private is not None:
        declared = cls.__private_attributes__
        if any(name not in declared for name in private):
            raise BadState(f"private attributes not declared by {cls.__qualname__}")
    if fields_set is None:
        fields_set = (set(fields) | set(extra or ())) - defaulted
    elif any(type(k) is not str for k in fields_set):
        raise BadState("field names must be strings")
    obj = object.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(fields_set))
    # A root model has neither attribute until it needs one (its private attributes
    # then live in __dict__), as pydantic's own model_construct() leaves it.
    root = getattr(cls, "__pydantic_root_model__", False)
    if extra is not None or not root:
        object.__setattr__(obj, "__pydantic_extra__", extra)
    if private is not None or not root:
        object.__setattr__(obj, "__pydantic_private__", private)
    return obj


# --------------------------------------------------------------------- dataclasses


def dataclass_state(obj: Any) -> dict[str, Any]:
    """Every field that is set (an ``init=False`` field may not be) and other attributes."""
    names = [f.name for f in dataclasses.fields(obj)]
    own = getattr(obj, "__dict__", {})
    state: dict[str, Any] = {}
    for name in names:
        value = own.get(name, _MISSING)
        if value is _MISSING:
            slot = _slot(type(obj), name)
            if slot is not None:
                value = getattr(obj, name, _MISSING)
        if value is not _MISSING:
            state[name] = value
    state.update(_extra_attrs(obj, names))
    return state


def build_dataclass(cls: Any, state: dict[str, Any]) -> Any:
    """A dataclass instance holding exactly ``state``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    obj = object.__new__(cls)
    own: dict[str, Any] | None = getattr(obj, "__dict__", None)
    for name, value in state.items():
        if name in fields:
            slot = _slot(cls, name)
            if slot is not None:
                slot.__set__(obj, value)
                continue
        elif not _plain_name(cls, name):
            raise BadState(f"attribute {str(name)[:80]!r} cannot be set on {cls.__qualname__}")
        if own is None:
            raise BadState(f"{cls.__qualname__} has no attribute {str(name)[:80]!r}")
        own[name] = value
    for name, f in fields.items():
        if name in state or not f.init:
            continue  # an init=False field left unset stays unset, as it was
        if f.default is dataclasses.MISSING:
            raise BadState(f"the entry has no value for {cls.__qualname__}.{name}")
        if own is None:
            _slot_or_fail(cls, name).__set__(obj, f.default)
        else:
            own[name] = f.default
    return obj


def _slot(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        found = vars(klass).get(name)
        if found is not None:
            return found if isinstance(found, types.MemberDescriptorType) else None
    return None


def _slot_or_fail(cls: type, name: str) -> Any:
    slot = _slot(cls, name)
    if slot is None:
        raise BadState(f"{cls.__qualname__} has no slot {name!r}")
    return slot
