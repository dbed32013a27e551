// micwire guest page, the link: one WebSocket per connection (same origin, authenticated by
// the login cookie; PROTOCOL.md §1-§9), the shell that feeds the connection protocol
// (send-core.js SenderProtocol) what the socket says (accept, refuse, ack, done, close) and
// sends what it says to send, as far as the socket's buffer and the connection's Opus
// encoder take it; the page's connect and reply timeouts. No microphone, no page.
//
// LinkShell is the link half of GuestSender (send-stream.js), which extends it and provides
// `core` (the SenderProtocol), `act(actions)`, `s` (the link's settings), `codec`,
// `preSkip`, `frameSamples` and `view`.

import { errorText, isNum, wsUrl } from './util.js';
import { FLAG_LAST, closedMessage, opusHeadPreSkip, packetBytes, pcmBytes } from './send-core.js';
import { RATE_HZ, opusConfig } from './send-mic.js';

/** Fresh Opus encoders start this much before where the recording ends (as the CLI's). */
const OPUS_PRIME_S = 0.5;
/** Reconnect back-off: 0.5 s doubling to 8 s, ±50 % jitter. */
const BACKOFF_FIRST_S = 0.5;
const BACKOFF_MAX_S = 8;
/** The receiver acks every second; this long without a word, the link is dead. */
export const SILENCE_TIMEOUT_S = 6;
const CONNECT_TIMEOUT_S = 10;
const REPLY_TIMEOUT_S = 15;
const CHECK_TIMEOUT_MS = 5000; // asking the receiver whether this link may still send
/** Sending stops while this much is queued in the socket: a dead link does not swallow the
 * spool, and "waiting to be sent" stays honest. */
const MAX_BUFFERED_BYTES = 256 * 1024;
const MAX_ENCODE_QUEUE = 8;

export const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
export const nowS = () => performance.now() / 1000;

/** The protocol's numbers for a browser tab: a gentler back-off than the command line's,
 * and a stream that stops on what only a person can fix (a revoked login) even once the
 * receiver could resume it. */
export const PAGE_POLICY = {
  backoffFirstS: BACKOFF_FIRST_S,
  backoffMaxS: BACKOFF_MAX_S,
  silenceTimeoutS: SILENCE_TIMEOUT_S,
  opusPrimeS: OPUS_PRIME_S,
  retryFinalErrorsWhenResuming: false,
};

export class LinkShell {
  constructor() {
    this.conn = null; // the WebSocket of the connection being made or streaming
    this.pumpTimer = 0;
    this.lastProblem = '';
    this.lastDone = null;
    this.bytesSent = 0;
  }

  /** A new connection: its WebSocket, and the hello once it is open. */
  connect() {
    const ws = new WebSocket(wsUrl('/stream/' + encodeURIComponent(this.core.name)));
    ws.binaryType = 'arraybuffer';
    const conn = {
      ws,
      opened: false,
      accepted: false,
      refusal: null,
      openedAt: performance.now(),
      encoder: null,
      pending: [], // Opus: headers waiting for their encoded frame
      bytesPerSample: this.codec === 'pcm' ? 2 * this.s.channels : this.s.bitrate / 8 / RATE_HZ,
    };
    this.conn = conn;
    ws.onopen = () => {
      conn.opened = true;
      conn.openedAt = performance.now();
      ws.send(JSON.stringify(this.core.hello(nowUs())));
    };
    ws.onmessage = (e) => this.onMessage(conn, e.data);
    ws.onclose = (e) => this.onClose(conn, e.code, e.reason);
    ws.onerror = () => {}; // a close event follows with what is known
  }

