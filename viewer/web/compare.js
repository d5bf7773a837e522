// compare.js — a prior of the patient opened beside the study being read
// (Compare in the priors panel): images in a second stack viewer with its
// own series strip and frame cache, or an earlier ECG beneath the one read
// on the same paper.  The workstation fetches a prior from the hub, which
// sends only the same patient's and audits the read (viewer/API.md,
// GET /api/tasks/{id}/compare/{study}).
import { get } from './api.js';
import { $, el, dicomDate, status } from './util.js';
import { StackViewer } from './stack.js';
import { EcgViewer } from './ecg.js';

export class ComparePanes {
  // stack, ecg: the study's viewers; current(): the task open now.
  constructor({ stack, ecg, current }) {
    this.stack = stack; this.ecg = ecg; this.current = current;
    this.prior = new StackViewer({
      viewport: $('#compare-viewport'), canvas: $('#compare-image'), strip: $('#compare-strip'), marksList: el('ul'),
      overlays: { tl: $('#cv-tl'), tr: $('#cv-tr'), bl: $('#cv-bl'), br: $('#cv-br') }, cacheBytes: 256 << 20,
    });
    this.ecgPrior = new EcgViewer({ canvas: $('#ecg-prior'), measurements: $('#ecg-prior-meas'), caliperOut: $('#ecg-prior-caliper') });
    // Linked scrolling: the prior follows the study at the offset (mm)
    // between the two slices shown when Link was pressed — the reader first
    // brings the same anatomy into both, since two exams' table positions differ.
    this.linkOffset = null;
    stack.onSlice = () => {
      const at = stack.location();
      if (this.linkOffset !== null && this.comparing() && at !== null) this.prior.goToLocation(at + this.linkOffset);
    };
    $('#compare-close').addEventListener('click', () => this.closeImages());
    $('#compare-link').addEventListener('click', () => this.setLink(this.linkOffset === null));
    $('#ecg-compare-close').addEventListener('click', () => this.closeEcg());
    // the prior's paper scrolls with the ECG read: the same seconds beneath each other
    $('#ecg-scroll').addEventListener('scroll', () => { if (this.comparingEcg()) $('#ecg-prior-scroll').scrollLeft = $('#ecg-scroll').scrollLeft; });
  }

  comparing() { return !$('#compare-pane').hidden; }
  comparingEcg() { return !$('#ecg-compare').hidden; }

  // The priors panel's Compare: an ECG beneath the ECG, images beside the images.
  open(task, p) { return p.modality === 'ECG' ? this.openEcg(task, p) : this.openImages(task, p); }

  // A new task: both closed.
  closeAll() { this.closeImages(); this.closeEcg(); }

  // The viewers the toolbar acts on: the study's, and the prior's while it is open.
  viewers() { return this.comparing() ? [this.stack, this.prior] : [this.stack]; }
  ecgViewers() { return this.comparingEcg() ? [this.ecg, this.ecgPrior] : [this.ecg]; }

  // Every measurement of the study, then of the prior, one line each.
  measurementLines() { return this.viewers().flatMap((v) => v.measurementLines()); }

  async openImages(task, p) {
    const pane = $('#compare-pane'), what = title(p);
    this.setLink(false);
    pane.hidden = false;
    pane.dataset.study = p.study;
    pane.dataset.state = 'loading';
    $('#compare-title').textContent = `Prior: ${what} · opening…`;
    const stale = () => this.current() !== task || pane.dataset.study !== p.study;   // closed or another opened meanwhile
    let st;
    this.opening = { task, p, what };
    try { st = await get(compareUrl(task, p)); } catch (e) {
      if (this.opening && this.opening.p === p) this.opening = null;
      if (stale()) return;
      $('#compare-title').textContent = `Prior ${what}: ${e.message}`;
      pane.dataset.state = 'error';
      return;
    }
    if (this.opening && this.opening.p === p) this.opening = null;
    if (stale()) return;
    this.prior.wherePrefix = `prior ${dicomDate(p.date)}, `;
    this.prior.setTool(this.stack.tool);
    this.prior.load(st);
    pane.dataset.state = 'open';
    $('#compare-title').textContent = `Prior: ${what} · ${where(p)}`;
  }

  async openEcg(task, p) {
    const box = $('#ecg-compare'), what = title(p);
    const stale = () => this.current() !== task || box.dataset.study !== p.study;
    box.hidden = false;
    box.dataset.study = p.study;
    box.dataset.state = 'loading';
    $('#ecg-compare-title').textContent = `Prior: ${what} · opening…`;
    try {
      const st = await get(compareUrl(task, p));
      if (stale()) return;
      const wave = (st.series || []).flatMap((s) => s.instances).find((i) => i.waveform);
      if (!wave) throw new Error('that study holds no waveform');
      const data = await get(`/api/instances/${encodeURIComponent(wave.sop)}/ecg`);
      if (stale()) return;
      this.ecgPrior.set({ ...this.ecg.opts });
      this.ecgPrior.load(data);
      box.dataset.state = 'open';
      $('#ecg-compare-title').textContent = `Prior: ${what} · ${where(p)}`;
      $('#ecg-prior-scroll').scrollLeft = $('#ecg-scroll').scrollLeft;
    } catch (e) {
      if (stale()) return;
      $('#ecg-compare-title').textContent = `Prior ${what}: ${e.message}`;
      box.dataset.state = 'error';
    }
  }

  // The task list changed: while a prior's images open, how many of them
  // the workstation has (a peer hub's CT can take a while over its link).
  progress(task) {
    const o = this.opening, a = task.prior, pane = $('#compare-pane');
    if (!o || String(o.task.id) !== String(task.id) || !a || a.study !== o.p.study || pane.dataset.state !== 'loading' ||
        pane.dataset.study !== o.p.study || !(a.instances > 0)) return;
    $('#compare-title').textContent = `Prior: ${o.what} · opening… ${a.cached} of ${a.instances} images here`;
  }

  setLink(on) {
    const a = this.stack.location(), b = this.prior.location();
    if (on && (a === null || b === null)) { status('These images say nothing of where their slices lie: they cannot be linked.', true); on = false; }
    this.linkOffset = on ? b - a : null;
    $('#compare-link').classList.toggle('active', on);
    $('#compare-pane').dataset.linked = on ? '1' : '0';
  }

  closeImages() {
    const pane = $('#compare-pane');
    this.setLink(false);
    if (pane.hidden) return;
    pane.hidden = true;
    delete pane.dataset.study;
    delete pane.dataset.state;
    this.prior.unload();
  }

  closeEcg() {
    const box = $('#ecg-compare');
    box.hidden = true;
    delete box.dataset.study;
    delete box.dataset.state;
  }
}

// A peer hub's exam (p.peer: that hub) is named by its report there.
const compareUrl = (task, p) => `/api/tasks/${encodeURIComponent(task.id)}/compare/${encodeURIComponent(p.study)}` +
  (p.peer ? `?hub=${encodeURIComponent(p.peer)}&report=${encodeURIComponent(p.report_id)}` : '');
const title = (p) => `${p.exam_type || p.modality || ''} ${dicomDate(p.date)}`;
const where = (p) => `${p.facility || p.hub || ''}${p.report_id ? ` · report ${p.report_id}` : ''}`;
