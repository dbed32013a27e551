"""Pure building blocks of micwire: wire format, codecs, framing, jitter buffer, levels.

Nothing in this package touches a sound device, a socket, a file or an event loop; it takes
bytes and arrays in and gives bytes and arrays out, so it is fast to test exhaustively.
"""

from __future__ import annotations

from .audiofile import from_bytes, to_bytes
from .errors import MicwireError

__all__ = ["MicwireError", "from_bytes", "to_bytes"]
