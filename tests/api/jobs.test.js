// Asynchronous explanations: 202 + Location, polling GET /jobs/{id}, the result equals
// the synchronous answer, DELETE (cancel), unknown and expired jobs (404), costly TAM
// turned into a job, job gauges in /metrics.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, b64, call, form, sleep, stable } from './lib/client.js';
import { assertClose, readSafetensors, row } from './lib/golden.js';
import { parseMetrics } from './lib/metrics.js';
import { GOLDEN, startServer } from './lib/server.js';

const G = readSafetensors(`${GOLDEN}/api_tiny.safetensors`);
const T = G.tensors;
const [C0, C1] = JSON.parse(G.metadata.classes);
const IMG = b64('rgb8.png');
const STATES = ['queued', 'running', 'done', 'failed', 'cancelled'];

let srv;
before(async () => { srv = await startServer({ args: ['--max-size', '192', '--drain-ms', '100'] }); });
after(async () => { await srv?.stop(); });

function checkAccepted(r, what) {
  assert.equal(r.status, 202, `${what}: ${r.text.slice(0, 300)}`);
  const j = r.json;
  assert.equal(j.state, 'queued');
  assert.equal(j.progress, 0);
  assert.equal(j.href, `/jobs/${j.id}`);
  const loc = r.headers.get('location');
  assert.ok(loc === j.href || loc === `${srv.url}${j.href}`, `${what}: Location ${loc} != ${j.href}`);
  return j;
}

/** Polls GET /jobs/{id} until the state is final; checks every intermediate answer. */
async function poll(s, id, timeoutMs = 20000) {
  const t0 = Date.now();
  let last = -1;
  for (;;) {
    const r = await call(s, 'GET', `/jobs/${id}`);
    assert.equal(r.status, 200, r.text.slice(0, 200));
    const j = r.json;
    assert.equal(j.id, id);
    assert.ok(STATES.includes(j.state));
    assert.ok(j.progress >= last - 1e-12, `progress went back from ${last} to ${j.progress}`);
    last = j.progress;
    assert.ok(Math.abs(j.created - Date.now() / 1000) < 600, `created ${j.created} is about now`);
    if (['done', 'failed', 'cancelled'].includes(j.state)) return j;
    assert.ok(Date.now() - t0 < timeoutMs, `job ${id} not finished after ${timeoutMs} ms (state ${j.state})`);
    await sleep(20);
  }
}

// heavy enough to still be running when it is cancelled: TAM at 192x192 (576 tokens)
// takes about 1.5 s on the tiny model
const HEAVY = { image: IMG, methods: ['tam'], size: [192, 192] };

