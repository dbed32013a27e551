// micwire guest page, the page: its elements, the level meters, the microphone picker, the
// codec choice, the name box, the state and status it shows, and its buttons (Start, Stop,
// Keep trying). What it shows comes from GuestSender (send-stream.js); it only reads the
// figures and forwards what the person does.
//
// Safety: the name and what the receiver says (which may quote the name) reach the page
// only through textContent (setText), and what a person reads of them goes through
// visible() (util.js), as on the monitor page.

import { EM, errorText, isNum, minus, setText, visible } from './util.js';
import { probeOpus } from './send-mic.js';
import { fmtSeconds } from './send-stream.js';

const METER_FLOOR_DB = -60;

const $ = (id) => document.getElementById(id);

class Meter {
  constructor(el) {
    this.el = el;
    this.cover = el.querySelector('.cover');
    this.db = el.querySelector('.db');
  }

  set(linear) {
    const dbfs = linear > 0 ? 20 * Math.log10(linear) : -Infinity;
    const fraction = Math.min(1, Math.max(0, (dbfs - METER_FLOOR_DB) / -METER_FLOOR_DB));
    this.cover.style.transform = `scaleX(${(1 - fraction).toFixed(4)})`;
    this.el.dataset.db = isNum(dbfs) ? dbfs.toFixed(1) : '-120';
    this.el.classList.toggle('hot', dbfs > -1);
    setText(this.db, isNum(dbfs) ? minus(dbfs.toFixed(1)) + ' dB' : '−∞ dB');
  }
}

const CONN_STATES = {
  idle: ['idle', 'not live'],
  starting: ['connecting', 'starting…'],
  connecting: ['connecting', 'connecting…'],
  live: ['live', 'live'],
  reconnecting: ['connecting', 'reconnecting'],
  finishing: ['connecting', 'delivering'],
  delivered: ['idle', 'stopped'],
  undelivered: ['down', 'stopped'],
  failed: ['down', 'stopped'],
};

/** Builds the page around the sender that `newSender(view)` makes; returns the sender, the
 * view and the name box (for the test hooks, send.js). */
