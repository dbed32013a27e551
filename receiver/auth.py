"""Who may connect: the shared-secret token, checked before any WebSocket upgrade."""

from __future__ import annotations

import hmac

from websockets.datastructures import Headers


def bearer_token(headers: Headers) -> str | None:
    """The token of the one ``Authorization: Bearer <token>`` header, or None when there
    is none, several, or another scheme (RFC 7235: the scheme is case-insensitive)."""
    values = headers.get_all("Authorization")
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(offered: str | None, token: str) -> bool:
    """Constant-time comparison (the time taken says nothing about the secret)."""
    return offered is not None and hmac.compare_digest(offered.encode(), token.encode())
