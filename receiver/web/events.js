// micwire monitor: the live figures' socket, WS /api/events (PROTOCOL.md §10): its hello
// (the page's role), each streams event, and what the page shows while it is down.

import { backoff, setText, wsUrl } from './util.js';
import { hooks } from './state.js';

const connEl = document.getElementById('conn');
const bannerEl = document.getElementById('banner');

function setConnection(state, text) {
  connEl.dataset.state = state;
  setText(connEl.querySelector('.conn-text'), text);
  document.body.classList.toggle('stale', state !== 'live');
}

/** Keeps the events socket open (reconnecting with back-off, the page marked stale while
 * it is down) and hands each streams event to `render`. */
export function connectEvents(render) {
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
