"""Codecs behind one small interface.

An :class:`Encoder` turns one frame (``int16`` array of shape ``(frame_samples, channels)``)
into a payload; a :class:`Decoder` turns a payload back into a full frame. Both are made
from :class:`~micwire.common.protocol.StreamParams` by :func:`make_encoder` /
:func:`make_decoder`.

- ``pcm``: 16-bit signed little-endian, channels interleaved. Lossless; a short frame is
  sent short.
- ``opus``: libopus through opuslib. A short last frame is padded with silence; the
  packet header's ``samples`` says how much of it is audio.
"""

from __future__ import annotations

import abc
import ctypes
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import CodecError, CodecUnavailableError, FrameError, ParameterError
from .protocol import MAX_OPUS_PACKET, StreamParams

Frame = npt.NDArray[np.int16]

OPUS_APPLICATIONS = ("voip", "audio", "lowdelay")
_OPUSLIB_APPLICATIONS = {"voip": "voip", "audio": "audio", "lowdelay": "restricted_lowdelay"}
#: Largest frame libopus decodes: 120 ms at 48 kHz (RFC 6716 §3.2.5).
_OPUS_MAX_DECODE = 5760
_PCM_DTYPE = np.dtype("<i2")


class Encoder(abc.ABC):
    params: StreamParams

    @property
    def pre_skip(self) -> int:
        """Samples of codec delay at the start of the decoded stream."""
        return 0

    @abc.abstractmethod
    def encode(self, frame: Frame) -> bytes:
        """Encode one frame of ``(n, channels)`` int16 samples, ``n <= frame_samples``."""


class Decoder(abc.ABC):
    params: StreamParams

    @abc.abstractmethod
    def decode(self, payload: bytes) -> Frame:
        """Decode a payload to ``(n, channels)`` int16, or raise FrameError."""

    #: The codec can stand in for a lost frame (:meth:`conceal`).
    can_conceal = False

    def conceal(self, next_payload: bytes | None = None) -> Frame:
        """A stand-in for one lost frame. ``next_payload``, the packet after the loss, may
        carry forward error correction."""
        return np.zeros((self.params.frame_samples, self.params.channels), np.int16)


def _check_frame(frame: Frame, params: StreamParams) -> None:
    if frame.dtype != np.int16 or frame.ndim != 2 or frame.shape[1] != params.channels:
        raise CodecError(
            f"encoder needs int16 frames of shape (n, {params.channels}), "
            f"got {frame.dtype} {frame.shape}"
        )
    if frame.shape[0] > params.frame_samples:
        raise CodecError(f"frame of {frame.shape[0]} samples exceeds {params.frame_samples}")


class PcmEncoder(Encoder):
    def __init__(self, params: StreamParams) -> None:
        self.params = params

    def encode(self, frame: Frame) -> bytes:
        _check_frame(frame, self.params)
        return frame.astype(_PCM_DTYPE, copy=False).tobytes()


class PcmDecoder(Decoder):
    def __init__(self, params: StreamParams) -> None:
        self.params = params

    def decode(self, payload: bytes) -> Frame:
        if len(payload) % (2 * self.params.channels):
            raise FrameError(f"PCM payload of {len(payload)} bytes is not whole samples")
        # no copy on little-endian machines: a read-only view of the payload
        data = np.frombuffer(payload, dtype=_PCM_DTYPE).astype(np.int16, copy=False)
        return data.reshape(-1, self.params.channels)


def _opuslib() -> Any:
    """Import opuslib, which loads libopus at import time."""
    try:
        import opuslib
        import opuslib.api.ctl
        import opuslib.api.encoder
    except Exception as exc:  # opuslib raises a bare Exception when libopus is missing
        raise CodecUnavailableError(
            "the Opus codec needs libopus: install it (Debian/Ubuntu: "
            "`sudo apt-get install libopus0`, macOS: `brew install opus`) or use --codec pcm"
        ) from exc
    return opuslib


