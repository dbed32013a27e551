// micwire guest page: a browser is a sender (docs/PROTOCOL.md §1-§9; the page is /send, §10).
//
//   microphone -> MediaStreamAudioSourceNode -> capture worklet (capture-worklet.js: int16
//   frames of F samples with their wall-clock capture time, levels)
//   -> Spool (in memory, the last `spool_s` seconds, counted in samples)
//   -> per connection: Framer -> Packetizer (+ a fresh WebCodecs AudioEncoder for Opus)
//   -> WebSocket (same origin, authenticated by the login cookie)
// The spool, framer and packetizer are pure (send-core.js); this module is the shell:
// microphone, encoder, connections, timers and the page.
//
// It mirrors the CLI sender (sender/client.py, sender/link.py, common/spool.py,
// common/framing.py): capture never waits for the network; every connection says hello
// (resuming with the stream's secret after the first), starts a new codec stream where the
// receiver's accept says its recording ends (Opus: OPUS_PRIME_S earlier, so the fresh
// encoder has settled; the receiver drops what it already has), and sends from the spool.
// Receiver acks and the final `done` say what is recorded; "everything delivered" is shown
// only when `done` covers every captured sample and nothing was dropped.
//
// Link parameters: ?name=N&codec=opus|pcm&bitrate=BPS&frame_ms=MS&channels=1|2&spool_s=S
//   &finish_s=S&application=voip|audio|lowdelay&processing=1
//
// Test hooks (Playwright): window.micwireSend = {state, stats(), start(), stop(),
// trackSettings(), ready(), spooled()}.

import { EM, clampNumber, isNum, minus, setText, visible, wsUrl } from './util.js';
import { Framer, Packetizer, Spool, makeBlock, opusHeadPreSkip, packetBytes, pcmBytes } from './send-core.js';

const RATE_HZ = 48000;
const SOFTWARE = 'micwire-web/1';
const CAPTURE_URL = '/static/capture-worklet.js';
const FRAME_DURATIONS_MS = [2.5, 5, 10, 20, 40, 60]; // PROTOCOL.md §2
const OPUS_APPLICATIONS = ['voip', 'audio', 'lowdelay'];
/** Fresh Opus encoders start this much before where the recording ends (sender/client.py). */
const OPUS_PRIME_S = 0.5;
/** Reconnect back-off: 0.5 s doubling to 8 s, ±50 % jitter. */
const BACKOFF_FIRST_S = 0.5;
const BACKOFF_MAX_S = 8;
/** The receiver acks every second; this long without a word, the link is dead (link.py). */
const SILENCE_TIMEOUT_S = 6;
const CONNECT_TIMEOUT_S = 10;
const REPLY_TIMEOUT_S = 15;
const CHECK_TIMEOUT_MS = 5000; // asking the receiver whether this link may still send
/** Sending stops while this much is queued in the socket: a dead link does not swallow the
 * spool, and "waiting to be sent" stays honest. */
const MAX_BUFFERED_BYTES = 256 * 1024;
const MAX_ENCODE_QUEUE = 8;
const METER_FLOOR_DB = -60;
const TICK_MS = 250;

const errorText = (err) => (err && err.message ? err.message : String(err));
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

/** A random stream id: 32 hex digits (like the CLI's uuid4().hex). */
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------------------
// settings from the link

function linkSettings() {
  const q = new URLSearchParams(location.search);
  const frameMs = Number(q.get('frame_ms'));
  const codec = (q.get('codec') || '').toLowerCase();
  const application = (q.get('application') || '').toLowerCase();
  return {
    name: Array.from((q.get('name') || '').trim()).slice(0, 200).join(''), // whole characters
    codec: codec === 'pcm' || codec === 'opus' ? codec : null, // null: Opus if the browser can
    bitrate: Math.round(clampNumber(q.get('bitrate'), 6000, 510000, 32000)),
    frameMs: FRAME_DURATIONS_MS.includes(frameMs) ? frameMs : 20,
    channels: q.get('channels') === '2' ? 2 : 1,
    spoolS: clampNumber(q.get('spool_s'), 1, 3600, 120),
    finishS: clampNumber(q.get('finish_s'), 1, 3600, 30),
    application: OPUS_APPLICATIONS.includes(application) ? application : 'audio',
    processing: q.get('processing') === '1',
  };
}

function opusConfig(s) {
  return {
    codec: 'opus',
    sampleRate: RATE_HZ,
    numberOfChannels: s.channels,
    bitrate: s.bitrate,
    opus: { frameDuration: Math.round(s.frameMs * 1000), application: s.application },
  };
}

