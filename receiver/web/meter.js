// micwire monitor: a level meter (a stream's peak and RMS, an output device's mix) and the
// one animation loop that moves every meter.

import { EM, isNum, minus, setText } from './util.js';

const METER_FLOOR_DB = -60;

/** A level meter: a bar over −60…0 dBFS plus the number. The bar is a gradient that a cover
 * hides from the right. The receiver sends levels ~5 times a second; between them the bar
 * glides (fast up, slower down, like a peak meter), drawn 20 times a second by one
 * animation loop for all meters that stops when nothing moves: cheap on a phone's battery
 * and on a machine without a GPU. The number changes with each update only. */
export class Meter {
  constructor(el) {
    this.el = el;
    this.cover = el.querySelector('.cover');
    this.db = el.querySelector('.db');
    this.target = 0; // fraction of the bar
    this.shown = -1; // what the cover shows now (-1: nothing drawn yet)
  }

  set(dbfs) {
    const ok = isNum(dbfs);
    this.target = ok ? Math.min(1, Math.max(0, (dbfs - METER_FLOOR_DB) / -METER_FLOOR_DB)) : 0;
    const db = ok ? dbfs.toFixed(1) : '';
    if (this.el.dataset.db !== db) this.el.dataset.db = db;
    this.el.classList.toggle('hot', ok && dbfs > -1);
    setText(this.db, ok ? (dbfs <= -100 ? '−∞' : minus(dbfs.toFixed(1))) + ' dB' : EM);
    if (this.shown !== this.target) meterLoop.add(this);
  }

  /** One animation step of dt seconds; false once the bar has arrived. */
  step(dt) {
    if (this.shown < 0 || reducedMotion.matches) this.shown = this.target;
    else {
      const rising = this.target > this.shown;
      const tau = rising ? 0.03 : 0.12; // s: quick attack, gentler release
      this.shown += (this.target - this.shown) * Math.min(1, dt / tau);
      if (Math.abs(this.target - this.shown) < 0.002) this.shown = this.target;
    }
    this.cover.style.transform = `scaleX(${(1 - this.shown).toFixed(4)})`;
    return this.shown !== this.target;
  }
}

const reducedMotion = matchMedia('(prefers-reduced-motion: reduce)');

/** One loop for every meter that is moving, 20 steps a second. A timer, not
 * requestAnimationFrame: asking for every frame makes the browser run its rendering
 * pipeline 60 times a second even when this skips most of them (measured: twice the CPU in
 * headless Chromium). Timers also slow down in background tabs. */
const METER_STEP_MS = 50;
const meterLoop = {
  moving: new Set(),
  timer: 0,
  last: 0,
  add(meter) {
    this.moving.add(meter);
    if (!this.timer) {
      this.last = performance.now() - METER_STEP_MS;
      this.timer = setTimeout(() => this.step(), 0);
    }
  },
  step() {
    const now = performance.now();
    const dt = Math.min(0.2, (now - this.last) / 1000);
    this.last = now;
    for (const m of this.moving) if (!m.step(dt) || !m.el.isConnected) this.moving.delete(m);
    this.timer = this.moving.size ? setTimeout(() => this.step(), METER_STEP_MS) : 0;
  },
};
