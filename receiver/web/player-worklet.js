// micwire monitor: the per-stream player, an AudioWorkletProcessor (runs on the audio thread).
//
// One node per listened stream. The page posts it decoded audio:
//   {cmd: 'format', channels, rateHz}         source format (resets the queue when it changes)
//   {cmd: 'push', pcm: Float32Array, captureMs} interleaved samples; captureMs = sender wall
//                                               clock (ms since the epoch) of the first sample
//   {cmd: 'flush'} / {cmd: 'stop'}
// and it posts back about ten times a second:
//   {type: 'stats', ctxTime, captureMs, queuedMs, targetMs, underruns, concealedMs,
//    droppedMs, playing, ratio, writtenFrames, readFrames}
//
// The jitter buffer lives here, where underruns happen:
// - A ring buffer of the source's samples. Playback starts (and restarts after running dry)
//   only once `targetMs` of audio is queued.
// - Running dry is an underrun: the output fades to silence (concealment), it is counted,
//   and the target grows by GROW_MS (up to MAX_TARGET_MS). After CALM_S seconds without an
//   underrun the target shrinks by SHRINK_MS a second, back to where it started.
// - The queue is steered to the target by playing a little faster or slower: a proportional
//   term on the smoothed queue error, plus an integral term that learns the steady
//   difference between the sender's clock and this sound card's (real cards: hundreds of
//   ppm; headless Chromium's fake output device runs 0.5 % slow, measured), so the queue
//   sits at the target instead of above it. At most ±MAX_SKEW (2 %). Resampling (source
//   rate -> context rate, times that skew) is 4-point cubic Hermite interpolation.
// - More than `maxMs` queued (a stall, then a burst), or a queue whose low point over a
//   second stayed CATCH_UP_MS above the target: the oldest audio goes at once, down to the
//   target (a 1 ms fade out and in around the jump), so the page stays live. Counted in
//   droppedMs. (Re)starting with more than the target queued skips the excess, uncounted.
// - `captureMs` in the stats is the capture time of the sample at the read head at context
//   time `ctxTime`: the page turns it into a latency figure (listen.js, Listener.onStats).

const GROW_MS = 10;
const MAX_TARGET_MS = 200;
const CALM_S = 10;
const SHRINK_MS = 2; // per second, after CALM_S without an underrun
const MAX_SKEW = 0.02;
const KP = 0.2; // per second of queue error: 25 ms off -> 0.5 %
const KI = 0.05; // per second, per second of queue error
const CATCH_UP_MS = 20;
const FADE_FRAMES = 64;
const STATS_EVERY_S = 0.1;
const MAX_MARKS = 512;

class MicwirePlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.initialTargetMs = o.targetMs || 40;
    this.maxMs = o.maxMs || 250;
    this.targetMs = this.initialTargetMs;
    this.underruns = 0;
    this.concealedFrames = 0; // output frames of silence while running dry
    this.droppedFrames = 0; // source frames dropped to stay live
    this.running = true;
    this.lastStats = 0;
    this.lastUnderrun = currentTime;
    this.lastShrink = currentTime;
    this.configure(o.channels || 1, o.rateHz || sampleRate);
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  configure(channels, rateHz) {
    this.channels = channels;
    this.rateHz = rateHz;
    // 1 s of source audio: more than maxMs plus the largest packet (60 ms)
    this.capFrames = Math.max(4096, Math.ceil(rateHz));
    this.buf = new Float32Array(this.capFrames * channels);
    this.written = 0; // frames written since configure (absolute)
    this.readPos = 0; // fractional frame position of the read head (absolute)
    this.marks = []; // [{frame, captureMs}], oldest first: capture time of pushed chunks
    this.playing = false;
    this.dry = false; // ran dry after playing (concealment counts while dry)
    this.fade = 0; // 0..FADE_FRAMES: gain ramp at start/stop of playout
    this.emaQueuedMs = 0;
    this.skipToMs = null; // a pending skip: leave this much queued
    this.lowWaterMs = Infinity; // the queue's low point in the current 1 s window
    this.lowWaterSince = 0;
    this.last = new Float32Array(2); // last output sample per output channel (for fade-out)
  }

  onMessage(d) {
    if (!d) return;
    if (d.cmd === 'push') this.push(d.pcm, d.captureMs);
    else if (d.cmd === 'format') {
      if (d.channels !== this.channels || d.rateHz !== this.rateHz) this.configure(d.channels, d.rateHz);
    } else if (d.cmd === 'flush') this.configure(this.channels, this.rateHz);
    else if (d.cmd === 'stop') this.running = false;
  }

  queuedFrames() {
    return this.written - this.readPos;
  }

  push(pcm, captureMs) {
    const ch = this.channels;
    const frames = Math.floor(pcm.length / ch);
    if (frames === 0) return;
    if (typeof captureMs === 'number') {
      this.marks.push({ frame: this.written, captureMs });
      if (this.marks.length > MAX_MARKS) this.marks.shift();
    }
    const cap = this.capFrames;
    let w = this.written % cap;
    for (let i = 0; i < frames; i++) {
      const o = w * ch;
      const s = i * ch;
      for (let c = 0; c < ch; c++) this.buf[o + c] = pcm[s + c];
      if (++w === cap) w = 0;
    }
    this.written += frames;
    // stay live: more than maxMs queued goes back to the target at once (after a 1 ms fade,
    // in process); should the ring itself fill up (the context is not running), jump now
    if (this.queuedFrames() > (this.maxMs / 1000) * this.rateHz) this.skipToMs = this.targetMs;
    if (this.queuedFrames() > cap - 8) this.jumpTo(this.targetMs);
  }

  /** Move the read head so that `ms` of audio stays queued; what is passed over is dropped. */
  jumpTo(ms) {
    const newRead = this.written - Math.round((ms / 1000) * this.rateHz);
    if (newRead > this.readPos) {
      this.droppedFrames += newRead - this.readPos;
      this.readPos = newRead;
    }
  }

  // sample of channel c at absolute frame index i (ring; 0 before the first write)
  at(i, c) {
    if (i < 0 || i >= this.written) return 0;
    return this.buf[(i % this.capFrames) * this.channels + c];
  }

  captureAt(pos) {
    const m = this.marks;
    while (m.length > 1 && m[1].frame <= pos) m.shift();
    if (m.length === 0 || m[0].frame > pos) return null;
    return m[0].captureMs + ((pos - m[0].frame) * 1000) / this.rateHz;
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    const outCh = out.length;
    const queuedMs = (this.queuedFrames() * 1000) / this.rateHz;
    const dt = n / sampleRate;

    // steering: compare a smoothed queue (time constant ~0.5 s) with the target
    this.emaQueuedMs += (queuedMs - this.emaQueuedMs) * Math.min(1, dt / 0.5);
    let skew = 0;
    if (this.playing) {
      const error = (this.emaQueuedMs - this.targetMs) / 1000;
      this.drift = Math.max(-MAX_SKEW, Math.min(MAX_SKEW, (this.drift || 0) + KI * error * dt));
      skew = Math.max(-MAX_SKEW, Math.min(MAX_SKEW, this.drift + KP * error));
      // catch up at once when even the queue's low point of the last second stayed well
      // above the target (a burst after a stall, a slow start): steering would take long
      this.lowWaterMs = Math.min(this.lowWaterMs, queuedMs);
      if (currentTime - this.lowWaterSince >= 1) {
        if (this.lowWaterMs > this.targetMs + CATCH_UP_MS && this.skipToMs === null) {
          this.skipToMs = queuedMs - (this.lowWaterMs - this.targetMs);
        }
        this.lowWaterMs = Infinity;
        this.lowWaterSince = currentTime;
      }
    } else if (queuedMs >= this.targetMs) {
      // (re)start: with the target queued, and no more (a start can find a burst waiting)
      this.playing = true;
      this.dry = false;
      if (queuedMs > this.targetMs + 5) {
        const before = this.droppedFrames;
        this.jumpTo(this.targetMs);
        this.droppedFrames = before; // not audio lost: it was never going to be heard live
      }
      this.emaQueuedMs = this.targetMs;
      this.lowWaterMs = Infinity;
      this.lowWaterSince = currentTime;
    }
    const step = (this.rateHz / sampleRate) * (1 + skew);
    const captureMs = this.captureAt(this.readPos);

    // shrink slowly after a calm spell
    if (currentTime - this.lastUnderrun > CALM_S && currentTime - this.lastShrink >= 1) {
      this.lastShrink = currentTime;
      if (this.targetMs > this.initialTargetMs) this.targetMs = Math.max(this.initialTargetMs, this.targetMs - SHRINK_MS);
    }

    const ch = this.channels;
    for (let k = 0; k < n; k++) {
      let i = Math.floor(this.readPos);
      if (this.playing && i + 2 >= this.written) {
        // ran dry: an underrun. Conceal with silence (fading out below) and wait until the
        // (now larger) target is queued again.
        this.playing = false;
        this.dry = true;
        this.skipToMs = null;
        this.underruns++;
        this.lastUnderrun = currentTime;
        this.targetMs = Math.min(MAX_TARGET_MS, this.targetMs + GROW_MS);
      }
      if (this.playing) {
        if (this.skipToMs !== null) {
          // a skip: fade out, jump, fade back in (no click)
          if (this.fade > 0) this.fade--;
          else {
            this.jumpTo(this.skipToMs);
            this.skipToMs = null;
            i = Math.floor(this.readPos);
          }
        } else if (this.fade < FADE_FRAMES) this.fade++;
        const g = this.fade / FADE_FRAMES;
        const t = this.readPos - i;
        for (let c = 0; c < outCh; c++) {
          const v = g * (ch <= 2 ? this.hermite(i, t, ch === 1 ? 0 : c) : this.downmix(i, t, c, outCh));
          out[c][k] = v;
          this.last[c] = v;
        }
        this.readPos += step;
      } else {
        // silence; ramp down from the last sample played so running dry does not click
        if (this.fade > 0) this.fade--;
        const g = this.fade / FADE_FRAMES;
        for (let c = 0; c < outCh; c++) out[c][k] = this.last[c] * g;
        if (this.dry) this.concealedFrames++;
      }
    }

    if (currentTime - this.lastStats >= STATS_EVERY_S) {
      this.lastStats = currentTime;
      this.port.postMessage({
        type: 'stats',
        ctxTime: currentTime, // context time of this quantum's first frame (the read head's)
        captureMs,
        queuedMs,
        targetMs: this.targetMs,
        underruns: this.underruns,
        concealedMs: (this.concealedFrames * 1000) / sampleRate,
        droppedMs: (this.droppedFrames * 1000) / this.rateHz,
        playing: this.playing,
        ratio: 1 + skew,
        writtenFrames: this.written,
        readFrames: Math.floor(this.readPos),
      });
    }
    return this.running;
  }

  // 4-point cubic Hermite (Catmull-Rom) between frames i and i+1, t in [0, 1)
  hermite(i, t, c) {
    const y0 = this.at(i - 1, c);
    const y1 = this.at(i, c);
    const y2 = this.at(i + 1, c);
    const y3 = this.at(i + 2, c);
    if (t === 0) return y1;
    const a = 0.5 * (y2 - y0);
    const b = y0 - 2.5 * y1 + 2 * y2 - 0.5 * y3;
    const d = 0.5 * (y3 - y0) + 1.5 * (y1 - y2);
    return ((d * t + b) * t + a) * t + y1;
  }

  // more than two source channels onto the output: even channels left, odd right (or all
  // of them onto a mono output)
  downmix(i, t, c, outCh) {
    let v = 0;
    let count = 0;
    for (let s = c; s < this.channels; s += outCh) {
      v += this.hermite(i, t, s);
      count++;
    }
    return count ? v / count : 0;
  }
}

registerProcessor('micwire-player', MicwirePlayer);
