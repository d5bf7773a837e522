// app.js — the reading workstation's page: wires the worklist, the image and
// ECG viewers, the report and the priors to the daemon's API (viewer/API.md).
import { get } from './api.js';
import { $, el, personName, dicomDate, status } from './util.js';
import { PRESETS } from './voi.js';
import { StackViewer } from './stack.js';
import { EcgViewer, ZOOMS } from './ecg.js';
import { Worklist } from './worklist.js';
import { ReportPanel } from './report.js';
import { showPriors } from './priors.js';

const session = await loadSession();
showSession(session);
setInterval(async () => { try { showSession(Object.assign(session, await get('/api/session'))); } catch (_) { showHub('disconnected'); } }, 5000);

const stack = new StackViewer({
  viewport: $('#viewport'), canvas: $('#image'), strip: $('#series-strip'), marksList: $('#marks'),
  overlays: { tl: $('#ov-tl'), tr: $('#ov-tr'), bl: $('#ov-bl'), br: $('#ov-br') },
});
// A prior of the patient's opened beside the study (Compare in the priors
// panel): the same viewer with its own stack, series and frame cache.
const prior = new StackViewer({
  viewport: $('#compare-viewport'), canvas: $('#compare-image'), strip: $('#compare-strip'), marksList: el('ul'),
  overlays: { tl: $('#cv-tl'), tr: $('#cv-tr'), bl: $('#cv-bl'), br: $('#cv-br') }, cacheBytes: 256 << 20,
});
const comparing = () => !$('#compare-pane').hidden;
// Linked scrolling: the prior follows the study at the offset (mm) between
// the two slices shown when Link was pressed — the reader first brings the
// same anatomy into both, since two exams' table positions differ.
let linkOffset = null;
stack.onSlice = () => {
  const at = stack.location();
  if (linkOffset !== null && comparing() && at !== null) prior.goToLocation(at + linkOffset);
};
const ecg = new EcgViewer({ canvas: $('#ecg'), measurements: $('#ecg-meas'), caliperOut: $('#caliper') });
// A prior ECG of the patient beneath the one read (serial comparison: is
// this ST change new?), drawn on the same paper at the same settings.
const ecgPrior = new EcgViewer({ canvas: $('#ecg-prior'), measurements: $('#ecg-prior-meas'), caliperOut: $('#ecg-prior-caliper') });
const comparingEcg = () => !$('#ecg-compare').hidden;
const worklist = new Worklist({ body: $('#tasks'), banner: $('#stat-banner'), count: $('#task-count'), onOpen: openTask, onTasks: warmHeld });
const report = new ReportPanel(session, { onSubmitted: () => worklist.refresh(), onUnlocked: () => showSession(session) });
let current = null;

wireImageTools();
wireEcgTools();
$('#release').addEventListener('click', () => { if (current) worklist.release(current); });
$('#compare-close').addEventListener('click', closeCompare);
$('#ecg-compare-close').addEventListener('click', closeEcgCompare);
// the prior's paper scrolls with the ECG read: the same seconds beneath each other
$('#ecg-scroll').addEventListener('scroll', () => { if (comparingEcg()) $('#ecg-prior-scroll').scrollLeft = $('#ecg-scroll').scrollLeft; });
$('#compare-link').addEventListener('click', () => setLink(linkOffset === null));
$('#unlock-btn').addEventListener('click', () => report.unlock());
for (const b of document.querySelectorAll('#modes button')) b.addEventListener('click', () => showMode(b.dataset.mode));
document.addEventListener('keydown', (e) => {
  if (e.target.closest('input, textarea, select, dialog')) return;
  if (!$('#image-mode').hidden && current && !e.target.closest('.viewport')) stack.key(e); // a viewport takes its own keys
});
worklist.start();

async function loadSession() {
  for (let wait = 500; ; wait = Math.min(wait * 2, 5000)) {
    try { return await get('/api/session'); } catch (e) {
      status(e.status === 401 ? 'This page needs the address the workstation printed (with #token=…).' : `Workstation: ${e.message}`, true);
      if (e.status === 401) throw e;
    }
    await new Promise((r) => setTimeout(r, wait));
  }
}

function showSession(s) {
  $('#who').textContent = `${s.name || s.reader} (${s.reader}) · ${s.seniority || ''} · ${s.facility || ''}`;
  showHub(s.hub);
  $('#key-state').textContent = s.unlocked ? 'signing key unlocked' : 'signing key locked';
  $('#unlock-btn').hidden = !!s.unlocked;
  showCertificate(s.certificate);
  showDisk(s.cache);
}

// This PC's disk, where studies are cached: below 1 GiB free, prefetching
// soon stops (the daemon's log says why); said before a study fails to open.
function showDisk(c) {
  const p = $('#disk-state');
  const free = c && typeof c.disk_free === 'number' ? c.disk_free : null;
  p.hidden = free === null || free >= 2 ** 30;
  if (p.hidden) return;
  const full = free < 64 * 2 ** 20;
  p.className = `pill ${full ? 'full' : 'low'}`;
  p.textContent = full ? 'disk full: studies cannot be cached' : `disk nearly full: ${Math.round(free / 2 ** 20)} MiB free`;
  p.title = 'Free space on this PC (or lower the workstation\'s --cache-mb).';
}

