// micwire monitor: one stream's card / row: its figures, meters, alerts, recordings, mix
// strip and listen controls, filled from the streams event (PROTOCOL.md §10) with
// textContent only (names come from senders: see the safety note at the top of app.js).

import { EM, fmt, fmtChannels, fmtClock, fmtCount, fmtDuration, fmtRate, fmtSamples, fmtSigned, isNum, setText,
  visible } from './util.js';
import { listeners, loadVolume, saveVolume, startListening } from './listeners.js';
import { Meter } from './meter.js';
import { MixStrip } from './mix.js';
import { RecordingsList } from './recordings.js';
import { hooks } from './state.js';

const ALERT_LABELS = { silence: 'Silence', clipping: 'Clipping', down: 'Down' };
const STATE_LABELS = { live: 'live', reconnecting: 'reconnecting', ended: 'ended' };

export class StreamView {
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
