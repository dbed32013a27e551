// The login form (docs/PROTOCOL.md §10): show the error of a failed attempt (?error=1) and
// carry ?next= through the POST. Only a path on this site is kept (the server checks too).
const query = new URLSearchParams(location.search);
if (query.get('error') === '1') document.getElementById('error').hidden = false;
const next = query.get('next');
if (next && next.startsWith('/') && !next.startsWith('//') && !next.includes('\\')) {
  document.getElementById('next').value = next;
}
