// micwire monitor page: live figures of every stream, and listening in the browser.
// The contract with the receiver is docs/PROTOCOL.md §10 (endpoints) and §4 (packet header).
// Plain ES module, no build step, nothing loaded from elsewhere (the page's CSP allows 'self' only).
//
// Safety: stream names, peers, alert messages and recording names come from senders or the
// receiver's disk. They only ever reach the page through textContent and attribute setters,
// never innerHTML, and links are only followed when they are paths on this site.
//
// Test hooks (Playwright), see tests/web/browser.py:
//   window.micwire = {ctx, output, listening: {<stream>: {latencyMs, underruns, codecPath,
//                     queuedMs, ...}}, streams, connected, listen(name), stop(name)}
//   `output` is the GainNode every stream is mixed into right before ctx.destination.

const PLAYER_URL = '/static/player-worklet.js';
const PLAYER_NAME = 'micwire-player';
/** Jitter-buffer target in ms (the worklet grows it on underruns and shrinks it back);
 * `?jitter_ms=N` on the page's URL overrides it (benchmarks). */
const TARGET_MS = clampNumber(new URLSearchParams(location.search).get('jitter_ms'), 5, 200, 40);
const MAX_QUEUE_MS = 250;
const METER_FLOOR_DB = -60;
const LAST_FLAG = 0x01;
const HEADER_BYTES = 24;
const EM = '—';

const hooks = {
  ctx: null,
  output: null,
  listening: {},
  streams: [],
  connected: false,
  events: 0,
  listen: (name) => startListening(name),
  stop: (name) => listeners.get(name)?.stop('stopped'),
};
window.micwire = hooks;

const views = new Map(); // stream name -> StreamView
const listeners = new Map(); // stream name -> Listener
let latestTime = 0; // the receiver's clock at the last event (s since the epoch)

// ---------------------------------------------------------------------------------------
// small pure helpers

function clampNumber(text, lo, hi, fallback) {
  const v = Number(text);
  return text !== null && text !== '' && Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
}

function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

const minus = (s) => s.replace('-', '−');

function fmt(v, digits = 0, unit = '') {
  if (!isNum(v)) return EM;
  return minus(v.toFixed(digits)) + unit;
}

function fmtSigned(v, digits = 0, unit = '') {
  if (!isNum(v)) return EM;
  return (v > 0 ? '+' : '') + minus(v.toFixed(digits)) + unit;
}

function fmtCount(v) {
  return isNum(v) ? String(Math.round(v)) : EM;
}

function fmtDuration(s) {
  if (!isNum(s) || s < 0) return EM;
  s = Math.floor(s);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const p2 = (n) => String(n).padStart(2, '0');
  if (d) return `${d}d ${h}h ${p2(m)}m`;
  if (h) return `${h}h ${p2(m)}m ${p2(sec)}s`;
  if (m) return `${m}m ${p2(sec)}s`;
  return `${sec}s`;
}

