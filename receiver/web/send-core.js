// micwire guest page, the pure part: the spool, framing and packets of a browser sender,
// as the CLI sender has them (common/spool.py, common/framing.py; docs/PROTOCOL.md §4).
// Values in, values out: no DOM, no sockets, no audio.

import { HEADER_BYTES } from './util.js';

export const FLAG_LAST = 0x01;
const PACKET_VERSION = 1;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;


/** A run of captured samples: `pcm` int16 interleaved, `captureUs` when pcm[0] was captured. */
export function makeBlock(position, pcm, captureUs, channels) {
  return { position, pcm, captureUs, samples: pcm.length / channels, end: position + pcm.length / channels };
}

/** What the page captured, by timeline position, bounded in samples (drop oldest). */
export class Spool {
  constructor(capacitySamples, channels, rateHz) {
    this.capacity = Math.max(1, capacitySamples);
    this.channels = channels;
    this.rateHz = rateHz;
    this.blocks = [];
    this.head = 0; // index of the oldest block in `blocks`
    this.held = 0;
    this.end = 0; // position after the newest sample
    this.closed = false; // capture is over
  }

  get start() {
    return this.head < this.blocks.length ? this.blocks[this.head].position : this.end;
  }

  append(block) {
    if (block.position < this.end) throw new Error(`block at ${block.position} goes back before ${this.end}`);
    if (!block.samples) return;
    this.blocks.push(block);
    this.held += block.samples;
    this.end = block.end;
    while (this.held > this.capacity) {
      const oldest = this.blocks[this.head];
      const excess = this.held - this.capacity;
      if (oldest.samples <= excess) {
        this.blocks[this.head++] = null;
        this.held -= oldest.samples;
      } else {
        this.blocks[this.head] = this.tail(oldest, excess);
        this.held -= excess;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.blocks.length) {
      this.blocks = this.blocks.slice(this.head);
      this.head = 0;
    }
  }

  /** Blocks holding the audio from `position` on, at most `maxSamples` of it; what was
   * evicted is not there (the first block may start later). */
  read(position, maxSamples = Infinity) {
    const out = [];
    let i = this.blocks.length;
    while (i > this.head && this.blocks[i - 1].end > position) i--;
    let budget = maxSamples;
    for (; i < this.blocks.length && budget > 0; i++) {
      let block = this.blocks[i];
      if (block.position < position) block = this.tail(block, position - block.position);
      if (block.samples > budget) {
        block = makeBlock(block.position, block.pcm.subarray(0, budget * this.channels), block.captureUs, this.channels);
      }
      out.push(block);
      budget -= block.samples;
    }
    return out;
  }

  tail(block, skip) {
    const captureUs = block.captureUs + Math.round((skip * 1e6) / this.rateHz);
    return makeBlock(block.position + skip, block.pcm.subarray(skip * this.channels), captureUs, this.channels);
  }
}

/** Cuts blocks into codec frames of `frameSamples` (framing.py Framer). `fillGaps` (Opus):
 * missing samples become silence, frames stay whole and back to back; `partial` (PCM): the
 * rest of each block leaves at once as a short frame. */
export class Framer {
  constructor(frameSamples, channels, rateHz, { fillGaps = false, partial = false } = {}) {
    this.frameSamples = frameSamples;
    this.channels = channels;
    this.rateHz = rateHz;
    this.fillGaps = fillGaps;
    this.partial = partial;
    this.buffer = new Int16Array(frameSamples * channels);
    this.fill = 0;
    this.start = 0;
    this.startUs = 0;
    this.next = null;
  }

  push(block) {
    const frames = [];
    if (this.next !== null && block.position !== this.next) {
      if (block.position < this.next) throw new Error(`block at ${block.position} overlaps ${this.next}`);
      const gap = block.position - this.next;
      if (this.fillGaps) {
        const startUs = block.captureUs - Math.round((gap * 1e6) / this.rateHz);
        frames.push(...this.push(makeBlock(this.next, new Int16Array(gap * this.channels), startUs, this.channels)));
      } else if (this.fill) {
        frames.push(this.take());
      }
    }
    if (this.fill === 0) {
      this.start = block.position;
      this.startUs = block.captureUs;
    }
    const ch = this.channels;
    let offset = 0;
    while (offset < block.samples) {
      const n = Math.min(this.frameSamples - this.fill, block.samples - offset);
      this.buffer.set(block.pcm.subarray(offset * ch, (offset + n) * ch), this.fill * ch);
      this.fill += n;
      offset += n;
      if (this.fill === this.frameSamples) {
        frames.push(this.take());
        this.start = block.position + offset;
        this.startUs = block.captureUs + Math.round((offset * 1e6) / this.rateHz);
      }
    }
    this.next = block.end;
    if (this.partial && this.fill) frames.push(this.take());
    return frames;
  }

