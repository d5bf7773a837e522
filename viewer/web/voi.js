// voi.js — stored pixel values to display grey levels: modality rescale, then
// the linear VOI window of PS3.3 C.11.2.1.2.1, as one lookup table per
// window change, so a drag costs one table (65,536 entries) plus one pass
// over the pixels.

export const PRESETS = [
  { name: 'lung', label: 'Lung', center: -600, width: 1500, key: '1' },
  { name: 'mediastinum', label: 'Mediastinum', center: 50, width: 350, key: '2' },
  { name: 'bone', label: 'Bone', center: 400, width: 1800, key: '3' },
  { name: 'brain', label: 'Brain', center: 40, width: 80, key: '4' },
  { name: 'abdomen', label: 'Abdomen', center: 40, width: 400, key: '5' },
];

const OPAQUE = 0xff000000;

// PS3.3 C.11.2.1.2.1 "linear": x is the rescaled (modality) value.
export function windowLevel(x, center, width) {
  const w = Math.max(width, 1);
  const lo = center - 0.5 - (w - 1) / 2, hi = center - 0.5 + (w - 1) / 2;
  if (x <= lo) return 0;
  if (x > hi) return 255;
  if (w <= 1) return 255;
  return Math.round(((x - (center - 0.5)) / (w - 1) + 0.5) * 255);
}

// Table from stored value (offset by lutOffset) to an opaque RGBA word
// (little-endian ImageData order).  invert: MONOCHROME1 XOR the user's invert.
// 32-bit values get no table (it would have 4 billion entries): each pixel
// goes through grey() instead, slower but the same function.
export function buildLut(frame, { slope, intercept, center, width, invert }) {
  const s = slope || 1, b = intercept || 0;
  const w = Math.max(width, 1), lo = center - 0.5 - (w - 1) / 2, hi = center - 0.5 + (w - 1) / 2;
  const k = w > 1 ? 255 / (w - 1) : 0, c0 = center - 0.5;
  if (frame.bits === 32) {
    const grey = (v) => {
      const x = v * s + b;
      let g = x <= lo ? 0 : x > hi ? 255 : Math.round((x - c0) * k + 127.5);
      if (g > 255) g = 255; else if (g < 0) g = 0;
      if (invert) g = 255 - g;
      return (OPAQUE | (g << 16) | (g << 8) | g) >>> 0;
    };
    return { lut: null, offset: 0, grey };
  }
  const size = frame.bits === 8 ? 256 : 65536;
  const offset = frame.bits === 16 && frame.signed ? 32768 : 0;
  const lut = new Uint32Array(size);
  const entry = (i) => {
    const x = (i - offset) * s + b;
    let g = x <= lo ? 0 : x > hi ? 255 : Math.round((x - c0) * k + 127.5);
    if (g > 255) g = 255; else if (g < 0) g = 0;
    if (invert) g = 255 - g;
    return (OPAQUE | (g << 16) | (g << 8) | g) >>> 0;
  };
  // With a rising rescale only the ramp between lo and hi needs the
  // formula; below and above it the table is flat (one native fill each),
  // so a window change costs its width in entries, not 65,536.
  let from = 0, to = size;
  if (s > 0 && Number.isFinite(s) && Number.isFinite(b)) {
    const x = (i) => (i - offset) * s + b;
    from = Math.min(size, Math.max(0, Math.floor((lo - b) / s) + offset + 1));
    while (from > 0 && !(x(from - 1) <= lo)) from--;   // the same test the formula makes
    while (from < size && x(from) <= lo) from++;
    to = Math.min(size, Math.max(from, Math.floor((hi - b) / s) + offset + 1));
    while (to > from && x(to - 1) > hi) to--;
    while (to < size && !(x(to) > hi)) to++;
    if (from > 0) lut.fill(entry(0), 0, from);
    if (to < size) lut.fill(entry(size - 1), to, size);
  }
  for (let i = from; i < to; i++) lut[i] = entry(i);
  return { lut, offset };
}

// Fill an ImageData's pixels (Uint32 view) from a frame through its table.
export function applyLut(frame, { lut, offset, grey }, out32) {
  const d = frame.data, n = frame.rows * frame.columns;
  if (grey) { for (let i = 0; i < n; i++) out32[i] = grey(d[i]); return; }
  if (frame.samples === 3) {
    // Colour: the window acts on each channel alike (8-bit stored values).
    for (let i = 0, j = 0; i < n; i++, j += 3) {
      const r = lut[d[j]] & 0xff, g = lut[d[j + 1]] & 0xff, b = lut[d[j + 2]] & 0xff;
      out32[i] = (OPAQUE | (b << 16) | (g << 8) | r) >>> 0;
    }
    return;
  }
  if (offset === 0) { for (let i = 0; i < n; i++) out32[i] = lut[d[i]]; return; }
  for (let i = 0; i < n; i++) out32[i] = lut[d[i] + offset];
}

// The window an instance asks for, else one that spans its values.
export function defaultWindow(inst, frame) {
  if (inst.windows && inst.windows.length) return { center: inst.windows[0].center, width: inst.windows[0].width };
  if (frame && frame.samples === 3) return { center: 127.5, width: 256 };
  if (!frame) return { center: 40, width: 400 };
  const s = (inst.rescale && inst.rescale.slope) || 1, b = (inst.rescale && inst.rescale.intercept) || 0;
  let lo = Infinity, hi = -Infinity; const d = frame.data;
  for (let i = 0; i < d.length; i += 7) { const v = d[i]; if (v < lo) lo = v; if (v > hi) hi = v; }
  lo = lo * s + b; hi = hi * s + b;
  return { center: (lo + hi) / 2, width: Math.max(hi - lo, 1) };
}
