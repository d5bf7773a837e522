// app.js — the reading workstation's page: wires the worklist, the image and
// ECG viewers, the report and the priors to the daemon's API (viewer/API.md).
import { get } from './api.js';
import { $, el, personName, dicomDate, status } from './util.js';
import { PRESETS } from './voi.js';
import { StackViewer } from './stack.js';
import { EcgViewer, ZOOMS } from './ecg.js';
import { Worklist } from './worklist.js';
import { ReportPanel } from './report.js';
import { showPriors, markPriorReady } from './priors.js';
import { ComparePanes } from './compare.js';

const session = await loadSession();
showSession(session);
setInterval(async () => { try { showSession(Object.assign(session, await get('/api/session'))); } catch (_) { showHub('disconnected'); } }, 5000);

const stack = new StackViewer({
  viewport: $('#viewport'), canvas: $('#image'), strip: $('#series-strip'), marksList: $('#marks'),
  overlays: { tl: $('#ov-tl'), tr: $('#ov-tr'), bl: $('#ov-bl'), br: $('#ov-br') },
});
const ecg = new EcgViewer({ canvas: $('#ecg'), measurements: $('#ecg-meas'), caliperOut: $('#caliper') });
const worklist = new Worklist({ body: $('#tasks'), banner: $('#stat-banner'), count: $('#task-count'), onOpen: openTask,
  onTasks: (tasks) => { warmHeld(tasks); tasks.forEach((t) => { markPriorReady(t); compare.progress(t); }); } });
const report = new ReportPanel(session, { onSubmitted: () => worklist.refresh(), onUnlocked: () => showSession(session) });
let current = null;
const compare = new ComparePanes({ stack, ecg, current: () => current });   // a prior beside the study

wireImageTools();
wireEcgTools();
$('#release').addEventListener('click', () => { if (current) worklist.release(current); });
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
  compare.closeAll();
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
    showPriors($('#priors'), task, study.study_uid, (p) => compare.open(task, p));
  };
  if (images.length) stack.later(panels); else panels();
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
  const both = (fn) => () => compare.viewers().forEach(fn);
  for (const b of document.querySelectorAll('#toolbar [data-tool]')) {
    b.addEventListener('click', () => {
      stack.setTool(b.dataset.tool); compare.prior.setTool(b.dataset.tool);
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
    const lines = compare.measurementLines();
    if (!lines.length) { status('No measurements to write into the report.', true); return; }
    report.insertFindings(lines.join('\n'));
  });
}

function wireEcgTools() {
  $('#ecg-zoom').replaceChildren(...ZOOMS.map((z) => el('option', { value: z, text: `${z}×` })));
  const apply = () => {
    const o = { layout: $('#ecg-layout').value, speed: Number($('#ecg-speed').value),
      gain: Number($('#ecg-gain').value), zoom: Number($('#ecg-zoom').value) };
    compare.ecgViewers().forEach((v) => v.set(o));
  };
  for (const id of ['#ecg-layout', '#ecg-speed', '#ecg-gain', '#ecg-zoom']) $(id).addEventListener('change', apply);
}


