// micwire monitor page: live figures of every stream, and listening in the browser.
// The contract with the receiver is docs/PROTOCOL.md §10 (endpoints) and §4 (packet header).
// Plain ES module, no build step, nothing loaded from elsewhere (the page's CSP allows 'self' only).
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

import { EM, fmt, fmtChannels, fmtClock, fmtCount, fmtDuration, fmtRate, fmtSamples, fmtSigned, isNum, setText,
  visible, wsUrl, backoff } from './util.js';
import { listeners, loadVolume, saveVolume, startListening } from './listeners.js';
import { Meter } from './meter.js';
import { MixStrip, OutputStrip } from './mix.js';
import { RecordingsList } from './recordings.js';
import { hooks, views } from './state.js';

hooks.listen = (name) => startListening(name);
hooks.stop = (name) => listeners.get(name)?.stop();
window.micwire = hooks;

const outputs = new Map(); // output device name -> OutputStrip
let latestTime = 0; // the receiver's clock at the last event (s since the epoch)

// ---------------------------------------------------------------------------------------
// live figures: WS /api/events

const connEl = document.getElementById('conn');
const bannerEl = document.getElementById('banner');

function setConnection(state, text) {
  connEl.dataset.state = state;
  setText(connEl.querySelector('.conn-text'), text);
  document.body.classList.toggle('stale', state !== 'live');
}

function connectEvents() {
  let delays = backoff();
  let socket = null;
  let retryTimer = 0;
  let countdown = 0;

  const open = () => {
    clearTimeout(retryTimer);
    clearInterval(countdown);
    setConnection('connecting', 'connecting…');
    const ws = new WebSocket(wsUrl('/api/events'));
    socket = ws;
    let opened = false;
    let gotData = false;
    ws.onopen = () => {
      opened = true;
      hooks.connected = true;
      setConnection('live', 'connected');
      bannerEl.hidden = true;
    };
    ws.onmessage = (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      if (msg && msg.type === 'hello' && typeof msg.role === 'string') {
        hooks.role = msg.role; // the full role may change the mix (mix.js)
        return;
      }
      if (msg && msg.type === 'streams' && Array.isArray(msg.streams)) {
        if (!gotData) {
          gotData = true;
          delays = backoff(); // a working connection starts the back-off afresh
        }
        hooks.events++;
        render(msg);
      }
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      hooks.connected = false;
      const delay = delays.next().value;
      if (!opened) checkLogin();
      let left = Math.ceil(delay);
      const say = () => {
        setConnection('down', `reconnecting in ${left} s`);
        bannerEl.textContent = `Lost the connection to the receiver; the figures below are stale. Retrying in ${left} s…`;
        bannerEl.hidden = false;
      };
      say();
      countdown = setInterval(() => {
        left = Math.max(0, left - 1);
        say();
      }, 1000);
      retryTimer = setTimeout(open, delay * 1000);
    };
  };
  // come back at once when the network does
  window.addEventListener('online', () => {
    if (!socket) open();
  });
  open();
}

/** A socket that never opened may mean the login expired: a 401 from the API says so. */
async function checkLogin() {
  try {
    const r = await fetch('/api/streams', { cache: 'no-store', credentials: 'same-origin', redirect: 'manual' });
    if (r.status === 401 || r.type === 'opaqueredirect') {
      location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
    }
  } catch {
    // the receiver is down: keep retrying
  }
}

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
// one stream's card / row

const ALERT_LABELS = { silence: 'Silence', clipping: 'Clipping', down: 'Down' };
const STATE_LABELS = { live: 'live', reconnecting: 'reconnecting', ended: 'ended' };