function fmtBytes(n) {
  if (!isNum(n)) return '';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

function fmtClock(epochS) {
  if (!isNum(epochS)) return EM;
  return new Date(epochS * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function fmtRate(hz) {
  if (!isNum(hz)) return '';
  return (hz % 1000 === 0 ? String(hz / 1000) : (hz / 1000).toFixed(1)) + ' kHz';
}

function fmtChannels(n) {
  return n === 1 ? 'mono' : n === 2 ? 'stereo' : isNum(n) ? `${n} ch` : '';
}

/** A same-site path, or null: hrefs from data never carry a scheme (javascript:, //host). */
function safePath(url) {
  return typeof url === 'string' && url.startsWith('/') && !url.startsWith('//') && !url.includes('\\') ? url : null;
}

function wsUrl(path) {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
}

/** Reconnect delays in seconds: 0.5, 1, 2, 4, 8, 10, 10, … with ±20 % jitter. */
function* backoff(first = 0.5, max = 10) {
  let d = first;
  for (;;) {
    yield d * (0.8 + 0.4 * Math.random());
    d = Math.min(max, d * 2);
  }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** PROTOCOL.md §4: 24 bytes, big-endian: version u8, flags u8, samples u16, seq u32,
 * timestamp u64 (samples), capture_time_us u64 (sender wall clock). */
function parseHeader(buf) {
  const v = new DataView(buf, 0, HEADER_BYTES);
  return {
    version: v.getUint8(0),
    flags: v.getUint8(1),
    samples: v.getUint16(2),
    seq: v.getUint32(4),
    timestamp: Number(v.getBigUint64(8)),
    captureUs: Number(v.getBigUint64(16)), // < 2^53 until the year 2255: exact as a Number
  };
}

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

function render(msg) {
  latestTime = isNum(msg.time) ? msg.time : Date.now() / 1000;
  hooks.streams = msg.streams;
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
const RECS_SHOWN = 3;

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
      gaps: q('.f-gaps'),
      lost: q('.f-lost'),
      late: q('.f-late'),
      underruns: q('.f-underruns'),
      concealed: q('.f-concealed'),
      reconnects: q('.f-reconnects'),
      alerts: q('.alerts'),
      recs: q('.recs'),
      moreRecs: q('.more-recs'),
      recsMore: q('.recs-more'),
      listen: q('.listen'),
      volume: q('.volume'),
      lstatus: q('.lstatus'),
      lPath: q('.l-path'),
      lLatency: q('.l-latency'),
      lQueue: q('.l-queue'),
      lUnderruns: q('.l-underruns'),
      lnote: q('.lnote'),
    };
    this.meters = {
      peak: new Meter(q('.meter[data-kind="peak"]')),
      rms: new Meter(q('.meter[data-kind="rms"]')),
    };
    this.alertsKey = '';
    this.recsKey = '';
    this.state = null;
    this.el.dataset.stream = name; // attribute value: not parsed as markup
    setText(this.f.name, name);
    this.f.name.title = name;
    this.f.listen.addEventListener('click', () => this.toggleListen());
    const vol = loadVolume(name);
    this.f.volume.value = String(Math.round(vol * 100));
    this.f.volume.setAttribute('aria-label', `Volume of ${name}`);
    this.f.volume.addEventListener('input', () => {
      const v = Number(this.f.volume.value) / 100;
      saveVolume(name, v);
      listeners.get(name)?.setVolume(v);
    });
  }

  toggleListen() {
    this.f.lnote.hidden = true;
    if (listeners.has(this.name)) listeners.get(this.name).stop('stopped');
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
    setText(f.peer, typeof s.peer === 'string' && s.peer ? s.peer : EM);
    setText(f.uptime, isNum(s.uptime_s) ? `up ${fmtDuration(s.uptime_s)}` : EM);
    setText(f.listeners, isNum(s.listeners) ? `${s.listeners} listener${s.listeners === 1 ? '' : 's'}` : '');
    this.meters.peak.set(s.peak_dbfs);
    this.meters.rms.set(s.rms_dbfs);

    setText(f.buffer, isNum(s.buffer_ms) || isNum(s.target_ms) ? `${fmt(s.buffer_ms)} / ${fmt(s.target_ms, 0, ' ms')}` : EM);
    setText(f.jitter, fmt(s.jitter_ms, 1, ' ms'));
    setText(f.latency, fmt(s.latency_ms, 0, ' ms'));
    setText(f.drift, fmtSigned(s.drift_ppm, 0, ' ppm'));
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
    this.updateRecordings(Array.isArray(s.recordings) ? s.recordings : []);
    const listening = listeners.has(this.name);
    f.listen.disabled = !listening && state === 'ended';
    f.listen.title = f.listen.disabled ? 'The stream has ended' : '';
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
          label.textContent = ALERT_LABELS[a.kind] || String(a.kind || 'Alert');
          const since = document.createElement('span');
          since.className = 'since';
          const msg = document.createElement('span');
          msg.className = 'msg';
          msg.textContent = typeof a.message === 'string' ? a.message : '';
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

  updateRecordings(recs) {
    const f = this.f;
    const key = JSON.stringify(recs.map((r) => [r.name, r.url, r.bytes]));
    if (key === this.recsKey) return;
    this.recsKey = key;
    // newest first
    const items = recs.slice().reverse().map((r) => {
      const li = document.createElement('li');
      const name = typeof r.name === 'string' ? r.name : String(r.url || 'recording');
      const href = safePath(r.url);
      const a = document.createElement(href ? 'a' : 'span');
      if (href) {
        a.href = href;
        a.setAttribute('download', name);
      }
      a.textContent = name;
      a.title = name;
      li.append(a);
      if (isNum(r.bytes)) {
        const size = document.createElement('span');
        size.className = 'size';
        size.textContent = fmtBytes(r.bytes);
        li.append(' ', size);
      }
      return li;
    });
    f.recs.replaceChildren(...items.slice(0, RECS_SHOWN));
    if (items.length === 0) {
      const li = document.createElement('li');
      li.className = 'none';
      li.textContent = 'no recording';
      f.recs.append(li);
    }
    f.recsMore.replaceChildren(...items.slice(RECS_SHOWN));
    f.moreRecs.hidden = items.length <= RECS_SHOWN;
    setText(f.moreRecs.querySelector('summary'), `${items.length - RECS_SHOWN} more`);
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
    setText(f.lPath, h.pathLabel);
    f.lPath.dataset.path = h.codecPath;
    setText(f.lLatency, isNum(h.latencyMs) ? `${Math.round(h.latencyMs)} ms latency` : h.state);
    setText(f.lQueue, isNum(h.queuedMs) ? `queue ${Math.round(h.queuedMs)}/${Math.round(h.targetMs)} ms` : '');
    setText(f.lUnderruns, `${h.underruns} underrun${h.underruns === 1 ? '' : 's'}`);
    f.lUnderruns.classList.toggle('nonzero', h.underruns > 0);
  }
}

function fmtSamples(n, rate) {
  if (!isNum(n)) return EM;
  if (n === 0 || !isNum(rate) || rate <= 0) return String(n);
  const ms = (n * 1000) / rate;
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** A level meter: bar over −60…0 dBFS plus the number. The bar is a gradient that a cover
 * element hides from the right; the cover's transform glides between the ~5 updates a
 * second (CSS transition), so the meter moves smoothly without any per-frame script. */
class Meter {
  constructor(el) {
    this.el = el;
    this.cover = el.querySelector('.cover');
    this.db = el.querySelector('.db');
  }

  set(dbfs) {
    const ok = isNum(dbfs);
    const frac = ok ? Math.min(1, Math.max(0, (dbfs - METER_FLOOR_DB) / -METER_FLOOR_DB)) : 0;
    this.cover.style.transform = `scaleX(${(1 - frac).toFixed(4)})`;
    this.el.dataset.db = ok ? dbfs.toFixed(1) : '';
    this.el.classList.toggle('hot', ok && dbfs > -1);
    setText(this.db, ok ? (dbfs <= -100 ? '−∞' : minus(dbfs.toFixed(1))) + ' dB' : EM);
  }
}

function loadVolume(name) {
  try {
    const v = Number(localStorage.getItem('micwire.volume:' + name));
    return localStorage.getItem('micwire.volume:' + name) !== null && Number.isFinite(v) ? v : 1;
  } catch {
    return 1;
  }
}

function saveVolume(name, v) {
  try {
    localStorage.setItem('micwire.volume:' + name, String(v));
  } catch {
    // private mode: the slider still works for this visit
  }
}

// ---------------------------------------------------------------------------------------
// audio: one AudioContext, one output bus, one player worklet per listened stream

let audioReady = null;

/** Create the AudioContext inside the click (autoplay policies want a user gesture; iOS
 * wants resume() in the same task), then load the player module. */
function ensureAudio() {
  if (!hooks.ctx) {
    const ctx = new AudioContext({ latencyHint: 'interactive' });
    // iOS: play even with the ring/silent switch on (Safari 16.4+)
    try {
      if (navigator.audioSession) navigator.audioSession.type = 'playback';
    } catch {
      // not supported
    }
    ctx.resume().catch(() => {});
    const output = ctx.createGain();
    output.connect(ctx.destination);
    hooks.ctx = ctx;
    hooks.output = output;
    audioReady = ctx.audioWorklet.addModule(PLAYER_URL).then(() => ctx);
  } else if (hooks.ctx.state === 'suspended') {
    hooks.ctx.resume().catch(() => {});
  }
  return audioReady;
}

async function startListening(name) {
  if (listeners.has(name)) return listeners.get(name);
  const view = views.get(name);
  const listener = new Listener(name, view);
  listeners.set(name, listener);
  view?.setListening(true);
  try {
    const ctx = await ensureAudio();
    listener.begin(ctx);
  } catch (err) {
    listener.fail(`cannot start audio: ${err && err.message ? err.message : err}`);
  }
  return listener;
}

/** Can this browser decode Opus with WebCodecs? {ok, reason}; cached per format. */
const opusSupport = new Map();
function checkOpus(rateHz, channels) {
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
          return { ok: false, reason: `Opus check failed: ${err && err.message ? err.message : err}` };
        }
      })(),
    );
  }
  return opusSupport.get(key);
}

