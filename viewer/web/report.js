// report.js — the report: a template per exam type, findings and
// impression, the critical-value flag, drafts autosaved to the daemon, and
// the ways a report leaves: sign (after a confirmation showing exactly what
// is signed and by whom), a resident's draft to review, return for revision,
// addendum.  The daemon signs with the reader's key; the UI never sees it.
import { get, put, post, signed as fetchSigned, ApiError } from './api.js';
import { el, $, clock, status } from './util.js';

const SIGNED_STATES = new Set(['signed', 'reported', 'verified', 'done', 'final']);
const AUTOSAVE_MS = 700;

export class ReportPanel {
  constructor(session, { onSubmitted, onUnlocked }) {
    this.session = session; this.onSubmitted = onSubmitted; this.onUnlocked = onUnlocked || (() => {});
    this.task = null; this.templates = null; this.timer = null; this.lastSaved = '';
    this.f = $('#findings'); this.i = $('#impression'); this.c = $('#critical');
    this.sel = $('#template'); this.saved = $('#draft-saved');
    for (const x of [this.f, this.i]) x.addEventListener('input', () => this.dirty());
    this.c.addEventListener('change', () => { this.dirty(); this.markCritical(); });
    this.sel.addEventListener('change', () => this.applyTemplate(this.sel.value, true));
    $('#sign').addEventListener('click', () => this.sign('sign'));
    $('#to-review').addEventListener('click', () => this.submit('draft'));
    $('#return').addEventListener('click', () => this.returnForRevision());
    $('#sign-addendum').addEventListener('click', () => this.sign('addendum'));
  }

  get resident() { return /resident/i.test(this.session.seniority || ''); }

  async open(task, study) {
    await this.flush();
    this.task = task; this.study = study;
    const box = $('#report');
    box.hidden = false;
    delete box.dataset.task;                 // set again once the draft is in: typing waits for it
    for (const x of [this.f, this.i, this.c, this.sel]) x.disabled = true;
    $('#signed-box').hidden = true;
    clearTimeout(this.alertTimer);
    $('#signed-alert').hidden = true;
    $('#addendum-done').textContent = '';
    delete $('#addendum-done').dataset.reportId;
    $('#report-title').textContent = `${task.modality || ''} ${task.body_part || ''} · ${task.facility || ''}`;
    if (!this.templates) {
      try { this.templates = (await get('/api/templates')).templates || []; } catch (e) { this.templates = []; status(`Templates: ${e.message}`, true); }
    }
    // Templates of this modality, the one naming the body part first.
    const part = String(task.body_part || '').toLowerCase();
    const mine = this.templates.filter((t) => this.fits(t, task))
      .sort((a, b) => Number(!!part && b.exam.toLowerCase().includes(part)) - Number(!!part && a.exam.toLowerCase().includes(part)));
    const others = this.templates.filter((t) => !mine.includes(t));
    this.sel.replaceChildren(el('option', { value: '', text: '— template —' }),
      ...[...mine, ...others].map((t) => el('option', { value: t.id, text: t.exam })));
    let draft = null;
    try { draft = await get(`/api/tasks/${encodeURIComponent(task.id)}/draft`); } catch (e) { if (!(e instanceof ApiError && e.status === 404)) status(`Draft: ${e.message}`, true); }
    // An attending reviewing a resident's draft reads it first; with nothing
    // of their own yet, they start from the resident's text.
    const review = await this.showReview(task);
    if (this.task !== task) return;
    if (review && !(draft && (draft.findings || draft.impression))) {
      draft = { findings: review.findings, impression: review.impression, critical: review.critical, saved: null };
    }
    if (draft && (draft.findings || draft.impression || draft.critical)) {
      this.f.value = draft.findings || ''; this.i.value = draft.impression || ''; this.c.checked = !!draft.critical;
      this.saved.textContent = draft.saved ? `Draft saved ${clock(draft.saved)}` : '';
    } else {
      this.f.value = ''; this.i.value = ''; this.c.checked = false; this.saved.textContent = '';
      if (mine[0]) this.applyTemplate(mine[0].id, false);
    }
    if (this.task !== task) return;          // another task was opened meanwhile
    this.lastSaved = this.snapshot();
    this.markCritical();
    this.showState();
    box.dataset.task = task.id;
  }

