// micwire monitor: the page's audio: one AudioContext, one output bus every listened
// stream is mixed into (window.micwire.output), the player worklet loaded into it.

import { PLAYER_URL } from './player.js';

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
