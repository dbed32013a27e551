// micwire guest page, the pure part: the spool, framing and packets of a browser sender,
// and its connection protocol, as the CLI sender has them (common/spool.py,
// common/framing.py, common/connection/sender.py; docs/PROTOCOL.md §4-§6).
// Values in, values out: no DOM, no sockets, no audio, no clock (time comes in as `now`).
// SenderProtocol is checked against the same table of cases as the Python class
// (tests/cases/sender_connection.json).

import { HEADER_BYTES, isNum } from './util.js';

export const FLAG_LAST = 0x01;
const PACKET_VERSION = 1;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;


/** A run of captured samples: `pcm` int16 interleaved, `captureUs` when pcm[0] was captured. */
export function makeBlock(position, pcm, captureUs, channels) {
  return { position, pcm, captureUs, samples: pcm.length / channels, end: position + pcm.length / channels };
}

/** What the page captured, by timeline position, bounded in samples (drop oldest). */
/** How far a hold may take a spool past its capacity (a handshake lasts seconds). */
const HOLD_MAX_S = 30;

export class Spool {
  constructor(capacitySamples, channels, rateHz) {
    this.capacity = Math.max(1, capacitySamples);
    this.channels = channels;
    this.rateHz = rateHz;
    this.blocks = [];
    this.head = 0; // index of the oldest block in `blocks`
    this.held = 0;
    this.end = 0; // position after the newest sample
    this.closed = false; // capture is over
    this.holdAt = null;
  }

  get start() {
    return this.head < this.blocks.length ? this.blocks[this.head].position : this.end;
  }

  append(block) {
    if (block.position < this.end) throw new Error(`block at ${block.position} goes back before ${this.end}`);
    if (!block.samples) return;
    this.blocks.push(block);
    this.held += block.samples;
    this.end = block.end;
    this.trim();
  }

  /** Keep the audio from `position` on past the capacity (by at most HOLD_MAX_S of it)
   * until released with null: what a hello offered stays until the receiver has said
   * where the stream starts (common/spool.py). */
  hold(position) {
    this.holdAt = position;
    this.trim();
  }

  trim() {
    let bound = this.capacity;
    if (this.holdAt !== null) {
      bound = Math.min(Math.max(bound, this.end - this.holdAt), bound + Math.floor(HOLD_MAX_S * this.rateHz));
    }
    while (this.held > bound) {
      const oldest = this.blocks[this.head];
      const excess = this.held - bound;
      if (oldest.samples <= excess) {
        this.blocks[this.head++] = null;
        this.held -= oldest.samples;
      } else {
        this.blocks[this.head] = this.tail(oldest, excess);
        this.held -= excess;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.blocks.length) {
      this.blocks = this.blocks.slice(this.head);
      this.head = 0;
    }
  }

  /** Capture is over: nothing more will be appended. */
  close() {
    this.closed = true;
  }

  /** Blocks holding the audio from `position` on, at most `maxSamples` of it; what was
   * evicted is not there (the first block may start later). */
  read(position, maxSamples = Infinity) {
    const out = [];
    let i = this.blocks.length;
    while (i > this.head && this.blocks[i - 1].end > position) i--;
    let budget = maxSamples;
    for (; i < this.blocks.length && budget > 0; i++) {
      let block = this.blocks[i];
      if (block.position < position) block = this.tail(block, position - block.position);
      if (block.samples > budget) {
        block = makeBlock(block.position, block.pcm.subarray(0, budget * this.channels), block.captureUs, this.channels);
      }
      out.push(block);
      budget -= block.samples;
    }
    return out;
  }

  tail(block, skip) {
    const captureUs = block.captureUs + Math.round((skip * 1e6) / this.rateHz);
    return makeBlock(block.position + skip, block.pcm.subarray(skip * this.channels), captureUs, this.channels);
  }
}

/** Cuts blocks into codec frames of `frameSamples` (framing.py Framer). `fillGaps` (Opus):
 * missing samples become silence, frames stay whole and back to back; `partial` (PCM): the
 * rest of each block leaves at once as a short frame. */
export class Framer {
  constructor(frameSamples, channels, rateHz, { fillGaps = false, partial = false } = {}) {
    this.frameSamples = frameSamples;
    this.channels = channels;
    this.rateHz = rateHz;
    this.fillGaps = fillGaps;
    this.partial = partial;
    this.buffer = new Int16Array(frameSamples * channels);
    this.fill = 0;
    this.start = 0;
    this.startUs = 0;
    this.next = null;
  }

