"""Credentials kept out of what perfkit shows (reprs, logs, reports, errors), still
readable by the code that needs them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfkit._url import REDACTED

SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie"}
)
"""Header names that carry credentials, lowercase."""

_SECRET_PARTS = ("key", "token", "secret", "password", "passwd", "auth", "cookie", "session")
"""Words that mark a header or option name as a credential (``anthropic-api-key``,
``x-auth-token``, ``api_key``)."""


def is_secret_name(name: str) -> bool:
    """Whether a header or option called ``name`` (any case, ``-`` or ``_``) holds a
    credential.

    >>> is_secret_name("X-Api-Key"), is_secret_name("api_key"), is_secret_name("accept")
    (True, True, False)
    """
    lowered = name.lower().replace("_", "-")
    return lowered in SECRET_HEADERS or any(part in lowered for part in _SECRET_PARTS)


class Secret(str):
    """A credential: used, compared and formatted as its text, but shown by ``repr`` (so
    in a dict's or a dataclass's repr, pytest's assertion reports and diffs, logs) as
    ``'***'``.

    >>> key = Secret("sk-ant-123")
    >>> key == "sk-ant-123", f"{key}", {"x-api-key": key}
    (True, 'sk-ant-123', {'x-api-key': '***'})
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(REDACTED)


def hide_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` whose credential-named text values are :class:`Secret`, in
    nested dicts too (an SDK's ``default_headers``).

    >>> hide_secrets({"x-api-key": "sk-ant-123", "accept": "application/json"})
    {'x-api-key': '***', 'accept': 'application/json'}
    """
    return {name: _hidden(name, value) for name, value in values.items()}


def _hidden(name: object, value: Any) -> Any:
    if isinstance(value, str) and isinstance(name, str) and is_secret_name(name):
        return Secret(value)
    return hide_secrets(value) if isinstance(value, Mapping) else value


def shown_in_assertion(value: object) -> object:
    """``value`` as a failing assertion may show it: a :class:`Secret` as ``'***'``, a
    mapping holding credentials (an HTTP client's ``Headers``, a dict of plain strings) as
    a dict of :class:`Secret` values; ``value`` itself when it shows no credential.

    pytest's diffs bypass ``repr``: two strings are diffed as text, and a mapping that is
    not a dict is read item by item.

    >>> shown_in_assertion(Secret("sk-ant-123")), shown_in_assertion({"x-api-key": "sk"})
    ('***', {'x-api-key': '***'})
    """
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, Mapping) and _shows_secret(value):
        return hide_secrets(value)
    return value


def _shows_secret(values: Mapping[Any, Any]) -> bool:
    """Whether a credential in ``values`` would be shown as its text."""
    for name, value in values.items():
        if isinstance(value, Mapping) and _shows_secret(value):
            return True
        hidden = isinstance(values, dict) and isinstance(value, Secret)
        if isinstance(name, str) and is_secret_name(name) and isinstance(value, str) and not hidden:
            return True
    return False
