"""Credentials kept out of what perfkit shows (reprs, logs, reports, errors), still
readable by the code that needs them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from perfkit._url import REDACTED, redact_url

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


class SecretURL(str):
    """A URL holding credentials (``https://user:password@host``): used as its text, shown
    by ``repr`` with them hidden.

    >>> SecretURL("https://alice:s3cr3t@llm.example")
    'https://alice:***@llm.example'
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(redact_url(self))


def hide_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` whose credential-named text values are :class:`Secret`, and
    URLs holding credentials :class:`SecretURL` (a ``base_url``), in nested mappings too
    (an SDK's ``default_headers``).

    >>> hide_secrets({"x-api-key": "sk-ant-123", "accept": "application/json"})
    {'x-api-key': '***', 'accept': 'application/json'}
    """
    return {name: _hidden(name, value) for name, value in values.items()}


def _hidden(name: object, value: Any) -> Any:
    if isinstance(value, str) and isinstance(name, str) and is_secret_name(name):
        return Secret(value)
    if isinstance(value, str) and not isinstance(value, SecretURL) and redact_url(value) != value:
        return SecretURL(value)
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
    if isinstance(value, SecretURL):
        return redact_url(value)
    if isinstance(value, Mapping) and _shows_secret(value):
        return hide_secrets(value)
    return value


def _shows_secret(values: Mapping[Any, Any]) -> bool:
    """Whether a credential in ``values`` would be shown as its text."""
    for name, value in values.items():
        if isinstance(value, Mapping) and _shows_secret(value):
            return True
        if isinstance(value, str) and _shown_as_text(name, value, values):
            return True
    return False


def _shown_as_text(name: object, value: str, values: Mapping[Any, Any]) -> bool:
    if isinstance(values, dict) and isinstance(value, (Secret, SecretURL)):
        return False  # a dict shows its values by repr
    return (isinstance(name, str) and is_secret_name(name)) or redact_url(value) != value
