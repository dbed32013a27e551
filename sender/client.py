"""The sender: source -> spool -> (per connection) framer -> encoder -> WebSocket.

Capture never waits for the network: it appends to a :class:`~micwire.common.spool.Spool`
that holds the last ``spool_s`` seconds as PCM. What happens on the way to the receiver is
decided by the stream's connection protocol
(:class:`~micwire.common.connection.sender.SenderProtocol`, pure): each connection reads
from the spool at the position the receiver asks for, frames and encodes it with a fresh
encoder, and sends it. So a reconnect, even to a receiver that was restarted, resumes
exactly where the recording ends, for PCM and Opus alike; an outage longer than the spool
loses the oldest audio, counted and recorded as silence. The receiver acknowledges what it
has recorded; a stream is finished when the receiver confirms it, and a stop waits for
that at most ``finish_timeout_s``, then says how much was not delivered.

This module is the shell around it: the source, the resume state on disk
(sender/state.py), an earlier process's stream to end first (sender/earlier.py), and the
log lines; sender/delivery.py moves the bytes and the time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from dataclasses import replace

from ..common.capture import DEFAULT_RATE_HZ
from ..common.codecs import Encoder, make_encoder
from ..common.connection.sender import LinkPolicy, Note, Notice, SenderProtocol, State
from ..common.errors import ParameterError, RefusedError, UnreachableError
from ..common.framing import Block
from ..common.protocol import StreamParams
from ..common.resume import ResumeEntry, receiver_key
from ..common.spool import Spool
from ..common.tokens import check_token
from .config import SenderConfig, SenderReport
from .delivery import Delivery
from .earlier import end_earlier
from .link import warn_about_plain_token
from .options import SOFTWARE, check_url
from .sources import Source, capture_rates, open_source, parse_source
from .state import StreamState

log = logging.getLogger("micwire.sender")


class Sender:
    def __init__(self, config: SenderConfig, source: Source | None = None) -> None:
        if config.duration_s is not None and not 0 < config.duration_s < math.inf:
            raise ParameterError(f"--duration must be positive, got {config.duration_s:g}")
        if not 0 < config.spool_s < math.inf:
            raise ParameterError(f"--spool-s must be positive, got {config.spool_s:g}")
        check_url(config.url)
        check_token(config.token, "--token")
        # the rate sent, and the device's (fail fast, before connecting: device, codec
        # library, file)
        config.params()  # every other parameter in range first
        capture_hz = None
        if source is not None:
            rate_hz = config.rate_hz or source.rate_hz
        elif parse_source(config.source)[0] == "device":
            rates = capture_rates(
                config.device, config.channels, config.codec, config.rate_hz, config.frame_ms
            )
            log.info("%s", rates.notice())
            rate_hz, capture_hz = rates.send_hz, rates.capture_hz
        else:
            rate_hz = config.rate_hz or DEFAULT_RATE_HZ
        #: What the sender does: the config it was given, with the rate it sends at.
        self.config = config = replace(config, rate_hz=rate_hz)
        params = config.params()
        first_encoder: list[Encoder] = [self._make_encoder(params)]
        self.params = replace(params, pre_skip=first_encoder[0].pre_skip)
        self.rate_hz = rate_hz
        self.source = source or open_source(
            config.source,
            config.device,
            rate_hz,
            config.channels,
            self.params.frame_samples,
            config.clock_scale,
            gather=config.gather_pcm,
            # Opus cannot code a frame before its last sample: waking for less is waste
            whole_frames=config.codec != "pcm",
            capture_rate_hz=capture_hz,
        )
        self.spool = Spool(max(1, math.ceil(config.spool_s * rate_hz)), rate_hz)
        self.protocol = SenderProtocol(
            config.name,
            self.params,
            self.spool,
            # the first connection's encoder is the one made above
            lambda: first_encoder.pop() if first_encoder else self._make_encoder(self.params),
            stream_id=uuid.uuid4().hex,
            software=SOFTWARE,
            random=random.random,
            policy=LinkPolicy(
                url=config.url,
                reconnect=config.reconnect,
                reconnect_timeout_s=config.reconnect_timeout_s,
                finish_timeout_s=config.finish_timeout_s,
            ),
        )
        self.report: SenderReport = self.protocol.report
        self.stream_id = self.protocol.stream_id
        self._delivery = Delivery(self.protocol, config, self._tell, self._end_earlier)
        self._limit = round(config.duration_s * rate_hz) if config.duration_s else None
        #: This stream's resume state on disk (sender/state.py), and the stream an
        #: earlier process of this sender left there, to be ended first.
        self._state: StreamState | None = None
        self._earlier: ResumeEntry | None = None

    def _make_encoder(self, params: StreamParams) -> Encoder:
        cfg = self.config
        return make_encoder(params, cfg.application, cfg.fec, cfg.expected_loss_pct)

    def stop(self) -> None:
        """Finish the stream: what was captured is delivered, then the connection closes."""
        self.source.stop()

    async def run(self) -> SenderReport:
        """Stream until the source ends or :meth:`stop`; reconnect through network failures.
        Raises TransportError if the receiver could not be reached, refused the stream for
        good, or did not confirm everything within ``finish_timeout_s`` of the stop."""
        warn_about_plain_token(self.config)
        self._open_state()
        capture = asyncio.create_task(self._capture())
        try:
            finish = await self._delivery.run()
            if finish.ended and self._state is not None:
                self._state.forget()  # confirmed, or ended by the receiver: nothing to end
        finally:
            self.source.stop()
            await asyncio.wait([capture])
            self.report.input_overflows = self.source.input_overflows
            if self._state is not None:
                self._state.release()
        if finish.state is not State.CONFIRMED:
            assert finish.error is not None
            raise finish.error
        capture.result()  # a device that failed mid-stream
        return self.report

    # --- capture ---------------------------------------------------------------------
    async def _capture(self) -> None:
        """Source -> spool, independent of the link."""
        try:
            await self.source.run(self._captured)
        finally:
            self._delivery.stop()

    def _captured(self, block: Block) -> None:
        """A block from the source (on the loop): into the spool, and on to the link at
        once if a connection is streaming."""
        limit = self._limit
        if limit is not None and block.end >= limit:
            if block.position >= limit:
                return
            block = Block(
                block.position, block.samples[: limit - block.position], block.capture_time
            )
            self.source.stop()
        self._delivery.captured(block)

    # --- what the protocol tells ---------------------------------------------------------
    def _tell(self, notice: Notice) -> None:
        cfg = self.config
        kind = notice.kind
        if kind is Note.ACCEPTED:
            self._keep_state()
        elif kind is Note.WAITED:
            log.info("the receiver at %s took the stream after %.1f s", cfg.url, notice.seconds)
        elif kind is Note.RECONNECTED:
            log.info("reconnected to %s", cfg.url)
        elif kind is Note.BACKLOG_CUT:
            log.warning(
                "the receiver starts this stream %.1f s into the capture: what came before "
                "was captured too long ago and is not recorded",
                notice.samples / self.rate_hz,
            )
        elif kind is Note.FIRST_AUDIO:
            log.info(
                "sending %r from %s to %s (%s, %d Hz, %d ch, %g ms frames%s)",
                cfg.name,
                self.source.description,
                cfg.url,
                cfg.codec,
                self.rate_hz,
                cfg.channels,
                cfg.frame_ms,
                f"; {self.source.note}" if self.source.note else "",
            )
        elif kind is Note.REFUSED:
            error = notice.error
            after = isinstance(error, RefusedError) and error.retry_after_s is not None
            when = f" in {notice.seconds:.0f} s" if after else ""
            log.warning("%s; trying again%s (still capturing)", error, when)
        elif kind is Note.UNREACHABLE:
            error = notice.error
            why = error.why if isinstance(error, UnreachableError) else str(error)
            log.warning(
                "the receiver at %s is not reachable yet (%s); capturing and trying again; "
                "the spool keeps the last %g s",
                cfg.url,
                why,
                cfg.spool_s,
            )
        elif kind is Note.LINK_LOST:
            log.warning("%s; reconnecting (still capturing)", notice.message)
        elif kind is Note.SILENT:
            log.warning("no word from the receiver for %.0f s; the link is dead", notice.seconds)

    # --- resume state on disk --------------------------------------------------------------
    def _open_state(self) -> None:
        """Own this stream's resume state, if no other process sends it; an entry found
        there was left by an earlier process of this sender: its stream is ended first."""
        cfg = self.config
        if cfg.state_dir is None:
            return
        try:
            receiver = receiver_key(cfg.url)
        except ValueError:
            return
        self._state = StreamState(cfg.state_dir, receiver, cfg.name)
        if self._state.claim():
            earlier = self._state.earlier()
            if earlier is not None and (earlier.receiver, earlier.stream) == (receiver, cfg.name):
                self._earlier = earlier  # (else a digest collision, in theory: not ours)
        else:
            log.debug("another sender process holds %s: leaving it alone", self._state.path)

    async def _end_earlier(self) -> None:
        """Before a connection: end the stream an earlier process left, once."""
        if self._earlier is not None:
            await end_earlier(self.config, self._earlier)
            self._earlier = None
            if self._state is not None:
                self._state.forget()

    def _keep_state(self) -> None:
        """Keep the stream's proof of ownership (the receiver's secret) on disk until the
        receiver confirms the stream."""
        secret = self.protocol.resume_secret
        if self._state is None or not secret:
            return
        self._state.save(
            ResumeEntry(
                receiver_key(self.config.url),
                self.config.name,
                self.stream_id,
                secret,
                self.params,
                self.protocol.start_time_us,
            )
        )
