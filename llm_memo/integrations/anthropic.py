"""Cache the Anthropic SDK in place: ``llm_memo.patch_anthropic()``.

Covered, sync and async, for ``client.messages`` and ``client.beta.messages``:
``create`` (also ``stream=True``), the ``stream()`` helper (which does not go
through ``create``: it is run as is, and its request goes through the cache, so
``text_stream``, ``get_final_message()`` and ``output_format=`` behave as live)
and ``parse()``. ``stream()`` entries are their own (namespace
``anthropic.messages.stream``), apart from ``create(stream=True)``'s.

The key is the endpoint, the client's identity (base URL without user-info,
default query, ``anthropic-beta`` / ``anthropic-version`` /
``anthropic-workspace-id`` default headers) and every request kwarg except
:data:`DEFAULT_IGNORE`; ``betas`` and ``workspace_id`` stay in it.
The client's ``request()`` is patched too (see ``_gate``), as for OpenAI:
methods bound before patching are cached there; ``with_raw_response`` /
``with_streaming_response`` calls and other endpoints are not cached, and are
refused with ``CacheMiss`` in replay mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from .._config import UNSET, Mode
from .._core import CacheInfo
from .._options import Options
from ._gate import Gate
from ._sdk import Patcher, SDKSpec, Target, clean_url, header_subset, without_secrets

__all__ = ["DEFAULT_IGNORE", "cache_info", "patch_anthropic", "unpatch_anthropic"]

#: Request kwargs left out of the key by default (bookkeeping and transport).
DEFAULT_IGNORE = frozenset({"metadata", "user_profile_id", "timeout"})

_HEADERS = frozenset({"anthropic-beta", "anthropic-version", "anthropic-workspace-id"})


def _targets() -> tuple[Target, ...]:
    found: list[Target] = []
    for module, prefix, item in (
        (
            "anthropic.resources.messages.messages",
            "anthropic.messages",
            "anthropic.types:RawMessageStreamEvent",
        ),
        (
            "anthropic.resources.beta.messages.messages",
            "anthropic.beta.messages",
            "anthropic.types.beta:BetaRawMessageStreamEvent",
        ),
    ):
        for owner in ("Messages", "AsyncMessages"):
            found += [
                Target(module, owner, "create", f"{prefix}.create", item=item),
                Target(module, owner, "stream", f"{prefix}.stream", kind="hook"),
                Target(module, owner, "parse", f"{prefix}.parse", kind="hook"),
            ]
    for owner in ("SyncAPIClient", "AsyncAPIClient"):
        found.append(Target("anthropic._base_client", owner, "request", "anthropic.request", kind="gate"))
    return tuple(found)


def _identity(client: Any) -> dict[str, Any]:
    identity: dict[str, Any] = {"base_url": clean_url(str(client.base_url))}
    query = without_secrets(getattr(client, "_custom_query", None))
    if query:
        identity["query"] = query
    headers = header_subset(getattr(client, "_custom_headers", None), _HEADERS)
    if headers:
        identity["headers"] = headers
    return identity


def _credentials(client: Any) -> Iterable[Any]:
    yield getattr(client, "api_key", None)
    yield getattr(client, "auth_token", None)
    for name, value in (getattr(client, "_custom_headers", None) or {}).items():
        if isinstance(name, str) and name.lower() in ("authorization", "x-api-key"):
            yield value


def _terminal(item: Any) -> bool:
    return getattr(item, "type", None) == "message_stop"


SPEC = SDKSpec(
    package="anthropic",
    extra="llm-memo[anthropic]",
    targets=_targets(),
    request_id_header="request-id",
    ignore=DEFAULT_IGNORE,
    call_headers=_HEADERS,
    identity=_identity,
    credentials=_credentials,
    # anthropic sets _workspace_id beside _request_id on results; the stored entry
    # keeps only _request_id, so a hit must still have the attribute.
    private_attrs=("_workspace_id",),
    terminal=_terminal,
    routes={
        "/v1/messages": "anthropic.messages.create",
        "/v1/messages?beta=true": "anthropic.beta.messages.create",
    },
)

_patcher = Patcher(SPEC, gate=Gate)


def patch_anthropic(
    *,
    backend: Any = UNSET,
    ttl: Any = UNSET,
    mode: Mode | None = None,
    strict: Any = UNSET,
    version: Any = None,
    ignore: Iterable[str] | None = None,
    cache_if: Callable[[Any], bool] | None = None,
    isolate_credentials: bool | str | bytes = False,
    samples: int | None = None,
    lease: float | str | timedelta | None = None,
    defer: bool = True,
) -> None:
    """Cache the Anthropic SDK's message calls in this process.

    Options as for :func:`llm_memo.patch_openai`. By default answers that stopped on
    ``max_tokens``, ``refusal`` or ``model_context_window_exceeded`` are not stored.
    """
    options = Options(
        backend=backend,
        ttl=ttl,
        mode=mode,
        strict=strict,
        version=version,
        ignore=UNSET if ignore is None else frozenset(ignore),
        cache_if=cache_if,
        isolate_credentials=isolate_credentials,
        samples=samples,
        lease=lease,
    )
    _patcher.patch(options, defer=defer)


def unpatch_anthropic() -> None:
    """Restore the SDK's original methods (the exact function objects)."""
    _patcher.unpatch()


def cache_info() -> dict[str, CacheInfo]:
    """Hits, misses, stores... per patched Anthropic method."""
    return _patcher.info()
