"""Bearer-token authentication of the service: who is asking (the principal), and an ASGI
middleware that refuses everyone else."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

TOKENS_ENV = "PERFKIT_SERVICE_TOKENS"
"""The environment variable holding ``name:token`` entries, separated by commas."""

MIN_TOKEN_CHARS = 16
OPEN_PATHS = frozenset({"/healthz"})
"""What answers without a token: a load balancer's health check carries none."""

_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750's b64token
_PRINCIPAL = re.compile(r"[A-Za-z0-9._@\-]{1,64}")
_PRINCIPAL_KEY = "perfkit.principal"


class BearerTokens:
    """The tokens clients may present (``Authorization: Bearer <token>``), each naming
    the principal it authenticates. Only digests are kept; tokens are compared in
    constant time.

    >>> tokens = BearerTokens({"alice": "s3cr3t-token-of-alice"})
    >>> tokens.principal("Bearer s3cr3t-token-of-alice"), tokens.principal("Bearer nope")
    ('alice', None)
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        if not tokens:
            raise ValueError("tokens must name at least one principal")
        digests: dict[bytes, str] = {}
        for principal, token in tokens.items():
            _check_entry(principal, token, where=f"the token of {principal!r}")
            digest = _digest(token)
            if digest in digests:
                raise ValueError(f"{principal!r} and {digests[digest]!r} have the same token")
            digests[digest] = principal
        self._digests = tuple(digests.items())
        self.principals = tuple(sorted(tokens))

    @classmethod
    def parse(cls, text: str, *, source: str) -> BearerTokens:
        """Tokens from ``name:token`` entries separated by commas or new lines (``#``
        starts a comment line); a mistake names ``source`` and the entry, never a token."""
        return cls(_entries(text, source))

    @classmethod
    def from_sources(
        cls, *, environ: Mapping[str, str], token_file: Path | None = None
    ) -> BearerTokens | None:
        """The tokens of ``$PERFKIT_SERVICE_TOKENS`` and ``token_file`` together, or
        ``None`` if neither is given."""
        sources = []
        if environ.get(TOKENS_ENV, "").strip():
            sources.append((environ[TOKENS_ENV], TOKENS_ENV))
        if token_file is not None:
            sources.append((_read_tokens(token_file), str(token_file)))
        if not sources:
            return None
        merged: dict[str, str] = {}
        for text, source in sources:
            for principal, token in _entries(text, source).items():
                if principal in merged:
                    raise ValueError(f"{source}: {principal!r} has a token already")
                merged[principal] = token
        return cls(merged)

    def principal(self, authorization: str | None) -> str | None:
        """Whom an ``Authorization`` header authenticates, or ``None``."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        presented = _digest(credentials.strip())
        found = None
        for digest, principal in self._digests:  # every one, so timing tells nothing
            if hmac.compare_digest(digest, presented):
                found = principal
        return found

    def __repr__(self) -> str:
        return f"BearerTokens(principals={list(self.principals)!r})"


def _entries(text: str, source: str) -> dict[str, str]:
    """The entries of ``text``; a mistake names the entry by number only (an entry written
    token:name, or a token where its name goes, would show the token)."""
    tokens: dict[str, str] = {}
    numbers: dict[str, int] = {}
    entries = [entry.strip() for line in text.splitlines() for entry in line.split(",")]
    for number, entry in enumerate(entries, 1):
        if not entry or entry.startswith("#"):
            continue
        principal, colon, token = entry.partition(":")
        where = f"{source}, entry {number}"
        if not colon:
            raise ValueError(f"{where}: an entry is name:token, got no ':'")
        _check_entry(principal, token, where=where, shown="its")
        if principal in tokens:
            raise ValueError(f"{where}: its name has a token already (entry {numbers[principal]})")
        tokens[principal] = token
        numbers[principal] = number
    if not tokens:
        raise ValueError(f"{source} holds no name:token entry")
    return tokens


def _read_tokens(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:  # its message would show a byte of a token
        raise ValueError(f"{path}: a token file is UTF-8 text; byte {error.start} is not") from None


def _check_entry(principal: str, token: str, *, where: str, shown: str | None = None) -> None:
    """Refuses a bad name or token; ``shown`` says how the message refers to the name
    (by default, the name itself)."""
    if not _PRINCIPAL.fullmatch(principal):
        got = f", got {principal!r}" if shown is None else f" ({len(principal)} characters)"
        raise ValueError(f"{where}: the name must be 1-64 letters, digits or ._@-{got}")
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
        whose = f"the token of {principal!r}" if shown is None else f"{shown} token"
        raise ValueError(
            f"{where}: {whose} must be at least {MIN_TOKEN_CHARS} "
            "characters of A-Z a-z 0-9 - . _ ~ + / (then = padding), as RFC 6750 allows"
        )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def principal_of(scope: Scope) -> str | None:
    """Whom the request in ``scope`` was authenticated as (``None``: no tokens)."""
    principal: str | None = scope.get(_PRINCIPAL_KEY)
    return principal


def conversation_id(principal: str | None, user_id: str) -> str:
    """The agent's conversation of ``user_id`` as asked by ``principal``: two principals
    never share one, whatever user ids they choose (the encoding is unambiguous)."""
    return user_id if principal is None else json.dumps([principal, user_id], ensure_ascii=False)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (a name other than ``localhost``
    is never looked up, and counts as reachable)."""
    if host == "localhost":  # bound at every address it resolves to: all must be loopback
        try:
            found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return False
        return bool(found) and all(_is_loopback_address(str(info[4][0])) for info in found)
    return _is_loopback_address(host.strip("[]"))


def _is_loopback_address(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


class RequireToken:
    """ASGI middleware: an HTTP request other than to :data:`OPEN_PATHS` needs a valid
    bearer token, or is answered 401 with ``WWW-Authenticate: Bearer``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tokens: BearerTokens,
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = [value for name, value in scope["headers"] if name == b"authorization"]
        principal = None
        if len(authorization) == 1:
            principal = self.tokens.principal(authorization[0].decode("latin-1"))
        if principal is not None:
            await self.app({**scope, _PRINCIPAL_KEY: principal}, receive, send)
            return
        if self.on_refusal is not None:
            self.on_refusal(scope["path"])
        challenge = 'Bearer realm="perfkit"'
        if authorization:
            challenge += ', error="invalid_token"'
        message = (
            "this service needs a bearer token (Authorization: Bearer <token>)"
            if not authorization
            else "the bearer token is not valid"
        )
        response = JSONResponse(
            {"error": {"type": "unauthorized", "message": message}},
            status_code=401,
            headers={"www-authenticate": challenge},
        )
        await response(scope, receive, send)
