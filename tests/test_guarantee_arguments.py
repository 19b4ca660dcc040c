"""Guarantee: the key reflects the arguments, the whole arguments, as they were at call time.

And a decorated function's own credentials (``api_key=``, ``token=``, ...) never reach
the key material or the store; with ``isolate_credentials`` they are only HMAC-ed.
"""

from __future__ import annotations

import enum
import io
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import openai
import pytest
from pydantic import BaseModel, ConfigDict, SecretStr

import llm_memo
from llm_memo import MemoryBackend, UncacheableArgument, llm_cached
from llm_memo.integrations.openai import patch_openai, unpatch_openai
from llm_memo.keys import canonical
from llm_memo.testing import FakeLLMServer


def stored_bytes(store: MemoryBackend) -> bytes:
    return b"".join(e.value for e in store.entries(None))


# --------------------------------------------------------------------------- pydantic arguments


class Conversation(BaseModel):
    messages: list[str] = []


class Translate(BaseModel):
    text: str


class Summarize(BaseModel):
    text: str


def test_pydantic_argument_is_keyed_by_its_full_value_not_what_was_set() -> None:
    @llm_cached
    def reply(conv: Conversation) -> int:
        return len(conv.messages)

    grown = Conversation()
    grown.messages.append("hi")  # mutates the default list: never "set"
    assert reply(Conversation()) == 0
    assert reply(grown) == 1
    assert reply.cache_key(grown) != reply.cache_key(Conversation())


def test_pydantic_argument_is_keyed_by_its_class() -> None:
    @llm_cached
    def run(task: Any) -> str:
        return type(task).__name__

    assert run(Summarize(text="x")) == "Summarize"
    assert run(Translate(text="x")) == "Translate"


def test_extra_fields_are_part_of_the_key() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")
        text: str

    @llm_cached
    def run(task: Loose) -> Any:
        return task.model_dump()

    # Undeclared fields, which extra="allow" keeps.
    assert run.cache_key(Loose(text="x", lang="fr")) != run.cache_key(Loose(text="x", lang="de"))  # type: ignore[call-arg]


class Agent(BaseModel):
    style: ClassVar[str] = "plain"
    name: str

    @llm_cached
    def greet(self, who: str) -> str:
        return f"{self.style}:{self.name}:{who}"


class Pirate(Agent):
    style: ClassVar[str] = "pirate"


class Poet(Agent):
    style: ClassVar[str] = "poet"


def test_self_model_is_keyed_by_class_and_value_and_subclasses_never_share() -> None:
    assert Pirate(name="a").greet("you") == "pirate:a:you"
    assert Poet(name="a").greet("you") == "poet:a:you"
    assert Pirate(name="b").greet("you") == "pirate:b:you"
    assert Pirate(name="a").greet("you") == "pirate:a:you"
    assert Agent.greet.cache_info().hits == 1


def test_a_model_whose_dump_would_fail_is_keyed_or_refused_by_path() -> None:
    class Blob(BaseModel):
        data: bytes
        extra: Any = None

    @llm_cached
    def size(blob: Blob) -> int:
        return len(blob.data)

    # Non-UTF-8 bytes: model_dump(mode="json") raises UnicodeDecodeError.
    assert size.cache_key(Blob(data=b"\xff")) != size.cache_key(Blob(data=b"\xfe"))
    with pytest.raises(UncacheableArgument) as info:
        size.cache_key(Blob(data=b"", extra=object()))
    assert info.value.path == 'blob["extra"]'  # as a dataclass field is named


