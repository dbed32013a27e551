// micwire monitor: listening to a stream in the browser (docs/PROTOCOL.md §10, §4).
//
//   WS /api/listen/<name> --start--> format; packets --> Opus: WebCodecs AudioDecoder
//                                                        PCM: s16le -> float
//   --> player worklet (player-worklet.js: jitter buffer, drift, resampling, concealment)
//   --> GainNode (volume) --> the shared output bus --> ctx.destination
//
// One AudioContext for the page, created on the first Listen click. Opus falls back to PCM
// (`?format=pcm`: the receiver decodes for us) when this browser has no WebCodecs
// AudioDecoder or cannot decode Opus, and says so on the page.

import { HEADER_BYTES, backoff, clampNumber, errorText, isNum, median, parseHeader, wsUrl } from './util.js';

const PLAYER_URL = '/static/player-worklet.js';
const PLAYER_NAME = 'micwire-player';
/** Jitter-buffer target in ms: what the player keeps queued at the least, just before the
 * next packet's audio arrives (on average it holds half a packet more); it grows on an
 * underrun and shrinks back. `?jitter_ms=N` on the page's URL overrides it (benchmarks,
 * experiments). */
const TARGET_MS = clampNumber(new URLSearchParams(location.search).get('jitter_ms'), 5, 200, 15);
/** Beyond this much queued the oldest audio goes (stay live). */
const MAX_QUEUE_MS = 250;
const MAX_PENDING_PACKETS = 500;

const PATH_LABELS = {
  connecting: 'connecting…',
  'opus-webcodecs': 'Opus · WebCodecs',
  pcm: 'PCM',
  'pcm-fallback': 'PCM (fallback)',
};


// ---------------------------------------------------------------------------------------
// the page's audio: one context, one output bus

export const audio = { ctx: null, output: null, ready: null };

/** Create the AudioContext inside the click (autoplay policies want a user gesture; iOS
 * wants resume() in the same task), then load the player module. Resolves to the context. */
export function ensureAudio() {
  if (!audio.ctx) {
    // latencyHint 0: the smallest output buffer the device allows (Chromium: 2.7 ms base + 8 ms
    // output against 10 + 32 ms for 'interactive', measured headless); underruns are handled
    // by the jitter buffer, which grows when it must
    const ctx = new AudioContext({ latencyHint: 0 });
    try {
      // iOS Safari 16.4+: play even with the ring/silent switch on
      if (navigator.audioSession) navigator.audioSession.type = 'playback';
    } catch {
      // not supported here
    }
    ctx.resume().catch(() => {});
    // every stream is mixed into this bus right before the speakers (tests tap it)
    const output = ctx.createGain();
    output.connect(ctx.destination);
    audio.ctx = ctx;
    audio.output = output;
    audio.ready = ctx.audioWorklet.addModule(PLAYER_URL).then(() => ctx);
  } else if (audio.ctx.state === 'suspended') {
    audio.ctx.resume().catch(() => {});
  }
  return audio.ready;
}

/** Can this browser decode Opus with WebCodecs? {ok, reason}; cached per format. */
const opusSupport = new Map();
function checkOpus(rateHz, channels) {
  const key = `${rateHz}/${channels}`;
  if (!opusSupport.has(key)) {
    opusSupport.set(
      key,
      (async () => {
        if (typeof globalThis.AudioDecoder !== 'function' || typeof globalThis.EncodedAudioChunk !== 'function') {
          return { ok: false, reason: 'no WebCodecs AudioDecoder in this browser' };
        }
        try {
          const r = await AudioDecoder.isConfigSupported({ codec: 'opus', sampleRate: rateHz, numberOfChannels: channels });
          return r.supported ? { ok: true, reason: '' } : { ok: false, reason: 'this browser cannot decode Opus' };
        } catch (err) {
          return { ok: false, reason: `Opus check failed: ${errorText(err)}` };
        }
      })(),
    );
  }
  return opusSupport.get(key);
}

// ---------------------------------------------------------------------------------------

/**
 * One Opus codec stream (from one `start` to the next): a WebCodecs AudioDecoder and what
 * PROTOCOL.md §4 says to do with its output. Raw Opus packets need no description (no
 * OpusHead); Chromium then applies no pre-skip itself, so it is dropped here.
 */
class OpusStream {
  constructor(format, sink) {
    this.format = format;
    this.sink = sink; // {play(pcm, captureMs, channels, rateHz), error(reason)}
    this.queue = []; // {samples, captureMs} per packet given to the decoder, in order
    this.skipFrames = null; // decoded frames still to drop (pre-skip), set at the first output
    this.retired = false;
    this.outputRateHz = null;
    this.decoder = new AudioDecoder({
      output: (ad) => this.onOutput(ad),
      error: (err) => {
        if (!this.retired) sink.error(`Opus decoding failed: ${errorText(err)}`);
      },
    });
    this.decoder.configure({ codec: 'opus', sampleRate: format.rateHz, numberOfChannels: format.channels });
  }

