// page.mjs — reading what the workstation page shows: canvas pixels, the
// viewer's draw counters, the API with the page's token.

// Grey levels (red channel) of a canvas rectangle, as a Buffer.
export async function canvasGray(page, sel, x, y, w, h) {
  const b64 = await page.evaluate(([sel, x, y, w, h]) => {
    const d = document.querySelector(sel).getContext('2d').getImageData(x, y, w, h).data;
    const g = new Uint8Array(w * h);
    for (let i = 0; i < g.length; i++) g[i] = d[i * 4];
    let s = '';
    for (let i = 0; i < g.length; i += 8192) s += String.fromCharCode(...g.subarray(i, i + 8192));
    return btoa(s);
  }, [sel, x, y, w, h]);
  return Buffer.from(b64, 'base64');
}

// RGBA of a canvas rectangle, as a Buffer.
export async function canvasRGBA(page, sel, x, y, w, h) {
  const b64 = await page.evaluate(([sel, x, y, w, h]) => {
    const d = document.querySelector(sel).getContext('2d').getImageData(x, y, w, h).data;
    let s = '';
    for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
    return btoa(s);
  }, [sel, x, y, w, h]);
  return Buffer.from(b64, 'base64');
}

export const dataset = (page, sel) => page.evaluate((sel) => ({ ...document.querySelector(sel).dataset }), sel);

// Wait until the image canvas (sel: the study's, or the prior's beside it)
// has drawn at least once more than `after` and its dataset satisfies the
// wanted values.
export async function waitImage(page, want = {}, after = -1, timeout = 15000, sel = '#image') {
  await page.waitForFunction(([want, after, sel]) => {
    const d = document.querySelector(sel).dataset;
    if (Number(d.draws || 0) <= after) return false;
    return Object.entries(want).every(([k, v]) => String(d[k]) === String(v));
  }, [want, after, sel], { timeout });
  return dataset(page, sel);
}

// The workstation's API from inside the page (same origin, its token).
export function api(page, method, path, body) {
  return page.evaluate(async ([method, path, body]) => {
    const token = new URLSearchParams(location.hash.slice(1)).get('token');
    const r = await fetch(path, { method, headers: { 'X-Dxhub-Token': token, 'Content-Type': 'application/json' },
      body: body === null ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null; try { json = JSON.parse(text); } catch (_) { /* not JSON */ }
    return { status: r.status, json, text };
  }, [method, path, body === undefined ? null : body]);
}

export function stats(buf) {
  let s = 0, s2 = 0;
  for (const v of buf) { s += v; s2 += v * v; }
  const mean = s / buf.length;
  return { mean, std: Math.sqrt(Math.max(0, s2 / buf.length - mean * mean)) };
}
