"""Keys: same call, same key; different call, different key; everywhere."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import os
import pathlib
import subprocess
import sys
import threading
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_memo import UncacheableArgument, llm_cached, register_key_encoder
from llm_memo._secrets import is_secret_name
from llm_memo.keys import (
    MAX_DEPTH,
    canonical,
    digest,
    key_material,
    material_bytes,
    raw_canonical,
    raw_json,
    raw_matches,
)


def key_of(value: Any) -> str:
    return digest(material_bytes(key_material("ns", None, canonical(value))))


class Color(enum.Enum):
    RED = "red"


# Subclasses whose conversions lie: the key must see their real value.
class LyingStr(str):
    def __str__(self) -> str:
        return "lie"


class LyingInt(int):
    def __int__(self) -> int:
        return 7

    def __index__(self) -> int:
        return 7


class LyingFloat(float):
    def __float__(self) -> float:
        return 0.25


# A reference model of key equality, written independently of the encoder:
# two values must share a key exactly when they are equal here.
def reference(value: Any) -> Any:
    if value is None:
        return ("none",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return ("nan",)
        real = float.__float__(value) if isinstance(value, float) else int.__int__(value)
        return ("num", real)  # 1 == 1.0 and 0.0 == -0.0 under ==
    if isinstance(value, str):
        return ("str", str.__str__(value))
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, list | tuple):
        return ("seq", tuple(reference(v) for v in value))
    if isinstance(value, frozenset | set):
        return ("set", frozenset(reference(v) for v in value))
    if isinstance(value, dict):
        return ("map", frozenset((reference(k), _reference_item(k, v)) for k, v in value.items()))
    raise AssertionError(type(value))


def _reference_item(name: Any, value: Any) -> Any:
    # A str or bytes under a credential's name is a credential: which one never counts.
    if isinstance(name, str) and is_secret_name(name) and isinstance(value, str | bytes):
        return ("credential",)
    return reference(value)


plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
scalars = (
    plain_scalars
    | st.text(max_size=3).map(LyingStr)
    | st.integers(min_value=-3, max_value=3).map(LyingInt)
    | st.sampled_from([0.5, 2.0, -1.5]).map(LyingFloat)
)
hashable = plain_scalars.filter(lambda v: not (isinstance(v, float) and math.isnan(v)))
# Names that are credentials and names that only look like one.
names = st.text(max_size=4) | st.sampled_from(
    ["api_key", "apiKey", "token", "key", "max_tokens", "stop_token"]
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(names, inner, max_size=4)
        | st.dictionaries(hashable, inner, max_size=3)
        | st.frozensets(hashable, max_size=3)
    ),
    max_leaves=12,
)


@given(values, values)
@settings(max_examples=400, deadline=None)
def test_keys_are_equal_exactly_when_values_are_equal(a: Any, b: Any) -> None:
    assert (key_of(a) == key_of(b)) == (reference(a) == reference(b))


@given(st.dictionaries(names, values, min_size=2, max_size=6), st.randoms())
@settings(max_examples=100, deadline=None)
def test_dict_order_never_matters(d: dict[str, Any], rnd: Any) -> None:
    items = list(d.items())
    rnd.shuffle(items)
    assert key_of(dict(items)) == key_of(d)


@given(
    st.sampled_from([Color.RED, uuid.UUID(int=5)]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.integers(),
    st.integers(),
)
@settings(max_examples=50, deadline=None)
def test_keys_that_encode_alike_are_refused_never_collapsed(
    special: Any, rest: dict[str, int], a: int, b: int
) -> None:
    plain = special.value if isinstance(special, enum.Enum) else str(special)
    mixed: dict[Any, int] = {**rest, special: a, plain: b}
    with pytest.raises(UncacheableArgument, match="encode alike"):
        canonical(mixed)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (float("nan"), None),
        (float("nan"), "NaN"),
        (1, "1"),
        (True, 1),
        (False, 0),
        (b"x", "x"),
        ([1], {"\x00int": "1"}),  # a user dict can never spell a tag
        ({"\x00bytes": "eA=="}, b"x"),
        ({1: "a"}, {"1": "a"}),
        (float("inf"), float("-inf")),
        (2**64, float(2**64) + 4096.0),
        (decimal.Decimal("0.1"), 0.1),
        ([], {}),
        ("", None),
    ],
)
def test_distinct_values_never_share_a_key(a: Any, b: Any) -> None:
    assert key_of(a) != key_of(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, 1.0),
        (0.0, -0.0),
        ((1, 2), [1, 2]),
        ({3, 1, 2}, {2, 3, 1}),
        (float("nan"), float("nan")),
        (decimal.Decimal("1.5"), 1.5),
        (decimal.Decimal("2"), 2),
    ],
)
def test_equal_values_share_a_key(a: Any, b: Any) -> None:
    assert key_of(a) == key_of(b)


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_rich_types_are_supported_and_distinct() -> None:
    rich = [
        dt.datetime(2024, 1, 2, 3, 4, 5),
        dt.date(2024, 1, 2),
        dt.time(3, 4),
        dt.timedelta(seconds=5),
        uuid.UUID(int=7),
        decimal.Decimal("0.1"),
        pathlib.PurePosixPath("/a/b"),
        Point(1, 2),
    ]
    keys = {key_of(v) for v in rich}
    assert len(keys) == len(rich)
    assert key_of(Color.RED) == key_of("red")  # an enum is what the SDK sends: its value
    assert key_of(Point(1, 2)) == key_of(Point(1, 2)) != key_of(Point(2, 1))


def test_pydantic_models_key_by_class_and_every_field() -> None:
    pytest.importorskip("pydantic")
    import pydantic

    class Message(pydantic.BaseModel):
        role: str
        content: str
        name: str | None = None

    class Note(pydantic.BaseModel):
        role: str
        content: str
        name: str | None = None

    as_model = Message(role="user", content="hi")
    assert key_of(Message(role="user", content="hi", name=None)) == key_of(as_model)  # set or not
    assert key_of(Message(role="user", content="hi", name="x")) != key_of(as_model)
    assert key_of(Note(role="user", content="hi")) != key_of(as_model)  # the class counts
    assert key_of(as_model) != key_of({"role": "user", "content": "hi", "name": None})


# Golden keys: if a refactor changes any of these, every user's cache silently
# misses. Change them only together with KEY_FORMAT_VERSION.
def _golden_cases() -> dict[str, Any]:
    return {
        "chat": {
            "messages": [{"role": "user", "content": "hi"}],
            "model": "gpt-4o-mini",
            "temperature": 0.0,
        },
        "mixed": [None, True, 1, 1.5, "s", b"b", (1, 2), {3, 1}, {1: "x"}, float("nan"), 2**80],
        "nested": {"a": {"b": [{"c": dt.date(2024, 1, 1)}]}},
    }


GOLDEN_KEYS = {
    "chat": "7118d6095777779b33211f275e38b0f9664978a36a094ff2909cd5dd7a1a7938",
    "mixed": "01c8772ef57d1c15050cfdb7ec80486faab603df19b78c1734812a9f37fee74a",
    "nested": "056511920d602fc4b6db543d38321d302893c61bf7596ae677b9c1f3ac38d29c",
}


@pytest.mark.parametrize("name", sorted(GOLDEN_KEYS))
def test_golden_keys(name: str) -> None:
    assert key_of(_golden_cases()[name]) == GOLDEN_KEYS[name]


_SUBPROCESS = """
import json, sys
sys.path.insert(0, {root!r})
from tests.test_keys import _golden_cases, key_of
print(json.dumps({{k: key_of(v) for k, v in _golden_cases().items()}}))
"""


def test_keys_match_across_processes_and_hash_seeds() -> None:
    root = str(pathlib.Path(__file__).resolve().parents[1])
    expected = {k: key_of(v) for k, v in _golden_cases().items()}
    for seed in ("0", "1", "12345", "random"):
        out = subprocess.run(
            [sys.executable, "-c", _SUBPROCESS.format(root=root)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out) == expected


def test_positional_keyword_and_default_spellings_share_a_key() -> None:
    @llm_cached
    def ask(prompt: str, *, model: str = "gpt-4o-mini", temperature: float = 0.0) -> str:
        return prompt

    key = ask.cache_key("x")
    assert ask.cache_key(prompt="x") == key
    assert ask.cache_key("x", model="gpt-4o-mini") == key
    assert ask.cache_key("x", temperature=0) == key  # 0 == 0.0
    assert ask.cache_key("x", temperature=0.5) != key
    assert len(key) == 64 and int(key, 16) >= 0


def test_var_args_and_kwargs_are_in_the_key() -> None:
    @llm_cached
    def f(*args: Any, **kwargs: Any) -> None:
        return None

    assert f.cache_key(1, 2) != f.cache_key(2, 1)
    assert f.cache_key(a=1, b=2) == f.cache_key(b=2, a=1)
    assert f.cache_key(a=1) != f.cache_key(a=2)


def test_namespace_and_version_are_in_the_key() -> None:
    def f(x: int) -> int:
        return x

    a = llm_cached(namespace="one")(f)
    b = llm_cached(namespace="two")(f)
    c = llm_cached(namespace="one", version=2)(f)
    assert len({a.cache_key(1), b.cache_key(1), c.cache_key(1)}) == 3


class Opaque:
    pass


def test_uncacheable_argument_names_the_path_and_the_fix() -> None:
    @llm_cached
    def chat(messages: list[dict[str, Any]]) -> str:
        return "x"

    messages: list[dict[str, Any]] = [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
    messages.append({"role": "user", "content": Opaque()})
    with pytest.raises(UncacheableArgument) as info:
        chat(messages)
    text = str(info.value)
    assert text.startswith('messages[2]["content"]: cannot build a key from <Opaque>')
    assert "ignore=" in text and "key=" in text
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    "bad",
    [lambda: 1, threading.Lock(), sys.stdout, object()],
    ids=["lambda", "lock", "file", "object"],
)
def test_unencodable_values_raise_uncacheable(bad: Any) -> None:
    with pytest.raises(UncacheableArgument):
        canonical({"x": [bad]})


def test_recursive_structure_raises_a_clear_error_not_recursion_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UncacheableArgument, match="recursive"):
        canonical(loop)
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH + 5):
        deep = {"k": deep}
    with pytest.raises(UncacheableArgument, match="nested deeper"):
        canonical(deep)


def test_registered_encoder_and_llm_memo_key() -> None:
    class Client:
        def __init__(self, url: str) -> None:
            self.url = url

    class Conf:
        def __init__(self, v: int) -> None:
            self.v = v

        def __llm_memo_key__(self) -> Any:
            return {"v": self.v}

    register_key_encoder(Client, lambda c: c.url)
    assert key_of(Client("a")) == key_of(Client("a")) != key_of(Client("b"))
    assert key_of(Client("a")) != key_of("a")  # the type name is part of the key
    assert key_of(Conf(1)) != key_of(Conf(2))


def test_one_shot_iterators_are_materialised_and_passed_on() -> None:
    seen: list[list[int]] = []

    @llm_cached
    def total(items: Any) -> int:
        items = list(items)
        seen.append(items)
        return sum(items)

    assert total(iter([1, 2, 3])) == 6
    assert seen == [[1, 2, 3]]  # the function saw every item
    assert total(x for x in [1, 2, 3]) == 6  # same items, same key: a hit
    assert seen == [[1, 2, 3]]
    assert total([1, 2, 3]) == 6 and len(seen) == 1


def test_self_without_identity_is_refused_with_a_fix() -> None:
    class Bot:
        @llm_cached
        def ask(self, q: str) -> str:
            return q

    with pytest.raises(UncacheableArgument, match=r"__llm_memo_key__\(\).*ignore=\['self'\]"):
        Bot().ask("x")


def test_self_with_identity_separates_instances() -> None:
    @dataclasses.dataclass
    class Bot:
        persona: str
        calls: list[str] = dataclasses.field(default_factory=list, compare=False)

        @llm_cached
        def ask(self, q: str) -> str:
            self.calls.append(q)
            return f"{self.persona}:{q}"

    a, b = Bot("pirate"), Bot("poet")
    assert a.ask("hi") == "pirate:hi"
    assert b.ask("hi") == "poet:hi"  # another persona: never served a's answer
    twin = Bot("pirate")
    assert twin.ask("hi") == "pirate:hi"
    assert twin.calls == []  # equal state, so served from the cache


# ---------------------------------------------------------------- the raw-JSON shortcut

# What orjson writes alike: None, NaN and the infinities are all `null`; a tuple and a
# list are both an array; an enum or a UUID and its str. Twins differ only there, so
# their raw JSON is always equal, yet under a credential's name the str is hidden.
_NULLISH = [None, math.nan, math.inf, -math.inf]
_ALIKE = [[Color.RED, "red"], [uuid.UUID(int=5), str(uuid.UUID(int=5))]]
json_leaves = (
    st.sampled_from(_NULLISH)
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 1.0, 1e16, 2.0**63])
    | st.text(max_size=4)
    | st.sampled_from([Color.RED, uuid.UUID(int=5), "red", str(uuid.UUID(int=5))])
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(names | st.sampled_from(["\x00k", "max_tokens", "content"]), inner, max_size=4)
    ),
    max_leaves=12,
)


def _twin(value: Any, rnd: Any) -> Any:
    """``value`` with every None, NaN and infinity swapped at random, and arrays re-typed."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return rnd.choice(_NULLISH)
    for alike in _ALIKE:
        if any(value == v and type(value) is type(v) for v in alike):
            return rnd.choice(alike)
    if isinstance(value, list | tuple):
        items = [_twin(item, rnd) for item in value]
        return tuple(items) if rnd.random() < 0.5 else items
    if isinstance(value, dict):
        return {k: _twin(item, rnd) for k, item in value.items()}
    return value


