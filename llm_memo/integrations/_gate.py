"""The client-level gate: every request an SDK client sends, however it was made.

The method patches (:mod:`._sdk`) sit on the resource classes, so a bound method
taken before patching (``create = client.chat.completions.create``, or a library
that kept one, as instructor does) runs the original method. Every resource
method still ends in ``client.post()`` / ``get()``..., which call
``self.request(...)``: a lookup on the client's class at call time. The gate is
a patch of ``SyncAPIClient.request`` / ``AsyncAPIClient.request``, so it sees
those calls too, and every request the method patches pass by:

* a request a patched method makes for its own miss passes straight through
  (:func:`._sdk.inside` marks it);
* a JSON ``POST`` to a covered endpoint (chat completions, Responses,
  embeddings, legacy completions, Anthropic messages) is cached here, keyed on
  the client's identity and the request body (``"request"`` in the key material,
  so never confused with a method's kwargs); hits are parsed by the SDK's own
  post-parser, and streams are real SDK streams, as for the method patches;
* anything else (``with_raw_response`` / ``with_streaming_response``, other
  endpoints such as ``/moderations``, ``background=True``, ``conversation=``)
  is counted in ``llm_memo.stats().uncached`` and logged once per endpoint; in
  replay mode it raises :class:`~llm_memo.CacheMiss` instead of calling out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from .._config import effective_mode
from .._core import CacheInfo
from .._events import note_uncached
from .._log import warn_limited
from ..errors import CacheMiss, UncacheableArgument
from ._sdk import (
    RAW_RESPONSE_HEADER,
    Endpoint,
    Options,
    SDKSpec,
    Target,
    _capture,
    _item_type,
    _with_ids,
    ainside,
    inside,
    is_inside,
)

__all__ = ["Gate"]


def _request_args(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[Any, Any, bool, Any]:
    """``request(cast_to, options, *, stream=False, stream_cls=None)``'s arguments."""
    cast_to = args[0] if args else kwargs.get("cast_to")
    options = args[1] if len(args) > 1 else kwargs.get("options")
    return cast_to, options, bool(kwargs.get("stream")), kwargs.get("stream_cls")


def _url(options: Any) -> str:
    """The request's URL as routes name it (anthropic's beta resource adds ``?beta=true``)."""
    url = str(getattr(options, "url", ""))
    qualifiers = getattr(options, "qualifiers", None)
    if isinstance(qualifiers, Mapping) and qualifiers:
        url += "?" + urlencode(sorted(qualifiers.items()))
    return url


