"""Why did a call miss? Compare its key material with the closest stored entries.

Every entry carries the key material of the call it answers (unless
``configure(store_material=False)``), so a miss can be explained: list the
stored entries of the same function, rank them by how much their material
differs from this call's, and show the difference path by path::

    >>> from llm_memo.explain import explain
    >>> call = {"prompt": "hi", "temperature": 0.7}
    >>> for found in explain("app.ask", call, backend="disk"):  # doctest: +SKIP
    ...     print(found.key[:12], found.distance)
    ...     for difference in found.differences:
    ...         print("   ", difference)
    3f2a9c0d81e4 1
        a.temperature: 0 → 0.7

Differences read from the stored entry to this call: ``a.temperature: 0 → 0.7``
(changed), ``a.messages[3]: added {...}`` (this call has an extra message),
``a.top_p: new kwarg`` (an argument the stored call did not have). The distance
is the number of differing leaf values (an added message counts each of its
fields), so the closest entry is the one a small edit would have hit.

``arguments`` are plain JSON-like values, keyed as the decorator keys them: the
function's bound arguments with defaults applied, so pass every argument, as in
``{"prompt": "hi", "model": "gpt-4o-mini", "temperature": 0.7}``. An SDK
integration's entries (``openai.chat.completions.create``...) hold their call
under ``{"material": {"client": ..., "endpoint": ..., "kwargs": ...}}``: the
easiest way to explain one of those is by key, with :func:`explain_material`
on the material of the entry that was stored after the miss.

A decorated function's material also holds its identity under ``id``: the
digest of its code (``id.code``) and the closure values it was made with
(``id.closure.model``...). A miss because the function was edited reads
"the function's code changed". ``arguments`` alone cannot say what the current
code is, so a call given by its arguments is compared by arguments (and
version) only; explain the key stored after the miss to compare the code too.
"""

from __future__ import annotations

import difflib
import heapq
import importlib
import inspect
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ._binding import Binder
from ._sentinel import Sentinel
from .backends import Backend
from .errors import CorruptEntry
from .keys import canonical, digest, key_material, material_bytes
from .serialize import read_entry

__all__ = [
    "ABSENT",
    "BoundCall",
    "Comparison",
    "Difference",
    "Explanation",
    "bind_call",
    "call_material",
    "compare",
    "diff_material",
    "explain",
    "explain_material",
]

DifferenceKind = Literal["changed", "added", "removed", "new kwarg", "dropped kwarg"]


class _Absent(Sentinel, name="ABSENT"):
    """The value on the side of a difference where the path does not exist."""


#: ``Difference.stored`` / ``.call`` when the path is missing on that side.
ABSENT: Any = _Absent()


def _compact(value: Any, width: int = 80) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class Difference:
    """One path where a stored entry's key material and the call's differ."""

    #: ``a.temperature``, ``a.messages[3]``, ``v`` (the function's version)...
    path: str
    kind: DifferenceKind
    #: The stored entry's value at ``path`` (:data:`ABSENT` when it has none).
    stored: Any
    #: This call's value at ``path`` (:data:`ABSENT` when it has none).
    call: Any
    #: How many leaf values differ under ``path`` (its weight in the distance).
    leaves: int = 1

    def describe(self, render: Callable[[Any], str] = _compact) -> str:
        """``a.temperature: 0 → 0.7``, ``a.messages[3]: added {...}``, ``a.top_p: new kwarg``..."""
        if self.path == "id.code":
            return _describe_code(self, render)
        if self.kind == "changed":
            return f"{self.path}: {render(self.stored)} → {render(self.call)}"
        if self.kind == "added":
            return f"{self.path}: added {render(self.call)}"
        if self.kind == "removed":
            return f"{self.path}: removed {render(self.stored)} (not in this call)"
        if self.kind == "new kwarg":
            return f"{self.path}: new kwarg (= {render(self.call)})"
        return f"{self.path}: kwarg not in this call (stored with {render(self.stored)})"

    def __str__(self) -> str:
        return self.describe()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.stored is not ABSENT:
            out["stored"] = self.stored
        if self.call is not ABSENT:
            out["call"] = self.call
        return out