  push(block) {
    const frames = [];
    if (this.next !== null && block.position !== this.next) {
      if (block.position < this.next) throw new Error(`block at ${block.position} overlaps ${this.next}`);
      const gap = block.position - this.next;
      if (this.fillGaps) {
        const startUs = block.captureUs - Math.round((gap * 1e6) / this.rateHz);
        frames.push(...this.push(makeBlock(this.next, new Int16Array(gap * this.channels), startUs, this.channels)));
      } else if (this.fill) {
        frames.push(this.take());
      }
    }
    if (this.fill === 0) {
      this.start = block.position;
      this.startUs = block.captureUs;
    }
    const ch = this.channels;
    let offset = 0;
    while (offset < block.samples) {
      const n = Math.min(this.frameSamples - this.fill, block.samples - offset);
      this.buffer.set(block.pcm.subarray(offset * ch, (offset + n) * ch), this.fill * ch);
      this.fill += n;
      offset += n;
      if (this.fill === this.frameSamples) {
        frames.push(this.take());
        this.start = block.position + offset;
        this.startUs = block.captureUs + Math.round((offset * 1e6) / this.rateHz);
      }
    }
    this.next = block.end;
    if (this.partial && this.fill) frames.push(this.take());
    return frames;
  }

  flush() {
    return this.fill ? this.take() : null;
  }

  /** Drop the partial frame held back; the next block starts a new frame wherever it is.
   * Returns where the dropped samples started (null: nothing was held). */
  restart() {
    const held = this.fill ? this.start : null;
    this.fill = 0;
    this.next = null;
    return held;
  }

  take() {
    const chunk = { timestamp: this.start, pcm: this.buffer.slice(0, this.fill * this.channels), samples: this.fill, captureUs: this.startUs };
    this.start += this.fill;
    this.startUs += Math.round((this.fill * 1e6) / this.rateHz);
    this.fill = 0;
    return chunk;
  }
}

/** Packet headers for the frames of one codec stream (framing.py Packetizer): sequence
 * numbers, and `samples` counted on the decoded stream once pre-skip is taken off
 * (PROTOCOL.md §4, Opus payload): samples = min(E - pre_skip, N) - K. */
export class Packetizer {
  constructor(frameSamples, preSkip, wholeFrames, origin) {
    this.frameSamples = frameSamples;
    this.preSkip = preSkip;
    this.wholeFrames = wholeFrames;
    this.seq = 0;
    this.encoded = 0; // E: samples fed to the encoder (Opus frames are padded to F)
    this.released = 0; // K
    this.real = 0; // N: captured samples fed
    this.nextTs = origin;
  }

  /** The header of the packet for one frame (its payload is encoded separately). */
  frame(chunk) {
    if (chunk.timestamp < this.nextTs) throw new Error(`frame at ${chunk.timestamp} goes back before ${this.nextTs}`);
    this.real += chunk.samples;
    return this.header(chunk.timestamp, chunk.samples, chunk.captureUs);
  }

  /** Headers of the packets that flush the codec and end the stream: Opus, frames of
   * silence until every real sample is out of the decoder; PCM, one empty packet. */
  finish(captureUs) {
    const out = [];
    while (this.released < this.real || !out.length) out.push(this.header(this.nextTs, 0, captureUs));
    out[out.length - 1].flags |= FLAG_LAST;
    return out;
  }

