// micwire monitor: the page's side of the player worklet (player-worklet.js): where it is
// loaded from, one node per listened stream with its options, and what its stats say of
// the latency. The messages it takes are listed at the top of player-worklet.js.

import { clampNumber } from './util.js';

export const PLAYER_URL = '/static/player-worklet.js';
const PLAYER_NAME = 'micwire-player';
/** Jitter-buffer target in ms: what the player keeps queued at the least, just before the
 * next packet's audio arrives (on average it holds half a packet more); it grows on an
 * underrun and shrinks back. `?jitter_ms=N` on the page's URL overrides it (benchmarks,
 * experiments). */
export const TARGET_MS = clampNumber(new URLSearchParams(location.search).get('jitter_ms'), 5, 200, 15);
/** Beyond this much queued the oldest audio goes (stay live). */
const MAX_QUEUE_MS = 250;

/** A player node for audio of `channels` at `rateHz`, playing `outChannels` into `gain`;
 * what it posts goes to `onStats`. */
export function newPlayerNode(ctx, gain, outChannels, channels, rateHz, onStats) {
  const node = new AudioWorkletNode(ctx, PLAYER_NAME, {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [outChannels],
    processorOptions: { channels, rateHz, targetMs: TARGET_MS, maxMs: MAX_QUEUE_MS },
  });
  node.port.onmessage = (e) => onStats(e.data);
  node.connect(gain);
  Object.assign(node, { outChannels, channels, rateHz });
  return node;
}

/**
 * Capture to ear, from the player's stats (`m`, ~10 a second):
 *
 *   latency = heard − captured, for the sample at the player's read head, where
 *   captured = capture_time_us of its packet (the sender's wall clock) + its offset in the
 *              packet (− pre_skip for Opus, see opus.js), carried to the
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
 * ms on a LAN).
 */
export function captureToEarMs(ctx, m) {
  const sinceMs = Math.max(0, (ctx.currentTime - m.ctxTime) * 1000);
  const outputMs = ((ctx.baseLatency || 0) + (ctx.outputLatency || 0)) * 1000;
  return Date.now() - sinceMs + outputMs - m.captureMs;
}
