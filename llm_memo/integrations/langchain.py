"""LangChain's LLM cache, on llm_memo's backends: ``set_llm_cache(LLMMemoCache(...))``.

::

    from langchain_core.globals import set_llm_cache
    from llm_memo.integrations.langchain import LLMMemoCache

    set_llm_cache(LLMMemoCache(backend="sqlite", ttl="7d"))

Every LangChain chat model and LLM then reads and fills the cache (or pass
``cache=LLMMemoCache(...)`` to one model). What llm_memo adds to LangChain's own
caches: every backend (memory, disk, SQLite, Redis, tiers, cassettes), TTLs,
the modes (``mode="replay"`` raises :class:`llm_memo.CacheMiss` instead of
calling the model), and counters in :func:`llm_memo.stats` (under the namespace,
``"langchain"`` by default) and :meth:`LLMMemoCache.cache_info`.

**Keys.** The key material is ``{"prompt": prompt, "llm_string": llm_string}``
as LangChain passes them (the serialised messages, and the model's parameters),
under the namespace and ``version``.

**Values are data, never code.** LangChain's own caches store
``langchain_core.load.dumps()`` output and read it back with ``loads()``, which
instantiates the classes an entry names. Here a generation is stored as plain
JSON (its class name and ``model_dump(mode="json")``) and rebuilt only as one of
an allow-list: ``Generation``, ``ChatGeneration`` and their chunks, with a message
of one of ``langchain_core.messages``' own classes (``AIMessage``,
``HumanMessage``, ... and their chunks). Anything else in an entry (say a
``{"lc": 1, "type": "constructor", ...}`` object) stays inert data, and an entry
that does not rebuild is a miss.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

try:
    from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
except ImportError as _exc:
    from .._extras import missing_extra

    _error = missing_extra("llm_memo.integrations.langchain", _exc)
    if _error is None:
        raise
    raise _error from None  # one line naming the extra, not two tracebacks
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    ChatMessageChunk,
    FunctionMessage,
    FunctionMessageChunk,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    SystemMessageChunk,
    ToolMessage,
    ToolMessageChunk,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, GenerationChunk

from .._config import UNSET, Mode
from .._core import CacheInfo, Call, Memo
from .._log import warn_limited
from .._options import Options
from ..backends import MISS, Backend
from ..errors import UnstorableResult

__all__ = ["LLMMemoCache"]

#: The generation classes an entry may be rebuilt as (by class name).
GENERATION_TYPES: dict[str, type[Generation]] = {
    cls.__name__: cls for cls in (Generation, GenerationChunk, ChatGeneration, ChatGenerationChunk)
}
#: The message classes a chat generation's message may be rebuilt as (by class name).
MESSAGE_TYPES: dict[str, type[BaseMessage]] = {
    cls.__name__: cls
    for cls in (
        AIMessage,
        AIMessageChunk,
        HumanMessage,
        HumanMessageChunk,
        SystemMessage,
        SystemMessageChunk,
        ToolMessage,
        ToolMessageChunk,
        FunctionMessage,
        FunctionMessageChunk,
        ChatMessage,
        ChatMessageChunk,
    )
}

#: Missed lookups remembered to time the model call that follows (for "time saved").
_MAX_PENDING = 1024


def _langchain_call(prompt: str, llm_string: str) -> Any:  # pragma: no cover - never called
    """What the memo keys: LangChain's two strings (the model is LangChain's to call)."""
    raise AssertionError("LLMMemoCache stores what LangChain hands it")


def _allowed_name(cls: type, allowed: dict[str, Any]) -> str | None:
    """The allow-listed class ``cls`` is stored as: itself, or its nearest allowed base."""
    for base in cls.__mro__:
        if allowed.get(base.__name__) is base:
            return str(base.__name__)
    return None


def _encode(generations: Sequence[Generation]) -> list[dict[str, Any]]:
    """Generations to plain JSON data; raises UnstorableResult."""
    out: list[dict[str, Any]] = []
    for generation in generations:
        name = _allowed_name(type(generation), GENERATION_TYPES)
        if name is None:
            raise UnstorableResult(f"cannot cache a {type(generation).__qualname__}: not a Generation")
        message = getattr(generation, "message", None)
        try:
            item: dict[str, Any] = {
                "class": name,
                "data": generation.model_dump(mode="json", exclude={"message"}),
            }
            if isinstance(message, BaseMessage):
                message_name = _allowed_name(type(message), MESSAGE_TYPES)
                if message_name is None:
                    raise UnstorableResult(f"cannot cache a {type(message).__qualname__} message")
                item["message"] = {"class": message_name, "data": message.model_dump(mode="json")}
        except UnstorableResult:
            raise
        except Exception as exc:  # pydantic cannot put some value of it in JSON
            raise UnstorableResult(f"cannot cache {name}: {type(exc).__name__}: {exc}") from exc
        out.append(item)
    return out


def _decode(value: Any) -> list[Generation]:
    """Plain data back to generations, by the allow-lists only; raises ValueError."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of generations, found {type(value).__name__}")
    generations: list[Generation] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
            raise ValueError("a generation must be {'class': ..., 'data': {...}}")
        cls = GENERATION_TYPES.get(item.get("class"))  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"generation class {str(item.get('class'))[:80]!r} is not allowed")
        data = dict(item["data"])
        if "message" in item:
            message = item["message"]
            if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
                raise ValueError("a message must be {'class': ..., 'data': {...}}")
            message_cls = MESSAGE_TYPES.get(message.get("class"))  # type: ignore[arg-type]
            if message_cls is None:
                raise ValueError(f"message class {str(message.get('class'))[:80]!r} is not allowed")
            data["message"] = message_cls.model_validate(message["data"])
        generations.append(cls.model_validate(data))
    return generations