const PATH_LABELS = {
  connecting: 'connecting…',
  'opus-webcodecs': 'Opus · WebCodecs',
  pcm: 'PCM',
  'pcm-fallback': 'PCM (fallback)',
};

/** Listening to one stream: WS /api/listen/<name> -> decoder -> player worklet -> volume -> output. */
class Listener {
  constructor(name, view) {
    this.name = name;
    this.view = view;
    this.ctx = null;
    this.ws = null;
    this.format = null; // from the current `start`
    this.decoder = null;
    this.decodeQueue = []; // {samples, captureMs} per packet given to the decoder, in order
    this.skipFrames = null; // decoded frames still to drop (Opus pre-skip)
    this.pending = null; // packets that arrive while a `start` is being set up
    this.node = null;
    this.nodeChannels = 0;
    this.nodeRate = 0;
    this.gain = null;
    this.forcePcm = false;
    this.fallbackReason = '';
    this.stopped = false;
    this.ended = false;
    this.retry = backoff();
    this.retryTimer = 0;
    this.latencies = [];
    this.hook = {
      state: 'connecting',
      codecPath: 'connecting',
      pathLabel: PATH_LABELS.connecting,
      fallbackReason: '',
      latencyMs: null,
      latencyRawMs: null,
      queuedMs: null,
      targetMs: TARGET_MS,
      underruns: 0,
      concealedMs: 0,
      droppedMs: 0,
      packets: 0,
      starts: 0,
      decodeErrors: 0,
      outputRateHz: null,
    };
    hooks.listening[name] = this.hook;
  }

