"""What tells one cached function from another: its name, its code, its closure.

Two functions must never share entries by accident, so the key material of a
call carries, besides the namespace (``module.qualname``):

* ``code``: a digest of the function's own source, as a normalised walk of its
  syntax tree. Comments, docstrings, formatting, decorators and line numbers do
  not count, and the walk is the same on every Python from 3.11 on and on every
  machine (``ast.dump`` is not: 3.13 omits empty fields). Without source (code
  given to ``exec``, the 3.11/3.12 REPL) the compiled bytecode is digested
  instead, prefixed with the Python version it is only valid for. ``version=``
  replaces it: the user then says when the function changed.
* ``closure``: the values of the variables the function closes over that keys
  can encode (a factory's ``model``), read once, at the first call.
* ``args``: the positional arguments a ``functools.partial`` binds.

All of it is computed once per function, never per call.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import linecache
import sys
import threading
import types
import weakref
from pathlib import Path
from typing import Any

__all__ = ["Identity", "code_digest", "default_namespace"]

_MAIN_MODULES = ("__main__", "__mp_main__")
#: Our own callables (the SDK and LangChain adapters) are versioned by the key
#: format: a new release of their code must not drop every SDK entry.
_OWN_PACKAGE = __name__.rpartition(".")[0] or "llm_memo"


# ----------------------------------------------------------------- namespace


def default_namespace(func: Any) -> str:
    """``module.qualname``, with a script named after its file rather than ``__main__``.

    So ``python translate.py``, ``import translate`` and a ``spawn``ed child
    (whose main module is ``__mp_main__``) name ``translate.ask`` alike, and two
    scripts never share ``__main__.ask``.
    """
    if isinstance(func, functools.partial):
        return default_namespace(func.func)
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(qualname, str):
        raise TypeError(
            f"llm_cached: cannot name {type(func).__qualname__} objects (their state would not be part "
            "of the key); decorate a function or method, or pass namespace=..."
        )
    return f"{module_name(getattr(func, '__module__', None))}.{qualname}"


def module_name(module: str | None) -> str:
    """The importable name of a module, for the main module too."""
    if module not in _MAIN_MODULES:
        return module or "?"
    main = sys.modules.get(module)
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name not in _MAIN_MODULES:
        return str(spec.name)  # python -m pkg.mod
    file = getattr(main, "__file__", None)
    if not isinstance(file, str):
        return "__main__"  # the REPL, python -c, a script on stdin
    path = Path(file).absolute()
    parts = [path.stem]
    parent = path.parent
    # A script inside a package is named as the package would import it.
    while (parent / "__init__.py").is_file() and parent.name:
        parts.append(parent.name)
        parent = parent.parent
    return ".".join(reversed(parts))


# ----------------------------------------------------------------- identity


def _own(func: Any) -> bool:
    module = getattr(func, "__module__", None) or ""
    return module == _OWN_PACKAGE or module.startswith(_OWN_PACKAGE + ".")


def _innermost(func: Any) -> Any:
    """The user's function under ``functools.wraps`` layers and partials."""
    seen = 0
    while seen < 100:  # a __wrapped__ cycle must not hang decoration
        seen += 1
        if isinstance(func, functools.partial):
            func = func.func
        elif getattr(func, "__wrapped__", None) is not None:
            func = func.__wrapped__
        else:
            break
    return func


