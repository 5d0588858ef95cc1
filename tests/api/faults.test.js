// Allocation failures in the request path (build/cdam-server-fault, see
// tests/fault/fault_alloc.c): for each kind of request, sweep N = 1, 2, ... with
// "X-Fault-Alloc: N" (the Nth allocation of server/ and core/ code, cJSON included, from
// the start of that request fails) until a request completes without the fault firing.
// Every faulted request must give its correct full answer (where the server legitimately
// degrades, e.g. a cache insert that fails) or a clean JSON 500 "internal"; never a crash,
// a hang, a closed connection or a wrong answer; after each one, the same request without
// a fault gives exactly the right answer; at the end SIGTERM -> exit 0 (under ASan: no
// leak on any failure path). The concept routes and the data folder: faults-store.test.js.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { b64, call, form, sleep, stable } from './lib/client.js';
import { DISARM, disarm, explainKind, startFault, startFaultWithConcept, sweep, verdict } from './lib/faults.js';
import { makePng } from './lib/png.js';
import { startServer } from './lib/server.js';

const IMG = b64('rgb8.png');
const SMALL = makePng(16, 16, 77, { flat: true }).toString('base64');   // few distinct bytes: a short PNG sweep

describe('allocation failures in the request path (cdam-server-fault)', () => {
  let s;
  let concept;   // a stored concept, for explain with a concept and GET /concepts/{id}
  const points = {};
  before(async () => {
    ({ s, concept } = await startFaultWithConcept(IMG, ['--cache-mb', '0']));
  });

  it('the production server ignores X-Fault-Alloc', async () => {
    const p = await startServer({ args: ['--max-size', '64'] });
    try {
      const a = await call(p, 'POST', '/explain', { json: { image: IMG }, headers: { 'X-Fault-Alloc': '1' } });
      assert.equal(a.status, 200);
      assert.ok(!p.stderr().includes('cdam-fault'), 'no fault code in build/cdam-server');
    } finally {
      await p.stop();
    }
  });

  it('POST /explain (JSON, cdam)', async (t) => {
    points.cdam = await sweep(t, s, explainKind(s, 'explain cdam', { image: IMG }));
  });

  it('POST /explain (JSON, every method, two classes, a stored concept and an embedding)', async (t) => {
    const body = { image: b64('baseline.jpg'), methods: ['cdam', 'smooth_cdam', 'integrated_cdam', 'am', 'rp', 'tam'],
      classes: [1, 3], samples: 2, concept: concept.id, concept_embedding: concept.embedding };
    points.methods = await sweep(t, s, explainKind(s, 'explain all methods', body));
  });

  it('POST /explain (JSON, rp at 48x32)', async (t) => {
    points.rp = await sweep(t, s, explainKind(s, 'explain rp', { image: b64('rgb24.bmp'), methods: ['rp'], size: [48, 32] }));
  });

  it('POST /explain (multipart)', async (t) => {
    let want;
    points.multipart = await sweep(t, s, {
      name: 'explain multipart',
      run: (headers) => call(s, 'POST', '/explain', {
        form: form('palette.png', { methods: 'cdam,am', classes: '2,5', size: '[40,24]', top_k: '3' }), headers }),
      check: (r, f) => verdict(r, f, 200, (x) => {
        if (want === undefined) want = stable(x.json);
        assert.deepEqual(stable(x.json), want);
      }),
    });
  });

  it('POST /explain (format png)', async (t) => {
    let want;
    points.png = await sweep(t, s, {
      name: 'explain png',
      // a small image: stb's deflate allocates per hash chain, hundreds of times for a large PNG
      run: (headers) => call(s, 'POST', '/explain', { json: { image: SMALL, methods: ['cdam', 'am'], format: 'png' }, headers }),
      check: (r, f) => verdict(r, f, 200, (x) => {
        assert.equal(x.headers.get('content-type'), 'image/png');
        if (want === undefined) want = x.body;
        assert.ok(x.body.equals(want), 'the same PNG bytes');
      }),
    });
  });

  it('POST /explain async + GET /jobs/{id} until finished', async (t) => {
    let want;
    const body = { image: IMG, methods: ['cdam', 'am'], async: true };
    points.job = await sweep(t, s, {
      name: 'async job',
      async run(headers) {
        const r = await call(s, 'POST', '/explain', { json: body, headers });
        if (r.status !== 202) return { post: r };
        const polls = [];
        for (let i = 0; i < 2000; i++) {
          await sleep(i < 5 ? 2 : 10);
          const g = await call(s, 'GET', `/jobs/${r.json.id}`);
          polls.push(g);
          if (g.status === 200 && ['done', 'failed', 'cancelled'].includes(g.json.state)) return { post: r, polls };
        }
        throw new Error('the job never finished');
      },
      check(o, faulted) {
        if (o.post.status !== 202) return verdict(o.post, faulted, 202, () => {});
        for (const g of o.polls) if (g.status !== 200) verdict(g, faulted, 200, () => {});
        const last = o.polls[o.polls.length - 1];
        if (faulted && last.json.state === 'failed') {
          assert.equal(last.json.error.code, 'internal', JSON.stringify(last.json.error));
          assert.ok(last.json.error.message.length > 0);
          return '500';
        }
        assert.equal(last.json.state, 'done', JSON.stringify(last.json).slice(0, 300));
        if (want === undefined) want = stable(last.json.result);
        assert.deepEqual(stable(last.json.result), want, 'the job result');
        return o.polls.some((g) => g.status === 500) ? '500' : 'ok';
      },
    });
  });

  it('GET /jobs/{id} of a finished job', async (t) => {
    const r = await call(s, 'POST', '/explain', { json: { image: IMG, async: true } });
    assert.equal(r.status, 202);
    let want;
    for (;;) {
      want = await call(s, 'GET', `/jobs/${r.json.id}`);
      if (want.json.state === 'done') break;
      await sleep(5);
    }
    points.jobget = await sweep(t, s, {
      name: 'GET /jobs/{id}',
      run: (headers) => call(s, 'GET', `/jobs/${r.json.id}`, { headers }),
      check: (x, f) => verdict(x, f, 200, (y) => assert.deepEqual(y.json, want.json)),
    });
  });

  it('GET /model, GET /healthz, GET /metrics, a static file', async (t) => {
    const model = (await call(s, 'GET', '/model')).json;
    points.model = await sweep(t, s, {
      name: 'GET /model',
      run: (headers) => call(s, 'GET', '/model', { headers }),
      check: (r, f) => verdict(r, f, 200, (x) => assert.deepEqual(x.json, model)),
    });
    points.metrics = await sweep(t, s, {
      name: 'GET /metrics',
      run: (headers) => call(s, 'GET', '/metrics', { headers }),
      check: (r, f) => verdict(r, f, 200, (x) => assert.match(x.text, /cdam_requests_total\{/)),
    });
    const js = (await call(s, 'GET', '/app.js')).text;
    // the static route allocates nothing of its own: one pass, no fault fires
    points.static = 0;
    for (const p of ['/app.js', '/healthz']) {
      const r = await call(s, 'GET', p, { headers: { 'X-Fault-Alloc': '1' } });
      const d = await disarm(s);
      t.diagnostic(`GET ${p}: ${d.count} allocations counted, fired ${d.fired}`);
      verdict(r, d.fired > 0, 200, (x) => { if (p === '/app.js') assert.equal(x.text, js); });
      if (d.fired) points.static++;
    }
  });

  it('SIGTERM after all that: exit 0 (under ASan: no leak on any failure path)', async () => {
    await s.stop();
    s = null;
    assert.ok(Object.keys(points).length >= 9);
  });

  after(async () => { await s?.kill9(); });
});

describe('allocation failures with the forward cache on', () => {
  let s;
  let ref;
  before(async () => {
    s = await startFault(['--cache-mb', '64']);
    ref = await startServer({ args: ['--max-size', '64', '--cache-mb', '0'] });
  });
  after(async () => { await ref?.stop(); await s?.kill9(); });

  // a fresh image per run, its reference answer from a server without cache
  let seed = 5000;
  const fresh = async () => {
    const img = makePng(40, 32, seed++).toString('base64');
    const want = await call(ref, 'POST', '/explain', { json: { image: img, classes: [1, 4] } });
    assert.equal(want.status, 200);
    return { img, want: stable(want.json) };
  };

  it('a cache miss and its insert (a fresh image each time), then the same image again', async (t) => {
    await sweep(t, s, {
      name: 'cache miss + insert',
      async run(headers) {
        const f = await fresh();
        const a = await call(s, 'POST', '/explain', { json: { image: f.img, classes: [1, 4] }, headers });
        await disarm(s);   // the second request must not be faulted
        const b = await call(s, 'POST', '/explain', { json: { image: f.img, classes: [1, 4] } });
        return { a, b, want: f.want };
      },
      check({ a, b, want }, f) {
        assert.equal(b.status, 200, 'the second request');
        assert.deepEqual(stable(b.json), want, 'the second answer (a hit, or a miss if the insert failed)');
        return verdict(a, f, 200, (x) => assert.deepEqual(stable(x.json), want));
      },
    });
  });

  it('a cache hit (the same image twice, the second one faulted)', async (t) => {
    await sweep(t, s, {
      name: 'cache hit',
      async run(headers) {
        const f = await fresh();
        const a = await call(s, 'POST', '/explain', { json: { image: f.img, classes: [1, 4] }, headers: headers === DISARM ? DISARM : {} });
        const b = await call(s, 'POST', '/explain', { json: { image: f.img, classes: [1, 4] }, headers });
        return { a, b, want: f.want };
      },
      check({ a, b, want }, f) {
        assert.equal(a.status, 200);
        assert.deepEqual(stable(a.json), want);
        return verdict(b, f, 200, (x) => {
          assert.deepEqual(stable(x.json), want);
          assert.equal(x.json.cache, 'hit');
        });
      },
    });
  });

  it('SIGTERM: exit 0', async () => {
    await s.stop();
    s = null;
  });
});

