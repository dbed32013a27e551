// One stream's controls in the receiver's mix: gain, mute, solo and pan of what its output
// device plays (receiver/mixer.py). They change what is heard there, never what is recorded.
// Shown to the full role only (the events socket's hello says which role the page has);
// changes go out as PATCH /api/streams/{name} (docs/PROTOCOL.md §10), at most one in
// flight per stream, the newest value winning.
//
// Test hook: the strip's element is `.mix` in the stream's row; its inputs have classes
// mix-gain, mix-mute, mix-solo, mix-pan, and `.mix-error` says what the receiver refused.

import { setText, visible } from './util.js';

const SEND_AFTER_MS = 40; // a fader being dragged: one request per step of this, not per pixel

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

export class MixStrip {
  constructor(name) {
    this.name = name;
    this.state = null; // the receiver's last word on this stream's mix
    this.pending = {}; // fields changed here and not yet sent
    this.inFlight = false;
    this.timer = 0;
    const label = visible(name);
    this.gain = el('input', { type: 'range', min: '-60', max: '12', step: '0.5', className: 'mix-gain' });
    this.gain.setAttribute('aria-label', `Gain of ${label} in the receiver's mix (dB)`);
    this.gainText = el('span', { className: 'mix-gain-text' });
    this.mute = el('button', { type: 'button', className: 'mix-mute', textContent: 'M', title: 'Mute' });
    this.solo = el('button', { type: 'button', className: 'mix-solo', textContent: 'S', title: 'Solo' });
    this.pan = el('input', { type: 'range', min: '-1', max: '1', step: '0.05', className: 'mix-pan' });
    this.pan.setAttribute('aria-label', `Pan of ${label} in the receiver's mix`);
    this.error = el('span', { className: 'mix-error', hidden: true });
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
    if (field in this.pending) return this.pending[field];
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
    Object.assign(this.pending, fields);
    this.show();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.send(), now ? 0 : SEND_AFTER_MS);
  }

  async send() {
    if (this.inFlight || !Object.keys(this.pending).length) return;
    const body = this.pending;
    this.pending = {};
    this.inFlight = true;
    try {
      const r = await fetch(`/api/streams/${encodeURIComponent(this.name)}`, {
        method: 'PATCH',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = await r.json().catch(() => ({}));
      if (r.ok && answer.mix) {
        this.state = answer.mix;
        this.error.hidden = true;
      } else {
        this.error.hidden = false;
        setText(this.error, typeof answer.error === 'string' ? visible(answer.error) : `refused (${r.status})`);
      }
    } catch {
      this.error.hidden = false;
      setText(this.error, 'the receiver did not answer');
    } finally {
      this.inFlight = false;
      this.show();
      if (Object.keys(this.pending).length) this.send();
    }
  }
}