class Identity:
    """The ``id`` member of a function's key material, built once.

    The code digest is taken at decoration, when the file on disk is the one that
    was imported; closure values at the first call, when cells such as a method's
    ``__class__`` are filled. ``material()`` is None for the library's own
    callables, whose entries must survive upgrades of the library.
    """

    __slots__ = ("_args", "_code", "_func", "_lock", "_material")

    def __init__(self, func: Any, *, code: bool = True) -> None:
        self._lock = threading.Lock()
        self._material: dict[str, Any] | None = None
        self._args: list[Any] | None = None
        if isinstance(func, functools.partial):
            self._args = _partial_args(func)
        inner = _innermost(func)
        self._func: Any = None if _own(inner) else inner
        self._code = code_digest(inner) if code and self._func is not None else None

    def material(self) -> dict[str, Any] | None:
        material = self._material
        if material is None:
            with self._lock:
                if self._material is None:
                    self._material = self._build()
                material = self._material
        return material or None

    def _build(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._code is not None:
            out["code"] = self._code
        if self._func is not None:
            closure = closure_values(self._func)
            if closure:
                out["closure"] = closure
        if self._args:
            out["args"] = self._args
        return out


def _partial_args(func: functools.partial[Any]) -> list[Any]:
    from .errors import UncacheableArgument
    from .keys import canonical

    out = []
    for index, value in enumerate(func.args):
        try:
            out.append(canonical(value))
        except UncacheableArgument as exc:
            raise UncacheableArgument(
                f"functools.partial(...) argument {index}",
                value,
                "a bound argument is part of the function's identity and must be keyable; bind it by "
                "keyword (partial(f, name=...)) and pass ignore=['name'], or pass namespace=... and "
                "decorate the function itself",
            ) from exc
    return out


_closures: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_closures_lock = threading.Lock()


def closure_values(func: Any) -> dict[str, Any]:
    """The canonical values of the closure variables keys can encode, by name.

    Others (clients, functions, locks) are left out: they cannot be compared
    across processes, and a factory closing over one should say what identifies
    it with ``namespace=`` or ``key=``. Read once per function object: every
    decoration of it (``with_options`` variants too) then shares entries, even
    if it closes over a list it appends to.
    """
    try:
        with _closures_lock:
            return _closures[func]
    except (KeyError, TypeError):  # TypeError: not weakly referenceable
        pass
    values = _read_closure(func)
    with _closures_lock:
        try:
            return _closures.setdefault(func, values)
        except TypeError:
            return values


def _read_closure(func: Any) -> dict[str, Any]:
    code = getattr(func, "__code__", None)
    cells = getattr(func, "__closure__", None)
    if code is None or not cells:
        return {}
    from .keys import canonical

    out: dict[str, Any] = {}
    for name, cell in zip(code.co_freevars, cells, strict=False):
        if name == "__class__":  # a method's super() cell: the qualname names the class already
            continue
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell: a variable assigned after the function
            continue
        if callable(value) and not isinstance(value, type):
            continue  # a helper function or a client: not encodable as a value
        try:
            out[name] = canonical(value)
        except Exception:  # UncacheableArgument, or a raising __llm_memo_key__: left out
            continue
    return out


# ----------------------------------------------------------------- code digest


def code_digest(func: Any) -> str | None:
    """A 32-hex digest of the function's own code, or None for a callable without code."""
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    try:
        node = _find_node(code, getattr(func, "__globals__", None))
        if node is not None:
            return _hex(_tree_text(node).encode("utf-8"))
    except RecursionError:  # absurdly nested source: the bytecode will do
        pass
    # No source to read: bytecode differs between Python versions, so say which.
    version = f"py{sys.version_info[0]}.{sys.version_info[1]}:"
    return version + _hex(_bytecode_text(code).encode("utf-8"))[: 32 - len(version)]


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


_Def = ast.FunctionDef | ast.AsyncFunctionDef
#: A parsed module's functions and lambdas by the line their code object starts on.
_Index = dict[int, list[ast.AST]]

_indexes: dict[str, tuple[str, _Index]] = {}
_indexes_lock = threading.Lock()


def _module_index(filename: str, module_globals: Any) -> _Index:
    linecache.checkcache(filename)  # a reloaded, edited module must not be read stale
    text = "".join(linecache.getlines(filename, module_globals))
    if not text:
        return {}
    with _indexes_lock:
        known = _indexes.get(filename)
        if known is not None and known[0] == text:
            return known[1]
    index: _Index = {}
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        tree = None
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, _Def):
            # A decorated function's code starts at its first decorator.
            index.setdefault(min([node.lineno, *(d.lineno for d in node.decorator_list)]), []).append(node)
        elif isinstance(node, ast.Lambda):
            index.setdefault(node.lineno, []).append(node)
    with _indexes_lock:
        if len(_indexes) >= 16:  # one module's functions are decorated together
            _indexes.clear()
        _indexes[filename] = (text, index)
    return index