  decode(header, payload) {
    if (this.decoder.state !== 'configured' || payload.length === 0) return; // empty: LAST only
    this.queue.push({ samples: header.samples, captureMs: header.captureUs / 1000 });
    const timestamp = Math.round((header.timestamp * 1e6) / this.format.rateHz);
    this.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp, data: payload }));
  }

  /** One decoded packet (outputs come in decode order, one per packet). */
  onOutput(ad) {
    try {
      const meta = this.queue.shift();
      if (!meta) return;
      const frames = ad.numberOfFrames;
      const rate = ad.sampleRate; // Chromium decodes Opus at 48 kHz whatever it was told
      const scale = rate / this.format.rateHz;
      const preSkip = Math.round(this.format.preSkip * scale);
      this.outputRateHz = rate;
      // PROTOCOL.md §4: drop the first pre_skip decoded samples of the codec stream, then of
      // what remains of each packet keep the first `samples`
      if (this.skipFrames === null) this.skipFrames = preSkip;
      const start = Math.min(this.skipFrames, frames);
      this.skipFrames -= start;
      const keep = Math.min(frames - start, Math.round(meta.samples * scale));
      if (keep <= 0) return;
      const channels = Math.min(ad.numberOfChannels, this.format.channels) || 1;
      // the output lags the input by pre_skip: frame `start` of this packet's output was
      // captured (start − preSkip) frames after the packet's first input sample
      this.sink.play(interleaved(ad, start, keep, channels), meta.captureMs + ((start - preSkip) * 1000) / rate, channels, rate);
    } finally {
      ad.close();
    }
  }

  /** A new codec stream takes over: decode what was sent (it is still worth hearing), then close. */
  retire() {
    this.retired = true;
    if (this.decoder.state !== 'configured') return this.close();
    this.decoder.flush().catch(() => {}).finally(() => this.close());
  }

  close() {
    this.retired = true;
    if (this.decoder.state !== 'closed') {
      try {
        this.decoder.close();
      } catch {
        // already closed
      }
    }
  }
}

