"""The memo logic, written once: build key, look up, decide, call, store, count.

:meth:`Memo.plan` decides what a call does (``_plan``); the sync and async drivers
here (and the streaming ones in ``_stream``) carry the plan out and differ only in
how they wait for I/O.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import threading
import time
import typing
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson

from . import _config
from ._binding import Binder, materialize
from ._config import UNSET, Mode, effective_mode, settings
from ._events import CallEvent, StoreOutcome, emit, listening, tokens_of
from ._flight import AsyncFlights, Flights
from ._identity import Identity, default_namespace
from ._lease import apeek, lease_async, lease_sync, peek
from ._log import log, warn_limited
from ._options import Options
from ._plan import POLICIES, Plan
from ._secrets import pepper as _pepper
from .backends import MISS, Backend, resolve_backend
from .errors import BackendError, CacheMiss, CorruptEntry, MissingExtra, UncacheableArgument, UnstorableResult
from .keys import (
    Path,
    RawCanonical,
    canonical,
    canonical_arguments,
    digest,
    fingerprint,
    key_material,
    material_bytes,
    raw_canonical,
    raw_json,
    raw_matches,
)
from .serialize import TypeRegistry, decode_value, encode_verified, pack_entry, unpack_entry

__all__ = ["CacheInfo", "Call", "Memo", "all_memos"]


class CacheInfo(NamedTuple):
    """Counters of one cached function (``f.cache_info()``)."""

    hits: int
    misses: int
    coalesced: int
    stores: int
    skipped: int
    errors: int


class Call(NamedTuple):
    """One call, ready for the cache: its key and the arguments to pass on.

    ``material`` is None when the key came from the raw-JSON shortcut; it is then
    rebuilt from ``raw``, the key's source as it was when keyed, only if an entry is
    stored (see :meth:`Memo.material`).
    """

    key: str
    fingerprint: bytes
    material: bytes | None
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    source: Any
    raw: bytes | None = None


_FIELDS = CacheInfo._fields

_memos: weakref.WeakSet[Memo] = weakref.WeakSet()

#: With ``samples``, the per-key turn counters are forgotten beyond this many keys.
_MAX_TRACKED_KEYS = 100_000
#: The raw-JSON -> key shortcuts of one function may hold about this many bytes
#: (some 3,500 chat-sized calls, or 65,000 tiny ones); then the map starts over.
_MAX_RAW_BYTES = 16 * 1024 * 1024
#: What one shortcut costs besides its raw bytes (the key string, fingerprint, tuple, slot).
_RAW_ENTRY_OVERHEAD = 256
#: What each remembered None's path adds (a tuple of a few steps).
_RAW_PATH_OVERHEAD = 96


_NO_OPTIONS = Options()


def all_memos() -> list[Memo]:
    """Every live cached function's memo (for process-wide stats)."""
    return list(_memos)


def _return_annotation(func: Callable[..., Any]) -> Any:
    """The function's return annotation, resolved even for classes local to a function.

    With ``from __future__ import annotations`` the annotation is a string; names
    the function closes over (a class defined beside it) resolve too.
    """
    try:
        return typing.get_type_hints(func).get("return")
    except Exception:
        pass
    try:
        local = inspect.getclosurevars(func).nonlocals
        return typing.get_type_hints(func, localns=dict(local)).get("return")
    except Exception:
        return None


