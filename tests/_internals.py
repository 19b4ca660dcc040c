"""Access to the internals some tests inspect, in one typed place."""

from __future__ import annotations

from typing import Any

from llm_memo._core import Call, Memo


def memo_of(func: Any) -> Memo:
    """The ``Memo`` behind a cached function (the public protocol keeps it private)."""
    memo: Memo = func._self_memo
    return memo


def prepared(func: Any, *args: Any) -> Call:
    """The prepared call (its key and fingerprint) a cached function makes for ``args``."""
    call = memo_of(func).prepare(None, args, {})
    assert call is not None, f"{args!r} do not fit the function's signature"
    return call