/** AudioData frames [start, start+count) as interleaved float32, `channels` of them. */
function interleaved(ad, start, count, channels) {
  const out = new Float32Array(count * channels);
  if (ad.format === 'f32' && ad.numberOfChannels === channels) {
    ad.copyTo(out, { planeIndex: 0, frameOffset: start, frameCount: count });
    return out;
  }
  // planar (or another sample format): f32-planar is the conversion every browser must offer
  const plane = new Float32Array(count);
  for (let c = 0; c < channels; c++) {
    ad.copyTo(plane, { planeIndex: c, format: 'f32-planar', frameOffset: start, frameCount: count });
    for (let i = 0; i < count; i++) out[i * channels + c] = plane[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------------

/**
 * Listening to one stream. `hook` is the object the page publishes as
 * window.micwire.listening[name]; `ui` gets {status(hook), stopped(reason)} calls;
 * `streamState()` says what /api/events last said of the stream (null: not listed).
 */
export class Listener {
  constructor(name, { hook, ui, streamState, volume }) {
    this.name = name;
    this.ui = ui;
    this.streamState = streamState;
    this.volume = volume;
    this.ctx = null;
    this.ws = null;
    this.format = null; // of the current codec stream (from `start`)
    this.opus = null; // OpusStream of the current codec stream
    this.pending = null; // packets that arrive while a `start` is being set up
    this.node = null;
    this.gain = null;
    this.forcePcm = false;
    this.fallbackReason = '';
    this.stopped = false;
    this.ended = false;
    this.retry = backoff();
    this.retryTimer = 0;
    this.latencies = [];
    this.hook = Object.assign(hook, {
      state: 'connecting',
      codecPath: 'connecting',
      pathLabel: PATH_LABELS.connecting,
      fallbackReason: '',
      latencyMs: null,
      latencyRawMs: null,
      queuedMs: null,
      lowMs: null,
      targetMs: TARGET_MS,
      underruns: 0,
      concealedMs: 0,
      skippedMs: 0,
      startSkippedMs: 0,
      packets: 0,
      starts: 0,
      decodeErrors: 0,
      outputRateHz: null,
    });
  }

  begin(ctx) {
    if (this.stopped) return;
    this.ctx = ctx;
    this.gain = ctx.createGain();
    this.gain.gain.value = this.volume;
    this.gain.connect(audio.output);
    this.connect();
  }

  setVolume(v) {
    this.volume = v;
    if (this.gain) this.gain.gain.setTargetAtTime(v, this.ctx.currentTime, 0.02);
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const url = wsUrl('/api/listen/' + encodeURIComponent(this.name) + (this.forcePcm ? '?format=pcm' : ''));
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.format = null;
    this.pending = null;
    ws.onmessage = (e) => this.onMessage(ws, e.data);
    ws.onclose = (e) => this.onClose(ws, e);
    this.setState('connecting');
  }

  setState(state) {
    this.hook.state = state;
    this.ui.status(this.hook);
  }

  setPath(path) {
    let label = PATH_LABELS[path] || path;
    if (path === 'pcm-fallback' && this.fallbackReason) label += `: ${this.fallbackReason}`;
    Object.assign(this.hook, { codecPath: path, pathLabel: label, fallbackReason: this.fallbackReason });
    this.ui.status(this.hook);
  }

  onMessage(ws, data) {
    if (ws !== this.ws || this.stopped) return;
    if (typeof data === 'string') {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      if (msg.type === 'start') this.onStart(ws, msg);
      else if (msg.type === 'end') this.onEnd(msg);
      return;
    }
    if (this.pending) {
      if (this.pending.length < MAX_PENDING_PACKETS) this.pending.push(data);
    } else if (this.format) {
      this.onPacket(data);
    }
  }

  /** A new codec stream (first, and after each reconnect of the sender): a fresh decoder. */
  async onStart(ws, msg) {
    this.pending = [];
    this.retireDecoder();
    this.retry = backoff();
    this.hook.starts++;
    const format = {
      codec: String(msg.codec),
      rateHz: Number(msg.rate_hz),
      channels: Math.max(1, Number(msg.channels) || 1),
      frameMs: Number(msg.frame_ms),
      preSkip: Math.max(0, Number(msg.pre_skip) || 0),
    };
    if (format.codec === 'opus' && !this.forcePcm) {
      const support = await checkOpus(format.rateHz, format.channels);
      if (ws !== this.ws || this.stopped) return;
      if (!support.ok) return this.fallBackToPcm(support.reason);
      try {
        this.opus = new OpusStream(format, {
          play: (pcm, captureMs, channels, rateHz) => {
            this.hook.outputRateHz = rateHz;
            this.play(pcm, captureMs, channels, rateHz);
          },
          error: (reason) => {
            this.hook.decodeErrors++;
            this.fallBackToPcm(reason);
          },
        });
      } catch (err) {
        return this.fallBackToPcm(`Opus decoder refused: ${errorText(err)}`);
      }
      this.setPath('opus-webcodecs');
    } else if (format.codec === 'pcm') {
      this.setPath(this.forcePcm ? 'pcm-fallback' : 'pcm');
    } else if (!this.forcePcm) {
      return this.fallBackToPcm(`unknown codec ${format.codec}`);
    } else {
      return this.stop(`the receiver sent codec ${format.codec} for PCM`);
    }
    this.format = format;
    this.setState('playing');
    const waiting = this.pending;
    this.pending = null;
    for (const p of waiting) this.onPacket(p);
  }

  fallBackToPcm(reason) {
    this.fallbackReason = reason;
    this.forcePcm = true;
    this.setPath('pcm-fallback');
    console.warn(`micwire: ${this.name}: ${reason}; listening to PCM instead`);
    this.closeDecoder();
    const old = this.ws;
    this.ws = null;
    old?.close(1000);
    this.connect();
  }

  onPacket(buf) {
    if (buf.byteLength < HEADER_BYTES) return;
    const h = parseHeader(buf);
    if (h.version !== 1) return;
    this.hook.packets++;
    const format = this.format;
    if (format.codec === 'pcm') {
      // s16le, channels interleaved; `samples` frames
      const ch = format.channels;
      const frames = Math.min(h.samples, Math.floor((buf.byteLength - HEADER_BYTES) / (2 * ch)));
      if (frames <= 0) return;
      const view = new DataView(buf, HEADER_BYTES, frames * ch * 2);
      const pcm = new Float32Array(frames * ch);
      for (let i = 0; i < pcm.length; i++) pcm[i] = view.getInt16(2 * i, true) / 32768;
      this.play(pcm, h.captureUs / 1000, ch, format.rateHz);
    } else if (this.opus) {
      this.opus.decode(h, new Uint8Array(buf, HEADER_BYTES));
    }
  }

  retireDecoder() {
    this.opus?.retire();
    this.opus = null;
  }

  closeDecoder() {
    this.opus?.close();
    this.opus = null;
  }

  /** Hand samples to the player: a new node when the output channel count changes. */
  play(pcm, captureMs, channels, rateHz) {
    if (this.stopped || !this.ctx) return;
    const outChannels = Math.min(2, channels);
    if (!this.node || this.node.outChannels !== outChannels) {
      this.dropNode();
      const node = new AudioWorkletNode(this.ctx, PLAYER_NAME, {
        numberOfInputs: 0,
        numberOfOutputs: 1,
        outputChannelCount: [outChannels],
        processorOptions: { channels, rateHz, targetMs: TARGET_MS, maxMs: MAX_QUEUE_MS },
      });
      node.port.onmessage = (e) => this.onStats(e.data);
      node.connect(this.gain);
      Object.assign(node, { outChannels, channels, rateHz });
      this.node = node;
    } else if (this.node.channels !== channels || this.node.rateHz !== rateHz) {
      this.node.port.postMessage({ cmd: 'format', channels, rateHz });
      Object.assign(this.node, { channels, rateHz });
    }
    this.node.port.postMessage({ cmd: 'push', pcm, captureMs }, [pcm.buffer]);
  }

  dropNode() {
    if (!this.node) return;
    this.node.port.postMessage({ cmd: 'stop' });
    this.node.port.onmessage = null;
    this.node.disconnect();
    this.node = null;
  }

  /**
   * Stats from the player, ~10 a second. The latency figure is capture to ear:
   *
   *   latency = heard − captured, for the sample at the player's read head, where
   *   captured = capture_time_us of its packet (the sender's wall clock) + its offset in the
   *              packet (− pre_skip for Opus, see OpusStream.onOutput), carried to the
   *              worklet with each chunk;
   *   heard    = Date.now() when the worklet played it (Date.now() on arrival of the stats,
   *              minus how far ctx.currentTime moved since the worklet sent them)
   *              + ctx.baseLatency + ctx.outputLatency (destination -> device -> speaker).
   *
   * Equivalently: Date.now() + the audio queued in the page + output latency − capture
   * time of the newest sample. Everything on the way is in it: the sender's capture block
   * and frame, network, receiver, WebSocket, decoder, this jitter buffer, the sound card.
   * It compares two wall clocks, the sender's and this device's, so it is right only when
   * they are synchronised: exact on one machine; over NTP, off by the clocks' offset (a few
   * ms on a LAN). The page shows the median of the last ten (about a second).
   */
  onStats(m) {
    if (!m || m.type !== 'stats' || this.stopped) return;
    const h = this.hook;
    Object.assign(h, {
      queuedMs: m.queuedMs,
      lowMs: m.lowMs,
      targetMs: m.targetMs,
      underruns: m.underruns,
      concealedMs: m.concealedMs,
      skippedMs: m.skippedMs,
      startSkippedMs: m.startSkippedMs,
      ratio: m.ratio,
      driftPpm: m.driftPpm,
      playing: m.playing,
    });
    const ctx = this.ctx;
    if (m.playing && isNum(m.captureMs)) {
      const sinceMs = Math.max(0, (ctx.currentTime - m.ctxTime) * 1000);
      const outputMs = ((ctx.baseLatency || 0) + (ctx.outputLatency || 0)) * 1000;
      const raw = Date.now() - sinceMs + outputMs - m.captureMs;
      h.latencyRawMs = raw;
      this.latencies.push(raw);
      if (this.latencies.length > 10) this.latencies.shift();
      h.latencyMs = median(this.latencies);
    }
    this.ui.status(h);
  }

  onEnd(msg) {
    this.ended = true;
    this.hook.outcome = msg.outcome ?? null;
    this.setState('ended');
  }

  onClose(ws, e) {
    if (ws !== this.ws || this.stopped) return;
    this.ws = null;
    this.retireDecoder();
    if (this.ended) {
      // play out what is queued, then let go
      setTimeout(() => this.stop('the stream ended'), (this.hook.queuedMs || 0) + 500);
      return;
    }
    // the stream is gone for good (ended, or no longer listed): stop; else the link dropped
    const state = this.streamState();
    if (state === null || state === 'ended') {
      this.stop(state === null ? 'the stream is gone' : 'the stream ended');
      return;
    }
    const delay = this.retry.next().value;
    this.setState(`reconnecting in ${Math.ceil(delay)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay * 1000);
    if (e && e.code !== 1000) console.info(`micwire: listen ${this.name}: closed (${e.code}); retrying`);
  }

  stop(reason = '') {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    this.closeDecoder();
    this.dropNode();
    this.gain?.disconnect();
    this.ui.stopped(reason);
  }
}
