// micwire guest page, one recording from Start to delivered: GuestSender feeds the
// microphone's frames to the connection protocol (send-core.js SenderProtocol) as spool
// blocks, performs what the protocol says (the link's part is LinkShell, send-link.js),
// handles Start, Stop and Keep trying, and keeps what the page shows of it: its state, the
// status line and the figures (stats(), also the test hook's).

import { isNum } from './util.js';
import { Note, SenderProtocol, Spool, State, makeBlock } from './send-core.js';
import { Microphone, RATE_HZ } from './send-mic.js';
import { LinkShell, PAGE_POLICY, SILENCE_TIMEOUT_S, nowS } from './send-link.js';

const SOFTWARE = 'micwire-web/1';
const TICK_MS = 250;

/** A random stream id: 32 hex digits (like the CLI's uuid4().hex). */
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class GuestSender extends LinkShell {
  constructor(settings, view) {
    super();
    this.s = settings;
    this.view = view;
    this.frameSamples = Math.round((RATE_HZ * settings.frameMs) / 1000);
    this.codec = 'pcm';
    this.preSkip = 0;
    this.phase = 'idle'; // the page's own part: idle, starting (microphone), failed (none), running
    this.stopping = false; // Stop pressed: the tail of the capture is on its way
    this.status = '';
    this.stopWaiter = null;
    this.shown = 0; // when the page last showed the figures
    this.shownState = '';
    this.core = this.newStream('');
    this.mic = new Microphone(settings.channels, this.frameSamples, (m) => this.onWorklet(m));
    setInterval(() => this.tick(), TICK_MS);
  }

  newStream(name) {
    return new SenderProtocol({
      name,
      params: {
        codec: this.codec,
        rateHz: RATE_HZ,
        channels: this.s.channels,
        frameMs: this.s.frameMs,
        bitrate: this.s.bitrate,
        preSkip: this.preSkip,
        frameSamples: this.frameSamples,
      },
      spool: new Spool(Math.ceil(this.s.spoolS * RATE_HZ), this.s.channels, RATE_HZ),
      policy: { ...PAGE_POLICY, finishTimeoutS: this.s.finishS },
      streamId: randomId(),
      software: SOFTWARE,
    });
  }

  get spool() {
    return this.core.spool;
  }

  get acked() {
    return this.core.acknowledged;
  }

  /** idle, starting, connecting, live, reconnecting, finishing, delivered, undelivered, failed */
  get state() {
    if (this.phase !== 'running') return this.phase;
    const core = this.core;
    if (core.state === State.CONFIRMED) return 'delivered';
    if (core.state === State.UNDELIVERED) return 'undelivered';
    if (core.state === State.FAILED) return 'failed';
    if (this.stopping || core.stopped) return 'finishing';
    if (core.state === State.STREAMING || core.state === State.FINISHING) return 'live';
    if (core.state === State.CONNECTING && core.attempt === 1 && !core.accepted) return 'connecting';
    return 'reconnecting';
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
        const block = makeBlock(this.spool.end, m.pcm, captureUs, this.s.channels);
        this.act(this.core.captured(nowS(), block));
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
    if (!['idle', 'delivered', 'undelivered', 'failed'].includes(this.state)) return;
    this.phase = 'starting';
    this.stopping = false;
    this.lastDone = null;
    this.lastProblem = '';
    this.bytesSent = 0;
    this.setStatus('starting…');
    await this.view.ready; // microphone open, codec decided
    if (!this.mic.track) await this.view.openMic(); // released at the last stop
    if (!this.mic.track) {
      this.phase = 'failed';
      this.setStatus('no microphone: allow this page to use it, then press Start again');
      return;
    }
    this.core = this.newStream(name);
    this.mic.post('start');
    this.phase = 'running';
    this.setStatus('connecting…');
    this.act(this.core.start(nowS()));
  }

  async stop() {
    if (!this.capturing) return;
    const tail = new Promise((resolve) => {
      this.stopWaiter = resolve;
      setTimeout(resolve, 1000); // a context that stopped running sends no tail
    });
    this.mic.post('stop');
    this.stopping = true;
    this.refresh(true);
    await tail;
    this.stopWaiter = null;
    this.mic.closeSource(); // the browser's recording indicator goes off
    this.act(this.core.stop(nowS()));
    this.pump();
  }

  /** After "not delivered": try again for another `finish_s` (the spool still has it). */
  retryDelivery() {
    if (this.state === 'undelivered') this.act(this.core.retry(nowS()));
  }

  // --- what the protocol says --------------------------------------------------------------
  act(actions) {
    for (const a of actions) {
      if (a.type === 'connect') this.connect();
      else if (a.type === 'send') this.sendFrame(this.conn, a.header, a.pcm);
      else if (a.type === 'close') this.closeConnection(a.abort);
      else if (a.type === 'notice') this.onNotice(a);
      else if (a.type === 'finish') this.onFinish(a);
      // 'wait': the protocol's deadline; the page's timer ticks it
    }
    this.refresh();
  }

  onNotice(notice) {
    if (notice.kind === Note.ACCEPTED && this.conn) {
      this.conn.accepted = true;
      // a fresh encoder per connection (each connection is its own codec stream, §4)
      if (this.core.params.codec === 'opus') this.conn.encoder = this.makeEncoder(this.conn);
    } else if (notice.kind === Note.SILENT) {
      this.lastProblem = `no word from the receiver for ${SILENCE_TIMEOUT_S} s`;
    }
  }

  onFinish(finish) {
    const missing = fmtSeconds(this.spool.end - this.acked);
    if (finish.state === State.CONFIRMED) {
      const done = this.lastDone || {};
      const gap = isNum(done.gap_samples) ? done.gap_samples : 0;
      const lost = this.core.report.lostSamples;
      const confirmed = this.core.report.confirmedSamples || 0;
      if (confirmed >= this.spool.end && !lost && !gap) {
        this.setStatus(`everything delivered (${fmtSeconds(this.spool.end)} recorded)`);
      } else {
        const kept = Math.max(lost, gap, this.spool.end - confirmed);
        this.setStatus(`delivered, but ${fmtSeconds(kept)} of it could not be kept (lost during an outage)`);
      }
    } else if (finish.state === State.UNDELIVERED) {
      this.setStatus(`not delivered: ${missing} (the receiver did not confirm it within ${this.s.finishS} s); keep this page open and press Keep trying`);
    } else {
      if (!this.stopping && !this.core.stopped) this.mic.post('stop');
      this.mic.closeSource(); // the browser's recording indicator goes off; Start opens it again
      const undelivered = this.spool.end - this.acked > 0 ? ` (${missing} recorded here was not delivered)` : '';
      this.setStatus(finish.error.message + undelivered);
    }
  }

  setStatus(status) {
    this.status = status;
    this.refresh(true);
  }

  /** The status line, and (at most five times a second, or at once) the page's figures. */
  refresh(now = false) {
    const state = this.state;
    if (state === 'reconnecting' || (state === 'finishing' && !this.conn)) {
      const retryAt = this.core.retryAt;
      const left = retryAt !== null ? Math.max(0, retryAt - nowS()) : 0;
      const what = this.lastProblem ? `${this.lastProblem}; ` : '';
      const next = this.conn ? 'trying now' : `next try in ${left.toFixed(1)} s`;
      const tail = state === 'finishing' ? `${fmtSeconds(this.spool.end - this.acked)} left to deliver` : 'still recording';
      this.status = `reconnecting (attempt ${Math.max(1, this.core.attempt)}, ${next}): ${what}${tail}`;
    } else if (state === 'finishing') {
      this.status = `delivering… ${fmtSeconds(Math.max(0, this.spool.end - this.acked))} left`;
    } else if (state === 'live') {
      this.status = 'connected: live';
    }
    const t = performance.now();
    if (now || state !== this.shownState || t - this.shown >= 200) {
      this.shown = t;
      this.shownState = state;
      this.view.show(this);
    }
  }

  waitingSamples() {
    const conn = this.conn;
    const cursor = this.core.cursor;
    if (conn && conn.accepted && cursor !== null && this.state !== 'delivered') {
      const buffered = conn.ws.bufferedAmount / conn.bytesPerSample;
      return Math.max(0, this.spool.end - cursor + buffered + conn.pending.length * this.frameSamples);
    }
    if (this.state === 'delivered') return 0;
    return Math.max(0, this.spool.end - this.acked);
  }

  stats() {
    const r = this.core.report;
    const done = this.lastDone;
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
      sentSamples: this.core.sentTo,
      ackedSamples: r.ackedSamples,
      confirmedSamples: r.confirmedSamples,
      gapSamples: done && isNum(done.gap_samples) ? done.gap_samples : null,
      recording: r.confirmedSamples !== null ? r.recording || null : null,
      spooledSeconds: this.spool.held / RATE_HZ,
      waitingSeconds: this.waitingSamples() / RATE_HZ,
      lostSamples: r.lostSamples,
      resentSamples: r.resentSamples,
      reconnects: r.reconnects,
      attempt: this.core.attempt,
      packetsSent: r.packetsSent,
      bytesSent: this.bytesSent,
      streamId: this.core.streamId,
    };
  }
}

/** Samples of the capture rate as seconds, for the page ("1.5 s"). */
export function fmtSeconds(samples) {
  return `${(Math.max(0, samples) / RATE_HZ).toFixed(1)} s`;
}
