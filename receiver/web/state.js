// micwire monitor: what the page's modules share: the test hooks (window.micwire, see the
// top of app.js), which are also the page's state (the streams and the role the events
// socket last said, what each listener shows), and the stream rows by name.

import { audio } from './audio.js';

export const hooks = {
  get ctx() {
    return audio.ctx;
  },
  get output() {
    return audio.output;
  },
  listening: {},
  streams: [],
  role: null, // what the events socket's hello said this page may do
  connected: false,
  events: 0,
  // listen(name), stop(name): app.js adds them (they need listeners.js, which needs this)
};

export const views = new Map(); // stream name -> StreamView
