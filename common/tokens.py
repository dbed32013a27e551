"""What a token may be, for the side that sets one and the side that checks it (pure).

A token is a shared secret that travels in the WebSocket opening handshake as
``Authorization: Bearer <token>`` (docs/PROTOCOL.md §1), so it is printable text without
spaces; an empty one is a mistake (``MICWIRE_TOKEN=`` set to nothing), not "no token".
"""

from __future__ import annotations

from .errors import ParameterError


def check_token(token: str | None, what: str) -> None:
    """:class:`ParameterError` naming the option ``what`` unless ``token`` is None or a
    token that can travel in a header."""
    if token is None:
        return
    if not token:
        raise ParameterError(f"{what} is empty; give a secret, or leave it out")
    if not token.isprintable() or any(c.isspace() for c in token):
        raise ParameterError(f"{what} must be printable text without spaces")
