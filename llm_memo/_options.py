"""The options of a cached function, as one frozen value.

Every entry point (``@llm_cached``, ``with_options``, :func:`llm_memo.configure`,
the SDK patches, ``LLMMemoCache``) builds an :class:`Options`; each value is checked
and normalised here, once, when it is built (a typo fails at decoration, not at the
first call). A field left ``UNSET`` follows :func:`llm_memo.configure` and the
environment, or the option's default; ``ttl=None`` then still means "never expires".
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Final

from ._config import MODES, UNSET, Mode, _Unset, check_backend, check_mode, check_strict, parse_ttl
from ._secrets import pepper
from .keys import canonical

__all__ = ["OPTION_NAMES", "Options"]


@dataclasses.dataclass(frozen=True)
class Options:
    """What ``@llm_cached(...)`` was given; see :func:`llm_memo.llm_cached` for each option."""

    backend: Any = UNSET
    ttl: float | str | timedelta | _Unset | None = UNSET
    namespace: str | _Unset | None = UNSET
    version: Any = UNSET
    ignore: Iterable[str] | _Unset = UNSET
    key: Callable[..., Any] | _Unset | None = UNSET
    strict: bool | _Unset = UNSET
    mode: Mode | _Unset | None = UNSET
    cache_if: Callable[[Any], bool] | _Unset | None = UNSET
    samples: int | _Unset | None = UNSET
    lease: float | str | timedelta | _Unset | None = UNSET
    types: Iterable[type] | _Unset = UNSET
    isolate_credentials: bool | str | bytes | _Unset = UNSET
    clock: Callable[[], float] | _Unset = UNSET

    def __post_init__(self) -> None:
        # Normalised in place (a frozen dataclass's own __post_init__ may), so a
        # ``replace`` re-checks values that are already in their final form.
        set_ = object.__setattr__
        check_backend(self.backend)
        check_strict(self.strict)
        if self.ttl is not UNSET:
            set_(self, "ttl", parse_ttl(self.ttl))
        if self.lease is not UNSET:
            set_(self, "lease", parse_ttl(self.lease, name="lease"))
        if isinstance(self.mode, str):
            check_mode(self.mode)
        elif not (self.mode is None or self.mode is UNSET):
            raise ValueError(f"mode={self.mode!r}: use one of {', '.join(MODES)}")
        if self.namespace is not UNSET and self.namespace is not None and not isinstance(self.namespace, str):
            raise TypeError(f"namespace={self.namespace!r}: expected a string")
        if self.version is not UNSET:
            canonical(self.version)  # an unencodable version fails now, not at the first call
        if not isinstance(self.ignore, _Unset):
            set_(self, "ignore", tuple(self.ignore))
        if not isinstance(self.types, _Unset):
            set_(self, "types", tuple(self.types))
        samples = self.samples
        if not (samples is UNSET or samples is None) and (
            isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
        ):
            raise ValueError(f"samples={samples!r}: expected a positive int, or None for one result per key")
        for name in ("key", "cache_if"):
            value = getattr(self, name)
            if value is not UNSET and value is not None and not callable(value):
                raise TypeError(f"{name}={value!r}: expected a callable")
        if self.clock is not UNSET and not callable(self.clock):
            raise TypeError(f"clock={self.clock!r}: expected a callable returning seconds")
        if not isinstance(self.isolate_credentials, _Unset):
            pepper(self.isolate_credentials)

    @classmethod
    def of(cls, caller: str, options: Mapping[str, Any]) -> Options:
        """The options named in ``options``; an unknown name raises, naming the closest valid one."""
        check_names(caller, options)
        return cls(**options)

    def replace(self, caller: str, changes: Mapping[str, Any]) -> Options:
        """A copy with ``changes`` applied (the rest kept)."""
        check_names(caller, changes)
        return dataclasses.replace(self, **changes)

    def get(self, name: str, default: Any) -> Any:
        """The option's value, or ``default`` when it is unset."""
        value = getattr(self, name)
        return default if value is UNSET else value


OPTION_NAMES: Final = tuple(f.name for f in dataclasses.fields(Options))


def check_names(caller: str, options: Iterable[str]) -> None:
    """Raise ``TypeError`` for the first name that is not an option, suggesting the closest one."""
    for name in options:
        if name in OPTION_NAMES:
            continue
        close = difflib.get_close_matches(name, OPTION_NAMES, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the options are {', '.join(OPTION_NAMES)}"
        raise TypeError(f"{caller}() got an unexpected option {name!r}; {hint}")