  header(timestamp, samples, captureUs) {
    this.nextTs = timestamp + (this.wholeFrames ? this.frameSamples : samples);
    this.encoded += this.wholeFrames ? this.frameSamples : samples;
    const available = Math.min(Math.max(0, this.encoded - this.preSkip), this.real);
    const h = { seq: this.seq, timestamp, samples: available - this.released, captureUs: Math.max(0, captureUs), flags: 0 };
    this.released = available;
    this.seq = (this.seq + 1) >>> 0;
    return h;
  }
}

/** PROTOCOL.md §4: the 24-byte header (big-endian) and the payload, as one message. */
export function packetBytes(h, payload) {
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const v = new DataView(out.buffer);
  v.setUint8(0, PACKET_VERSION);
  v.setUint8(1, h.flags);
  v.setUint16(2, h.samples);
  v.setUint32(4, h.seq);
  v.setBigUint64(8, BigInt(h.timestamp));
  v.setBigUint64(16, BigInt(h.captureUs));
  out.set(payload, HEADER_BYTES);
  return out;
}

/** int16 samples as little-endian bytes (PCM payload). */
export function pcmBytes(pcm) {
  if (LITTLE_ENDIAN) return new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const out = new Uint8Array(pcm.length * 2);
  const v = new DataView(out.buffer);
  for (let i = 0; i < pcm.length; i++) v.setInt16(i * 2, pcm[i], true);
  return out;
}

/** pre-skip from an OpusHead (RFC 7845 §5.1: bytes 10-11, little-endian). */
export function opusHeadPreSkip(description) {
  if (!description) return null;
  const bytes = description instanceof ArrayBuffer ? new Uint8Array(description) : new Uint8Array(description.buffer, description.byteOffset, description.byteLength);
  if (bytes.length < 19 || String.fromCharCode(...bytes.subarray(0, 8)) !== 'OpusHead') return null;
  return bytes[10] | (bytes[11] << 8);
}

/** Where a fresh encoder starts for a connection that must deliver from `start` (framing.py
 * codec_origin): `prime` samples earlier if the spool (oldest sample `oldest`) has them, on a
 * frame boundary of the capture timeline, never before `oldest`. */
export function codecOrigin(start, oldest, frameSamples, prime) {
  const want = Math.max(oldest, start - prime);
  const aligned = want - (want % frameSamples);
  if (aligned >= oldest) return aligned;
  const up = oldest + ((frameSamples - (oldest % frameSamples)) % frameSamples);
  return up <= start ? up : oldest;
}

/** The spans of the timeline found lost, each sample counted once (spool.py Losses). */
export class Losses {
  constructor() {
    this.spans = []; // [a, b): disjoint, sorted, not touching
    this.total = 0;
  }

  /** Count [start, end) lost; return how many of its samples were not yet. */
  add(start, end) {
    if (end <= start) return 0;
    let fresh = end - start;
    let low = start;
    let high = end;
    const kept = [];
    for (const [a, b] of this.spans) {
      if (b < start || a > end) {
        kept.push([a, b]);
      } else {
        fresh -= Math.max(0, Math.min(b, end) - Math.max(a, start));
        low = Math.min(low, a);
        high = Math.max(high, b);
      }
    }
    kept.push([low, high]);
    kept.sort((x, y) => x[0] - y[0]);
    this.spans = kept;
    this.total += fresh;
    return fresh;
  }