  begin(ctx) {
    if (this.stopped) return;
    this.ctx = ctx;
    this.gain = ctx.createGain();
    this.gain.gain.value = loadVolume(this.name);
    this.gain.connect(hooks.output);
    this.connect();
  }

  setVolume(v) {
    if (this.gain) this.gain.gain.setTargetAtTime(v, this.ctx.currentTime, 0.02);
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const url = wsUrl('/api/listen/' + encodeURIComponent(this.name) + (this.forcePcm ? '?format=pcm' : ''));
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.format = null;
    this.pending = null;
    ws.onmessage = (e) => this.onMessage(ws, e.data);
    ws.onclose = (e) => this.onClose(ws, e);
    this.setState('connecting');
  }

  setState(state) {
    this.hook.state = state;
    this.refresh();
  }

  setPath(path) {
    this.hook.codecPath = path;
    let label = PATH_LABELS[path] || path;
    if (path === 'pcm-fallback' && this.fallbackReason) label += `: ${this.fallbackReason}`;
    this.hook.pathLabel = label;
    this.hook.fallbackReason = this.fallbackReason;
    this.refresh();
  }

  refresh() {
    this.view?.showListenStatus(this.hook);
  }

  onMessage(ws, data) {
    if (ws !== this.ws || this.stopped) return;
    if (typeof data === 'string') {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      if (msg.type === 'start') this.onStart(ws, msg);
      else if (msg.type === 'end') this.onEnd(msg);
      return;
    }
    if (this.pending) {
      if (this.pending.length < 500) this.pending.push(data);
      return;
    }
    if (this.format) this.onPacket(data);
  }

