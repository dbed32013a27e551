// micwire monitor: small helpers shared by the page's modules (formatting, the packet
// header, back-off); none holds state.

export const EM = '—';
export const HEADER_BYTES = 24;

/** A number from text (a URL parameter), clamped; `fallback` when absent or not a number. */
export function clampNumber(text, lo, hi, fallback) {
  const v = Number(text);
  return text !== null && text !== '' && Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : fallback;
}

export function isNum(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

export const minus = (s) => s.replace('-', '−');

/** What went wrong, in words: an Error's message, or the thing thrown itself. */
export const errorText = (err) => (err && err.message ? err.message : String(err));

export function fmt(v, digits = 0, unit = '') {
  if (!isNum(v)) return EM;
  return minus(v.toFixed(digits)) + unit;
}

export function fmtSigned(v, digits = 0, unit = '') {
  if (!isNum(v)) return EM;
  return (v > 0 ? '+' : '') + minus(v.toFixed(digits)) + unit;
}

export function fmtCount(v) {
  return isNum(v) ? String(Math.round(v)) : EM;
}

export function fmtDuration(s) {
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

export function fmtBytes(n) {
  if (!isNum(n)) return '';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

export function fmtClock(epochS) {
  if (!isNum(epochS)) return EM;
  return new Date(epochS * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function fmtRate(hz) {
  if (!isNum(hz)) return '';
  return (hz % 1000 === 0 ? String(hz / 1000) : (hz / 1000).toFixed(1)) + ' kHz';
}

export function fmtChannels(n) {
  return n === 1 ? 'mono' : n === 2 ? 'stereo' : isNum(n) ? `${n} ch` : '';
}

/** A same-site path, or null: hrefs from data never carry a scheme (javascript:, //host). */
export function safePath(url) {
  return typeof url === 'string' && url.startsWith('/') && !url.startsWith('//') && !url.includes('\\') ? url : null;
}

export function wsUrl(path) {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
}

/** Reconnect delays in seconds: 0.5, 1, 2, 4, 8, 10, 10, … with ±20 % jitter. */
export function* backoff(first = 0.5, max = 10) {
  let d = first;
  for (;;) {
    yield d * (0.8 + 0.4 * Math.random());
    d = Math.min(max, d * 2);
  }
}

/** Characters a reader cannot see, or that move the text around them: controls (C0, C1),
 * format characters (bidi overrides, embeddings, isolates and marks, zero-width spaces and
 * joiners, word joiner, invisible operators, BOM, tags), lone surrogates, line and paragraph
 * separators, and the Hangul fillers (letters that draw nothing). */
const HIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\u115F\u1160\u3164\uFFA0]/gu;

/** `text` as a person should see it: whatever hides itself or turns the text around is
 * written as an escape, `\u202E` (`\U000E0041` beyond the BMP), so a stream named
 * "\u202Egnp.exe" does not read "exe.png". For every name, peer, file name and message
 * that came from outside; the same rule as `visible()` in common/names.py (the terminal). */
export function visible(text) {
  return String(text).replace(HIDDEN, (ch) => {
    const code = ch.codePointAt(0);
    return code <= 0xffff
      ? '\\u' + code.toString(16).toUpperCase().padStart(4, '0')
      : '\\U' + code.toString(16).toUpperCase().padStart(8, '0');
  });
}

export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** PROTOCOL.md §4: 24 bytes, big-endian: version u8, flags u8, samples u16, seq u32,
 * timestamp u64 (samples), capture_time_us u64 (sender wall clock). */
export function parseHeader(buf) {
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

export function fmtSamples(n, rate) {
  if (!isNum(n)) return EM;
  if (n === 0 || !isNum(rate) || rate <= 0) return String(n);
  const ms = (n * 1000) / rate;
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
