// ecg.js — a 12-lead ECG on ECG paper: 1 mm / 5 mm grid, 25 or 50 mm/s,
// 5, 10 or 20 mm/mV, a 1 mV calibration pulse at the start of every row,
// layouts 3×4 + lead II rhythm strip, 6×2 and 12×1; calipers reading
// milliseconds and millivolts; the automatic measurements beside it.
// Scale: PX_PER_MM CSS pixels per paper millimetre at zoom 1 (whole pixels
// at every zoom step, so grid lines stay crisp and their spacing exact).
import { el } from './util.js';

export const PX_PER_MM = 4;
export const ZOOMS = [1, 1.5, 2, 2.5, 3];

const LAYOUTS = {
  '3x4': { cols: 4, rowMm: 38, rows: [['I', 'aVR', 'V1', 'V4'], ['II', 'aVL', 'V2', 'V5'], ['III', 'aVF', 'V3', 'V6']], rhythm: 'II' },
  '6x2': { cols: 2, rowMm: 30, rows: [['I', 'V1'], ['II', 'V2'], ['III', 'V3'], ['aVR', 'V4'], ['aVL', 'V5'], ['aVF', 'V6']], rhythm: null },
  '12x1': { cols: 1, rowMm: 24, rows: ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'].map((l) => [l]), rhythm: null },
};
const LEFT_MM = 12, RIGHT_MM = 5, TOP_MM = 5, BOTTOM_MM = 5;
const MINOR = '#f3c4c4', MAJOR = '#e07b7b', PAPER = '#fffafa', TRACE = '#111';

export class EcgViewer {
  constructor({ canvas, measurements, caliperOut }) {
    this.canvas = canvas; this.measEl = measurements; this.caliperOut = caliperOut;
    this.ctx = canvas.getContext('2d');
    this.opts = { layout: '3x4', speed: 25, gain: 10, zoom: 1 };
    this.ecg = null; this.caliper = null; this.drag = null;
    canvas.addEventListener('pointerdown', (e) => this.down(e));
    canvas.addEventListener('pointermove', (e) => this.move(e));
    canvas.addEventListener('pointerup', () => { this.drag = null; });
  }

  load(ecg) {
    this.ecg = ecg; this.caliper = null;
    this.byName = new Map(ecg.leads.map((l) => [l.name, l]));
    this.showMeasurements(ecg.measurements);
    this.draw();
  }

  set(opts) { Object.assign(this.opts, opts); this.caliper = null; this.draw(); }

  get pxPerMm() { return PX_PER_MM * this.opts.zoom; }

  seconds() { return this.ecg ? this.ecg.samples / this.ecg.sampling_rate : 10; }

  // Geometry in CSS pixels: the cells of the layout with their time window.
  geometry() {
    const L = LAYOUTS[this.opts.layout], mm = this.pxPerMm, secs = Math.min(this.seconds(), 10);
    const colSec = secs / L.cols, colMm = colSec * this.opts.speed;
    const rowCount = L.rows.length + (L.rhythm ? 1 : 0);
    const cells = [];
    L.rows.forEach((row, r) => row.forEach((lead, c) => cells.push({
      lead, x: (LEFT_MM + c * colMm) * mm, w: colMm * mm, base: (TOP_MM + (r + 0.5) * L.rowMm) * mm, t0: c * colSec, t1: (c + 1) * colSec, row: r })));
    if (L.rhythm) cells.push({ lead: L.rhythm, rhythm: true, x: LEFT_MM * mm, w: secs * this.opts.speed * mm,
      base: (TOP_MM + (L.rows.length + 0.5) * L.rowMm) * mm, t0: 0, t1: secs, row: L.rows.length });
    return { cells, rowMm: L.rowMm, width: Math.ceil((LEFT_MM + secs * this.opts.speed + RIGHT_MM) * mm),
      height: Math.ceil((TOP_MM + rowCount * L.rowMm + BOTTOM_MM) * mm) };
  }

  draw() {
    if (!this.ecg) return;
    const t0 = performance.now();
    const g = this.geometry(), dpr = window.devicePixelRatio || 1, ctx = this.ctx;
    const W = Math.round(g.width * dpr), H = Math.round(g.height * dpr);
    if (this.canvas.width !== W || this.canvas.height !== H) { this.canvas.width = W; this.canvas.height = H; }
    this.canvas.style.width = `${g.width}px`; this.canvas.style.height = `${g.height}px`;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.drawGrid(W, H, this.pxPerMm * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.strokeStyle = TRACE; ctx.fillStyle = TRACE; ctx.lineWidth = 1.2; ctx.lineJoin = 'round';
    ctx.font = `${Math.round(3.2 * this.pxPerMm)}px sans-serif`;
    const rowsDone = new Set();
    for (const c of g.cells) {
      if (!rowsDone.has(c.row)) { rowsDone.add(c.row); this.drawCalibration(c.base); }
      this.drawLead(c);
      ctx.fillText(c.lead, c.x + 1.5 * this.pxPerMm, c.base - (g.rowMm * 0.5 - 4) * this.pxPerMm);
      if (c.x > LEFT_MM * this.pxPerMm + 1) {     // lead change marker between columns
        ctx.fillRect(c.x, c.base - 3 * this.pxPerMm, 1, 6 * this.pxPerMm);
      }
    }
    this.drawCaliper();
    const ms = performance.now() - t0;
    const ds = this.canvas.dataset;
    ds.ms = ms.toFixed(2); ds.pxPerMm = this.pxPerMm; ds.layout = this.opts.layout;
    ds.speed = this.opts.speed; ds.gain = this.opts.gain; ds.draws = Number(ds.draws || 0) + 1;
  }

  // Minor lines every mm, major every 5 mm, each one device pixel wide at a
  // whole-pixel position.
  drawGrid(W, H, step) {
    const ctx = this.ctx;
    ctx.fillStyle = PAPER; ctx.fillRect(0, 0, W, H);
    for (const [color, every] of [[MINOR, 1], [MAJOR, 5]]) {
      ctx.fillStyle = color;
      for (let i = 0; i * step < W; i += every) ctx.fillRect(Math.round(i * step), 0, 1, H);
      for (let i = 0; i * step < H; i += every) ctx.fillRect(0, Math.round(i * step), W, 1);
    }
  }

  // 1 mV for 200 ms: a rectangle the reader checks the gain against.
  drawCalibration(base) {
    const ctx = this.ctx, mm = this.pxPerMm, h = this.opts.gain * mm, w = 0.2 * this.opts.speed * mm, x = 3 * mm;
    ctx.beginPath();
    ctx.moveTo(x - 2 * mm, base); ctx.lineTo(x, base); ctx.lineTo(x, base - h); ctx.lineTo(x + w, base - h);
    ctx.lineTo(x + w, base); ctx.lineTo(x + w + 2 * mm, base);
    ctx.stroke();
  }

  // The lead's samples in [t0, t1), reduced to at most two points per pixel
  // column (first extreme, then the other) so a 10-s strip draws in a blink.
  drawLead(c) {
    const lead = this.byName.get(c.lead); if (!lead) return;
    const ctx = this.ctx, fs = this.ecg.sampling_rate, uv = lead.uv;
    const pxPerSec = this.opts.speed * this.pxPerMm, pxPerUv = this.opts.gain * this.pxPerMm / 1000;
    const i0 = Math.max(0, Math.round(c.t0 * fs)), i1 = Math.min(uv.length, Math.round(c.t1 * fs));
    if (i1 <= i0) return;
    ctx.beginPath();
    let col = -1, lo = 0, hi = 0, loI = 0, hiI = 0, first = true;
    const flush = () => {
      const x = c.x + col + 0.5;
      const [a, b] = loI < hiI ? [lo, hi] : [hi, lo];
      if (first) { ctx.moveTo(x, c.base - a * pxPerUv); first = false; } else ctx.lineTo(x, c.base - a * pxPerUv);
      if (a !== b) ctx.lineTo(x, c.base - b * pxPerUv);
    };
    for (let i = i0; i < i1; i++) {
      const px = Math.floor((i - i0) / fs * pxPerSec), v = uv[i];
      if (px !== col) {
        if (col >= 0) flush();
        col = px; lo = hi = v; loI = hiI = i;
      } else if (v < lo) { lo = v; loI = i; } else if (v > hi) { hi = v; hiI = i; }
    }
    flush();
    ctx.stroke();
  }

  // ---------------------------------------------------------------- calipers

  pos(e) { const r = this.canvas.getBoundingClientRect(); return { x: e.clientX - r.left, y: e.clientY - r.top }; }

  down(e) {
    if (!this.ecg || e.button !== 0) return;
    const p = this.pos(e);
    this.caliper = { a: p, b: { ...p } }; this.drag = true;
    try { this.canvas.setPointerCapture(e.pointerId); } catch (_) { /* a pointer that is gone already */ }
    this.draw();
  }

  move(e) {
    if (!this.drag) return;
    this.caliper.b = this.pos(e);
    this.draw();
  }

  // Δt and ΔV between the caliper's two points, from the paper's scale.
  reading() {
    if (!this.caliper) return null;
    const { a, b } = this.caliper, mm = this.pxPerMm;
    const ms = Math.abs(b.x - a.x) / mm / this.opts.speed * 1000;
    const mv = (a.y - b.y) / mm / this.opts.gain;
    return { ms, mv, bpm: ms > 0 ? 60000 / ms : 0 };
  }

  drawCaliper() {
    const r = this.reading(), out = this.caliperOut;
    if (!r) { out.textContent = 'Drag on the tracing to measure.'; return; }
    const ctx = this.ctx, { a, b } = this.caliper, H = this.canvas.height / (window.devicePixelRatio || 1);
    ctx.save();
    ctx.strokeStyle = '#0060df'; ctx.fillStyle = '#0060df'; ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(a.x, 0); ctx.lineTo(a.x, H); ctx.moveTo(b.x, 0); ctx.lineTo(b.x, H);
    ctx.moveTo(a.x, a.y); ctx.lineTo(b.x, a.y); ctx.moveTo(b.x, a.y); ctx.lineTo(b.x, b.y);
    ctx.stroke();
    const text = `${Math.round(r.ms)} ms · ${r.mv.toFixed(2)} mV`;
    ctx.font = '13px sans-serif';
    ctx.fillText(text, Math.min(a.x, b.x) + 4, Math.min(a.y, b.y) - 6);
    ctx.restore();
    out.replaceChildren(el('span.ms', { text: `${Math.round(r.ms)} ms` }), ' · ',
      el('span.bpm', { text: `${r.bpm ? Math.round(r.bpm) : '–'} /min` }), ' · ', el('span.mv', { text: `${r.mv.toFixed(2)} mV` }));
    out.dataset.ms = r.ms.toFixed(1); out.dataset.mv = r.mv.toFixed(3);
  }

  // ---------------------------------------------------------------- measurements

  showMeasurements(m) {
    const box = this.measEl;
    if (!m) { box.replaceChildren(el('p.muted', { text: 'No automatic measurements for this ECG.' })); return; }
    const rows = [
      ['Heart rate', m.hr_bpm, '/min'], ['RR', m.rr_mean_ms, 'ms'], ['PR', m.pr_ms, 'ms'], ['QRS', m.qrs_ms, 'ms'],
      ['QT', m.qt_ms, 'ms'], ['QTc (Bazett)', m.qtc_bazett_ms, 'ms'], ['QTc (Fridericia)', m.qtc_fridericia_ms, 'ms'],
      ['Axis', m.axis_deg, '°'], ['Longest pause', m.longest_pause_ms, 'ms'],
    ].filter(([, v]) => typeof v === 'number');
    const table = el('div.meas', null, rows.map(([k, v, u]) =>
      el('span.m', { dataset: { key: k } }, el('span.k', { text: k }), ' ', el('b.v', { text: `${Math.round(v * 10) / 10} ${u}` }))));
    const notes = [];
    if (m.p_wave === false) notes.push('No P waves detected');
    const st = (m.leads || []).filter((l) => Math.abs(l.st_uv || 0) >= 100).map((l) => `${l.name} ${(l.st_uv / 1000).toFixed(2)} mV`);
    if (st.length) notes.push(`ST deviation: ${st.join(', ')}`);
    const bad = (m.leads || []).filter((l) => l.quality && l.quality !== 'ok').map((l) => `${l.name} (${l.quality})`);
    if (bad.length) notes.push(`Lead quality: ${bad.join(', ')}`);
    // the triage's own sentence ("AUTO-TRIAGE (suggestion, not a diagnosis): ..."), never its raw object
    const triage = typeof m.triage === 'string' ? m.triage : m.triage && m.triage.text;
    if (triage) notes.push(triage);
    box.replaceChildren(table, ...notes.map((n) => el('p.note', { text: n })));
  }
}
