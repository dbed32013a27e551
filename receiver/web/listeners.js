// micwire monitor: listening from the stream rows: one Listener (listen.js) per stream
// listened to, wired to its row and to the test hooks; each stream's volume kept in this
// browser (localStorage) from one visit to the next.

import { ensureAudio } from './audio.js';
import { Listener } from './listen.js';
import { hooks, views } from './state.js';

export const listeners = new Map(); // stream name -> Listener

export async function startListening(name) {
  if (listeners.has(name)) return listeners.get(name);
  const view = views.get(name);
  const hook = {};
  hooks.listening[name] = hook;
  const listener = new Listener(name, {
    hook,
    volume: loadVolume(name),
    streamState: () => hooks.streams.find((s) => s.stream === name)?.state ?? null,
    ui: {
      status: (h) => view?.showListenStatus(h),
      stopped: (reason) => {
        listeners.delete(name);
        delete hooks.listening[name];
        const current = views.get(name);
        current?.setListening(false);
        if (reason) current?.note(`Stopped listening: ${reason}.`);
      },
    },
  });
  listeners.set(name, listener);
  view?.setListening(true);
  try {
    listener.begin(await ensureAudio());
  } catch (err) {
    console.error(`micwire: ${name}: cannot start audio`, err);
    listener.stop(`cannot start audio (${err && err.message ? err.message : err})`);
  }
  return listener;
}

export function loadVolume(name) {
  try {
    const v = Number(localStorage.getItem('micwire.volume:' + name));
    return localStorage.getItem('micwire.volume:' + name) !== null && Number.isFinite(v) ? v : 1;
  } catch {
    return 1;
  }
}

export function saveVolume(name, v) {
  try {
    localStorage.setItem('micwire.volume:' + name, String(v));
  } catch {
    // private mode: the slider still works for this visit
  }
}
