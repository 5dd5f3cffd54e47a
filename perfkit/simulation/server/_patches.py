"""Every httpcore and httpcore2 attribute the simulated server patches, declared in one
place (as respx's ``Mocker`` subclasses declare theirs).

The anthropic and openai SDKs send through httpx2 and httpcore2; plain httpx clients
through httpcore. Patching the connection pools' entry points of both, on the classes and
while a simulator is active, intercepts every client whenever it was created.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from unittest import mock

import httpcore
import httpcore2

Wrapper = Callable[[ModuleType, Callable[..., Any]], Callable[..., Any]]
"""Makes the patched method from the library (``httpcore`` or ``httpcore2``) and the
original method."""


@dataclass(frozen=True)
class PatchTarget:
    """One patched method: ``owner.attribute`` of ``flavor``, replaced by ``role``'s wrapper."""

    flavor: ModuleType
    owner: type
    attribute: str
    role: str
    """``"sync_entry"``, ``"async_entry"`` or ``"close"``."""


FLAVORS: tuple[ModuleType, ...] = (httpcore, httpcore2)

PATCH_TARGETS: tuple[PatchTarget, ...] = tuple(
    target
    for flavor in FLAVORS
    for target in (
        PatchTarget(flavor, flavor.ConnectionPool, "handle_request", "sync_entry"),
        PatchTarget(flavor, flavor.AsyncConnectionPool, "handle_async_request", "async_entry"),
        PatchTarget(flavor, flavor.ConnectionPool, "close", "close"),
        PatchTarget(flavor, flavor.AsyncConnectionPool, "aclose", "close"),
    )
)


def install_patches(wrappers: dict[str, Wrapper]) -> ExitStack:
    """Patch every target with ``wrappers[target.role]``; closing the stack undoes them."""
    stack = ExitStack()
    for target in PATCH_TARGETS:
        original = getattr(target.owner, target.attribute)
        replacement = wrappers[target.role](target.flavor, original)
        stack.enter_context(mock.patch.object(target.owner, target.attribute, replacement))
    return stack