  flush() {
    return this.fill ? this.take() : null;
  }

  take() {
    const chunk = { timestamp: this.start, pcm: this.buffer.slice(0, this.fill * this.channels), samples: this.fill, captureUs: this.startUs };
    this.start += this.fill;
    this.startUs += Math.round((this.fill * 1e6) / this.rateHz);
    this.fill = 0;
    return chunk;
  }
}

/** Packet headers for the frames of one codec stream (framing.py Packetizer): sequence
 * numbers, and `samples` counted on the decoded stream once pre-skip is taken off
 * (PROTOCOL.md §4, Opus payload): samples = min(E - pre_skip, N) - K. */
export class Packetizer {
  constructor(frameSamples, preSkip, wholeFrames, origin) {
    this.frameSamples = frameSamples;
    this.preSkip = preSkip;
    this.wholeFrames = wholeFrames;
    this.seq = 0;
    this.encoded = 0; // E: samples fed to the encoder (Opus frames are padded to F)
    this.released = 0; // K
    this.real = 0; // N: captured samples fed
    this.nextTs = origin;
  }

  /** The header of the packet for one frame (its payload is encoded separately). */
  frame(chunk) {
    if (chunk.timestamp < this.nextTs) throw new Error(`frame at ${chunk.timestamp} goes back before ${this.nextTs}`);
    this.real += chunk.samples;
    return this.header(chunk.timestamp, chunk.samples, chunk.captureUs);
  }

  /** Headers of the packets that flush the codec and end the stream: Opus, frames of
   * silence until every real sample is out of the decoder; PCM, one empty packet. */
  finish(captureUs) {
    const out = [];
    while (this.released < this.real || !out.length) out.push(this.header(this.nextTs, 0, captureUs));
    out[out.length - 1].flags |= FLAG_LAST;
    return out;
  }

  header(timestamp, samples, captureUs) {
    this.nextTs = timestamp + (this.wholeFrames ? this.frameSamples : samples);
    this.encoded += this.wholeFrames ? this.frameSamples : samples;
    const available = Math.min(Math.max(0, this.encoded - this.preSkip), this.real);
    const h = { seq: this.seq, timestamp, samples: available - this.released, captureUs: Math.max(0, captureUs), flags: 0 };
    this.released = available;
    this.seq = (this.seq + 1) >>> 0;
    return h;
  }
}

/** PROTOCOL.md §4: the 24-byte header (big-endian) and the payload, as one message. */
export function packetBytes(h, payload) {
  const out = new Uint8Array(HEADER_BYTES + payload.byteLength);
  const v = new DataView(out.buffer);
  v.setUint8(0, PACKET_VERSION);
  v.setUint8(1, h.flags);
  v.setUint16(2, h.samples);
  v.setUint32(4, h.seq);
  v.setBigUint64(8, BigInt(h.timestamp));
  v.setBigUint64(16, BigInt(h.captureUs));
  out.set(payload, HEADER_BYTES);
  return out;
}

/** int16 samples as little-endian bytes (PCM payload). */
export function pcmBytes(pcm) {
  if (LITTLE_ENDIAN) return new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  const out = new Uint8Array(pcm.length * 2);
  const v = new DataView(out.buffer);
  for (let i = 0; i < pcm.length; i++) v.setInt16(i * 2, pcm[i], true);
  return out;
}

/** pre-skip from an OpusHead (RFC 7845 §5.1: bytes 10-11, little-endian). */
export function opusHeadPreSkip(description) {
  if (!description) return null;
  const bytes = description instanceof ArrayBuffer ? new Uint8Array(description) : new Uint8Array(description.buffer, description.byteOffset, description.byteLength);
  if (bytes.length < 19 || String.fromCharCode(...bytes.subarray(0, 8)) !== 'OpusHead') return null;
  return bytes[10] | (bytes[11] << 8);
}
