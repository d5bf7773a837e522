// stack.js — the image viewport: series thumbnails, stack scroll, window /
// level, zoom, pan, invert, cine, length and angle measurements, elliptical
// ROIs (mean, SD, area in the modality's units: HU for CT), the value
// under the pointer, corner overlays.  Pixels come at full bit depth (frames.js); each draw is one
// table lookup per pixel (voi.js) into an ImageData at the image's own size,
// then one scaled drawImage onto the viewport.
import { FrameCache } from './frames.js';
import { PRESETS, buildLut, applyLut, defaultWindow } from './voi.js';
import { lengthMm, angleDeg, formatLength, ellipseStats, formatStats, modalityUnit, modalityValue } from './measure.js';
import { el, personName, dicomDate, status } from './util.js';

const PREFETCH_AHEAD = 12, PREFETCH_BEHIND = 4;

function sliceLocation(it) {
  if (!it) return null;
  const { slice_location: loc, image_position: pos } = it.inst;
  if (typeof loc === 'number') return loc;
  return Array.isArray(pos) && typeof pos[2] === 'number' ? pos[2] : null;
}

export class StackViewer {
  // cacheBytes: the page's frame cache for this viewer (FrameCache's default
  // when not given); wherePrefix: what a measurement's report line names
  // before its series and image (a prior's viewer says which prior).
  constructor({ viewport, canvas, strip, overlays, marksList, cacheBytes, wherePrefix = '' }) {
    this.viewport = viewport; this.canvas = canvas; this.strip = strip;
    this.overlays = overlays; this.marksList = marksList; this.wherePrefix = wherePrefix;
    this.ctx = canvas.getContext('2d');
    this.cache = new FrameCache(cacheBytes);
    this.tool = 'wl';
    this.study = null; this.series = []; this.items = []; this.index = 0;
    this.view = { zoom: 1, fit: true, panX: 0, panY: 0, invert: false };
    this.win = null;                 // {center, width} for the series shown
    this.marks = new Map();          // frame key -> [{kind, pts, spacing}]
    this.prefetchLater = () => { if (this.items.length) this.prefetch(); };
    this.pending = null;             // measurement being drawn
    this.rendered = { key: null, lutKey: null, canvas: document.createElement('canvas'), image: null };
    this.lut = null; this.lutKey = null;
    this.draws = 0; this.scheduled = false; this.cine = null;
    this.firstImagePending = false;
    this.deferred = [];              // what waits for a study's first image (see later())
    this.bindInput();
    new ResizeObserver(() => this.resize()).observe(viewport);
    this.prime();
  }

  // The pixel path run once on blank 512×512 frames (signed and unsigned)
  // when the page starts: the first study opened then finds it compiled
  // and the canvas's drawing context set up, instead of paying for both
  // (over 100 ms on a busy machine) between the click and its first image.
  prime() {
    const n = 512, r = this.rendered;
    r.image = new ImageData(n, n); r.canvas.width = n; r.canvas.height = n;
    r.pixels = new Uint32Array(r.image.data.buffer);
    for (const data of [new Int16Array(n * n), new Uint16Array(n * n)]) {
      const f = { rows: n, columns: n, samples: 1, bits: 16, signed: data instanceof Int16Array, data };
      for (let k = 0; k < 3; k++) applyLut(f, buildLut(f, { slope: 1, intercept: -1024, center: 40 + k, width: 400, invert: k === 2 }), r.pixels);
    }
    r.canvas.getContext('2d').putImageData(r.image, 0, 0);
    this.ctx.drawImage(r.canvas, 0, 0, 1, 1);
    this.ctx.fillStyle = '#000'; this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
  }

  // ---------------------------------------------------------------- loading

  load(study) {
    this.stopCine();
    this.study = study;
    this.series = (study.series || []).filter((s) => s.instances.some((i) => !i.waveform));
    this.marks.clear();        // frames stay cached: reopening a study is instant
    this.firstImagePending = true;
    this.deferred = [];
    this.buildStrip();
    if (this.series.length) this.openSeries(0);
    else { this.clear('No images in this study'); this.firstImagePending = false; this.runDeferred(); }
  }