class LLMMemoCache(BaseCache):
    """A LangChain ``BaseCache`` (sync and async) backed by an llm_memo backend.

    ``backend``, ``ttl``, ``version``, ``mode`` and ``strict`` work as in
    :func:`llm_memo.llm_cached` (unset ones follow :func:`llm_memo.configure` and
    the ``LLM_MEMO_*`` environment). ``namespace`` keeps these entries apart from
    every other function's (``clear()`` forgets only them). ``cache_if`` is given
    the list of generations LangChain wants stored and decides whether to store it.
    """

    def __init__(
        self,
        backend: Any = UNSET,
        *,
        ttl: Any = UNSET,
        namespace: str = "langchain",
        version: Any = None,
        mode: Mode | None = None,
        strict: Any = UNSET,
        cache_if: Callable[[Sequence[Generation]], bool] | None = None,
    ) -> None:
        options = Options(
            backend=backend, ttl=ttl, namespace=namespace, version=version, mode=mode, strict=strict
        )
        self._memo = Memo(_langchain_call, options)
        self._memo.label = self._memo.namespace
        self._cache_if = cache_if
        self._pending: dict[str, float] = {}

    # ------------------------------------------------------------------ helpers

    @property
    def backend(self) -> Backend:
        """The resolved backend."""
        return self._memo.backend

    @property
    def namespace(self) -> str:
        return self._memo.namespace

    def cache_info(self) -> CacheInfo:
        """Hits, misses, stores... of this cache (also in :func:`llm_memo.stats`)."""
        return self._memo.info()

    def cache_key(self, prompt: str, llm_string: str) -> str:
        """The 64-hex key of a lookup."""
        return self._memo.key_for(None, (prompt, llm_string), {})

    def _call(self, prompt: str, llm_string: str) -> Call:
        call = self._memo.prepare(None, (prompt, llm_string), {})
        if call is None:  # pragma: no cover - two positional strings always bind
            raise TypeError("LLMMemoCache: prompt and llm_string must be strings")
        return call

    def _hit(self, call: Call, value: Any, started: float) -> RETURN_VAL_TYPE | None:
        if value is MISS:
            if self._memo.current_mode() == "replay":
                raise self._memo.replay_miss(call)
            if len(self._pending) >= _MAX_PENDING:
                self._pending.clear()
            self._pending[call.key] = started
            return None
        try:
            return _decode(value)
        except Exception as exc:  # not ours to rebuild: treat as a miss, never run it
            warn_limited(
                f"langchain-entry:{self._memo.namespace}",
                "llm_memo: ignoring a LangChain cache entry of %s that does not rebuild (%s)",
                self._memo.namespace,
                exc,
            )
            return None

    def _prepare_store(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> Any:
        """The call and payload to store, or None when nothing is to be stored."""
        if self._memo.current_mode() in ("off", "readonly", "replay"):
            return None
        if self._cache_if is not None:
            try:
                keep = self._cache_if(return_val)
            except Exception as exc:
                warn_limited(f"cache_if:{self.namespace}", "llm_memo: cache_if raised %r; not storing", exc)
                keep = False
            if not keep:
                self._memo.count("skipped")
                return None
        try:
            payload = _encode(return_val)
        except UnstorableResult as exc:
            self._memo.count("skipped")
            warn_limited(f"unstorable:{self.namespace}", "llm_memo: not caching a LangChain result: %s", exc)
            return None
        call = self._call(prompt, llm_string)
        started = self._pending.pop(call.key, None)
        # the model call LangChain made after the miss (None: not a miss we saw)
        cost = None if started is None else time.perf_counter() - started
        return call, payload, cost

    # ------------------------------------------------------------------ BaseCache

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The cached generations, or None (``mode="replay"``: raises CacheMiss instead)."""
        if self._memo.current_mode() in ("off", "refresh"):
            return None
        started = time.perf_counter()
        call = self._call(prompt, llm_string)
        return self._hit(call, self._memo.lookup(call, started), started)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        prepared = self._prepare_store(prompt, llm_string, return_val)
        if prepared is not None:
            call, payload, cost = prepared
            stored = self._memo.store(call, payload, cost=cost or 0.0)
            if cost is not None:
                self._memo.missed(call, cost, stored)

    def clear(self, **kwargs: Any) -> None:
        """Forget this cache's entries (its namespace only)."""
        self._memo.clear()

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        if self._memo.current_mode() in ("off", "refresh"):
            return None
        started = time.perf_counter()
        call = self._call(prompt, llm_string)
        return self._hit(call, await self._memo.alookup(call, started), started)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        prepared = self._prepare_store(prompt, llm_string, return_val)
        if prepared is not None:
            call, payload, cost = prepared
            stored = await self._memo.astore(call, payload, cost=cost or 0.0)
            if cost is not None:
                self._memo.missed(call, cost, stored)

    async def aclear(self, **kwargs: Any) -> None:
        try:
            await self._memo.backend.aclear(self._memo.namespace)
        except Exception as exc:
            self._memo.fault("clear", exc)

    def __repr__(self) -> str:
        return f"LLMMemoCache(backend={self._memo.backend.url!r}, namespace={self._memo.namespace!r})"
