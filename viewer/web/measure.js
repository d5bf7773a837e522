// measure.js — geometry of measurements in image pixel coordinates
// (x along columns, y along rows), converted to mm with Pixel Spacing
// (PS3.3 C.7.6.2.1.1: [row spacing, column spacing] = [dy, dx] in mm).

export function lengthMm(a, b, spacing) {
  const dx = b.x - a.x, dy = b.y - a.y;
  if (!spacing) return { value: Math.hypot(dx, dy), unit: 'px' };
  return { value: Math.hypot(dx * spacing[1], dy * spacing[0]), unit: 'mm' };
}

// Angle at vertex b between rays b→a and b→c, in degrees (0..180), in
// physical space so anisotropic pixels do not bend it.
export function angleDeg(a, b, c, spacing) {
  const sy = spacing ? spacing[0] : 1, sx = spacing ? spacing[1] : 1;
  const ux = (a.x - b.x) * sx, uy = (a.y - b.y) * sy, vx = (c.x - b.x) * sx, vy = (c.y - b.y) * sy;
  const d = Math.hypot(ux, uy) * Math.hypot(vx, vy);
  if (d === 0) return 0;
  return Math.acos(Math.max(-1, Math.min(1, (ux * vx + uy * vy) / d))) * 180 / Math.PI;
}

export function formatLength(m) {
  return m.unit === 'mm' ? `${m.value.toFixed(1)} mm` : `${m.value.toFixed(1)} px`;
}

// The modality value of a stored value (PS3.3 C.11.1: slope × stored +
// intercept) and its unit: CT's are Hounsfield units, others unnamed.
export function modalityUnit(modality) { return modality === 'CT' ? 'HU' : ''; }

export function modalityValue(frame, x, y, rescale) {
  const c = Math.floor(x), r = Math.floor(y);
  if (!frame || frame.samples !== 1 || c < 0 || r < 0 || c >= frame.columns || r >= frame.rows) return null;
  const s = (rescale && rescale.slope) || 1, b = (rescale && rescale.intercept) || 0;
  return frame.data[r * frame.columns + c] * s + b;
}

// Statistics of the modality values inside the ellipse inscribed in the box
// from a to b (image coordinates): a pixel counts when its centre is inside.
// SD is the sample standard deviation (n − 1).  Area is the ellipse's, in
// mm² with Pixel Spacing, else in px².  null for colour or an empty ellipse.
export function ellipseStats(frame, a, b, rescale, spacing) {
  if (!frame || frame.samples !== 1) return null;
  const x0 = Math.min(a.x, b.x), x1 = Math.max(a.x, b.x), y0 = Math.min(a.y, b.y), y1 = Math.max(a.y, b.y);
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, rx = (x1 - x0) / 2, ry = (y1 - y0) / 2;
  if (rx <= 0 || ry <= 0) return null;
  const s = (rescale && rescale.slope) || 1, k = (rescale && rescale.intercept) || 0, d = frame.data, cols = frame.columns;
  let n = 0, sum = 0, sum2 = 0, min = Infinity, max = -Infinity;
  const rFrom = Math.max(0, Math.floor(y0)), rTo = Math.min(frame.rows - 1, Math.ceil(y1));
  const cFrom = Math.max(0, Math.floor(x0)), cTo = Math.min(cols - 1, Math.ceil(x1));
  for (let r = rFrom; r <= rTo; r++) {
    const dy = (r + 0.5 - cy) / ry, dy2 = dy * dy;
    if (dy2 > 1) continue;
    for (let c = cFrom; c <= cTo; c++) {
      const dx = (c + 0.5 - cx) / rx;
      if (dx * dx + dy2 > 1) continue;
      const v = d[r * cols + c] * s + k;
      n++; sum += v; sum2 += v * v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  if (!n) return null;
  const mean = sum / n, sd = n > 1 ? Math.sqrt(Math.max(0, (sum2 - n * mean * mean) / (n - 1))) : 0;
  const area = Math.PI * rx * ry * (spacing ? spacing[0] * spacing[1] : 1);
  return { n, mean, sd, min, max, area, areaUnit: spacing ? 'mm²' : 'px²', box: [x0, y0, x1, y1] };
}

export function formatStats(st, unit) {
  if (!st) return 'no pixels';
  const u = unit ? ` ${unit}` : '';
  return `mean ${st.mean.toFixed(1)}${u} SD ${st.sd.toFixed(1)} · ${st.area.toFixed(1)} ${st.areaUnit}`;
}
