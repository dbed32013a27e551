"""Who may do what: tokens, the browser's login cookie, and same-origin WebSockets.

Roles: ``full`` (the ``--token``: send, watch, listen), ``listen`` (``--listen-token``:
watch and listen, not send) and ``send`` (``--send-token``: send only, e.g. a guest's
link). Without ``--token`` everyone is ``full``. Scripts present a token as
``Authorization: Bearer <token>``; browsers, which cannot set that header on a
WebSocket, log in once and get an HttpOnly cookie: each login its own value (the role, an
expiry, a random nonce, and an HMAC of the three keyed with that role's token), so every
receiver (and worker) with the same tokens accepts it, it lapses after LOGIN_S, changing a
token logs everyone out, and "Log out" ends that one login (its nonce is revoked until its
expiry: :class:`Revocations`, kept in a small state file so a restart keeps it).
Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("micwire.receiver")
COOKIE = "micwire_auth"
#: How long a login lasts.
LOGIN_S = 30 * 24 * 3600
FULL, LISTEN, SEND = "full", "listen", "send"
#: What each role may do.
MAY_SEND = frozenset({FULL, SEND})
MAY_WATCH = frozenset({FULL, LISTEN})


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

    def _mac(self, role: str, expires: int, nonce: str) -> str:
        token = self._by_role()[role]
        text = f"micwire-login:{role}:{expires}:{nonce}"
        return hmac.new(token.encode(), text.encode(), hashlib.sha256).hexdigest()

    def new_login(self, role: str, now: float) -> str:
        """A login cookie's value of its own: ``role.expires.nonce.mac``."""
        expires = int(now + LOGIN_S)
        nonce = secrets.token_urlsafe(12)
        return f"{role}.{expires}.{nonce}.{self._mac(role, expires, nonce)}"

    def login_of_cookie(self, value: str | None, now: float) -> Login | None:
        """The login a cookie's value proves (made with our token, not expired), or None.
        Whether it was revoked is :class:`Revocations`' to say."""
        if not value:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] not in self._by_role() or not parts[1].isdigit():
            return None
        role, expires, nonce, mac = parts[0], int(parts[1]), parts[2], parts[3]
        if not hmac.compare_digest(self._mac(role, expires, nonce), mac) or expires <= now:
            return None
        return Login(role, expires, nonce)

    def role(
        self,
        authorization: list[str],
        cookies: Mapping[str, str],
        revoked: Callable[[str], bool] = lambda nonce: False,
        now: float | None = None,
    ) -> tuple[str | None, bool]:
        """(role, by cookie): from a bearer token, else from a login cookie that is not
        ``revoked``."""
        offered = bearer_token(authorization)
        if offered is not None or not self.required:
            return self.role_of_token(offered), False
        login = self.login_of_cookie(cookies.get(COOKIE), time.time() if now is None else now)
        if login is None or revoked(login.nonce):
            return None, True
        return login.role, True


@dataclass(frozen=True)
class Login:
    role: str
    #: When it lapses (s since the Unix epoch).
    expires: int
    nonce: str


class Revocations:
    """Logins ended by "Log out" before their expiry, by nonce, until that expiry. Kept in
    ``path`` (if given) so that a restarted receiver, and every worker on the machine
    sharing it, still refuses them; re-read at most once a second when it changes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._until: dict[str, int] = {}
        self._seen: float | None = None  # the file's mtime when last read
        self._checked = 0.0
        self._load()

    def __len__(self) -> int:
        return len(self._until)

    def revoked(self, nonce: str) -> bool:
        now = time.monotonic()
        if now - self._checked >= 1.0:
            self._checked = now
            self._load()
        return nonce in self._until

    def revoke(self, login: Login) -> None:
        self._load()
        now = time.time()
        self._until = {n: t for n, t in self._until.items() if t > now}  # lapsed anyway
        self._until[login.nonce] = login.expires
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self.path.with_name(self.path.name + ".tmp")
                temporary.write_text(json.dumps(self._until))
                os.replace(temporary, self.path)
                self._seen = self.path.stat().st_mtime
            except OSError as exc:
                log.warning(
                    "cannot keep the log-out in %s (%s): a restart forgets it", self.path, exc
                )

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._seen:
                return
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        self._seen = mtime
        if isinstance(data, dict):
            for nonce, until in data.items():
                if isinstance(nonce, str) and type(until) is int:
                    self._until[nonce] = max(until, self._until.get(nonce, 0))


def same_origin(origin: str | None, host: str | None) -> bool:
    """Does a browser's ``Origin`` name the host it connected to? (A page elsewhere must
    not open a WebSocket that rides on our login cookie: cross-site WebSocket hijacking.)"""
    if not origin or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()
