"""What the OpenAI and Anthropic integrations share: patching, keys, and SDK streams.

Each SDK module describes itself with an :class:`SDKSpec` (which methods to patch,
which kwargs carry no meaning, how a client identifies itself) and owns one
:class:`Patcher`. Everything else is written once, here:

* **Patching.** One :class:`SDKPatch` (a ``wrapt.FunctionWrapper`` subclass) per
  resource method, installed on the class with ``wrapt.wrap_object`` so every
  client is covered, whenever and however it was made. When the SDK is not
  imported yet, a wrapt post-import hook installs the patches on import.
  Unpatching uses ``wrapt.unwrap_object``, which restores the original function
  object (or splices ours out from under someone else's wrapt wrapper).
* **One** :class:`~llm_memo._core.Memo` **per method**, caching ``key material ->
  answer``, where the material (:meth:`Endpoint.material`) is the endpoint, the
  client's identity and the normalised kwargs: lookups, stores, modes, stats and
  single-flight are the core's own.
* **Streams.** A live SDK stream is recorded as it is consumed (each item encoded
  *before* it is handed on, since the SDK helpers mutate events) and stored only
  when it is complete: at its terminal event (the rest of the response is read
  first, within a budget, for consumers that stop there) or at a normal end. A
  hit is a stream object of the SDK's own class, over a synthetic HTTP response
  that carries the original request id.
* **Helpers that bypass** ``create`` (``parse()``, Anthropic's ``stream()``) are run
  as they are, on a shallow copy of the resource whose ``_post`` consults the
  cache: the SDK still validates and converts the arguments and builds the
  parsed object or stream manager itself, from the cached raw answer.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import functools
import importlib
import sys
import threading
import time
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import wrapt

from .._binding import materialize
from .._config import UNSET, Mode, _Unset
from .._core import CacheInfo, Call, Memo
from .._log import warn_limited
from .._options import Options
from .._secrets import fingerprint as _hmac
from .._secrets import is_secret_query_name as is_secret_name
from .._secrets import pepper as _pepper
from .._stream import Recorder, adrained, drained
from ..backends import MISS
from ..errors import MissingExtra, UncacheableArgument

__all__ = [
    "Endpoint",
    "Options",
    "Patcher",
    "SDKPatch",
    "SDKSpec",
    "Target",
    "answer_is_complete",
    "clean_url",
    "header_subset",
    "is_secret_name",
    "without_secrets",
]

#: The header the SDKs add for ``with_raw_response`` / ``with_streaming_response``
#: calls, which must reach the server and return the raw HTTP response.
RAW_RESPONSE_HEADER = "x-stainless-raw-response"

#: Why an answer ended, when it means "cut short" or "filtered" (OpenAI's
#: ``finish_reason``, Anthropic's ``stop_reason``): such answers are not stored.
CUT_SHORT = frozenset({"length", "content_filter", "max_tokens", "refusal", "model_context_window_exceeded"})
#: Responses API stream events that end a response without completing it.
_UNFINISHED_EVENTS = frozenset({"response.incomplete", "response.failed", "error"})

# ----------------------------------------------------------------------- descriptions


@dataclass(frozen=True)
class Target:
    """One SDK method to patch, e.g. ``Completions.create`` in the chat module."""

    module: str
    owner: str
    method: str
    #: The cache namespace, e.g. ``openai.chat.completions.create``.
    endpoint: str
    #: ``"call"``: cached around the method itself (create). ``"hook"``: the method is
    #: run as is and its ``_post`` goes through the cache (parse, stream helpers).
    #: ``"gate"``: the client's ``request()``, under every method (see ``_gate``).
    kind: Literal["call", "hook", "gate"] = "call"
    #: ``"module:Name"`` of the items of ``stream=True`` answers (for replayed streams).
    item: str = ""

    @property
    def path(self) -> str:
        return f"{self.owner}.{self.method}"

    @property
    def is_async(self) -> bool:
        # Not inspect.iscoroutinefunction: openai's @required_args hides async-ness.
        return self.owner.startswith("Async")


def _never(kwargs: Mapping[str, Any]) -> bool:
    return False


def _no_terminal(item: Any) -> bool:
    return False


#: What is read of a stream after its terminal event, for a consumer that stopped
#: there: the usage chunk and ``[DONE]`` are a few hundred bytes, sent at once.
#: The time is checked between events; a connection that stalls is bounded by
#: the client's own read timeout.
DRAIN_BYTES = 1 << 20
DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class SDKSpec:
    """What differs between SDKs; the SDK modules each define one."""

    package: str
    #: The ``pip install`` hint for a missing SDK.
    extra: str
    targets: tuple[Target, ...]
    #: The response header holding the request id (restored on replayed streams).
    request_id_header: str
    #: Request kwargs left out of the key by default (no effect on the answer).
    ignore: frozenset[str]
    #: ``extra_headers`` (lower-case names) that change the answer, kept in the key.
    call_headers: frozenset[str]
    #: The client's identity for the key: never a credential.
    identity: Callable[[Any], dict[str, Any]]
    #: The client's credentials: only ever HMAC-ed, with ``isolate_credentials``.
    credentials: Callable[[Any], Iterable[Any]]
    #: SDK-specific calls that must go straight through (e.g. ``background=True``).
    bypass: Callable[[Mapping[str, Any]], bool] = _never
    #: Private attributes the SDK sets on top-level results besides ``_request_id``;
    #: a hit gets ``None`` when the entry does not carry them.
    private_attrs: tuple[str, ...] = ()
    #: Whether a stream item ends the answer (a consumer may stop reading there).
    terminal: Callable[[Any], bool] = _no_terminal
    #: For the client-level gate: the request URLs it caches, and their namespaces.
    routes: Mapping[str, str] = field(default_factory=dict)

    def sentinel_types(self) -> tuple[type, ...]:
        # There are several NotGiven/Omit instances: compare by type, never identity.
        types_module = importlib.import_module(f"{self.package}._types")
        return tuple(t for t in (getattr(types_module, n, None) for n in ("NotGiven", "Omit")) if t)


# ----------------------------------------------------------------------- key helpers


@functools.lru_cache(maxsize=256)
def clean_url(url: str) -> str:
    """The URL without user-info (``user:password@``); cached, as clients rarely change."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def without_secrets(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """A query mapping minus parameters whose name says they hold a credential."""
    if not mapping:
        return {}
    return {k: v for k, v in mapping.items() if not is_secret_name(str(k))}


def header_subset(headers: Mapping[str, Any] | None, allowed: frozenset[str]) -> dict[str, Any]:
    """The allow-listed headers, with lower-cased names (HTTP names are case-insensitive)."""
    if not headers:
        return {}
    return {k.lower(): v for k, v in headers.items() if isinstance(k, str) and k.lower() in allowed}


@functools.lru_cache(maxsize=64)
def _fingerprint(secrets: tuple[str, ...], pepper: bytes) -> str | None:
    return _hmac(secrets, pepper) if secrets else None


def _raw_response_call(kwargs: Mapping[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    if headers:
        for name in headers:
            if isinstance(name, str) and name.lower() == RAW_RESPONSE_HEADER:
                return True
    return False


class _Drop:
    """Marks a normalised kwarg that equals leaving it out."""


_DROP = _Drop()


def _extra_payload(endpoint: Endpoint, value: Any) -> Any:
    return value if value else _DROP  # None and {} send nothing


def _extra_query(endpoint: Endpoint, value: Any) -> Any:
    return without_secrets(value) or _DROP


def _extra_headers(endpoint: Endpoint, value: Any) -> Any:
    # Only a few headers change answers (beta flags); the rest is tracing, helper
    # markers and credentials, none of which may reach the key.
    return header_subset(value, endpoint.spec.call_headers) or _DROP


def _stream_flag(endpoint: Endpoint, value: Any) -> Any:
    return value if value else _DROP  # stream=False (or None) is the default


def _stream_options(endpoint: Endpoint, value: Any) -> Any:
    if isinstance(value, Mapping):
        # include_obfuscation only pads events with random noise; include_usage adds a
        # usage chunk, so it stays.
        value = {k: v for k, v in value.items() if k != "include_obfuscation"}
    return value if value else _DROP


_NORMALISE: dict[str, Callable[[Endpoint, Any], Any]] = {
    "extra_body": _extra_payload,
    "extra_query": _extra_query,
    "extra_headers": _extra_headers,
    "stream": _stream_flag,
    "stream_options": _stream_options,
}


# ----------------------------------------------------------------------- what to store


def answer_is_complete(value: Any) -> bool:
    """The default ``cache_if``: False for answers cut short, filtered or unfinished.

    Works on every result the integrations store: chat completions, legacy
    completions, Responses, Anthropic messages, embeddings, and recorded streams
    (a list: a metadata dict, then the chunks or events).
    """
    if isinstance(value, list):
        return all(answer_is_complete(item) for item in value if not isinstance(item, dict))
    for choice in getattr(value, "choices", None) or ():
        if getattr(choice, "finish_reason", None) in CUT_SHORT:
            return False
    if getattr(value, "stop_reason", None) in CUT_SHORT:
        return False
    kind = getattr(value, "type", None)
    if kind in _UNFINISHED_EVENTS:
        return False
    if kind == "message_delta" and getattr(getattr(value, "delta", None), "stop_reason", None) in CUT_SHORT:
        return False
    # A Responses API response: only a completed one is an answer.
    return not (
        getattr(value, "object", None) == "response" and getattr(value, "status", None) != "completed"
    )


# ----------------------------------------------------------------------- streams


def _replayed(items: list[Any], response: Any) -> Iterator[Any]:
    try:
        yield from items
    finally:
        response.close()  # as a live stream closes its response once read


async def _areplayed(items: list[Any], response: Any) -> AsyncIterator[Any]:
    try:
        for item in items:
            yield item
    finally:
        await response.aclose()


def _import_name(spec: str) -> Any:
    module_name, _, name = spec.partition(":")
    return getattr(importlib.import_module(module_name), name)


# ----------------------------------------------------------------------- one patched method


class Endpoint:
    """The cache of one patched SDK method, and its drivers (sync, async, hook)."""

    def __init__(self, spec: SDKSpec, target: Target, original: Any, options: Options) -> None:
        self.spec = spec
        self.target = target
        self.original = original
        self.sentinels = spec.sentinel_types()
        self.configure(options)
        if target.kind == "hook":
            self.driver: Callable[..., Any] = self.hook
        else:
            self.driver = self.acall if target.is_async else self.call

    def configure(self, options: Options) -> None:
        """(Re)build the memo; ``patch_*()`` called again changes the options in place."""
        ignore = options.ignore
        self.ignore = self.spec.ignore if isinstance(ignore, _Unset) else frozenset(ignore)
        # Credentials in the kwargs (extra_body={"api_key": ...}) as the client's.
        self.pepper = _pepper(options.get("isolate_credentials", False))
        cache_if = options.get("cache_if", None) or answer_is_complete
        # ``ignore`` names the SDK's kwargs, which normalise() drops: the memo's one
        # argument is the key material.
        memo_options = dataclasses.replace(
            options, ignore=UNSET, namespace=self.target.endpoint, cache_if=cache_if
        )
        self.memo = Memo(_answer, memo_options)
        self.memo.label = self.target.endpoint

    def info(self) -> CacheInfo:
        return self.memo.info()

    def clear(self) -> int:
        return self.memo.clear()

    # ------------------------------------------------------------- key material

    def material(self, client: Any, kwargs: Mapping[str, Any], part: str = "kwargs") -> dict[str, Any]:
        """The key material of a call: endpoint, client identity and normalised kwargs.

        ``part`` names what was normalised: a method's ``kwargs``, or the
        ``request`` (the JSON body) the client-level gate sees.
        """
        identity = self.spec.identity(client)
        if self.pepper is not None:
            secrets = tuple(s for s in self.spec.credentials(client) if isinstance(s, str) and s)
            fingerprint = _fingerprint(secrets, self.pepper)
            if fingerprint is not None:
                identity["credentials"] = fingerprint
        return {"endpoint": self.target.endpoint, "client": identity, part: self.normalise(kwargs)}

    def normalise(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ignore, sentinels = self.ignore, self.sentinels
        for name, value in kwargs.items():
            if name in ignore or isinstance(value, sentinels):
                continue
            rule = _NORMALISE.get(name)
            if rule is not None:
                value = rule(self, value)
                if value is _DROP:
                    continue
            out[name] = value  # unknown (future) kwargs stay in the key
        return out

    # ------------------------------------------------------------- drivers

    def _passes_through(self, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        # Positional arguments only come from unusual calls the SDK rejects itself.
        return bool(args) or instance is None or _raw_response_call(kwargs) or self.spec.bypass(kwargs)

    def _uncacheable(self, exc: UncacheableArgument) -> None:
        # An SDK call must never fail because of the cache: call it uncached. The
        # message names the argument and its type, never its value.
        warn_limited(
            f"uncacheable:{self.target.endpoint}:{exc.path}",
            "llm_memo: not caching a call of %s: %s",
            self.target.endpoint,
            exc,
        )

    def _finish(self, value: Any) -> Any:
        """Give a hit the response attributes its entry does not keep (``None``, as live)."""
        attributes = getattr(value, "__dict__", None)
        if attributes is not None:
            for name in self.spec.private_attrs:
                if name not in attributes:
                    setattr(value, name, None)
        return value

    def call(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._passes_through(instance, args, kwargs):
            return wrapped(*args, **kwargs)
        # Building the key must not consume an iterator the SDK then reads.
        _, key_kwargs, _, kwargs = materialize((), kwargs)
        material = self.material(instance._client, key_kwargs)

        def live(*_: Any) -> Any:
            return inside(wrapped, **kwargs)

        if kwargs.get("stream"):
            return self.open_stream(instance._client, material, live, *self.stream_types(False))
        try:
            value = self.memo.call_sync(live, None, (material,), {})
        except UncacheableArgument as exc:
            self._uncacheable(exc)
            return wrapped(**kwargs)  # the gate below still sees it
        return self._finish(value) if self.spec.private_attrs else value

    async def acall(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._passes_through(instance, args, kwargs):
            return await wrapped(*args, **kwargs)
        _, key_kwargs, _, kwargs = materialize((), kwargs)
        material = self.material(instance._client, key_kwargs)

        def live(*_: Any) -> Any:
            return ainside(wrapped, **kwargs)

        if kwargs.get("stream"):
            return await self.open_astream(instance._client, material, live, *self.stream_types(True))
        try:
            value = await self.memo.call_async(live, None, (material,), {})
        except UncacheableArgument as exc:
            self._uncacheable(exc)
            return await wrapped(**kwargs)
        return self._finish(value) if self.spec.private_attrs else value

    def hook(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """parse() and stream helpers: run the SDK's own method with a caching ``_post``.

        The method stays synchronous or asynchronous as it was (Anthropic's async
        ``stream()`` is a plain ``def`` returning a manager); only ``_post`` differs.
        """
        if self._passes_through(instance, args, kwargs):
            return wrapped(*args, **kwargs)
        # The SDK reads iterators while building the request, before the key is made.
        _, key_kwargs, _, kwargs = materialize((), kwargs)
        proxy = copy.copy(instance)
        post = self._apost if self.target.is_async else self._post
        proxy._post = functools.partial(post, instance, key_kwargs)
        return self.original.__get__(proxy, type(instance))(**kwargs)

    # ------------------------------------------------------------- hook: the resource's _post

    def _post(self, instance: Any, kwargs: dict[str, Any], path: str, **request: Any) -> Any:
        real = instance._post
        material = self.material(instance._client, kwargs)
        if request.get("stream"):
            stream_cls = request.get("stream_cls")
            return self.open_stream(
                instance._client,
                material,
                lambda: inside(real, path, **request),
                stream_cls,
                _item_type(stream_cls),
            )
        options, parser = _parser_of(request)
        captured: list[Any] = []
        results: list[Any] = []

        def live(*_: Any, **__: Any) -> Any:
            opts = {**options, "post_parser": _capture(parser, captured)}
            result = inside(real, path, **{**request, "options": opts})
            results.append(result)
            return _with_ids(captured[0] if captured else result, result)  # the raw answer is stored

        try:
            raw = self.memo.call_sync(live, None, (material,), {})
        except UncacheableArgument as exc:
            self._uncacheable(exc)
            return real(path, **request)
        return self._result(raw, parser, results)

    async def _apost(self, instance: Any, kwargs: dict[str, Any], path: str, **request: Any) -> Any:
        real = instance._post
        material = self.material(instance._client, kwargs)
        if request.get("stream"):
            stream_cls = request.get("stream_cls")
            return await self.open_astream(
                instance._client,
                material,
                lambda: ainside(real, path, **request),
                stream_cls,
                _item_type(stream_cls),
            )
        options, parser = _parser_of(request)
        captured: list[Any] = []
        results: list[Any] = []

        async def live(*_: Any, **__: Any) -> Any:
            opts = {**options, "post_parser": _capture(parser, captured)}
            result = await ainside(real, path, **{**request, "options": opts})
            results.append(result)
            return _with_ids(captured[0] if captured else result, result)

        try:
            raw = await self.memo.call_async(live, None, (material,), {})
        except UncacheableArgument as exc:
            self._uncacheable(exc)
            return await real(path, **request)
        return self._result(raw, parser, results)

    def _result(self, raw: Any, parser: Callable[[Any], Any] | None, results: list[Any]) -> Any:
        """The caller's answer: the live result if this call went out, else parsed from the entry.

        Parsing the entry with the SDK's own post-parser is what makes hits carry the
        parsed object (and raise ``LengthFinishReasonError`` and the like, as live).
        """
        if results:
            return results[0]
        raw = self._finish(raw)
        return _with_ids(parser(raw), raw) if parser is not None else raw

    # ------------------------------------------------------------- streams

    def stream_types(self, asynchronous: bool) -> tuple[Any, Any]:
        """The stream class (parametrised as the SDK does) and item type of this endpoint."""
        item = _import_name(self.target.item)
        streaming = importlib.import_module(f"{self.spec.package}._streaming")
        return (streaming.AsyncStream if asynchronous else streaming.Stream)[item], item

    def _begin_stream(self, material: dict[str, Any]) -> tuple[Mode, Call | None]:
        """The mode and the call's key; no key means "call the SDK, uncached"."""
        mode = self.memo.current_mode()
        if mode == "off":
            return mode, None
        try:
            return mode, self.memo.prepare(None, (material,), {})
        except UncacheableArgument as exc:
            self._uncacheable(exc)
            return mode, None

    def open_stream(
        self, client: Any, material: dict[str, Any], live: Callable[[], Any], stream_cls: Any, item: Any
    ) -> Any:
        mode, call = self._begin_stream(material)
        if call is None:
            return live()
        if mode != "refresh":
            items = self.memo.lookup(call)
            if items is not MISS:
                return self._replay(client, items, stream_cls, item, _replayed)
            if mode == "replay":
                raise self.memo.replay_miss(call)
        stream = live()
        return self._record(stream, Recorder(self.memo, call, enabled=mode != "readonly"), drained)

    async def open_astream(
        self, client: Any, material: dict[str, Any], live: Callable[[], Any], stream_cls: Any, item: Any
    ) -> Any:
        mode, call = self._begin_stream(material)
        if call is None:
            return await live()
        if mode != "refresh":
            items = await self.memo.alookup(call)
            if items is not MISS:
                return self._replay(client, items, stream_cls, item, _areplayed)
            if mode == "replay":
                raise self.memo.replay_miss(call)
        stream = await live()
        return self._record(stream, Recorder(self.memo, call, enabled=mode != "readonly"), adrained)

    def _record(self, stream: Any, recorder: Recorder, recording: Callable[..., Any]) -> Any:
        response = getattr(stream, "response", None)
        if response is None:  # not an SDK stream: nothing we know how to record
            return stream
        # A stream entry is [metadata, item, item, ...]; chunks carry no request id.
        recorder.add({"request_id": response.headers.get(self.spec.request_id_header)})
        # The instance keeps its SDK class; only its item source is wrapped. (openai
        # creates _iterator in __init__, anthropic lazily: reading it creates it.)
        stream._iterator = recording(stream._iterator, recorder, self.spec.terminal, _budget(response))
        return stream

    def _replay(
        self, client: Any, items: Any, stream_cls: Any, item: Any, replaying: Callable[..., Any]
    ) -> Any:
        meta, chunks = (items[0], items[1:]) if items and isinstance(items[0], dict) else ({}, list(items))
        streaming = importlib.import_module(f"{self.spec.package}._streaming")
        # The SDK's own HTTP module: httpx2 for openai 3.x / anthropic 2.x, httpx before.
        http = getattr(streaming, "httpx2", None) or streaming.httpx
        headers = {"content-type": "text/event-stream; charset=utf-8"}
        request_id = meta.get("request_id")
        if isinstance(request_id, str):
            headers[self.spec.request_id_header] = request_id
        request = http.Request("POST", clean_url(str(client.base_url)))
        response = http.Response(200, headers=headers, content=b"", request=request)
        stream = stream_cls(cast_to=item, response=response, client=client)
        stream._iterator = replaying(chunks, response)
        return stream


