"""Canonical cache keys: pure functions, no I/O, no global state but the encoder registry.

A key is the SHA-256 of the *key material*, a canonical JSON document::

    {"a": <arguments>, "f": KEY_FORMAT_VERSION, "id": <identity>, "ns": <namespace>, "v": <version>}

(``id``, what tells the function apart beyond its name, its code digest and
closure values, is left out when there is none: see ``llm_memo._identity``),
serialised by orjson with sorted keys and no whitespace. The same call therefore
gives the same key in every process, hash seed and machine: nothing here uses
``hash()``, ``repr()``, ``str()`` of arbitrary objects, or dict/set iteration order.

Canonical encoding of a value (``canonical``):

* ``str``, ``bool``, ``None``, ints in the signed 64-bit range: as JSON.
* floats: integral floats become ints, so ``1 == 1.0`` and ``0.0 == -0.0`` share a key;
  NaN and the infinities are tagged values of their own. ``True`` stays ``true``, never ``1``.
* lists and tuples: the same JSON array. Sets and frozensets: a tagged, sorted array.
* dicts with string keys: a JSON object (key order never matters). Other dicts: a
  tagged list of ``[key, value]`` pairs, sorted.
* ``bytes`` (tagged base64, so never equal to a ``str``), datetimes, dates, times,
  timedeltas, Decimals, paths: tagged.
* Enums: their value; UUIDs: their string (what an SDK sends on the wire). A dict
  holding two keys that encode alike (``Color.RED`` and ``"red"``) is refused.
* Subclasses of str, int, float, bytes, containers and datetimes: their real value,
  whatever their ``__str__``/``__int__``/``__float__``/``__iter__`` say.
* Pydantic models: tagged with their qualified class name and every field's value
  (set or defaulted), plus extra fields; private attributes are not part of it.
  Pydantic's own field types (URLs, ...) encode as pydantic serialises them.
* Dataclasses, objects with ``__llm_memo_key__()``, and types registered with
  :func:`register_key_encoder`: tagged with their qualified type name.
* Credentials: a str or bytes under a name that says it is one (``api_key``,
  ``token``, ``password``: see :mod:`llm_memo._secrets`), and pydantic ``SecretStr``
  and ``SecretBytes`` anywhere, are replaced by a tag: empty, or the credential's
  HMAC when a pepper is given (``isolate_credentials``). They never reach the material.
* Anything else (an open file, a lock, a one-shot iterator inside a container)
  raises :class:`~llm_memo.errors.UncacheableArgument` naming the argument path,
  e.g. ``messages[2]["content"]``.

Tags are single-key objects whose key starts with a NUL character. A user dict key
that starts with NUL is escaped by doubling it, so no plain value can ever spell a tag.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import datetime as _dt
import decimal
import enum
import hashlib
import io
import ipaddress
import itertools
import math
import pathlib
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson

from ._secrets import fingerprint as _hmac
from ._secrets import is_secret_name
from .errors import UncacheableArgument

__all__ = [
    "KEY_FORMAT_VERSION",
    "MAX_DEPTH",
    "Path",
    "RawCanonical",
    "canonical",
    "canonical_arguments",
    "digest",
    "fingerprint",
    "key_material",
    "material_bytes",
    "raw_canonical",
    "raw_json",
    "raw_matches",
    "register_key_encoder",
    "short_key",
]

#: Bumped whenever the canonical encoding changes, so old entries simply miss.
KEY_FORMAT_VERSION = 2

#: Deeper values are refused: a recursive structure must raise a clear error,
#: never a bare RecursionError, and real prompts are never this deep.
MAX_DEPTH = 200

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_SORT = orjson.OPT_SORT_KEYS

_encoders: dict[type, Callable[[Any], Any]] = {}
_schema_cache: weakref.WeakKeyDictionary[type, Any] = weakref.WeakKeyDictionary()

#: The HMAC key credentials are fingerprinted with, while :func:`canonical_arguments`
#: runs with one (a context variable, so no encoder function needs another parameter).
_PEPPER: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("llm_memo_pepper", default=None)

# is_secret_name() of dict keys already seen: a dict lookup is all the hot loop pays.
_secret_keys: dict[str, bool] = {}
_MAX_SECRET_KEYS = 4096


def _is_secret_key(name: str) -> bool:
    known = _secret_keys.get(name)
    if known is None:
        if len(_secret_keys) >= _MAX_SECRET_KEYS:
            _secret_keys.clear()
        known = _secret_keys[name] = is_secret_name(name)
    return known


def _hidden(secret: str | bytes) -> Any:
    """What stands for a credential in key material: nothing of it, or its HMAC."""
    pepper = _PEPPER.get()
    return _tag("secret", None if pepper is None else _hmac((secret,), pepper))


def _credential(value: Any) -> str | bytes | None:
    """The credential a value under a secret-like name holds, if it is one (text or bytes)."""
    if isinstance(value, str) and not isinstance(value, enum.Enum):
        return str.__str__(value)
    if isinstance(value, bytes | bytearray):
        return bytes(memoryview(value))
    return None


def register_key_encoder(cls: type, encoder: Callable[[Any], Any]) -> None:
    """Teach the key builder a type: ``encoder(obj)`` returns encodable key material.

    The type's qualified name is part of the key, so two types that encode to the
    same material still get different keys.
    """
    _encoders[cls] = encoder


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _tag(name: str, value: Any) -> dict[str, Any]:
    return {"\x00" + name: value}


def _sort_key(value: Any) -> bytes:
    return _dumps(value)


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_SORT)
    except orjson.JSONEncodeError as exc:  # e.g. a str holding a lone surrogate
        raise UncacheableArgument("", value, f"not valid Unicode text ({exc})") from None


def _float(value: float) -> Any:
    if value != value:  # NaN: equal to nothing, not even None or "NaN"
        return _tag("float", "nan")
    if value in (math.inf, -math.inf):
        return _tag("float", "inf" if value > 0 else "-inf")
    if value.is_integer():  # 1.0 -> 1 and -0.0 -> 0: equal numbers, equal keys
        return _int(int(value))
    return value


#: Numbers from here on are refused: str() of such an int is refused by CPython
#: (sys.get_int_max_str_digits) and int(Decimal("1E+999999")) takes seconds.
_HUGE = 10**4000


def _int(value: int) -> Any:
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    if not -_HUGE < value < _HUGE:
        raise UncacheableArgument("", value, "a number of more than 4000 digits")
    return _tag("int", str(value))  # orjson refuses ints beyond 64 bits


def canonical(value: Any, _depth: int = 0) -> Any:
    """Return the canonical, JSON-serialisable form of ``value`` (see the module docstring)."""
    t = type(value)
    # Fast path: the types a chat request is made of, tested by identity.
    if t is str or t is bool or value is None:
        return value
    if t is dict:
        return _dict(value, _depth)
    if t is list or t is tuple:
        return _list(value, _depth)
    if t is int:
        return _int(value)
    if t is float:
        return _float(value)
    return _other(value, _depth)


def _list(value: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
    if depth >= MAX_DEPTH:
        raise UncacheableArgument("", value, f"recursive, or nested deeper than {MAX_DEPTH} levels")
    depth += 1
    out: list[Any] = []
    append = out.append
    for index, item in enumerate(value):
        t = type(item)
        if t is str or t is bool or item is None:  # most leaves: no call, no checks
            append(item)
            continue
        try:  # free unless it raises (3.11+), and it lets the error name the index
            append(_dict(item, depth) if t is dict else canonical(item, depth))
        except UncacheableArgument as exc:
            raise exc.with_prefix(f"[{index}]") from None
    return out


def _dict(value: dict[Any, Any], depth: int) -> Any:
    if depth >= MAX_DEPTH:
        raise UncacheableArgument("", value, f"recursive, or nested deeper than {MAX_DEPTH} levels")
    depth += 1
    out: dict[str, Any] = {}
    for k, item in dict.items(value):  # not value.items(): a subclass may override it
        if type(k) is not str:
            return _mapping(value, depth)
        t = type(item)
        if t is str:  # most leaves: a dict lookup, no call
            encoded = item if not _is_secret_key(k) else _hidden(item)
        elif t is bool or item is None:
            encoded = item
        else:
            try:
                encoded = _item(k, item, t, depth)
            except UncacheableArgument as exc:
                raise exc.with_prefix("[" + orjson.dumps(k).decode() + "]") from None
        out["\x00" + k if k[:1] == "\x00" else k] = encoded
    return out


def _item(name: str, item: Any, t: type, depth: int) -> Any:
    """A dict value or argument that is not a plain str, bool or None."""
    if _is_secret_key(name):
        secret = _credential(item)
        if secret is not None:
            return _hidden(secret)
    return _dict(item, depth) if t is dict else canonical(item, depth)


def canonical_arguments(arguments: Mapping[str, Any], pepper: bytes | None = None) -> dict[str, Any]:
    """The canonical form of a call's bound arguments, ``{name: value}``.

    Equal to ``canonical(dict(arguments))``, but an error's path starts with the
    argument's name (``messages[2]``, not ``["messages"][2]``). With ``pepper``,
    credentials are replaced by their HMAC under it instead of an empty tag.
    """
    token = _PEPPER.set(pepper) if pepper is not None else None
    try:
        out: dict[str, Any] = {}
        for name, value in arguments.items():
            t = type(value)
            if t is str or t is bool or value is None:
                out[name] = value if t is not str or not _is_secret_key(name) else _hidden(value)
                continue
            try:
                out[name] = _item(name, value, t, 0)
            except UncacheableArgument as exc:
                raise exc.with_prefix(name) from None
        return out
    finally:
        if token is not None:
            _PEPPER.reset(token)


def _mapping(value: dict[Any, Any], depth: int) -> Any:
    pairs = []
    for k, item in dict.items(value):
        try:
            ck = canonical(k, depth)
        except UncacheableArgument as exc:
            raise exc.with_prefix("<key>") from None
        try:
            if isinstance(k, str) and _is_secret_key(k) and (secret := _credential(item)) is not None:
                encoded = _hidden(secret)
            else:
                encoded = canonical(item, depth)
        except UncacheableArgument as exc:
            raise exc.with_prefix(f"[{k!r}]") from None
        pairs.append((_sort_key(ck), k, [ck, encoded]))
    pairs.sort(key=lambda pair: pair[0])
    for before, after in itertools.pairwise(pairs):
        if before[0] == after[0]:
            # Collapsing them would key two different dicts alike; tagging every enum
            # key would part an enum from the value an SDK sends for it.
            raise UncacheableArgument(
                "",
                value,
                f"its keys {before[1]!r} and {after[1]!r} encode alike (an Enum or UUID and its value)",
            )
    return _tag("map", [pair[2] for pair in pairs])


def _other(value: Any, depth: int) -> Any:
    t = type(value)
    if isinstance(value, enum.Enum):  # before int/str: IntEnum and StrEnum are both
        return canonical(value.value, depth)
    if t in _encoders or any(c in _encoders for c in t.__mro__):
        encoder = _encoders.get(t) or next(_encoders[c] for c in t.__mro__ if c in _encoders)
        return _tag("object", [_qualname(t), _wrap(encoder(value), depth, "<registered encoder>")])
    key_method = getattr(value, "__llm_memo_key__", None)
    if key_method is not None and not isinstance(value, type):
        return _tag("object", [_qualname(t), _wrap(key_method(), depth, ".__llm_memo_key__()")])
    # Subclasses of the builtins: the real value, through the base class's own slots,
    # never the subclass's __int__/__str__/__iter__ (which may say anything).
    if isinstance(value, bool):  # only a subclass can reach here
        return bool(value)
    if isinstance(value, int):
        return _int(int.__int__(value))
    if isinstance(value, float):
        return _float(float.__float__(value))
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _tag("bytes", base64.b64encode(memoryview(value).tobytes()).decode("ascii"))
    if isinstance(value, set | frozenset):
        members = set.__iter__(value) if isinstance(value, set) else frozenset.__iter__(value)
        items = [_wrap(item, depth, "{...}") for item in members]
        items.sort(key=_sort_key)
        return _tag("set", items)
    if isinstance(value, list):
        return _list(list(list.__iter__(value)), depth)
    if isinstance(value, tuple):
        return _list(list(tuple.__iter__(value)), depth)
    if isinstance(value, dict):
        return _dict(value, depth)  # reads it with dict.items()
    if isinstance(value, _dt.datetime):
        return _tag("datetime", _dt.datetime.isoformat(value))
    if isinstance(value, _dt.date):
        return _tag("date", _dt.date.isoformat(value))
    if isinstance(value, _dt.time):
        return _tag("time", _dt.time.isoformat(value))
    if isinstance(value, _dt.timedelta):
        return _tag("timedelta", [value.days, value.seconds, value.microseconds])
    if isinstance(value, uuid.UUID):
        return str(value)  # what reaches the wire; also keeps raw_json() injective
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, pathlib.PurePath):
        return _tag("path", value.as_posix())
    if isinstance(value, type):
        return _class(value)
    if hasattr(value, "__pydantic_fields__") and hasattr(value, "model_dump"):
        return _model(value, depth)
    if dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _tag("dataclass", [_qualname(t), _wrap(fields, depth, "")])
    if isinstance(value, _IP_TYPES):  # pydantic's IP fields hold these
        return _tag("object", [_qualname(t), str(value)])
    if t.__module__.partition(".")[0] in ("pydantic", "pydantic_core"):
        return _pydantic_type(value, depth)
    if isinstance(value, io.IOBase):
        raise UncacheableArgument("", value, "an open file or stream: pass its contents, or its path")
    if isinstance(value, Iterator):
        raise UncacheableArgument(
            "", value, "a one-shot iterator inside a container would be consumed; pass a list"
        )
    raise UncacheableArgument("", value)


_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)


def _model(value: Any, depth: int) -> Any:
    """A pydantic model: its class and every field's value, as a dataclass is keyed.

    Not ``model_dump()``: ``exclude_unset`` misses a default list appended to, a dump
    drops the class (``Translate(text=...)`` is not ``Summarize(text=...)``) and a
    subclass's extra fields, and ``mode="json"`` fails on non-UTF-8 bytes. Fields
    are read from ``__dict__``: one left out of ``model_construct()`` is absent, not None.
    """
    t = type(value)
    state = value.__dict__
    fields = {name: state[name] for name in t.__pydantic_fields__ if name in state}
    encoded = [_qualname(t), _wrap(fields, depth, "")]
    extra = getattr(value, "__pydantic_extra__", None)
    if extra:
        encoded.append(_wrap(extra, depth, ""))
    return _tag("model", encoded)


def _pydantic_type(value: Any, depth: int) -> Any:
    """A pydantic field type (a URL, a ``SecretStr``...): as pydantic serialises it, tagged."""
    reveal = getattr(value, "get_secret_value", None)
    if reveal is not None:
        secret = _credential(reveal())
        if secret is not None:
            return _hidden(secret)
    import pydantic_core

    try:
        jsonable = pydantic_core.to_jsonable_python(value)
    except Exception as exc:  # a custom serializer may raise anything
        raise UncacheableArgument("", value, f"pydantic cannot serialise it: {exc}") from None
    return _tag("object", [_qualname(type(value)), _wrap(jsonable, depth, "")])


def _wrap(value: Any, depth: int, segment: str) -> Any:
    try:
        return canonical(value, depth + 1)
    except UncacheableArgument as exc:
        raise exc.with_prefix(segment) if segment else exc from None


def _decimal(value: decimal.Decimal) -> Any:
    if type(value) is not decimal.Decimal:
        value = decimal.Decimal(value)  # copies the digits, never asks the subclass
    if value.is_nan():
        return _tag("decimal", "NaN")
    if value.is_infinite():
        return _float(float(value))
    if value.adjusted() >= 4000:  # |value| >= 10**4000, as _int refuses
        raise UncacheableArgument("", value, "a number of more than 4000 digits")
    if value == value.to_integral_value():
        return _int(int(value))
    as_float = float(value)
    if decimal.Decimal(as_float) == value:  # Decimal("1.5") == 1.5, so one key
        return as_float
    return _tag("decimal", str(value.normalize()))


def _class(cls: type) -> Any:
    """A class passed as an argument (a ``response_format=Model``, a ``cls``).

    A pydantic model class contributes its JSON schema too, so editing the model
    changes the key, as it changes the request an SDK sends.
    """
    schema_fn = getattr(cls, "model_json_schema", None)
    if schema_fn is None:
        return _tag("type", _qualname(cls))
    try:
        schema = _schema_cache[cls]
    except KeyError:
        schema = _schema_cache[cls] = canonical(schema_fn())
    return _tag("type", [_qualname(cls), schema])


_RAW_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _refuse(value: Any) -> Any:
    raise TypeError


def raw_json(value: Any) -> bytes | None:
    """A fast JSON encoding of plain values, or None when it cannot be one.

    Only JSON's own types get through (str, ints up to 64 bits, floats, bools,
    lists, tuples, dicts with str keys, and enums and UUIDs, which
    :func:`canonical` encodes as their values too); everything else makes orjson
    call ``_refuse``. Equal bytes do not always mean canonically equal values:
    orjson writes NaN and the infinities as ``null``, like ``None``, and an enum or
    a UUID as a str, which a credential's name hides and theirs does not. So bytes
    are remembered only with what :func:`raw_canonical` found, and another value
    with the same bytes matches them only if :func:`raw_matches` says so (None, not
    NaN, where the Nones were; a str where the credentials were). A cache from them
    to keys is then exact: it saves re-walking the same prompt on every call.
    """
    try:
        return orjson.dumps(value, default=_refuse, option=_RAW_OPTIONS)
    except TypeError:
        return None


#: A place in a value: dict keys (str) and list indexes (int), outermost first.
Path = tuple[str | int, ...]


class RawCanonical(NamedTuple):
    """:func:`raw_canonical`'s answer for a value :func:`raw_json` accepted."""

    #: The canonical form, or something orjson serialises to the same bytes: the
    #: value's own containers wherever nothing in them changes (tuples stay tuples).
    canonical: Any
    #: Whether nothing changed at all: the raw bytes are then the canonical bytes.
    same: bool
    #: Where the value holds None (there is no NaN or infinity anywhere in it).
    nones: tuple[Path, ...]
    #: Where it holds a str under a credential's name (hidden in the key).
    texts: tuple[Path, ...]