  onMessage(conn, data) {
    if (conn !== this.conn || typeof data !== 'string') return;
    let msg = null;
    try {
      msg = JSON.parse(data);
    } catch {
      // not JSON: only a sign of life
    }
    if (!conn.accepted) {
      if (msg && msg.type === 'accept') {
        this.act(this.core.connected(nowS(), msg));
        this.pump();
      } else if (msg && msg.type === 'refuse') {
        const after = msg.retry === true && isNum(msg.retry_after_s) && msg.retry_after_s >= 0 && msg.retry_after_s <= 3600;
        conn.refusal = { reason: String(msg.reason || 'no reason given'), retry: msg.retry === true, retryAfterS: after ? msg.retry_after_s : null };
      }
      return;
    }
    if (msg && msg.type === 'ping' && isNum(msg.t1_us)) {
      // answered at once, stamped with this machine's clock: the receiver measures it
      const t = nowUs();
      conn.ws.send(JSON.stringify({ type: 'pong', t1_us: msg.t1_us, t2_us: t, t3_us: t }));
      this.act(this.core.heard(nowS()));
    } else if (msg && msg.type === 'ack' && isNum(msg.timestamp)) {
      this.act(this.core.ack(nowS(), msg.timestamp));
    } else if (msg && msg.type === 'done' && isNum(msg.timestamp)) {
      this.lastDone = this.lastDone || msg;
      this.act(this.core.done(nowS(), msg));
    } else {
      this.act(this.core.heard(nowS()));
    }
  }

  /** A fresh Opus encoder for one connection. */
  makeEncoder(conn) {
    const encoder = new AudioEncoder({
      output: (chunk, meta) => this.onEncoded(conn, chunk, meta),
      error: (err) => {
        if (conn !== this.conn) return;
        this.view.banner(`The Opus encoder failed (${errorText(err)}); reconnecting.`);
        this.abandon(conn, 'the Opus encoder failed');
      },
    });
    encoder.configure(opusConfig(this.s));
    encoder.addEventListener('dequeue', () => this.pump());
    return encoder;
  }

  onEncoded(conn, chunk, meta) {
    if (conn !== this.conn) return;
    const description = meta && meta.decoderConfig && meta.decoderConfig.description;
    const preSkip = opusHeadPreSkip(description);
    if (preSkip !== null && preSkip !== this.core.params.preSkip) {
      // the hello said otherwise: say hello again with what this encoder really does
      this.preSkip = preSkip;
      this.core.params.preSkip = preSkip;
      this.abandon(conn, 'the Opus encoder changed its delay');
      return;
    }
    const h = conn.pending.shift();
    if (!h) return; // the encoder's own flush output: nothing of ours
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    this.transmit(conn, h, payload);
    this.pump();
  }

  transmit(conn, h, payload) {
    if (conn.ws.readyState !== WebSocket.OPEN) return;
    const bytes = packetBytes(h, payload);
    conn.ws.send(bytes);
    this.bytesSent += bytes.byteLength;
  }

  /** Ask the protocol for what to send, as far as the socket and the encoder take it now. */
  pump() {
    const conn = this.conn;
    if (!conn || !conn.accepted || conn.ws.readyState !== WebSocket.OPEN) return;
    const opus = this.core.params.codec === 'opus';
    for (;;) {
      if (conn.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
        if (!this.pumpTimer) {
          this.pumpTimer = setTimeout(() => {
            this.pumpTimer = 0;
            this.pump();
          }, 20);
        }
        return;
      }
      if (opus && (conn.encoder.encodeQueueSize > MAX_ENCODE_QUEUE || conn.pending.length > 4 * MAX_ENCODE_QUEUE)) return;
      const actions = this.core.writable(nowUs());
      if (!actions.length) return;
      this.act(actions);
      if (conn !== this.conn) return;
    }
  }

  /** One packet: PCM goes at once; Opus through the connection's encoder (short frames
   * padded with silence), sent when encoded. */
  sendFrame(conn, h, pcm) {
    if (!conn) return;
    if (!conn.encoder) {
      this.transmit(conn, h, pcmBytes(pcm));
      return;
    }
    const frame = new Int16Array(this.frameSamples * this.s.channels);
    frame.set(pcm);
    const data = new AudioData({
      format: 's16',
      sampleRate: RATE_HZ,
      numberOfFrames: this.frameSamples,
      numberOfChannels: this.s.channels,
      timestamp: Math.round((h.timestamp * 1e6) / RATE_HZ),
      data: frame,
    });
    conn.pending.push(h);
    conn.encoder.encode(data);
    data.close();
    if (h.flags & FLAG_LAST) conn.encoder.flush().catch(() => {}); // the last frames out
  }

