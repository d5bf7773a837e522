// perf.mjs — the viewer's speed, measured in real Chromium against the real
// daemon (make bench, section "viewer"): time from clicking a prefetched
// study to its first image drawn, slices drawn per second while scrolling
// the whole CT, window/level updates per second during a right-drag, and
// the time to draw a 10-second 12-lead ECG.  Targets are printed beside
// the figures (peer "target"), never asserted.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from './checks.mjs';
import { api, waitImage, dataset } from './page.mjs';

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

export async function perf({ browser, ctx, checks, out }) {
  const page = await browser.newPage({ viewport: { width: 1700, height: 1050 } });
  page.on('pageerror', (e) => console.log(`    page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.log(`    page ${m.type()}: ${m.text()}`); });
  await page.goto(ctx.url);
  const rows = [];
  const row = (metric, value, unit, target, higherIsBetter) => {
    rows.push({ metric, value: Number(value.toFixed(2)), unit, peer: 'target', peer_value: target,
      ratio: Number((higherIsBetter ? value / target : target / value).toFixed(3)) });
  };
  let ctTask = null, slices = 0, cold = null, claimed = null;

  await checks.check('bench: the CT is claimed and prefetched by the workstation', async () => {
    await page.waitForSelector('tr.task[data-modality="CT"] button.claim', { timeout: 60000 });
    ctTask = await page.getAttribute('tr.task[data-modality="CT"]', 'data-task-id');
    const prefetched = async () => {
      const t = (await api(page, 'GET', '/api/tasks')).json.tasks.find((x) => String(x.id) === ctTask);
      return t && t.prefetched >= 1;
    };
    await ctx.hub.waitFor(prefetched, 180000, 'the offered CT prefetched by the daemon');
    // ... and laid out (first_image named), its first frame taken by the page
    const warmed = async () => {
      const t = (await api(page, 'GET', '/api/tasks')).json.tasks.find((x) => String(x.id) === ctTask);
      return t && t.first_image && page.evaluate((sop) => performance.getEntriesByType('resource')
        .some((e) => e.name.includes(`/instances/${sop}/frames/1`) && e.responseEnd > 0), t.first_image);
    };
    await ctx.hub.waitFor(warmed, 60000, 'the offered CT laid out and its first frame in the page');
    await page.click('tr.task[data-modality="CT"] button.claim');
    await waitImage(page, { slice: 1 }, 0, 60000);
    // The first open: the page took the offer's listing and first frame
    // while it was offered (the daemon prefetched and laid it out); the
    // layout of the image mode and the first draw happen now.
    cold = await page.evaluate(() => performance.getEntriesByName('dxhub:first-image')[0].startTime
      - performance.getEntriesByName('dxhub:open')[0].startTime);
    claimed = await page.evaluate(() => performance.getEntriesByName('dxhub:first-image')[0].startTime
      - performance.getEntriesByName('dxhub:claim')[0].startTime);
    slices = Number((await page.textContent('.corner.bl .slice')).match(/\/(\d+)/)[1]);
  });

  await checks.check('bench: open a prefetched 512×512 CT, to its first image drawn', async () => {
    const times = [];
    for (let i = 0; i < 7; i++) {
      const before = Number((await dataset(page, '#image')).draws || 0);
      await page.click('tr.task[data-modality="CT"] button.open');
      await waitImage(page, { slice: 1 }, before, 30000);
      times.push(await page.evaluate(() => {
        const a = performance.getEntriesByName('dxhub:open')[0], b = performance.getEntriesByName('dxhub:first-image')[0];
        return b.startTime - a.startTime;
      }));
    }
    row('open_to_first_image_ms', median(times), 'ms', 100, false);
    row('open_to_first_image_ms_first_time', cold, 'ms', 100, false);
    row('claim_click_to_first_image_ms', claimed, 'ms', 100, false);
    console.log(`    open → first image: median ${median(times).toFixed(1)} ms of ${times.map((t) => t.toFixed(0)).join(' ')}; `
      + `the first open (nothing in the page yet) ${cold.toFixed(1)} ms, `
      + `${claimed.toFixed(1)} ms from the click on Claim (the hub's durable claim included)`);
  }, { needs: ['bench: the CT is claimed and prefetched by the workstation'] });

  // Scroll the whole stack one slice per wheel event, each waiting for its
  // slice to be drawn: a reader spinning the wheel as fast as the viewer goes.
  const scroll = (dir) => page.evaluate(async ([n, dir]) => {
    const v = document.querySelector('#viewport'), c = document.querySelector('#image');
    const t0 = performance.now();
    for (let i = 1; i < n; i++) {
      const want = dir > 0 ? i + 1 : n - i;
      v.dispatchEvent(new WheelEvent('wheel', { deltaY: 100 * dir, bubbles: true, cancelable: true }));
      await new Promise((res) => { const chk = () => (Number(c.dataset.slice) === want ? res() : requestAnimationFrame(chk)); chk(); });
    }
    return (n - 1) / ((performance.now() - t0) / 1000);
  }, [slices, dir]);

  await checks.check('bench: scroll the whole CT (slices drawn per second)', async () => {
    await page.click('button[data-preset="lung"]');
    const cold = await scroll(1);        // frames from the daemon's cache, prefetched ahead by the page
    const warm = await scroll(-1);       // back over frames the page holds
    row(`scroll_fps_${slices}_slices`, cold, 'frames/s', 30, true);
    row(`scroll_fps_${slices}_slices_in_page`, warm, 'frames/s', 30, true);
    console.log(`    scroll: ${cold.toFixed(1)} slices/s (first pass), ${warm.toFixed(1)} slices/s (back)`);
  }, { needs: ['bench: the CT is claimed and prefetched by the workstation'] });

  await checks.check('bench: window/level right-drag (updates drawn per second)', async () => {
    const box = await page.locator('#viewport').boundingBox();
    const x = box.x + box.width / 2, y = box.y + box.height / 2;
    await page.mouse.move(x, y);
    await page.mouse.down({ button: 'right' });
    const d0 = await dataset(page, '#image');
    const t0 = Date.now();
    const costs = [];
    for (let i = 1; i <= 240; i++) {
      await page.mouse.move(x + (i % 40) * 3, y + i);
      if (i % 20 === 0) costs.push(Number((await dataset(page, '#image')).ms));
    }
    await page.waitForTimeout(50);
    const d1 = await dataset(page, '#image');
    const secs = (Date.now() - t0) / 1000;
    await page.mouse.up({ button: 'right' });
    expect(d1.window !== d0.window, 'the window did not change');
    const rate = (Number(d1.draws) - Number(d0.draws)) / secs;
    row('wl_drag_updates_per_s', rate, 'updates/s', 30, true);
    row('wl_update_draw_ms', median(costs), 'ms', 33.3, false);
    console.log(`    W/L drag: ${rate.toFixed(1)} updates/s; one update draws in ${median(costs).toFixed(2)} ms (median)`);
  }, { needs: ['bench: the CT is claimed and prefetched by the workstation'] });

  await checks.check('bench: draw a 10-second 12-lead ECG', async () => {
    await page.click('tr.task[data-modality="ECG"] button.claim');
    await page.waitForFunction(() => Number(document.querySelector('#ecg').dataset.draws || 0) > 0 && !document.querySelector('#ecg-mode').hidden, null, { timeout: 60000 });
    for (const layout of ['3x4', '12x1']) {
      await page.selectOption('#ecg-layout', layout);
      const ms = [];
      for (let i = 0; i < 9; i++) {
        await page.selectOption('#ecg-gain', ['5', '10', '20'][i % 3]);
        ms.push(Number((await dataset(page, '#ecg')).ms));
      }
      row(`ecg_draw_ms_${layout}`, median(ms), 'ms', 50, false);
      console.log(`    ECG ${layout}: drawn in ${median(ms).toFixed(2)} ms (median of 9)`);
    }
  });

  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(rows, null, 1) + '\n');
  await page.close();
}