class Memo:
    """The state and steps shared by every driver of one cached function."""

    #: The name of what is cached, when it is not ``func`` itself (an SDK endpoint).
    label: str | None = None

    def __init__(self, func: Callable[..., Any], options: Options = _NO_OPTIONS) -> None:
        # The values were checked (and normalised) when ``options`` was built.
        self.options = options
        self.samples: int | None = options.get("samples", None)
        #: Cross-process single-flight: seconds a lease on a missed key lives (None: off).
        self.lease: float | None = options.get("lease", None)
        self._turns: dict[str, int] = {}
        self._raw_keys: dict[bytes, tuple[str, bytes, int, tuple[Path, ...], tuple[Path, ...]]] = {}
        self._raw_size = 0
        self._frame_of: Any = None
        self._frame_bytes: tuple[bytes, bytes] | None = None
        self._saved_seconds = 0.0
        self._saved_tokens = 0
        self.flights = Flights()
        self.aflights = AsyncFlights()
        self.func = func
        self.namespace: str = options.get("namespace", None) or default_namespace(func)
        version = options.get("version", None)
        self.version = version
        self._version = canonical(version)
        # The code is the version unless the user pins one.
        self.identity = Identity(func, code=version is None)
        self.ignore: tuple[str, ...] = options.get("ignore", ())
        self.key_fn: Callable[..., Any] | None = options.get("key", None)
        #: With ``isolate_credentials``: the HMAC key credentials are keyed by (else left out).
        self.pepper = _pepper(options.get("isolate_credentials", False))
        self.cache_if: Callable[[Any], bool] | None = options.get("cache_if", None)
        self.clock: Callable[[], float] = options.get("clock", time.time)
        self.mode: Mode | None = options.get("mode", None)
        self._extra_types: tuple[type, ...] = options.get("types", ())
        self._types: TypeRegistry | None = None
        # Under a functools.wraps decorator the signature is the inner function's,
        # whose arguments the decorator may supply: bind leniently.
        wraps = getattr(func, "__wrapped__", None) is not None
        self.binder = Binder(inspect.signature(func), self.ignore, func, lenient=wraps)
        self._generation = -1
        self._backend: Backend | None = None
        self._ttl: float | None = None
        self._strict = False
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_FIELDS, 0)
        _memos.add(self)

    # ---------------------------------------------------------------- settings

    def _refresh(self) -> None:
        """Resolve options left to the defaults; again after every configure()."""
        gen = settings.generation
        opt_backend = self.options.backend
        spec = opt_backend if opt_backend is not UNSET else _config.default_backend_spec()
        try:
            self._backend = resolve_backend(spec)
        except (ImportError, TypeError, ValueError) as exc:
            from_env = opt_backend is UNSET and settings.backend is UNSET
            if not from_env or spec == _config.DEFAULT_BACKEND:
                raise
            # Well-formed, yet unusable (the redis extra missing, ...): the environment
            # must not break every call, so the default applies, with one warning.
            _config.env_invalid("LLM_MEMO_BACKEND", spec, str(exc), f"the {_config.DEFAULT_BACKEND} backend")
            self._backend = resolve_backend(_config.DEFAULT_BACKEND)
        opt_ttl, opt_strict = self.options.ttl, self.options.strict
        self._ttl = opt_ttl if opt_ttl is None or isinstance(opt_ttl, float) else _config.default_ttl()
        self._strict = bool(opt_strict) if opt_strict is not UNSET else _config.default_strict()
        self._generation = gen

    @property
    def backend(self) -> Backend:
        if self._generation != settings.generation or self._backend is None:
            self._refresh()
        assert self._backend is not None
        return self._backend

    @property
    def ttl(self) -> float | None:
        if self._generation != settings.generation:
            self._refresh()
        return self._ttl

    @property
    def strict(self) -> bool:
        if self._generation != settings.generation:
            self._refresh()
        return self._strict

    @property
    def types(self) -> TypeRegistry:
        # Resolved on first use: a method may name its own class, which does not
        # exist yet while the class body is being decorated.
        if self._types is None:
            func = self.func.func if isinstance(self.func, functools.partial) else self.func
            self._types = TypeRegistry.from_annotation(_return_annotation(func), self._extra_types)
        return self._types

    def current_mode(self) -> Mode:
        return effective_mode(self.mode)

    # ---------------------------------------------------------------- counting

    def count(self, field: str, n: int = 1) -> None:
        with self._lock:
            self._counts[field] += n

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(**self._counts)

    def reset_info(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(_FIELDS, 0)

    # ---------------------------------------------------------------- keys

    def prepare(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
        """Build the call's key; ``None`` when the arguments do not fit the signature.

        With ``samples=N`` each call of a key takes the next of N slots in turn, so
        the i-th call gets sample ``i % N`` (see :meth:`next_sample`).
        """
        binder = self.binder
        key_args, key_kwargs, args, kwargs = materialize(
            args, kwargs, binder.positional, instance is not None
        )
        source = self._source(instance, key_args, key_kwargs)
        if source is MISS:
            if self.binder.lenient:  # the call may well succeed: say why it is not cached
                warn_limited(
                    f"unbound:{self.namespace}",
                    "llm_memo: a call of %s does not fit the signature of the function under its "
                    "decorators; not cached",
                    self.namespace,
                )
            return None
        # Shortcut: the same plain arguments as a recent call reuse its key without
        # walking the prompt again (keys.raw_json explains why this is exact).
        raw = raw_json(source) if self.samples is None else None
        if raw is None:
            return self._walked(source, args, kwargs)
        known = self._raw_keys.get(raw)
        if known is not None and (not known[2] or raw_matches(source, known[3], known[4])):
            return Call(known[0], known[1], None, args, kwargs, source, raw)
        quick = raw_canonical(source, self.key_fn is None, self.pepper)
        if quick is None:
            # An enum, a NaN...: the full walk decides, and the bytes are not remembered
            # (they could match another value with another key: see keys.raw_json).
            return self._walked(source, args, kwargs)
        if quick.same:  # the raw bytes already are the canonical arguments: no second pass
            before, after = self._frame()
            data = before + raw + after
        else:
            data = material_bytes(
                key_material(self.namespace, self._version, quick.canonical, self.identity.material())
            )
        call = Call(digest(data), fingerprint(data), data, args, kwargs, source)
        self._remember(raw, call, quick)
        return call

    def _walked(self, source: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call:
        """The call's key by the full canonical walk."""
        material = key_material(
            self.namespace, self._version, self._canonical(source), self.identity.material()
        )
        if self.samples is not None:
            material["s"] = self.next_sample(digest(material_bytes(material)))
        data = material_bytes(material)
        return Call(digest(data), fingerprint(data), data, args, kwargs, source)

    def _remember(self, raw: bytes, call: Call, quick: RawCanonical) -> None:
        # A copy: orjson's own buffer holds some four times the bytes it returns, and
        # the cap below must bound the memory really used.
        raw = bytes(memoryview(raw))
        checks = len(quick.nones) + len(quick.texts)
        size = len(raw) + _RAW_ENTRY_OVERHEAD + _RAW_PATH_OVERHEAD * checks
        self._raw_size += size
        if self._raw_size > _MAX_RAW_BYTES:
            self._raw_keys.clear()  # only a cache: start over rather than grow
            self._raw_size = size
        self._raw_keys[raw] = (call.key, call.fingerprint, checks, quick.nones, quick.texts)

    def _frame(self) -> tuple[bytes, bytes]:
        """The key material's bytes around the arguments: ``{"a":`` and the rest.

        "a" sorts first, so the material is these two around the canonical arguments.
        """
        identity = self.identity.material()
        if self._frame_of is not identity or self._frame_bytes is None:
            whole = material_bytes(key_material(self.namespace, self._version, 0, identity))
            assert whole.startswith(b'{"a":0,')
            self._frame_bytes = (b'{"a":', whole[len(b'{"a":0') :])
            self._frame_of = identity
        return self._frame_bytes

    def _source(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """What the key is made of: the bound arguments, or ``key(...)``'s result; MISS if unbindable."""
        full = args if instance is None else (instance, *args)
        if self.key_fn is not None:
            return self.key_fn(*full, **kwargs)
        bound = self.binder.bind(full, kwargs)
        return MISS if bound is None else bound

    def _canonical(self, source: Any) -> Any:
        if self.key_fn is None:
            return self._canonical_arguments(source)
        # As one argument named "key(...)", which is what an error's path then starts with.
        return canonical_arguments({"key(...)": source}, self.pepper)["key(...)"]

    def material(self, call: Call) -> bytes:
        """The call's key material (rebuilt when the raw shortcut skipped it).

        Rebuilt from the bytes the key was looked up by, not from the arguments: the
        function may have changed them since (appended to its list argument).
        """
        if call.material is not None:
            return call.material
        source = call.source if call.raw is None else orjson.loads(call.raw)
        return material_bytes(
            key_material(self.namespace, self._version, self._canonical(source), self.identity.material())
        )

    def _canonical_arguments(self, bound: dict[str, Any]) -> dict[str, Any]:
        try:
            return canonical_arguments(bound, self.pepper)
        except UncacheableArgument as exc:
            name = exc.path
            if name in ("self", "cls"):
                raise UncacheableArgument(
                    name,
                    exc.value,
                    "instances cannot be told apart: define __llm_memo_key__() returning what "
                    "identifies the object, make it a dataclass or pydantic model, or pass "
                    f"ignore=['{name}'] if every instance answers alike",
                ) from None
            raise

    def next_sample(self, base_key: str) -> int:
        assert self.samples is not None
        with self._lock:
            turn = self._turns.get(base_key, 0)
            if len(self._turns) >= _MAX_TRACKED_KEYS and base_key not in self._turns:
                self._turns.clear()  # bounded memory; a cleared key restarts at sample 0
            self._turns[base_key] = turn + 1
        return turn % self.samples

    def keys_for(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
        """Every storage key of a call: one, or one per sample slot."""
        args, kwargs, _, _ = materialize(args, kwargs, self.binder.positional, instance is not None)
        source = self._source(instance, args, kwargs)
        if source is MISS:
            # Let the signature explain what is wrong with the arguments.
            full = (instance, *args) if instance is not None else args
            inspect.signature(self.func).bind(*full, **kwargs)
            raise TypeError("arguments do not match the function's signature")  # pragma: no cover
        material = key_material(
            self.namespace, self._version, self._canonical(source), self.identity.material()
        )
        if self.samples is None:
            return [digest(material_bytes(material))]
        return [digest(material_bytes({**material, "s": slot})) for slot in range(self.samples)]

    def key_for(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The key of a call (the first sample slot's, with ``samples``), without counting a turn."""
        return self.keys_for(instance, args, kwargs)[0]

    # ---------------------------------------------------------------- faults

    def fault(self, op: str, exc: BaseException) -> None:
        """A backend operation failed: raise in strict mode, else log and go on."""
        if isinstance(exc, MissingExtra):
            raise exc  # a setup error, not a store fault: failing open would hide it for good
        self.count("errors")
        if listening():
            emit(CallEvent("error", self.namespace, "", error=exc), record=False)
        backend = self._backend.url if self._backend is not None else "?"
        if self.strict:
            raise BackendError(f"{op} on {backend} failed: {type(exc).__name__}: {exc}") from exc
        warn_limited(
            f"fault:{backend}:{op}:{type(exc).__name__}",
            "llm_memo: %s on %s failed (%s: %s); continuing without the cache",
            op,
            backend,
            type(exc).__name__,
            exc,
        )

    # ---------------------------------------------------------------- entries

    def decode(self, call: Call, data: bytes | Any, started: float | None = None) -> Any:
        """Stored bytes to a fresh value, or MISS (counted either way).

        ``started`` (a ``perf_counter()`` reading) lets a hit event report its latency.
        """
        if data is MISS:
            self.count("misses")
            if log.isEnabledFor(logging.DEBUG):
                log.debug("llm_memo miss %s %s", self.namespace, call.key[:16])
            return MISS
        try:
            entry = unpack_entry(data, call.fingerprint)
            if entry.expires is not None and self.clock() >= entry.expires:
                self.count("misses")
                return MISS
            value = decode_value(entry.value, self.types)
        except CorruptEntry as exc:
            self.count("misses")
            warn_limited(
                f"corrupt:{self.namespace}:{exc}",
                "llm_memo: ignoring entry %s... of %s: %s",
                call.key[:16],
                self.namespace,
                str(exc),  # not the exception: a kept record would pin its frames
            )
            return MISS
        tokens = tokens_of(value)
        with self._lock:
            self._counts["hits"] += 1
            self._saved_seconds += entry.cost
            self._saved_tokens += tokens or 0
        if log.isEnabledFor(logging.DEBUG):  # not even the call, on the hit path
            log.debug("llm_memo hit %s %s", self.namespace, call.key[:16])
        if listening():
            emit(
                CallEvent(
                    "hit",
                    self.namespace,
                    call.key,
                    latency=None if started is None else time.perf_counter() - started,
                    age=self.clock() - entry.created,
                    saved_seconds=entry.cost,
                    saved_tokens=tokens,
                )
            )
        return value

    def savings(self) -> tuple[float, int]:
        """Seconds and tokens the hits of this function saved (in this process)."""
        with self._lock:
            return self._saved_seconds, self._saved_tokens

    def missed(self, call: Call, latency: float, stored: StoreOutcome | None = None) -> None:
        """Report a completed underlying call, once its result was dealt with (hooks, ``capture()``)."""
        if listening():
            emit(CallEvent("miss", self.namespace, call.key, latency=latency, stored=stored))

    @property
    def function(self) -> str:
        """What messages name: ``label``, else the cached function's ``module.qualname``."""
        if self.label is not None:
            return self.label
        func = self.func
        return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', type(func).__qualname__)}"

    def replay_miss(self, call: Call, function: str | None = None) -> CacheMiss:
        """The ``CacheMiss`` of a call in replay mode, naming the function and carrying the key material."""
        try:
            material: bytes | None = self.material(call)
        except Exception:  # pragma: no cover - a key was built from this material moments ago
            material = None
        return CacheMiss(function or self.function, call.key, namespace=self.namespace, material=material)

    def encode(
        self, call: Call, value: Any, snapshot: bytes | None = None, cost: float = 0.0
    ) -> bytes | None:
        """The entry to store for ``value``, or None when it must not be stored.

        ``snapshot`` is the value already encoded (streams encode each item as it
        passes, before the consumer can mutate it).
        """
        if self.cache_if is not None:
            try:
                keep = self.cache_if(value)
            except Exception as exc:
                warn_limited(f"cache_if:{self.namespace}", "llm_memo: cache_if raised %r; not storing", exc)
                keep = False
            if not keep:
                self.count("skipped")
                return None
        try:
            payload = encode_verified(value, self.types) if snapshot is None else snapshot
        except UnstorableResult as exc:
            self.count("skipped")
            warn_limited(
                f"unstorable:{self.namespace}:{type(value).__qualname__}",
                "llm_memo: not caching the result of %s: %s",
                self.namespace,
                exc,
            )
            return None
        now = self.clock()
        ttl = self.ttl
        expires = now + ttl if ttl is not None else None
        material = self.material(call) if settings.store_material else None
        return pack_entry(payload, call.fingerprint, now, expires, material, cost=cost)

    # ---------------------------------------------------------------- sync I/O

    def lookup(self, call: Call, started: float | None = None) -> Any:
        try:
            data = self.backend.get(self.namespace, call.key)
        except Exception as exc:
            self.fault("get", exc)
            self.count("misses")
            return MISS
        return self.decode(call, data, started)

    def fresh_copy(self, value: Any) -> Any:
        """An equal, independent copy of a result (for coalesced waiters)."""
        try:
            return decode_value(encode_verified(value, self.types), self.types)
        except Exception:  # unstorable, or an attribute that raises while it is read
            try:
                return copy.deepcopy(value)
            except Exception:
                return value  # uncopyable (a client, a lock): share it rather than fail

    def entry(self, call: Call, value: Any, snapshot: bytes | None = None, cost: float = 0.0) -> bytes | None:
        """:meth:`encode`, fail-open: the call is paid for, so nothing here may reach its caller.

        A result whose encoding raises something other than ``UnstorableResult`` (a
        raising ``computed_field`` or property, an odd attribute) is not stored.
        """
        try:
            return self.encode(call, value, snapshot, cost)
        except Exception as exc:
            self.count("skipped")
            warn_limited(
                f"unencodable:{self.namespace}:{type(value).__qualname__}:{type(exc).__name__}",
                "llm_memo: not caching the result of %s: encoding a %s raised %s: %s",
                self.namespace,
                type(value).__qualname__,
                type(exc).__name__,
                exc,
            )
            return None

    def store(self, call: Call, value: Any, snapshot: bytes | None = None, cost: float = 0.0) -> StoreOutcome:
        entry = self.entry(call, value, snapshot, cost)
        if entry is None:
            return "skipped"
        try:
            self.backend.set(self.namespace, call.key, entry, self.ttl)
        except Exception as exc:
            self.fault("set", exc)
            return "failed"
        return self._stored(call, cost)

    def _stored(self, call: Call, cost: float) -> StoreOutcome:
        self.count("stores")
        if listening():
            emit(CallEvent("store", self.namespace, call.key, saved_seconds=cost), record=False)
        return "stored"

    def invalidate(self, keys: list[str]) -> bool:
        found = False
        for key in keys:
            try:
                found = self.backend.delete(self.namespace, key) or found
            except Exception as exc:
                self.fault("delete", exc)
        return found

    def clear(self) -> int:
        try:
            return self.backend.clear(self.namespace)
        except Exception as exc:
            self.fault("clear", exc)
            return 0

    # ---------------------------------------------------------------- async I/O

    async def alookup(self, call: Call, started: float | None = None) -> Any:
        try:
            data = await self.backend.aget(self.namespace, call.key)
        except Exception as exc:
            self.fault("get", exc)
            self.count("misses")
            return MISS
        return self.decode(call, data, started)

    async def astore(
        self, call: Call, value: Any, snapshot: bytes | None = None, cost: float = 0.0
    ) -> StoreOutcome:
        entry = self.entry(call, value, snapshot, cost)
        if entry is None:
            return "skipped"
        try:
            await self.backend.aset(self.namespace, call.key, entry, self.ttl)
        except Exception as exc:
            self.fault("set", exc)
            return "failed"
        return self._stored(call, cost)

    # ---------------------------------------------------------------- drivers

    def plan(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
        """What this call does; None when it runs uncached (mode "off", or arguments that do not bind)."""
        policy = POLICIES[effective_mode(self.mode)]
        if not policy.cache:
            return None
        call = self.prepare(instance, args, kwargs)
        if call is None:
            return None
        lease = self.lease if policy.lease else None
        return Plan(call, policy.lookup, policy.replay, policy.store, lease)

    def on_miss(self, plan: Plan) -> None:
        """A lookup of ``plan`` missed: in replay mode that is the end of the call."""
        if plan.replay:
            raise self.replay_miss(plan.call)

    def call_sync(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = time.perf_counter()
        plan = self.plan(instance, args, kwargs)
        if plan is None:
            return wrapped(*args, **kwargs)  # unbindable arguments raise the function's own TypeError
        call = plan.call
        mark = self.flights.mark()
        if plan.lookup:
            value = self.lookup(call, started)
            if value is not MISS:
                return value
            self.on_miss(plan)

        def compute() -> Any:
            began = time.perf_counter()
            result = wrapped(*call.args, **call.kwargs)
            cost = time.perf_counter() - began
            self.missed(call, cost, self.store(call, result, cost=cost) if plan.store else None)
            return result

        def lead() -> Any:
            # Only when a flight of this key ended since our lookup: it may have stored
            # the result after we missed (saves a second read, a round trip on Redis).
            if plan.lookup and self.flights.landed_since(call.key, mark):
                stored = peek(self, call)
                if stored is not MISS:
                    self.count("coalesced")
                    return stored
            return compute()

        run = lead
        if plan.lease is not None:
            run = functools.partial(lease_sync, self, call, plan.lease, compute)  # it peeks too
        value, led = self.flights.run(call.key, run, self.fresh_copy)
        if not led:
            self.count("coalesced")
        return value

    async def call_async(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        started = time.perf_counter()
        plan = self.plan(instance, args, kwargs)
        if plan is None:
            return await wrapped(*args, **kwargs)
        call = plan.call
        mark = self.aflights.mark()
        if plan.lookup:
            value = await self.alookup(call, started)
            if value is not MISS:
                return value
            self.on_miss(plan)

        async def compute() -> Any:
            began = time.perf_counter()
            result = await wrapped(*call.args, **call.kwargs)
            cost = time.perf_counter() - began
            stored = await self.astore(call, result, cost=cost) if plan.store else None
            self.missed(call, cost, stored)
            return result

        async def alead() -> Any:
            if plan.lookup and self.aflights.landed_since(call.key, mark):
                stored = await apeek(self, call)
                if stored is not MISS:
                    self.count("coalesced")
                    return stored
            return await compute()

        arun = alead
        if plan.lease is not None:
            arun = functools.partial(lease_async, self, call, plan.lease, compute)
        value, led = await self.aflights.run(call.key, arun, self.fresh_copy)
        if not led:
            self.count("coalesced")
        return value
