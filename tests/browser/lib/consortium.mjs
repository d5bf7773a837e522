// consortium.mjs — a real consortium on 127.0.0.1 for the browser tests and
// the viewer bench: the hub (`dxhub serve`), a clinic's gateway (`dxhub
// edge`) that pushes a synthetic CT series and a 12-lead ECG, and the
// reader's workstation daemon (`dxhub workstation`) whose page Chromium
// drives; on demand, a second hub (the county hospital's) that the first
// asks as a peer.  Keys, a CA and the reader's SM2 certificate are made as
// samples/demo makes them.  Every process is remembered by PID and ended by
// stop(); nothing is killed by name.
import { spawn, execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const PASSPHRASE = 'browser test passphrase';
export const READER = { id: 'dr-chen', name: '陈静', facility: 'lead-hospital' };
// A resident of the same facility, reading CR, whose drafts the reader reviews.
export const RESIDENT = { id: 'dr-li', name: '李明' };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Consortium {
  constructor({ repo, dxhub, dir, web, py = '/usr/bin/python3', slices = 60 }) {
    Object.assign(this, { repo, dxhub, dir, web, py, slices });
    // Quiet time before the hub calls a study complete: long enough that a
    // busy machine's pause in the link does not cut the CT series short.
    this.stable = slices > 100 ? 15 : 3;
    this.procs = [];
  }

  run(args, opts = {}) {
    return execFileSync(args[0], args.slice(1), { cwd: this.repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120000, ...opts });
  }

  dx(...args) { return this.run([this.dxhub, ...args]); }

  // Start a long-running process, its output in DIR/logs/NAME.{out,err};
  // resolve with the first stdout line matching re (or fail with its log).
  async start(name, args, re, timeoutMs = 30000) {
    const logs = path.join(this.dir, 'logs');
    fs.mkdirSync(logs, { recursive: true });
    const out = path.join(logs, `${name}.out`), err = path.join(logs, `${name}.err`);
    const p = spawn(args[0], args.slice(1), { cwd: this.repo, stdio: ['ignore', fs.openSync(out, 'w'), fs.openSync(err, 'w')],
      env: { ...process.env, TCP_NODELAY: '1' } });
    this.procs.push({ name, p });
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const m = fs.readFileSync(out, 'utf8').split('\n').map((l) => l.match(re)).find(Boolean);
      if (m) return m;
      if (p.exitCode !== null) break;
      await sleep(50);
    }
    throw new Error(`${name} did not become ready (exit ${p.exitCode}); stderr:\n${tail(err)}`);
  }

  async stop() {
    for (const { p } of this.procs.reverse()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    const end = Date.now() + 10000;
    for (const { p } of this.procs) {
      while (p.exitCode === null && p.signalCode === null && Date.now() < end) await sleep(50);
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    this.procs = [];
  }

  // Keys, certificates, reader profile.
  keys() {
    const d = this.dir, hubKeys = path.join(d, 'hub/keys'), rd = path.join(d, 'reader');
    for (const sub of ['hub/keys', 'clinic/keys', 'reader']) fs.mkdirSync(path.join(d, sub), { recursive: true });
    this.dx('keygen', '--keys', hubKeys, '--name', 'hub');
    this.dx('keygen', '--keys', path.join(d, 'clinic/keys'), '--name', 'edge');
    this.dx('allow', '--keys', hubKeys, '--role', 'edge:clinic1', path.join(d, 'clinic/keys/edge.pub'));
    this.dx('keygen', '--keys', rd, '--name', 'workstation');
    this.dx('allow', '--keys', hubKeys, '--role', `reader:${READER.id}`, path.join(rd, 'workstation.pub'));
    fs.writeFileSync(path.join(d, 'passphrase'), `${PASSPHRASE}\n`, { mode: 0o600 });
    this.dx('keygen', '--ca', '--facility', READER.facility, '--keys', path.join(d, 'ca'));
    this.dx('keygen', '--reader', READER.id, '--name', READER.name, '--role', 'attending', '--facility', READER.facility,
      '--ca', path.join(d, 'ca'), '--keys', rd, '--passphrase-file', path.join(d, 'passphrase'));
    fs.mkdirSync(path.join(hubKeys, 'trust'), { recursive: true });
    for (const f of ['ca.pem', 'crl.pem']) fs.copyFileSync(path.join(d, 'ca', f), path.join(hubKeys, 'trust', f));
    const res = path.join(d, 'resident');
    fs.mkdirSync(res, { recursive: true });
    this.dx('keygen', '--keys', res, '--name', 'workstation');
    this.dx('allow', '--keys', hubKeys, '--role', `reader:${RESIDENT.id}`, path.join(res, 'workstation.pub'));
    // The resident's certificate ends in 20 days: the page must say so (the attending's, a year away, not).
    this.dx('keygen', '--reader', RESIDENT.id, '--name', RESIDENT.name, '--role', 'resident', '--facility', READER.facility,
      '--ca', path.join(d, 'ca'), '--keys', res, '--passphrase-file', path.join(d, 'passphrase'), '--days', '20');
    this.readers('CT,ECG');
    this.readerDir = rd;
    this.residentDir = res;
  }

  // The hub's readers file: the reader (reading `modalities`) and the resident (CR).
  readers(modalities) {
    fs.writeFileSync(path.join(this.dir, 'hub/readers.conf'),
      `# id  seniority  modalities  kinds  facilities  max\n${READER.id}  attending  ${modalities}  imaging,ecg  *  4\n` +
      `${RESIDENT.id}  resident  CR  imaging  *  4\n`);
  }

  // The reader reads CR too from now on: the readers file again, and SIGHUP.
  async readersAlsoCR() {
    this.readers('CT,ECG,CR');
    this.procs.find((x) => x.name === 'hub').p.kill('SIGHUP'); // taken between housekeeping rounds
  }

  // The resident's own workstation daemon (driven through its API), for
  // the CR pushed at the start; { base, token, url } of its API and page.
  async resident() {
    const d = this.dir;
    const ws = await this.start('resident', [this.dxhub, 'workstation', '--hub', this.hubReaders, '--hub-key', this.hubKey,
      '--keys', this.residentDir, '--name', 'workstation', '--sign-key', path.join(this.residentDir, `${RESIDENT.id}.key`),
      '--cert', path.join(this.residentDir, `${RESIDENT.id}.chain.pem`), '--chain', path.join(d, 'ca/ca.pem'),
      '--passphrase-file', path.join(d, 'passphrase'), '--cache', path.join(d, 'resident-cache'), '--http-port', '0',
      '--web', this.web], /^dxhub workstation: ready url=(\S+)/);
    const u = new URL(ws[1]);
    return { base: u.origin, token: u.hash.replace('#token=', ''), url: ws[1] };
  }

  // Synthetic inputs, made while the keys are: a CT series and the
  // "normal" 12-lead ECG with its truth.
  async samples() {
    this.ctDir = path.join(this.dir, 'samples/ct');
    this.ecgDir = path.join(this.dir, 'samples/ecg');
    this.crDir = path.join(this.dir, 'samples/cr'); // for the resident (review path)
    this.ct2Dir = path.join(this.dir, 'samples/ct2'); // the patient's follow-up CT (a prior to compare)
    this.ct3Dir = path.join(this.dir, 'samples/ct3'); // and an exam of theirs nobody has read yet
    this.ecg2Dir = path.join(this.dir, 'samples/ecg2'); // and the ECG patient's second ECG
    this.ecg2File = path.join(this.ecg2Dir, 'normal.dcm');
    const run = promisify(execFile), opts = { cwd: this.repo, timeout: 120000 };
    await Promise.all([
      run(this.py, ['samples/gen_ct_series.py', '--slices', String(this.slices), '--out', this.ctDir], opts),
      run(this.py, ['samples/gen_ct_series.py', '--slices', '8', '--name', 'followup', '--date', '20240601', '--out', this.ct2Dir], opts),
      run(this.py, ['samples/gen_ct_series.py', '--slices', '4', '--name', 'unread', '--date', '20240301', '--out', this.ct3Dir], opts),
      run(this.py, ['samples/gen_ecg.py', '--out', this.ecgDir, '--only', 'normal'], opts),
      run(this.py, ['samples/gen_ecg.py', '--out', this.ecg2Dir, '--only', 'normal', '--tag', 'set2', '--date', '20240610'], opts),
      run(this.py, ['samples/gen_dx_images.py', '--out', this.crDir, '--only', 'CR_chest_PA.dcm'], opts)]);
    this.ecgTruth = JSON.parse(fs.readFileSync(path.join(this.ecgDir, 'normal.json'), 'utf8'));
  }

  async up() {
    fs.mkdirSync(this.dir, { recursive: true });
    const samples = this.samples();
    samples.catch(() => {});
    this.keys();
    const d = this.dir;
    const hub = await this.start('hub', [this.dxhub, 'serve', '--data', path.join(d, 'hub'), '--dicom-port', '0', '--http-port', '0',
      '--edge-port', '0', '--reader-port', '0', '--peer-port', '0', '--stable-seconds', String(this.stable), '--open-dicom'],
    /^dxhub serve: ready .*http=[\d.]+:(\d+) edge=(tcp:\S+) readers=(tcp:\S+)/);
    this.hubHttp = `http://127.0.0.1:${hub[1]}`; this.hubEdge = hub[2]; this.hubReaders = hub[3];
    this.hubKey = path.join(d, 'hub/keys/hub.pub');
    await this.start('edge', [this.dxhub, 'edge', '--data', path.join(d, 'clinic'), '--facility', 'clinic1', '--hub', this.hubEdge,
      '--hub-key', this.hubKey, '--dicom-port', String(await freePort()), '--open-dicom'], /^dxhub edge: ready/);
    await samples;
    this.dx('push', '--edge-data', path.join(d, 'clinic'), '--referral', '--note', 'cough for three weeks', this.ctDir);
    this.dx('push', '--edge-data', path.join(d, 'clinic'), '--priority', 'stat', '--note', 'chest pain 40 min', path.join(this.ecgDir, 'normal.dcm'));
    this.dx('push', '--edge-data', path.join(d, 'clinic'), this.crDir);
    const count = (st) => Number((st['00201208'] && st['00201208'].Value && st['00201208'].Value[0]) || 0);
    const queued = await this.waitFor(async () => { const q = await this.hubStudies('queued'); return q.length >= 3 && q; },
      240000, 'the three studies queued at the hub');
    const n = queued.map(count).sort((a, b) => b - a);
    if (n[0] !== this.slices) throw new Error(`the hub queued the CT with ${n[0]} of ${this.slices} instances`);
    const ws = await this.start('workstation', [this.dxhub, 'workstation', '--hub', this.hubReaders, '--hub-key', this.hubKey,
      '--keys', this.readerDir, '--name', 'workstation', '--sign-key', path.join(this.readerDir, `${READER.id}.key`),
      '--cert', path.join(this.readerDir, `${READER.id}.chain.pem`), '--chain', path.join(d, 'ca/ca.pem'),
      '--cache', path.join(d, 'workstation'), '--http-port', '0', '--web', this.web],
    /^dxhub workstation: ready url=(\S+)/);
    this.url = ws[1];
    return this;
  }

  // A second hub, the county hospital's, that the lead hub asks as a peer,
  // holding a CT of the same patient read and signed there (report
  // county-r1): a referred patient's exam from elsewhere, to compare.
  // Returns its Study Instance UID.
  async countyHub() {
    const d = this.dir, data = path.join(d, 'county'), keys = path.join(data, 'keys'), rd = this.readerDir;
    fs.mkdirSync(path.join(keys, 'trust'), { recursive: true });
    for (const f of ['ca.pem', 'crl.pem']) fs.copyFileSync(path.join(d, 'ca', f), path.join(keys, 'trust', f));
    this.dx('keygen', '--keys', keys, '--name', 'hub');
    this.dx('allow', '--keys', keys, '--role', `reader:${READER.id}`, path.join(rd, 'workstation.pub'));
    this.dx('allow', '--keys', keys, '--role', 'peer:lead', path.join(d, 'hub/keys/hub.pub'));
    fs.writeFileSync(path.join(data, 'readers.conf'), `${READER.id}  attending  CT  imaging  *  4\n`);
    const m = await this.start('county', [this.dxhub, 'serve', '--data', data, '--name', 'county', '--dicom-port', '0',
      '--http-port', '0', '--edge-port', '0', '--reader-port', '0', '--peer-port', '0', '--stable-seconds', '2', '--open-dicom'],
    /^dxhub serve: ready dicom=[\d.]+:(\d+) .*readers=(tcp:\S+) peers=(tcp:\S+)/);
    fs.writeFileSync(path.join(d, 'hub/peers.conf'), `county ${m[3]} ${path.join(keys, 'hub.pub')}\n`);
    this.procs.find((x) => x.name === 'hub').p.kill('SIGHUP'); // the lead hub reads peers.conf again
    const ct = path.join(d, 'samples/county');
    this.run([this.py, 'samples/gen_ct_series.py', '--slices', '4', '--name', 'county', '--date', '20231010', '--out', ct]);
    const files = fs.readdirSync(ct).map((f) => path.join(ct, f));
    this.run(['storescu', '-aec', 'DXHUB', '127.0.0.1', m[1], ...files], { env: { ...process.env, TCP_NODELAY: '1' } });
    const hub = ['--hub', m[2], '--hub-key', path.join(keys, 'hub.pub'), '--keys', rd, '--name', 'workstation'];
    const fetched = path.join(d, 'county-fetched');
    const task = await this.waitFor(() => {
      const out = this.dx('reader', ...hub, '--take', '1', '--wait', '3', '--fetch-to', fetched, '--json');
      return out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).find((t) => t.claimed);
    }, 60000, 'the county CT claimed at the county hub');
    const report = path.join(d, 'county-r1.json');
    this.dx('report', '--study-dir', path.join(fetched, task.study), '--report-id', 'county-r1', '--reader', READER.id,
      '--name', READER.name, '--origin', 'county-clinic', '--reading-facility', READER.facility, '--findings', '右肺上叶结节 6 mm。',
      '--impression', '建议随访。', '--exam-type', 'CT chest', report);
    this.dx('sign', '--key', path.join(rd, `${READER.id}.key`), '--cert', path.join(rd, `${READER.id}.chain.pem`),
      '--passphrase-file', path.join(d, 'passphrase'), report);
    const out = this.dx('reader', ...hub, '--task', String(task.task), '--action', 'sign', '--report-id', 'county-r1',
      '--submit', report, '--sig', `${report}.sig`, '--chain', `${report}.chain.pem`);
    if (!out.includes('signed')) throw new Error(`the county report was not signed: ${out}`);
    return task.study;
  }

  async hubJson(p) {
    const r = await fetch(this.hubHttp + p);
    if (!r.ok) throw new Error(`hub ${p}: HTTP ${r.status}`);
    return r.json();
  }

  async hubStudies(state) {
    return (await this.hubJson(`/api/v1/studies?state=${state}&limit=100`)).studies || [];
  }

  async waitFor(pred, ms, what) {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
      try { last = await pred(); if (last) return last; } catch (e) { last = e.message; }
      await sleep(200);
    }
    throw new Error(`timed out after ${ms / 1000} s waiting for ${what} (last: ${last})`);
  }
}

// A port free on 127.0.0.1 now, at random in 20000-32000 (below the
// kernel's ephemeral range, as tests/e2e's free_port).
export async function freePort() {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const ok = await new Promise((resolve) => {
      const s = net.createServer().once('error', () => resolve(false)).listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free TCP port in 20000-32000');
}

function tail(file, n = 30) {
  try { return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n'); } catch (_) { return '(no log)'; }
}
