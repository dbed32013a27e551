// micwire monitor: listening to a stream in the browser (docs/PROTOCOL.md §10, §4).
//
//   WS /api/listen/<name> --start--> format; packets --> Opus: WebCodecs AudioDecoder
//                                                        PCM: s16le -> float
//   --> player worklet (player-worklet.js: jitter buffer, drift, resampling, concealment)
//   --> GainNode (volume) --> the shared output bus --> ctx.destination
//
// One AudioContext for the page, created on the first Listen click (audio.js). Opus
// (opus.js) falls back to PCM (`?format=pcm`: the receiver decodes for us) when this
// browser has no WebCodecs AudioDecoder or cannot decode Opus, and says so on the page.
// The player node's options and the latency figure: player.js.

import { HEADER_BYTES, backoff, errorText, isNum, median, parseHeader, wsUrl } from './util.js';
import { audio } from './audio.js';
import { OpusStream, checkOpus } from './opus.js';
import { TARGET_MS, captureToEarMs, newPlayerNode } from './player.js';

const MAX_PENDING_PACKETS = 500;

const PATH_LABELS = {
  connecting: 'connecting…',
  'opus-webcodecs': 'Opus · WebCodecs',
  pcm: 'PCM',
  'pcm-fallback': 'PCM (fallback)',
};

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
      this.node = newPlayerNode(this.ctx, this.gain, outChannels, channels, rateHz, (m) => this.onStats(m));
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
   * Stats from the player, ~10 a second; the latency figure is capture to ear (player.js,
   * captureToEarMs), the page shows the median of the last ten (about a second).
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
    if (m.playing && isNum(m.captureMs)) {
      const raw = captureToEarMs(this.ctx, m);
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