def _full_key(memo: Any, value: Any) -> str:
    return str(memo.key_for(None, (value,), {}))


@given(json_values, st.randoms())
@settings(max_examples=400, deadline=None)
def test_raw_shortcut_never_gives_two_different_values_one_key(value: Any, rnd: Any) -> None:
    @llm_cached(namespace="shortcut")
    def f(x: Any) -> None:
        return None

    # Imported here: other processes import this module by its package path, without tests/ on sys.path.
    from _internals import memo_of

    memo = memo_of(f)
    twins = [value, _twin(value, rnd), _twin(value, rnd)]
    for twin in twins:
        # Each through the shortcut (remembered from an earlier twin, or not), and by the full walk.
        call = memo.prepare(None, (twin,), {})
        assert call is not None
        assert call.key == _full_key(memo, twin)
        expected = key_material("shortcut", None, {"x": canonical(twin)}, memo.identity.material())
        assert memo.material(call) == material_bytes(expected)


@given(json_values)
@settings(max_examples=400, deadline=None)
def test_quick_canonical_form_serialises_as_the_full_walk(value: Any) -> None:
    if raw_json(value) is None:
        return
    quick = raw_canonical(value)
    if quick is None:
        return  # left to the full walk
    full = orjson.dumps(canonical(value), option=orjson.OPT_SORT_KEYS)
    assert orjson.dumps(quick.canonical, option=orjson.OPT_SORT_KEYS) == full
    if quick.same:
        assert raw_json(value) == full
    assert raw_matches(value, quick.nones, quick.texts)
