// micwire monitor: a stream's recordings on its row, part by part, a link per file.
// File names come from the receiver's disk: they reach the page through textContent and
// attribute setters only, their links only when they are paths on this site (safePath).

import { EM, fmtBytes, fmtDuration, isNum, safePath, setText, visible } from './util.js';

const RECS_SHOWN = 3;

/** The recording, part by part in order (a stream continued after a receiver restart has
 * more than one): "part 2 · 20:14 · 3m 05s" and a link per file named by its format, "WAV ·
 * MP3 · sidecar", the file's full name in its tooltip (PROTOCOL.md §10: parts, sidecar). */
export class RecordingsList {
  constructor(cell) {
    const q = (sel) => cell.querySelector(sel);
    this.f = { recs: q('.recs'), moreRecs: q('.more-recs'), recsMore: q('.recs-more') };
    this.key = '';
  }

  /** `now`: the receiver's clock at this update (s since the epoch). */
  update(parts, sidecar, now) {
    const f = this.f;
    const many = parts.length > 1;
    const lines = parts.map((p, i) => ({
      when: [
        many ? `part ${isNum(p.part) ? p.part : i + 1}` : '',
        fmtPartStart(p.start_utc, now),
        p.outcome === 'recording' ? `${fmtDuration(p.seconds)} so far` : fmtDuration(p.seconds),
      ].filter(Boolean),
      files: (Array.isArray(p.files) ? p.files : []).map((file) => ({
        ...fileLink(file),
        label: typeof file.format === 'string' && file.format ? file.format.toUpperCase() : 'file',
      })),
    }));
    // the sidecar describes every part: it goes with the first, whose files it is named after
    if (lines.length && sidecar) lines[0].files.push({ ...fileLink(sidecar), label: 'sidecar', sidecar: true });
    const key = JSON.stringify(lines);
    if (key === this.key) return;
    this.key = key;
    const items = lines.map((line, i) => {
      const li = document.createElement('li');
      li.className = 'part';
      li.dataset.part = String(i + 1);
      // "part 2 · 20:14 · 3m 05s": each piece whole, the line may break between them
      const when = document.createElement('span');
      when.className = 'when';
      line.when.forEach((text, k) => {
        const piece = document.createElement('span');
        piece.textContent = text;
        when.append(...(k ? [' · ', piece] : [piece]));
      });
      const files = document.createElement('span');
      files.className = 'files';
      line.files.forEach((file, k) => {
        if (k) files.append(' · ');
        const a = document.createElement(file.href ? 'a' : 'span');
        if (file.href) {
          a.href = file.href;
          a.setAttribute('download', file.name);
        }
        if (file.sidecar) a.className = 'sidecar'; // what the recording is (PROTOCOL.md §8)
        a.dataset.format = file.sidecar ? 'json' : file.label.toLowerCase();
        a.textContent = file.label;
        a.title = file.title;
        files.append(a);
      });
      if (!line.files.length) files.textContent = 'no file';
      li.append(when, ' ', files);
      return li;
    });
    if (items.length === 0) {
      const li = document.createElement('li');
      li.className = 'none';
      li.textContent = 'no recording';
      items.push(li);
    }
    // the latest parts stay in view; earlier ones fold away above them, in order
    const folded = Math.max(0, items.length - RECS_SHOWN);
    f.recsMore.replaceChildren(...items.slice(0, folded));
    f.recs.replaceChildren(...items.slice(folded));
    f.moreRecs.hidden = folded === 0;
    setText(f.moreRecs.querySelector('summary'), `${folded} earlier part${folded === 1 ? '' : 's'}`);
  }
}

/** A file of the record directory as a link: its path on this site (null if the data says
 * otherwise), its name, and a tooltip with the whole name and its size. */
function fileLink(file) {
  const name = typeof file.name === 'string' ? file.name : String(file.url || 'recording');
  const size = isNum(file.bytes) ? ` · ${fmtBytes(file.bytes)}` : '';
  return { href: safePath(file.url), name, title: visible(name) + size };
}

/** When a part began: the time of day, with the date when it was not on `now`'s day. */
function fmtPartStart(epochS, now) {
  if (!isNum(epochS)) return EM;
  const at = new Date(epochS * 1000);
  const time = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (at.toDateString() === new Date(now * 1000).toDateString()) return time;
  return `${at.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}