class StreamView {
  constructor(name) {
    this.name = name;
    const tpl = document.getElementById('stream-template');
    this.el = tpl.content.firstElementChild.cloneNode(true);
    const q = (sel) => this.el.querySelector(sel);
    this.f = {
      name: q('.name'),
      codec: q('.codec'),
      peer: q('.peer'),
      stateText: q('.state-text'),
      uptime: q('.uptime'),
      listeners: q('.listeners'),
      buffer: q('.f-buffer'),
      jitter: q('.f-jitter'),
      latency: q('.f-latency'),
      drift: q('.f-drift'),
      output: q('.f-output'),
      gaps: q('.f-gaps'),
      lost: q('.f-lost'),
      late: q('.f-late'),
      underruns: q('.f-underruns'),
      concealed: q('.f-concealed'),
      reconnects: q('.f-reconnects'),
      alerts: q('.alerts'),
      listen: q('.listen'),
      volume: q('.volume'),
      lstatus: q('.lstatus'),
      lPath: q('.l-path'),
      lLatency: q('.l-latency'),
      lQueue: q('.l-queue'),
      lUnderruns: q('.l-underruns'),
      lSkipped: q('.l-skipped'),
      lnote: q('.lnote'),
    };
    this.recordings = new RecordingsList(q('.c-rec'));
    this.meters = {
      peak: new Meter(q('.meter[data-kind="peak"]')),
      rms: new Meter(q('.meter[data-kind="rms"]')),
    };
    this.alertsKey = '';
    this.state = null;
    this.el.dataset.stream = name; // attribute value: not parsed as markup, not shown
    setText(this.f.name, visible(name));
    this.f.name.title = visible(name);
    this.mix = new MixStrip(name);
    q('.c-listen').append(this.mix.el);
    this.f.listen.addEventListener('click', () => this.toggleListen());
    const vol = loadVolume(name);
    this.f.volume.value = String(Math.round(vol * 100));
    this.f.volume.setAttribute('aria-label', `Volume of ${visible(name)}`);
    this.f.volume.addEventListener('input', () => {
      const v = Number(this.f.volume.value) / 100;
      saveVolume(name, v);
      listeners.get(name)?.setVolume(v);
    });
  }

  toggleListen() {
    this.f.lnote.hidden = true;
    if (listeners.has(this.name)) listeners.get(this.name).stop();
    else startListening(this.name);
  }

  update(s, now) {
    const f = this.f;
    const state = STATE_LABELS[s.state] ? s.state : 'unknown';
    this.state = state;
    if (this.el.dataset.state !== state) this.el.dataset.state = state;
    setText(f.stateText, STATE_LABELS[state] || String(s.state ?? EM));
    const codecBits = [
      typeof s.codec === 'string' ? s.codec.toUpperCase() : '',
      fmtRate(s.rate_hz),
      fmtChannels(s.channels),
      isNum(s.frame_ms) ? `${s.frame_ms} ms` : '',
    ].filter(Boolean);
    setText(f.codec, codecBits.join(' · ') || EM);
    setText(f.peer, typeof s.peer === 'string' && s.peer ? visible(s.peer) : EM);
    setText(f.uptime, isNum(s.uptime_s) ? `up ${fmtDuration(s.uptime_s)}` : EM);
    setText(f.listeners, isNum(s.listeners) ? `${s.listeners} listener${s.listeners === 1 ? '' : 's'}` : '');
    this.meters.peak.set(s.peak_dbfs);
    this.meters.rms.set(s.rms_dbfs);
    this.mix.update(s.mix, hooks.role === 'full' && state !== 'ended');

    setText(f.buffer, isNum(s.buffer_ms) || isNum(s.target_ms) ? `${fmt(s.buffer_ms)} / ${fmt(s.target_ms, 0, ' ms')}` : EM);
    setText(f.jitter, fmt(s.jitter_ms, 1, ' ms'));
    setText(f.latency, fmt(s.latency_ms, 0, ' ms'));
    setText(f.drift, fmtSigned(s.drift_ppm, 0, ' ppm'));
    setText(f.output, outputText(s.output_device, s.output_state));
    f.output.dataset.state = typeof s.output_state === 'string' ? s.output_state : '';
    setText(f.gaps, isNum(s.gaps) ? `${s.gaps}${s.gap_samples ? ` (${fmtSamples(s.gap_samples, s.rate_hz)})` : ''}` : EM);
    setText(f.lost, isNum(s.lost_samples) ? fmtSamples(s.lost_samples, s.rate_hz) : EM);
    setText(f.late, fmtCount(s.late_packets));
    setText(f.underruns, fmtCount(s.underruns));
    setText(f.concealed, isNum(s.concealed_samples) ? fmtSamples(s.concealed_samples, s.rate_hz) : EM);
    setText(f.reconnects, fmtCount(s.reconnects));
    for (const [key, el] of [['gaps', f.gaps], ['lost_samples', f.lost], ['late_packets', f.late], ['underruns', f.underruns]]) {
      el.classList.toggle('nonzero', isNum(s[key]) && s[key] > 0);
    }

    this.updateAlerts(Array.isArray(s.alerts) ? s.alerts : [], now);
    this.recordings.update(Array.isArray(s.parts) ? s.parts : [], s.sidecar && typeof s.sidecar === 'object' ? s.sidecar : null, now);
    const disabled = !listeners.has(this.name) && state === 'ended';
    if (f.listen.disabled !== disabled) {
      f.listen.disabled = disabled;
      f.listen.title = disabled ? 'The stream has ended' : '';
    }
  }

