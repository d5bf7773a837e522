// worklist.js — the reader's tasks by urgency: priority colour, due-time
// countdown, origin clinic, exam, referral flag, clinical note; claim with
// one click; STAT arrivals announce themselves (banner, flashing title).
// Kept current by the daemon's event stream, with a 2-s poll as fallback.
import { get, post, events } from './api.js';
import { el, countdown, status } from './util.js';

const RANK = { STAT: 0, URGENT: 1, ROUTINE: 2 };

export class Worklist {
  constructor({ body, banner, count, onOpen, onTasks }) {
    this.body = body; this.banner = banner; this.count = count; this.onOpen = onOpen; this.onTasks = onTasks || (() => {});
    this.tasks = []; this.skew = 0; this.openId = null;
    this.claimed = new Map();   // id -> {task, at}: claimed here, until the daemon's list shows it held
    this.announced = new Set(JSON.parse(sessionStorage.getItem('dxhub.stat-seen') || '[]'));
  }

  start() {
    this.refresh();
    setInterval(() => this.refresh(), 2000);
    setInterval(() => this.tick(), 1000);
    this.listen();
  }

  async listen() {
    for (let wait = 1000; ; wait = Math.min(wait * 2, 30000)) {
      try {
        await events((name) => { if (name === 'tasks') this.refresh(); });
        wait = 1000;
      } catch (_) { /* the poll keeps the list current meanwhile */ }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  now() { return Date.now() + this.skew; }

  async refresh() {
    if (this.busy) return;
    this.busy = true;
    try {
      const r = await get('/api/tasks');
      if (typeof r.now === 'number') this.skew = r.now - Date.now();
      const tasks = (r.tasks || []).slice();
      // Just after a claim the daemon's list can miss the task for a few
      // seconds (its offers are replaced before the held set is listed):
      // keep showing it as held rather than letting it blink away.
      for (const [id, c] of this.claimed) {
        const t = tasks.find((x) => String(x.id) === id);
        if ((t && t.mine) || Date.now() - c.at > 30000) this.claimed.delete(id);
        else if (!t) tasks.push(c.task);
      }
      this.tasks = tasks.sort((a, b) =>
        (RANK[a.priority] ?? 9) - (RANK[b.priority] ?? 9) || (a.due || 0) - (b.due || 0));
      this.render();
      this.announce();
      this.onTasks(this.tasks);
    } catch (e) {
      status(`Worklist: ${e.message}`, true);
    } finally { this.busy = false; }
  }

  find(id) { return this.tasks.find((t) => String(t.id) === String(id)); }

  render() {
    this.count.textContent = `${this.tasks.filter((t) => t.mine).length} held · ${this.tasks.filter((t) => t.state === 'offered').length} offered`;
    const rows = this.tasks.map((t) => {
      const action = t.mine
        ? el('button.open', { onclick: (e) => { e.stopPropagation(); this.open(t); }, text: 'Open' })
        : t.state === 'offered' ? el('button.claim', { onclick: (e) => { e.stopPropagation(); this.claim(t); }, text: 'Claim' }) : '';
      const pct = Math.round((t.prefetched || 0) * 100);
      return el(`tr.task.p-${(t.priority || 'ROUTINE').toLowerCase()}`,
        { dataset: { taskId: t.id, state: t.state, mine: t.mine ? '1' : '0', modality: t.modality || '', kind: t.kind || '',
          review: t.review ? '1' : '0', returned: t.returned ? '1' : '0' },
          class: String(t.id) === String(this.openId) ? 'current' : null,
          ondblclick: () => (t.mine ? this.open(t) : t.state === 'offered' && this.claim(t)) },
        el('td', null, el('span.prio', { text: t.priority })),
        el('td.due', { dataset: { due: t.due } }),
        el('td', { text: t.facility || '' }),
        el('td', null, el('b', { text: t.modality || '' }), ' ', t.body_part || '', ' ',
          t.referral ? el('span.referral', { title: 'Referred patient (转诊)', text: '转诊' }) : '',
          t.note ? el('div.note', { title: t.note, text: t.note }) : ''),
        el('td', null, el('span.state', { text: t.returned ? 'returned' : t.review && t.state !== 'signed' ? `${t.state} · review` : t.state,
          title: t.returned ? `Returned for revision by ${t.returned_by || 'the reviewer'}: ${t.returned}` : '' }),
        t.mine && pct < 100 ? el('span.pf', { text: ` ${pct}%` }) : '',
        t.mine && t.prior && t.prior.ready
          ? el('span.prior-ready', { title: 'The patient\'s prior is here: Compare opens it at once', text: ' prior ✓' }) : ''),
        el('td', null, action));
    });
    this.body.replaceChildren(...rows);
    // The STAT banner goes when its task is no longer offered (claimed here
    // or elsewhere); a task missing from one list may be between offers.
    const shown = this.find(this.banner.dataset.taskId);
    if (!this.banner.hidden) {
      if (shown && shown.state !== 'offered') this.hideBanner();
      else if (shown) this.bannerMissing = null;
      else if (!this.bannerMissing) this.bannerMissing = Date.now();
      else if (Date.now() - this.bannerMissing > 30000) this.hideBanner();
    }
    this.tick();
  }

  // Countdown cells only: cheap enough for every second.
  tick() {
    const now = this.now();
    for (const td of this.body.querySelectorAll('td.due')) {
      const due = Number(td.dataset.due);
      if (!due) { td.textContent = ''; continue; }
      td.textContent = countdown(due - now);
      td.classList.toggle('overdue', due < now);
      td.classList.toggle('soon', due >= now && due - now < 15 * 60000);
    }
    const stat = this.tasks.filter((t) => t.priority === 'STAT' && t.state === 'offered');
    document.title = (stat.length ? `(${stat.length} STAT) ` : '') + 'dxhub reading';
  }

  announce() {
    const fresh = this.tasks.filter((t) => t.priority === 'STAT' && t.state === 'offered' && !this.announced.has(String(t.id)));
    if (!fresh.length) return;
    for (const t of fresh) this.announced.add(String(t.id));
    sessionStorage.setItem('dxhub.stat-seen', JSON.stringify([...this.announced].slice(-200)));
    const t = fresh[0];
    this.banner.replaceChildren(
      el('strong', { text: 'STAT' }), ' ',
      el('span', { text: `${t.modality || ''} ${t.body_part || ''} from ${t.facility || 'a clinic'}${t.note ? ` — ${t.note}` : ''}` }),
      fresh.length > 1 ? el('span', { text: ` (+${fresh.length - 1} more)` }) : '',
      el('button', { text: 'Claim', onclick: () => { this.hideBanner(); this.claim(t); } }),
      el('button', { text: 'Dismiss', onclick: () => this.hideBanner() }));
    this.banner.dataset.taskId = t.id;
    this.banner.hidden = false;
    this.banner.classList.remove('flash'); void this.banner.offsetWidth; this.banner.classList.add('flash');
  }

  hideBanner() { this.banner.hidden = true; this.bannerMissing = null; }

  async claim(t) {
    performance.clearMarks('dxhub:claim'); performance.mark('dxhub:claim');
    try {
      const r = await post(`/api/tasks/${encodeURIComponent(t.id)}/claim`);
      status(`Claimed task ${t.id}`);
      this.claimed.set(String(t.id), { task: Object.assign({}, t, r.task || {}, { mine: true, state: 'claimed' }), at: Date.now() });
      await this.refresh();
      this.open(Object.assign({}, t, r.task || {}, { mine: true }));
    } catch (e) {
      status(`Claim ${t.id}: ${e.message}`, true);
      this.refresh();
    }
  }

  async release(t) {
    try { await post(`/api/tasks/${encodeURIComponent(t.id)}/release`); status(`Released task ${t.id}`); } catch (e) { status(`Release: ${e.message}`, true); }
    if (String(this.openId) === String(t.id)) this.openId = null;
    this.refresh();
  }

  open(t) {
    performance.clearMarks('dxhub:open'); performance.clearMarks('dxhub:first-image');
    performance.mark('dxhub:open');
    this.openId = t.id;
    for (const tr of this.body.children) tr.classList.toggle('current', tr.dataset.taskId === String(t.id));
    this.onOpen(t);
  }
}
