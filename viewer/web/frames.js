// frames.js — decoded frames kept in the browser, least recently used out
// first, bounded in bytes; a prefetch queue fetches the neighbours of what
// the reader looks at (the latest view's wishes replace older ones).
import { frame as fetchFrame } from './api.js';

export class FrameCache {
  constructor(limitBytes = 768 << 20, parallel = 4) {
    this.entries = new Map();   // key -> {promise, frame, bytes}
    this.bytes = 0;
    this.limit = limitBytes;
    this.parallel = parallel;
    this.active = 0;
    this.wanted = [];           // [sop, n] not yet asked for, nearest first
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
    e.promise = fetchFrame(sop, n).then((f) => {
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
