// micwire monitor: the per-stream player, an AudioWorkletProcessor (runs on the audio thread).
//
// One node per listened stream. The page posts it decoded audio:
//   {cmd: 'format', channels, rateHz}         source format (resets the queue when it changes)
//   {cmd: 'push', pcm: Float32Array, captureMs} interleaved samples; captureMs = sender wall
//                                               clock (ms since the epoch) of the first sample
//   {cmd: 'flush'} / {cmd: 'stop'}
// and it posts back about ten times a second:
//   {type: 'stats', ctxTime, captureMs, queuedMs, lowMs, targetMs, underruns, concealedMs,
//    skippedMs, startSkippedMs, playing, ratio, driftPpm, writtenFrames, readFrames}
//
// The jitter buffer lives here, where underruns happen. Audio comes in chunks (a packet's
// worth, 2.5-60 ms), so what is queued saw-tooths: highest as a chunk arrives, lowest just
// before the next. The low point is what a late chunk may use up, so that is what the
// player holds at its target (`lowMs`: the least queued over the last 0.25-0.5 s):
// - Start: playback begins only once the target, the largest chunk and a start cushion
//   (START_CUSHION_MS) are queued, and no more (what piled up before, a burst at the start,
//   is passed over, counted in startSkippedMs): when the next chunk is due, the target is
//   still there. The first start also waits START_WAIT_S after the first audio: the page
//   is at its busiest right after the Listen click, and the first chunks come in a burst.
//   The cushion covers the busy first seconds of a page (its audio device, decoder and
//   layout starting) and is then played off by the steering below.
// - Running dry is an underrun: the output fades to silence (concealment), it is counted,
//   and the target grows by GROW_MS (up to MAX_TARGET_MS); playback restarts as at the start
//   (without the cushion: the grown target is one). After CALM_S seconds without an underrun
//   the target shrinks by SHRINK_MS a second, back to where it started.
// - Steering plays a little faster or slower (resampling, 4-point cubic Hermite) to hold the
//   low point at the target: a proportional term (10 ms above: 0.3 % fast) and a slow
//   integral that learns the clocks' drift (real sound cards differ from the sender by
//   hundreds of ppm; at most ±MAX_DRIFT). The integral learns only while the low point is
//   within INTEGRATE_MS of the target, so a transient (the start cushion being played off,
//   a burst, a target shrinking back) does not wind it up; a measured rate (as
//   common/drift.py does for the receiver) would be thrown off by every stall of the audio
//   thread, which moves the arrivals against this clock for good. At most ±MAX_SKEW.
// - Late is caught up, never kept: a low point more than CATCH_UP_MS above the target (a
//   stall, then a burst) is skipped down to the target at once with a short cross-fade, as
//   is anything beyond `maxMs` queued; counted in skippedMs.
// - `captureMs` in the stats is the capture time of the sample at the read head at context
//   time `ctxTime`: the page turns it into a latency figure (player.js, captureToEarMs).

const GROW_MS = 10;
const MAX_TARGET_MS = 200;
const CALM_S = 10;
const SHRINK_MS = 2; // per second, after CALM_S without an underrun
const START_CUSHION_MS = 10;
const START_WAIT_S = 0.25; // the first start waits this long after the first audio
const MAX_SKEW = 0.02;
const KP = 0.3; // per second of low-point error: 10 ms above the target -> 0.3 % fast
const KI = 0.02; // per second, per second of error (with KP: a little over critical damping)
const INTEGRATE_MS = 5;
const MAX_DRIFT = 0.005; // real clocks are within 0.1 %
const CATCH_UP_MS = 20;
const LOW_WINDOW_S = 0.25; // the low point is the least queued over the last 1-2 of these
const FADE_FRAMES = 64; // output frames of fade in (start) and out (underrun)
const XFADE_S = 0.005; // the cross-fade over a skip
const STATS_EVERY_S = 0.1;
const MAX_MARKS = 512;

class MicwirePlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.initialTargetMs = o.targetMs || 15;
    this.maxMs = o.maxMs || 250;
    this.targetMs = this.initialTargetMs;
    this.underruns = 0;
    this.concealedFrames = 0; // output frames of silence while running dry
    this.skippedFrames = 0; // source frames skipped to catch up
    this.startSkippedFrames = 0; // source frames passed over at a (re)start
    this.running = true;
    this.lastStats = 0;
    this.lastUnderrun = currentTime;
    this.lastShrink = currentTime;
    this.xfadeFrames = Math.max(16, Math.round(XFADE_S * sampleRate));
    this.configure(o.channels || 1, o.rateHz || sampleRate);
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  configure(channels, rateHz) {
    this.channels = channels;
    this.rateHz = rateHz;
    // 1 s of source audio: more than maxMs plus the largest chunk (60 ms)
    this.capFrames = Math.max(4096, Math.ceil(rateHz));
    this.buf = new Float32Array(this.capFrames * channels);
    this.written = 0; // frames written since configure (absolute)
    this.readPos = 0; // fractional frame position of the read head (absolute)
    this.marks = []; // [{frame, captureMs}], oldest first: capture time of pushed chunks
    this.playing = false;
    this.started = false; // has played since configure (the start cushion is for the first)
    this.firstPushTime = null; // context time of the first audio since configure
    this.pushed = false; // audio came since the last quantum
    this.dry = false; // ran dry after playing (concealment counts while dry)
    this.fade = 0; // 0..FADE_FRAMES: gain ramp at start/stop of playout
    this.xfadeFrom = null; // during a cross-fade: the old read position, fading out
    this.xfadeLeft = 0;
    this.skipToMs = null; // a pending skip: leave this much queued
    this.chunkFrames = 0; // the largest chunk pushed in the current and last second
    this.chunkNow = 0;
    this.chunkSince = currentTime;
    this.lowNow = Infinity; // least queued (ms) at a quantum's start in the current window
    this.lowLast = Infinity; // ... in the window before
    this.lowSince = currentTime;
    this.drift = 0; // the integral: the clocks' difference as learnt (+: the sender is fast)
    this.skew = 0;
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

  ms(frames) {
    return (frames * 1000) / this.rateHz;
  }

  frames(ms) {
    return Math.round((ms / 1000) * this.rateHz);
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
    if (this.firstPushTime === null) this.firstPushTime = currentTime;
    this.pushed = true;
    this.chunkNow = Math.max(this.chunkNow, frames);
    this.chunkFrames = Math.max(this.chunkFrames, frames);
    // stay live: more than maxMs queued goes back to the target at once (cross-faded, in
    // process); should the ring itself fill up (the context is not running), jump now
    if (this.queuedFrames() > this.frames(this.maxMs)) this.skipToMs = this.targetMs + this.ms(this.chunkFrames);
    if (this.queuedFrames() > cap - 8) this.jumpTo(this.targetMs + this.ms(this.chunkFrames), 'skipped');
  }

  /** Move the read head so that `ms` of audio stays queued; what is passed over is counted
   * under `counter` ('skipped' or 'startSkipped'). */
  jumpTo(ms, counter) {
    const newRead = this.written - this.frames(ms);
    if (newRead > this.readPos) {
      const key = counter === 'startSkipped' ? 'startSkippedFrames' : 'skippedFrames';
      this[key] += newRead - this.readPos;
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

  /** Begin playing: the target, the largest chunk and (the first time) the cushion queued,
   * whatever is older passed over. */
  start(queuedMs) {
    const want = this.targetMs + this.ms(this.chunkFrames) + (this.started ? 0 : START_CUSHION_MS);
    if (queuedMs < want) return;
    // the first time, not before audio has been coming for a while: the first chunks come
    // in a burst (what arrived while the decoder was set up), and the page is at its
    // busiest right after the Listen click; started then, a stall of the page that follows
    // at once empties the buffer (seen: 60 ms on a loaded 2-core machine)
    if (!this.started && (this.firstPushTime === null || currentTime - this.firstPushTime < START_WAIT_S)) return;
    // and right after a chunk came: trimmed to `want` then, the next one is a chunk away
    if (!this.pushed) return;
    this.jumpTo(want, 'startSkipped');
    this.playing = true;
    this.started = true;
    this.dry = false;
    this.skipToMs = null;
    this.forgetLow();
  }

  /** Start measuring the low point afresh (after a start or a skip). */
  forgetLow() {
    this.lowNow = this.lowLast = Infinity;
    this.lowSince = currentTime;
  }

  /** The least queued over the last one or two windows (Infinity before a window passed). */
  get lowMs() {
    return Math.min(this.lowNow, this.lowLast);
  }

  /** Once a quantum while playing: the low point, catching up, the drift, the ratio. */
  steer(queuedMs, dt) {
    this.lowNow = Math.min(this.lowNow, queuedMs);
    if (currentTime - this.lowSince >= LOW_WINDOW_S) {
      // a whole window whose low point stayed well above the target: nothing in it needed
      // the excess, which is only latency; go back to the target at once
      if (this.lowNow > this.targetMs + CATCH_UP_MS && this.skipToMs === null && this.xfadeFrom === null) {
        this.skipToMs = queuedMs - (this.lowNow - this.targetMs);
      }
      this.lowLast = this.lowNow;
      this.lowNow = Infinity;
      this.lowSince = currentTime;
    }
    if (this.skipToMs !== null) this.forgetLow(); // what it measured is about to be skipped
    const low = this.lowMs;
    const errorMs = Number.isFinite(low) ? low - this.targetMs : 0;
    if (Math.abs(errorMs) <= INTEGRATE_MS) {
      this.drift = Math.max(-MAX_DRIFT, Math.min(MAX_DRIFT, this.drift + (KI * errorMs * dt) / 1000));
    }
    this.skew = Math.max(-MAX_SKEW, Math.min(MAX_SKEW, this.drift + (KP * errorMs) / 1000));
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    const outCh = out.length;
    const queuedMs = this.ms(this.queuedFrames());

    if (!this.playing) this.start(queuedMs);
    this.pushed = false;
    if (this.playing) this.steer(queuedMs, n / sampleRate);
    if (currentTime - this.chunkSince >= 1) {
      if (this.chunkNow) this.chunkFrames = this.chunkNow; // the largest of the last 1-2 s
      this.chunkNow = 0;
      this.chunkSince = currentTime;
    }
    const step = (this.rateHz / sampleRate) * (1 + (this.playing ? this.skew : 0));
    const captureMs = this.captureAt(this.readPos);

    // shrink slowly after a calm spell
    if (currentTime - this.lastUnderrun > CALM_S && currentTime - this.lastShrink >= 1) {
      this.lastShrink = currentTime;
      if (this.targetMs > this.initialTargetMs) this.targetMs = Math.max(this.initialTargetMs, this.targetMs - SHRINK_MS);
    }

    const ch = this.channels;
    for (let k = 0; k < n; k++) {
      if (this.playing && Math.floor(this.readPos) + 2 >= this.written) {
        // ran dry: an underrun. Conceal with silence (fading out below) and wait until the
        // (now larger) target is queued again.
        this.playing = false;
        this.dry = true;
        this.skipToMs = null;
        this.xfadeFrom = null;
        this.underruns++;
        this.lastUnderrun = currentTime;
        this.targetMs = Math.min(MAX_TARGET_MS, this.targetMs + GROW_MS);
      }
      if (this.playing) {
        if (this.skipToMs !== null) {
          // a skip: the audio from the old place fades out while the new place fades in
          this.xfadeFrom = this.readPos;
          this.xfadeLeft = this.xfadeFrames;
          this.jumpTo(this.skipToMs, 'skipped');
          this.skipToMs = null;
        }
        if (this.fade < FADE_FRAMES) this.fade++;
        const g = this.fade / FADE_FRAMES;
        let w = 1;
        if (this.xfadeFrom !== null) w = 1 - this.xfadeLeft / this.xfadeFrames;
        for (let c = 0; c < outCh; c++) {
          let v = this.sample(this.readPos, c, outCh);
          if (w < 1) v = w * v + (1 - w) * this.sample(this.xfadeFrom, c, outCh);
          v *= g;
          out[c][k] = v;
          this.last[c] = v;
        }
        this.readPos += step;
        if (this.xfadeFrom !== null) {
          this.xfadeFrom += step;
          if (--this.xfadeLeft <= 0) this.xfadeFrom = null;
        }
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
      const low = this.lowMs;
      this.port.postMessage({
        type: 'stats',
        ctxTime: currentTime, // context time of this quantum's first frame (the read head's)
        captureMs,
        queuedMs,
        lowMs: this.playing && Number.isFinite(low) ? low : null,
        targetMs: this.targetMs,
        underruns: this.underruns,
        concealedMs: (this.concealedFrames * 1000) / sampleRate,
        skippedMs: this.ms(this.skippedFrames),
        startSkippedMs: this.ms(this.startSkippedFrames),
        playing: this.playing,
        ratio: 1 + (this.playing ? this.skew : 0),
        driftPpm: this.drift * 1e6,
        writtenFrames: this.written,
        readFrames: Math.floor(this.readPos),
      });
    }
    return this.running;
  }

  /** Output channel c (of outCh) at fractional source position pos. */
  sample(pos, c, outCh) {
    const i = Math.floor(pos);
    const t = pos - i;
    const ch = this.channels;
    return ch <= 2 ? this.hermite(i, t, ch === 1 ? 0 : c) : this.downmix(i, t, c, outCh);
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
