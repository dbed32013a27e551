// micwire monitor: decoding a listened stream's Opus in the browser (WebCodecs
// AudioDecoder), as PROTOCOL.md §4 says: pre-skip, each packet's `samples`, its capture time.
// listen.js falls back to PCM from the receiver where this browser cannot.

import { errorText } from './util.js';

/** Can this browser decode Opus with WebCodecs? {ok, reason}; cached per format. */
const opusSupport = new Map();
export function checkOpus(rateHz, channels) {
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

/**
 * One Opus codec stream (from one `start` to the next): a WebCodecs AudioDecoder and what
 * PROTOCOL.md §4 says to do with its output. Raw Opus packets need no description (no
 * OpusHead); Chromium then applies no pre-skip itself, so it is dropped here.
 */
export class OpusStream {
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