def _find_node(code: types.CodeType, module_globals: Any) -> ast.AST | None:
    candidates = _module_index(code.co_filename, module_globals).get(code.co_firstlineno, [])
    if code.co_name == "<lambda>":
        return _pick_lambda(code, [n for n in candidates if isinstance(n, ast.Lambda)])
    found = [
        n for n in candidates if isinstance(n, _Def) and n.name == code.co_name and _same_parameters(n, code)
    ]
    return found[0] if len(found) == 1 else None


def _same_parameters(node: _Def | ast.Lambda, code: types.CodeType) -> bool:
    """A cheap check that the source found is the code that runs (not an edited file)."""
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *args, **kwargs
    return names == list(code.co_varnames[:count])


def _pick_lambda(code: types.CodeType, lambdas: list[ast.Lambda]) -> ast.AST | None:
    """The lambda among those on its line whose body holds the code's positions."""
    lambdas = [n for n in lambdas if _same_parameters(n, code)]
    spans = [
        (line, col, end_line, end_col)
        for line, end_line, col, end_col in code.co_positions()
        if line is not None and end_line is not None and col is not None and end_col is not None
        if (line, col) != (end_line, end_col)  # zero-width: the RESUME of the function itself
    ]
    if spans:
        start = min((s[0], s[1]) for s in spans)
        end = max((s[2], s[3]) for s in spans)

        def holds(n: ast.Lambda) -> bool:
            body = n.body
            stop = (body.end_lineno or body.lineno, body.end_col_offset or 0)
            return (body.lineno, body.col_offset) <= start and end <= stop

        lambdas = [n for n in lambdas if holds(n)]
        # Nested lambdas all hold the innermost one's positions: its body starts last.
        lambdas.sort(key=lambda n: (n.body.lineno, n.body.col_offset), reverse=True)
        lambdas = lambdas[:1]
    texts = {_tree_text(n) for n in lambdas}
    # Several lambdas on one line that the positions cannot tell apart are only
    # interchangeable if they are the same code.
    return lambdas[0] if len(texts) == 1 else None


def _tree_text(root: ast.AST) -> str:
    out: list[str] = []
    _walk(root, out, root)
    return "".join(out)


#: Fields that never change what the code does.
_SKIPPED = frozenset({"type_comment", "kind"})
_ROOT_SKIPPED = frozenset({"decorator_list", "name"})  # @llm_cached(ttl=...) is not the code


def _walk(node: Any, out: list[str], root: ast.AST) -> None:
    if isinstance(node, ast.AST):
        out.append(type(node).__name__ + "(")
        for name in node._fields:
            if name in _SKIPPED or (node is root and name in _ROOT_SKIPPED):
                continue
            value = getattr(node, name, None)
            # Absent, None and [] are one thing: 3.12 and 3.13 added fields that are
            # empty unless new syntax is used (type_params).
            if value is None or (isinstance(value, list) and not value):
                continue
            if name == "body" and isinstance(node, _Def | ast.ClassDef) and isinstance(value, list):
                value = _without_docstring(value)
            out.append(name + "=")
            _walk(value, out, root)
            out.append(",")
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        for item in node:
            _walk(item, out, root)
            out.append(",")
        out.append("]")
    else:
        # Literals: repr of these types is the same on every version and machine;
        # the type name keeps 1, 1.0 and True apart.
        out.append(f"{type(node).__name__}:{node!r}")


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return body[1:] or [ast.Pass()]
    return body


def _bytecode_text(code: types.CodeType) -> str:
    parts = [
        code.co_code.hex(),
        repr(code.co_names),
        repr(code.co_varnames),
        repr(code.co_freevars),
        repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)),
    ]
    parts += [_constant_text(c) for c in code.co_consts]
    return "\x00".join(parts)


def _constant_text(value: Any) -> str:
    if isinstance(value, types.CodeType):
        return "code(" + _bytecode_text(value) + ")"
    if isinstance(value, frozenset):  # iteration order follows the hash seed
        return "frozenset(" + ",".join(sorted(_constant_text(v) for v in value)) + ")"
    if isinstance(value, tuple):
        return "(" + ",".join(_constant_text(v) for v in value) + ")"
    return f"{type(value).__name__}:{value!r}"