  /** A new codec stream (first, and after each reconnect of the sender): reset the decoder. */
  async onStart(ws, msg) {
    this.pending = [];
    this.closeDecoder();
    this.retry = backoff();
    this.hook.starts++;
    const format = {
      codec: String(msg.codec),
      rateHz: Number(msg.rate_hz),
      channels: Math.max(1, Number(msg.channels) || 1),
      frameMs: Number(msg.frame_ms),
      preSkip: Math.max(0, Number(msg.pre_skip) || 0),
    };
    if (format.codec === 'opus' && !this.forcePcm) {
      const support = await checkOpus(format.rateHz, format.channels);
      if (ws !== this.ws || this.stopped) return;
      if (!support.ok) return this.fallBackToPcm(support.reason);
      const decoder = new AudioDecoder({
        output: (ad) => this.onDecoded(decoder, ad),
        error: (err) => this.onDecoderError(decoder, err),
      });
      try {
        // raw Opus packets need no description (no OpusHead): Chromium then applies no
        // pre-skip itself, and onDecoded drops it as PROTOCOL.md §4 says
        decoder.configure({ codec: 'opus', sampleRate: format.rateHz, numberOfChannels: format.channels });
      } catch (err) {
        return this.fallBackToPcm(`Opus decoder refused: ${err && err.message ? err.message : err}`);
      }
      this.decoder = decoder;
      this.decodeQueue = [];
      this.skipFrames = null;
      this.setPath('opus-webcodecs');
    } else if (format.codec === 'pcm') {
      this.setPath(this.forcePcm ? 'pcm-fallback' : 'pcm');
      this.ensureNode(format.channels, format.rateHz);
    } else if (!this.forcePcm) {
      return this.fallBackToPcm(`unknown codec ${format.codec}`);
    } else {
      return this.fail(`the receiver sent codec ${format.codec} for PCM`);
    }
    this.format = format;
    this.setState('playing');
    const queued = this.pending;
    this.pending = null;
    for (const p of queued) this.onPacket(p);
  }

  fallBackToPcm(reason) {
    this.fallbackReason = reason;
    this.forcePcm = true;
    this.setPath('pcm-fallback');
    console.warn(`micwire: ${this.name}: ${reason}; listening to PCM instead`);
    const old = this.ws;
    this.ws = null;
    old?.close(1000);
    this.connect();
  }

  onPacket(buf) {
    if (buf.byteLength < HEADER_BYTES) return;
    const h = parseHeader(buf);
    if (h.version !== 1) return;
    this.hook.packets++;
    const fmtNow = this.format;
    const captureMs = h.captureUs / 1000;
    if (fmtNow.codec === 'pcm') {
      // s16le, channels interleaved; `samples` frames
      const ch = fmtNow.channels;
      const frames = Math.min(h.samples, Math.floor((buf.byteLength - HEADER_BYTES) / (2 * ch)));
      if (frames <= 0) return;
      const view = new DataView(buf, HEADER_BYTES, frames * ch * 2);
      const pcm = new Float32Array(frames * ch);
      for (let i = 0; i < pcm.length; i++) pcm[i] = view.getInt16(2 * i, true) / 32768;
      this.play(pcm, captureMs);
    } else if (this.decoder && this.decoder.state === 'configured') {
      const payload = new Uint8Array(buf, HEADER_BYTES);
      if (payload.length === 0) return; // an empty packet only carries LAST
      this.decodeQueue.push({ samples: h.samples, captureMs });
      this.decoder.decode(
        new EncodedAudioChunk({ type: 'key', timestamp: Math.round((h.timestamp * 1e6) / fmtNow.rateHz), data: payload }),
      );
    }
  }