export function mountPage(settings, newSender) {
  const els = {
    form: $('form'),
    name: $('name'),
    mic: $('mic'),
    processing: $('processing'),
    codec: $('codec'),
    codecHint: $('codec-hint'),
    start: $('start'),
    stop: $('stop'),
    retry: $('retry'),
    status: $('status'),
    conn: $('conn'),
    banner: $('banner'),
    levelHint: $('level-hint'),
  };
  const meters = { peak: new Meter($('meter-peak')), rms: new Meter($('meter-rms')) };
  let levels = { peak: 0, rms: 0, dirty: false };
  let lastTrack = null;

  const view = {
    ready: null,
    openMic: () => openMic(),
    level(peak, rms) {
      levels = { peak: Math.max(levels.dirty ? levels.peak : 0, peak), rms, dirty: true };
    },
    banner(text) {
      els.banner.hidden = !text;
      setText(els.banner, text || '');
    },
    show(sender) {
      const [connState, connText] = CONN_STATES[sender.state] || ['idle', sender.state];
      els.conn.dataset.state = connState;
      setText(els.conn.querySelector('.conn-text'), connText);
      setText(els.status, visible(sender.status)); // may quote the receiver, which quotes the name
      els.status.dataset.state = sender.state;
      const st = sender.stats();
      setText($('f-captured'), fmtSeconds(st.capturedSamples));
      setText($('f-waiting'), st.capturedSamples ? `${st.waitingSeconds.toFixed(1)} s` : EM);
      setText($('f-acked'), fmtSeconds(st.ackedSamples));
      setText($('f-reconnects'), String(st.reconnects));
      setText($('f-lost'), st.lostSamples ? fmtSeconds(st.lostSamples) : '0');
      $('f-lost').classList.toggle('nonzero', st.lostSamples > 0);
      setText($('f-codec'), st.codec === 'opus' ? `Opus ${Math.round(st.bitrate / 1000)} kbit/s` : 'PCM 16-bit');
      const busy = !['idle', 'delivered', 'undelivered', 'failed'].includes(sender.state);
      els.start.disabled = busy;
      els.stop.disabled = !sender.capturing;
      els.retry.hidden = sender.state !== 'undelivered';
      els.name.disabled = busy;
      els.codec.disabled = busy;
      document.body.dataset.state = sender.state;
    },
  };

  const sender = newSender(view);

  // the meter, 20 times a second (a timer: it also slows down in a background tab)
  setInterval(() => {
    if (!levels.dirty) return;
    meters.peak.set(levels.peak);
    meters.rms.set(levels.rms);
    levels.dirty = false;
  }, 50);

  // the name box shows the name as typed (or as the link gave it): a right-to-left override
  // makes "\u202Egnp.exe" look like "exe.png" there, so the escaped form is said below it
  const nameShown = $('name-shown');
  const showName = () => {
    const name = els.name.value.trim();
    const shown = visible(name);
    nameShown.hidden = shown === name;
    setText(nameShown, shown === name ? '' : `The receiver shows this name as ${shown}: it holds characters that are invisible or turn text around.`);
  };
  els.name.addEventListener('input', showName);
  els.name.value = settings.name;
  showName();
  els.processing.checked = settings.processing;

  if (!window.isSecureContext) {
    view.banner('Browsers give the microphone only to secure pages: open this link with https:// (the host starts the receiver with --cert/--key or --self-signed), or on this machine as http://localhost.');
  }

  async function listDevices() {
    try {
      const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'audioinput');
      const current = els.mic.value || (lastTrack && lastTrack.getSettings().deviceId) || '';
      els.mic.replaceChildren();
      for (const d of devices) {
        const option = document.createElement('option');
        option.value = d.deviceId === 'default' ? '' : d.deviceId;
        option.textContent = d.label || (d.deviceId === 'default' ? 'Default microphone' : `Microphone ${els.mic.length + 1}`);
        els.mic.append(option);
      }
      if (!devices.length) {
        const option = document.createElement('option');
        option.value = '';
        option.textContent = 'No microphone found';
        els.mic.append(option);
      }
      if ([...els.mic.options].some((o) => o.value === current)) els.mic.value = current;
    } catch {
      // leave the list as it is
    }
  }

  async function openMic() {
    try {
      lastTrack = await sender.mic.open(els.mic.value, els.processing.checked);
      lastTrack.addEventListener('ended', () => {
        if (sender.capturing) view.banner('The microphone stopped (unplugged?). Pick another one: recording goes on.');
      });
      view.banner('');
      const held = sender.mic.ctx && sender.mic.ctx.state !== 'running';
      setText(els.levelHint, held
        ? 'Click anywhere on the page to turn the level meter on.'
        : 'Speak: the bars should move. Aim for peaks around −12 dB.');
      await listDevices();
      return true;
    } catch (err) {
      const denied = err && (err.name === 'NotAllowedError' || err.name === 'SecurityError');
      view.banner(denied
        ? 'The microphone is blocked for this page. Allow it (the icon in the address bar), then reload.'
        : `Cannot open the microphone: ${errorText(err)}`);
      return false;
    }
  }

  async function decideCodec() {
    let want = settings.codec || 'opus';
    const probe = await probeOpus(settings);
    if (probe.ok) {
      sender.preSkip = probe.preSkip;
      setText(els.codecHint, `Opus at ${Math.round(settings.bitrate / 1000)} kbit/s, ${settings.frameMs} ms frames.`);
    } else {
      els.codec.querySelector('option[value="opus"]').disabled = true;
      if (want === 'opus') {
        want = 'pcm';
        setText(els.codecHint, `PCM: ${probe.reason}.`);
      }
    }
    els.codec.value = want;
    sender.codec = want;
  }

  // an AudioContext made before any click may be held until one (autoplay policies)
  const wake = () => {
    sender.mic.ensureContext();
    if (sender.mic.ctx && sender.mic.ctx.state === 'running') {
      setText(els.levelHint, 'Speak: the bars should move. Aim for peaks around −12 dB.');
    }
  };
  document.addEventListener('pointerdown', wake);
  document.addEventListener('keydown', wake);

  view.ready = Promise.all([decideCodec(), window.isSecureContext ? openMic() : Promise.resolve(false)]);
  sender.setStatus('Ready: check your level, then press Start.');
  view.ready.then(() => {
    if (sender.state === 'idle') {
      sender.setStatus(sender.mic.track ? 'Ready: check your level, then press Start.' : 'Allow the microphone to begin.');
    }
  });

  els.codec.addEventListener('change', () => {
    sender.codec = els.codec.value;
  });
  els.mic.addEventListener('change', () => openMic());
  els.processing.addEventListener('change', () => openMic());
  navigator.mediaDevices?.addEventListener?.('devicechange', () => listDevices());

  els.form.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = els.name.value.trim();
    if (!name) {
      els.name.focus();
      return;
    }
    if (sender.state === 'undelivered') {
      const left = fmtSeconds(sender.spool.end - sender.acked);
      if (!confirm(`${left} of the last recording has not reached the receiver. Start a new recording and give it up?`)) return;
    }
    sender.mic.ensureContext(); // inside the click: autoplay policies want a gesture
    sender.start(name);
  });
  els.stop.addEventListener('click', () => sender.stop());
  els.retry.addEventListener('click', () => sender.retryDelivery());

  // leaving with audio not yet delivered: ask first (what reached the receiver is safe)
  window.addEventListener('beforeunload', (e) => {
    if (sender.capturing || sender.state === 'finishing' || sender.state === 'undelivered') e.preventDefault();
  });

  return {
    sender,
    view,
    /** The name in the box, as Start takes it. */
    name: () => els.name.value.trim(),
    setName(name) {
      els.name.value = name;
      showName();
    },
  };
}