/** Can this browser encode Opus here, and with what pre-skip? One frame of silence through a
 * throw-away encoder: its OpusHead says (every encoder of this configuration has the same). */
async function probeOpus(s) {
  if (typeof globalThis.AudioEncoder !== 'function' || typeof globalThis.AudioData !== 'function') {
    return { ok: false, reason: 'this browser has no WebCodecs AudioEncoder' };
  }
  const config = opusConfig(s);
  try {
    const support = await AudioEncoder.isConfigSupported(config);
    if (!support.supported) return { ok: false, reason: 'this browser cannot encode Opus' };
    const frameSamples = Math.round((RATE_HZ * s.frameMs) / 1000);
    const preSkip = await new Promise((resolve, reject) => {
      const encoder = new AudioEncoder({
        output: (chunk, meta) => {
          const found = opusHeadPreSkip(meta && meta.decoderConfig && meta.decoderConfig.description);
          resolve(found);
        },
        error: reject,
      });
      encoder.configure(config);
      const data = new AudioData({ format: 's16', sampleRate: RATE_HZ, numberOfFrames: frameSamples, numberOfChannels: s.channels, timestamp: 0, data: new Int16Array(frameSamples * s.channels) });
      encoder.encode(data);
      data.close();
      encoder.flush().then(() => resolve(null), reject).finally(() => encoder.state !== 'closed' && encoder.close());
    });
    if (preSkip === null) return { ok: false, reason: 'the Opus encoder gave no OpusHead (pre-skip unknown)' };
    return { ok: true, preSkip };
  } catch (err) {
    return { ok: false, reason: `the Opus encoder failed: ${errorText(err)}` };
  }
}

// ---------------------------------------------------------------------------------------
// the microphone

class Microphone {
  constructor(channels, frameSamples, onMessage) {
    this.channels = channels;
    this.frameSamples = frameSamples;
    this.onMessage = onMessage;
    this.ctx = null;
    this.node = null;
    this.source = null;
    this.stream = null;
    this.ready = null;
  }

  /** The context and the capture worklet (once). */
  ensureContext() {
    if (!this.ready) {
      const ctx = new AudioContext({ sampleRate: RATE_HZ, latencyHint: 'interactive' });
      this.ctx = ctx;
      this.ready = ctx.audioWorklet.addModule(CAPTURE_URL).then(() => {
        const node = new AudioWorkletNode(ctx, 'micwire-capture', {
          numberOfInputs: 1,
          numberOfOutputs: 1,
          outputChannelCount: [1],
          channelCount: this.channels,
          channelCountMode: 'explicit',
          channelInterpretation: 'speakers',
          processorOptions: { channels: this.channels, frameSamples: this.frameSamples },
        });
        node.port.onmessage = (e) => this.onMessage(e.data);
        // a node is processed only when something pulls it; its output is silence
        node.connect(ctx.destination);
        this.node = node;
        return ctx;
      });
    }
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    return this.ready;
  }

  /** Open (or switch to) a microphone. The old one stays connected until the new one is there. */
  async open(deviceId, processing) {
    await this.ensureContext();
    const audio = {
      echoCancellation: processing,
      noiseSuppression: processing,
      autoGainControl: processing,
      channelCount: { ideal: this.channels },
      sampleRate: { ideal: RATE_HZ },
    };
    if (deviceId) audio.deviceId = { exact: deviceId };
    const stream = await navigator.mediaDevices.getUserMedia({ audio });
    const source = new MediaStreamAudioSourceNode(this.ctx, { mediaStream: stream });
    source.connect(this.node);
    this.closeSource();
    this.source = source;
    this.stream = stream;
    return stream.getAudioTracks()[0];
  }

  closeSource() {
    if (this.source) this.source.disconnect();
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.source = null;
    this.stream = null;
  }

  get track() {
    return this.stream ? this.stream.getAudioTracks()[0] : null;
  }

  post(cmd) {
    if (this.node) this.node.port.postMessage({ cmd });
  }
}

// ---------------------------------------------------------------------------------------
// the sender

class GuestSender {
  constructor(settings, view) {
    this.s = settings;
    this.view = view;
    this.frameSamples = Math.round((RATE_HZ * settings.frameMs) / 1000);
    this.codec = 'pcm';
    this.preSkip = 0;
    this.state = 'idle'; // idle, starting, connecting, live, reconnecting, finishing, delivered, undelivered, failed
    this.status = '';
    this.resetStream();
    this.conn = null;
    this.retryAt = 0;
    this.attempt = 0;
    this.delayS = BACKOFF_FIRST_S;
    this.finishDeadline = 0;
    this.stopWaiter = null;
    this.checking = false; // asking the receiver whether this page may send at all
    this.pumpTimer = 0;
    this.shown = 0; // when the page last showed the figures
    this.lastProblem = '';
    this.mic = new Microphone(settings.channels, this.frameSamples, (m) => this.onWorklet(m));
    setInterval(() => this.tick(), TICK_MS);
  }

