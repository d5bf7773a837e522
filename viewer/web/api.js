// api.js — the daemon's HTTP API (viewer/API.md): every /api/ call carries
// the per-start token the daemon put in the page's address (#token=...).

const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers(extra) {
  return Object.assign({ 'X-Dxhub-Token': token }, extra || {});
}

async function failure(res, what) {
  let msg = `${what}: HTTP ${res.status}`;
  try { const j = await res.json(); if (j && j.error) msg = j.error; } catch (_) { /* not JSON */ }
  return new ApiError(res.status, msg);
}

// JSON in, JSON out; throws ApiError naming the daemon's reason.
export async function api(method, path, body) {
  const init = { method, headers: headers(body !== undefined ? { 'Content-Type': 'application/json' } : null) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  if (!res.ok) throw await failure(res, `${method} ${path}`);
  return res.json();
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body === undefined ? {} : body);
export const put = (path, body) => api('PUT', path, body);

// One decoded frame at full bit depth: {rows, columns, samples, signed, bits, data}
// where data is an Int16Array, Uint16Array or Uint8Array (RGB interleaved for colour).
export async function frame(sop, n) {
  const path = `/api/instances/${encodeURIComponent(sop)}/frames/${n}`;
  const res = await fetch(path, { headers: headers() });
  if (!res.ok) throw await failure(res, `frame ${n}`);
  const buf = await res.arrayBuffer();
  const h = (k, d) => { const v = res.headers.get(k); return v === null ? d : Number(v); };
  const bits = h('X-Bits-Allocated', 16), signed = h('X-Signed', 0) === 1;
  const rows = h('X-Rows', 0), columns = h('X-Columns', 0), samples = h('X-Samples', 1);
  let data;
  if (bits === 16) data = signed ? new Int16Array(buf, 0, buf.byteLength >> 1) : new Uint16Array(buf, 0, buf.byteLength >> 1);
  else if (bits === 8) data = new Uint8Array(buf);
  else if (bits === 32) data = signed ? new Int32Array(buf, 0, buf.byteLength >> 2) : new Uint32Array(buf, 0, buf.byteLength >> 2);
  else throw new ApiError(415, `frame ${n}: ${bits}-bit pixels are not displayable here`);
  if (data.length < rows * columns * samples) throw new ApiError(502, `frame ${n}: ${data.length} samples, expected ${rows * columns * samples}`);
  return { rows, columns, samples, signed, bits, data };
}

// The exact signed bytes of a task's last report, and who signed them.
export async function signed(taskId) {
  const res = await fetch(`/api/tasks/${encodeURIComponent(taskId)}/signed`, { headers: headers() });
  if (!res.ok) throw await failure(res, 'signed report');
  return { text: await res.text(), signer: res.headers.get('X-Signer') || '' };
}

// Server-sent events with the token header (EventSource cannot send headers,
// so the stream is read through fetch).  Calls onEvent(name, data); resolves
// when the stream ends, rejects on error — the caller reconnects.
export async function events(onEvent, signal) {
  const res = await fetch('/api/events', { headers: headers({ Accept: 'text/event-stream' }), signal });
  if (!res.ok || !res.body) throw await failure(res, 'events');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end); buf = buf.slice(end + 2);
      let name = 'message'; const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length || name !== 'message') onEvent(name, data.join('\n'));
    }
  }
}