// The signing certificate's end, said ahead: the hub refuses reports
// signed after it, so the reader hears weeks before, not at a signature.
function showCertificate(c) {
  const p = $('#cert-state');
  const ending = c && c.days_left < c.warn_days;
  p.hidden = !ending;
  if (!ending) return;
  const ended = c.days_left < 0;
  p.className = `pill ${ended ? 'ended' : 'ending'}`;
  p.textContent = ended ? `certificate ended ${c.ends}: reports cannot be signed`
    : `certificate ends ${c.ends} (in ${c.days_left} day${c.days_left === 1 ? '' : 's'})`;
  p.title = 'Ask your facility\'s CA for a new signing certificate.';
}

function showHub(state) {
  const h = $('#hub-state');
  // revoked: the hub answers but refuses this workstation's key; only IT can mend it
  h.textContent = state === 'revoked' ? "hub refused this workstation's key (revoked): call IT" : `hub ${state || '?'}`;
  h.className = `pill ${state || ''}`;
}

function showMode(mode) {
  $('#image-mode').hidden = mode !== 'images';
  $('#ecg-mode').hidden = mode !== 'ecg';
  for (const b of document.querySelectorAll('#modes button')) b.classList.toggle('active', b.dataset.mode === mode);
  if (mode === 'images') stack.resize(); else ecg.draw();
}

async function openTask(task) {
  current = task;
  closeCompare();
  closeEcgCompare();
  $('#empty').hidden = true;
  stack.warmImage(task.first_image);   // beside the study listing, not after it
  let study;
  try { study = await studyOf(task.id); } catch (e) {
    status(`Study of task ${task.id}: ${e.message}`, true); return;
  }
  if (current !== task) return;       // another task was opened meanwhile
  const all = (study.series || []).flatMap((s) => s.instances);
  const waves = all.filter((i) => i.waveform), images = all.filter((i) => !i.waveform);
  $('#modes').hidden = !(waves.length && images.length);
  showMode(images.length ? 'images' : 'ecg');
  if (images.length) stack.load(study);
  if (waves.length) loadEcg(study, waves[0]);
  // The report and priors panels come right after the first image: on a
  // busy machine building them first would delay it.
  const panels = () => {
    if (current !== task) return;
    report.open(task, study);
    showPriors($('#priors'), task, study.study_uid, (p) => (p.modality === 'ECG' ? openEcgCompare : openCompare)(task, p));
  };
  if (images.length) stack.later(panels); else panels();
}

// The prior's images beside the task's study: asked of the workstation,
// which fetches them from the hub (the same patient's only; audited there).
async function openCompare(task, p) {
  const pane = $('#compare-pane'), what = `${p.exam_type || p.modality || ''} ${dicomDate(p.date)}`;
  setLink(false);
  pane.hidden = false;
  pane.dataset.study = p.study;
  pane.dataset.state = 'loading';
  $('#compare-title').textContent = `Prior: ${what} · opening…`;
  let st;
  try { st = await get(`/api/tasks/${encodeURIComponent(task.id)}/compare/${encodeURIComponent(p.study)}`); } catch (e) {
    if (current !== task || pane.dataset.study !== p.study) return;
    $('#compare-title').textContent = `Prior ${what}: ${e.message}`;
    pane.dataset.state = 'error';
    return;
  }
  if (current !== task || pane.dataset.study !== p.study) return;   // closed or another opened meanwhile
  prior.wherePrefix = `prior ${dicomDate(p.date)}, `;
  prior.setTool(stack.tool);
  prior.load(st);
  pane.dataset.state = 'open';
  $('#compare-title').textContent = `Prior: ${what} · ${p.facility || p.hub || ''}${p.report_id ? ` · report ${p.report_id}` : ''}`;
}

async function openEcgCompare(task, p) {
  const box = $('#ecg-compare'), what = `ECG ${dicomDate(p.date)}`;
  const stale = () => current !== task || box.dataset.study !== p.study;   // closed or another opened meanwhile
  box.hidden = false;
  box.dataset.study = p.study;
  box.dataset.state = 'loading';
  $('#ecg-compare-title').textContent = `Prior: ${what} · opening…`;
  try {
    const st = await get(`/api/tasks/${encodeURIComponent(task.id)}/compare/${encodeURIComponent(p.study)}`);
    if (stale()) return;
    const wave = (st.series || []).flatMap((s) => s.instances).find((i) => i.waveform);
    if (!wave) throw new Error('that study holds no waveform');
    const data = await get(`/api/instances/${encodeURIComponent(wave.sop)}/ecg`);
    if (stale()) return;
    ecgPrior.set({ ...ecg.opts });
    ecgPrior.load(data);
    box.dataset.state = 'open';
    $('#ecg-compare-title').textContent = `Prior: ${what} · ${p.facility || p.hub || ''}${p.report_id ? ` · report ${p.report_id}` : ''}`;
    $('#ecg-prior-scroll').scrollLeft = $('#ecg-scroll').scrollLeft;
  } catch (e) {
    if (stale()) return;
    $('#ecg-compare-title').textContent = `Prior ${what}: ${e.message}`;
    box.dataset.state = 'error';
  }
}