class _NotPlain(Exception):
    """A value the quick walk leaves to :func:`canonical` (never escapes this module)."""


class _Found:
    __slots__ = ("nones", "texts")

    def __init__(self) -> None:
        self.nones: list[Path] = []
        self.texts: list[Path] = []


def raw_canonical(value: Any, arguments: bool = False, pepper: bytes | None = None) -> RawCanonical | None:
    """The canonical form of a value :func:`raw_json` accepted, the quick way; or None.

    Only for such values (its precondition: exact builtins, str keys, no cycles).
    It copies only the containers where something changes (an integral float such
    as ``temperature=0.0`` becomes an int, a credential its tag) and records where
    the Nones and the credentials are. None means the full walk must decide: a
    NUL-prefixed key, an enum, a UUID, an int beyond 64 bits, a NaN or infinity,
    or a value deeper than :data:`MAX_DEPTH`. With ``arguments``, ``value`` is a
    dict of bound arguments, read as :func:`canonical_arguments` reads it.
    """
    found = _Found()
    token = _PEPPER.set(pepper) if pepper is not None else None
    try:
        # Bound arguments sit at depth 0, as canonical_arguments() reads them.
        out = _plain_dict(value, -1, None, found) if arguments else _plain_item(value, 0, None, found)
    except _NotPlain:
        return None
    finally:
        if token is not None:
            _PEPPER.reset(token)
    return RawCanonical(out, out is value, tuple(found.nones), tuple(found.texts))


