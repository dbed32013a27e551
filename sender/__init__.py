"""The sending side: capture from a device, a tone or a file, encode, send over WebSocket."""

from __future__ import annotations

from micwire.sender.client import Sender
from micwire.sender.config import SenderConfig, SenderReport

__all__ = ["Sender", "SenderConfig", "SenderReport"]