def _budget(response: Any) -> Callable[[], bool]:
    """``more()`` for draining ``response`` after the terminal event (see :data:`DRAIN_BYTES`)."""
    started: list[float] = []

    def more() -> bool:
        if not started:  # the budget starts when the drain does
            started.extend((time.monotonic(), getattr(response, "num_bytes_downloaded", 0)))
            return True
        elapsed = time.monotonic() - started[0]
        read = getattr(response, "num_bytes_downloaded", 0) - started[1]
        return elapsed < DRAIN_SECONDS and read < DRAIN_BYTES

    return more


#: Set while a patched method makes its own live request: the client-level gate
#: below lets such requests through (the method patch already decided).
_INSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("llm_memo_sdk_inside", default=False)


def inside(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` as a request the patches already dealt with."""
    token = _INSIDE.set(True)
    try:
        return func(*args, **kwargs)
    finally:
        _INSIDE.reset(token)


async def ainside(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    token = _INSIDE.set(True)
    try:
        return await func(*args, **kwargs)
    finally:
        _INSIDE.reset(token)


def is_inside() -> bool:
    return _INSIDE.get()


def _answer(material: Any) -> Any:  # pragma: no cover - never called
    """What each endpoint's memo caches: ``key material -> answer``.

    The material is passed as the one bound argument (each call brings its own
    compute function), rather than through ``Memo(key=...)``, so the core's raw-JSON
    key shortcut applies: a repeated prompt is not walked again on every hit.
    """
    raise AssertionError("called with a compute function of its own")


def _item_type(stream_cls: Any) -> Any:
    args = typing.get_args(stream_cls)
    return args[0] if args else object


def _parser_of(request: Mapping[str, Any]) -> tuple[dict[str, Any], Callable[[Any], Any] | None]:
    options = dict(request.get("options") or {})
    parser = options.get("post_parser")
    return options, parser if callable(parser) else None


def _capture(parser: Callable[[Any], Any] | None, captured: list[Any]) -> Callable[[Any], Any]:
    """A post_parser that keeps the raw answer (what is stored) before parsing it."""

    def post_parser(raw: Any) -> Any:
        captured.append(raw)
        return parser(raw) if parser is not None else raw

    return post_parser


#: What the SDKs set on a top-level result from the response headers.
_RESPONSE_IDS = ("_request_id", "_workspace_id")


def _with_ids(target: Any, source: Any) -> Any:
    """Copy the SDK's response ids (set on the top-level result only) onto ``target``."""
    if target is not source:
        ids = getattr(source, "__dict__", {})
        for name in _RESPONSE_IDS:
            if name in ids:
                setattr(target, name, ids[name])
    return target


# ----------------------------------------------------------------------- the patch


class SDKPatch(wrapt.FunctionWrapper[Any, Any]):
    """The wrapper installed on an SDK method, with the cache helpers as methods.

    ``client.chat.completions.create.cache_info()`` works too: wrapt >= 2.2 looks
    attributes up on the parent wrapper from the bound one.
    """

    def __init__(self, wrapped: Any, endpoint: Driver) -> None:
        super().__init__(wrapped, endpoint.driver)
        self._self_endpoint = endpoint

    @property
    def endpoint(self) -> Driver:
        return self._self_endpoint

    def cache_info(self) -> CacheInfo:
        return self.endpoint.info()

    def cache_clear(self) -> int:
        """Forget this endpoint's entries (sync and async share them)."""
        return self.endpoint.clear()


class Driver(typing.Protocol):
    """What a patch runs: an :class:`Endpoint`, or the client-level gate."""

    driver: Callable[..., Any]

    def __init__(self, spec: SDKSpec, target: Target, original: Any, options: Options) -> None: ...
    def configure(self, options: Options) -> None: ...
    def info(self) -> CacheInfo: ...
    def clear(self) -> int: ...


class Patcher:
    """The patches of one SDK: install, defer until import, re-configure, remove."""

    def __init__(self, spec: SDKSpec, gate: type[Driver] | None = None) -> None:
        self.spec = spec
        self._gate = gate
        self._lock = threading.RLock()
        self._options: Options | None = None  # None: not patched
        self._installed: dict[Target, SDKPatch] = {}
        self._waiting: set[str] = set()  # modules with a post-import hook not fired yet

    @property
    def active(self) -> bool:
        return self._options is not None

    def patch(self, options: Options, *, defer: bool = True) -> None:
        if not defer:
            self._import_sdk()
        with self._lock:
            self._options = options
            for handle in self._installed.values():
                handle.endpoint.configure(options)  # patching again: one layer, new options
            for module_name in dict.fromkeys(t.module for t in self.spec.targets):
                module = sys.modules.get(module_name)
                if module is not None:
                    self._install(module)
                elif module_name not in self._waiting:
                    self._waiting.add(module_name)
                    wrapt.register_post_import_hook(self._imported, module_name)

    def unpatch(self) -> None:
        with self._lock:
            self._options = None  # hooks still waiting for an import now do nothing
            for target, handle in self._installed.items():
                module = sys.modules.get(target.module)
                if module is not None:
                    wrapt.unwrap_object(module, target.path, handle, missing_ok=True)
            self._installed.clear()

    def info(self) -> dict[str, CacheInfo]:
        """Counters per patched method (``"openai.chat.completions.create"``, ``"...(async)"``)."""
        with self._lock:
            return {
                t.endpoint + (" (async)" if t.is_async else ""): h.cache_info()
                for t, h in self._installed.items()
            }

    def _import_sdk(self) -> None:
        try:
            importlib.import_module(self.spec.package)
        except ImportError:
            raise MissingExtra(
                f"llm_memo: the {self.spec.package} package is not installed; "
                f"pip install '{self.spec.extra}' (or pass defer=True to patch it when it is imported)",
                self.spec.extra.partition("[")[2].rstrip("]"),
            ) from None  # one line naming the extra, not two tracebacks
        for module_name in dict.fromkeys(t.module for t in self.spec.targets):
            try:
                importlib.import_module(module_name)
            except ImportError:
                continue  # an SDK version without this resource: nothing to patch there

    def _imported(self, module: Any) -> None:
        with self._lock:
            self._waiting.discard(module.__name__)
            if self._options is not None:
                self._install(module)

    def _install(self, module: Any) -> None:
        assert self._options is not None
        for target in self.spec.targets:
            if target.module != module.__name__:
                continue
            owner = getattr(module, target.owner, None)
            current = vars(owner).get(target.method) if isinstance(owner, type) else None
            if current is None:
                continue  # not in this SDK version
            handle = self._installed.get(target)
            if handle is not None and wrapt.is_wrapped_by(current, handle):
                continue
            factory: type[Driver] = Endpoint
            if target.kind == "gate":
                if self._gate is None:
                    continue
                factory = self._gate
            endpoint = factory(self.spec, target, current, self._options)
            self._installed[target] = wrapt.wrap_object(module, target.path, SDKPatch, (endpoint,))