function closeEcgCompare() {
  const box = $('#ecg-compare');
  box.hidden = true;
  delete box.dataset.study;
  delete box.dataset.state;
}

function setLink(on) {
  const a = stack.location(), b = prior.location();
  if (on && (a === null || b === null)) { status('These images say nothing of where their slices lie: they cannot be linked.', true); on = false; }
  linkOffset = on ? b - a : null;
  $('#compare-link').classList.toggle('active', on);
  $('#compare-pane').dataset.linked = on ? '1' : '0';
}

function closeCompare() {
  const pane = $('#compare-pane');
  setLink(false);
  if (pane.hidden) return;
  pane.hidden = true;
  delete pane.dataset.study;
  delete pane.dataset.state;
  prior.stopCine();
  prior.unload();
}

// Study listings of held and offered tasks, kept while they are listed (a
// study does not change once complete), so opening one needs no round trip.
const studies = new Map();
function studyOf(id) {
  const k = String(id);
  if (!studies.has(k)) {
    const p = get(`/api/tasks/${encodeURIComponent(id)}/study`);
    studies.set(k, p);
    p.catch(() => studies.delete(k));
  }
  return studies.get(k);
}

// When the daemon has a task's study cached and laid out (first_image is
// named), the page takes its listing and first image too — for the best
// offers as well as held tasks: the first open right after a claim then
// draws at once instead of waiting for the daemon while it starts decoding
// the claimed study ahead.
function warmHeld(tasks) {
  const listed = new Set(tasks.filter((t) => t.mine || t.state === 'offered').map((t) => String(t.id)));
  for (const k of [...studies.keys()]) if (!listed.has(k)) studies.delete(k);
  for (const t of tasks) {
    if (!listed.has(String(t.id)) || (t.prefetched ?? 0) < 1 || studies.has(String(t.id))) continue;
    if (!t.mine && !t.first_image) continue;   // an offer's listing only once laid out: never built on the page's account
    stack.warmImage(t.first_image);
    studyOf(t.id).then((st) => stack.warm(st), () => {});
  }
}

async function loadEcg(study, inst) {
  const p = study.patient || {}, sd = study.study || {};
  $('#ecg-head').replaceChildren(el('span.pname', { text: personName(p.name) }), `  ID ${p.id || ''}  `,
    [p.sex, p.age].filter(Boolean).join(' · '), `  ${dicomDate(sd.date)}  ${sd.description || ''}`);
  try {
    const data = await get(`/api/instances/${encodeURIComponent(inst.sop)}/ecg`);
    ecg.load(data);
  } catch (e) { status(`ECG: ${e.message}`, true); }
}

// The toolbar acts on the study and, while one is open beside it, on the
// prior too: both read with the same tool, window and scale.  Cine and the
// keys stay with the study.
function wireImageTools() {
  const both = (fn) => () => { fn(stack); if (comparing()) fn(prior); };
  for (const b of document.querySelectorAll('#toolbar [data-tool]')) {
    b.addEventListener('click', () => {
      stack.setTool(b.dataset.tool); prior.setTool(b.dataset.tool);
      for (const x of document.querySelectorAll('#toolbar [data-tool]')) x.classList.toggle('active', x === b);
    });
  }
  $('#presets').replaceChildren(...PRESETS.map((p) => el('button', {
    dataset: { preset: p.name }, title: `W ${p.width} L ${p.center} (${p.key})`, text: p.label, onclick: both((v) => v.preset(p.name)) })));
  $('#invert').addEventListener('click', both((v) => v.invert()));
  $('#actual').addEventListener('click', both((v) => v.actualSize()));
  $('#fit').addEventListener('click', both((v) => v.fit()));
  $('#reset').addEventListener('click', both((v) => v.reset()));
  $('#cine').addEventListener('click', () => stack.toggleCine());
  $('#clear-marks').addEventListener('click', both((v) => { v.clearMarks(); v.refreshMarksList(); }));
  $('#insert-marks').addEventListener('click', () => {
    const lines = [...stack.measurementLines(), ...(comparing() ? prior.measurementLines() : [])];
    if (!lines.length) { status('No measurements to write into the report.', true); return; }
    report.insertFindings(lines.join('\n'));
  });
}

function wireEcgTools() {
  $('#ecg-zoom').replaceChildren(...ZOOMS.map((z) => el('option', { value: z, text: `${z}×` })));
  const apply = () => {
    const o = { layout: $('#ecg-layout').value, speed: Number($('#ecg-speed').value),
      gain: Number($('#ecg-gain').value), zoom: Number($('#ecg-zoom').value) };
    ecg.set(o);
    if (comparingEcg()) ecgPrior.set(o);
  };
  for (const id of ['#ecg-layout', '#ecg-speed', '#ecg-gain', '#ecg-zoom']) $(id).addEventListener('change', apply);
}


