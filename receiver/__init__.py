"""The receiving side: WebSocket server, live playback, recording."""

from __future__ import annotations

from .config import ReceiverConfig
from .server import Receiver

__all__ = ["Receiver", "ReceiverConfig"]
