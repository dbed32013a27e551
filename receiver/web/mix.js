// The receiver's live mix on the monitor page (receiver/mixer.py): on each stream's row its
// gain, mute, solo and pan (MixStrip); above the streams, one strip per output device with
// the mix's meter and its master gain (OutputStrip). They change what the receiver plays,
// never what it records. Controls are for the full role only (the events socket's hello
// says which role the page has); changes go out as PATCH /api/streams/{name} and
// PATCH /api/outputs/{device} (docs/PROTOCOL.md §10), at most one in flight per strip, the
// newest value winning.
//
// Test hooks: a stream's strip is `.mix` in its row (inputs mix-gain, mix-mute, mix-solo,
// mix-pan; `.mix-error` says what the receiver refused); a device's is
// `.output[data-device=NAME]` in #outputs (its fader: `.master-gain`).

import { setText, visible } from './util.js';

const SEND_AFTER_MS = 40; // a fader being dragged: one request per step of this, not per pixel

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

/** Sends a strip's changes: the fields changed and not yet sent go in one PATCH, at most
 * one in flight; what the receiver refused is said in `errorEl`. */
class Patcher {
  constructor(url, errorEl, onAnswer) {
    this.url = url;
    this.errorEl = errorEl;
    this.onAnswer = onAnswer;
    this.pending = {};
    this.inFlight = false;
    this.timer = 0;
  }

