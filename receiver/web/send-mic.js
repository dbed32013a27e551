// micwire guest page, the microphone: getUserMedia into the capture worklet
// (capture-worklet.js: int16 frames of F samples with their capture time, levels), and the
// browser's Opus encoder (WebCodecs AudioEncoder: can it encode here, with what pre-skip,
// and the configuration every connection's encoder uses). No network, no page.

import { errorText } from './util.js';
import { opusHeadPreSkip } from './send-core.js';

/** The capture rate: the AudioContext runs at it, so the worklet's frames are in it. */
export const RATE_HZ = 48000;
const CAPTURE_URL = '/static/capture-worklet.js';

/** The Opus encoder's configuration for the link's settings (the probe's and every
 * connection's encoder). */
export function opusConfig(s) {
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
export async function probeOpus(s) {
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

export class Microphone {
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
