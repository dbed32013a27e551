"""The receiving side: WebSocket server, live playback, recording."""

from __future__ import annotations

from micwire.receiver.config import ReceiverConfig
from micwire.receiver.server import Receiver

__all__ = ["Receiver", "ReceiverConfig"]
