// viewer.mjs — the reading workstation in real Chromium (Debian's, driven
// by playwright-core): starts a consortium (hub, clinic gateway pushing a
// CT series and a 12-lead ECG, the reader's `dxhub workstation`), runs the
// reading scenario (lib/scenario.mjs) and, with --bench, measures the
// viewer's speed (lib/perf.mjs) into BUILD/bench/viewer.json.
//   node viewer.mjs [--bench] [--slices N] [--keep]
// Environment: DXHUB (the binary), BUILD (default build), PY (/usr/bin/python3),
// CHROMIUM (default /usr/bin/chromium).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Consortium, PASSPHRASE, READER } from './lib/consortium.mjs';
import { Checks } from './lib/checks.mjs';
import { scenario } from './lib/scenario.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const args = process.argv.slice(2);
const bench = args.includes('--bench');
const slices = Number(args[args.indexOf('--slices') + 1]) || (bench ? 300 : 60);
const build = path.resolve(repo, process.env.BUILD || 'build');
const dxhub = path.resolve(repo, process.env.DXHUB || path.join(build, 'dxhub'));
const py = process.env.PY || '/usr/bin/python3';
const shots = path.join(build, 'browser');
const dir = path.join(shots, `run-${process.pid}`);
fs.mkdirSync(shots, { recursive: true });

const checks = new Checks();
const hub = new Consortium({ repo, dxhub, dir, py, slices, web: path.join(repo, 'viewer/web') });
let browser = null, ok = false;
const t0 = Date.now();
try {
  const up = await checks.check(`a hub, a clinic pushing a ${slices}-slice CT and an ECG, and the reader's workstation start`, () => hub.up());
  if (up) {
    console.log(`    (consortium ready in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--no-sandbox', '--force-device-scale-factor=1'] });
    const ctx = { url: hub.url, ctDir: hub.ctDir, ecgTruth: hub.ecgTruth, py, here, hub, reader: READER, passphrase: PASSPHRASE };
    if (bench) {
      const { perf } = await import('./lib/perf.mjs');
      await perf({ browser, ctx, checks, out: path.join(build, 'bench', 'viewer.json') });
    } else {
      await scenario({ browser, ctx, checks, shots });
    }
  }
} finally {
  if (browser) await browser.close().catch(() => {});
  await hub.stop();
  ok = checks.summary();
  if (ok && !args.includes('--keep')) fs.rmSync(dir, { recursive: true, force: true });
  else console.log(`logs and data kept in ${path.relative(repo, dir)}`);
}
process.exit(ok ? 0 : 1);