def test_pydantic_specific_field_types_stay_keyable() -> None:
    from pydantic import HttpUrl

    class Image(BaseModel):
        url: HttpUrl

    @llm_cached
    def describe(image: Image) -> str:
        return str(image.url)

    # Strings, as a caller passes them: pydantic validates them into URLs.
    a = Image(url="https://a.example/x.png")  # type: ignore[arg-type]
    b = Image(url="https://b.example/x.png")  # type: ignore[arg-type]
    assert describe.cache_key(a) != describe.cache_key(b)
    assert describe.cache_key(a) == describe.cache_key(Image(url="https://a.example/x.png"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- subclasses of scalars


class Loud(str):
    def __str__(self) -> str:
        return "LOUD"


class Eleven(int):
    def __int__(self) -> int:
        return 11

    def __index__(self) -> int:
        return 11


class Half(float):
    def __float__(self) -> float:
        return 0.5


@pytest.mark.parametrize(
    ("a", "b", "plain"),
    [(Loud("a"), Loud("b"), "a"), (Eleven(1), Eleven(2), 1), (Half(1.5), Half(2.5), 1.5)],
    ids=["str", "int", "float"],
)
def test_scalar_subclasses_are_keyed_by_their_real_value(a: Any, b: Any, plain: Any) -> None:
    @llm_cached
    def echo(x: Any) -> str:
        return repr(x)

    assert echo.cache_key(a) != echo.cache_key(b)
    assert echo.cache_key(a) == echo.cache_key(plain)
    assert echo.cache_key({"k": [a]}) != echo.cache_key({"k": [b]})


# --------------------------------------------------------------------------- dict keys that collide


class Color(enum.Enum):
    RED = "red"


RED_ID = uuid.UUID(int=1)


@pytest.mark.parametrize("special", [Color.RED, RED_ID], ids=["enum", "uuid"])
def test_a_dict_never_collapses_keys_that_encode_alike(special: Any) -> None:
    plain = special.value if isinstance(special, enum.Enum) else str(special)

    @llm_cached
    def f(d: dict[Any, int]) -> int:
        return d[special]

    with pytest.raises(UncacheableArgument, match="encode alike"):
        f({special: 1, plain: 2})
    with pytest.raises(UncacheableArgument, match="encode alike"):
        f.cache_key({plain: 1, special: 2})
    assert f({special: 1}) == 1  # alone, it is keyed by its value as before


# --------------------------------------------------------------------------- files and iterators


def test_open_files_and_string_io_are_refused(tmp_path: Path) -> None:
    @llm_cached
    def read(src: Any) -> str:
        return str(src.read())

    path = tmp_path / "prompt.txt"
    path.write_text("hello")
    with path.open() as fh, pytest.raises(UncacheableArgument, match="open file"):
        read(fh)
    with pytest.raises(UncacheableArgument, match=r"src: .*open file"):
        read(io.StringIO("hello"))
    with pytest.raises(UncacheableArgument):
        read(io.BytesIO(b"hello"))


def test_a_one_shot_iterator_is_handed_on_as_an_iterator_over_the_same_items() -> None:
    seen: list[Any] = []

    @llm_cached
    def first_two(items: Iterator[int], *, more: Any = None) -> list[int]:
        seen.append(type(items))
        return [next(items), next(items)]  # a list would raise TypeError here

    assert first_two(iter([1, 2, 3])) == [1, 2]
    assert first_two(x for x in [1, 2, 3]) == [1, 2]  # same items: a hit
    assert len(seen) == 1 and not issubclass(seen[0], list)
    assert first_two(more=iter([0]), items=iter([4, 5])) == [4, 5]


def test_an_infinite_iterator_raises_instead_of_hanging() -> None:
    @llm_cached
    def head(items: Iterator[int]) -> int:
        return next(items)

    with pytest.raises(UncacheableArgument, match=r"items: .*more than [\d,]+ items"):
        head(itertools.count())


# --------------------------------------------------------------------------- defaults at call time


def test_defaults_reassigned_at_runtime_are_a_different_call() -> None:
    def ask(prompt: str, model: str = "small", *, temperature: float = 0.0) -> str:
        return f"{model}/{temperature}:{prompt}"

    cached = llm_cached(ask)
    assert cached("hi") == "small/0.0:hi"
    ask.__defaults__ = ("large",)
    assert cached("hi") == "large/0.0:hi"
    ask.__kwdefaults__ = {"temperature": 1.0}
    assert cached("hi") == "large/1.0:hi"
    assert cached.cache_key("hi") == cached.cache_key("hi", "large", temperature=1.0)


def test_a_mutated_mutable_default_is_a_different_call() -> None:
    history: list[str] = []

    @llm_cached
    def ask(prompt: str, context: list[str] = history) -> str:
        return f"{len(context)}:{prompt}"

    assert ask("hi") == "0:hi"
    history.append("earlier")
    assert ask("hi") == "1:hi"


# --------------------------------------------------------------------------- stored material


def test_stored_material_is_the_arguments_as_they_were_when_keyed(tmp_path: Path) -> None:
    store = MemoryBackend()

    @llm_cached(backend=store)
    def consume(items: list[str]) -> int:
        items.append("seen")  # the function mutates its argument
        return len(items)

    assert consume(["a"]) == 2
    consume.cache_clear()
    assert consume(["a"]) == 2  # the same arguments again: the key comes from a shortcut
    dump = tmp_path / "entries.jsonl"
    assert llm_memo.export_entries(store, dump) == 1
    assert llm_memo.import_entries(dump, MemoryBackend()) == 1  # material matches its key
    assert b"seen" not in stored_bytes(store)


# --------------------------------------------------------------------------- credentials


SECRET = "sk-live-0123456789abcdef0123"
OTHER = "sk-live-fedcba9876543210fedc"


def test_credential_parameters_are_out_of_the_key_and_the_store() -> None:
    store = MemoryBackend()
    calls: list[str] = []

    @llm_cached(backend=store)
    def ask(prompt: str, api_key: str, *, token: str | None = None, **options: Any) -> str:
        calls.append(prompt)
        return prompt.upper()

    assert ask("hi", SECRET, token=OTHER, password=SECRET, config={"client_secret": SECRET}) == "HI"
    assert ask("hi", OTHER, token=SECRET, password=OTHER, config={"client_secret": OTHER}) == "HI"
    assert calls == ["hi"]  # other credentials, same answer
    assert SECRET.encode() not in stored_bytes(store) and OTHER.encode() not in stored_bytes(store)
    # What is not a credential stays in the key, whatever the name looks like.
    assert ask.cache_key("hi", SECRET, max_tokens=5) != ask.cache_key("hi", SECRET, max_tokens=6)
    assert ask.cache_key("hi", SECRET, stop_token="a") != ask.cache_key("hi", SECRET, stop_token="b")
    assert ask.cache_key("hi", SECRET, key="a") != ask.cache_key("hi", SECRET, key="b")
    assert ask.cache_key("hi", SECRET, token=None) != ask.cache_key("hi", SECRET, token=SECRET)


def test_isolate_credentials_keys_by_an_hmac_fingerprint() -> None:
    store = MemoryBackend()
    calls: list[str] = []

    @llm_cached(backend=store, isolate_credentials=True)
    def ask(prompt: str, api_key: str, headers: dict[str, str] | None = None) -> str:
        calls.append(api_key)
        return prompt

    ask("hi", SECRET)
    ask("hi", OTHER)
    ask("hi", SECRET)
    assert calls == [SECRET, OTHER]
    assert ask.cache_key("hi", "x", {"Authorization": SECRET}) != ask.cache_key(
        "hi", "x", {"Authorization": OTHER}
    )
    for secret in (SECRET, OTHER):
        assert secret.encode() not in stored_bytes(store)
    mine = llm_cached(isolate_credentials="my-pepper")(ask.__wrapped__)
    assert mine.cache_key("hi", SECRET) != ask.cache_key("hi", SECRET)


def test_pydantic_secret_values_are_credentials() -> None:
    class Settings(BaseModel):
        model: str
        api_key: SecretStr
        backup: SecretStr | None = None

    @llm_cached
    def ask(settings: Settings) -> str:
        return settings.model

    a = Settings(model="m", api_key=SecretStr(SECRET), backup=SecretStr(SECRET))
    b = Settings(model="m", api_key=SecretStr(OTHER), backup=SecretStr(OTHER))
    assert ask.cache_key(a) == ask.cache_key(b)
    assert ask.cache_key(a) != ask.cache_key(Settings(model="n", api_key=SecretStr(SECRET)))
    assert SECRET not in str(canonical(a))


@pytest.mark.parametrize("isolate", [False, True], ids=["shared", "isolated"])
def test_sdk_extra_body_and_extra_query_credentials_are_not_stored(
    llm_server: FakeLLMServer, isolate: bool
) -> None:
    store = MemoryBackend()
    patch_openai(backend=store, isolate_credentials=isolate)
    try:
        with openai.OpenAI(api_key="sk-test-key", base_url=llm_server.openai_base_url) as client:
            for secret in (SECRET, OTHER):
                client.chat.completions.create(
                    model="gpt-test",
                    messages=[{"role": "user", "content": "hi"}],
                    extra_body={"api_key": secret},
                    extra_query={"code": secret},
                )
    finally:
        unpatch_openai()
    data = stored_bytes(store)
    assert data and SECRET.encode() not in data and OTHER.encode() not in data
    # Shared: other credentials, same answer. Isolated: the body's credential counts.
    assert llm_server.count("/chat/completions") == (2 if isolate else 1)