  // The draft under review (GET /api/tasks/{id}/review): text and author.
  async showReview(task) {
    const box = $('#review-box');
    box.hidden = true;
    delete box.dataset.reportId;
    if (!task.review || this.resident || SIGNED_STATES.has(String(task.state || ''))) return null;
    let r;
    try { r = await get(`/api/tasks/${encodeURIComponent(task.id)}/review`); } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) status(`Draft for review: ${e.message}`, true);
      return null;
    }
    const by = r.drafted_by || {};
    $('#review-by').textContent = `Drafted by ${by.name || by.id || '?'} (${by.id || ''})${by.role ? `, ${by.role}` : ''}${r.reported ? ` · ${new Date(r.reported).toLocaleString()}` : ''}`;
    $('#review-findings').textContent = r.findings || '';
    $('#review-impression').textContent = r.impression || '';
    box.dataset.reportId = r.report_id || '';
    box.dataset.draftedBy = by.id || '';
    box.hidden = false;
    return r;
  }

  fits(t, task) {
    const mod = (task.modality || '').toUpperCase();
    if (task.kind === 'ecg' || mod === 'ECG') return /ecg/i.test(t.exam) || (t.modality || '').toUpperCase() === 'ECG';
    return (t.modality || '').toUpperCase() === mod;
  }

  applyTemplate(id, ask) {
    const t = (this.templates || []).find((x) => String(x.id) === String(id));
    if (!t) return;
    if (ask && (this.f.value.trim() || this.i.value.trim()) && !confirm(`Replace the text with the "${t.exam}" template?`)) return;
    this.f.value = t.findings || ''; this.i.value = t.impression || '';
    this.sel.value = t.id;
    this.dirty();
  }

  markCritical() { $('#report').classList.toggle('is-critical', this.c.checked); }

  showState() {
    const t = this.task, st = String(t.state || '');
    const done = SIGNED_STATES.has(st);
    $('#report-state').textContent = st;
    // A review task (a resident's draft) is claimed by an attending to sign
    // or return; one returned is claimed by its resident again.
    const notice = $('#report-notice');
    const reason = t.returned;
    notice.hidden = !reason || done;
    notice.textContent = reason ? `Returned for revision by ${t.returned_by || 'the reviewer'}: ${reason}` : '';
    notice.dataset.returned = reason || '';
    const reviewing = !this.resident && !!t.review && st !== 'offered';
    $('#sign').hidden = done || this.resident;
    $('#sign').textContent = reviewing ? 'Approve and sign…' : 'Sign and submit…';
    $('#to-review').hidden = done || !this.resident;
    $('#return').hidden = !reviewing;
    $('#release').hidden = done;
    $('#addendum-box').hidden = !done;
    for (const x of [this.f, this.i, this.c, this.sel]) x.disabled = done;
  }

  snapshot() { return JSON.stringify([this.f.value, this.i.value, this.c.checked]); }

  dirty() {
    clearTimeout(this.timer);
    this.saved.textContent = 'Editing…';
    this.timer = setTimeout(() => this.save(), AUTOSAVE_MS);
  }

  // Text into the findings at the cursor (or at their end), on a line of
  // its own, saved like typing.
  insertFindings(text) {
    if (!text) return;
    const f = this.f, at = f.selectionStart ?? f.value.length, end = f.selectionEnd ?? at;
    const before = f.value.slice(0, at), after = f.value.slice(end);
    const lead = before && !before.endsWith('\n') ? '\n' : '', tail = after && !after.startsWith('\n') ? '\n' : '';
    f.value = before + lead + text + tail + after;
    f.selectionStart = f.selectionEnd = (before + lead + text).length;
    f.dispatchEvent(new Event('input'));
  }

  async save() {
    clearTimeout(this.timer); this.timer = null;
    if (!this.task) return;
    const snap = this.snapshot();
    if (snap === this.lastSaved) { this.saved.textContent = this.saved.textContent.replace('Editing…', ''); return; }
    try {
      const r = await put(`/api/tasks/${encodeURIComponent(this.task.id)}/draft`,
        { findings: this.f.value, impression: this.i.value, critical: this.c.checked });
      this.lastSaved = snap;
      this.saved.textContent = `Draft saved ${clock(r && r.saved ? r.saved : Date.now())}`;
      this.saved.dataset.saved = '1';
    } catch (e) {
      this.saved.textContent = `Draft not saved: ${e.message}`;
      this.saved.dataset.saved = '0';
    }
  }

  async flush() { if (this.timer) await this.save(); }

  // The signing key is decrypted once per daemon run.
  async unlock() {
    const s = await get('/api/session');
    if (s.unlocked) return true;
    const dlg = $('#unlock-dialog'), pass = $('#passphrase'), err = $('#unlock-error');
    err.textContent = ''; pass.value = '';
    for (;;) {
      const v = await ask(dlg);
      if (v !== 'unlock') return false;
      try {
        await post('/api/unlock', { passphrase: pass.value });
        pass.value = ''; this.session.unlocked = true; this.onUnlocked();
        return true;
      } catch (e) { err.textContent = e.message; pass.value = ''; }
    }
  }

  async sign(action) {
    const addendum = action === 'addendum';
    const findings = addendum ? $('#addendum').value : this.f.value, impression = addendum ? '' : this.i.value;
    if (!findings.trim() && !impression.trim()) { status('Nothing to sign: the report is empty.', true); return; }
    if (!(await this.unlock())) return;
    const s = this.session, st = this.study || {};
    $('#sign-what').replaceChildren(
      el('dl', null,
        el('dt', { text: 'Signed by' }), el('dd.signer', { text: `${s.name || s.reader} (${s.reader}), ${s.seniority || ''}, ${s.facility || ''}` }),
        ...(!addendum && !$('#review-box').hidden ? [el('dt', { text: 'Drafted by' }), el('dd.what-drafted', { text: $('#review-by').textContent.replace(/^Drafted by /, '') })] : []),
        ...(addendum ? [el('dt', { text: 'Adds to' }), el('dd', { text: `report ${$('#signed-box').dataset.reportId || ''} (which stays as signed)` })] : []),
        el('dt', { text: 'Patient' }), el('dd', { text: `${(st.patient && st.patient.id) || this.task.patient_id || ''}` }),
        el('dt', { text: 'Study' }), el('dd', { text: `${(st.study && st.study.description) || ''} ${st.study_uid || this.task.study || ''}` }),
        el('dt', { text: addendum ? 'Addendum' : 'Findings' }), el('dd', null, el('pre.what-findings', { text: findings })),
        ...(addendum ? [] : [el('dt', { text: 'Impression' }), el('dd', null, el('pre.what-impression', { text: impression }))]),
        el('dt', { text: 'Critical value' }), el('dd.what-critical', { text: this.c.checked ? 'YES — the clinic is alerted' : 'no' })),
      el('p.muted', { text: 'The workstation builds the report document with the digests of every image read, signs its exact bytes with your key, and submits it with your certificate chain. It cannot be edited afterwards; corrections are addenda.' }));
    if ((await ask($('#sign-dialog'))) !== 'sign') return;
    await this.submit(action, { findings, impression });
    if (addendum) $('#addendum').value = '';
  }

  async returnForRevision() {
    $('#return-reason').value = '';
    if ((await ask($('#return-dialog'))) !== 'return') return;
    const reason = $('#return-reason').value.trim();
    if (!reason) { status('A reason is needed to return a report.', true); return; }
    await this.submit('return', { reason });
  }

  async submit(action, extra = {}) {
    await this.flush();
    const body = { action, findings: this.f.value, impression: this.i.value, critical: this.c.checked, ...extra };
    const btns = document.querySelectorAll('#report .actions button, #sign-addendum');
    btns.forEach((b) => { b.disabled = true; });
    status(action === 'sign' ? 'Signing and submitting…' : 'Submitting…');
    try {
      const r = await post(`/api/tasks/${encodeURIComponent(this.task.id)}/submit`, body);
      if (action === 'addendum') {
        // the signed report stays as it is; the addendum is a document of its own
        const d = $('#addendum-done');
        d.textContent = `Addendum ${r.report_id} to ${r.supersedes} signed by ${(r.signer && r.signer.name) || ''}`;
        d.dataset.reportId = r.report_id || '';
        status(`Addendum ${r.report_id || ''} signed`);
        return;
      }
      this.task = Object.assign({}, this.task, { state: r.state || this.task.state });
      if (action === 'draft' || action === 'return') this.task.returned = '';
      status(`Report ${r.report_id || ''} ${r.state || 'submitted'}`);
      if (action === 'sign') await this.showSigned(r);
      this.showState();
      this.onSubmitted(this.task, r);
    } catch (e) {
      status(`Not submitted: ${e.message}`, true);
    } finally { btns.forEach((b) => { b.disabled = false; }); }
  }

  async showSigned(r) {
    const box = $('#signed-box'), meta = $('#signed-meta'), doc = $('#signed-doc');
    const sg = r.signer || {};
    meta.replaceChildren(
      el('div.sig-id', { text: `Report ${r.report_id || ''} · ${r.state || ''}` }),
      el('div.sig-by', { text: `Signed by ${sg.name || ''} (${sg.reader || ''}), ${sg.facility || ''}` }),
      el('div.muted', { text: `${sg.subject || ''}${sg.serial ? ` · certificate ${sg.serial}` : ''}` }),
      el('div', { text: `at ${r.signed_at ? new Date(r.signed_at).toLocaleString() : ''} · ${r.instances ?? '?'} instances` }));
    box.dataset.reportId = r.report_id || '';
    let critical = false;
    try {
      const s = await fetchSigned(this.task.id);
      doc.textContent = s.text;
      critical = JSON.parse(s.text).critical === true;
    } catch (e) { doc.textContent = `(the signed bytes could not be shown: ${e.message})`; }
    box.hidden = false;
    if (critical) this.followAlert(this.task.id);
  }

  // 危急值 closed loop: where the critical value just signed has got at
  // the clinic, asked again every 5 s until a person there has read it.
  async followAlert(taskId) {
    clearTimeout(this.alertTimer);
    const line = $('#signed-alert');
    let text, state;
    try {
      const a = await get(`/api/tasks/${taskId}/alert`);
      const since = a.since ? new Date(a.since).toLocaleTimeString() : '?';
      state = a.state;
      text = state === 'read' ? `Critical value: read at ${a.facility} ✓ 已阅读`
        : state === 'unread' ? `Critical value: ${a.facility} has had it since ${since}, NOT YET READ there — phone the clinic if it stays unread`
        : state === 'waiting' ? `Critical value: NOT YET AT ${a.facility} (waiting for its gateway since ${since}) — phone the clinic`
        : '';
    } catch (e) {
      state = 'unknown';
      text = `Critical value: the hub cannot say where it is (${e.message})`;
    }
    if (!this.task || this.task.id !== taskId) return;
    line.dataset.state = state;
    line.textContent = text;
    line.hidden = !text;
    if (state !== 'read' && state !== 'not-critical') this.alertTimer = setTimeout(() => this.followAlert(taskId), 5000);
  }
}

// Show a modal dialog; resolve with the button value that closed it.
export function ask(dlg) {
  return new Promise((resolve) => {
    dlg.returnValue = '';
    dlg.addEventListener('close', () => resolve(dlg.returnValue), { once: true });
    dlg.showModal();
  });
}