  resetStream() {
    this.spool = new Spool(Math.ceil(this.s.spoolS * RATE_HZ), this.s.channels, RATE_HZ);
    this.streamId = randomId();
    this.secret = '';
    this.startUs = 0;
    this.sentTo = 0;
    this.acked = 0;
    this.lost = 0;
    this.accepted = false; // the receiver has accepted this stream once
    this.resent = 0;
    this.reconnects = 0;
    this.packetsSent = 0;
    this.bytesSent = 0;
    this.done = null;
    this.name = '';
  }

  get capturing() {
    return ['connecting', 'live', 'reconnecting'].includes(this.state);
  }

  // --- capture ---------------------------------------------------------------------------
  onWorklet(m) {
    if (m.type === 'level') {
      this.view.level(m.peak, m.rms);
      this.tick(); // worklet messages keep coming in a background tab, where timers slow down
    } else if (m.type === 'frame' || m.type === 'tail') {
      if (m.pcm.length) {
        const captureUs = Math.round(m.captureMs * 1000 - this.inputLatencyUs());
        if (!this.spool.end && !this.startUs) this.startUs = captureUs;
        this.spool.append(makeBlock(this.spool.end, m.pcm, captureUs, this.s.channels));
      }
      if (m.type === 'tail' && this.stopWaiter) this.stopWaiter();
      this.pump();
    }
  }

  inputLatencyUs() {
    const settings = this.mic.track ? this.mic.track.getSettings() : {};
    return isNum(settings.latency) ? settings.latency * 1e6 : 0;
  }

  async start(name) {
    if (this.state !== 'idle' && !['delivered', 'undelivered', 'failed'].includes(this.state)) return;
    this.resetStream();
    this.name = name;
    this.setState('starting', 'starting…');
    await this.view.ready; // microphone open, codec decided
    if (!this.mic.track) await this.view.openMic(); // released at the last stop
    if (!this.mic.track) {
      this.setState('failed', 'no microphone: allow this page to use it, then press Start again');
      return;
    }
    this.mic.post('start');
    this.attempt = 0;
    this.delayS = BACKOFF_FIRST_S;
    this.setState('connecting', 'connecting…');
    this.connect();
  }

  async stop() {
    if (!this.capturing) return;
    const tail = new Promise((resolve) => {
      this.stopWaiter = resolve;
      setTimeout(resolve, 1000); // a context that stopped running sends no tail
    });
    this.mic.post('stop');
    this.setState('finishing', 'delivering…');
    await tail;
    this.stopWaiter = null;
    this.spool.closed = true;
    this.mic.closeSource(); // the browser's recording indicator goes off
    this.finishDeadline = performance.now() + this.s.finishS * 1000;
    this.pump();
    this.refresh();
  }

  /** After "not delivered": try again for another `finish_s` (the spool still has it). */
  retryDelivery() {
    if (this.state !== 'undelivered') return;
    this.finishDeadline = performance.now() + this.s.finishS * 1000;
    this.delayS = BACKOFF_FIRST_S;
    this.setState('finishing', 'delivering…');
    this.connect();
  }

  // --- connections -----------------------------------------------------------------------
  connect() {
    this.retryAt = 0;
    this.attempt += 1;
    const ws = new WebSocket(wsUrl('/stream/' + encodeURIComponent(this.name)));
    ws.binaryType = 'arraybuffer';
    const conn = {
      ws,
      opened: false,
      accepted: false,
      refusal: null,
      done: null,
      ended: false, // the LAST packet is on its way
      ackedAtStart: this.acked,
      lastHeard: performance.now(),
      openedAt: performance.now(),
      cursor: 0,
      framer: null,
      packetizer: null,
      encoder: null,
      pending: [], // Opus: headers waiting for their encoded frame
      bytesPerSample: this.codec === 'pcm' ? 2 * this.s.channels : this.s.bitrate / 8 / RATE_HZ,
    };
    this.conn = conn;
    ws.onopen = () => {
      conn.opened = true;
      conn.lastHeard = performance.now();
      ws.send(JSON.stringify(this.hello()));
    };
    ws.onmessage = (e) => this.onMessage(conn, e.data);
    ws.onclose = (e) => this.onClose(conn, e.code, e.reason);
    ws.onerror = () => {}; // a close event follows with what is known
  }

