// scenario.mjs — one reader's work in real Chromium against the real
// workstation daemon: worklist, claim a CT, scroll, window, measure, an ECG
// with calipers, a report written, signed and found verified at the hub.
// Every check compares what the page shows with something computed
// elsewhere: pydicom + numpy for pixels (tests/browser/oracle.py), Pixel
// Spacing for lengths, the ECG generator's truth file for intervals, the
// hub's own API for the signed report.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import path from 'node:path';
import { expect, near } from './checks.mjs';
import { canvasGray, canvasRGBA, dataset, waitImage, api, stats } from './page.mjs';
import { RESIDENT } from './consortium.mjs';

// The ECG view's documented geometry (viewer/web/ecg.js): 4 CSS px per mm at
// zoom 1; 3×4 layout rows 38 mm high under a 5 mm top margin; traces start
// 12 mm from the left.
const ECG = { pxPerMm: 4, topMm: 5, rowMm: 38, leftMm: 12 };
const FINDINGS = 'Right upper lobe: a solid nodule of 8 mm (右肺上叶结节). No effusion.';
const IMPRESSION = 'Pulmonary nodule; follow-up CT in 6 months.';
const ADDENDUM = 'Addendum: the nodule was also present on the outside CT of 2025 (补充).';
const REASON = 'Describe the heart size too (请描述心影).';

