"""The sender: source -> spool -> (per connection) framer -> encoder -> WebSocket.

Capture never waits for the network: it appends to a :class:`~micwire.common.spool.Spool`
that holds the last ``spool_s`` seconds as PCM. Each connection reads from the spool at
the position the receiver asks for, frames and encodes it with a fresh encoder, and
sends it. So a reconnect, even to a receiver that was restarted, resumes exactly where
the recording ends, for PCM and Opus alike; an outage longer than the spool loses the
oldest audio, counted and recorded as silence.

The receiver acknowledges what it has recorded; a stream is finished when the receiver
confirms it, and a stop waits for that at most ``finish_timeout_s``, then says how much
was not delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from dataclasses import replace

from websockets.exceptions import ConnectionClosed

from ..common.codecs import Encoder, make_encoder
from ..common.errors import ParameterError, RefusedError, TransportError, UnreachableError
from ..common.framing import Block, Framer, Packetizer, codec_origin
from ..common.protocol import Hello, StreamParams
from ..common.resume import ResumeEntry, receiver_key
from ..common.spool import Losses, Spool
from ..common.tokens import check_token
from .config import SenderConfig, SenderReport
from .earlier import end_earlier
from .feed import Feed
from .link import (
    SOFTWARE,
    Link,
    check_url,
    closed_message,
    final_close,
    warn_about_plain_token,
)
from .sources import Source, open_source
from .state import StreamState

log = logging.getLogger("micwire.sender")
#: A resumed Opus stream starts its fresh encoder this much before where the receiver's
#: recording ends (the receiver drops what it has already): a new encoder takes a few
#: hundred ms to settle (its first frames are coded differently), and so does a decoder.
OPUS_PRIME_S = 0.5
#: Reconnect back-off: from 0.1 s doubling up to 2 s, with jitter (audio cannot wait the
#: seconds a web client's back-off starts at).
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
#: A receiver's "retry after" is believed up to this (it holds a name at most a minute or
#: two for a sender that may come back).
RETRY_AFTER_MAX_S = 150.0


class Sender:
    def __init__(self, config: SenderConfig, source: Source | None = None) -> None:
        self.config = config
        params = config.params()
        if config.duration_s is not None and not 0 < config.duration_s < math.inf:
            raise ParameterError(f"--duration must be positive, got {config.duration_s:g}")
        if not 0 < config.spool_s < math.inf:
            raise ParameterError(f"--spool-s must be positive, got {config.spool_s:g}")
        check_url(config.url)
        check_token(config.token, "--token")
        # fail fast, before connecting: codec library, device, file
        self._encoder: Encoder | None = self._make_encoder(params)
        self.params = replace(params, pre_skip=self._encoder.pre_skip)
        self.source = source or open_source(
            config.source,
            config.device,
            config.rate_hz,
            config.channels,
            self.params.frame_samples,
            config.clock_scale,
            gather=config.gather_pcm,
            # Opus cannot code a frame before its last sample: waking for less is waste
            whole_frames=config.codec != "pcm",
        )
        self.report = SenderReport(rate_hz=config.rate_hz)
        self.spool = Spool(max(1, math.ceil(config.spool_s * config.rate_hz)), config.rate_hz)
        self._losses = Losses()  # report.link_lost_samples, each sample counted once
        #: The connection's task has something to do: capture ended, the link is full or
        #: lost, or the pump met an error.
        self._attention = asyncio.Event()
        self._feed: Feed | None = None  # the streaming connection's, while there is one
        self._limit = round(config.duration_s * config.rate_hz) if config.duration_s else None
        self.stream_id = uuid.uuid4().hex
        self._secret = ""
        self._accepted = False  # the receiver has accepted the stream once
        self._start_us = 0
        self._sent_to = 0  # furthest timeline position sent on any connection
        self._link: Link | None = None
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
        deliver = asyncio.create_task(self._deliver())
        try:
            await asyncio.wait([capture, deliver], return_when=asyncio.FIRST_COMPLETED)
            if not deliver.done():  # stopped: what is left gets a bounded time
                await asyncio.wait([deliver], timeout=self.config.finish_timeout_s)
                if not deliver.done():
                    deliver.cancel()
                    if self._link is not None:
                        self._link.abort()
                    with contextlib.suppress(asyncio.CancelledError):
                        await deliver
                    raise TransportError(
                        f"stopped, but the receiver at {self.config.url} did not confirm "
                        f"the stream within {self.config.finish_timeout_s:g} s; "
                        f"{self._undelivered_s():.1f} s of audio may not have been delivered"
                    )
            deliver.result()
        finally:
            self.source.stop()
            deliver.cancel()
            await asyncio.wait([capture])
            self.report.input_overflows = self.source.input_overflows
            if self._state is not None:
                self._state.release()
        capture.result()  # a device that failed mid-stream
        return self.report

    def _undelivered_s(self) -> float:
        acknowledged = self._link.acknowledged if self._link is not None else 0
        return max(0, self.spool.end - max(acknowledged, self.report.acknowledged)) / (
            self.config.rate_hz
        )

    # --- capture ---------------------------------------------------------------------
    async def _capture(self) -> None:
        """Source -> spool, independent of the link."""
        try:
            await self.source.run(self._captured)
        finally:
            self.spool.close()
            self._attention.set()

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
        self.spool.append(block)
        self.report.samples_captured = self.spool.end
        if self._feed is not None:
            self._feed.pump()

    # --- delivery ------------------------------------------------------------------------
    async def _deliver(self) -> None:
        """Connections, one after the other, until the receiver confirms the stream."""
        delay = BACKOFF_FIRST_S
        failing_since: float | None = None
        waiting_since: float | None = None  # not in yet, and said so (once)
        told = ""  # what kind of wait the log has been told of
        while True:
            try:
                if self._earlier is not None:
                    await end_earlier(self.config, self._earlier)
                    self._earlier = None
                    if self._state is not None:
                        self._state.forget()
                link = await Link.open(self.config, self._hello)
            except TransportError as exc:
                refused = isinstance(exc, RefusedError)
                # the first connection gives up at once only on what waiting cannot fix
                if not self._secret and not exc.retry:
                    raise
                if not self.config.reconnect and not (refused and exc.retry):
                    raise
                now = time.monotonic()
                failing_since = failing_since or now
                give_up = self.config.reconnect_timeout_s
                if give_up is not None and now - failing_since > give_up:
                    again = " again" if self._secret else ""
                    raise TransportError(
                        f"could not reach the receiver at {self.config.url}{again} within "
                        f"{give_up:g} s ({exc}); "
                        f"{self._undelivered_s():.1f} s of audio were not delivered"
                    ) from exc
                wait = delay * random.uniform(0.5, 1.5)
                if isinstance(exc, RefusedError) and exc.retry_after_s is not None:
                    # a name held until then: no use asking before (jitter: not all at once)
                    later = exc.retry_after_s + random.uniform(0.2, 1.0)
                    wait = max(wait, min(later, RETRY_AFTER_MAX_S))
                if give_up is not None:  # and the last try comes at the deadline
                    wait = min(wait, max(0.0, failing_since + give_up - now) + 0.05)
                told = self._tell_waiting(exc, told, wait)
                if told and waiting_since is None:
                    waiting_since = now
                await asyncio.sleep(wait)
                delay = min(BACKOFF_MAX_S, delay * 2)
                continue
            if waiting_since is not None:
                log.info(
                    "the receiver at %s took the stream after %.1f s",
                    self.config.url,
                    time.monotonic() - waiting_since,
                )
            waiting_since, told = None, ""
            if self._secret:
                self.report.reconnects += 1
                log.info("reconnected to %s", self.config.url)
            self._note_backlog_cut(link.accept.resume_timestamp)
            self._secret = link.accept.resume_secret or self._secret
            self._keep_state()
            self.report.stream, self.report.recording = link.accept.stream, link.accept.recording
            self._link = link
            link.on_lost = self._attention.set
            acknowledged = self.report.acknowledged
            try:
                await self._stream(link)
                if self._state is not None:  # confirmed: nothing is left to end
                    self._state.forget()
                return
            except ConnectionClosed as exc:
                if final_close(exc) or not self.config.reconnect:
                    if final_close(exc) and self._state is not None:
                        self._state.forget()  # the receiver ended it: nothing to end
                    raise TransportError(closed_message(exc)) from exc
                log.warning("%s; reconnecting (still capturing)", closed_message(exc))
            finally:
                self.report.acknowledged = max(self.report.acknowledged, link.acknowledged)
                self._losses.forget_before(self.report.acknowledged)
                await link.close()
            failing_since = time.monotonic()
            if self.report.acknowledged > acknowledged:  # that connection got somewhere
                delay = BACKOFF_FIRST_S
            else:  # it failed at once: back off, as for a failed connect
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(BACKOFF_MAX_S, delay * 2)

    def _tell_waiting(self, exc: TransportError, told: str, wait_s: float) -> str:
        """Say once why the sender is waiting (not once per try): the receiver refuses
        the stream for now, or (before the stream first got in) cannot be reached. Returns
        what the log has been told now."""
        if isinstance(exc, RefusedError):
            if told != "refused":
                when = f" in {wait_s:.0f} s" if exc.retry_after_s is not None else ""
                log.warning("%s; trying again%s (still capturing)", exc, when)
            return "refused"
        if self._secret:  # reconnecting: the line about the lost connection said it
            return told
        if told != "unreachable":
            why = exc.why if isinstance(exc, UnreachableError) else str(exc)
            log.warning(
                "the receiver at %s is not reachable yet (%s); capturing and trying again; "
                "the spool keeps the last %g s",
                self.config.url,
                why,
                self.config.spool_s,
            )
        return "unreachable"

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

    def _keep_state(self) -> None:
        """Keep the stream's proof of ownership (the receiver's secret) on disk until the
        receiver confirms the stream."""
        if self._state is None or not self._secret:
            return
        self._state.save(
            ResumeEntry(
                receiver_key(self.config.url),
                self.config.name,
                self.stream_id,
                self._secret,
                self.params,
                self._start_us,
            )
        )

    def _hello(self) -> Hello:
        now_us = int(time.time() * 1e6)
        if not self._start_us:  # when sample 0 was captured (or is about to be)
            first = self.spool.read(0, 1) if self.spool.end else []
            self._start_us = int(first[0].capture_time * 1e6) if first else now_us
        return Hello(
            self.config.name,
            self.params,
            self._start_us,
            now_us,
            SOFTWARE,
            stream_id=self.stream_id,
            resuming=bool(self._secret),
            resume_secret=self._secret,
        )

    def _note_backlog_cut(self, start: int | None) -> None:
        """A new stream takes at most the receiver's backlog (PROTOCOL.md §5): audio
        captured before where the receiver starts it will never be recorded. Counted as
        lost, so that "nothing lost" stays true (a sender kept waiting for minutes, e.g.
        while its name was held)."""
        first, self._accepted = not self._accepted, True
        skipped = min(start or 0, self.spool.end) - self.report.acknowledged
        if first and skipped > 0:
            self._lost(self.report.acknowledged, self.report.acknowledged + skipped)
            log.warning(
                "the receiver starts this stream %.1f s into the capture: what came before "
                "was captured too long ago and is not recorded",
                skipped / self.config.rate_hz,
            )

    async def _stream(self, link: Link) -> None:
        """Send from where the receiver asks, as audio comes, until the receiver confirms
        the end. A broken link raises ConnectionClosed."""
        start = link.accept.resume_timestamp
        if start is None:  # the receiver knows nothing of us: resend all not acknowledged
            start = self.report.acknowledged
        if start < self._sent_to:
            self.report.resent_samples += self._sent_to - start
        # a fresh codec stream on every connection: an encoder cannot be rewound
        encoder = self._encoder or self._make_encoder(self.params)
        self._encoder = None
        pcm = self.config.codec == "pcm"
        framer = Framer(
            self.params.frame_samples,
            self.config.channels,
            self.config.rate_hz,
            fill_gaps=not pcm,
            partial=pcm,
        )
        cursor = start
        if not pcm:  # warm the codec up on audio it has, from where the capture's frames are
            prime = round(OPUS_PRIME_S * self.config.rate_hz)
            cursor = codec_origin(start, self.spool.start, self.params.frame_samples, prime)
            self._lost(start, self.spool.start)  # gone before the receiver had it
        packetizer = Packetizer(encoder, origin=cursor)
        feed = Feed(
            self.spool,
            link,
            framer,
            packetizer,
            cursor,
            self.report,
            self._attention,
            self._announce,
            self._lost,
        )
        # from here on, each captured block is sent where it arrives (Feed.pump); this
        # task sends what the link could not take at once and watches for the end
        self._feed = feed
        try:
            while True:
                self._attention.clear()
                feed.pump()
                if feed.error is not None:
                    raise feed.error
                if feed.backlog:
                    await feed.drain()
                    continue
                if self.spool.closed and feed.cursor >= self.spool.end:
                    break
                if link.lost:
                    await link.wait_done()  # raises the ConnectionClosed that ended it
                await self._attention.wait()
        finally:
            self._feed = None
            self._sent_to = max(self._sent_to, feed.cursor)
            if feed.error is not None:  # not lost behind a connection that broke meanwhile
                raise feed.error
        tail = framer.flush()
        packets = packetizer.packets(tail) if tail is not None else []
        for packet in [*packets, *packetizer.finish(time.time())]:
            await link.send(packet.serialize())
            self.report.packets_sent += 1
        done = await link.wait_done()
        self.report.confirmed = done.timestamp
        self.report.recording = done.recording or self.report.recording

    def _lost(self, start: int, end: int) -> None:
        """``[start, end)`` will never reach the receiver (counted once, however often a
        connection finds it missing)."""
        self.report.link_lost_samples += self._losses.add(start, end)

    def _announce(self) -> None:
        """Logged once audio really flows to the receiver."""
        cfg = self.config
        log.info(
            "sending %r from %s to %s (%s, %d Hz, %d ch, %g ms frames%s)",
            cfg.name,
            self.source.description,
            cfg.url,
            cfg.codec,
            cfg.rate_hz,
            cfg.channels,
            cfg.frame_ms,
            f"; {self.source.note}" if self.source.note else "",
        )
