"""Values: data-only storage that round-trips types and values, and refuses to run code."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import uuid
import zlib
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from llm_memo.errors import CorruptEntry, UnstorableResult
from llm_memo.serialize import (
    TypeRegistry,
    _checksum,
    decode_value,
    encode_value,
    pack_entry,
    register_type,
    unpack_entry,
)

EMPTY = TypeRegistry()
FP = b"f" * 16


def same(a: Any, b: Any) -> bool:
    """Equal *and* of the same types all the way down (NaN equals NaN here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


keys_ = st.text(max_size=5) | st.integers() | st.booleans() | st.none() | st.tuples(st.integers())
plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**90), max_value=2**90)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(keys_, inner, max_size=4)
        | st.dictionaries(st.sampled_from(["$int", "$model", "$", "a"]), inner, max_size=2)
    ),
    max_leaves=15,
)


@given(plain)
@settings(max_examples=300, deadline=None)
def test_plain_values_round_trip_with_their_types(value: Any) -> None:
    assert same(decode_value(encode_value(value, EMPTY), EMPTY), value)


@given(plain)
@settings(max_examples=200, deadline=None)
def test_entries_round_trip_and_detect_any_flipped_byte(value: Any) -> None:
    data = pack_entry(encode_value(value, EMPTY), FP, 10.0, 20.0, b'{"m":1}')
    entry = unpack_entry(data, FP)
    assert (entry.created, entry.expires, entry.material) == (10.0, 20.0, b'{"m":1}')
    assert same(decode_value(entry.value, EMPTY), value)
    for pos in (5, 25, len(data) // 2, len(data) - 1):
        torn = bytearray(data)
        torn[pos] ^= 0x01
        with pytest.raises(CorruptEntry):
            unpack_entry(bytes(torn), FP)


def test_fingerprint_mismatch_is_corrupt() -> None:
    data = pack_entry(encode_value("x", EMPTY), FP, 1.0, None)
    with pytest.raises(CorruptEntry, match="fingerprint"):
        unpack_entry(data, b"g" * 16)


def test_truncated_and_foreign_bytes_are_corrupt() -> None:
    data = pack_entry(encode_value("x" * 100, EMPTY), FP, 1.0, None)
    for bad in (data[:10], data[:-5], b"", b"\x80\x04pickle", b"LMM\x09" + data[4:]):
        with pytest.raises(CorruptEntry):
            unpack_entry(bad, FP)


def test_large_values_are_compressed_and_a_decompression_bomb_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = "a" * 1_000_000
    data = pack_entry(encode_value(big, EMPTY), FP, 1.0, None)
    assert len(data) < 50_000
    assert decode_value(unpack_entry(data, FP).value, EMPTY) == big
    monkeypatch.setattr("llm_memo.serialize.MAX_VALUE_BYTES", 10_000)
    with pytest.raises(CorruptEntry, match="size cap"):
        unpack_entry(data, FP)


def test_damaged_compressed_value_is_corrupt() -> None:
    body = zlib.compress(b"x" * 100_000)[:-20]
    # A well-formed envelope (valid checksum) around a damaged zlib stream.
    data = pack_entry(b"y" * 40_000, FP, 1.0, None)
    header_len = 57
    value_len = int.from_bytes(data[53:57], "little")
    rebuilt_body = data[29:53] + len(body).to_bytes(4, "little") + body + data[header_len + value_len :]
    forged = data[:21] + _checksum(rebuilt_body) + rebuilt_body
    with pytest.raises(CorruptEntry):
        unpack_entry(forged, FP)


class Answer(BaseModel):
    text: str
    score: float = 0.0


@dataclasses.dataclass
class Point:
    x: int
    y: tuple[int, int]


class Color(enum.Enum):
    RED = "red"


def test_rich_values_round_trip() -> None:
    reg = TypeRegistry([Answer, Point, Color])
    value = {
        "answer": Answer(text="hi"),
        "point": Point(1, (2, 3)),
        "color": Color.RED,
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 1),
        "at": dt.time(1, 2),
        "span": dt.timedelta(days=1, microseconds=3),
        "id": uuid.UUID(int=5),
        "price": decimal.Decimal("1.10"),
        "tags": {"a", "b"},
        "frozen": frozenset({1}),
        None: "none key",
    }
    out = decode_value(encode_value(value, reg), reg)
    assert out == value
    assert out["answer"].model_fields_set == {"text"}  # defaults stay unset, as in the original
    assert type(out["point"].y) is tuple


def test_model_type_must_be_allowed_to_store_and_to_read() -> None:
    with pytest.raises(UnstorableResult, match="annotate the function's return type"):
        encode_value(Answer(text="x"), EMPTY)
    data = encode_value(Answer(text="x"), TypeRegistry([Answer]))
    with pytest.raises(CorruptEntry, match="not allowed"):
        decode_value(data, EMPTY)


def test_registered_types_and_annotations_allow_rebuilding() -> None:
    class Late(BaseModel):
        v: int

    reg = TypeRegistry.from_annotation(list[Answer] | None)
    assert decode_value(encode_value([Answer(text="a")], reg), reg) == [Answer(text="a")]
    register_type(Late)
    assert decode_value(encode_value(Late(v=1), EMPTY), EMPTY) == Late(v=1)


@pytest.mark.parametrize(
    "planted",
    [
        {"$model": ["os:system", {"command": "touch /tmp/llm-memo-pwned"}, {}]},
        {"$model": ["builtins:eval", "1+1", {}]},
        {"$dataclass": ["subprocess:Popen", {"args": ["true"]}]},
        {"$enum": ["os:system", "x"]},
        {"$model": ["openai.types.chat:ChatCompletion.__init__.__globals__", {}, {}]},
        {"$nonsense": 1},
        {"$int": "9" * 100_000},
        {"$bytes": "!!!not base64"},
        {"$float": "1e999"},
        {"$tuple": 5},
    ],
)
def test_planted_type_tags_are_refused_without_running_anything(planted: Any) -> None:
    with pytest.raises(CorruptEntry):
        decode_value(orjson.dumps(planted), EMPTY)


def test_json_nested_deeply_is_refused_in_bounded_time() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(CorruptEntry):
        decode_value(deep, EMPTY)


def test_langchain_style_objects_in_llm_output_stay_plain_data() -> None:
    lc = {"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {"command": "echo"}}
    assert decode_value(encode_value(lc, EMPTY), EMPTY) == lc


def test_unstorable_values_name_the_type() -> None:
    with pytest.raises(UnstorableResult, match="object"):
        encode_value({"x": object()}, EMPTY)
    with pytest.raises(UnstorableResult):
        encode_value(lambda: 1, EMPTY)


def test_openai_response_objects_round_trip_equal_with_request_id() -> None:
    openai_types = pytest.importorskip("openai.types.chat")
    completion = openai_types.ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hi"},
                }
            ],
            "brand_new_field": {"kept": True},
        }
    )
    completion._request_id = "req_1"
    out = decode_value(encode_value(completion, EMPTY), EMPTY)
    assert type(out) is type(completion)
    assert out == completion
    assert out.to_dict() == completion.to_dict()
    assert out._request_id == "req_1"
    assert out.brand_new_field == {"kept": True}