  hello() {
    if (!this.startUs) {
      const first = this.spool.end ? this.spool.read(0, 1) : [];
      this.startUs = first.length ? first[0].captureUs : nowUs();
    }
    const h = {
      type: 'hello',
      protocol: 2,
      stream: this.name,
      codec: this.codec,
      rate_hz: RATE_HZ,
      channels: this.s.channels,
      frame_ms: this.s.frameMs,
      bitrate: this.s.bitrate,
      pre_skip: this.codec === 'opus' ? this.preSkip : 0,
      start_time_us: this.startUs,
      sent_time_us: nowUs(),
      software: SOFTWARE,
      stream_id: this.streamId,
    };
    if (this.secret) {
      h.resuming = true;
      h.resume_secret = this.secret;
    }
    return h;
  }

  onMessage(conn, data) {
    if (conn !== this.conn || typeof data !== 'string') return;
    conn.lastHeard = performance.now();
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (!conn.accepted) {
      if (msg.type === 'accept') this.onAccept(conn, msg);
      else if (msg.type === 'refuse') conn.refusal = { reason: String(msg.reason || 'no reason given'), retry: !!msg.retry };
      return;
    }
    if (msg.type === 'ack' && isNum(msg.timestamp)) {
      this.acked = Math.max(this.acked, msg.timestamp);
    } else if (msg.type === 'done' && !conn.done) {
      conn.done = msg;
      if (isNum(msg.timestamp)) this.acked = Math.max(this.acked, msg.timestamp);
      this.onDone(msg);
      conn.ws.close(1000);
    }
    this.refresh();
  }

  onAccept(conn, accept) {
    conn.accepted = true;
    if (this.secret) this.reconnects += 1;
    this.secret = typeof accept.resume_secret === 'string' && accept.resume_secret ? accept.resume_secret : this.secret;
    const first = !this.accepted;
    this.accepted = true;
    let start = accept.resume_timestamp;
    if (!isNum(start)) start = this.acked; // the receiver knows nothing of us: all not acked
    if (first && start > this.acked) {
      // a new stream takes at most the receiver's backlog (PROTOCOL.md §5): what was captured
      // before where it starts will never be recorded
      this.lost += Math.min(start, this.spool.end) - this.acked;
    }
    if (start < this.sentTo) this.resent += this.sentTo - start;
    const opus = this.codec === 'opus';
    let cursor = start;
    if (opus && start > this.spool.start) {
      cursor = Math.max(this.spool.start, start - Math.round(OPUS_PRIME_S * RATE_HZ)); // warm the codec up
    }
    conn.cursor = cursor;
    conn.framer = new Framer(this.frameSamples, this.s.channels, RATE_HZ, { fillGaps: opus, partial: !opus });
    conn.packetizer = new Packetizer(this.frameSamples, opus ? this.preSkip : 0, opus, cursor);
    if (opus) conn.encoder = this.makeEncoder(conn);
    this.attempt = 0;
    if (this.state !== 'finishing') this.setState('live', 'connected: live');
    this.pump();
  }

