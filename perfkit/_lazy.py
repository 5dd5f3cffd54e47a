"""Package names that load on first use (PEP 562), so importing a package costs nothing
until one of its names is used."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any


def lazy_names(
    package: str,
    homes: Mapping[str, Sequence[str]],
    namespace: MutableMapping[str, Any],
    *,
    renamed: Mapping[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__``: each name in ``homes`` (module ->
    names) is imported from its module when first used, then kept in ``namespace``; a
    name in ``renamed`` (old -> new) still works, with a DeprecationWarning."""
    home_of = {name: module for module, names in homes.items() for name in names}
    renamed = dict(renamed or {})

    def __getattr__(name: str) -> Any:
        if name in renamed:
            warnings.warn(
                f"{package}.{name} is deprecated and will be removed in the next release; "
                f"use {package}.{renamed[name]} (the same value)",
                DeprecationWarning,
                stacklevel=2,
            )
            return __getattr__(renamed[name])
        module = home_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *home_of})

    return __getattr__, __dir__
