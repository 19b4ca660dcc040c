"""A hit equals what the function returned, in value and type; what cannot is not stored.

Each case goes through ``@llm_cached`` on the memory and the disk backend: the first
call stores, the second is a hit (the function's own call counter proves it), and the
hit is compared field by field with the original, types included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openai
import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, RootModel, computed_field, field_validator

import llm_memo
from llm_memo import MemoryBackend, llm_cached, register_type
from llm_memo._verify import first_difference
from llm_memo.backends.disk import DiskBackend
from llm_memo.errors import CorruptEntry
from llm_memo.serialize import TypeRegistry, decode_value, encode_verified


@pytest.fixture(params=["memory", "disk"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store = MemoryBackend() if request.param == "memory" else DiskBackend(tmp_path / "disk")
    yield store
    store.close()


def twice(backend: Any, make: Callable[[], Any], returns: Any = Any) -> tuple[Any, Any, int]:
    """Call a cached function twice; return the original, the hit and how often it ran."""
    runs: list[int] = []

    def produce() -> Any:
        runs.append(1)
        return make()

    produce.__annotations__["return"] = returns
    cached = llm_cached(backend=backend, namespace=f"values.{make.__name__}")(produce)
    first = cached()
    second = cached()
    return first, second, len(runs)


def assert_same(original: Any, hit: Any) -> None:
    assert type(hit) is type(original)
    assert first_difference(original, hit) is None
    assert hit is not original


# --------------------------------------------------------------------- pydantic


class Reply(BaseModel):
    text: str
    score: int = 0


def test_a_model_mutated_after_validation_comes_back_as_mutated(backend: Any) -> None:
    def make() -> Reply:
        reply = Reply(text="hi")
        reply.score = "high"  # type: ignore[assignment]  # no validate_assignment: pydantic keeps it
        return reply

    first, hit, runs = twice(backend, make, Reply)
    assert runs == 1 and hit.score == "high" and hit == first
    assert_same(first, hit)


class Checked(BaseModel):
    text: str
    seen: list[str] = []

    @field_validator("text")
    @classmethod
    def shout(cls, value: str) -> str:
        VALIDATED.append(value)
        return value.upper()


VALIDATED: list[str] = []


def test_a_hit_runs_no_validator(backend: Any) -> None:
    VALIDATED.clear()
    first, hit, runs = twice(backend, lambda: Checked(text="quiet"), Checked)
    assert runs == 1 and hit.text == "QUIET" and VALIDATED == ["quiet"]
    assert_same(first, hit)


class Traced(BaseModel):
    text: str
    _trace: str = PrivateAttr(default="")


def test_private_attributes_come_back(backend: Any) -> None:
    def make() -> Traced:
        t = Traced(text="a")
        t._trace = "span-42"
        return t

    first, hit, runs = twice(backend, make, Traced)
    assert runs == 1 and hit._trace == "span-42"
    assert_same(first, hit)


class Loose(BaseModel):
    value: Any


@pytest.mark.parametrize(
    "value",
    [
        (1, "two", 3.0),
        dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
        {1: "one", 2: "two"},
    ],
    ids=["tuple", "datetime", "int-keyed-dict"],
)
def test_any_fields_keep_their_type(backend: Any, value: Any) -> None:
    first, hit, runs = twice(backend, lambda: Loose(value=value), Loose)
    assert runs == 1 and type(hit.value) is type(value) and hit.value == value
    assert_same(first, hit)


class Aliased(BaseModel):
    full_name: str = Field(serialization_alias="fullName")


def test_serialization_alias(backend: Any) -> None:
    first, hit, runs = twice(backend, lambda: Aliased(full_name="Ada"), Aliased)
    assert runs == 1 and hit.full_name == "Ada"
    assert_same(first, hit)


FACTORY_CALLS: list[int] = []


def _new_id() -> str:
    FACTORY_CALLS.append(1)
    return f"id-{len(FACTORY_CALLS)}"


class Ticket(BaseModel):
    id: str = Field(default_factory=_new_id)
    text: str = ""


def test_default_factory_values_are_not_regenerated(backend: Any) -> None:
    FACTORY_CALLS.clear()
    first, hit, runs = twice(backend, lambda: Ticket(text="x"), Ticket)
    assert runs == 1 and hit.id == first.id == "id-1" and len(FACTORY_CALLS) == 1
    assert hit.model_fields_set == first.model_fields_set == {"text"}
    assert_same(first, hit)


class Measured(BaseModel):
    score: float


def test_nan_comes_back_as_nan(backend: Any) -> None:
    first, hit, runs = twice(backend, lambda: Measured(score=math.nan), Measured)
    assert runs == 1 and math.isnan(hit.score)
    assert_same(first, hit)


class WithHidden(BaseModel):
    text: str
    note: str = Field(default="", exclude=True)


def test_excluded_fields_come_back(backend: Any) -> None:
    first, hit, runs = twice(backend, lambda: WithHidden(text="a", note="internal"), WithHidden)
    assert runs == 1 and hit.note == "internal"
    assert_same(first, hit)


class Flexible(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


def test_extra_fields_come_back(backend: Any) -> None:
    # An undeclared field, which extra="allow" keeps.
    first, hit, runs = twice(backend, lambda: Flexible(text="a", mood=(1, 2)), Flexible)  # type: ignore[call-arg]
    assert runs == 1 and hit.mood == (1, 2)
    assert_same(first, hit)


class Animal(BaseModel):
    name: str


class Dog(Animal):
    good: bool = True


class Cat(Animal):
    lives: int = 9


class Owner(BaseModel):
    pet: Animal


register_type(Dog)


def test_a_registered_subclass_comes_back_as_itself(backend: Any) -> None:
    first, hit, runs = twice(backend, lambda: Dog(name="Rex"), Animal)
    assert runs == 1 and type(hit) is Dog and hit.good is True
    assert_same(first, hit)


def test_a_registered_subclass_in_a_field_comes_back_as_itself(backend: Any) -> None:
    first, hit, runs = twice(backend, lambda: Owner(pet=Dog(name="Rex")), Owner)
    assert runs == 1 and type(hit.pet) is Dog
    assert_same(first, hit)


def test_a_subclass_not_allowed_itself_is_not_stored(backend: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        _first, second, runs = twice(backend, lambda: Owner(pet=Cat(name="Tom")), Owner)
    assert runs == 2 and type(second.pet) is Cat  # never an Animal from the cache
    (warning,) = [r.getMessage() for r in caplog.records if "not caching" in r.getMessage()]
    assert "Cat" in warning and "subclass of Animal" in warning and "register_type" in warning


# --------------------------------------------------------------------- dataclasses

POST_INITS: list[int] = []


@dataclasses.dataclass
class Price:
    cost_cents: float

    def __post_init__(self) -> None:
        POST_INITS.append(1)
        self.cost_cents = self.cost_cents * 100  # given in dollars, kept in cents
        self.label = f"{self.cost_cents:.0f}c"  # not a field: kept too


def test_post_init_does_not_run_again(backend: Any) -> None:
    POST_INITS.clear()
    first, hit, runs = twice(backend, lambda: Price(0.03), Price)
    assert runs == 1 and hit.cost_cents == first.cost_cents == 3.0 and hit.label == "3c"
    assert len(POST_INITS) == 1
    assert_same(first, hit)


@dataclasses.dataclass
class Bill:
    total: float
    rate: dataclasses.InitVar[float]

    def __post_init__(self, rate: float) -> None:
        self.total *= rate


def test_a_required_initvar_is_stored_and_hits(backend: Any) -> None:
    first, hit, runs = twice(backend, lambda: Bill(10.0, 1.5), Bill)
    assert runs == 1 and hit.total == 15.0
    assert_same(first, hit)


@dataclasses.dataclass
class Lazy:
    text: str
    summary: str = dataclasses.field(init=False)


def test_an_unset_init_false_field_stays_unset(backend: Any) -> None:
    first, hit, runs = twice(backend, lambda: Lazy("a"), Lazy)
    assert runs == 1 and hit.text == "a" and not hasattr(hit, "summary")
    assert_same(first, hit)


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    a: int
    b: tuple[int, ...] = ()


def test_frozen_slotted_dataclasses(backend: Any) -> None:
    first, hit, runs = twice(backend, lambda: Frozen(1, (2, 3)), Frozen)
    assert runs == 1 and hit == first
    assert_same(first, hit)


# --------------------------------------------------------------------- time zones


def test_zoneinfo_datetimes_keep_their_zone(backend: Any) -> None:
    paris = ZoneInfo("Europe/Paris")
    before_dst = dt.datetime(2024, 3, 30, 12, 0, tzinfo=paris)
    first, hit, runs = twice(backend, lambda: before_dst, dt.datetime)
    assert runs == 1 and hit.tzinfo is paris
    day = dt.timedelta(days=1)
    assert (hit + day).utcoffset() == (first + day).utcoffset() == dt.timedelta(hours=2)


def test_the_fold_of_an_ambiguous_time_comes_back(backend: Any) -> None:
    second_one_thirty = dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York"))
    first, hit, runs = twice(backend, lambda: [second_one_thirty], list[dt.datetime])
    assert runs == 1 and hit[0].fold == 1 and hit[0].utcoffset() == dt.timedelta(hours=-5)
    assert_same(first, hit)


class _OddZone(dt.tzinfo):
    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)

    def dst(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, d: dt.datetime | None) -> str:
        return "ODD"


@dataclasses.dataclass
class Event:
    name: str
    when: dt.datetime


def test_a_value_that_would_come_back_different_is_not_stored(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A tzinfo that is not ZoneInfo or a fixed offset would come back as a fixed offset."""
    event = Event("launch", dt.datetime(2024, 1, 1, tzinfo=_OddZone()))
    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        _first, second, runs = twice(backend, lambda: event, Event)
        assert runs == 2 and second is event  # the caller always gets the function's own value
        twice(backend, lambda: event, Event)
    warnings = [r.getMessage() for r in caplog.records if "not caching" in r.getMessage()]
    assert len(warnings) == 1  # once, not once per call
    assert "Event.when" in warnings[0] and "time zone" in warnings[0]


