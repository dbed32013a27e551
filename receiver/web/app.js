// micwire monitor page: live figures of every stream, and listening in the browser.
// The contract with the receiver is docs/PROTOCOL.md §10 (endpoints) and §4 (packet header).
// Plain ES module, no build step, nothing loaded from elsewhere (the page's CSP allows 'self' only).
//
// This file puts the page together from each streams event: the output strips, then the
// stream rows in the receiver's order. Its modules, one job each:
//   events.js       the events socket (WS /api/events), its reconnects and the stale banner
//   state.js        what the modules share: the test hooks below, the rows by stream
//   stream-view.js  one stream's row; in it meter.js (level meters), recordings.js (the
//                   recordings list) and mix.js (the mix strip; also the output strips)
//   listeners.js    listening from a row: a Listener per stream, volumes kept
//   listen.js       one stream in the browser: its socket, decoding (opus.js), the player
//                   node (player.js, the page's side of player-worklet.js), the page's
//                   AudioContext and output bus (audio.js)
//
// Safety: stream names, peers, alert messages and recording names come from senders or the
// receiver's disk. They only ever reach the page through textContent and attribute setters,
// never innerHTML, and links are only followed when they are paths on this site. What a
// person reads of them goes through visible() (util.js): a control or bidi character shows
// as an escape ("\u202Egnp.exe"), never turning the text around it ("exe.png").
//
// Test hooks (Playwright), see tests/web/browser.py:
//   window.micwire = {ctx, output, listening: {<stream>: {latencyMs, underruns, codecPath,
//                     queuedMs, lowMs, targetMs, skippedMs, ...}}, streams, connected,
//                     listen(name), stop(name)}
//   `output` is the GainNode every stream is mixed into right before ctx.destination.

import { isNum, setText, wsUrl } from './util.js';
import { connectEvents } from './events.js';
import { listeners, startListening } from './listeners.js';
import { Meter } from './meter.js';
import { OutputStrip } from './mix.js';
import { hooks, views } from './state.js';
import { StreamView } from './stream-view.js';

hooks.listen = (name) => startListening(name);
hooks.stop = (name) => listeners.get(name)?.stop();
window.micwire = hooks;

const outputs = new Map(); // output device name -> OutputStrip
let latestTime = 0; // the receiver's clock at the last event (s since the epoch)

/** One strip per output device the receiver plays on (its mix's meter and master). */
function renderOutputs(list) {
  const box = document.getElementById('outputs');
  const seen = new Set();
  for (const o of Array.isArray(list) ? list : []) {
    if (!o || typeof o.device !== 'string' || seen.has(o.device)) continue;
    seen.add(o.device);
    let strip = outputs.get(o.device);
    if (!strip) {
      strip = new OutputStrip(o.device, (el) => new Meter(el));
      outputs.set(o.device, strip);
      box.append(strip.el);
    }
    strip.update(o, hooks.role === 'full');
  }
  for (const [device, strip] of outputs) {
    if (!seen.has(device)) {
      strip.el.remove();
      outputs.delete(device);
    }
  }
  box.hidden = seen.size === 0;
}

function render(msg) {
  latestTime = isNum(msg.time) ? msg.time : Date.now() / 1000;
  hooks.streams = msg.streams;
  renderOutputs(msg.outputs);
  const container = document.getElementById('streams');
  const seen = new Set();
  let prev = container.querySelector('.thead');
  let alerts = 0;
  let live = 0;
  for (const s of msg.streams) {
    if (!s || typeof s.stream !== 'string' || seen.has(s.stream)) continue;
    seen.add(s.stream);
    let view = views.get(s.stream);
    if (!view) {
      view = new StreamView(s.stream);
      views.set(s.stream, view);
    }
    view.update(s, latestTime);
    // keep the receiver's order, moving nodes only when it changed
    if (prev.nextElementSibling !== view.el) prev.after(view.el);
    prev = view.el;
    if (Array.isArray(s.alerts)) alerts += s.alerts.length;
    if (s.state === 'live') live++;
  }
  for (const [name, view] of views) {
    if (!seen.has(name)) {
      view.el.remove();
      views.delete(name);
      listeners.get(name)?.stop('the stream is gone');
    }
  }
  document.getElementById('empty').hidden = seen.size > 0;
  const parts = [`${seen.size} stream${seen.size === 1 ? '' : 's'}`, `${live} live`];
  if (alerts) parts.push(`${alerts} alert${alerts === 1 ? '' : 's'}`);
  setText(document.getElementById('summary'), parts.join(' · '));
  const title = (alerts ? `(${alerts}) ` : '') + 'micwire monitor';
  if (document.title !== title) document.title = title;
}

// ---------------------------------------------------------------------------------------

setText(document.getElementById('send-hint'), `micwire send ${wsUrl('/')} --name kitchen`);
connectEvents(render);
