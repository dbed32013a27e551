"""The exceptions micwire raises.

Every error derives from :class:`MicwireError`, and also from the built-in exception
that matches its nature, so ``except ValueError`` keeps working for callers that do
not know micwire::

    MicwireError
    ├── ProtocolError (ValueError)        malformed or unsupported data on the wire
    │   ├── HelloError                    the text handshake message
    │   └── FrameError                    a binary audio frame
    ├── ParameterError (ValueError)       a rate, channel count, frame size, ... out of range
    │   └── MixSettingError               a mix setting (gain, mute, solo, pan) or its state
    ├── AudioFormatError (ValueError)     an array or file that cannot be (de)coded as asked
    ├── CodecError (RuntimeError)         an encoder or decoder failed
    │   └── CodecUnavailableError         libopus is not installed
    ├── DeviceError (RuntimeError)        PortAudio missing, unknown device, stream failure
    ├── StorageError (OSError)            a recording cannot be created or written
    └── TransportError (ConnectionError)  receiver unreachable, refused us, or went away
        ├── UnreachableError              nothing answered there (yet): retrying may help
        └── RefusedError                  the receiver answered the hello with a refusal

Messages are written for the person at the terminal: they say what is wrong and,
where there is one, what to do about it.
"""

from __future__ import annotations

import errno


class MicwireError(Exception):
    """Root of every error micwire raises on purpose."""


class ProtocolError(MicwireError, ValueError):
    """Data received from a peer does not follow docs/PROTOCOL.md."""


class HelloError(ProtocolError):
    """The hello (first, text) message is malformed or unsupported."""


class FrameError(ProtocolError):
    """A binary audio frame is malformed or inconsistent with the stream."""


class ParameterError(MicwireError, ValueError):
    """A stream parameter (rate, channels, frame duration, codec, ...) is out of range."""


class MixSettingError(ParameterError):
    """A mix setting is unknown, of the wrong type or out of range (a PATCH body, or the
    saved mix state); ``field`` names it (None: the whole body is wrong). The message names
    the field and what it allows, fit to answer a 400 with."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class AudioFormatError(MicwireError, ValueError):
    """An array or encoded audio cannot be converted as requested."""


class CodecError(MicwireError, RuntimeError):
    """An encoder or decoder failed on its input."""


class CodecUnavailableError(CodecError):
    """The codec's native library is missing."""


class DeviceError(MicwireError, RuntimeError):
    """PortAudio is missing, a device does not exist, or a stream could not run."""


class StorageError(MicwireError, OSError):
    """A recording cannot be created or written (permissions, disk full, ...)."""


def write_failure(exc: BaseException, code: int | None = None) -> str:
    """Why a write failed, in the words a :class:`StorageError` uses for it: the causes
    people can fix by name ("no space left on device"), else the system's own words.
    ``code``: the errno, when the caller found out more than ``exc`` says (libsndfile says
    only "System error.")."""
    if code is None:
        code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOSPC or "No space left" in text:
        return "no space left on device"
    if code == errno.EDQUOT:
        return "disk quota exceeded"
    if code == errno.EFBIG or "too large" in text.lower():
        return "file too large for this file system"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return getattr(exc, "strerror", None) or text or type(exc).__name__


class TransportError(MicwireError, ConnectionError):
    """The receiver could not be reached, refused the stream, or the link broke.
    ``retry``: trying again later may help (nothing listens there yet, no route, a proxy's
    503), as against what only a person can fix (a bad token, an untrusted certificate,
    TLS on one side only)."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class UnreachableError(TransportError):
    """No connection to the receiver could be made: nothing listens there (yet), no route,
    no answer in time, a proxy with no receiver behind it. ``why`` says which, briefly."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message, retry=True)
        self.why = why


class RefusedError(TransportError):
    """The receiver refused the stream; ``reason`` says why, ``retry`` whether it may
    accept it later (full, or the name is in use), ``retry_after_s`` when, if it said."""

    def __init__(
        self, reason: str, retry: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"the receiver refused the stream: {reason}", retry)
        self.reason = reason
        self.retry_after_s = retry_after_s
