"""Who may do what: tokens, the browser's login cookie, and same-origin WebSockets.

Roles: ``full`` (the ``--token``: send, watch, listen), ``listen`` (``--listen-token``:
watch and listen, not send) and ``send`` (``--send-token``: send only, e.g. a guest's
link). Without ``--token`` everyone is ``full``. Scripts present a token as
``Authorization: Bearer <token>``; browsers, which cannot set that header on a
WebSocket, log in once and get an HttpOnly cookie. The cookie is an HMAC of the role keyed
with that role's token, so every receiver (and worker) with the same tokens accepts it,
and changing a token logs everyone out. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from micwire.common.errors import ParameterError

COOKIE = "micwire_auth"
FULL, LISTEN, SEND = "full", "listen", "send"
#: What each role may do.
MAY_SEND = frozenset({FULL, SEND})
MAY_WATCH = frozenset({FULL, LISTEN})


def check_token(token: str | None, what: str) -> None:
    """A token is printable text without spaces (it travels in a header); an empty one is a
    mistake (MICWIRE_TOKEN= set to nothing), not "no token"."""
    if token is None:
        return
    if not token:
        raise ParameterError(f"{what} is empty; give a secret, or leave it out")
    if not token.isprintable() or any(c.isspace() for c in token):
        raise ParameterError(f"{what} must be printable text without spaces")


def bearer_token(authorization: list[str]) -> str | None:
    """The token of the one ``Authorization: Bearer <token>`` header, or None when there
    is none, several, or another scheme (RFC 7235: the scheme is case-insensitive)."""
    if len(authorization) != 1:
        return None
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(offered: str | None, token: str) -> bool:
    """Constant-time comparison (the time taken says nothing about the secret)."""
    return offered is not None and hmac.compare_digest(offered.encode(), token.encode())


@dataclass(frozen=True)
class Tokens:
    full: str | None = None
    listen: str | None = None
    send: str | None = None

    @property
    def required(self) -> bool:
        return self.full is not None

    def _by_role(self) -> dict[str, str]:
        pairs = ((FULL, self.full), (LISTEN, self.listen), (SEND, self.send))
        return {role: token for role, token in pairs if token is not None}

    def role_of_token(self, offered: str | None) -> str | None:
        if not self.required:
            return FULL
        found = None
        for role, token in self._by_role().items():  # every one compared: constant time
            if token_matches(offered, token) and found is None:
                found = role
        return found

    def cookie_for(self, role: str) -> str:
        token = self._by_role()[role]
        mac = hmac.new(token.encode(), f"micwire-cookie:{role}".encode(), hashlib.sha256)
        return f"{role}.{mac.hexdigest()}"

    def role_of_cookie(self, value: str | None) -> str | None:
        if not self.required:
            return FULL
        if not value or "." not in value:
            return None
        role = value.partition(".")[0]
        if role not in self._by_role():
            return None
        return role if hmac.compare_digest(self.cookie_for(role), value) else None

    def role(self, authorization: list[str], cookies: Mapping[str, str]) -> tuple[str | None, bool]:
        """(role, by cookie): from a bearer token, else from the login cookie."""
        offered = bearer_token(authorization)
        if offered is not None or not self.required:
            return self.role_of_token(offered), False
        return self.role_of_cookie(cookies.get(COOKIE)), True


def same_origin(origin: str | None, host: str | None) -> bool:
    """Does a browser's ``Origin`` name the host it connected to? (A page elsewhere must
    not open a WebSocket that rides on our login cookie: cross-site WebSocket hijacking.)"""
    if not origin or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()