  forgetBefore(position) {
    this.spans = this.spans.filter(([, b]) => b > position);
  }
}

// --- the connection protocol (common/connection/sender.py) ------------------------------

/** Link states: IDLE -start-> CONNECTING -accept-> STREAMING -stop, all sent-> FINISHING
 * -done-> CONFIRMED; a failed connect or a lost link -> WAITING (back-off) -> CONNECTING;
 * FAILED (what waiting cannot fix); UNDELIVERED (stopped, not confirmed in time). */
export const State = Object.freeze({
  IDLE: 'idle',
  CONNECTING: 'connecting',
  WAITING: 'waiting',
  STREAMING: 'streaming',
  FINISHING: 'finishing',
  CONFIRMED: 'confirmed',
  UNDELIVERED: 'undelivered',
  FAILED: 'failed',
});
const ENDED = [State.CONFIRMED, State.UNDELIVERED, State.FAILED];

/** What a notice action is about: the shell says it (a status line, a log). */
export const Note = Object.freeze({
  ACCEPTED: 'accepted',
  WAITED: 'waited',
  RECONNECTED: 'reconnected',
  BACKLOG_CUT: 'backlog cut',
  FIRST_AUDIO: 'first audio',
  REFUSED: 'refused',
  UNREACHABLE: 'unreachable',
  LINK_LOST: 'link lost',
  SILENT: 'silent',
});

/** Close codes after which retrying cannot help (PROTOCOL.md §6). */
const FINAL_CLOSE_CODES = [1002, 1008, 1009];

export function closedMessage(code, reason) {
  if (code === null || code === undefined) return 'lost the connection to the receiver';
  return `the receiver closed the connection${reason ? `: ${reason}` : ` (${code})`}`;
}

/** The CLI sender's numbers (sender/config.py; common/connection/sender.py): the page
 * passes its own. */
export const DEFAULT_POLICY = Object.freeze({
  reconnect: true,
  reconnectTimeoutS: null,
  finishTimeoutS: 5,
  backoffFirstS: 0.1,
  backoffMaxS: 2,
  retryAfterMaxS: 150,
  silenceTimeoutS: 6,
  opusPrimeS: 0.5,
  retryFinalErrorsWhenResuming: true,
});

/**
 * One stream, from the first connection to the receiver's `done`: events in, actions out.
 * Events: start, captured, writable (the link takes more: what next?), connected (the
 * accept), connectFailed, ack, done, heard, closed, stop, tick, retry; each takes `now`
 * (seconds, monotonic) and returns actions: {type: 'connect'}, {type: 'send', header, pcm}
 * (the shell encodes `pcm` and sends header + payload), {type: 'wait', until},
 * {type: 'close', abort}, {type: 'notice', kind, ...}, {type: 'finish', state, error,
 * ended}. Errors for connectFailed: {message, retry, refused, retryAfterS}.
 */
export class SenderProtocol {
  constructor({ name, params, spool, policy = {}, random = Math.random, streamId, software }) {
    this.name = name;
    this.params = { ...params }; // codec, rateHz, channels, frameMs, bitrate, preSkip, frameSamples
    this.spool = spool;
    this.policy = { ...DEFAULT_POLICY, ...policy };
    this.random = random;
    this.streamId = streamId;
    this.software = software;
    this.state = State.IDLE;
    this.report = {
      stream: '',
      recording: null,
      capturedSamples: 0,
      ackedSamples: 0,
      confirmedSamples: null,
      lostSamples: 0,
      resentSamples: 0,
      reconnects: 0,
      packetsSent: 0,
    };
    this.losses = new Losses();
    this.conn = null;
    this.secret = '';
    this.startUs = 0;
    this.accepted = false; // the receiver has accepted the stream once
    this.announced = false;
    this.sentTo = 0; // furthest timeline position read for sending on any connection
    this.attempt = 0; // connections tried since the last accept
    this.delayS = this.policy.backoffFirstS;
    this.failingSince = null;
    this.waitingSince = null; // not in yet, and said so (once)
    this.told = null; // what kind of wait the user has been told of
    this.retryAt = null;
    this.stopped = false; // capture is over
    this.finishBy = null;
  }

  get acknowledged() {
    return this.report.ackedSamples;
  }

  get cursor() {
    return this.conn ? this.conn.cursor : null;
  }

  get undeliveredSamples() {
    return Math.max(0, this.spool.end - this.report.ackedSamples);
  }

  /** When tick() has something to decide (null: nothing is timed). */
  get deadline() {
    if (ENDED.includes(this.state)) return null;
    const times = [];
    if (this.finishBy !== null) times.push(this.finishBy);
    if (this.state === State.WAITING && this.retryAt !== null) times.push(this.retryAt);
    const conn = this.conn;
    if (conn && conn.version >= 2 && !conn.done) times.push(conn.heard + this.policy.silenceTimeoutS);
    return times.length ? Math.min(...times) : null;
  }

  /** The hello for the connection being made (PROTOCOL.md §2), at `wallUs`. */
  hello(wallUs) {
    const p = this.params;
    if (!this.startUs) this.startUs = wallUs; // nothing captured yet: sample 0 is about to be
    this.spool.hold(this.spool.start); // until the receiver says where it starts
    const h = {
      type: 'hello',
      protocol: 2,
      stream: this.name,
      codec: p.codec,
      rate_hz: p.rateHz,
      channels: p.channels,
      frame_ms: p.frameMs,
      bitrate: p.bitrate,
      pre_skip: p.codec === 'opus' ? p.preSkip : 0,
      start_time_us: this.startUs,
      sent_time_us: wallUs,
      software: this.software,
      stream_id: this.streamId,
      clock: true, // its link answers the receiver's pings (send-link.js)
    };
    if (this.secret) {
      h.resuming = true;
      h.resume_secret = this.secret;
    }
    return h;
  }

