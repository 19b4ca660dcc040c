"""Cache the OpenAI SDK in place: ``llm_memo.patch_openai()``.

Every client is covered (made before or after patching, the module-level client,
``AzureOpenAI``, ``with_options()`` copies), sync and async:

=====================================  =============================================
``chat.completions.create``            also ``stream=True`` and the ``.stream()`` helper
``chat.completions.parse``             hits carry the parsed object
``responses.create``                   also ``stream=True`` and the ``.stream()`` helper
``responses.parse``
``embeddings.create``
``completions.create``                 the legacy endpoint, also ``stream=True``
=====================================  =============================================

The key is the endpoint, the client's identity (base URL without user-info,
organization, project, default query, ``OpenAI-Beta``/organization/project default
headers) and every request kwarg except :data:`DEFAULT_IGNORE`. The client's
``request()`` is patched too (see ``_gate``): methods bound before patching are
cached there, keyed on the request body. Calls that are not cached:
``with_raw_response`` / ``with_streaming_response``, ``background=True``,
``conversation=...`` (server-side state that a live call also changes) and other
endpoints; they are counted in ``llm_memo.stats().uncached``, and refused with
``CacheMiss`` in replay mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from .._config import UNSET, Mode
from .._core import CacheInfo
from .._options import Options
from ._gate import Gate
from ._sdk import Patcher, SDKSpec, Target, clean_url, header_subset, is_secret_name, without_secrets

__all__ = ["DEFAULT_IGNORE", "cache_info", "patch_openai", "unpatch_openai"]

#: Request kwargs left out of the key by default: transport settings and
#: bookkeeping that do not change the answer. A hit echoes the first caller's
#: values where the response repeats them (``metadata``, ``user``, ``service_tier``...).
#: ``store`` is not one of them: it decides whether the answer's id can be used
#: later (``previous_response_id``, ``responses.retrieve()``, and for chat
#: completions ``chat.completions.retrieve()`` / ``messages.list()``), so a
#: ``store=True`` call must never get a ``store=False`` answer, on either endpoint.
DEFAULT_IGNORE = frozenset(
    {
        "timeout",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "metadata",
        "service_tier",
    }
)

_CALL_HEADERS = frozenset({"openai-beta"})
_CLIENT_HEADERS = frozenset({"openai-beta", "openai-organization", "openai-project"})
_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"


def _targets() -> tuple[Target, ...]:
    found: list[Target] = []
    for owner in ("Completions", "AsyncCompletions"):
        found += [
            Target(
                _CHAT,
                owner,
                "create",
                "openai.chat.completions.create",
                item="openai.types.chat:ChatCompletionChunk",
            ),
            Target(_CHAT, owner, "parse", "openai.chat.completions.parse", kind="hook"),
            # The legacy endpoint's classes have the same names: told apart by module.
            Target(
                "openai.resources.completions",
                owner,
                "create",
                "openai.completions.create",
                item="openai.types:Completion",
            ),
        ]
    for owner in ("Responses", "AsyncResponses"):
        found += [
            Target(
                _RESPONSES,
                owner,
                "create",
                "openai.responses.create",
                item="openai.types.responses:ResponseStreamEvent",
            ),
            Target(_RESPONSES, owner, "parse", "openai.responses.parse", kind="hook"),
        ]
    for owner in ("Embeddings", "AsyncEmbeddings"):
        found.append(Target("openai.resources.embeddings", owner, "create", "openai.embeddings.create"))
    for owner in ("SyncAPIClient", "AsyncAPIClient"):
        found.append(Target("openai._base_client", owner, "request", "openai.request", kind="gate"))
    return tuple(found)


def _identity(client: Any) -> dict[str, Any]:
    identity: dict[str, Any] = {"base_url": clean_url(str(client.base_url))}
    for name in ("organization", "project"):
        value = getattr(client, name, None)
        if value:
            identity[name] = value
    # Azure puts api-version here (and the deployment in the base URL).
    query = without_secrets(getattr(client, "_custom_query", None))
    if query:
        identity["query"] = query
    headers = header_subset(getattr(client, "_custom_headers", None), _CLIENT_HEADERS)
    if headers:
        identity["headers"] = headers
    return identity


def _credentials(client: Any) -> Iterable[Any]:
    yield getattr(client, "api_key", None)
    for name, value in (getattr(client, "_custom_headers", None) or {}).items():
        if isinstance(name, str) and name.lower() in ("authorization", "api-key"):
            yield value
    for name, value in (getattr(client, "_custom_query", None) or {}).items():
        if is_secret_name(str(name)):
            yield value


def _bypass(kwargs: Mapping[str, Any]) -> bool:
    # background=True answers "queued": the answer comes later, from retrieve().
    # conversation=...: the conversation's server-side state decides the answer, and a
    # live call appends to it, which a cache hit would silently skip.
    # (The SDK's NotGiven/Omit sentinels are falsy, like None.)
    return bool(kwargs.get("background")) or bool(kwargs.get("conversation"))


def _terminal(item: Any) -> bool:
    # A chat or legacy chunk with a finish_reason ends its choice (what follows is
    # the other choices' ends, the usage chunk of include_usage, and [DONE]); a
    # Responses stream ends with response.completed.
    if getattr(item, "type", None) == "response.completed":
        return True
    return any(getattr(c, "finish_reason", None) for c in getattr(item, "choices", None) or ())


SPEC = SDKSpec(
    package="openai",
    extra="llm-memo[openai]",
    targets=_targets(),
    request_id_header="x-request-id",
    ignore=DEFAULT_IGNORE,
    call_headers=_CALL_HEADERS,
    identity=_identity,
    credentials=_credentials,
    bypass=_bypass,
    terminal=_terminal,
    routes={
        "/chat/completions": "openai.chat.completions.create",
        "/responses": "openai.responses.create",
        "/embeddings": "openai.embeddings.create",
        "/completions": "openai.completions.create",
    },
)

_patcher = Patcher(SPEC, gate=Gate)


def patch_openai(
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
    """Cache the OpenAI SDK's calls in this process (see the module docstring).

    ``backend``, ``ttl``, ``mode``, ``strict``, ``version``, ``samples`` and ``lease``
    (non-streaming calls only) work as in
    :func:`llm_memo.llm_cached` (unset ones follow :func:`llm_memo.configure` and the
    ``LLM_MEMO_*`` environment). Other options:

    * ``ignore``: the kwargs left out of the key, replacing :data:`DEFAULT_IGNORE`
      (e.g. ``DEFAULT_IGNORE - {"service_tier"}``).
    * ``cache_if``: which answers to store; by default not those cut short or
      filtered (``finish_reason`` ``length`` / ``content_filter``) nor unfinished
      Responses (``status`` other than ``completed``).
    * ``isolate_credentials``: ``False`` (default) lets every API key of the same
      organization, project and base URL share answers; ``True`` adds an HMAC-SHA256
      fingerprint of the key to the client identity (a string: your own HMAC secret).
      The key itself never reaches key material, stored entries or logs.
    * ``defer``: when ``openai`` is not imported yet, patch it on import (the default);
      ``defer=False`` imports it now and fails if it is not installed.

    Calling it again changes the options; the SDK is still patched once.
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


def unpatch_openai() -> None:
    """Restore the SDK's original methods (the exact function objects)."""
    _patcher.unpatch()


def cache_info() -> dict[str, CacheInfo]:
    """Hits, misses, stores... per patched OpenAI method."""
    return _patcher.info()