def _plain_item(item: Any, depth: int, path: Any, found: _Found) -> Any:
    t = type(item)
    if t is str or t is bool:
        return item
    if item is None:
        found.nones.append(_flatten(path))
        return item
    if t is dict:
        return _plain_dict(item, depth, path, found)
    if t is list or t is tuple:
        return _plain_list(item, depth, path, found)
    if t is int:
        if _INT64_MIN <= item <= _INT64_MAX:
            return item
        raise _NotPlain
    if t is float:
        return _plain_float(item)
    raise _NotPlain  # an enum or a UUID: canonical() knows them


def _plain_float(item: float) -> Any:
    if item - item != 0.0:  # NaN or an infinity: written as null, like None
        raise _NotPlain
    return _float(item) if item.is_integer() else item


def _flatten(path: Any) -> Path:
    # Paths are built as linked pairs (parent, step): cheaper than a tuple per level.
    steps: list[str | int] = []
    while path is not None:
        path, step = path
        steps.append(step)
    steps.reverse()
    return tuple(steps)


# Dict keys canonical() copies as they are (not a credential's name, not NUL-prefixed):
# a dict whose keys are all here is checked by one C-level set comparison.
_plain_names: set[str] = set()


def _unusual_keys(value: dict[str, Any], path: Any, found: _Found) -> dict[str, Any] | None:
    """Check a dict's keys one by one; the copy with its credentials hidden, if any."""
    out = None
    for k, item in value.items():
        if k[:1] == "\x00":
            raise _NotPlain  # escaped by canonical()
        if not _is_secret_key(k):
            if len(_plain_names) >= _MAX_SECRET_KEYS:
                _plain_names.clear()
            _plain_names.add(k)
        elif type(item) is str:  # a credential: its tag; an enum or UUID never matches it
            found.texts.append(_flatten((path, k)))
            if out is None:
                out = dict(value)
            out[k] = _hidden(item)
    return out


