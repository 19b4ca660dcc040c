"""The one kind of marker that is not a value: ``MISS``, ``UNSET``, ``ABSENT``.

Each marker is the single instance of its own small subclass, so type hints can
tell them apart (``bytes | Miss``), while the behaviour lives here once: falsy,
named in reprs, and kept as itself by ``copy`` (options and entries are copied).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

__all__ = ["Sentinel"]


class Sentinel:
    """Base of the markers; a subclass names its instance: ``class Miss(Sentinel, name="MISS")``.

    The instance must be bound to that name in the subclass's module (``copy`` and
    ``pickle`` find it there by name).
    """

    _name: ClassVar[str] = "Sentinel"
    _instance: ClassVar[Any] = None

    def __init_subclass__(cls, *, name: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._name = name
        cls._instance = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        instance: Self = cls._instance
        return instance

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return self._name