  /** One decoded Opus packet (outputs come in decode order, one per packet). */
  onDecoded(decoder, ad) {
    try {
      if (decoder !== this.decoder || this.stopped) return;
      const meta = this.decodeQueue.shift();
      const format = this.format;
      if (!meta || !format) return;
      const frames = ad.numberOfFrames;
      const rate = ad.sampleRate; // Chromium decodes Opus at 48 kHz whatever it was told
      const scale = rate / format.rateHz;
      const preSkip = Math.round(format.preSkip * scale);
      // PROTOCOL.md §4: drop the first pre_skip decoded samples of the codec stream, then of
      // what remains of each packet keep the first `samples`
      if (this.skipFrames === null) this.skipFrames = preSkip;
      const start = Math.min(this.skipFrames, frames);
      this.skipFrames -= start;
      const keep = Math.min(frames - start, Math.round(meta.samples * scale));
      this.hook.outputRateHz = rate;
      if (keep <= 0) return;
      this.ensureNode(Math.min(ad.numberOfChannels, format.channels) || 1, rate);
      const pcm = interleaved(ad, start, keep);
      // decoded output lags the input by pre_skip: frame `start` of this packet's output was
      // captured (start − preSkip) frames after the packet's first input sample
      this.play(pcm, meta.captureMs + ((start - preSkip) * 1000) / rate);
    } finally {
      ad.close();
    }
  }

  onDecoderError(decoder, err) {
    if (decoder !== this.decoder || this.stopped) return;
    this.hook.decodeErrors++;
    this.decoder = null;
    this.fallBackToPcm(`Opus decoding failed: ${err && err.message ? err.message : err}`);
  }

  closeDecoder() {
    const d = this.decoder;
    this.decoder = null;
    this.decodeQueue = [];
    this.skipFrames = null;
    if (d && d.state !== 'closed') {
      try {
        d.close();
      } catch {
        // already closed
      }
    }
  }

  /** The player for this format: a new node when the output channel count changes. */
  ensureNode(channels, rateHz) {
    const outChannels = Math.min(2, channels);
    if (this.node && this.nodeOut === outChannels) {
      if (this.nodeChannels !== channels || this.nodeRate !== rateHz) {
        this.node.port.postMessage({ cmd: 'format', channels, rateHz });
        this.nodeChannels = channels;
        this.nodeRate = rateHz;
      }
      return;
    }
    this.dropNode();
    const node = new AudioWorkletNode(this.ctx, PLAYER_NAME, {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [outChannels],
      processorOptions: { channels, rateHz, targetMs: TARGET_MS, maxMs: MAX_QUEUE_MS },
    });
    node.port.onmessage = (e) => this.onStats(e.data);
    node.connect(this.gain);
    this.node = node;
    this.nodeOut = outChannels;
    this.nodeChannels = channels;
    this.nodeRate = rateHz;
  }

  dropNode() {
    if (!this.node) return;
    this.node.port.postMessage({ cmd: 'stop' });
    this.node.port.onmessage = null;
    this.node.disconnect();
    this.node = null;
  }

  play(pcm, captureMs) {
    if (!this.node) return;
    this.node.port.postMessage({ cmd: 'push', pcm, captureMs }, [pcm.buffer]);
  }

