"""One error, in one line, for a feature whose optional dependency is not installed.

Raised ``from None``: the bare ``ModuleNotFoundError`` underneath says nothing the
message does not, and a chained second traceback only hides the one line that
matters, which names the ``pip install`` command.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtra

__all__ = ["EXTRAS", "import_for", "install_hint", "missing_extra"]

#: Top-level module -> the extra that installs it.
EXTRAS = {
    "redis": "redis",
    "openai": "openai",
    "anthropic": "anthropic",
    "langchain_core": "langchain",
}


def install_hint(extra: str) -> str:
    return f"pip install 'llm-memo[{extra}]'"


def missing_extra(what: str, exc: ImportError) -> MissingExtra | None:
    """The error to raise when ``exc`` means an extra is missing (else None: a real bug)."""
    top = (exc.name or "").partition(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return MissingExtra(f"{what} needs the {top} package, an optional extra: {install_hint(extra)}", extra)


def import_for(what: str, module_name: str) -> ModuleType:
    """Import ``module_name`` for ``what``; a missing extra raises one line naming it."""
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        error = missing_extra(what, exc)
        if error is None:
            raise
        raise error from None  # one line naming the extra, not two tracebacks