  onClose(conn, code, reason) {
    if (conn !== this.conn) return;
    this.dropConnection(conn);
    const said = reason ? `: ${reason}` : '';
    if (conn.accepted) {
      this.lastProblem = code === 1013 ? `the receiver says: ${reason || 'try again later'}` : `lost the connection${said}`;
      this.act(this.core.closed(nowS(), code, reason));
      return;
    }
    // no accept: a refusal, a close before the answer, HTTP 401 (which looks like any other
    // failure from here: ask), or nobody there
    const refusal = conn.refusal || (code === 1008 || code === 1013 ? { reason: reason || 'no reason given', retry: code === 1013, retryAfterS: null } : null);
    if (refusal) {
      const message = refusal.retry ? `the receiver says: ${refusal.reason}` : `the receiver refused this stream: ${refusal.reason}`;
      this.connectFailed({ message, retry: refusal.retry, refused: true, retryAfterS: refusal.retryAfterS });
    } else if (code === 1002 || code === 1009) {
      this.connectFailed({ message: closedMessage(code, reason), retry: false, refused: false });
    } else if (!conn.opened) {
      this.checkAllowed().then((allowed) => {
        if (allowed === false) {
          this.connectFailed({ message: 'this link is not allowed to send (its token is missing or wrong); ask the host for a new link', retry: false, refused: false });
        } else {
          this.connectFailed({ message: 'cannot reach the receiver', retry: true, refused: false });
        }
      });
    } else {
      this.connectFailed({ message: `lost the connection${said}`, retry: true, refused: false });
    }
  }

  connectFailed(error) {
    this.lastProblem = error.message;
    this.act(this.core.connectFailed(nowS(), error));
  }

  /** Does the login cookie still let this page send? (A WebSocket refused with HTTP 401 looks
   * like any other failure from here.) true, false, or null when the receiver is unreachable. */
  async checkAllowed() {
    try {
      // bounded: on a dead link a pooled connection can hang a fetch for minutes, and no
      // reconnect happens while this check is pending
      const r = await fetch(location.pathname, {
        redirect: 'manual',
        cache: 'no-store',
        credentials: 'same-origin',
        signal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
      });
      if (r.type === 'opaqueredirect' || r.status === 401) return false;
      return r.ok ? true : null;
    } catch {
      return null;
    }
  }

  dropConnection(conn) {
    if (conn.encoder && conn.encoder.state !== 'closed') conn.encoder.close();
    conn.encoder = null;
    conn.pending = [];
    if (this.conn === conn) this.conn = null;
  }

  /** The protocol is done with the connection: after `done` the closing handshake; else
   * (a dead link, given up) at once, without waiting for it. */
  closeConnection(abort) {
    const conn = this.conn;
    if (!conn) return;
    conn.ws.onclose = null;
    conn.ws.onmessage = null;
    try {
      if (abort) conn.ws.close(4000, 'gave up');
      else conn.ws.close(1000);
    } catch {
      // closing already
    }
    this.dropConnection(conn);
  }

  /** Give up on a connection that may still look open (a dead link, a failed encoder): no
   * close handshake to wait for; the protocol decides what next. */
  abandon(conn, why) {
    if (conn !== this.conn) return;
    conn.ws.onclose = null;
    conn.ws.onmessage = null;
    try {
      conn.ws.close(4000, why.slice(0, 100));
    } catch {
      // closing already
    }
    this.dropConnection(conn);
    this.lastProblem = why;
    if (conn.accepted) this.act(this.core.closed(nowS(), null, why));
    else this.act(this.core.connectFailed(nowS(), { message: why, retry: true, refused: false }));
  }

  /** Timers: the page's connect and reply timeouts, then the protocol's (back-off, the
   * silence rule, the bounded wait at the end). */
  tick() {
    const now = performance.now();
    const conn = this.conn;
    if (conn && !conn.opened && now - conn.openedAt > CONNECT_TIMEOUT_S * 1000) {
      this.abandon(conn, 'the receiver did not answer');
    } else if (conn && conn.opened && !conn.accepted && now - conn.openedAt > REPLY_TIMEOUT_S * 1000) {
      this.abandon(conn, 'the receiver did not answer the hello');
    }
    this.act(this.core.tick(now / 1000));
  }
}