  /** A fresh encoder per connection (each connection is its own codec stream, §4). */
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
    if (preSkip !== null && preSkip !== this.preSkip) {
      // the hello said otherwise: say hello again with what this encoder really does
      this.preSkip = preSkip;
      this.abandon(conn, 'the Opus encoder changed its delay');
      return;
    }
    const h = conn.pending.shift();
    if (!h) return; // the encoder's own flush output: nothing of ours
    const payload = new Uint8Array(chunk.byteLength);
    chunk.copyTo(payload);
    this.send(conn, h, payload);
    this.pump();
  }

  send(conn, h, payload) {
    if (conn.ws.readyState !== WebSocket.OPEN) return;
    const bytes = packetBytes(h, payload);
    conn.ws.send(bytes);
    this.packetsSent += 1;
    this.bytesSent += bytes.byteLength;
  }

  /** Send what the spool has from the connection's cursor, as far as the socket and the
   * encoder take it now; at the end of capture, the end of the stream. */
  pump() {
    const conn = this.conn;
    if (!conn || !conn.accepted || conn.ended || conn.ws.readyState !== WebSocket.OPEN) return;
    const opus = this.codec === 'opus';
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
      const oldest = this.spool.start;
      const blocks = this.spool.read(conn.cursor, this.frameSamples);
      if (!blocks.length) {
        if (this.spool.closed && conn.cursor >= this.spool.end) this.finishConnection(conn);
        this.refresh();
        return;
      }
      if (conn.cursor < oldest) this.lost += oldest - conn.cursor; // gone before the receiver had it
      for (const block of blocks) {
        for (const chunk of conn.framer.push(block)) this.emit(conn, chunk);
        conn.cursor = block.end;
      }
      this.sentTo = Math.max(this.sentTo, conn.cursor);
    }
  }

  emit(conn, chunk) {
    this.emitHeader(conn, conn.packetizer.frame(chunk), chunk.pcm);
  }

  emitHeader(conn, h, pcm) {
    if (this.codec === 'pcm') {
      this.send(conn, h, pcmBytes(pcm));
      return;
    }
    // Opus codes whole frames: a short one is padded with silence
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
  }

  finishConnection(conn) {
    conn.ended = true;
    const tail = conn.framer.flush();
    if (tail) this.emit(conn, tail);
    for (const h of conn.packetizer.finish(nowUs())) this.emitHeader(conn, h, new Int16Array(0));
    if (conn.encoder) conn.encoder.flush().catch(() => {});
  }

  onDone(done) {
    this.done = done;
    const gap = isNum(done.gap_samples) ? done.gap_samples : 0;
    const covered = isNum(done.timestamp) && done.timestamp >= this.spool.end;
    if (covered && !this.lost && !gap) {
      this.setState('delivered', `everything delivered (${fmtSeconds(this.spool.end)} recorded)`);
    } else {
      const missing = Math.max(this.lost, gap, this.spool.end - (done.timestamp || 0));
      this.setState('delivered', `delivered, but ${fmtSeconds(missing)} of it could not be kept (lost during an outage)`);
    }
  }

  onClose(conn, code, reason) {
    if (conn !== this.conn) return;
    this.dropConnection(conn);
    if (conn.done || ['delivered', 'failed', 'undelivered', 'idle'].includes(this.state)) return;
    const said = reason ? `: ${reason}` : '';
    if (!conn.accepted && conn.refusal) {
      if (conn.refusal.retry) this.retryLater(`the receiver says: ${conn.refusal.reason}`);
      else this.fail(`the receiver refused this stream: ${conn.refusal.reason}`);
      return;
    }
    if (code === 1002 || code === 1008 || code === 1009) {
      this.fail(`the receiver closed the connection${said || ` (${code})`}`);
      return;
    }
    if (!conn.opened) {
      // refused before the upgrade (HTTP 401), or nobody there: ask which
      this.checking = true;
      this.checkAllowed().then((allowed) => {
        this.checking = false;
        if (allowed === false) {
          this.fail('this link is not allowed to send (its token is missing or wrong); ask the host for a new link');
        } else {
          this.retryLater('cannot reach the receiver');
        }
      });
      return;
    }
    const why = code === 1013 ? `the receiver says: ${reason || 'try again later'}` : `lost the connection${said}`;
    if (conn.accepted && this.acked > conn.ackedAtStart) {
      this.delayS = BACKOFF_FIRST_S; // that connection got somewhere: straight back
      this.connectSoon(0, why);
    } else {
      this.retryLater(why);
    }
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

  /** Give up on a connection that may still look open (a dead link): no close handshake to
   * wait for, a new connection at once. */
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
    this.retryLater(why, conn.accepted && this.acked > conn.ackedAtStart);
  }

  retryLater(why, immediately = false) {
    if (['delivered', 'failed', 'undelivered', 'idle'].includes(this.state)) return;
    const delay = immediately ? 0 : this.delayS * (0.5 + Math.random());
    if (!immediately) this.delayS = Math.min(BACKOFF_MAX_S, this.delayS * 2);
    else this.delayS = BACKOFF_FIRST_S;
    this.connectSoon(delay, why);
  }

  connectSoon(delayS, why) {
    this.conn = null;
    this.retryAt = performance.now() + delayS * 1000;
    this.lastProblem = why;
    if (this.state !== 'finishing') this.setState('reconnecting', '');
    this.refresh();
    if (delayS === 0) this.tick();
  }

  fail(message) {
    if (this.conn) this.dropConnection(this.conn);
    this.retryAt = 0;
    if (this.capturing) {
      this.mic.post('stop');
      this.spool.closed = true;
    }
    this.mic.closeSource(); // the browser's recording indicator goes off; Start opens it again
    const undelivered = this.spool ? Math.max(0, this.spool.end - this.acked) : 0;
    if (undelivered > 0) message += ` (${fmtSeconds(undelivered)} recorded here was not delivered)`;
    this.setState('failed', message);
  }

  /** Timers: back-off, the dead-link watchdog, the bounded wait at the end. */
  tick() {
    const now = performance.now();
    const conn = this.conn;
    if (this.state === 'finishing' && this.finishDeadline && now > this.finishDeadline) {
      if (conn) {
        conn.ws.onclose = null;
        try {
          conn.ws.close(4000, 'gave up');
        } catch {
          // closing already
        }
        this.dropConnection(conn);
      }
      this.retryAt = 0;
      const missing = this.spool.end - this.acked;
      this.setState('undelivered', `not delivered: ${fmtSeconds(missing)} (the receiver did not confirm it within ${this.s.finishS} s); keep this page open and press Keep trying`);
      return;
    }
    if (conn && !conn.opened && now - conn.openedAt > CONNECT_TIMEOUT_S * 1000) {
      this.abandon(conn, 'the receiver did not answer');
    } else if (conn && conn.opened && !conn.accepted && now - conn.lastHeard > REPLY_TIMEOUT_S * 1000) {
      this.abandon(conn, 'the receiver did not answer the hello');
    } else if (conn && conn.accepted && !conn.done && now - conn.lastHeard > SILENCE_TIMEOUT_S * 1000) {
      this.abandon(conn, `no word from the receiver for ${SILENCE_TIMEOUT_S} s`);
    }
    if (!this.conn && !this.checking && this.retryAt && now >= this.retryAt) this.connect();
    this.refresh();
  }

  setState(state, status) {
    this.state = state;
    this.status = status;
    this.refresh(true);
  }

  /** The status line, and (at most five times a second, or at once) the page's figures. */
  refresh(now = false) {
    if (this.state === 'reconnecting' || (this.state === 'finishing' && !this.conn)) {
      const left = this.retryAt ? Math.max(0, (this.retryAt - performance.now()) / 1000) : 0;
      const what = this.lastProblem ? `${this.lastProblem}; ` : '';
      const next = this.conn ? 'trying now' : `next try in ${left.toFixed(1)} s`;
      const tail = this.state === 'finishing' ? `${fmtSeconds(this.spool.end - this.acked)} left to deliver` : 'still recording';
      this.status = `reconnecting (attempt ${Math.max(1, this.attempt)}, ${next}): ${what}${tail}`;
    } else if (this.state === 'finishing') {
      this.status = `delivering… ${fmtSeconds(Math.max(0, this.spool.end - this.acked))} left`;
    } else if (this.state === 'live') {
      this.status = 'connected: live';
    }
    const t = performance.now();
    if (now || t - this.shown >= 200) {
      this.shown = t;
      this.view.show(this);
    }
  }

  waitingSamples() {
    const conn = this.conn;
    if (conn && conn.accepted && !['delivered'].includes(this.state)) {
      const buffered = conn.ws.bufferedAmount / conn.bytesPerSample;
      return Math.max(0, this.spool.end - conn.cursor + buffered + conn.pending.length * this.frameSamples);
    }
    if (this.state === 'delivered') return 0;
    return Math.max(0, this.spool.end - this.acked);
  }

  stats() {
    return {
      state: this.state,
      status: this.status,
      codec: this.codec,
      preSkip: this.preSkip,
      rateHz: RATE_HZ,
      channels: this.s.channels,
      frameMs: this.s.frameMs,
      bitrate: this.codec === 'opus' ? this.s.bitrate : null,
      capturedSamples: this.spool.end,
      sentSamples: this.sentTo,
      ackedSamples: this.acked,
      confirmedSamples: this.done && isNum(this.done.timestamp) ? this.done.timestamp : null,
      gapSamples: this.done && isNum(this.done.gap_samples) ? this.done.gap_samples : null,
      recording: this.done ? this.done.recording || null : null,
      spooledSeconds: this.spool.held / RATE_HZ,
      waitingSeconds: this.waitingSamples() / RATE_HZ,
      lostSamples: this.lost,
      resentSamples: this.resent,
      reconnects: this.reconnects,
      attempt: this.attempt,
      packetsSent: this.packetsSent,
      bytesSent: this.bytesSent,
      streamId: this.streamId,
    };
  }
}

