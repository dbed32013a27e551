"""The sending side: capture from a device, a tone or a file, encode, send over WebSocket."""

from __future__ import annotations

from .client import Sender
from .config import SenderConfig, SenderReport

__all__ = ["Sender", "SenderConfig", "SenderReport"]