  // --- events ----------------------------------------------------------------------------
  start(now) {
    return this.state === State.IDLE ? this.connect() : [];
  }

  captured(now, block) {
    if (!this.startUs) this.startUs = block.captureUs - Math.round((block.position * 1e6) / this.params.rateHz);
    this.spool.append(block);
    this.report.capturedSamples = this.spool.end;
    return [];
  }

  stop(now) {
    if (this.stopped) return [];
    this.stopped = true;
    this.spool.close();
    this.finishBy = now + this.policy.finishTimeoutS;
    return [];
  }

  connected(now, accept) {
    if (this.state !== State.CONNECTING) return [];
    const p = this.params;
    const actions = [];
    if (this.waitingSince !== null) actions.push(notice(Note.WAITED, { seconds: now - this.waitingSince }));
    this.waitingSince = null;
    this.told = null;
    if (this.secret) {
      this.report.reconnects += 1;
      actions.push(notice(Note.RECONNECTED));
    }
    const first = !this.accepted;
    this.accepted = true;
    let start = isNum(accept.resume_timestamp) ? accept.resume_timestamp : null;
    // a new stream takes at most the receiver's backlog (PROTOCOL.md §5): what was captured
    // before where it starts will never be recorded
    const acked = this.report.ackedSamples;
    const skipped = Math.min(start || 0, this.spool.end) - acked;
    if (first && skipped > 0) {
      this.lost(acked, acked + skipped);
      actions.push(notice(Note.BACKLOG_CUT, { samples: skipped }));
    }
    if (typeof accept.resume_secret === 'string' && accept.resume_secret) this.secret = accept.resume_secret;
    this.report.stream = accept.stream;
    this.report.recording = accept.recording || null;
    actions.push(notice(Note.ACCEPTED, { accept }));
    this.attempt = 0;
    if (start === null) start = acked; // the receiver knows nothing of us: all not acknowledged
    if (start < this.sentTo) this.report.resentSamples += this.sentTo - start;
    const opus = p.codec === 'opus';
    let cursor = start;
    if (opus) {
      // warm the codec up on audio the spool has, from where the capture's frames are
      cursor = codecOrigin(start, this.spool.start, p.frameSamples, Math.round(this.policy.opusPrimeS * p.rateHz));
      this.lost(start, this.spool.start); // gone before the receiver had it
    }
    this.conn = {
      version: isNum(accept.protocol) ? accept.protocol : 2,
      cursor,
      grid: cursor,
      framer: new Framer(p.frameSamples, p.channels, p.rateHz, { fillGaps: opus, partial: !opus }),
      packetizer: new Packetizer(p.frameSamples, opus ? p.preSkip : 0, opus, cursor),
      heard: now,
      ackedAtStart: acked,
      done: null,
      lastSent: false,
    };
    this.spool.hold(cursor); // until this connection has caught up (writable)
    this.state = State.STREAMING;
    return actions;
  }

  connectFailed(now, error) {
    if (this.state !== State.CONNECTING) return [];
    this.spool.hold(null);
    const policy = this.policy;
    // a first connection gives up at once only on what waiting cannot fix
    if (!error.retry && (!this.secret || !policy.retryFinalErrorsWhenResuming)) return this.fail(error);
    if (!policy.reconnect && !(error.refused && error.retry)) return this.fail(error);
    if (this.failingSince === null) this.failingSince = now;
    const giveUp = policy.reconnectTimeoutS;
    if (giveUp !== null && now - this.failingSince > giveUp) {
      return this.fail({ message: `could not reach the receiver within ${giveUp} s (${error.message})`, retry: false });
    }
    let wait = this.delayS * (0.5 + this.random());
    if (error.refused && isNum(error.retryAfterS)) {
      // a name held until then: no use asking before (jitter: not all at once)
      const later = error.retryAfterS + (0.2 + 0.8 * this.random());
      wait = Math.max(wait, Math.min(later, policy.retryAfterMaxS));
    }
    if (giveUp !== null) wait = Math.min(wait, Math.max(0, this.failingSince + giveUp - now) + 0.05);
    const actions = this.tellWaiting(error, wait);
    if (this.told !== null && this.waitingSince === null) this.waitingSince = now;
    this.delayS = Math.min(policy.backoffMaxS, this.delayS * 2);
    return [...actions, ...this.waitUntil(now + wait)];
  }

