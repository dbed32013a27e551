"""The receiving side: WebSocket server, live playback, recording."""

from __future__ import annotations

from micwire.receiver.server import Receiver, ReceiverConfig

__all__ = ["Receiver", "ReceiverConfig"]
