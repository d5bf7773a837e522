// priors.js — other reports of the same patient from the hub's lookup, with
// whether each may be recognised without repeating the exam (互认) and why.
import { get } from './api.js';
import { el, dicomDate } from './util.js';

export async function showPriors(box, patientId, currentStudy) {
  box.replaceChildren(el('p.muted', { text: 'Looking up priors…' }));
  if (!patientId) { box.replaceChildren(el('p.muted', { text: 'No patient ID.' })); return; }
  let r;
  try { r = await get(`/api/priors?patient=${encodeURIComponent(patientId)}`); } catch (e) {
    box.replaceChildren(el('p.error', { text: `Priors: ${e.message}` })); return;
  }
  const list = (r.priors || []).filter((p) => p.study !== currentStudy);
  if (r.source === 'unavailable') { box.replaceChildren(el('p.muted', { text: 'The prior lookup is not available yet.' })); return; }
  if (!list.length) { box.replaceChildren(el('p.muted', { text: `No prior reports (${r.source || 'hub'}).` })); return; }
  box.replaceChildren(el('table.priors', null,
    el('tr', null, el('th', { text: 'Date' }), el('th', { text: 'Exam' }), el('th', { text: 'Report' }), el('th', { text: 'Recognition' })),
    list.map((p) => el('tr', { dataset: { study: p.study } },
      el('td', { text: dicomDate(p.date) }), el('td', { text: p.modality || '' }), el('td', { text: p.report_id || '—' }),
      el('td', { class: p.recognised ? 'ok' : 'no', title: (p.reasons || []).join('; '),
        text: p.recognised ? 'recognised (互认)' : `not recognised${p.reasons && p.reasons.length ? `: ${p.reasons.join('; ')}` : ''}` })))));
}