  /**
   * Stats from the player, ~10 a second. The latency figure is capture to ear:
   *
   *   latency = heard − captured, for the sample at the player's read head, where
   *   captured = capture_time_us of its packet (sender's wall clock) + its offset in the
   *              packet (and − pre_skip for Opus, see onDecoded), carried to the worklet
   *              with each chunk;
   *   heard    = Date.now() at the moment the worklet played it (Date.now() now, minus how
   *              far ctx.currentTime has moved since: the message took a moment to arrive)
   *              + ctx.baseLatency + ctx.outputLatency (destination -> device -> speaker).
   *
   * Equivalently: Date.now() + the audio queued in the page + output latency − capture
   * time of the newest sample. Everything on the way is in it: sender capture block, network,
   * receiver, WebSocket, decoder, this jitter buffer, the sound card. It compares two wall
   * clocks, the sender's and this device's, so it is right only when they are synchronised:
   * exact on one machine; over NTP, off by the two clocks' offset (a few ms on a LAN).
   */
  onStats(m) {
    if (!m || m.type !== 'stats' || this.stopped) return;
    const h = this.hook;
    h.queuedMs = m.queuedMs;
    h.targetMs = m.targetMs;
    h.underruns = m.underruns;
    h.concealedMs = m.concealedMs;
    h.droppedMs = m.droppedMs;
    h.ratio = m.ratio;
    h.playing = m.playing;
    h.writtenFrames = m.writtenFrames;
    h.readFrames = m.readFrames;
    h.ctxTime = m.ctxTime;
    const ctx = this.ctx;
    if (m.playing && isNum(m.captureMs)) {
      const sinceMs = Math.max(0, (ctx.currentTime - m.ctxTime) * 1000);
      const outputMs = ((ctx.baseLatency || 0) + (ctx.outputLatency || 0)) * 1000;
      const heardMs = Date.now() - sinceMs + outputMs;
      const raw = heardMs - m.captureMs;
      h.latencyRawMs = raw;
      this.latencies.push(raw);
      if (this.latencies.length > 10) this.latencies.shift();
      h.latencyMs = median(this.latencies); // over the last second: steady to read
    }
    this.refresh();
  }

  onEnd(msg) {
    this.ended = true;
    this.hook.outcome = msg.outcome ?? null;
    this.setState('ended');
  }

  onClose(ws, e) {
    if (ws !== this.ws || this.stopped) return;
    this.ws = null;
    this.closeDecoder();
    if (this.ended) {
      // play out what is queued, then let go
      setTimeout(() => this.stop('ended'), (this.hook.queuedMs || 0) + 500);
      return;
    }
    // stream gone for good (ended or not listed): stop; else the link dropped: retry
    const s = hooks.streams.find((x) => x.stream === this.name);
    if (!s || s.state === 'ended') {
      this.stop(s ? 'the stream has ended' : 'the stream is gone');
      return;
    }
    const delay = this.retry.next().value;
    this.setState(`reconnecting in ${Math.ceil(delay)} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay * 1000);
    if (e && e.code !== 1000) console.info(`micwire: listen ${this.name}: closed (${e.code}); retrying`);
  }

  fail(reason) {
    console.error(`micwire: ${this.name}: ${reason}`);
    this.stop(reason);
  }

  stop(reason) {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = null;
    ws?.close(1000);
    this.closeDecoder();
    this.dropNode();
    this.gain?.disconnect();
    listeners.delete(this.name);
    delete hooks.listening[this.name];
    this.view?.setListening(false);
    if (reason && reason !== 'stopped') this.view?.note(`Stopped listening: ${reason}.`);
  }
}

/** AudioData -> interleaved Float32Array of frames [start, start+count). */
function interleaved(ad, start, count) {
  const ch = ad.numberOfChannels;
  if (ad.format === 'f32') {
    const out = new Float32Array(count * ch);
    ad.copyTo(out, { planeIndex: 0, frameOffset: start, frameCount: count });
    return out;
  }
  // planar (or another sample format): f32-planar is the conversion every browser must offer
  const out = new Float32Array(count * ch);
  const plane = new Float32Array(count);
  for (let c = 0; c < ch; c++) {
    ad.copyTo(plane, { planeIndex: c, format: 'f32-planar', frameOffset: start, frameCount: count });
    for (let i = 0; i < count; i++) out[i * ch + c] = plane[i];
  }
  return out;
}

// ---------------------------------------------------------------------------------------

setText(document.getElementById('send-hint'), `micwire send ${wsUrl('/')} --name kitchen`);
connectEvents();
