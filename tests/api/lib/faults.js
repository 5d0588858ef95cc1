// faults.js - helpers of the allocation fault tests (faults*.test.js): start
// build/cdam-server-fault, arm and disarm X-Fault-Alloc, sweep the fault points of a kind
// of request (see tests/fault/fault_alloc.c for the server side).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { assertError, call, sleep, stable } from './client.js';
import { SERVER_BIN, startServer } from './server.js';

export const FAULT_BIN = `${SERVER_BIN}-fault`;
export const MAX_POINTS = 3000;   // a safety net: no request kind allocates anywhere near this often

export const startFault = (args = []) => {
  assert.ok(existsSync(FAULT_BIN), `${FAULT_BIN} is missing: build it (make ${FAULT_BIN.split('/').slice(-2).join('/')})`);
  return startServer({ args: ['--max-size', '64', '--drain-ms', '5000', ...args], wrap: (_bin, args2) => [FAULT_BIN, args2] });
};

/** startFault(args) with a concept stored ("fault base", from one image given as base64):
 *  { s, concept } (concept: the 201 answer). */
export async function startFaultWithConcept(imageB64, args = []) {
  const s = await startFault(args);
  const r = await call(s, 'POST', '/concepts', { json: { name: 'fault base', images: [imageB64] } });
  assert.equal(r.status, 201, `storing the base concept: ${r.text}`);
  return { s, concept: r.json };
}

export const DISARM = Object.freeze({ 'X-Fault-Alloc': '0' });

/** The first "disarmed" line the server logged after stderr offset `seen`:
 *  { count: allocations counted since the arming, fired: 0 or 1 }. */
async function disarmedLine(s, seen) {
  for (let i = 0; i < 5000; i++) {
    const m = /cdam-fault: disarmed after (\d+) allocations \(fired (\d+)\)/.exec(s.stderr().slice(seen));
    if (m) return { count: Number(m[1]), fired: Number(m[2]) };
    await sleep(1);
  }
  assert.fail('no "cdam-fault: disarmed" line on stderr');
}

/** Disarms the fault (GET /healthz with X-Fault-Alloc: 0); returns disarmedLine's answer. */
export async function disarm(s) {
  const seen = s.stderr().length;
  const r = await call(s, 'GET', '/healthz', { headers: DISARM });
  assert.equal(r.status, 200, `disarming: ${r.text}`);
  return disarmedLine(s, seen);
}

/**
 * Sweeps the fault points of one kind of request.
 * kind: { name, run(headers) -> outcome (any), check(outcome, faulted) -> 'ok' | '500' }.
 * run sends `headers` with its first request to the server (the armed one; DISARM for the
 * unfaulted run that follows each faulted one, so that it also ends the counting). The
 * fault stays armed (counting) until disarmed: a run() that sends more requests after the
 * armed one calls disarm() first unless those are meant to be counted too (job polls).
 * check must throw unless the outcome is the full correct answer ('ok') or, only when
 * faulted, a clean 500 ('500').
 */
export async function sweep(t, s, kind) {
  assert.equal(kind.check(await kind.run({}), false), 'ok', `${kind.name}: the unfaulted answer`);
  let n = 1;
  let clean500 = 0;
  let degraded = 0;
  let total = 0;
  for (; n <= MAX_POINTS; n++) {
    let out;
    try {
      out = await kind.run({ 'X-Fault-Alloc': String(n) });
    } catch (e) {
      assert.fail(`${kind.name}: allocation ${n} failing: no clean answer (${e.message})\n${s.stderr().slice(-3000)}`);
    }
    // the same request unfaulted: it disarms first, then must be answered exactly
    const seen = s.stderr().length;
    let again;
    try {
      again = await kind.run(DISARM);
    } catch (e) {
      assert.fail(`${kind.name}: the request after allocation ${n} failing: ${e.message}\n${s.stderr().slice(-3000)}`);
    }
    const d = await disarmedLine(s, seen);
    assert.equal(s.exited(), null, `${kind.name}: the server died at allocation ${n}`);
    let verdict;
    try {
      verdict = kind.check(out, d.fired > 0);
    } catch (e) {
      e.message = `${kind.name}, allocation ${n} of ${d.count} failing (fired ${d.fired}): ${e.message}`;
      throw e;
    }
    assert.equal(kind.check(again, false), 'ok', `${kind.name}: the request after allocation ${n} failed`);
    if (!d.fired) { total = d.count; break; }
    if (verdict === '500') clean500++;
    else degraded++;
  }
  assert.ok(n <= MAX_POINTS, `${kind.name}: still firing after ${MAX_POINTS} fault points`);
  t.diagnostic(`${kind.name}: ${n - 1} fault points swept (${total} allocations counted in the unfaulted run): ` +
    `${clean500} answered a clean 500, ${degraded} the full answer`);
  assert.ok(n > 1, `${kind.name}: no counted allocation at all (is the hook wired in?)`);
  return n - 1;
}

/** 'ok' when r is status `status` with what `same` accepts; '500' for a clean 500 when faulted. */
export function verdict(r, faulted, status, same) {
  if (faulted && r.status === 500) {
    assertError(r, 500, 'internal', 'faulted');
    return '500';
  }
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text.slice(0, 300)}`);
  same(r);
  return 'ok';
}

export const explainKind = (s, name, body, extra = {}) => {
  let want;
  return {
    name,
    async run(headers) {
      return call(s, 'POST', '/explain', { json: body, headers });
    },
    check(r, faulted) {
      return verdict(r, faulted, 200, (x) => {
        if (want === undefined) want = stable(x.json);
        assert.deepEqual(stable(x.json), want, 'the same answer as unfaulted');
        if (extra.cache) assert.equal(x.json.cache, extra.cache);
      });
    },
  };
};