def _plain_dict(value: dict[str, Any], depth: int, path: Any, found: _Found) -> Any:
    if depth >= MAX_DEPTH:
        raise _NotPlain  # canonical() raises the error that names the path
    depth += 1
    # An exact dict with str keys (raw_json refuses the rest).
    out = None if value.keys() <= _plain_names else _unusual_keys(value, path, found)
    for k, item in value.items():
        t = type(item)
        if t is str or t is bool:
            continue  # a credential's str was hidden in ``out`` already
        if item is None:
            found.nones.append(_flatten((path, k)))
            continue
        if t is dict:
            new = _plain_dict(item, depth, (path, k), found)
        elif t is list or t is tuple:
            new = _plain_list(item, depth, (path, k), found)
        elif t is float:
            new = _plain_float(item)
        else:
            new = _plain_item(item, depth, (path, k), found)
        if new is not item:
            if out is None:
                out = dict(value)
            out[k] = new
    return value if out is None else out


def _plain_list(value: list[Any] | tuple[Any, ...], depth: int, path: Any, found: _Found) -> Any:
    if depth >= MAX_DEPTH:
        raise _NotPlain
    depth += 1
    out: list[Any] | None = None
    for index, item in enumerate(value):
        t = type(item)
        if t is str or t is bool:
            continue
        if t is dict:
            new = _plain_dict(item, depth, (path, index), found)
        else:
            new = _plain_item(item, depth, (path, index), found)
        if new is not item:
            if out is None:
                out = list(value)
            out[index] = new
    return value if out is None else out