def _headers(options: Any) -> Mapping[str, Any]:
    headers = getattr(options, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


class Gate:
    """The patch of one client class's ``request()`` (sync or async)."""

    def __init__(self, spec: SDKSpec, target: Target, original: Any, options: Options) -> None:
        self.spec = spec
        self.target = target
        self.original = original
        self.routes: dict[str, Endpoint] = {}
        self.configure(options)
        self.driver = self.acall if target.is_async else self.call

    def configure(self, options: Options) -> None:
        self.options = options
        for endpoint in self.routes.values():
            endpoint.configure(options)

    def info(self) -> CacheInfo:
        infos = [e.memo.info() for e in self.routes.values()]
        return (
            CacheInfo(*(sum(counts) for counts in zip(*infos, strict=True)))
            if infos
            else CacheInfo(0, 0, 0, 0, 0, 0)
        )

    def clear(self) -> int:
        return sum(e.memo.clear() for e in self.routes.values())

    # ------------------------------------------------------------- what a request is

    def route(self, options: Any) -> tuple[Endpoint | None, str]:
        """The endpoint caching this request, or None and why it is not cached."""
        headers = _headers(options)
        if any(isinstance(n, str) and n.lower() == RAW_RESPONSE_HEADER for n in headers):
            return None, "with_raw_response / with_streaming_response"
        method, url = str(getattr(options, "method", "")).upper(), _url(options)
        namespace = self.spec.routes.get(url) if method == "POST" else None
        body = getattr(options, "json_data", None)
        if namespace is None or not isinstance(body, Mapping) or getattr(options, "files", None):
            return None, "an endpoint llm_memo does not cache"
        if self.spec.bypass(body):
            return None, "server-side state: background or conversation"
        endpoint = self.routes.get(url)
        if endpoint is None:
            target = Target(self.target.module, self.target.owner, self.target.method, namespace)
            endpoint = self.routes.setdefault(url, Endpoint(self.spec, target, self.original, self.options))
        return endpoint, ""

    def key_source(self, options: Any, sentinels: tuple[type, ...]) -> dict[str, Any]:
        """The request as the method patches' normaliser reads kwargs."""
        source = {**options.json_data, **(getattr(options, "extra_json", None) or {})}
        source["extra_query"] = getattr(options, "params", None)
        # anthropic marks headers to remove with its Omit sentinel.
        source["extra_headers"] = {k: v for k, v in _headers(options).items() if not isinstance(v, sentinels)}
        return source

    def uncached(self, options: Any, reason: str) -> None:
        """Count a request that is not cached; refuse it in replay mode."""
        path = urlsplit(str(getattr(options, "url", ""))).path
        name = f"{self.spec.package} {str(getattr(options, 'method', '')).upper()} {path}"
        note_uncached(name)
        if effective_mode(self.options.get("mode", None)) == "replay":
            raise CacheMiss(name, "-", namespace=self.spec.package, reason=reason)
        warn_limited(
            f"uncached:{name}",
            "llm_memo: %s is not cached (%s): it goes to the API on every call",
            name,
            reason,
        )

    # ------------------------------------------------------------- drivers

    def call(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if is_inside() or effective_mode(self.options.get("mode", None)) == "off":
            return wrapped(*args, **kwargs)
        cast_to, options, stream, stream_cls = _request_args(args, kwargs)
        endpoint, reason = self.route(options)
        if endpoint is None:
            self.uncached(options, reason)
            return inside(wrapped, *args, **kwargs)
        try:
            material = endpoint.material(instance, self.key_source(options, endpoint.sentinels), "request")
        except UncacheableArgument as exc:
            endpoint._uncacheable(exc)
            return inside(wrapped, *args, **kwargs)
        if stream:
            live = lambda: inside(wrapped, *args, **kwargs)  # noqa: E731
            return endpoint.open_stream(instance, material, live, stream_cls, _item_type(stream_cls))
        parser = options.post_parser if callable(options.post_parser) else None
        captured: list[Any] = []
        results: list[Any] = []

        def live_call(*_: Any) -> Any:
            opts = options.model_copy()
            opts.post_parser = _capture(parser, captured)  # the raw answer is what is stored
            result = inside(wrapped, cast_to, opts, stream=False, stream_cls=stream_cls)
            results.append(result)
            return _with_ids(captured[0] if captured else result, result)

        try:
            raw = endpoint.memo.call_sync(live_call, None, (material,), {})
        except UncacheableArgument as exc:
            endpoint._uncacheable(exc)
            return inside(wrapped, *args, **kwargs)
        return endpoint._result(raw, parser, results)

    async def acall(self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if is_inside() or effective_mode(self.options.get("mode", None)) == "off":
            return await wrapped(*args, **kwargs)
        cast_to, options, stream, stream_cls = _request_args(args, kwargs)
        endpoint, reason = self.route(options)
        if endpoint is None:
            self.uncached(options, reason)
            return await ainside(wrapped, *args, **kwargs)
        try:
            material = endpoint.material(instance, self.key_source(options, endpoint.sentinels), "request")
        except UncacheableArgument as exc:
            endpoint._uncacheable(exc)
            return await ainside(wrapped, *args, **kwargs)
        if stream:
            live = lambda: ainside(wrapped, *args, **kwargs)  # noqa: E731
            return await endpoint.open_astream(instance, material, live, stream_cls, _item_type(stream_cls))
        parser = options.post_parser if callable(options.post_parser) else None
        captured: list[Any] = []
        results: list[Any] = []

        async def live_call(*_: Any) -> Any:
            opts = options.model_copy()
            opts.post_parser = _capture(parser, captured)
            result = await ainside(wrapped, cast_to, opts, stream=False, stream_cls=stream_cls)
            results.append(result)
            return _with_ids(captured[0] if captured else result, result)

        try:
            raw = await endpoint.memo.call_async(live_call, None, (material,), {})
        except UncacheableArgument as exc:
            endpoint._uncacheable(exc)
            return await ainside(wrapped, *args, **kwargs)
        return endpoint._result(raw, parser, results)