function fmtSeconds(samples) {
  return `${(Math.max(0, samples) / RATE_HZ).toFixed(1)} s`;
}

// ---------------------------------------------------------------------------------------
// the page

const $ = (id) => document.getElementById(id);

class Meter {
  constructor(el) {
    this.el = el;
    this.cover = el.querySelector('.cover');
    this.db = el.querySelector('.db');
  }

  set(linear) {
    const dbfs = linear > 0 ? 20 * Math.log10(linear) : -Infinity;
    const fraction = Math.min(1, Math.max(0, (dbfs - METER_FLOOR_DB) / -METER_FLOOR_DB));
    this.cover.style.transform = `scaleX(${(1 - fraction).toFixed(4)})`;
    this.el.dataset.db = isNum(dbfs) ? dbfs.toFixed(1) : '-120';
    this.el.classList.toggle('hot', dbfs > -1);
    setText(this.db, isNum(dbfs) ? minus(dbfs.toFixed(1)) + ' dB' : '−∞ dB');
  }
}

const CONN_STATES = {
  idle: ['idle', 'not live'],
  starting: ['connecting', 'starting…'],
  connecting: ['connecting', 'connecting…'],
  live: ['live', 'live'],
  reconnecting: ['connecting', 'reconnecting'],
  finishing: ['connecting', 'delivering'],
  delivered: ['idle', 'stopped'],
  undelivered: ['down', 'stopped'],
  failed: ['down', 'stopped'],
};

