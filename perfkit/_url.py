"""The http:// and https:// URLs a user names (a load test's target, a metrics endpoint):
checked once, with an error naming what is wrong, and never shown with their credentials."""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass, field

REDACTED = "***"
SCHEMES = ("http", "https")


def redact_url(url: str) -> str:
    """``url`` with its password hidden (a user name without a password is often a token,
    so it is hidden too); any string, well-formed or not.

    >>> redact_url("http://alice:s3cr3t@host:8000/chat")
    'http://alice:***@host:8000/chat'
    >>> redact_url("https://ghp_token@host/")
    'https://***@host/'
    """
    start, end = _authority(url)
    userinfo, at, _host = url[start:end].rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    hidden = f"{user}:{REDACTED}" if colon else REDACTED
    return f"{url[:start]}{hidden}@{url[start + len(userinfo) + 1 :]}"


def _redact_broken(url: str) -> str:
    """``url`` as an error shows it: also hidden up to its last ``@`` when that lies past
    the authority, where a password holding ``#``, ``/`` or ``?`` puts it (such a URL
    is malformed, and the error must not show the password it cut in two).

    >>> _redact_broken("http://alice:s3cr#t@host/")
    'http://***@host/'
    """
    start, end = _authority(url)
    if "@" in url[start:end] or "@" not in url[end:]:
        return redact_url(url)
    return f"{url[:start]}{REDACTED}@{url.rpartition('@')[2]}"


def _authority(url: str) -> tuple[int, int]:
    """Where the authority of ``url`` (credentials included) begins and ends."""
    start = url.find("://") + 3 if "://" in url else 2 if url.startswith("//") else 0
    end = min((i for i in map(url.find, "/?#", (start,) * 3) if i >= 0), default=len(url))
    return start, end


@dataclass(frozen=True)
class HttpURL:
    """A checked http:// or https:// URL: where to connect, the ``Host`` header, the path,
    and the credentials (sent as basic auth; ``redacted`` is how the URL is shown)."""

    scheme: str
    host: str
    """To connect to: a name, an IPv4 address, or an IPv6 address without brackets."""
    port: int
    authority: str
    """``host[:port]`` as written, without credentials: the ``Host`` header."""
    path: str
    """The path and query; at least ``/``."""
    redacted: str
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @property
    def origin(self) -> str:
        """``scheme://authority``, without credentials."""
        return f"{self.scheme}://{self.authority}"

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header of the URL's credentials (None without any)."""
        if not (self.username or self.password):
            return None
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def parse_http_url(url: str, name: str = "URL") -> HttpURL:
    """``url`` checked and split; a ValueError naming ``name``, the (redacted) URL and what
    is allowed if it is not an http:// or https:// URL a request can be sent to."""
    shown = _redact_broken(url) if isinstance(url, str) else url
    if not isinstance(url, str):
        raise TypeError(f"{name} must be a str, got {shown!r}")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise ValueError(
            f"{name} must be ASCII, with no spaces or control characters (percent-encode "
            f"them), got {shown!r}"
        )
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as error:
        raise ValueError(f"the {name} is malformed ({error}), got {shown!r}") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"{name} must be an http:// or https:// URL with a host, got {shown!r}")
    authority = parts.netloc.rpartition("@")[2].removesuffix(":")
    port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port_text and not (port_text.isdecimal() and port and 1 <= port <= 65535):
        got = f"got {port_text!r} " if shown == redact_url(url) else ""  # not a password's
        raise ValueError(
            f"the {name}'s port must be an integer from 1 to 65535, {got}(in {shown!r})"
        )
    return HttpURL(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or (443 if parts.scheme == "https" else 80),
        authority=authority,
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        redacted=redact_url(url.partition("#")[0]),
        username=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""),
    )