  change(fields, now) {
    Object.assign(this.pending, fields);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.send(), now ? 0 : SEND_AFTER_MS);
  }

  async send() {
    if (this.inFlight || !Object.keys(this.pending).length) return;
    const body = this.pending;
    this.pending = {};
    this.inFlight = true;
    let answer = {};
    try {
      const r = await fetch(this.url, {
        method: 'PATCH',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      answer = await r.json().catch(() => ({}));
      this.errorEl.hidden = r.ok;
      if (!r.ok) setText(this.errorEl, typeof answer.error === 'string' ? visible(answer.error) : `refused (${r.status})`);
    } catch {
      this.errorEl.hidden = false;
      setText(this.errorEl, 'the receiver did not answer');
    } finally {
      this.inFlight = false;
      this.onAnswer(answer);
      if (Object.keys(this.pending).length) this.send();
    }
  }
}

export class MixStrip {
  constructor(name) {
    this.name = name;
    this.state = null; // the receiver's last word on this stream's mix
    const label = visible(name);
    this.gain = el('input', { type: 'range', min: '-60', max: '12', step: '0.5', className: 'mix-gain' });
    this.gain.setAttribute('aria-label', `Gain of ${label} in the receiver's mix (dB)`);
    this.gainText = el('span', { className: 'mix-gain-text' });
    this.mute = el('button', { type: 'button', className: 'mix-mute', textContent: 'M', title: 'Mute' });
    this.solo = el('button', { type: 'button', className: 'mix-solo', textContent: 'S', title: 'Solo' });
    this.pan = el('input', { type: 'range', min: '-1', max: '1', step: '0.05', className: 'mix-pan' });
    this.pan.setAttribute('aria-label', `Pan of ${label} in the receiver's mix`);
    this.error = el('span', { className: 'mix-error', hidden: true });
    this.patcher = new Patcher(`/api/streams/${encodeURIComponent(name)}`, this.error, (answer) => {
      if (answer.mix) this.state = answer.mix;
      this.show();
    });
    this.el = el('div', { className: 'mix', hidden: true }, [
      el('span', { className: 'mix-title', textContent: 'Mix', title: 'What the receiver plays on its output device; recordings are not changed' }),
      el('label', { className: 'mix-fader' }, [this.gain, this.gainText]),
      this.mute,
      this.solo,
      el('label', { className: 'mix-panner', title: 'Pan' }, ['L', this.pan, 'R']),
      this.error,
    ]);
    this.gain.addEventListener('input', () => this.change({ gain_db: Number(this.gain.value) }));
    this.pan.addEventListener('input', () => this.change({ pan: Number(this.pan.value) }));
    this.gain.addEventListener('dblclick', () => this.change({ gain_db: 0 }, true));
    this.pan.addEventListener('dblclick', () => this.change({ pan: 0 }, true));
    this.mute.addEventListener('click', () => this.change({ mute: !this.current('mute') }, true));
    this.solo.addEventListener('click', () => this.change({ solo: !this.current('solo') }, true));
  }

  current(field) {
    if (field in this.patcher.pending) return this.patcher.pending[field];
    return this.state ? this.state[field] : false;
  }

  /** The stream's mix as the receiver shows it (`mix` of its view), on a page that may
   * change it (`allowed`). */
  update(mix, allowed) {
    this.el.hidden = !(allowed && mix && typeof mix === 'object');
    if (this.el.hidden) return;
    this.state = mix;
    this.show();
  }

  show() {
    const gain = Number(this.current('gain_db')) || 0;
    if (document.activeElement !== this.gain) this.gain.value = String(gain);
    if (document.activeElement !== this.pan) this.pan.value = String(Number(this.current('pan')) || 0);
    setText(this.gainText, `${gain > 0 ? '+' : ''}${gain.toFixed(1)} dB`);
    const mute = Boolean(this.current('mute'));
    const solo = Boolean(this.current('solo'));
    this.mute.setAttribute('aria-pressed', String(mute));
    this.solo.setAttribute('aria-pressed', String(solo));
  }

  change(fields, now = false) {
    this.patcher.change(fields, now);
    this.show();
  }
}

const OUTPUT_STATES = { playing: '', stalled: 'stalled', gone: 'gone, retrying' };

/** One output device's mix: its name and state, the mix's meter (`makeMeter` makes the
 * page's meter on the element it is given), its limiter and its master gain. */
export class OutputStrip {
  constructor(device, makeMeter) {
    this.device = device;
    this.state = null;
    const label = visible(device);
    const meterEl = el('div', { className: 'meter' }, [
      el('span', { className: 'mlabel', textContent: 'Mix' }),
      el('span', { className: 'bar' }, [el('span', { className: 'cover' })]),
      el('span', { className: 'db' }),
    ]);
    meterEl.dataset.kind = 'mix';
    this.meter = makeMeter(meterEl);
    this.about = el('span', { className: 'output-about' });
    this.limiter = el('span', { className: 'output-limiter' });
    this.gain = el('input', { type: 'range', min: '-60', max: '12', step: '0.5', className: 'master-gain' });
    this.gain.setAttribute('aria-label', `Master gain of ${label} (dB)`);
    this.gainText = el('span', { className: 'mix-gain-text' });
    this.error = el('span', { className: 'mix-error', hidden: true });
    this.fader = el('label', { className: 'mix-fader', hidden: true }, ['Master', this.gain, this.gainText]);
    this.el = el('div', { className: 'output' }, [
      el('strong', { className: 'output-name', textContent: label, title: label }),
      this.about,
      meterEl,
      this.limiter,
      this.fader,
      this.error,
    ]);
    this.el.dataset.device = device; // attribute value: not parsed as markup
    this.patcher = new Patcher(`/api/outputs/${encodeURIComponent(device)}`, this.error, (answer) => {
      if (answer.master) this.state = { ...(this.state || {}), master: answer.master };
      this.show();
    });
    this.gain.addEventListener('input', () => {
      this.patcher.change({ gain_db: Number(this.gain.value) }, false);
      this.show();
    });
    this.gain.addEventListener('dblclick', () => {
      this.patcher.change({ gain_db: 0 }, true);
      this.show();
    });
  }

  update(view, allowed) {
    this.state = view;
    this.fader.hidden = !allowed;
    const bits = [
      typeof view.rate_hz === 'number' ? `${(view.rate_hz / 1000).toFixed(1)} kHz` : '',
      typeof view.streams === 'number' ? `${view.streams} stream${view.streams === 1 ? '' : 's'}` : '',
      OUTPUT_STATES[view.state] ?? String(view.state ?? ''),
    ].filter(Boolean);
    setText(this.about, bits.join(' · '));
    this.el.dataset.state = typeof view.state === 'string' ? view.state : '';
    setText(this.limiter, view.limiter_hits ? `limiter ${view.limiter_hits}×` : '');
    this.meter.set(view.peak_dbfs);
    this.show();
  }

  show() {
    const pending = this.patcher.pending.gain_db;
    const gain = Number(pending ?? this.state?.master?.gain_db) || 0;
    if (document.activeElement !== this.gain) this.gain.value = String(gain);
    setText(this.gainText, `${gain > 0 ? '+' : ''}${gain.toFixed(1)} dB`);
  }
}