def raw_matches(value: Any, nones: tuple[Path, ...], texts: tuple[Path, ...]) -> bool:
    """Whether ``value`` holds exactly None at each of ``nones`` and a str at each of ``texts``.

    With equal :func:`raw_json` bytes, that makes it canonically equal to the value
    :func:`raw_canonical` found those paths in. Steps only through exact dicts (str
    steps) and exact lists or tuples (int steps), so no user code runs; anything
    else is simply not a match.
    """
    for paths, want in ((nones, type(None)), (texts, str)):
        for path in paths:
            node = value
            for step in path:
                t = type(node)
                if t is dict if type(step) is str else (t is list or t is tuple):
                    try:
                        node = node[step]
                    except (KeyError, IndexError):
                        return False
                else:
                    return False
            if type(node) is not want:
                return False
    return True


def key_material(
    namespace: str, version: Any, arguments: Any, identity: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build the key material document for already-canonical ``arguments`` and ``identity``."""
    material = {"a": arguments, "f": KEY_FORMAT_VERSION, "ns": namespace, "v": canonical(version)}
    if identity:
        material["id"] = identity
    return material


def material_bytes(material: dict[str, Any]) -> bytes:
    """The exact bytes that are hashed: sorted-key, compact JSON."""
    return _dumps(material)


def digest(data: bytes) -> str:
    """The 64-hex SHA-256 key of serialised key material."""
    return hashlib.sha256(data).hexdigest()


def short_key(key: str) -> str:
    """How a key is shown to people (messages, logs): its first 16 hex digits.

    64 bits: unique enough to tell a store's entries apart, and a prefix the CLI accepts.
    """
    return key[:16]


def fingerprint(data: bytes) -> bytes:
    """A second, independent hash of the key material, stored inside each entry.

    A read checks it, so even a SHA-256 collision (or a store that mixed up keys)
    can never serve another call's value.
    """
    # SHA-256 after a domain prefix: a collision of the key's hash does not carry over
    # (different chaining state), and OpenSSL's SHA-256 is ~2x faster than blake2b here.
    h = _FINGERPRINT.copy()
    h.update(data)
    return h.digest()[:16]


_FINGERPRINT = hashlib.sha256(b"llm-memo-fp\x00")
