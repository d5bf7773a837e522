// checks.mjs — a small sequential test runner for the browser scenario: each
// check is named by the behaviour it proves, may need earlier checks, and the
// run ends with the line tests/run-all reads: "browser: N passed, N failed".

export class Checks {
  constructor() { this.passed = 0; this.failed = 0; this.ok = new Set(); this.failures = []; }

  async check(name, fn, { needs = [] } = {}) {
    const missing = needs.filter((n) => !this.ok.has(n));
    const t0 = Date.now();
    if (missing.length) {
      this.failed++; this.failures.push(name);
      console.log(`not ok - ${name} (not run: needs ${missing.join(', ')})`);
      return false;
    }
    try {
      await fn();
      this.passed++; this.ok.add(name);
      console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      return true;
    } catch (e) {
      this.failed++; this.failures.push(name);
      console.log(`not ok - ${name}\n    ${String(e && e.stack || e).split('\n').slice(0, 6).join('\n    ')}`);
      return false;
    }
  }

  summary() {
    if (this.failures.length) console.log(`failed: ${this.failures.join('; ')}`);
    console.log(`browser: ${this.passed} passed, ${this.failed} failed`);
    return this.failed === 0;
  }
}

export function expect(cond, what) { if (!cond) throw new Error(what); }

export function near(actual, expected, tol, what) {
  if (!(Math.abs(actual - expected) <= tol)) throw new Error(`${what}: ${actual} is not within ${tol} of ${expected}`);
}