  // Nothing shown: the study, its series and marks let go (its frames stay
  // in the page's cache).
  unload() {
    this.stopCine();
    this.study = null; this.series = []; this.marks.clear(); this.deferred = []; this.firstImagePending = false;
    this.pending = null;
    this.strip.replaceChildren();
    this.clear('');
    this.refreshMarksList();
  }

  clear(msg) {
    this.items = []; this.study = this.study || null;
    const { ctx, canvas } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0); ctx.fillStyle = '#000'; ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (const o of Object.values(this.overlays)) o.textContent = '';
    this.overlays.tl.textContent = msg || '';
  }

  openSeries(i) {
    this.stopCine();
    this.seriesIndex = i;
    const s = this.series[i];
    // One item per frame: a multi-frame instance scrolls through its frames.
    this.items = [];
    for (const inst of s.instances) {
      if (inst.waveform) continue;
      for (let n = 1; n <= Math.max(1, inst.frames || 1); n++) this.items.push({ inst, n, key: FrameCache.key(inst.sop, n) });
    }
    this.win = null; this.lut = null; this.lutKey = null; // a table is rebuilt for each series, even one windowed alike
    this.view = { zoom: 1, fit: true, panX: 0, panY: 0, invert: false };
    for (const b of this.strip.children) b.classList.toggle('active', Number(b.dataset.index) === i);
    this.index = 0;
    this.setSlice(0);
  }

  buildStrip() {
    this.strip.replaceChildren();
    this.series.forEach((s, i) => {
      const thumb = el('canvas.thumb', { width: 96, height: 96 });
      const btn = el('button.series', { dataset: { index: i }, title: s.description || '', onclick: () => this.openSeries(i) },
        thumb, el('span', { text: `${s.number ?? ''} ${s.modality || ''} · ${this.countFrames(s)}` }),
        el('span.desc', { text: s.description || '' }));
      this.strip.append(btn);
      const mid = s.instances.filter((x) => !x.waveform)[Math.floor(s.instances.length / 2)] || s.instances[0];
      this.later(() => this.cache.get(mid.sop, 1).then((f) => this.drawThumb(thumb, mid, f)).catch(() => {}));
    });
  }

  // Thumbnails and prefetching wait until the study's first image is drawn:
  // on a busy machine their transfers and drawing would delay it.
  later(fn) {
    if (this.firstImagePending) this.deferred.push(fn); else fn();
  }

  runDeferred() {
    const d = this.deferred; this.deferred = [];
    if (d.length) setTimeout(() => d.forEach((fn) => fn()), 0);
  }

  countFrames(s) { return s.instances.reduce((n, i) => n + (i.waveform ? 0 : Math.max(1, i.frames || 1)), 0); }

  drawThumb(canvas, inst, f) {
    const w = defaultWindow(inst, f);
    const lut = buildLut(f, { slope: inst.rescale?.slope, intercept: inst.rescale?.intercept, ...w,
      invert: inst.photometric === 'MONOCHROME1' });
    const img = new ImageData(f.columns, f.rows);
    applyLut(f, lut, new Uint32Array(img.data.buffer));
    const tmp = document.createElement('canvas'); tmp.width = f.columns; tmp.height = f.rows;
    tmp.getContext('2d').putImageData(img, 0, 0);
    const c = canvas.getContext('2d'), s = Math.min(canvas.width / f.columns, canvas.height / f.rows);
    c.fillStyle = '#000'; c.fillRect(0, 0, canvas.width, canvas.height);
    c.drawImage(tmp, (canvas.width - f.columns * s) / 2, (canvas.height - f.rows * s) / 2, f.columns * s, f.rows * s);
  }

  // ---------------------------------------------------------------- state

  get current() { return this.items[this.index]; }

  setSlice(i) {
    if (!this.items.length) return;
    this.index = Math.max(0, Math.min(this.items.length - 1, i));
    const it = this.current;
    if (!this.cache.peek(it.inst.sop, it.n)) {
      this.cache.get(it.inst.sop, it.n).then(() => this.invalidate(), (e) => {
        status(`Image ${this.index + 1}: ${e.message}`, true);
        if (this.firstImagePending) { this.firstImagePending = false; this.runDeferred(); }
      });
    }
    if (!this.firstImagePending) this.prefetch();
    else if (!this.deferred.includes(this.prefetchLater)) this.deferred.push(this.prefetchLater);
    this.refreshMarksList();
    this.invalidate();
    if (this.onSlice) this.onSlice(this);
  }

  scroll(d) { this.setSlice(this.index + d); }

  // Where the shown slice lies (mm): Slice Location, else the z of Image
  // Position (axial stacks); null when the image says neither.
  location() { return sliceLocation(this.current); }

  // Shows the slice of this series nearest to loc (mm), if any says where it lies.
  goToLocation(loc) {
    let best = -1, bestD = Infinity;
    this.items.forEach((it, j) => {
      const v = sliceLocation(it);
      if (v !== null && Math.abs(v - loc) < bestD) { bestD = Math.abs(v - loc); best = j; }
    });
    if (best >= 0 && best !== this.index) this.setSlice(best);
  }

  // Neighbours first (more ahead than behind), then the rest of the series
  // outwards, as much of it as half the page's frame cache holds.
  prefetch() {
    const list = [], seen = new Set([this.index]);
    const add = (j) => { const it = this.items[j]; if (it && !seen.has(j)) { seen.add(j); list.push([it.inst.sop, it.n]); } };
    for (let d = 1; d <= PREFETCH_AHEAD; d++) { add(this.index + d); if (d <= PREFETCH_BEHIND) add(this.index - d); }
    const inst = this.current.inst, bytes = Math.max(1, inst.rows * inst.columns * (inst.samples || 1) * Math.ceil((inst.bits_allocated || 16) / 8));
    const room = Math.floor(this.cache.limit / 2 / bytes);
    for (let d = 1; list.length < room && (this.index + d < this.items.length || this.index - d >= 0); d++) { add(this.index + d); add(this.index - d); }
    this.cache.prefetch(list);
  }

  // Fetch the first image a study opens on, so that opening it draws at once.
  warm(study) {
    const s = (study.series || []).find((x) => x.instances.some((i) => !i.waveform));
    const inst = s && s.instances.find((i) => !i.waveform);
    if (inst) this.warmImage(inst.sop);
  }

  // The same when the daemon named that image in the task list
  // (first_image): fetched while the study listing is on its way.
  warmImage(sop) {
    if (sop && !this.cache.has(sop, 1)) this.cache.get(sop, 1).catch(() => {});
  }

  setWindow(center, width) {
    this.win = { center, width: Math.max(1, width) };
    this.invalidate();
  }

  preset(name) {
    const p = PRESETS.find((x) => x.name === name);
    if (p) this.setWindow(p.center, p.width);
  }

  setTool(t) { this.tool = t; this.pending = null; this.viewport.dataset.tool = t; this.invalidate(); }
  invert() { this.view.invert = !this.view.invert; this.invalidate(); }
  actualSize() { this.view = { ...this.view, zoom: 1, fit: false, panX: 0, panY: 0 }; this.invalidate(); }
  fit() { this.view = { ...this.view, fit: true, panX: 0, panY: 0 }; this.invalidate(); }
  reset() {
    this.view = { zoom: 1, fit: true, panX: 0, panY: 0, invert: false };
    this.win = null; this.invalidate();
  }
  clearMarks() { if (this.current) this.marks.delete(this.current.key); this.pending = null; this.invalidate(); }

  toggleCine(fps = 15) {
    if (this.cine) { this.stopCine(); return; }
    let last = performance.now();
    const step = (t) => {
      if (!this.cine) return;
      if (t - last >= 1000 / fps) { last = t; this.setSlice((this.index + 1) % this.items.length); }
      this.cine = requestAnimationFrame(step);
    };
    this.cine = requestAnimationFrame(step);
    document.getElementById('cine')?.classList.add('active');
  }

  stopCine() {
    if (this.cine) cancelAnimationFrame(this.cine);
    this.cine = null;
    document.getElementById('cine')?.classList.remove('active');
  }

  // ---------------------------------------------------------------- geometry

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(this.viewport.clientWidth * dpr)), h = Math.max(1, Math.round(this.viewport.clientHeight * dpr));
    if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
    this.invalidate();
  }

  // Scale (canvas px per image column) and the image's top-left on the canvas.
  transform() {
    const it = this.current; if (!it) return null;
    const { rows, columns } = it.inst;
    const sp = it.inst.pixel_spacing;
    const aspect = sp && sp[0] > 0 && sp[1] > 0 ? sp[0] / sp[1] : 1;   // rows taller than columns are wide
    const dpr = window.devicePixelRatio || 1, cw = this.canvas.width, ch = this.canvas.height;
    const zoom = this.view.fit ? Math.min(cw / columns, ch / (rows * aspect)) / dpr * this.view.zoom : this.view.zoom;
    const sx = zoom * dpr, sy = zoom * dpr * aspect;
    let x0 = cw / 2 + this.view.panX * dpr - columns * sx / 2, y0 = ch / 2 + this.view.panY * dpr - rows * sy / 2;
    if (Number.isInteger(sx) && Number.isInteger(sy)) { x0 = Math.round(x0); y0 = Math.round(y0); }  // whole pixels stay whole
    return { zoom, sx, sy, x0, y0, dpr };
  }

  // A pointer event's position in image pixel coordinates.
  toImage(ev) {
    const t = this.transform(), r = this.canvas.getBoundingClientRect();
    const cx = (ev.clientX - r.left) * t.dpr, cy = (ev.clientY - r.top) * t.dpr;
    return { x: (cx - t.x0) / t.sx, y: (cy - t.y0) / t.sy };
  }

  // ---------------------------------------------------------------- drawing

  invalidate() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => { this.scheduled = false; this.draw(); });
  }

  draw() {
    const it = this.current; if (!it) return;
    const t0 = performance.now();
    const f = this.cache.peek(it.inst.sop, it.n);
    const { ctx, canvas } = this;
    if (!f) { this.drawOverlays(null); return; }     // redrawn when it arrives
    if (!this.win) this.win = defaultWindow(it.inst, f);
    const resc = it.inst.rescale || {};
    const inv = (it.inst.photometric === 'MONOCHROME1') !== this.view.invert;
    const lutKey = `${f.bits}|${f.signed}|${resc.slope}|${resc.intercept}|${this.win.center}|${this.win.width}|${inv}`;
    if (lutKey !== this.lutKey) {
      this.lut = buildLut(f, { slope: resc.slope, intercept: resc.intercept, center: this.win.center, width: this.win.width, invert: inv });
      this.lutKey = lutKey;
    }
    const r = this.rendered;
    if (r.key !== it.key || r.lutKey !== lutKey) {
      if (!r.image || r.image.width !== f.columns || r.image.height !== f.rows) {
        r.image = new ImageData(f.columns, f.rows); r.canvas.width = f.columns; r.canvas.height = f.rows;
        r.pixels = new Uint32Array(r.image.data.buffer);
      }
      applyLut(f, this.lut, r.pixels);
      r.canvas.getContext('2d').putImageData(r.image, 0, 0);
      r.key = it.key; r.lutKey = lutKey;
    }
    const tr = this.transform();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#000'; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = !(Number.isInteger(tr.sx) && Number.isInteger(tr.sy));
    ctx.drawImage(r.canvas, tr.x0, tr.y0, f.columns * tr.sx, f.rows * tr.sy);
    this.drawMarks(tr);
    this.drawOverlays(tr);
    this.draws++;
    canvas.dataset.draws = this.draws;
    canvas.dataset.slice = this.index + 1;
    canvas.dataset.window = `${Math.round(this.win.center)}/${Math.round(this.win.width)}`;
    canvas.dataset.zoom = tr.zoom.toFixed(4);
    canvas.dataset.x0 = tr.x0; canvas.dataset.y0 = tr.y0;
    canvas.dataset.ms = (performance.now() - t0).toFixed(2);
    if (this.firstImagePending) { this.firstImagePending = false; performance.mark('dxhub:first-image'); this.runDeferred(); }
  }

  drawMarks(tr) {
    const ctx = this.ctx, list = (this.marks.get(this.current.key) || []).slice();
    if (this.pending) list.push(this.pending);
    const P = (p) => [tr.x0 + p.x * tr.sx, tr.y0 + p.y * tr.sy];
    ctx.save();
    ctx.lineWidth = 1.5 * tr.dpr; ctx.strokeStyle = '#ffd400'; ctx.fillStyle = '#ffd400';
    ctx.font = `${13 * tr.dpr}px sans-serif`;
    for (const m of list) {
      ctx.beginPath();
      if (m.kind === 'roi') {
        const [ax, ay] = P(m.pts[0]), [bx, by] = P(m.pts[1]);
        ctx.ellipse((ax + bx) / 2, (ay + by) / 2, Math.abs(bx - ax) / 2, Math.abs(by - ay) / 2, 0, 0, 2 * Math.PI);
      } else {
        m.pts.forEach((p, i) => { const [x, y] = P(p); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
      }
      ctx.stroke();
      for (const p of m.pts) { const [x, y] = P(p); ctx.fillRect(x - 2 * tr.dpr, y - 2 * tr.dpr, 4 * tr.dpr, 4 * tr.dpr); }
      const label = this.markLabel(m);
      if (label) { const [x, y] = P(m.pts[m.pts.length - 1]); ctx.fillText(label, x + 6 * tr.dpr, y - 6 * tr.dpr); }
    }
    ctx.restore();
  }

  markLabel(m) {
    if (m.kind === 'length' && m.pts.length === 2) return formatLength(lengthMm(m.pts[0], m.pts[1], m.spacing));
    if (m.kind === 'angle' && m.pts.length === 3) return `${angleDeg(m.pts[0], m.pts[1], m.pts[2], m.spacing).toFixed(1)}°`;
    if (m.kind === 'roi' && 'stats' in m) return formatStats(m.stats, m.unit);
    return '';
  }

  refreshMarksList() {
    const list = this.current ? this.marks.get(this.current.key) || [] : [];
    const names = { length: 'Length', angle: 'Angle', roi: 'ROI' };
    this.marksList.replaceChildren(...list.map((m, i) => {
      let text = `${names[m.kind]} ${i + 1}: ${this.markLabel(m)}`;
      const dataset = { kind: m.kind };
      if (m.kind === 'roi' && m.stats) {
        const u = m.unit ? ` ${m.unit}` : '';
        text += ` (min ${m.stats.min.toFixed(0)}, max ${m.stats.max.toFixed(0)}${u}; ${m.stats.n} px)`;
        Object.assign(dataset, { box: m.stats.box.join(','), mean: m.stats.mean, sd: m.stats.sd, n: m.stats.n,
          min: m.stats.min, max: m.stats.max });
      }
      return el('li.mark', { dataset, text });
    }));
  }

  // Every measurement of the study, one line each, as a report quotes it:
  // "ROI 1 (Se 2, Im 50): mean 35.2 HU SD 12.1 · 154.3 mm²".
  measurementLines() {
    const names = { length: 'Length', angle: 'Angle', roi: 'ROI' }, lines = [];
    for (const list of this.marks.values())
      list.forEach((m, i) => lines.push(`${names[m.kind]} ${i + 1} (${m.where}): ${this.markLabel(m)}`));
    return lines;
  }

  drawOverlays(tr) {
    const st = this.study, it = this.current, o = this.overlays;
    if (!st || !it) return;
    const p = st.patient || {}, s = this.series[this.seriesIndex] || {}, sd = st.study || {};
    o.tl.replaceChildren(el('div.pname', { text: personName(p.name) }), el('div', { text: `ID ${p.id || ''}` }),
      el('div', { text: [p.sex, p.age, dicomDate(p.birth_date)].filter(Boolean).join(' · ') }));
    o.tr.replaceChildren(el('div', { text: sd.description || '' }), el('div', { text: `${dicomDate(sd.date)} ${fmtTime(sd.time)}` }),
      el('div', { text: sd.accession ? `Acc ${sd.accession}` : '' }));
    const loc = it.inst.slice_location;
    o.bl.replaceChildren(el('div', { text: `Se ${s.number ?? ''} ${s.description || ''}` }),
      el('div.slice', { text: `Im ${this.index + 1}/${this.items.length}` + (it.inst.frames > 1 ? ` (frame ${it.n})` : '') }),
      el('div', { text: loc !== null && loc !== undefined ? `Loc ${Number(loc).toFixed(1)} mm` : '' }));
    const w = this.win;
    o.br.replaceChildren(el('div.wl', { text: w ? `W ${Math.round(w.width)} L ${Math.round(w.center)}` : '' }),
      el('div.zoom', { text: tr ? `Zoom ${tr.zoom.toFixed(2)}×` : 'loading…' }),
      el('div', { text: this.view.invert ? 'Inverted' : '' }), el('div.probe', { text: this.probeText || '' }));
  }

  // ---------------------------------------------------------------- input

  bindInput() {
    const v = this.viewport;
    v.addEventListener('contextmenu', (e) => e.preventDefault());
    v.addEventListener('wheel', (e) => {
      e.preventDefault();
      if (e.ctrlKey) { this.zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1); return; }
      this.scroll(Math.sign(e.deltaY) || 0);
    }, { passive: false });
    v.addEventListener('pointerdown', (e) => this.down(e));
    v.addEventListener('pointermove', (e) => this.move(e));
    v.addEventListener('pointerup', (e) => this.up(e));
    v.addEventListener('keydown', (e) => this.key(e));
  }

  zoomBy(f) {
    const t = this.transform(); if (!t) return;
    this.view = { ...this.view, fit: false, zoom: Math.max(0.05, Math.min(40, t.zoom * f)) };
    this.invalidate();
  }

  down(e) {
    if (!this.current) return;
    this.viewport.focus();
    const mode = e.button === 2 ? 'wl' : e.button === 1 ? 'pan' : this.tool;
    const p = this.toImage(e);
    if (mode === 'length' || mode === 'angle' || mode === 'roi') {
      const spacing = this.current.inst.pixel_spacing || null;
      if (mode === 'angle' && this.pending && this.pending.kind === 'angle' && this.pending.pts.length === 3) {
        this.pending.pts[2] = p; this.commitMark(); return;      // third click ends an angle
      }
      this.pending = { kind: mode, pts: [p, { ...p }], spacing };
    }
    this.drag = { mode, x: e.clientX, y: e.clientY, win: this.win && { ...this.win }, view: { ...this.view }, acc: 0, zoom0: this.transform().zoom };
    try { this.viewport.setPointerCapture(e.pointerId); } catch (_) { /* a pointer that is gone already */ }
    e.preventDefault();
  }

  // The modality value under the pointer (HU on CT), in the bottom-right
  // corner: the one number a reader checks a density by.
  probe(e) {
    const it = this.current, box = this.overlays.br.querySelector('.probe');
    if (!it || !box) return;
    const f = this.cache.peek(it.inst.sop, it.n), p = this.toImage(e);
    const v = modalityValue(f, p.x, p.y, it.inst.rescale);
    const unit = modalityUnit((this.series[this.seriesIndex] || {}).modality);
    this.probeText = v === null ? '' : `(${Math.floor(p.x)}, ${Math.floor(p.y)}) ${Number.isInteger(v) ? v : v.toFixed(1)}${unit ? ` ${unit}` : ''}`;
    box.textContent = this.probeText;
  }

  move(e) {
    if (!this.drag) this.probe(e);
    if (this.pending && this.pending.kind === 'angle' && this.pending.pts.length === 3 && !this.drag) {
      this.pending.pts[2] = this.toImage(e); this.invalidate(); return;
    }
    const d = this.drag; if (!d) return;
    const dx = e.clientX - d.x, dy = e.clientY - d.y;
    switch (d.mode) {
      case 'wl': {
        if (!d.win) return;
        const k = Math.max(1, d.win.width / 256);     // finer steps in narrow windows
        this.setWindow(d.win.center + dy * k, d.win.width + dx * k);
        break;
      }
      case 'pan': this.view = { ...this.view, panX: d.view.panX + dx, panY: d.view.panY + dy }; this.invalidate(); break;
      case 'zoom': this.view = { ...this.view, fit: false, zoom: Math.max(0.05, Math.min(40, d.zoom0 * Math.exp(-dy / 200))) }; this.invalidate(); break;
      case 'scroll': {
        const step = Math.trunc((dy - d.acc) / 6);     // 6 px of drag per slice
        if (step) { d.acc += step * 6; this.scroll(step); }
        break;
      }
      case 'length': case 'angle': case 'roi':
        this.pending.pts[1] = this.toImage(e); this.invalidate(); break;
    }
  }

  up(e) {
    const d = this.drag; this.drag = null;
    if (!d) return;
    if ((d.mode === 'length' || d.mode === 'roi') && this.pending) this.commitMark();
    else if (d.mode === 'angle' && this.pending) this.pending.pts.push({ ...this.pending.pts[1] });   // now place the third point
  }

  commitMark() {
    const m = this.pending; this.pending = null;
    const a = m.pts[0], b = m.pts[m.pts.length - 1];
    if (m.kind === 'length' && Math.hypot(a.x - b.x, a.y - b.y) < 1) { this.invalidate(); return; }   // a click, not a line
    if (m.kind === 'roi') {
      if (Math.abs(a.x - b.x) < 2 || Math.abs(a.y - b.y) < 2) { this.invalidate(); return; }          // a click, not an ellipse
      // Measured once, on the frame it was drawn on: the values do not change.
      const it = this.current, f = this.cache.peek(it.inst.sop, it.n);
      m.stats = ellipseStats(f, a, b, it.inst.rescale, m.spacing);
      m.unit = modalityUnit((this.series[this.seriesIndex] || {}).modality);
    }
    const se = this.series[this.seriesIndex] || {};
    m.where = `${this.wherePrefix}Se ${se.number ?? ''}, Im ${this.index + 1}`;   // for the report (measurementLines)
    const k = this.current.key;
    this.marks.set(k, [...(this.marks.get(k) || []), m]);
    this.refreshMarksList();
    this.invalidate();
  }

  key(e) {
    const steps = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 };
    if (e.key in steps) { this.scroll(steps[e.key]); e.preventDefault(); return; }
    if (e.key === 'Home') { this.setSlice(0); e.preventDefault(); return; }
    if (e.key === 'End') { this.setSlice(this.items.length - 1); e.preventDefault(); return; }
    if (e.key === 'Escape') { this.pending = null; this.invalidate(); return; }
    const p = PRESETS.find((x) => x.key === e.key);
    if (p) { this.preset(p.name); return; }
    if (e.key === 'i') this.invert();
    else if (e.key === 'r') this.reset();
    else if (e.key === ' ') { this.toggleCine(); e.preventDefault(); }
  }
}

function fmtTime(t) {
  return t && /^\d{4}/.test(t) ? `${t.slice(0, 2)}:${t.slice(2, 4)}` : '';
}