export async function scenario({ browser, ctx, checks, shots }) {
  const page = await newPage(browser, ctx.url);
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`) });
  const s = {};   // what later checks need from earlier ones

  // What pydicom + numpy make of slice 50 (as the daemon orders the series)
  // through the windows the checks use, computed once.
  // (Started as soon as the CT is claimed; it runs while the page scrolls.)
  const WINDOWS = ['-600,1500', '50,350'];
  const computeOracle = async () => {
    s.study = (await api(page, 'GET', `/api/tasks/${s.ctTask}/study`)).json;
    const inst = s.study.series.flatMap((x) => x.instances).filter((i) => !i.waveform);
    const tmp = fs.mkdtempSync(path.join(shots, 'oracle-'));
    try {
      const { stdout } = await promisify(execFile)(ctx.py, [path.join(ctx.here, 'oracle.py'), 'windows', ctx.ctDir, inst[49].sop, tmp, ...WINDOWS]);
      return new Map(JSON.parse(stdout).map((o, i) => [WINDOWS[i], { ...o, pixels: fs.readFileSync(path.join(tmp, `${WINDOWS[i].replace(',', '_')}.raw`)) }]));
    } finally { fs.rmSync(tmp, { recursive: true, force: true }); }
  };
  const oracle = async (center, width) => {
    if (!s.oracle) { s.oracle = computeOracle(); s.oracle.catch(() => {}); }
    return (await s.oracle).get(`${center},${width}`);
  };

  await checks.check('worklist lists the offered CT and STAT ECG, STAT first, and announces the STAT', async () => {
    await page.waitForSelector('tr.task[data-modality="CT"]', { timeout: 40000 });
    await page.waitForSelector('tr.task[data-modality="ECG"]', { timeout: 20000 });
    const rows = await page.$$eval('tr.task', (trs) => trs.map((t) => ({ prio: t.querySelector('.prio').textContent,
      modality: t.dataset.modality, due: t.querySelector('td.due').textContent, text: t.textContent })));
    expect(rows[0].prio === 'STAT' && rows[0].modality === 'ECG', `first row is ${JSON.stringify(rows[0])}`);
    const ct = rows.find((r) => r.modality === 'CT');
    expect(/转诊/.test(ct.text) && /cough for three weeks/.test(ct.text), `CT row lacks referral flag or note: ${ct.text}`);
    expect(/^\d+:\d\d$|h \d\d min/.test(ct.due), `CT due countdown "${ct.due}"`);
    await page.waitForSelector('#stat-banner:not([hidden])', { timeout: 5000 });
    const banner = await page.textContent('#stat-banner');
    expect(/STAT/.test(banner) && /chest pain 40 min/.test(banner), `STAT banner says "${banner}"`);
    await shot('worklist');
  });

  await checks.check('one click claims the CT and draws its first slice with the patient name in Chinese', async () => {
    await page.click('tr.task[data-modality="CT"] button.claim');
    const d = await waitImage(page, { slice: 1 }, 0, 30000);
    s.slices = await page.evaluate(() => document.querySelector('.corner.bl .slice').textContent);
    const name = await page.textContent('#ov-tl .pname');
    expect(name.includes('张三'), `overlay name "${name}"`);
    expect(/Im 1\/\d+/.test(s.slices), `slice overlay "${s.slices}"`);
    s.ctTask = await page.getAttribute('tr.task[data-modality="CT"]', 'data-task-id');
    expect(d.draws >= 1, 'drawn');
    oracle(0, 0).catch(() => {});            // start pydicom's side now
  }, { needs: [] });
  const CT = 'one click claims the CT and draws its first slice with the patient name in Chinese';

  await checks.check('wheel, PageDown and arrow keys scroll to slice 50', async () => {
    const box = await page.locator('#viewport').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    for (let i = 0; i < 10; i++) { await page.mouse.wheel(0, 100); }
    await waitImage(page, { slice: 11 });
    await page.focus('#viewport');
    for (let i = 0; i < 3; i++) await page.keyboard.press('PageDown');
    await waitImage(page, { slice: 41 });
    for (let i = 0; i < 9; i++) await page.keyboard.press('ArrowDown');
    await waitImage(page, { slice: 50 });
    const t = await page.textContent('.corner.bl .slice');
    expect(/^Im 50\//.test(t), `overlay says "${t}"`);
  }, { needs: [CT] });
  const AT50 = 'wheel, PageDown and arrow keys scroll to slice 50';

  // Compare the canvas (sel) of page pg at 1:1 with the oracle's image where both overlap.
  const compare = async (o, what, pg = page, sel = '#image') => {
    const d = await dataset(pg, sel);
    expect(Number(d.zoom) === 1, `zoom is ${d.zoom}, not 1:1`);
    const cw = await pg.evaluate((sel) => [document.querySelector(sel).width, document.querySelector(sel).height], sel);
    const x0 = Number(d.x0), y0 = Number(d.y0);
    const ax = Math.max(0, x0), ay = Math.max(0, y0), bx = Math.min(cw[0], x0 + o.columns), by = Math.min(cw[1], y0 + o.rows);
    expect(bx - ax >= 256 && by - ay >= 256, `too little of the image visible: ${bx - ax}×${by - ay}`);
    const got = await canvasGray(pg, sel, ax, ay, bx - ax, by - ay);
    let maxd = 0, sumd = 0, n = 0, sg = 0, se = 0;
    for (let y = ay; y < by; y++) {
      for (let x = ax; x < bx; x++) {
        const g = got[(y - ay) * (bx - ax) + (x - ax)], e = o.pixels[(y - y0) * o.columns + (x - x0)];
        const dd = Math.abs(g - e); if (dd > maxd) maxd = dd; sumd += dd; sg += g; se += e; n++;
      }
    }
    expect(maxd <= 1 && sumd / n < 0.02, `${what}: canvas differs from pydicom's window: max ${maxd}, mean |d| ${(sumd / n).toFixed(4)}`);
    near(sg / n, se / n, 0.05, `${what}: mean grey`);
    return { mean: sg / n };
  };

  await checks.check('the lung preset at 1:1 shows exactly the DICOM linear window of pydicom\'s pixels (-600/1500)', async () => {
    const before = Number((await dataset(page, '#image')).draws);
    await page.click('button[data-preset="lung"]');
    await page.click('#actual');
    await waitImage(page, { window: '-600/1500', zoom: '1.0000', slice: 50 }, before);
    const o = await oracle(-600, 1500);
    expect(o.std > 20, `the oracle image is nearly uniform (std ${o.std}): a weak check`);
    s.lung = await compare(o, 'lung window');
  }, { needs: [AT50] });
  const LUNG = 'the lung preset at 1:1 shows exactly the DICOM linear window of pydicom\'s pixels (-600/1500)';

  await checks.check('right-drag moves the window (level up: darker), and the mediastinum preset matches pydicom again', async () => {
    const d0 = await dataset(page, '#image');
    const box = await page.locator('#viewport').boundingBox();
    const cx = box.x + box.width / 2, cy = box.y + box.height / 2;
    await page.mouse.move(cx, cy);
    await page.mouse.down({ button: 'right' });
    for (let i = 1; i <= 10; i++) await page.mouse.move(cx, cy + i * 8);
    await page.mouse.up({ button: 'right' });
    const d1 = await waitImage(page, {}, Number(d0.draws));
    const [c0] = d0.window.split('/').map(Number), [c1] = d1.window.split('/').map(Number);
    expect(c1 > c0 + 50, `window level moved from ${d0.window} to ${d1.window}`);
    // The same 256×256 region of the canvas, now and under the lung window.
    const o = await oracle(-600, 1500);
    const x0 = Number(d1.x0), y0 = Number(d1.y0), ax = Math.max(0, x0), ay = Math.max(0, y0);
    const m = stats(await canvasGray(page, '#image', ax, ay, 256, 256)).mean;
    const lung = [];
    for (let y = ay; y < ay + 256; y++) lung.push(o.pixels.subarray((y - y0) * o.columns + (ax - x0), (y - y0) * o.columns + (ax - x0) + 256));
    const m0 = stats(Buffer.concat(lung)).mean;
    expect(m < m0 - 5, `raising the level did not darken the image (mean ${m.toFixed(1)} vs ${m0.toFixed(1)})`);
    const before = Number(d1.draws);
    await page.click('button[data-preset="mediastinum"]');
    await waitImage(page, { window: '50/350' }, before);
    await compare(await oracle(50, 350), 'mediastinum window');
  }, { needs: [LUNG] });

  await checks.check('a length drawn across the image reads in mm from Pixel Spacing', async () => {
    const d = await dataset(page, '#image');
    const box = await page.locator('#image').boundingBox();
    await page.click('button[data-tool="length"]');
    const ax = box.x + Number(d.x0) + 120, ay = box.y + Number(d.y0) + 150, dx = 300, dy = 200;
    await page.mouse.move(ax, ay); await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(ax + dx * i / 10, ay + dy * i / 10);
    await page.mouse.up();
    const o = await oracle(-600, 1500);
    const want = Math.hypot(dx * o.pixel_spacing[1], dy * o.pixel_spacing[0]);
    const text = await page.textContent('#marks li[data-kind="length"]');
    const mm = Number(text.match(/([\d.]+) mm/)[1]);
    near(mm, want, 0.15, `length "${text}" for ${dx}×${dy} px at ${o.pixel_spacing} mm`);
  }, { needs: [LUNG] });

  await checks.check('an angle drawn as a right angle reads 90°', async () => {
    const d = await dataset(page, '#image');
    const box = await page.locator('#image').boundingBox();
    await page.click('button[data-tool="angle"]');
    const bx = box.x + Number(d.x0) + 180, by = box.y + Number(d.y0) + 380;
    await page.mouse.move(bx + 150, by); await page.mouse.down();
    await page.mouse.move(bx + 70, by); await page.mouse.move(bx, by); await page.mouse.up();
    await page.mouse.move(bx, by - 60); await page.mouse.move(bx, by - 120);
    await page.mouse.down(); await page.mouse.up();
    const text = await page.textContent('#marks li[data-kind="angle"]');
    near(Number(text.match(/([\d.]+)°/)[1]), 90, 0.5, `angle "${text}"`);
    await page.click('button[data-tool="wl"]');
    await shot('ct-measurements');
  }, { needs: [LUNG] });

  await checks.check('an elliptical ROI reads the mean and SD in HU that pydicom computes, and the pointer reads the HU under it', async () => {
    const d = await dataset(page, '#image');
    expect(Number(d.zoom) === 1, `zoom is ${d.zoom}, not 1:1`);
    const box = await page.locator('#image').boundingBox();
    await page.click('button[data-tool="roi"]');
    const ax = box.x + Number(d.x0) + 200, ay = box.y + Number(d.y0) + 230, w = 90, h = 60;
    await page.mouse.move(ax, ay); await page.mouse.down();
    for (let i = 1; i <= 10; i++) await page.mouse.move(ax + w * i / 10, ay + h * i / 10);
    await page.mouse.up();
    const li = page.locator('#marks li[data-kind="roi"]');
    const got = await li.evaluate((e) => ({ ...e.dataset, text: e.textContent }));
    const inst = s.study.series.flatMap((x) => x.instances).filter((i) => !i.waveform)[49];
    const [x0, y0, x1, y1] = got.box.split(',').map(Number);
    expect(Math.abs(x1 - x0 - w) < 1.01 && Math.abs(y1 - y0 - h) < 1.01, `ROI box ${got.box} for a ${w}×${h} drag`);
    // the pointer at a pixel's centre, well inside the image
    const px = 260, py = 300;
    await page.mouse.move(box.x + Number(d.x0) + px + 0.5, box.y + Number(d.y0) + py + 0.5);
    const probe = await page.textContent('.corner.br .probe');
    const { stdout } = await promisify(execFile)(ctx.py, [path.join(ctx.here, 'oracle.py'), 'roi', ctx.ctDir, inst.sop,
      String(x0), String(y0), String(x1), String(y1), String(px), String(py)]);
    const o = JSON.parse(stdout);
    expect(o.sd > 1, `the oracle's ROI is nearly uniform (SD ${o.sd}): a weak check`);
    expect(Number(got.n) === o.n, `ROI counts ${got.n} pixels, pydicom ${o.n}`);
    near(Number(got.mean), o.mean, 1e-6, 'ROI mean (HU)');
    near(Number(got.sd), o.sd, 1e-6, 'ROI SD (HU)');
    expect(Number(got.min) === o.min && Number(got.max) === o.max, `ROI min/max ${got.min}/${got.max}, pydicom ${o.min}/${o.max}`);
    expect(/^ROI \d+: mean -?[\d.]+ HU SD [\d.]+ · [\d.]+ mm² \(min -?\d+, max -?\d+ HU; \d+ px\)$/.test(got.text), `ROI text "${got.text}"`);
    const wantArea = Math.PI * (x1 - x0) / 2 * (y1 - y0) / 2;   // the ellipse, in px² …
    const mm2 = Number(got.text.match(/· ([\d.]+) mm²/)[1]);
    const sp = inst.pixel_spacing;
    near(mm2, wantArea * sp[0] * sp[1], 0.06, 'ROI area (mm²)');          // … × Pixel Spacing
    expect(probe === `(${px}, ${py}) ${o.value} HU`, `the pointer reads "${probe}", pydicom ${o.value} HU at (${px}, ${py})`);
    await page.click('button[data-tool="wl"]');
    await shot('ct-roi');
  }, { needs: [LUNG] });
  const ROI = 'an elliptical ROI reads the mean and SD in HU that pydicom computes, and the pointer reads the HU under it';

  await checks.check('the measurements go into the findings as the marks list reads them, where they were taken', async () => {
    await page.fill('#findings', 'Lungs: see measurements.');
    await page.click('#insert-marks');
    const findings = await page.inputValue('#findings');
    const marks = await page.$$eval('#marks li', (lis) => lis.map((l) => l.textContent));
    const lines = findings.split('\n');
    expect(lines[0] === 'Lungs: see measurements.' && lines.length === marks.length + 1, `findings:\n${findings}`);
    const slice = (await page.textContent('.corner.bl .slice')).match(/^Im (\d+)/)[1];
    const se = (await page.textContent('.corner.bl div')).match(/^Se (\S*)/)[1];
    marks.forEach((m, i) => {
      const [name, rest] = [m.slice(0, m.indexOf(':')), m.slice(m.indexOf(':') + 2).replace(/ \(min .*\)$/, '')];
      expect(lines[i + 1] === `${name} (Se ${se}, Im ${slice}): ${rest}`, `line "${lines[i + 1]}" for mark "${m}"`);
    });
  }, { needs: [ROI] });

  await checks.check('the STAT banner claims the ECG; it opens at 25 mm/s and 10 mm/mV with the automatic measurements', async () => {
    const banner = await page.isVisible('#stat-banner');
    if (banner) await page.click('#stat-banner button:has-text("Claim")');
    else await page.click('tr.task[data-modality="ECG"] button.claim');
    await page.waitForFunction(() => Number(document.querySelector('#ecg').dataset.draws || 0) > 0 && !document.querySelector('#ecg-mode').hidden, null, { timeout: 30000 });
    const d = await dataset(page, '#ecg');
    expect(d.speed === '25' && d.gain === '10' && d.layout === '3x4', `ECG opened at ${JSON.stringify(d)}`);
    const hr = await page.textContent('#ecg-meas [data-key="Heart rate"] .v', { timeout: 5000 });
    near(parseFloat(hr), ctx.ecgTruth.hr_bpm, 3, `automatic heart rate "${hr}" against the generator's`);
    // a normal ECG: no triage line, and never a raw object a physician cannot read
    const meas = await page.textContent('#ecg-meas');
    expect(!/[{}"]|AUTO-TRIAGE/.test(meas), `the measurements read "${meas}"`);
    s.ecgTask = await page.getAttribute('tr.task[data-modality="ECG"]', 'data-task-id');
    const head = await page.textContent('#ecg-head');
    expect(head.includes('王芳'), `ECG header "${head}"`);
  }, { needs: [] });
  const ECGOPEN = 'the STAT banner claims the ECG; it opens at 25 mm/s and 10 mm/mV with the automatic measurements';

  await checks.check('at zoom 1.5 the ECG grid has a line every 6 px and a bold line every 30 px (1 mm / 5 mm)', async () => {
    await page.selectOption('#ecg-zoom', '1.5');
    await page.waitForFunction(() => document.querySelector('#ecg').dataset.pxPerMm === '6');
    const W = Math.min(900, await page.evaluate(() => document.querySelector('#ecg').width));
    const y = 9;                              // 1.5 mm: between grid lines, above every trace
    const px = await canvasRGBA(page, '#ecg', 0, y, W, 1);
    const major = [], minor = [];
    for (let x = 0; x < W; x++) {
      const r = px[4 * x], g = px[4 * x + 1];
      if (r > 200 && g < 160) major.push(x); else if (r > 230 && g < 215) minor.push(x);
    }
    const gaps = (a) => a.slice(1).map((v, i) => v - a[i]);
    expect(major.length >= 10, `only ${major.length} bold lines found`);
    expect(gaps(major).every((g) => g === 30), `bold line gaps ${gaps(major).slice(0, 12)}`);
    expect(minor.length >= 40 && [...minor, ...major].every((x) => x % 6 === 0), `thin lines at ${minor.slice(0, 12)}`);
  }, { needs: [ECGOPEN] });
  const GRID = 'at zoom 1.5 the ECG grid has a line every 6 px and a bold line every 30 px (1 mm / 5 mm)';

  // The R waves of the lead II rhythm strip of an ECG canvas (3×4, 25 mm/s)
  // at zoom z, found in its pixels, checked against the generator's RR
  // intervals; their x (from x0) and the strip's geometry.
  const rhythmPeaks = async (pg, sel, z, what) => {
    const ppm = ECG.pxPerMm * z, pxPerMs = ppm * 25 / 1000;
    const top = Math.round((ECG.topMm + 3 * ECG.rowMm) * ppm), bottom = Math.round((ECG.topMm + 4 * ECG.rowMm) * ppm);
    const base = Math.round((ECG.topMm + 3.5 * ECG.rowMm) * ppm);
    const x0 = Math.round(ECG.leftMm * ppm) + 40, W = Math.round((ECG.leftMm + 250) * ppm) - x0;
    const px = await canvasRGBA(pg, sel, x0, top, W, bottom - top);
    const height = new Array(W).fill(0);
    for (let x = 0; x < W; x++) {
      for (let y = 0; y < bottom - top; y++) {
        const i = 4 * (y * W + x);
        if (px[i] < 100 && px[i + 1] < 100 && px[i + 2] < 100) { height[x] = base - (top + y); break; }
      }
    }
    const thr = 0.5 * Math.max(...height), peaks = [];
    for (let x = 0; x < W;) {
      if (height[x] <= thr) { x++; continue; }
      let best = x;
      while (x < W && height[x] > thr) { if (height[x] > height[best]) best = x; x++; }
      peaks.push(best);
    }
    const truth = ctx.ecgTruth.rr_ms;
    expect(peaks.length === truth.length + 1, `${what}: ${peaks.length} R waves found on the rhythm strip, the generator made ${truth.length + 1}`);
    const rr = peaks.slice(1).map((p, i) => (p - peaks[i]) / pxPerMs);
    rr.forEach((v, i) => near(v, truth[i], 14, `${what}: RR ${i + 1} on the strip`));
    return { peaks, x0, base, ppm };
  };

  await checks.check('the rhythm strip\'s R waves are the generator\'s RR intervals apart, and calipers between two read that interval', async () => {
    const { peaks, x0, base, ppm } = await rhythmPeaks(page, '#ecg', 1.5, 'the ECG');
    const truth = ctx.ecgTruth.rr_ms;
    // Calipers from the 4th to the 5th R wave, 10 mm up (= 1 mV at 10 mm/mV).
    const xa = x0 + peaks[3], xb = x0 + peaks[4], ya = base, yb = base - 10 * ppm;
    // Scroll so both points are visible, then drag.
    await page.evaluate(([x, y]) => { const sc = document.querySelector('#ecg-scroll'); sc.scrollLeft = Math.max(0, x - 100); sc.scrollTop = Math.max(0, y - 200); }, [xa, yb]);
    const cb = await page.locator('#ecg').boundingBox();
    await page.mouse.move(cb.x + xa, cb.y + ya); await page.mouse.down();
    await page.mouse.move(cb.x + (xa + xb) / 2, cb.y + (ya + yb) / 2); await page.mouse.move(cb.x + xb, cb.y + yb); await page.mouse.up();
    const d = await dataset(page, '#caliper');
    near(Number(d.ms), truth[3], 14, 'caliper interval (ms)');
    near(Number(d.mv), 1.0, 0.03, 'caliper amplitude (mV)');
    await shot('ecg-calipers');
  }, { needs: [GRID] });

  await checks.check('the 6×2 and 12×1 layouts and 50 mm/s redraw the paper at the chosen scale', async () => {
    await page.selectOption('#ecg-layout', '12x1');
    await page.selectOption('#ecg-speed', '50');
    await page.selectOption('#ecg-zoom', '1');
    const d = await dataset(page, '#ecg');
    expect(d.layout === '12x1' && d.speed === '50', `ECG dataset ${JSON.stringify(d)}`);
    // 10 s at 50 mm/s is 500 mm of paper (+ margins) at 4 px/mm.
    const w = await page.evaluate(() => document.querySelector('#ecg').width);
    near(w, (ECG.leftMm + 500 + 5) * 4, 2, 'canvas width for 10 s at 50 mm/s');
    await page.selectOption('#ecg-layout', '6x2');
    await page.selectOption('#ecg-speed', '25');
    await page.selectOption('#ecg-layout', '3x4');
  }, { needs: [ECGOPEN] });

  await checks.check('the report draft autosaves and survives closing the browser, with the task still held', async () => {
    await page.click('tr.task[data-modality="CT"] button.open');
    await page.waitForSelector(`#report[data-task="${s.ctTask}"]`);
    await page.fill('#findings', FINDINGS);
    await page.fill('#impression', IMPRESSION);
    await page.waitForFunction(() => /Draft saved/.test(document.querySelector('#draft-saved').textContent), null, { timeout: 10000 });
    const draft = (await api(page, 'GET', `/api/tasks/${s.ctTask}/draft`)).json;
    expect(draft && draft.findings === FINDINGS && draft.impression === IMPRESSION, `daemon's draft ${JSON.stringify(draft)}`);
    await page.close();
    s.page = await newPage(browser, ctx.url);
    await s.page.waitForSelector('tr.task[data-modality="CT"][data-mine="1"] button.open', { timeout: 10000 });
    await s.page.click('tr.task[data-modality="CT"] button.open');
    await s.page.waitForSelector(`#report[data-task="${s.ctTask}"]`);
    await s.page.waitForFunction((f) => document.querySelector('#findings').value === f, FINDINGS, { timeout: 10000 });
  }, { needs: [CT] });
  const DRAFT = 'the report draft autosaves and survives closing the browser, with the task still held';

  await checks.check('signing asks the passphrase once, shows exactly what is signed and by whom, and the hub verifies the report', async () => {
    const p = s.page;
    await p.click('#sign');
    await p.waitForSelector('#unlock-dialog[open]');
    await p.fill('#passphrase', 'not the passphrase');
    await p.click('#unlock-confirm');
    await p.waitForFunction(() => document.querySelector('#unlock-error').textContent.length > 0, null, { timeout: 10000 });
    await p.fill('#passphrase', ctx.passphrase);
    await p.click('#unlock-confirm');
    await p.waitForSelector('#sign-dialog[open]', { timeout: 10000 });
    const what = await p.textContent('#sign-what');
    expect(what.includes(FINDINGS) && what.includes(IMPRESSION), `confirmation lacks the text: ${what}`);
    expect(what.includes(ctx.reader.name) && what.includes(ctx.reader.id), `confirmation lacks the signer: ${what}`);
    await p.screenshot({ path: path.join(shots, 'sign-confirmation.png') });
    await p.click('#sign-confirm');
    await p.waitForSelector('#signed-box:not([hidden])', { timeout: 30000 });
    const doc = await p.textContent('#signed-doc');
    expect(doc.includes(FINDINGS.slice(0, 30)) || doc.includes(JSON.stringify(FINDINGS).slice(1, 30)), `signed bytes lack the findings: ${doc.slice(0, 300)}`);
    const reportId = await p.getAttribute('#signed-box', 'data-report-id');
    expect(reportId, 'no report id');
    await p.screenshot({ path: path.join(shots, 'signed.png') });
    if (ctx.hub) {
      await ctx.hub.waitFor(async () => (await ctx.hub.hubJson('/api/v1/tasks')).counts.signed >= 1, 20000, 'the hub to count a signed task');
      const uid = s.study ? s.study.study_uid : null;
      if (uid) await ctx.hub.waitFor(async () => (await ctx.hub.hubStudies('signed')).some((x) => JSON.stringify(x).includes(uid)), 20000, 'the CT study signed at the hub');
      await ctx.hub.waitFor(() => ctx.hub.dx('reports', '--edge-data', path.join(ctx.hub.dir, 'clinic')).includes(reportId), 30000, `report ${reportId} at the clinic`);
    }
  }, { needs: [DRAFT] });
  const SIGNED = 'signing asks the passphrase once, shows exactly what is signed and by whom, and the hub verifies the report';

  // The clinic's page (`dxhub reports --serve`) in the nurse's own browser:
  // opened from its printed link, the signed report listed and opened
  // verified; it stays open while the reader signs the addendum.
  await checks.check("the clinic's page, opened from its link in the nurse's browser, lists the signed report and opens it verified", async () => {
    const clinic = path.join(ctx.hub.dir, 'clinic');
    const m = await ctx.hub.start('clinic-page', [ctx.hub.dxhub, 'reports', '--edge-data', clinic, '--serve', '0',
      '--trust', path.join(ctx.hub.dir, 'hub/keys/trust')], /^clinic page: (http:\/\/127\.0\.0\.1:\d+)\/\?token=[0-9a-f]+$/);
    s.nurse = await (await browser.newContext()).newPage();
    const scriptErrors = [];
    s.nurse.on('pageerror', (e) => scriptErrors.push(e.message));
    s.nurse.on('console', (msg) => { if (msg.type() === 'error') scriptErrors.push(msg.text()); });
    s.nurseErrors = scriptErrors;
    const stranger = await (await browser.newContext()).newPage();
    const refused = await stranger.goto(m[1] + '/');
    expect(refused.status() === 401, `the page without its link answered ${refused.status()}`);
    await stranger.context().close();
    await s.nurse.goto(m[0].slice('clinic page: '.length));
    expect(new URL(s.nurse.url()).search === '', `the token stays in the address bar: ${s.nurse.url()}`);
    const reportId = await s.page.getAttribute('#signed-box', 'data-report-id');
    s.signedId = reportId;
    const row = `tr[id="${reportId}"]`;
    await s.nurse.waitForSelector(row, { timeout: 5000 });
    await s.nurse.click(`${row} a`);
    await s.nurse.waitForSelector('h1', { timeout: 10000 });
    const text = await s.nurse.textContent('body');
    expect(text.includes(IMPRESSION) && text.includes(ctx.reader.id), `the report page lacks the impression or the signer: ${text.slice(0, 400)}`);
    await s.nurse.screenshot({ path: path.join(shots, 'clinic-report.png') });
    await s.nurse.click('p.back a');
    await s.nurse.waitForSelector(row, { timeout: 5000 });
    await s.nurse.screenshot({ path: path.join(shots, 'clinic-list.png') });
  }, { needs: [SIGNED] });
  const CLINIC = "the clinic's page, opened from its link in the nurse's browser, lists the signed report and opens it verified";

  await checks.check('an addendum to the signed report is its own signed document, and it reaches the clinic', async () => {
    const p = s.page;
    const original = await p.getAttribute('#signed-box', 'data-report-id');
    await p.fill('#addendum', ADDENDUM);
    await p.click('#sign-addendum');
    await p.waitForSelector('#sign-dialog[open]', { timeout: 10000 });
    const what = await p.textContent('#sign-what');
    expect(what.includes(ADDENDUM) && what.includes(original), `confirmation lacks the addendum or the report it follows: ${what}`);
    await p.click('#sign-confirm');
    await p.waitForSelector('#addendum-done[data-report-id]', { timeout: 30000 });
    const id = await p.getAttribute('#addendum-done', 'data-report-id');
    expect(id && id !== original, `addendum id ${id} (report ${original})`);
    s.addendumId = id;
    expect(await p.getAttribute('#signed-box', 'data-report-id') === original, 'the signed report was replaced in the panel');
    if (ctx.hub) await ctx.hub.waitFor(() => ctx.hub.dx('reports', '--edge-data', path.join(ctx.hub.dir, 'clinic')).includes(id), 30000, `addendum ${id} at the clinic`);
    // the priors panel answers from the hub's lookup for the ECG's patient (no earlier signed exam)
    await p.evaluate(() => { delete document.querySelector('#priors').dataset.state; });
    await p.click('tr.task[data-kind="ecg"] button.open');
    await p.waitForSelector('#priors[data-state="done"]', { timeout: 15000 });
    const priors = await p.textContent('#priors');
    expect(/No prior signed reports/.test(priors), `priors panel: ${priors}`);
  }, { needs: [SIGNED] });

  await checks.check("the clinic's page shows the addendum when it arrives, with nobody touching it, and says so when it cannot", async () => {
    await s.nurse.waitForSelector(`tr[id="${s.addendumId}"]`, { timeout: 15000 });
    const row = await s.nurse.textContent(`tr[id="${s.addendumId}"]`);
    expect(row.includes(`addendum to ${s.signedId}`), `the addendum's row: ${row}`);
    expect(s.nurseErrors.length === 0, `script errors on the clinic's page: ${s.nurseErrors.join('; ')}`);
    // the page's server stops: a list that silently stopped updating would hide the next alert
    const server = ctx.hub.procs.find((x) => x.name === 'clinic-page').p;
    server.kill('SIGTERM');
    await s.nurse.waitForSelector('#stale:not([hidden])', { timeout: 12000 });
    const said = await s.nurse.textContent('#stale');
    expect(/^NOT UPDATING since .*does not answer/.test(said), `the page says "${said}"`);
    await s.nurse.screenshot({ path: path.join(shots, 'clinic-not-updating.png') });
    await s.nurse.context().close();
  }, { needs: [CLINIC, 'an addendum to the signed report is its own signed document, and it reaches the clinic'] });

  // The clinic pushes a study (push's arguments); the page claims the new
  // task of rows (not task `first`) once offered, and its report and
  // priors panels open.  Its task id.
  const pushAndClaim = async (p, rows, first, ...push) => {
    ctx.hub.dx('push', '--edge-data', path.join(ctx.hub.dir, 'clinic'), ...push);
    const id = await p.waitForFunction(([rows, first]) => {
      const r = [...document.querySelectorAll(rows)].find((t) => t.dataset.taskId !== first && t.querySelector('button.claim'));
      return r && r.dataset.taskId;
    }, [rows, first], { timeout: 60000 }).then((h) => h.jsonValue());
    await p.evaluate(() => { delete document.querySelector('#priors').dataset.state; });
    await p.click(`tr.task[data-task-id="${id}"] button.claim`);
    await p.waitForSelector(`#report[data-task="${id}"]`, { timeout: 30000 });
    await p.waitForSelector('#priors[data-state="done"]', { timeout: 15000 });
    return id;
  };

  await checks.check('a new CT of the patient opens the signed CT beside it: its own stack, the same window and scale, pydicom\'s pixels', async () => {
    const p = s.page, hub = ctx.hub;
    expect(s.study, 'the first CT\'s listing was not taken (the lung window check)');
    s.followUp = await pushAndClaim(p, 'tr.task[data-modality="CT"]', s.ctTask, '--note', 'follow-up of a nodule', hub.ct2Dir);
    await waitImage(p, { slice: 1 }, 0, 30000);
    const button = `table.priors tr[data-study="${s.study.study_uid}"] button.compare`;
    await p.waitForSelector(button, { timeout: 5000 });
    // the signed CT is the prior the workstation fetches ahead: its button turns ready in the open panel
    await p.waitForSelector(`${button}.ready`, { timeout: 20000 });
    await p.click(button);
    await p.waitForSelector('#compare-pane[data-state="open"]', { timeout: 30000 });
    const first = s.study.series.flatMap((x) => x.instances).filter((i) => !i.waveform)[0];
    await waitImage(p, { slice: 1 }, 0, 30000, '#compare-image');
    const title = await p.textContent('#compare-title');
    expect(/^Prior: .*2024-01-15/.test(title), `the prior's title says "${title}"`);
    const corner = await p.textContent('#cv-bl .slice');
    expect(corner === `Im 1/${s.slices.split('/')[1]}`, `the prior's slice corner says "${corner}" (the study: ${s.slices})`);
    // the toolbar acts on both: the lung window at 1:1, the prior's canvas as pydicom's pixels
    const before = Number((await dataset(p, '#compare-image')).draws);
    await p.click('button[data-preset="lung"]');
    await p.click('#actual');
    await waitImage(p, { window: '-600/1500', zoom: '1.0000' }, -1, 15000);
    await waitImage(p, { window: '-600/1500', zoom: '1.0000', slice: 1 }, before, 15000, '#compare-image');
    const tmp = fs.mkdtempSync(path.join(shots, 'oracle-'));
    try {
      const { stdout } = await promisify(execFile)(ctx.py, [path.join(ctx.here, 'oracle.py'), 'windows', ctx.ctDir, first.sop, tmp, '-600,1500']);
      const o = { ...JSON.parse(stdout)[0], pixels: fs.readFileSync(path.join(tmp, '-600_1500.raw')) };
      await compare(o, 'the prior at the lung window', p, '#compare-image');
    } finally { fs.rmSync(tmp, { recursive: true, force: true }); }
    // its own stack: the wheel over it scrolls the prior, not the study
    const study = Number((await dataset(p, '#image')).slice);
    const box = await p.locator('#compare-viewport').boundingBox();
    await p.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    for (let i = 0; i < 3; i++) await p.mouse.wheel(0, 100);
    await waitImage(p, { slice: 4 }, -1, 15000, '#compare-image');
    expect(Number((await dataset(p, '#image')).slice) === study, 'the wheel over the prior scrolled the study');
    // linked: the study scrolls and the prior follows, keeping the offset between them
    const loc = async (sel) => Number(/Loc (-?[\d.]+) mm/.exec(await p.textContent(sel))[1]);
    const offset = (await loc('#cv-bl')) - (await loc('#ov-bl'));
    await p.click('#compare-link');
    const vbox = await p.locator('#viewport').boundingBox();
    await p.mouse.move(vbox.x + vbox.width / 2, vbox.y + vbox.height / 2);
    for (let i = 0; i < 2; i++) await p.mouse.wheel(0, 100);
    await waitImage(p, { slice: study + 2 }, -1, 15000);
    await p.waitForFunction(([off]) => {
      const l = (sel) => Number(/Loc (-?[\d.]+) mm/.exec(document.querySelector(sel).textContent)?.[1]);
      return Math.abs(l('#cv-bl') - l('#ov-bl') - off) < 0.5;
    }, [offset], { timeout: 15000 });
    expect(Number((await dataset(p, '#compare-image')).slice) === 6, `the linked prior shows slice ${(await dataset(p, '#compare-image')).slice}, not 6`);
    await p.screenshot({ path: path.join(shots, 'compare.png') });
    await p.click('#compare-close');
    expect(await p.isHidden('#compare-pane'), 'the prior stayed open after ×');
  }, { needs: [SIGNED] });

  await checks.check('the patient\'s CT nobody has read yet is listed under "Not reported yet" and opens beside the follow-up too', async () => {
    const p = s.page, hub = ctx.hub;
    expect(s.followUp, 'the follow-up CT was not claimed (previous check)');
    hub.dx('push', '--edge-data', path.join(hub.dir, 'clinic'), '--note', 'an exam not read yet', hub.ct3Dir);
    await p.waitForFunction((known) => [...document.querySelectorAll('tr.task[data-modality="CT"]')]
      .some((t) => !known.includes(t.dataset.taskId)), [s.ctTask, s.followUp], { timeout: 60000 });
    await p.evaluate(() => { delete document.querySelector('#priors').dataset.state; });
    await p.click(`tr.task[data-task-id="${s.followUp}"] button.open`);
    await p.waitForSelector('#priors[data-state="done"]', { timeout: 15000 });
    const rows = await p.$$eval('table.priors.unreported tr[data-study]', (trs) => trs.map((t) => ({ study: t.dataset.study, text: t.textContent })));
    const unread = rows.filter((r) => r.text.includes('2024-03-01'));
    expect(unread.length === 1, `"Not reported yet" lists ${JSON.stringify(rows)}`);
    expect(!rows.some((r) => r.study === s.study.study_uid), 'the signed CT is listed as not reported');
    // the signed CT is the follow-up's prior the workstation fetched ahead: its Compare says it is ready
    const ready = await p.$$eval('table.priors:not(.unreported) button.compare.ready',
      (b) => b.map((x) => x.closest('tr').dataset.study));
    // (its report and its addendum: two rows of one study)
    expect(ready.length >= 1 && ready.every((x) => x === s.study.study_uid), `Compare marked ready on ${JSON.stringify(ready)}, not the signed CT`);
    // and the worklist's row says so before the task is opened
    await p.waitForSelector(`tr.task[data-task-id="${s.followUp}"] span.prior-ready`, { timeout: 15000 });
    await p.click(`table.priors.unreported tr[data-study="${unread[0].study}"] button.compare`);
    await p.waitForSelector(`#compare-pane[data-state="open"][data-study="${unread[0].study}"]`, { timeout: 30000 });
    await waitImage(p, { slice: 1 }, 0, 30000, '#compare-image');
    const corner = await p.textContent('#cv-bl .slice');
    expect(corner === 'Im 1/4', `the unread prior's slice corner says "${corner}"`);
    // it is the task's comparison now: its Compare is the one that opens at once
    await p.waitForSelector(`table.priors.unreported tr[data-study="${unread[0].study}"] button.compare.ready`, { timeout: 15000 });
    const still = await p.$$eval('table.priors:not(.unreported) button.compare.ready', (b) => b.length);
    expect(still === 0, `the signed CT's Compare still says ready (${still}) after another prior replaced it`);
    await p.click('#compare-close');
  }, { needs: ['a new CT of the patient opens the signed CT beside it: its own stack, the same window and scale, pydicom\'s pixels'] });

  await checks.check('the patient\'s CT signed at the county hospital\'s hub opens beside the follow-up, read through this hub', async () => {
    const p = s.page, hub = ctx.hub;
    expect(s.followUp, 'the follow-up CT was not claimed');
    const county = await hub.countyHub();
    const button = `table.priors tr[data-study="${county}"][data-hub="county"] button.compare`;
    // the priors panel asks again when the task opens; the lead hub asks the county hub
    await hub.waitFor(async () => {
      await p.evaluate(() => { delete document.querySelector('#priors').dataset.state; });
      await p.click(`tr.task[data-task-id="${s.followUp}"] button.open`);
      await p.waitForSelector('#priors[data-state="done"]', { timeout: 15000 });
      return (await p.$(button)) !== null;
    }, 30000, 'the county exam with Compare in the priors panel');
    await p.click(button);
    await p.waitForSelector(`#compare-pane[data-state="open"][data-study="${county}"]`, { timeout: 30000 });
    await waitImage(p, { slice: 1 }, 0, 30000, '#compare-image');
    const corner = await p.textContent('#cv-bl .slice');
    expect(corner === 'Im 1/4', `the county prior's slice corner says "${corner}"`);
    const title = await p.textContent('#compare-title');
    expect(title.includes('county'), `the prior's title does not say where it is from: "${title}"`);
    await p.click('#compare-close');
    // opened once, it is the task's comparison, cached and laid out: Compare on its row says so
    await p.waitForSelector(`${button}.ready`, { timeout: 15000 });
  }, { needs: ['a new CT of the patient opens the signed CT beside it: its own stack, the same window and scale, pydicom\'s pixels'] });

  await checks.check('a new ECG of the patient shows the signed prior ECG beneath it on the same paper, its R waves where the generator put them', async () => {
    const p = s.page, hub = ctx.hub;
    const first = await p.getAttribute('tr.task[data-kind="ecg"]', 'data-task-id');
    const signed = await api(p, 'POST', `/api/tasks/${first}/submit`, { action: 'sign', findings: 'Sinus rhythm. Normal axis. No ST change.',
      impression: 'Normal ECG.', critical: false });
    expect(signed.status === 200, `signing the first ECG: ${signed.status} ${signed.text.slice(0, 200)}`);
    await pushAndClaim(p, 'tr.task[data-kind="ecg"]', first, '--priority', 'stat', '--note', 'chest pain again', hub.ecg2File);
    const rows = await p.$$eval('table.priors button.compare', (b) => b.length);
    expect(rows >= 1, 'no Compare on the prior ECG');
    // the earlier ECG is the one the workstation fetches ahead for this one
    await p.waitForSelector('table.priors button.compare.ready', { timeout: 20000 });
    await p.click('table.priors button.compare');
    await p.waitForSelector('#ecg-compare[data-state="open"]', { timeout: 30000 });
    const title = await p.textContent('#ecg-compare-title');
    expect(/^Prior: ECG /.test(title), `the prior's title says "${title}"`);
    // the same paper: layout, speed, gain and scale as the ECG read, and they follow its settings
    const pick = (d) => ({ layout: d.layout, speed: d.speed, gain: d.gain, pxPerMm: d.pxPerMm });
    expect(JSON.stringify(pick(await dataset(p, '#ecg-prior'))) === JSON.stringify(pick(await dataset(p, '#ecg'))),
      `prior ${JSON.stringify(await dataset(p, '#ecg-prior'))} vs ${JSON.stringify(await dataset(p, '#ecg'))}`);
    await p.selectOption('#ecg-zoom', '1.5');
    await p.waitForFunction(() => document.querySelector('#ecg-prior').dataset.pxPerMm === '6', null, { timeout: 5000 });
    await rhythmPeaks(p, '#ecg-prior', 1.5, 'the prior ECG');
    await rhythmPeaks(p, '#ecg', 1.5, 'the new ECG');
    await p.screenshot({ path: path.join(shots, 'ecg-compare.png') });
    await p.click('#ecg-compare-close');
    expect(await p.isHidden('#ecg-compare'), 'the prior ECG stayed open after ×');
  }, { needs: [SIGNED] });

  await checks.check('a resident\'s draft comes for review: read, returned with a reason the resident sees, revised, then signed naming the resident', async () => {
    const p = s.page, hub = ctx.hub;
    const res = await hub.resident();
    s.resident = res;
    const rapi = async (method, url, body) => {
      const r = await fetch(res.base + url, { method, headers: { 'X-Dxhub-Token': res.token, 'Content-Type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined });
      return { status: r.status, json: await r.json() };
    };
    const crTask = async () => (await rapi('GET', '/api/tasks')).json.tasks.find((t) => t.modality === 'CR');
    const cr = await hub.waitFor(crTask, 60000, 'the CR offered to the resident');
    expect((await rapi('POST', `/api/tasks/${cr.id}/claim`)).status === 200, 'the resident could not claim the CR');
    const first = { findings: 'Lungs clear (双肺清晰).', impression: 'Normal chest.', critical: false };
    const d1 = await rapi('POST', `/api/tasks/${cr.id}/submit`, { action: 'draft', ...first });
    expect(d1.json.state === 'review', `resident's draft: ${JSON.stringify(d1.json)}`);
    await hub.readersAlsoCR();
    const row = `tr.task[data-task-id="${cr.id}"][data-review="1"] button.claim`;
    await p.waitForSelector(row, { timeout: 30000 });
    await p.click(row);
    await p.waitForSelector(`#report[data-task="${cr.id}"]`, { timeout: 30000 });
    const by = await p.textContent('#review-by');
    expect(by.includes(RESIDENT.name) && by.includes(RESIDENT.id), `review box names ${by}`);
    expect(await p.textContent('#review-findings') === first.findings, 'the review box lacks the resident\'s findings');
    expect(await p.inputValue('#findings') === first.findings, 'the report does not start from the resident\'s text');
    await p.screenshot({ path: path.join(shots, 'review.png') });
    await p.click('#return');
    await p.waitForSelector('#return-dialog[open]');
    await p.fill('#return-reason', REASON);
    await p.click('#return-confirm');
    const back = await hub.waitFor(async () => { const t = await crTask(); return t && t.mine && t.returned === REASON && t; },
      20000, 'the task back at the resident with the reason');
    expect(back.state === 'claimed', `returned task ${JSON.stringify(back)}`);
    const revised = { ...first, findings: `${first.findings} Heart size normal.` };
    const d2 = await rapi('POST', `/api/tasks/${cr.id}/submit`, { action: 'draft', ...revised });
    expect(d2.json.state === 'review', `revised draft: ${JSON.stringify(d2.json)}`);
    await p.waitForSelector(row, { timeout: 30000 });
    await p.click(row);
    await p.waitForFunction((f) => document.querySelector('#review-findings').textContent === f, revised.findings, { timeout: 15000 });
    await p.waitForFunction(() => !document.querySelector('#review-box').hidden && document.querySelector('#report').dataset.task, null, { timeout: 15000 });
    await p.check('#critical'); // the next check follows it to the clinic
    await p.click('#sign');
    await p.waitForSelector('#sign-dialog[open]', { timeout: 10000 });
    const what = await p.textContent('#sign-what');
    expect(what.includes(RESIDENT.name) && what.includes(revised.findings), `confirmation: ${what}`);
    await p.click('#sign-confirm');
    await p.waitForSelector('#signed-box:not([hidden])', { timeout: 30000 });
    const doc = JSON.parse(await p.textContent('#signed-doc'));
    expect(doc.drafted_by && doc.drafted_by.id === RESIDENT.id && doc.drafted_by.name === RESIDENT.name, `signed: ${JSON.stringify(doc.drafted_by)}`);
    expect(doc.reader.id === ctx.reader.id && doc.findings === revised.findings, `signed by ${doc.reader.id}: ${doc.findings}`);
    s.criticalId = doc.report_id;
  });

  await checks.check('the signer follows the critical value to the clinic: not yet read there, then read once a nurse confirms it', async () => {
    const p = s.page;
    expect(s.criticalId, 'no critical value signed (previous check)');
    await p.waitForSelector('#signed-alert[data-state="unread"]', { timeout: 30000 });
    const said = await p.textContent('#signed-alert');
    expect(/NOT YET READ/.test(said) && /clinic1/.test(said), `the signer's page says "${said}"`);
    await p.screenshot({ path: path.join(shots, 'critical-unread.png') });
    ctx.hub.dx('reports', '--edge-data', path.join(ctx.hub.dir, 'clinic'), '--ack', s.criticalId, '--by', '护士 王');
    await p.waitForSelector('#signed-alert[data-state="read"]', { timeout: 30000 });
  }, { needs: ['a resident\'s draft comes for review: read, returned with a reason the resident sees, revised, then signed naming the resident'] });

  await checks.check('a signing certificate that ends within 30 days is shown with its date, one a year away not; a nearly full disk and a revoked key too', async () => {
    expect(await (s.page || page).isHidden('#cert-state'), 'the attending\'s page warns about a certificate a year away');
    expect(s.resident, 'the resident\'s workstation did not start (previous check)');
    const rp = await newPage(browser, s.resident.url);
    try {
      await rp.waitForSelector('#cert-state:not([hidden])', { timeout: 15000 });
      const text = await rp.textContent('#cert-state');
      const ends = [0, 60e3].map((back) => new Date(Date.now() + 20 * 86400e3 - back).toISOString().slice(0, 10));
      expect(ends.some((end) => new RegExp(`^certificate ends ${end} \\(in (19|20) days\\)$`).test(text)),
        `the pill says "${text}"`);
      expect((await rp.getAttribute('#cert-state', 'class')).includes('ending'), 'the pill is not marked as ending');
      await rp.screenshot({ path: path.join(shots, 'certificate-ending.png') });
      // The PC's disk, from the session: hidden with room; with 500 MiB free (the daemon's answer
      // altered on its way to the page), said.
      expect(await rp.isHidden('#disk-state'), 'the disk pill shows on a disk with room');
      await rp.route('**/api/session', async (route) => {
        const r = await route.fetch();
        const j = await r.json();
        j.cache.disk_free = 500 * 2 ** 20;
        j.hub = 'revoked'; // the hub refusing this workstation's key (e2e: test_workstation_faults.py)
        await route.fulfill({ response: r, json: j });
      });
      await rp.reload();
      await rp.waitForSelector('#disk-state:not([hidden])', { timeout: 15000 });
      const disk = await rp.textContent('#disk-state');
      expect(disk === 'disk nearly full: 500 MiB free', `the disk pill says "${disk}"`);
      const hub = await rp.textContent('#hub-state');
      expect(hub === "hub refused this workstation's key (revoked): call IT", `the hub pill says "${hub}"`);
      const bg = await rp.$eval('#hub-state', (e) => getComputedStyle(e).backgroundColor);
      expect(bg === 'rgb(92, 31, 31)', `the revoked pill is not red: ${bg}`);
    } finally { await rp.close(); }
  });

  return { page: s.page || page, state: s };
}

async function newPage(browser, url) {
  const page = await browser.newPage({ viewport: { width: 1700, height: 1050 } });
  page.on('pageerror', (e) => console.log(`    page error: ${e.message}`));
  await page.goto(url);
  return page;
}