function main() {
  const settings = linkSettings();
  const els = {
    form: $('form'),
    name: $('name'),
    mic: $('mic'),
    processing: $('processing'),
    codec: $('codec'),
    codecHint: $('codec-hint'),
    start: $('start'),
    stop: $('stop'),
    retry: $('retry'),
    status: $('status'),
    conn: $('conn'),
    banner: $('banner'),
    levelHint: $('level-hint'),
  };
  const meters = { peak: new Meter($('meter-peak')), rms: new Meter($('meter-rms')) };
  let levels = { peak: 0, rms: 0, dirty: false };
  let lastTrack = null;

  const view = {
    ready: null,
    openMic: () => openMic(),
    level(peak, rms) {
      levels = { peak: Math.max(levels.dirty ? levels.peak : 0, peak), rms, dirty: true };
    },
    banner(text) {
      els.banner.hidden = !text;
      setText(els.banner, text || '');
    },
    show(sender) {
      const [connState, connText] = CONN_STATES[sender.state] || ['idle', sender.state];
      els.conn.dataset.state = connState;
      setText(els.conn.querySelector('.conn-text'), connText);
      setText(els.status, visible(sender.status)); // may quote the receiver, which quotes the name
      els.status.dataset.state = sender.state;
      const st = sender.stats();
      setText($('f-captured'), fmtSeconds(st.capturedSamples));
      setText($('f-waiting'), st.capturedSamples ? `${st.waitingSeconds.toFixed(1)} s` : EM);
      setText($('f-acked'), fmtSeconds(st.ackedSamples));
      setText($('f-reconnects'), String(st.reconnects));
      setText($('f-lost'), st.lostSamples ? fmtSeconds(st.lostSamples) : '0');
      $('f-lost').classList.toggle('nonzero', st.lostSamples > 0);
      setText($('f-codec'), st.codec === 'opus' ? `Opus ${Math.round(st.bitrate / 1000)} kbit/s` : 'PCM 16-bit');
      const busy = !['idle', 'delivered', 'undelivered', 'failed'].includes(sender.state);
      els.start.disabled = busy;
      els.stop.disabled = !sender.capturing;
      els.retry.hidden = sender.state !== 'undelivered';
      els.name.disabled = busy;
      els.codec.disabled = busy;
      document.body.dataset.state = sender.state;
    },
  };

  const sender = new GuestSender(settings, view);

  // the meter, 20 times a second (a timer: it also slows down in a background tab)
  setInterval(() => {
    if (!levels.dirty) return;
    meters.peak.set(levels.peak);
    meters.rms.set(levels.rms);
    levels.dirty = false;
  }, 50);

  // the name box shows the name as typed (or as the link gave it): a right-to-left override
  // makes "\u202Egnp.exe" look like "exe.png" there, so the escaped form is said below it
  const nameShown = $('name-shown');
  const showName = () => {
    const name = els.name.value.trim();
    const shown = visible(name);
    nameShown.hidden = shown === name;
    setText(nameShown, shown === name ? '' : `The receiver shows this name as ${shown}: it holds characters that are invisible or turn text around.`);
  };
  els.name.addEventListener('input', showName);
  els.name.value = settings.name;
  showName();
  els.processing.checked = settings.processing;

  if (!window.isSecureContext) {
    view.banner('Browsers give the microphone only to secure pages: open this link with https:// (the host starts the receiver with --cert/--key or --self-signed), or on this machine as http://localhost.');
  }

  async function listDevices() {
    try {
      const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'audioinput');
      const current = els.mic.value || (lastTrack && lastTrack.getSettings().deviceId) || '';
      els.mic.replaceChildren();
      for (const d of devices) {
        const option = document.createElement('option');
        option.value = d.deviceId === 'default' ? '' : d.deviceId;
        option.textContent = d.label || (d.deviceId === 'default' ? 'Default microphone' : `Microphone ${els.mic.length + 1}`);
        els.mic.append(option);
      }
      if (!devices.length) {
        const option = document.createElement('option');
        option.value = '';
        option.textContent = 'No microphone found';
        els.mic.append(option);
      }
      if ([...els.mic.options].some((o) => o.value === current)) els.mic.value = current;
    } catch {
      // leave the list as it is
    }
  }

  async function openMic() {
    try {
      lastTrack = await sender.mic.open(els.mic.value, els.processing.checked);
      lastTrack.addEventListener('ended', () => {
        if (sender.capturing) view.banner('The microphone stopped (unplugged?). Pick another one: recording goes on.');
      });
      view.banner('');
      const held = sender.mic.ctx && sender.mic.ctx.state !== 'running';
      setText(els.levelHint, held
        ? 'Click anywhere on the page to turn the level meter on.'
        : 'Speak: the bars should move. Aim for peaks around −12 dB.');
      await listDevices();
      return true;
    } catch (err) {
      const denied = err && (err.name === 'NotAllowedError' || err.name === 'SecurityError');
      view.banner(denied
        ? 'The microphone is blocked for this page. Allow it (the icon in the address bar), then reload.'
        : `Cannot open the microphone: ${errorText(err)}`);
      return false;
    }
  }

  async function decideCodec() {
    let want = settings.codec || 'opus';
    const probe = await probeOpus(settings);
    if (probe.ok) {
      sender.preSkip = probe.preSkip;
      setText(els.codecHint, `Opus at ${Math.round(settings.bitrate / 1000)} kbit/s, ${settings.frameMs} ms frames.`);
    } else {
      els.codec.querySelector('option[value="opus"]').disabled = true;
      if (want === 'opus') {
        want = 'pcm';
        setText(els.codecHint, `PCM: ${probe.reason}.`);
      }
    }
    els.codec.value = want;
    sender.codec = want;
  }

  // an AudioContext made before any click may be held until one (autoplay policies)
  const wake = () => {
    sender.mic.ensureContext();
    if (sender.mic.ctx && sender.mic.ctx.state === 'running') {
      setText(els.levelHint, 'Speak: the bars should move. Aim for peaks around −12 dB.');
    }
  };
  document.addEventListener('pointerdown', wake);
  document.addEventListener('keydown', wake);

  view.ready = Promise.all([decideCodec(), window.isSecureContext ? openMic() : Promise.resolve(false)]);
  sender.setState('idle', 'Ready: check your level, then press Start.');
  view.ready.then(() => {
    if (sender.state === 'idle') {
      sender.setState('idle', sender.mic.track ? 'Ready: check your level, then press Start.' : 'Allow the microphone to begin.');
    }
  });

  els.codec.addEventListener('change', () => {
    sender.codec = els.codec.value;
  });
  els.mic.addEventListener('change', () => openMic());
  els.processing.addEventListener('change', () => openMic());
  navigator.mediaDevices?.addEventListener?.('devicechange', () => listDevices());

  els.form.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = els.name.value.trim();
    if (!name) {
      els.name.focus();
      return;
    }
    if (sender.state === 'undelivered') {
      const left = fmtSeconds(sender.spool.end - sender.acked);
      if (!confirm(`${left} of the last recording has not reached the receiver. Start a new recording and give it up?`)) return;
    }
    sender.mic.ensureContext(); // inside the click: autoplay policies want a gesture
    sender.start(name);
  });
  els.stop.addEventListener('click', () => sender.stop());
  els.retry.addEventListener('click', () => sender.retryDelivery());

  // leaving with audio not yet delivered: ask first (what reached the receiver is safe)
  window.addEventListener('beforeunload', (e) => {
    if (sender.capturing || sender.state === 'finishing' || sender.state === 'undelivered') e.preventDefault();
  });

  window.micwireSend = {
    get state() {
      return sender.state;
    },
    stats: () => sender.stats(),
    start: (name) => {
      if (name) {
        els.name.value = name;
        showName();
      }
      sender.mic.ensureContext();
      return sender.start(els.name.value.trim() || 'guest');
    },
    stop: () => sender.stop(),
    trackSettings: () => (sender.mic.track ? sender.mic.track.getSettings() : null),
    ready: () => view.ready.then(() => true),
    /** What the spool holds, {start, end, pcm: base64 of int16 little-endian}: a test compares
     * it with the recording (the page sent exactly what it captured). */
    spooled: () => {
      const blocks = sender.spool.read(sender.spool.start);
      const bytes = new Uint8Array(blocks.reduce((n, b) => n + b.pcm.byteLength, 0));
      let at = 0;
      for (const b of blocks) {
        bytes.set(pcmBytes(b.pcm), at);
        at += b.pcm.byteLength;
      }
      let text = '';
      for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return { start: sender.spool.start, end: sender.spool.end, pcm: btoa(text) };
    },
  };
}

main();
