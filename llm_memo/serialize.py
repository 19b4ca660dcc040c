"""Values to bytes and back, with no pickle: loading the cache never runs code.

Two layers, both data-only:

**The value format** is JSON (via orjson) with a few tagged objects for what JSON
cannot say. A tag is a one-key object whose key starts with ``$``; a plain dict that
has a ``$`` key, or a non-string key, is itself stored under the ``$dict`` tag, so a
plain value can never be mistaken for a tag::

    None, bool, str, int (64-bit), finite float   -> JSON
    {"$int": "123..."}      big ints             {"$float": "nan" | "inf" | "-inf"}
    {"$bytes": "<b64>"}     bytes                {"$tuple": [...]}
    {"$set": [...]}, {"$frozenset": [...]}       {"$dict": [[k, v], ...]}
    {"$datetime"|"$date"|"$time": iso}, {"$timedelta": [d, s, us]}, {"$uuid": s}, {"$decimal": s}
    {"$datetime": [naive iso, zone key | null, fold]}   a ZoneInfo zone, or a fold of 1
    {"$object": [type, fields, fields set | null, private | null, extra | null, attributes]}
                                                 a pydantic model, field by field
    {"$model": [type, data, ids]}                an OpenAI/Anthropic response (``data``: its JSON dump)
    {"$dataclass": [type, {attribute: value}]}   {"$enum": [type, value]}

Objects are rebuilt as they were, without running ``__init__``, validators,
``__post_init__`` or default factories (see :mod:`llm_memo._objects`). SDK responses
take the faster ``$model`` form, rebuilt by validating their dump, whenever that
gives back an equal object; one that does not (a payload that drifted from the SDK's
types) is stored field by field. :func:`encode_verified`, which every store uses,
decodes what it is about to store and refuses a value that would not come back
equal in value and type (see :mod:`llm_memo._verify`).

A type named in an entry is only reconstructed if it is *allowed*: registered with
:func:`register_type`, named by the cached function's return annotation, or a
pydantic model from an already-imported ``openai`` / ``anthropic`` types module.
The entry never causes an import, and a name that is not allowed reads as a miss.
A subclass of an allowed class is not allowed by that: it may override any method
that later runs on the rebuilt object, so it must be allowed itself.

**The entry envelope** wraps the encoded value with what a read must check::

    offset size
    0      4    magic  b"LMM" + format version (1)
    4      1    flags  (bit 0: value is zlib-compressed)
    5      16   fingerprint of the full key material (domain-separated SHA-256, keys.fingerprint)
    21     8    checksum: CRC-32 of every byte after this field (little-endian, zero-padded)
    29     8    created, unix seconds (float64, little-endian)
    37     8    expires, unix seconds, 0.0 for never
    45     8    cost: seconds the original call took (for "time saved" stats)
    53     4    length of the value section
    57     ...  value section, then the optional key material (JSON) to the end

A read that fails any check (magic, length, checksum, fingerprint, size caps) is a
:class:`~llm_memo.errors.CorruptEntry`, which the cache treats as a miss.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import re
import struct
import sys
import typing
import uuid
import zlib
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from ._objects import BadState, build_dataclass, build_model, dataclass_state, model_state
from ._verify import first_difference
from .errors import CorruptEntry, UnstorableResult

__all__ = [
    "ENTRY_FORMAT_VERSION",
    "MAX_VALUE_BYTES",
    "EntryHeader",
    "TypeRegistry",
    "decode_value",
    "dump_tree",
    "encode_tree",
    "encode_value",
    "encode_verified",
    "entry_expiry",
    "entry_fingerprint",
    "pack_entry",
    "read_entry",
    "register_type",
    "unpack_entry",
    "verified_tree",
]

ENTRY_FORMAT_VERSION = 2  # 2: SHA-256 fingerprints
_MAGIC = b"LMM" + bytes([ENTRY_FORMAT_VERSION])
# The envelope, byte by byte; this module alone reads or writes it (stores and
# tools ask the functions below). Little-endian; times are float64 unix seconds.
_MAGIC_PART = slice(0, 4)
_FLAGS = 4
_FINGERPRINT = slice(5, 21)  # keys.fingerprint of the key material
_CHECKSUM = slice(21, 29)  # CRC-32 of everything after it
_BODY_START = 29
_CREATED = slice(29, 37)
_EXPIRES = slice(37, 45)  # 0.0: never
_COST = slice(45, 53)
_LENGTH = slice(53, 57)  # of the (maybe compressed) value; the key material follows it
_HEADER_SIZE = 57
_COMPRESSED = 0x01
#: Values above this size are compressed before they are stored.
COMPRESS_ABOVE = 32 * 1024
#: A value section may never inflate beyond this: a decompression bomb is a miss.
MAX_VALUE_BYTES = 256 * 1024 * 1024
#: Decoding refuses deeper nesting (orjson stops at 1024 anyway; we stay well under
#: the interpreter's recursion limit).
MAX_DEPTH = 500

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Only these SDK packages may name their own response types in an entry.
_SDK_TYPE_PREFIXES = ("openai.types.", "openai.lib.", "anthropic.types.", "anthropic.lib.")

_registered: dict[str, type] = {}

# Private attributes the SDKs set on responses from headers; kept with the model.
_PRIVATE_ATTRS = ("_request_id", "_workspace_id")


def register_type(cls: type) -> type:
    """Allow ``cls`` to be rebuilt from cache content (usable as a class decorator).

    Needed only for types the cached function's return annotation does not name.
    """
    _registered[type_name(cls)] = cls
    return cls


def type_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_model_class(cls: Any) -> bool:
    return isinstance(cls, type) and hasattr(cls, "__pydantic_fields__") and hasattr(cls, "model_validate")


class TypeRegistry:
    """The types one cached function may store and rebuild."""

    __slots__ = ("_allowed",)

    def __init__(self, types_: Iterable[type] = ()) -> None:
        self._allowed: dict[str, type] = {type_name(t): t for t in types_}

    @classmethod
    def from_annotation(cls, annotation: Any, extra: Iterable[type] = ()) -> TypeRegistry:
        """Collect every class named in a return annotation (``list[Answer] | None`` -> Answer)."""
        found: list[type] = []
        seen: set[int] = set()

        def walk(node: Any) -> None:
            if id(node) in seen:
                return
            seen.add(id(node))
            if isinstance(node, type) and (
                _is_model_class(node) or dataclasses.is_dataclass(node) or issubclass(node, enum.Enum)
            ):
                found.append(node)
                for hint in _field_types(node):  # their fields may hold more types
                    walk(hint)
            for arg in typing.get_args(node):
                walk(arg)

        walk(annotation)
        return cls([*found, *extra])

    def name_for(self, cls: type) -> str:
        """The name to store for ``cls``; raises if a read could never rebuild it."""
        name = type_name(cls)
        if self.resolve(name) is not cls:
            base = next((b for b in cls.__mro__[1:] if self.resolve(type_name(b)) is b), None)
            hint = f" (a subclass of {base.__qualname__} must be allowed itself)" if base is not None else ""
            raise UnstorableResult(
                f"results of type {cls.__qualname__} cannot be rebuilt from the cache{hint}; "
                f"annotate the function's return type or call llm_memo.register_type({cls.__qualname__})"
            )
        return name

    def resolve(self, name: str) -> type | None:
        cls = self._allowed.get(name) or _registered.get(name)
        if cls is not None:
            return cls
        return _sdk_type(name)


def _field_types(cls: type) -> list[Any]:
    if _is_model_class(cls):
        return [info.annotation for info in getattr(cls, "__pydantic_fields__", {}).values()]
    if dataclasses.is_dataclass(cls):
        try:
            return list(typing.get_type_hints(cls).values())
        except Exception:  # an unresolvable forward reference: register those types by hand
            return []
    return []


def _sdk_type(name: str) -> type | None:
    """Resolve an SDK response type, only from a module that is already imported."""
    module_name, _, qualname = name.partition(":")
    if not module_name.startswith(_SDK_TYPE_PREFIXES):
        return None
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        if obj is None or not part.isidentifier():
            return None
        obj = getattr(obj, part, None)
    return obj if _is_model_class(obj) else None


# --------------------------------------------------------------------- encoding


def encode_value(value: Any, registry: TypeRegistry) -> bytes:
    """Encode a result to bytes, or raise :class:`UnstorableResult` (unchecked: see below)."""
    return dump_tree(encode_tree(value, registry))


def encode_verified(value: Any, registry: TypeRegistry) -> bytes:
    """Encode a result that is proven to decode equal to it, or raise :class:`UnstorableResult`."""
    return dump_tree(verified_tree(value, registry))


def verified_tree(value: Any, registry: TypeRegistry) -> Any:
    """:func:`encode_tree`, then decode the tree and compare it with ``value`` (``==`` and type).

    The JSON bytes of a tree decode exactly as the tree itself does, so checking the
    tree is checking what will be stored. An SDK response whose fast form does not
    come back equal is encoded again field by field before giving up.
    """
    tree = encode_tree(value, registry)
    problem = _check(value, tree, registry)
    if problem is not None and problem[1]:
        tree = encode_tree(value, registry, exact=True)
        problem = _check(value, tree, registry)
    if problem is not None:
        raise UnstorableResult(f"{type(value).__qualname__} would not come back equal: {problem[0]}")
    return tree


def _check(value: Any, tree: Any, registry: TypeRegistry) -> tuple[str, bool] | None:
    """None if ``tree`` decodes equal to ``value``; else why, and whether it used a fast form."""
    try:
        copy = _dec(tree, registry, 0)
    except Exception as exc:  # CorruptEntry, or a class whose instances cannot be made this way
        return f"it cannot be rebuilt ({exc})", _uses_fast_form(tree)
    problem = first_difference(value, copy)
    return None if problem is None else (problem, _uses_fast_form(tree))


def _uses_fast_form(tree: Any) -> bool:
    t = type(tree)
    if t is list:
        return any(_uses_fast_form(x) for x in tree)
    if t is dict:
        return "$model" in tree or any(_uses_fast_form(x) for x in tree.values())
    return False


def encode_tree(value: Any, registry: TypeRegistry, *, exact: bool = False) -> Any:
    """Encode a result to its JSON tree (a snapshot: later mutation of ``value`` cannot reach it).

    ``exact=True`` stores SDK responses field by field too.
    """
    try:
        return _enc(value, registry, 0, exact)
    except UnstorableResult:
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        raise UnstorableResult(f"cannot encode {type(value).__qualname__}: {exc}") from exc


def dump_tree(tree: Any) -> bytes:
    try:
        return orjson.dumps(tree)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise UnstorableResult(f"cannot encode the result: {exc}") from exc


def _enc(v: Any, reg: TypeRegistry, depth: int, exact: bool) -> Any:
    t = type(v)
    if t is str or t is bool or v is None:
        return v
    if t is int:
        return v if _INT64_MIN <= v <= _INT64_MAX else {"$int": str(v)}
    if t is float:
        if v != v or v in (float("inf"), float("-inf")):
            return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
        return v
    if depth > MAX_DEPTH:
        raise UnstorableResult(f"result is nested deeper than {MAX_DEPTH} levels")
    depth += 1
    if t is list:
        return [_enc(x, reg, depth, exact) for x in v]
    if t is dict:
        if all(type(k) is str and not k.startswith("$") for k in v):
            return {k: _enc(x, reg, depth, exact) for k, x in v.items()}
        return {"$dict": [[_enc(k, reg, depth, exact), _enc(x, reg, depth, exact)] for k, x in v.items()]}
    if t is tuple:
        return {"$tuple": [_enc(x, reg, depth, exact) for x in v]}
    if t is bytes:
        return {"$bytes": base64.b64encode(v).decode("ascii")}
    if _is_model_class(t):
        name = reg.name_for(t)
        if not exact and name.startswith(_SDK_TYPE_PREFIXES):
            return _enc_sdk_model(v, name)
        return _enc_object(v, name, reg, depth, exact)
    if isinstance(v, enum.Enum):
        return {"$enum": [reg.name_for(t), _enc(v.value, reg, depth, exact)]}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        name = reg.name_for(t)
        return {"$dataclass": [name, _enc_state(_state(dataclass_state, v), reg, depth, exact)]}
    if t is set or t is frozenset:
        return {"$" + t.__name__: [_enc(x, reg, depth, exact) for x in v]}
    if t is _dt.datetime:
        return {"$datetime": _enc_datetime(v)}
    if t is _dt.date:
        return {"$date": v.isoformat()}
    if t is _dt.time:
        return {"$time": v.isoformat()}
    if t is _dt.timedelta:
        return {"$timedelta": [v.days, v.seconds, v.microseconds]}
    if t is uuid.UUID:
        return {"$uuid": str(v)}
    if t is decimal.Decimal:
        return {"$decimal": str(v)}
    raise UnstorableResult(f"cannot store a result of type {t.__module__}.{t.__qualname__}")


def _enc_sdk_model(model: Any, name: str) -> Any:
    # exclude_unset keeps model_fields_set, so the rebuilt object dumps exactly as the
    # original did (the SDKs' to_dict() is this same call).
    data = model.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)
    private: dict[str, Any] = {}
    for attr in _PRIVATE_ATTRS:  # set by the SDKs from response headers; not in the dump
        value = model.__dict__.get(attr)
        if isinstance(value, str):
            private[attr] = value
    return {"$model": [name, data, private]}


def _enc_object(model: Any, name: str, reg: TypeRegistry, depth: int, exact: bool) -> Any:
    fields, fields_set, private, extra, attrs = _state(model_state, model)
    every = fields.keys() | (extra or {}).keys()
    return {
        "$object": [
            name,
            _enc_state(fields, reg, depth, exact),
            None if fields_set == every else sorted(fields_set),
            None if private is None else _enc_state(private, reg, depth, exact),
            None if extra is None else _enc_state(extra, reg, depth, exact),
            _enc_state(attrs, reg, depth, exact),
        ]
    }


def _state(take: Any, obj: Any) -> Any:
    try:
        return take(obj)
    except BadState as exc:
        raise UnstorableResult(str(exc)) from None


def _enc_state(state: dict[str, Any], reg: TypeRegistry, depth: int, exact: bool) -> dict[str, Any]:
    # Names are attribute names, decoded one by one (never as tags), so "$" needs no escape.
    return {k: _enc(x, reg, depth, exact) for k, x in state.items()}


def _enc_datetime(v: _dt.datetime) -> Any:
    tz: Any = v.tzinfo
    zoneinfo = sys.modules.get("zoneinfo")  # not imported: no ZoneInfo can exist
    if zoneinfo is not None and type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        return [v.replace(tzinfo=None).isoformat(), tz.key, v.fold]
    if v.fold:
        return [v.isoformat(), None, v.fold]
    return v.isoformat()  # a fixed offset, UTC or naive; another tzinfo fails the store-time check


# --------------------------------------------------------------------- decoding


def decode_value(data: bytes, registry: TypeRegistry) -> Any:
    """Decode bytes made by :func:`encode_value`; raises :class:`CorruptEntry`."""
    try:
        tree = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptEntry(f"value is not valid JSON: {exc}") from None
    if b'"$' not in data:
        # No tag anywhere (every tag is a "$..." key, and plain "$" keys are always
        # wrapped in a tag): the parsed JSON is the value as it is.
        return tree
    try:
        if type(tree) is dict and len(tree) == 1 and "$model" in tree:  # an SDK response
            name, data_, private = tree["$model"]
            return _rebuild_model(_allowed_sdk(registry, name), data_, private)
        return _dec(tree, registry, 0)
    except CorruptEntry:
        raise
    except Exception as exc:  # any malformed shape is corruption, never a crash
        raise CorruptEntry(f"malformed value: {type(exc).__name__}: {exc}") from None


def _dec(v: Any, reg: TypeRegistry, depth: int) -> Any:
    t = type(v)
    if t is list:
        if depth > MAX_DEPTH:
            raise CorruptEntry("value nested too deeply")
        return [_dec(x, reg, depth + 1) for x in v]
    if t is not dict:
        return v
    if depth > MAX_DEPTH:
        raise CorruptEntry("value nested too deeply")
    depth += 1
    if len(v) == 1:
        ((tag, body),) = v.items()
        if tag.startswith("$"):
            return _dec_tag(tag, body, reg, depth)
    return {k: _dec(x, reg, depth) for k, x in v.items()}


def _dec_tag(tag: str, body: Any, reg: TypeRegistry, depth: int) -> Any:
    if tag == "$model":
        name, data, private = body
        return _rebuild_model(_allowed_sdk(reg, name), data, private)
    if tag == "$object":
        name, fields, fields_set, private, extra, attrs = body
        cls = _allowed(reg, name)
        if cls not in _checked_models:
            if not _is_model_class(cls):
                raise CorruptEntry(f"{name} is not a pydantic model")
            _checked_models.add(cls)
        return _build(
            build_model,
            cls,
            _dec_state(fields, reg, depth),
            None if fields_set is None else list(fields_set),
            None if private is None else _dec_state(private, reg, depth),
            None if extra is None else _dec_state(extra, reg, depth),
            _dec_state(attrs, reg, depth),
        )
    if tag == "$tuple":
        return tuple(_dec(x, reg, depth) for x in body)
    if tag == "$bytes":
        return base64.b64decode(body, validate=True)
    if tag == "$dict":
        return {_dec(k, reg, depth): _dec(x, reg, depth) for k, x in body}
    if tag == "$int":
        if len(body) > 5000:  # int() of a huge digit string is quadratic
            raise CorruptEntry("integer too long")
        return int(body)
    if tag == "$float":
        return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}[body])
    if tag == "$dataclass":
        name, fields = body
        cls = _allowed(reg, name)
        if not dataclasses.is_dataclass(cls):
            raise CorruptEntry(f"{name} is not a dataclass")
        return _build(build_dataclass, cls, _dec_state(fields, reg, depth))
    if tag == "$enum":
        name, raw = body
        cls = _allowed(reg, name)
        if not issubclass(cls, enum.Enum):
            raise CorruptEntry(f"{name} is not an enum")
        return cls(_dec(raw, reg, depth))
    if tag == "$set":
        return {_dec(x, reg, depth) for x in body}
    if tag == "$frozenset":
        return frozenset(_dec(x, reg, depth) for x in body)
    if tag == "$datetime":
        return _dec_datetime(body)
    if tag == "$date":
        return _dt.date.fromisoformat(body)
    if tag == "$time":
        return _dt.time.fromisoformat(body)
    if tag == "$timedelta":
        days, seconds, micros = body
        return _dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if tag == "$uuid":
        return uuid.UUID(body)
    if tag == "$decimal":
        if len(body) > 5000:
            raise CorruptEntry("decimal too long")
        return decimal.Decimal(body)
    raise CorruptEntry(f"unknown tag {tag[:40]!r}")


def _dec_state(state: Any, reg: TypeRegistry, depth: int) -> dict[str, Any]:
    if type(state) is not dict:
        raise CorruptEntry("object state is not a mapping")
    return {k: _dec(x, reg, depth) for k, x in state.items()}


def _build(build: Any, cls: Any, *state: Any) -> Any:
    try:
        return build(cls, *state)
    except BadState as exc:
        raise CorruptEntry(str(exc)) from None


# IANA zone names; checked before ZoneInfo() looks for a file by that name.
_ZONE_KEY = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*")


def _dec_datetime(body: Any) -> _dt.datetime:
    if type(body) is str:
        return _dt.datetime.fromisoformat(body)
    iso, key, fold = body
    value = _dt.datetime.fromisoformat(iso)
    if key is not None:
        if type(key) is not str or len(key) > 100 or not _ZONE_KEY.fullmatch(key):
            raise CorruptEntry("bad time zone name")
        import zoneinfo  # only entries that name a zone pay for it

        value = value.replace(tzinfo=zoneinfo.ZoneInfo(key))
    return value.replace(fold=1 if fold == 1 else 0)


def _allowed_sdk(reg: TypeRegistry, name: Any) -> Any:
    # The fast form validates: only the SDKs' own models may be rebuilt that way.
    if not isinstance(name, str) or not name.startswith(_SDK_TYPE_PREFIXES):
        raise CorruptEntry(f"entry names type {str(name)[:200]!r} in a form only SDK responses may use")
    return _allowed(reg, name)


def _allowed(reg: TypeRegistry, name: Any) -> Any:
    cls = reg.resolve(name) if isinstance(name, str) else None
    if cls is None:
        raise CorruptEntry(f"entry names type {str(name)[:200]!r}, which is not allowed to be rebuilt")
    return cls


_checked_models: set[type] = set()


def _rebuild_model(cls: Any, data: Any, private: dict[str, Any]) -> Any:
    if cls not in _checked_models:
        if not _is_model_class(cls):
            raise CorruptEntry(f"{cls!r} is not a pydantic model")
        _checked_models.add(cls)
    # Validating the object's own JSON dump is ~15x faster than the SDKs'
    # construct_type() and gives an equal object with the same fields_set; the store
    # checked that it does (a drifted payload is stored field by field instead).
    obj = cls.model_validate(data)
    for name, value in private.items():
        if name in _PRIVATE_ATTRS and isinstance(value, str):
            setattr(obj, name, value)
    return obj


# --------------------------------------------------------------------- envelope


class EntryHeader(NamedTuple):
    created: float
    expires: float | None
    value: bytes
    material: bytes | None
    cost: float = 0.0


def pack_entry(
    value: bytes,
    fingerprint: bytes,
    created: float,
    expires: float | None,
    material: bytes | None = None,
    *,
    cost: float = 0.0,
) -> bytes:
    flags = 0
    if len(value) > COMPRESS_ABOVE:
        packed = zlib.compress(value, 1)
        if len(packed) < len(value):
            value, flags = packed, _COMPRESSED
    body = b"".join(
        (
            _f64(created),
            _f64(expires or 0.0),
            _f64(max(cost, 0.0)),
            len(value).to_bytes(4, "little"),
            value,
            material or b"",
        )
    )
    return b"".join((_MAGIC, bytes([flags]), fingerprint, _checksum(body), body))


def unpack_entry(data: bytes, fingerprint: bytes | None) -> EntryHeader:
    """Check and open an entry. ``fingerprint=None`` skips only the key check (tools)."""
    # The checks are written out here, not called: this runs on every hit.
    if type(data) is not bytes:  # a hand-edited SQLite row can hold an int, a float, text or NULL
        raise CorruptEntry(f"stored value is {type(data).__name__}, not bytes")
    if len(data) < _HEADER_SIZE or data[_MAGIC_PART] != _MAGIC:
        raise CorruptEntry(_NOT_AN_ENTRY)
    if fingerprint is not None and data[_FINGERPRINT] != fingerprint:
        raise CorruptEntry("key fingerprint mismatch: this entry belongs to another call")
    if _checksum(memoryview(data)[_BODY_START:]) != data[_CHECKSUM]:
        raise CorruptEntry(_TORN)
    flags = data[_FLAGS]
    created = _from_f64(data[_CREATED])
    expires = _from_f64(data[_EXPIRES]) or None
    cost = _from_f64(data[_COST])
    length = int.from_bytes(data[_LENGTH], "little")
    end = _HEADER_SIZE + length
    if end > len(data):
        raise CorruptEntry("value length runs past the end of the entry")
    value = data[_HEADER_SIZE:end]
    if flags & _COMPRESSED:
        value = _inflate(value)
    material = data[end:] or None
    return EntryHeader(created, expires, value, material, cost)


def read_entry(data: bytes) -> EntryHeader:
    """Open an entry without knowing its key (for listing and moving entries)."""
    return unpack_entry(data, None)


def entry_expiry(data: bytes) -> float | None:
    """When an intact entry expires (unix seconds; ``None``: never), without opening its value.

    For stores that keep entries for a while (a faster tier): raises
    :class:`~llm_memo.errors.CorruptEntry` if ``data`` is not an intact entry.
    """
    _check_envelope(data)
    _check_sum(data)
    return _from_f64(data[_EXPIRES]) or None


def entry_fingerprint(data: bytes) -> bytes:
    """The key fingerprint an intact entry carries (16 bytes; see :func:`llm_memo.keys.fingerprint`).

    A cassette keeps it for entries stored without their key material, so it can
    re-pack them exactly. Raises :class:`~llm_memo.errors.CorruptEntry`.
    """
    _check_envelope(data)
    _check_sum(data)
    return data[_FINGERPRINT]


def _check_envelope(data: bytes) -> None:
    if type(data) is not bytes:
        raise CorruptEntry(f"stored value is {type(data).__name__}, not bytes")
    if len(data) < _HEADER_SIZE or data[_MAGIC_PART] != _MAGIC:
        raise CorruptEntry(_NOT_AN_ENTRY)


def _check_sum(data: bytes) -> None:
    if _checksum(memoryview(data)[_BODY_START:]) != data[_CHECKSUM]:
        raise CorruptEntry(_TORN)


_NOT_AN_ENTRY = "not an llm_memo entry, or a different format version"
_TORN = "checksum mismatch: the entry is torn or was modified"


def _inflate(data: bytes) -> bytes:
    # In steps: decompress(data, cap) alone peaks at twice the cap (its block buffer,
    # then the joined result), so a planted bomb cost 512+ MiB before it was refused.
    inflater = zlib.decompressobj()
    parts: list[bytes] = []
    total = 0
    try:
        while data and not inflater.eof:
            part = inflater.decompress(data, _INFLATE_STEP)
            total += len(part)
            if total > MAX_VALUE_BYTES:
                raise CorruptEntry("compressed value inflates beyond the size cap")
            parts.append(part)
            data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise CorruptEntry(f"compressed value is damaged: {exc}") from None
    if not inflater.eof:
        raise CorruptEntry("compressed value is truncated")
    return b"".join(parts)


_INFLATE_STEP = 1024 * 1024


def _checksum(data: bytes | memoryview) -> bytes:
    # CRC-32 detects torn and bit-flipped entries at memory speed; it is not a
    # defence against a forger (who could recompute any unkeyed hash anyway).
    return zlib.crc32(data).to_bytes(8, "little")


_F64 = struct.Struct("<d")


def _f64(x: float) -> bytes:
    return _F64.pack(x)


def _from_f64(b: bytes) -> float:
    value: float = _F64.unpack(b)[0]
    if value != value or value < 0:
        raise CorruptEntry("bad timestamp")
    return value
