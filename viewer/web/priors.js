// priors.js — the patient's other signed exams from the hub's lookup (this
// hub's and its peer hubs'), each with whether it may be recognised without
// repeating the exam (互认) and, when not, the rules' reasons.  A row opens
// the prior's signed report text; Compare opens that exam (this hub's or a
// peer hub's) beside the task's own (onCompare): images beside images, an ECG beneath
// an ECG.
import { get } from './api.js';
import { el, $, dicomDate } from './util.js';

let shown = null; // the task whose priors are in the panel

export async function showPriors(box, task, currentStudy, onCompare) {
  shown = task;
  $('#prior-report').hidden = true;
  box.replaceChildren(el('p.muted', { text: 'Looking up priors…' }));
  box.dataset.state = 'loading';
  let r;
  try { r = await get(`/api/priors?task=${encodeURIComponent(task.id)}`); } catch (e) {
    if (shown !== task) return;
    box.replaceChildren(el('p.error', { text: `Priors: ${e.message}` }));
    box.dataset.state = 'error';
    return;
  }
  if (shown !== task) return;
  box.dataset.state = 'done';
  if (r.source === 'unavailable') { box.replaceChildren(el('p.muted', { text: `The prior lookup is not available${r.reason ? `: ${r.reason}` : ''}.` })); return; }
  const list = (r.priors || []).filter((p) => p.study !== currentStudy);
  const peers = (r.peers || []).filter((p) => p.status !== 'ok').map((p) => `${p.hub}: ${p.status}`);
  const note = peers.length ? el('p.muted', { text: `Not answered: ${peers.join(', ')}` }) : '';
  // The patient's other studies here that no signed report covers yet:
  // their images can be compared all the same.
  const reported = new Set((r.priors || []).map((p) => p.study));
  const unreported = (r.studies || []).filter((x) => x.study !== currentStudy && !reported.has(x.study)).map((x) => ({
    study: x.study, date: x.date, modality: (x.modalities || '').split('\\')[0], exam_type: x.description, hub: r.hub, state: x.state }));
  const others = unreported.length ? el('table.priors.unreported', null,
    el('tr', null, el('th', { text: 'Date' }), el('th', { text: 'Not reported yet' }), el('th', { text: 'State' }), el('th')),
    unreported.map((p) => el('tr', { dataset: { study: p.study } },
      el('td', { text: dicomDate(p.date) }), el('td', { text: [p.modality, p.exam_type].filter(Boolean).join(' · ') }),
      el('td', { text: p.state || '' }),
      el('td', null, compareButton(p, r, task, onCompare))))) : '';
  if (!list.length) { box.replaceChildren(el('p.muted', { text: 'No prior signed reports for this patient.' }), others, note); return; }
  box.replaceChildren(el('table.priors', null,
    el('tr', null, el('th', { text: 'Date' }), el('th', { text: 'Exam' }), el('th', { text: 'Where' }), el('th', { text: 'Recognition' }), el('th')),
    list.map((p) => el('tr', { dataset: { study: p.study, report: p.report_id, hub: p.hub || '', recognised: p.recognised ? '1' : '0' },
      title: `report ${p.report_id}${p.version > 1 ? ` (addendum, version ${p.version})` : ''}`, onclick: (ev) => openPrior(task, p, ev.currentTarget) },
      el('td', { text: dicomDate(p.date) }), el('td', { text: p.exam_type || p.modality || '' }), el('td', { text: p.facility || p.hub || '' }),
      el('td', { class: p.recognised ? 'ok' : 'no', title: (p.reasons || []).join('; '),
        text: p.recognised ? `recognised (互认)${p.mark ? ` ${p.mark}` : ''}` : `not recognised${p.reasons && p.reasons.length ? `: ${p.reasons.join('; ')}` : ''}` }),
      el('td', null, compareButton(p, r, task, onCompare))))), others, note);
}

// Compare, for a study that can be compared; "ready" when the workstation
// has it cached and laid out (the task's prior: fetched ahead, or opened
// before), so it opens at once.  A
// peer hub's exam goes with its hub and report (read through this hub).
function compareButton(p, r, task, onCompare) {
  if (!comparable(p, r, task)) return '';
  const peer = p.hub && p.hub !== r.hub ? p.hub : '';
  const b = el('button.compare', { onclick: (ev) => { ev.stopPropagation(); onCompare({ ...p, peer }); } });
  b.dataset.peer = peer;
  setReady(b, priorReady(task, p.study, peer));
  return b;
}

// Cached and laid out: the same study, from the same hub (peer: '' for
// this one).
const priorReady = (task, study, peer) => {
  const a = task.prior;
  return !!a && a.study === study && (a.hub || '') === peer && !!a.ready;
};

function setReady(b, ready) {
  b.classList.toggle('ready', ready);
  b.textContent = ready ? 'Compare ✓' : 'Compare';
  b.title = ready ? 'Here already: opens its images beside this study at once' : 'Open its images beside this study';
}

// The task list changed (events): the task's prior may have become ready,
// or another replaced it, since the panel was drawn.
export function markPriorReady(task) {
  if (!shown || String(shown.id) !== String(task.id)) return;
  for (const b of document.querySelectorAll('#priors button.compare')) {
    const row = b.closest('tr');
    if (row) setReady(b, priorReady(task, row.dataset.study, b.dataset.peer));
  }
}

// To compare: a study this hub holds, or a peer hub's exam with its report
// (its images come through this hub); an ECG with an ECG, images with images.
function comparable(p, r, task) {
  return (!p.hub || p.hub === r.hub || !!p.report_id) && (p.modality === 'ECG') === (task.kind === 'ecg');
}

async function openPrior(task, p, row) {
  for (const r of document.querySelectorAll('table.priors tr.open')) r.classList.remove('open');
  row.classList.add('open');
  const box = $('#prior-report');
  box.hidden = false;
  delete box.dataset.reportId;
  $('#prior-title').textContent = `${p.exam_type || p.modality || ''} ${dicomDate(p.date)}`;
  $('#prior-meta').textContent = 'Opening…';
  $('#prior-findings').textContent = ''; $('#prior-impression').textContent = '';
  try {
    const q = p.hub ? `?hub=${encodeURIComponent(p.hub)}` : '';
    const r = await get(`/api/tasks/${encodeURIComponent(task.id)}/priors/${encodeURIComponent(p.report_id)}${q}`);
    const d = r.document || {}, rd = d.reader || {};
    $('#prior-meta').textContent = `Report ${d.report_id} · signed by ${rd.name || rd.id || ''} (${d.reading_facility || ''}) · ${d.times ? d.times.reported : ''}${d.supersedes ? ` · addendum to ${d.supersedes}` : ''}`;
    $('#prior-findings').textContent = d.findings || '';
    $('#prior-impression').textContent = d.impression || '';
    box.dataset.reportId = d.report_id || '';
  } catch (e) { $('#prior-meta').textContent = `The report could not be opened: ${e.message}`; }
}