  /** The link takes more: the packets of the next spool block; at the end of capture, the
   * packets that end the stream (stamped `wallUs`). The shell asks again while it can. */
  writable(wallUs) {
    const conn = this.conn;
    if (this.state !== State.STREAMING || !conn) return [];
    const actions = [];
    // a bounded read at a time: catching up a long spool stays linear
    for (;;) {
      const oldest = this.spool.start;
      const blocks = this.spool.read(conn.cursor, Math.floor(this.params.rateHz / 4));
      if (!blocks.length) {
        this.spool.hold(null); // caught up: the spool's own bound again
        if (this.stopped && conn.cursor >= this.spool.end) return actions.concat(this.lastPackets(conn, wallUs));
        return actions;
      }
      if (conn.cursor < oldest && conn.framer.fillGaps) {
        this.skipFrames(conn, oldest);
        continue;
      }
      this.lost(conn.cursor, oldest); // gone before the receiver had it
      if (!this.announced) {
        this.announced = true;
        actions.push(notice(Note.FIRST_AUDIO));
      }
      const block = blocks[0];
      const sends = conn.framer.push(block).map((chunk) => send(conn.packetizer.frame(chunk), chunk.pcm));
      conn.cursor = block.end;
      this.sentTo = Math.max(this.sentTo, conn.cursor);
      if (sends.length) {
        this.report.packetsSent += sends.length;
        return actions.concat(sends);
      }
    }
  }

  ack(now, position) {
    if (this.heardNow(now)) this.acknowledge(position);
    return [];
  }

  /** The receiver's confirmation after the LAST packet (the first one counts). */
  done(now, done) {
    const conn = this.heardNow(now);
    if (!conn || conn.done) return [];
    this.acknowledge(done.timestamp);
    conn.done = done;
    return conn.lastSent ? this.confirm(done) : [];
  }

  heard(now) {
    this.heardNow(now);
    return [];
  }

  /** The connection ended (`code` null: without a close frame). */
  closed(now, code, reason = '') {
    const conn = this.conn;
    if (!conn || (this.state !== State.STREAMING && this.state !== State.FINISHING)) return [];
    this.conn = null;
    const message = closedMessage(code, reason);
    const final = FINAL_CLOSE_CODES.includes(code);
    if (final || !this.policy.reconnect) return this.fail({ message, retry: false }, final);
    return [notice(Note.LINK_LOST, { message }), ...this.afterLoss(now, conn)];
  }

  /** Time passed: the finish timeout, the end of a back-off, the silence rule. */
  tick(now) {
    if (ENDED.includes(this.state) || this.state === State.IDLE) return [];
    if (this.finishBy !== null && now >= this.finishBy) return this.undelivered();
    if (this.state === State.WAITING && this.retryAt !== null && now >= this.retryAt) return this.connect();
    const conn = this.conn;
    if (conn && conn.version >= 2 && !conn.done) {
      const silent = now - conn.heard;
      if (silent >= this.policy.silenceTimeoutS) {
        this.conn = null;
        const lost = closedMessage(null, '');
        if (!this.policy.reconnect) return [{ type: 'close', abort: true }, ...this.fail({ message: lost, retry: false })];
        return [
          notice(Note.SILENT, { seconds: silent }),
          { type: 'close', abort: true },
          notice(Note.LINK_LOST, { message: lost }),
          ...this.afterLoss(now, conn),
        ];
      }
    }
    return [];
  }