def _describe_code(d: Difference, render: Callable[[Any], str]) -> str:
    if d.kind == "changed":
        return f"the function's code changed (id.code: {render(d.stored)} → {render(d.call)})"
    if d.kind == "removed":
        return "the function's code no longer counts: it is pinned by version= (id.code removed)"
    return f"the function's code now counts: version= is no longer set (id.code = {render(d.call)})"


@dataclass(frozen=True)
class Explanation:
    """A stored entry close to the call, and how its key material differs."""

    namespace: str
    #: The stored entry's key.
    key: str
    #: Differing leaf values; 0 means this very call is stored.
    distance: int
    differences: tuple[Difference, ...]
    created: float
    expires: float | None
    #: The entry exists but has expired, which is a miss too.
    expired: bool = False
    material: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def exact(self) -> bool:
        return self.distance == 0


@dataclass
class Comparison:
    """Everything :func:`compare` found (the CLI prints all of it)."""

    namespace: str
    #: The key of the call being explained.
    key: str
    closest: list[Explanation]
    #: Entries of the namespace that were compared.
    compared: int = 0
    #: Entries of the namespace stored without key material (``store_material=False``).
    without_material: int = 0
    #: Values that are not readable llm_memo entries.
    unreadable: int = 0
    #: The call's material has no ``id`` (built from arguments alone) while stored
    #: entries have one: their code and closure values were not compared.
    identity_unknown: bool = False


# --------------------------------------------------------------------- material


def call_material(namespace: str, arguments: Any, version: Any = None) -> dict[str, Any]:
    """The key material the decorator builds for a call with these (plain) ``arguments``."""
    return key_material(namespace, version, canonical(arguments))


@dataclass
class BoundCall:
    """A call's arguments as the decorator keys them, and how they were completed."""

    arguments: dict[str, Any]
    #: Whether the function was imported and its signature applied (defaults, ``ignore``).
    bound: bool
    #: What was done, or why it could not be: one line for people.
    note: str


def bind_call(namespace: str, arguments: dict[str, Any]) -> BoundCall:
    r"""``arguments`` completed with the defaults of the function ``namespace`` names.

    The decorator keys a call by every parameter, defaults included, so a call
    given without them would never match. ``namespace`` is read as
    ``module.qualname``: the module is imported (running its code, as any import
    does) and the function's signature binds the arguments as the decorator does
    (defaults applied, ``ignore``\ d names left out). When it cannot be imported
    (a custom ``namespace=``, a lambda or a local function), the arguments are
    returned as given and ``note`` says why.
    """
    try:
        function = _import_function(namespace)
        signature = inspect.signature(function)
    except Exception as exc:  # the module's own import may fail in any way
        why = f"{type(exc).__name__}: {exc}" if not isinstance(exc, LookupError) else str(exc)
        return BoundCall(
            dict(arguments),
            False,
            f"cannot import {namespace} ({why}): defaults not applied, give every argument",
        )
    parameters = getattr(function, "cache_parameters", None)
    ignore: Iterable[str] = parameters().get("ignore") or () if callable(parameters) else ()
    bound = Binder(signature, ignore).bind((), dict(arguments))
    if bound is not None:
        added = [name for name in bound if name not in arguments]
        note = f"defaults of {namespace} applied" + (f": {', '.join(added)}" if added else " (none missing)")
        return BoundCall(bound, True, note)
    # Arguments that do not bind (a required one missing, an unknown name): add the
    # defaults anyway, so the diff shows only what really differs.
    completed = dict(arguments)
    for name, parameter in signature.parameters.items():
        if name not in completed and parameter.default is not inspect.Parameter.empty:
            completed[name] = parameter.default
    return BoundCall(
        completed, True, f"defaults of {namespace} applied, but the arguments do not fit its signature"
    )