def test_a_stream_item_that_would_come_back_different_stores_nothing(
    backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[int] = []

    @llm_cached(backend=backend, namespace="values.stream")
    def stream() -> Iterator[Any]:
        runs.append(1)
        yield "fine"
        yield Event("e", dt.datetime(2024, 1, 1, tzinfo=_OddZone()))

    register_type(Event)
    with caplog.at_level(logging.WARNING, logger="llm_memo"):
        assert len(list(stream())) == len(list(stream())) == 2
    assert len(runs) == 2
    assert any("Event.when" in r.getMessage() for r in caplog.records)


def test_stream_items_come_back_exactly(backend: Any) -> None:
    runs: list[int] = []

    @llm_cached(backend=backend, namespace="values.stream-ok")
    def stream() -> Iterator[Animal]:
        runs.append(1)
        yield Dog(name="a")
        yield Measured(score=math.nan)  # type: ignore[misc]

    register_type(Measured)
    first, hit = list(stream()), list(stream())
    assert len(runs) == 1
    assert_same(first, hit)


# --------------------------------------------------------------------- SDK responses

DRIFTED: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": "1700000000",  # a string where the SDK's type says int
    "model": "gpt-test",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hello"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def test_an_sdk_hit_from_a_drifted_payload_equals_the_live_object(backend: Any) -> None:
    from llm_memo.integrations.openai import patch_openai, unpatch_openai

    served: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(1)
        return httpx.Response(200, content=orjson.dumps(DRIFTED), headers={"x-request-id": "req_1"})

    patch_openai(backend=backend)
    try:
        http = httpx.Client(transport=httpx.MockTransport(handler))
        # The SDK's annotation names another distribution's Client class; this one works at run time.
        with openai.OpenAI(
            api_key="sk-test",
            base_url="http://llm.test/v1",
            http_client=http,  # type: ignore[arg-type]
        ) as client:
            ask = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
            live = client.chat.completions.create(**ask)  # type: ignore[call-overload]
            hit = client.chat.completions.create(**ask)  # type: ignore[call-overload]
    finally:
        unpatch_openai()
    assert len(served) == 1
    assert live.created == "1700000000" and hit.created == "1700000000"
    assert hit == live and hit._request_id == live._request_id == "req_1"
    assert_same(live, hit)


def test_an_sdk_response_that_validates_equal_keeps_the_fast_form() -> None:
    from openai.types.chat import ChatCompletion

    payload = {**DRIFTED, "created": 1700000000}
    value = ChatCompletion.model_validate(payload)
    data = encode_verified(value, TypeRegistry())
    assert data.startswith(b'{"$model":')
    assert decode_value(data, TypeRegistry()) == value
    drifted = ChatCompletion.construct(**DRIFTED)  # how the SDK builds responses: no validation
    assert encode_verified(drifted, TypeRegistry()).startswith(b'{"$object":')


# --------------------------------------------------------------------- safety of exact rebuilding


def _decode(tree: Any, *types: type) -> Any:
    return decode_value(orjson.dumps(tree), TypeRegistry(types))


NAME = f"{Reply.__module__}:Reply"
LAZY = f"{Lazy.__module__}:Lazy"


@pytest.mark.parametrize(
    "tree",
    [
        {"$object": [NAME, {"text": "a", "score": 1}, None, None, None, {"__class__": "x"}]},
        {"$object": [NAME, {"text": "a", "score": 1}, None, None, None, {"model_dump": "x"}]},
        {"$object": [NAME, {"text": "a", "score": 1, "__dict__": {}}, None, None, None, {}]},
        {"$object": [NAME, {"text": "a", "score": 1}, None, {"_x": 1}, None, {}]},
        {"$object": [NAME, {"score": 1}, None, None, None, {}]},  # a required field missing
        {"$dataclass": [LAZY, {"text": "a", "__reduce__": "x"}]},
        {"$dataclass": [LAZY, {"text": "a", "__repr__": "x"}]},
        {"$model": [NAME, {"text": "a"}, {}]},  # the validating form is for SDK responses only
        {"$datetime": ["2024-01-01T00:00:00", "../../etc/passwd", 0]},
        {"$datetime": ["2024-01-01T00:00:00", "/etc/localtime", 0]},
    ],
    ids=[
        "dunder-attr",
        "shadow-method",
        "dunder-field",
        "undeclared-private",
        "missing-field",
        "dataclass-dunder",
        "dataclass-dunder-method",
        "fast-form-user-model",
        "zone-traversal",
        "zone-absolute",
    ],
)
def test_a_planted_object_cannot_set_behaviour(tree: Any) -> None:
    with pytest.raises(CorruptEntry):
        _decode(tree, Reply, Lazy)


def test_the_verified_encoding_is_what_a_plain_encoding_gives_when_equal() -> None:
    value = {"a": [1, 2.5, None], "b": (1, b"x")}
    assert encode_verified(value, TypeRegistry()) == llm_memo.serialize.encode_value(value, TypeRegistry())


class Scores(RootModel[list[float]]):
    _source: str = PrivateAttr(default="")


def test_root_models_with_private_attributes(backend: Any) -> None:
    def make() -> Scores:
        scores = Scores([1.0, math.inf])
        scores._source = "eval"
        return scores

    first, hit, runs = twice(backend, make, Scores)
    assert runs == 1 and hit.root == [1.0, math.inf] and hit._source == "eval"
    assert_same(first, hit)


class Derived(BaseModel):
    x: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def broken(self) -> int:
        raise RuntimeError("computed fields are not stored, so never evaluated")

    @functools.cached_property
    def doubled(self) -> int:
        return self.x * 2


def test_computed_fields_and_cached_properties_are_recomputed_not_stored(backend: Any) -> None:
    def make() -> Derived:
        value = Derived(x=2)
        assert value.doubled == 4  # cached in the instance __dict__ before it is stored
        return value

    first, hit, runs = twice(backend, make, Derived)
    assert runs == 1 and "doubled" not in hit.__dict__ and hit.doubled == 4
    assert type(hit) is Derived and hit == first