  /** Not confirmed in time, but the spool still has it: another finishTimeoutS. */
  retry(now) {
    if (this.state !== State.UNDELIVERED) return [];
    this.finishBy = now + this.policy.finishTimeoutS;
    this.delayS = this.policy.backoffFirstS;
    this.failingSince = null;
    return this.connect();
  }

  // --- the parts -------------------------------------------------------------------------
  connect() {
    this.state = State.CONNECTING;
    this.retryAt = null;
    this.attempt += 1;
    return [{ type: 'connect' }];
  }

  waitUntil(until) {
    this.state = State.WAITING;
    this.retryAt = until;
    return [{ type: 'wait', until }];
  }

  /** `conn` was lost: a new connection at once if it got somewhere, else after a back-off. */
  afterLoss(now, conn) {
    this.spool.hold(null);
    this.failingSince = now;
    if (this.report.ackedSamples > conn.ackedAtStart) {
      this.delayS = this.policy.backoffFirstS;
      return this.connect();
    }
    const wait = this.delayS * (0.5 + this.random());
    this.delayS = Math.min(this.policy.backoffMaxS, this.delayS * 2);
    return this.waitUntil(now + wait);
  }

  heardNow(now) {
    const conn = this.conn;
    if (!conn || (this.state !== State.STREAMING && this.state !== State.FINISHING)) return null;
    conn.heard = now;
    return conn;
  }

  acknowledge(position) {
    if (position > this.report.ackedSamples) {
      this.report.ackedSamples = position;
      this.losses.forgetBefore(position);
    }
  }

  /** Opus: the spool dropped audio this connection had not sent. Go on from the next whole
   * frame, as if packets had been lost on the way: the receiver records the skipped frames
   * as a gap, exactly as counted here (coded silence would be recorded as audio). */
  skipFrames(conn, oldest) {
    const frame = this.params.frameSamples;
    const held = conn.framer.restart(); // a partial frame can no longer be completed
    const boundary = oldest + ((((conn.grid - oldest) % frame) + frame) % frame);
    this.lost(held === null ? conn.cursor : held, boundary);
    conn.cursor = boundary;
  }

  lastPackets(conn, wallUs) {
    const sends = [];
    const tail = conn.framer.flush();
    if (tail) sends.push(send(conn.packetizer.frame(tail), tail.pcm));
    for (const h of conn.packetizer.finish(wallUs)) sends.push(send(h, new Int16Array(0)));
    this.report.packetsSent += sends.length;
    conn.lastSent = true;
    this.state = State.FINISHING;
    return conn.done ? sends.concat(this.confirm(conn.done)) : sends;
  }

  confirm(done) {
    this.report.confirmedSamples = done.timestamp;
    this.report.recording = done.recording || this.report.recording;
    this.state = State.CONFIRMED;
    this.conn = null;
    return [{ type: 'close', abort: false }, { type: 'finish', state: State.CONFIRMED, error: null, ended: true }];
  }

  undelivered() {
    const aborted = this.conn ? [{ type: 'close', abort: true }] : [];
    this.conn = null;
    this.state = State.UNDELIVERED;
    this.retryAt = null;
    return [...aborted, { type: 'finish', state: State.UNDELIVERED, error: null, ended: false }];
  }

  fail(error, ended = false) {
    const aborted = this.conn ? [{ type: 'close', abort: true }] : [];
    this.conn = null;
    this.state = State.FAILED;
    this.retryAt = null;
    return [...aborted, { type: 'finish', state: State.FAILED, error, ended }];
  }

  /** Say once why the sender is waiting: refused for now, or (before the stream first got
   * in) not reachable. */
  tellWaiting(error, waitS) {
    if (error.refused) {
      const said = this.told === Note.REFUSED;
      this.told = Note.REFUSED;
      return said ? [] : [notice(Note.REFUSED, { seconds: waitS, error })];
    }
    if (this.secret) return [];
    const said = this.told === Note.UNREACHABLE;
    this.told = Note.UNREACHABLE;
    return said ? [] : [notice(Note.UNREACHABLE, { error })];
  }

  lost(start, end) {
    this.report.lostSamples += this.losses.add(start, end);
  }
}

function notice(kind, fields = {}) {
  return { type: 'notice', kind, ...fields };
}

function send(header, pcm) {
  return { type: 'send', header, pcm };
}
