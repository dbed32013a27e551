// micwire guest page: the microphone's side, an AudioWorkletProcessor (runs on the audio
// thread; loaded by send-mic.js).
//
// It turns the input into 16-bit interleaved frames of exactly `frameSamples` samples per
// channel and posts them, with the wall-clock time of their first sample, to the page:
//   {type: 'frame', pcm: Int16Array, captureMs}            while capturing (transferred)
//   {type: 'tail', pcm: Int16Array, captureMs}             once, after {cmd: 'stop'}: what
//                                                          was captured since the last frame
//   {type: 'level', peak, rms, at}                         every LEVEL_EVERY_S, always (the
//                                                          meter moves before going live)
// Commands from the page: {cmd: 'start'} (frames from the next render quantum on),
// {cmd: 'stop'}.
//
// Conversion: float -> int16 as Chromium converts int16 -> float (negative values over
// 32768, positive over 32767), so 16-bit audio goes through sample for sample; rounded and
// clipped. A quantum with no input channels (a source being swapped) is silence: the
// timeline keeps wall-clock time.
//
// Capture time: Date.now() when a quantum is processed, less its duration, is never
// earlier than when its audio was captured. The least of those offsets against the frame
// counter is the best estimate of the mapping; it may creep up by CREEP (a sound card's
// clock slower than the wall clock), so it follows a clock that runs slow too.

const LEVEL_EVERY_S = 0.05;
const CREEP = 1e-3; // ms of offset allowed to creep per ms elapsed (1000 ppm)

class MicwireCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.channels = o.channels || 1;
    this.frameSamples = o.frameSamples || 960;
    this.capturing = false;
    this.buffer = new Int16Array(this.frameSamples * this.channels);
    this.fill = 0; // samples per channel in `buffer`
    this.firstFrame = 0; // context frame of buffer[0]
    this.offsetMs = null; // wall clock of context frame 0, estimated
    this.offsetAt = 0;
    this.peak = 0;
    this.sumSq = 0;
    this.levelCount = 0;
    this.levelEvery = Math.round(LEVEL_EVERY_S * sampleRate);
    this.port.onmessage = (e) => this.onCommand(e.data);
  }

  onCommand(msg) {
    if (msg.cmd === 'start') {
      this.capturing = true;
      this.fill = 0;
    } else if (msg.cmd === 'stop' && this.capturing) {
      this.capturing = false;
      const pcm = this.buffer.slice(0, this.fill * this.channels);
      this.port.postMessage({ type: 'tail', pcm, captureMs: this.wallMs(this.firstFrame) }, [pcm.buffer]);
      this.fill = 0;
    }
  }

  wallMs(frame) {
    return this.offsetMs + (frame * 1000) / sampleRate;
  }

  track(frames) {
    // the quantum [currentFrame, currentFrame + frames) has been captured by now
    const now = Date.now();
    const observed = now - ((currentFrame + frames) * 1000) / sampleRate;
    if (this.offsetMs === null || observed < this.offsetMs) {
      this.offsetMs = observed;
    } else {
      this.offsetMs = Math.min(observed, this.offsetMs + (now - this.offsetAt) * CREEP);
    }
    this.offsetAt = now;
  }

  process(inputs) {
    const input = inputs[0] || [];
    const frames = input.length ? input[0].length : 128;
    this.track(frames);
    const ch = this.channels;
    const buf = this.buffer;
    for (let i = 0; i < frames; i++) {
      if (this.capturing && this.fill === 0) this.firstFrame = currentFrame + i;
      const base = this.fill * ch;
      for (let c = 0; c < ch; c++) {
        const data = input[Math.min(c, input.length - 1)];
        const x = data ? data[i] : 0;
        const ax = x < 0 ? -x : x;
        if (ax > this.peak) this.peak = ax;
        this.sumSq += x * x;
        if (this.capturing) {
          const s = x < 0 ? Math.round(x * 32768) : Math.round(x * 32767);
          buf[base + c] = s > 32767 ? 32767 : s < -32768 ? -32768 : s;
        }
      }
      this.levelCount += 1;
      if (this.capturing) {
        this.fill += 1;
        if (this.fill === this.frameSamples) {
          const pcm = buf.slice();
          this.port.postMessage({ type: 'frame', pcm, captureMs: this.wallMs(this.firstFrame) }, [pcm.buffer]);
          this.fill = 0;
        }
      }
      if (this.levelCount >= this.levelEvery) {
        const rms = Math.sqrt(this.sumSq / (this.levelCount * ch));
        this.port.postMessage({ type: 'level', peak: this.peak, rms, at: currentTime });
        this.peak = 0;
        this.sumSq = 0;
        this.levelCount = 0;
      }
    }
    return true;
  }
}

registerProcessor('micwire-capture', MicwireCapture);