  updateAlerts(alerts, now) {
    const f = this.f;
    const key = JSON.stringify(alerts.map((a) => [a.kind, a.since, a.message]));
    if (key !== this.alertsKey) {
      this.alertsKey = key;
      f.alerts.replaceChildren(
        ...alerts.map((a) => {
          const li = document.createElement('li');
          li.dataset.kind = typeof a.kind === 'string' ? a.kind : 'other';
          const label = document.createElement('strong');
          label.textContent = ALERT_LABELS[a.kind] || visible(a.kind || 'Alert');
          const since = document.createElement('span');
          since.className = 'since';
          const msg = document.createElement('span');
          msg.className = 'msg';
          msg.textContent = typeof a.message === 'string' ? visible(a.message) : '';
          li.append(label, ' ', since, ' ', msg);
          return li;
        }),
      );
      f.alerts.hidden = alerts.length === 0;
      this.el.classList.toggle('alerting', alerts.length > 0);
    }
    // the "since" text ages every update (receiver clock: no skew with this machine)
    alerts.forEach((a, i) => {
      const el = f.alerts.children[i]?.querySelector('.since');
      if (el) setText(el, isNum(a.since) ? `since ${fmtClock(a.since)} (${fmtDuration(now - a.since)})` : '');
    });
  }

  setListening(on) {
    const f = this.f;
    f.listen.setAttribute('aria-pressed', on ? 'true' : 'false');
    setText(f.listen.querySelector('.icon'), on ? '■' : '▶');
    setText(f.listen.querySelector('.ltext'), on ? 'Stop' : 'Listen');
    f.lstatus.hidden = !on;
    this.el.classList.toggle('listening', on);
    if (!on && this.state === 'ended') f.listen.disabled = true;
  }

  /** A short note under the listen button (why listening stopped, …). */
  note(text) {
    const el = this.f.lnote;
    setText(el, text);
    el.hidden = false;
    clearTimeout(this.noteTimer);
    this.noteTimer = setTimeout(() => (el.hidden = true), 10000);
  }

  showListenStatus(h) {
    const f = this.f;
    // changes of state show at once; the moving figures ~2.5 times a second (each change
    // costs the browser a frame)
    const now = performance.now();
    const skipped = Math.round(h.skippedMs || 0);
    const key = `${h.state}|${h.codecPath}|${h.underruns}|${skipped}`;
    if (key === this.listenKey && now - this.listenShown < 400) return;
    this.listenKey = key;
    this.listenShown = now;
    setText(f.lPath, h.pathLabel);
    f.lPath.dataset.path = h.codecPath;
    let what = h.state;
    if (h.state === 'playing') what = isNum(h.latencyMs) ? `${Math.round(h.latencyMs)} ms capture→ear` : 'buffering…';
    setText(f.lLatency, what);
    // the buffer's low point (what a late packet may use up) against its target
    setText(f.lQueue, isNum(h.lowMs) ? `buffer ${Math.round(h.lowMs)}/${Math.round(h.targetMs)} ms` : '');
    setText(f.lUnderruns, `${h.underruns} underrun${h.underruns === 1 ? '' : 's'}`);
    f.lUnderruns.classList.toggle('nonzero', h.underruns > 0);
    // audio skipped to catch up with the present (after a stall): said once there was some
    setText(f.lSkipped, skipped > 0 ? `caught up ${fmtSamples(skipped, 1000)}` : '');
    f.lSkipped.hidden = skipped === 0;
  }
}

const OUTPUT_STATES = { stalled: 'stalled', gone: 'gone, retrying' };

/** Where the receiver plays the stream, and whether that device plays (receiver/mixer.py). */
function outputText(device, state) {
  if (typeof device !== 'string') return EM;
  const name = visible(device);
  return OUTPUT_STATES[state] ? `${name}: ${OUTPUT_STATES[state]}` : name;
}

// ---------------------------------------------------------------------------------------

setText(document.getElementById('send-hint'), `micwire send ${wsUrl('/')} --name kitchen`);
connectEvents();
