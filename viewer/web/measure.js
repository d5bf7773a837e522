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
