// frames.js — decoded frames kept in the browser, least recently used out
// first, bounded in bytes; a prefetch queue fetches the neighbours of what
// the reader looks at (the latest view's wishes replace older ones).  The
// transfers run in a worker (frame_worker.js), off the thread that draws.
import { apiToken, ApiError } from './api.js';

class FrameFetcher {
  constructor() {
    this.worker = new Worker(new URL('./frame_worker.js', import.meta.url), { type: 'module' });
    this.worker.postMessage({ token: apiToken() });
    this.calls = new Map();     // id -> {resolve, reject}
    this.next = 1;
    this.worker.onmessage = ({ data }) => {
      const c = this.calls.get(data.id); if (!c) return;
      this.calls.delete(data.id);
      if (data.frame) c.resolve(data.frame); else c.reject(new ApiError(data.status, data.error));
    };
  }

  frame(sop, n) {
    const id = this.next++;
    return new Promise((resolve, reject) => { this.calls.set(id, { resolve, reject }); this.worker.postMessage({ id, sop, n }); });
  }
}


export class FrameCache {
  constructor(limitBytes = 768 << 20, parallel = 4) {
    this.entries = new Map();   // key -> {promise, frame, bytes}
    this.bytes = 0;
    this.limit = limitBytes;
    this.parallel = parallel;
    this.active = 0;
    this.wanted = [];           // [sop, n] not yet asked for, nearest first
    this.fetcher = new FrameFetcher();   // started with the page: ready before the first study opens
  }

  static key(sop, n) { return `${sop}/${n}`; }

  // The frame if it is here already (and mark it recently used).
  peek(sop, n) {
    const k = FrameCache.key(sop, n), e = this.entries.get(k);
    if (!e || !e.frame) return null;
    this.entries.delete(k); this.entries.set(k, e);
    return e.frame;
  }

  // A promise of the frame, fetched now if needed.
  get(sop, n) {
    const k = FrameCache.key(sop, n);
    let e = this.entries.get(k);
    if (e) { this.entries.delete(k); this.entries.set(k, e); return e.promise; }
    e = { frame: null, bytes: 0, promise: null };
    this.active++;
    e.promise = this.fetcher.frame(sop, n).then((f) => {
      e.frame = f; e.bytes = f.data.byteLength; this.bytes += e.bytes; this.evict(k);
      return f;
    }, (err) => { this.entries.delete(k); throw err; })
      .finally(() => { this.active--; this.pump(); });
    this.entries.set(k, e);
    return e.promise;
  }

  has(sop, n) { return this.entries.has(FrameCache.key(sop, n)); }

  // Ask for these frames (nearest first) when the link is idle.
  prefetch(list) {
    this.wanted = list.filter(([s, n]) => !this.has(s, n));
    this.pump();
  }

  pump() {
    while (this.active < this.parallel && this.wanted.length) {
      const [s, n] = this.wanted.shift();
      if (!this.has(s, n)) this.get(s, n).catch(() => { /* shown when viewed */ });
    }
  }

  evict(keep) {
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.limit) break;
      if (k === keep || !e.frame) continue;
      this.entries.delete(k); this.bytes -= e.bytes;
    }
  }

  clear() { this.entries.clear(); this.bytes = 0; this.wanted = []; }
}