class OpusEncoder(Encoder):
    def __init__(
        self,
        params: StreamParams,
        application: str = "audio",
        fec: bool = False,
        expected_loss_pct: int = 0,
    ) -> None:
        if application not in _OPUSLIB_APPLICATIONS:
            choices = ", ".join(OPUS_APPLICATIONS)
            raise ParameterError(f"unknown Opus application {application!r}; use one of {choices}")
        opuslib = _opuslib()
        self.params = params
        try:
            self._encoder = opuslib.Encoder(
                params.rate_hz, params.channels, _OPUSLIB_APPLICATIONS[application]
            )
            self._encoder.bitrate = params.bitrate
            if fec:
                # opuslib's `inband_fec` setter drops its value; call the ctl directly
                opuslib.api.encoder.encoder_ctl(
                    self._encoder.encoder_state, opuslib.api.ctl.set_inband_fec, 1
                )
                self._encoder.packet_loss_perc = expected_loss_pct
            self._lookahead = int(self._encoder.lookahead)
        except opuslib.OpusError as exc:
            raise CodecError(f"cannot set up the Opus encoder: {exc}") from exc
        self._padded = np.zeros((params.frame_samples, params.channels), dtype=np.int16)
        self._state = self._encoder.encoder_state
        self._encode = opuslib.api.libopus.opus_encode
        # room for the largest packet the wire carries (libopus needs at most 1275 bytes
        # a frame, RFC 6716 §3.2.1): what it writes always fits a Packet
        self._packet = ctypes.create_string_buffer(MAX_OPUS_PACKET)
        self._int16_p = opuslib.api.c_int16_pointer
        self._error = opuslib.OpusError

    @property
    def pre_skip(self) -> int:
        return self._lookahead

    def encode(self, frame: Frame) -> bytes:
        _check_frame(frame, self.params)
        n = frame.shape[0]
        if n < self.params.frame_samples:  # Opus only codes whole frames: pad with silence
            self._padded[:n] = frame
            self._padded[n:] = 0
            frame = self._padded
        pcm = np.ascontiguousarray(frame, dtype="<i2")
        # libopus directly, into a buffer made once: opuslib's wrapper allocates per call
        size = self._encode(
            self._state,
            pcm.ctypes.data_as(self._int16_p),
            self.params.frame_samples,
            self._packet,
            MAX_OPUS_PACKET,
        )
        if size < 0:
            raise CodecError(f"the Opus encoder failed: {self._error(size)}")
        return self._packet.raw[:size]


class OpusDecoder(Decoder):
    def __init__(self, params: StreamParams) -> None:
        opuslib = _opuslib()
        self.params = params
        self._error = opuslib.OpusError
        self._decoder = opuslib.Decoder(params.rate_hz, params.channels)
        # libopus directly, into a buffer made once (opuslib's wrapper turns every decoded
        # sample into a Python int: four times the cost of the decode itself, measured)
        self._state = self._decoder.decoder_state
        self._decode_call = opuslib.api.libopus.opus_decode
        self._out = np.zeros(_OPUS_MAX_DECODE * params.channels, dtype=np.int16)
        self._out_p = self._out.ctypes.data_as(opuslib.api.c_int16_pointer)

    def decode(self, payload: bytes) -> Frame:
        return self._decode(payload, _OPUS_MAX_DECODE, fec=False)

    can_conceal = True

    def conceal(self, next_payload: bytes | None = None) -> Frame:
        """Opus packet-loss concealment (a zero-length packet, RFC 6716 §4.4), or the lost
        frame rebuilt from the in-band FEC data of the packet after it (§2.1.7)."""
        if next_payload:
            return self._decode(next_payload, self.params.frame_samples, fec=True)
        return self._decode(None, self.params.frame_samples, fec=False)

    def _decode(self, payload: bytes | None, max_samples: int, fec: bool) -> Frame:
        size = len(payload) if payload else 0
        n = self._decode_call(self._state, payload, size, self._out_p, max_samples, int(fec))
        if n < 0:
            raise FrameError(f"undecodable Opus packet: {self._error(n)}")
        if n != self.params.frame_samples:
            raise FrameError(
                f"Opus packet holds {n} samples, the stream's frames hold "
                f"{self.params.frame_samples}"
            )
        channels = self.params.channels
        return self._out[: n * channels].reshape(n, channels).copy()


def make_encoder(
    params: StreamParams, application: str = "audio", fec: bool = False, expected_loss_pct: int = 0
) -> Encoder:
    """An encoder for ``params.codec``; Opus settings are ignored for PCM."""
    params.check()
    if params.codec == "opus":
        return OpusEncoder(params, application, fec, expected_loss_pct)
    return PcmEncoder(params)


def make_decoder(params: StreamParams) -> Decoder:
    params.check()
    if params.codec == "opus":
        return OpusDecoder(params)
    return PcmDecoder(params)
