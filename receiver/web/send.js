// micwire guest page: a browser is a sender (docs/PROTOCOL.md §1-§9; the page is /send, §10).
// This module is the entry: it reads the link's settings, builds the page around one
// GuestSender, and offers the test hooks.
//
//   microphone -> MediaStreamAudioSourceNode -> capture worklet (capture-worklet.js: int16
//   frames of F samples with their wall-clock capture time, levels)        send-mic.js
//   -> Spool (in memory, the last `spool_s` seconds, counted in samples)   send-stream.js
//   -> per connection: Framer -> Packetizer                                send-core.js
//      (+ a fresh WebCodecs AudioEncoder for Opus)                         send-link.js
//   -> WebSocket (same origin, authenticated by the login cookie)          send-link.js
//   the page: meters, microphone picker, name, state, buttons              send-page.js
// What to send, when to connect, back off, give up or finish is decided by the connection
// protocol in send-core.js (SenderProtocol: events in, actions out), the mirror of the CLI
// sender's common/connection/sender.py, checked against the same table of cases
// (tests/cases/sender_connection.json). The other modules are the shell: they feed the
// protocol events and perform its actions.
//
// Capture never waits for the network; every connection says hello (resuming with the
// stream's secret after the first), starts a new codec stream where the receiver's accept
// says its recording ends (Opus: OPUS_PRIME_S earlier, so the fresh encoder has settled;
// the receiver drops what it already has), and sends from the spool. Receiver acks and the
// final `done` say what is recorded; "everything delivered" is shown only when `done`
// covers every captured sample and nothing was dropped.
//
// Link parameters: ?name=N&codec=opus|pcm&bitrate=BPS&frame_ms=MS&channels=1|2&spool_s=S
//   &finish_s=S&application=voip|audio|lowdelay&processing=1
//
// Test hooks (Playwright): window.micwireSend = {state, stats(), start(), stop(),
// trackSettings(), ready(), spooled()}.

import { clampNumber } from './util.js';
import { pcmBytes } from './send-core.js';
import { mountPage } from './send-page.js';
import { GuestSender } from './send-stream.js';

const FRAME_DURATIONS_MS = [2.5, 5, 10, 20, 40, 60]; // PROTOCOL.md §2
const OPUS_APPLICATIONS = ['voip', 'audio', 'lowdelay'];

// ---------------------------------------------------------------------------------------
// settings from the link

function linkSettings() {
  const q = new URLSearchParams(location.search);
  const frameMs = Number(q.get('frame_ms'));
  const codec = (q.get('codec') || '').toLowerCase();
  const application = (q.get('application') || '').toLowerCase();
  return {
    name: Array.from((q.get('name') || '').trim()).slice(0, 200).join(''), // whole characters
    codec: codec === 'pcm' || codec === 'opus' ? codec : null, // null: Opus if the browser can
    bitrate: Math.round(clampNumber(q.get('bitrate'), 6000, 510000, 32000)),
    frameMs: FRAME_DURATIONS_MS.includes(frameMs) ? frameMs : 20,
    channels: q.get('channels') === '2' ? 2 : 1,
    spoolS: clampNumber(q.get('spool_s'), 1, 3600, 120),
    finishS: clampNumber(q.get('finish_s'), 1, 3600, 30),
    application: OPUS_APPLICATIONS.includes(application) ? application : 'audio',
    processing: q.get('processing') === '1',
  };
}

function main() {
  const settings = linkSettings();
  const page = mountPage(settings, (view) => new GuestSender(settings, view));
  const { sender, view } = page;

  window.micwireSend = {
    get state() {
      return sender.state;
    },
    stats: () => sender.stats(),
    start: (name) => {
      if (name) page.setName(name);
      sender.mic.ensureContext();
      return sender.start(page.name() || 'guest');
    },
    stop: () => sender.stop(),
    trackSettings: () => (sender.mic.track ? sender.mic.track.getSettings() : null),
    ready: () => view.ready.then(() => true),
    /** What the spool holds, {start, end, pcm: base64 of int16 little-endian}: a test compares
     * it with the recording (the page sent exactly what it captured). */
    spooled: () => {
      const blocks = sender.spool.read(sender.spool.start);
      const bytes = new Uint8Array(blocks.reduce((n, b) => n + b.pcm.byteLength, 0));
      let at = 0;
      for (const b of blocks) {
        bytes.set(pcmBytes(b.pcm), at);
        at += b.pcm.byteLength;
      }
      let text = '';
      for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return { start: sender.spool.start, end: sender.spool.end, pcm: btoa(text) };
    },
  };
}

main();