describe('async jobs', () => {
  it('async: 202 + Location, polled to done, the result equals the synchronous answer', async () => {
    const body = { image: IMG, classes: [C0, C1], methods: ['cdam', 'am', 'rp'], top_k: 7 };
    const sync = await call(srv, 'POST', '/explain', { json: body });
    assert.equal(sync.status, 200);
    const acc = checkAccepted(await call(srv, 'POST', '/explain', { json: { ...body, async: true } }), 'async');
    const job = await poll(srv, acc.id);
    assert.equal(job.state, 'done');
    assert.equal(job.progress, 1);
    assert.deepEqual(stable(job.result), stable(sync.json));
    assertClose('job cdam vs reference', job.result.explanations[0].scores, row(T.cdam, 0), 1e-4);
  });

  it('async from multipart (async=true field)', async () => {
    const sync = await call(srv, 'POST', '/explain', { json: { image: IMG, size: [40, 24] } });
    const acc = checkAccepted(await call(srv, 'POST', '/explain', { form: form('rgb8.png', { async: 'true', size: '40x24' }) }), 'multipart async');
    const job = await poll(srv, acc.id);
    assert.equal(job.state, 'done');
    assert.deepEqual(stable(job.result), stable(sync.json));
  });

  it('DELETE /jobs/{id} of a finished job returns it in its final state', async () => {
    const acc = checkAccepted(await call(srv, 'POST', '/explain', { json: { image: IMG, async: true } }), 'async');
    const done = await poll(srv, acc.id);
    assert.equal(done.state, 'done');
    const d = await call(srv, 'DELETE', `/jobs/${acc.id}`);
    assert.equal(d.status, 200);
    assert.equal(d.json.state, 'done');
    assert.deepEqual(d.json.result, done.result);
  });

  it('DELETE /jobs/{id} cancels a running job; it stays cancelled and the server goes on', async () => {
    const acc = checkAccepted(await call(srv, 'POST', '/explain', { json: { ...HEAVY, async: true } }), 'heavy async');
    await sleep(30);
    const d = await call(srv, 'DELETE', `/jobs/${acc.id}`);
    assert.equal(d.status, 200);
    assert.equal(d.json.id, acc.id);
    assert.equal(d.json.state, 'cancelled', `a TAM job at 192x192 should still run after 30 ms (state ${d.json.state})`);
    const end = await poll(srv, acc.id);
    assert.equal(end.state, 'cancelled');
    await sleep(200);
    const again = await call(srv, 'GET', `/jobs/${acc.id}`);
    assert.equal(again.status, 200);
    assert.equal(again.json.state, 'cancelled', 'a cancelled job never turns done');
    const t0 = Date.now();
    const r = await call(srv, 'POST', '/explain', { json: { image: IMG } });
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 < 5000, 'the worker was freed by the cancellation');
  });

  it('unknown job -> 404 not_found (GET and DELETE)', async () => {
    assertError(await call(srv, 'GET', '/jobs/no-such-job'), 404, 'not_found', 'GET');
    assertError(await call(srv, 'DELETE', '/jobs/no-such-job'), 404, 'not_found', 'DELETE');
    assertError(await call(srv, 'GET', '/jobs/0123456789abcdef0123456789abcdef'), 404, 'not_found', 'GET hex id');
  });

  it('/metrics reports the jobs by state', async () => {
    const r = await call(srv, 'GET', '/metrics');
    const m = parseMetrics(r.text);
    const jobs = m.samples.filter((s) => s.name === 'cdam_jobs');
    const byState = Object.fromEntries(jobs.map((s) => [s.labels.state, s.value]));
    assert.ok(byState.done >= 3, `cdam_jobs{state="done"} = ${byState.done}`);
    assert.ok(byState.cancelled >= 1, `cdam_jobs{state="cancelled"} = ${byState.cancelled}`);
  });
});

describe('jobs: expiry and costly TAM', () => {
  it('a finished job expires after --job-ttl-s (404 not_found)', async () => {
    const s = await startServer({ args: ['--job-ttl-s', '1'] });
    try {
      const acc = checkAccepted(await call(s, 'POST', '/explain', { json: { image: IMG, async: true } }), 'async');
      const j = await poll(s, acc.id);
      assert.equal(j.state, 'done');
      await sleep(3000);
      assertError(await call(s, 'GET', `/jobs/${acc.id}`), 404, 'not_found', 'expired job');
    } finally {
      await s.stop();
    }
  });

  it('TAM over --tam-sync-gflop runs as a job without async (202)', async () => {
    const s = await startServer({ args: ['--tam-sync-gflop', '0'] });
    try {
      const sync = await call(srv, 'POST', '/explain', { json: { image: IMG, methods: ['tam'] } });
      assert.equal(sync.status, 200, 'cheap enough on the default server');
      const acc = checkAccepted(await call(s, 'POST', '/explain', { json: { image: IMG, methods: ['tam'] } }), 'costly tam');
      const j = await poll(s, acc.id);
      assert.equal(j.state, 'done');
      assert.deepEqual(j.result.explanations, sync.json.explanations);
    } finally {
      await s.stop();
    }
  });
});