def _import_function(namespace: str) -> Any:
    """The object ``module.qualname`` names: the longest importable module prefix, then attributes."""
    parts = namespace.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            target: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if module_name == missing or module_name.startswith(missing + "."):
                continue  # this prefix is not a module: try a shorter one
            raise
        for attribute in parts[split:]:
            try:
                target = getattr(target, attribute)
            except AttributeError:
                raise LookupError(f"{module_name} has no {'.'.join(parts[split:])}") from None
        if not callable(target):
            raise LookupError(f"{namespace} is not a function")
        return target
    raise LookupError(f"no module named {parts[0]!r}")


def _key_of(material: dict[str, Any]) -> str:
    return digest(material_bytes(material))


# --------------------------------------------------------------------- diff

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _child(path: str, name: str) -> str:
    if _IDENTIFIER.match(name):
        return f"{path}.{name}" if path else name
    return f"{path}[{orjson.dumps(name).decode()}]"


def _same(a: Any, b: Any) -> bool:
    # Not ==: True == 1 and 1 == 1.0 in Python, but they are different key material.
    return type(a) is type(b) and (a == b if not isinstance(a, dict | list) else _dump(a) == _dump(b))


def _dump(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _leaves(value: Any) -> int:
    if isinstance(value, dict) and value:
        return sum(_leaves(v) for v in value.values())
    if isinstance(value, list) and value:
        return sum(_leaves(v) for v in value)
    return 1


def _is_arguments(path: str) -> bool:
    """Whether the dict at ``path`` holds a call's arguments (its keys are kwargs)."""
    return path == "a" or path.endswith(".kwargs")


def diff_material(stored: Any, call: Any, path: str = "") -> list[Difference]:
    """The differences between a stored entry's key material and a call's, stored → call."""
    out: list[Difference] = []
    _diff(stored, call, path, out)
    return out


def _diff(stored: Any, call: Any, path: str, out: list[Difference]) -> None:
    if _same(stored, call):
        return
    if isinstance(stored, dict) and isinstance(call, dict):
        arguments = _is_arguments(path)
        for name in sorted(stored.keys() | call.keys()):
            where = _child(path, name)
            if name not in stored:
                kind: DifferenceKind = "new kwarg" if arguments else "added"
                out.append(Difference(where, kind, ABSENT, call[name], _leaves(call[name])))
            elif name not in call:
                kind = "dropped kwarg" if arguments else "removed"
                out.append(Difference(where, kind, stored[name], ABSENT, _leaves(stored[name])))
            else:
                _diff(stored[name], call[name], where, out)
        return
    if isinstance(stored, list) and isinstance(call, list):
        _diff_list(stored, call, path, out)
        return
    leaves = 1 if not isinstance(stored, dict | list) and not isinstance(call, dict | list) else None
    out.append(Difference(path, "changed", stored, call, leaves or max(_leaves(stored), _leaves(call))))


def _diff_list(stored: list[Any], call: list[Any], path: str, out: list[Difference]) -> None:
    # Align the two sequences first, so one message inserted in the middle of a
    # conversation reads as "added", not as every later message "changed".
    matcher = difflib.SequenceMatcher(
        a=[_dump(x) for x in stored], b=[_dump(x) for x in call], autojunk=False
    )
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for offset in range(paired):
            _diff(stored[i1 + offset], call[j1 + offset], f"{path}[{j1 + offset}]", out)
        for j in range(j1 + paired, j2):
            out.append(Difference(f"{path}[{j}]", "added", ABSENT, call[j], _leaves(call[j])))
        for i in range(i1 + paired, i2):
            # Named by the stored index: the call has no element there.
            out.append(Difference(f"{path}[{i}]", "removed", stored[i], ABSENT, _leaves(stored[i])))


# --------------------------------------------------------------------- search


def _material_of(data: bytes) -> tuple[Any, float, float | None] | None:
    """(material, created, expires) of an entry, or None when it carries no material."""
    entry = read_entry(data)
    if entry.material is None:
        return None
    try:
        material = orjson.loads(entry.material)
    except orjson.JSONDecodeError:
        raise CorruptEntry("stored key material is not JSON") from None
    return material, entry.created, entry.expires


def compare(
    material: dict[str, Any],
    backend: Backend,
    *,
    limit: int = 3,
    exclude: Iterable[str] = (),
    clock: Callable[[], float] = time.time,
) -> Comparison:
    """Rank the stored entries of ``material["ns"]`` by closeness to ``material``.

    ``exclude`` names keys to leave out (the entry being explained itself). An
    entry whose key is the call's own key comes first with distance 0.
    """
    namespace = str(material.get("ns", ""))
    key = _key_of(material)
    skip = set(exclude)
    result = Comparison(namespace, key, [])
    # Material built from arguments alone cannot know the function's code: compare
    # what it does know rather than call every entry "different code".
    without_id = "id" not in material
    ranked: list[tuple[int, int, Explanation]] = []
    now = clock()
    for stored in backend.entries(namespace):
        if stored.namespace != namespace or stored.key in skip:
            continue
        try:
            found = _material_of(stored.value)
        except CorruptEntry:
            result.unreadable += 1
            continue
        if found is None:
            result.without_material += 1
            continue
        result.compared += 1
        theirs, created, expires = found
        compared = theirs
        if without_id and isinstance(theirs, dict) and "id" in theirs:
            compared = {k: v for k, v in theirs.items() if k != "id"}
            result.identity_unknown = True
        differences = tuple(diff_material(compared, material))
        distance = sum(d.leaves for d in differences)
        if distance == 0 and stored.key != key and compared is theirs:
            # Same material under another key: cannot happen for an honest store.
            continue
        explanation = Explanation(
            namespace,
            stored.key,
            distance,
            differences,
            created,
            expires,
            expired=expires is not None and expires <= now,
            material=theirs if isinstance(theirs, dict) else {},
        )
        # Closest first; among equals, the most recently stored first.
        ranked.append((distance, -int(created * 1000), explanation))
        if len(ranked) > 4 * max(limit, 1) + 64:
            ranked = heapq.nsmallest(max(limit, 1), ranked, key=lambda r: (r[0], r[1], r[2].key))
    result.closest = [
        r[2] for r in heapq.nsmallest(max(limit, 0), ranked, key=lambda r: (r[0], r[1], r[2].key))
    ]
    return result


def explain_material(
    material: dict[str, Any],
    backend: Backend | str | None = None,
    *,
    limit: int = 3,
    exclude: Iterable[str] = (),
) -> list[Explanation]:
    """The ``limit`` stored entries closest to a call given by its key material."""
    return compare(material, _backend(backend), limit=limit, exclude=exclude).closest


def explain(
    namespace: str,
    arguments: Any,
    backend: Backend | str | None = None,
    version: Any = None,
    limit: int = 3,
) -> list[Explanation]:
    """Why would this call miss? The ``limit`` closest stored entries of ``namespace``.

    ``arguments`` is the call's bound arguments (a dict of plain JSON-like
    values, defaults included), ``version`` the function's ``version=``.
    ``backend`` defaults to the configured one (``configure(backend=...)``,
    ``LLM_MEMO_BACKEND``). An exact match (``distance == 0``) comes first: then
    the call is stored, and misses only if that entry has ``expired``.
    """
    return explain_material(call_material(namespace, arguments, version), backend, limit=limit)


def _backend(spec: Backend | str | None) -> Backend:
    from ._config import default_backend_spec
    from .backends import resolve_backend

    return resolve_backend(default_backend_spec() if spec is None else spec)
