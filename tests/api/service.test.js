// Service routes: /healthz, /model, /metrics, static files and path traversal, routing
// errors (404 unknown route, 405 + Allow, 415), --api-key (401).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, b64, call, raw, rawRequest } from './lib/client.js';
import { readSafetensors } from './lib/golden.js';
import { has, parseMetrics, sum, value } from './lib/metrics.js';
import { makePng } from './lib/png.js';
import { APP_JS, GOLDEN, INDEX_HTML, SECRET, STYLE_CSS, startServer } from './lib/server.js';

const LABELS = JSON.parse(readSafetensors(`${GOLDEN}/api_tiny.safetensors`).metadata.labels);
const METHODS = ['cdam', 'smooth_cdam', 'integrated_cdam', 'am', 'rp', 'tam'];

let srv;
before(async () => { srv = await startServer({ args: ['--max-size', '64'] }); });
after(async () => { await srv?.stop(); });

async function metrics() {
  const r = await call(srv, 'GET', '/metrics');
  assert.equal(r.status, 200);
  const m = parseMetrics(r.text);
  assert.deepEqual(m.problems, [], 'unparsable metrics lines');
  return m;
}

describe('GET /healthz', () => {
  it('answers 200 {"status": "ok"}', async () => {
    const r = await call(srv, 'GET', '/healthz');
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { status: 'ok' });
  });
});

describe('GET /model', () => {
  it('describes the tiny model', async () => {
    const r = await call(srv, 'GET', '/model');
    assert.equal(r.status, 200);
    const m = r.json;
    assert.equal(m.name, 'tiny');
    assert.equal(m.patch_size, 8);
    assert.equal(m.embed_dim, 32);
    assert.equal(m.depth, 3);
    assert.equal(m.heads, 2);
    assert.deepEqual(m.native_size, [32, 32]);
    assert.deepEqual(m.max_size, [64, 64], '--max-size 64');
    assert.equal(m.num_classes, 7);
    assert.deepEqual(m.labels, LABELS);
    assert.equal(m.head, 'linear');
  });

  it('lists every method', async () => {
    const r = await call(srv, 'GET', '/model');
    assert.deepEqual([...r.json.methods].sort(), [...METHODS].sort());
  });
});

describe('GET /metrics', () => {
  it('is Prometheus text 0.0.4 with every family of API.md', async () => {
    const r = await call(srv, 'GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain; *version=0\.0\.4/);
    const m = parseMetrics(r.text);
    assert.deepEqual(m.problems, []);
    const types = {
      cdam_requests_total: 'counter', cdam_request_duration_seconds: 'histogram',
      cdam_queue_depth: 'gauge', cdam_queue_capacity: 'gauge', cdam_workers: 'gauge',
      cdam_workers_busy: 'gauge', cdam_cache_hits_total: 'counter', cdam_cache_misses_total: 'counter',
      cdam_cache_bytes: 'gauge', cdam_cache_entries: 'gauge', cdam_jobs: 'gauge',
    };
    for (const [fam, t] of Object.entries(types)) {
      assert.equal(m.types.get(fam), t, `# TYPE ${fam} ${t}`);
    }
    for (const n of ['cdam_queue_depth', 'cdam_queue_capacity', 'cdam_workers', 'cdam_workers_busy',
      'cdam_cache_hits_total', 'cdam_cache_misses_total', 'cdam_cache_bytes', 'cdam_cache_entries']) {
      assert.ok(has(m, n), `sample ${n}`);
      assert.ok(Number.isFinite(value(m, n)), `${n} has one unlabelled finite value`);
    }
    assert.ok(value(m, 'cdam_queue_capacity') >= 1);
    assert.ok(value(m, 'cdam_workers') >= 1);
    for (const s of m.samples.filter((x) => x.name === 'cdam_jobs')) {
      assert.ok(['queued', 'running', 'done', 'failed', 'cancelled'].includes(s.labels.state), `cdam_jobs state ${s.labels.state}`);
    }
    // the start-up /healthz polls are counted with a route template
    assert.ok(sum(m, 'cdam_requests_total', { route: '/healthz', status: '200' }) >= 1, 'healthz counted');
    const routes = new Set(['/explain', '/concepts', '/concepts/{id}', '/jobs/{id}', '/model', '/healthz', '/metrics', 'static', 'other']);
    for (const s of m.samples.filter((x) => x.name.startsWith('cdam_request'))) {
      assert.ok(routes.has(s.labels.route), `route label ${s.labels.route} is not a template of API.md`);
    }
  });

  it('counts requests, durations and errors per route template and status', async () => {
    const m0 = await metrics();
    const img = makePng(32, 24, 101);
    const r = await call(srv, 'POST', '/explain', { json: { image: img.toString('base64') } });
    assert.equal(r.status, 200);
    const bad = await call(srv, 'POST', '/explain', { json: { image: b64('not_an_image.txt') } });
    assertError(bad, 400, 'bad_image');
    await call(srv, 'GET', '/concepts/0123456789abcdef0123456789abcdef');
    await call(srv, 'GET', '/no-such-file.txt');
    const m1 = await metrics();
    const d = (name, labels) => (value(m1, name, labels) ?? 0) - (value(m0, name, labels) ?? 0);
    assert.equal(d('cdam_requests_total', { route: '/explain', status: '200' }), 1);
    assert.equal(d('cdam_requests_total', { route: '/explain', status: '400' }), 1);
    assert.equal(d('cdam_requests_total', { route: '/concepts/{id}', status: '404' }), 1);
    assert.equal(d('cdam_requests_total', { route: 'static', status: '404' }), 1);
    assert.equal(d('cdam_request_duration_seconds_count', { route: '/explain' }), 2);
    assert.ok(d('cdam_request_duration_seconds_sum', { route: '/explain' }) > 0);
    const inf = m1.samples.find((s) => s.name === 'cdam_request_duration_seconds_bucket' && s.labels.route === '/explain' && s.labels.le === '+Inf');
    assert.ok(inf, 'bucket le="+Inf"');
    assert.equal(inf.value, value(m1, 'cdam_request_duration_seconds_count', { route: '/explain' }));
    // buckets are cumulative
    const buckets = m1.samples.filter((s) => s.name === 'cdam_request_duration_seconds_bucket' && s.labels.route === '/explain')
      .map((s) => [Number(s.labels.le === '+Inf' ? Infinity : s.labels.le), s.value]).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i][1] >= buckets[i - 1][1], 'cumulative buckets');
  });

  it('counts a cache miss, then a hit when the same image is asked for another class', async () => {
    const img = makePng(32, 24, 202).toString('base64');   // an image this server never saw
    const m0 = await metrics();
    const r1 = await call(srv, 'POST', '/explain', { json: { image: img, classes: [2] } });
    assert.equal(r1.status, 200);
    assert.equal(r1.json.cache, 'miss');
    const m1 = await metrics();
    const r2 = await call(srv, 'POST', '/explain', { json: { image: img, classes: [5] } });
    assert.equal(r2.status, 200);
    assert.equal(r2.json.cache, 'hit', 'the second request for the same image says "cache": "hit"');
    assert.equal(r2.json.explanations[0].target.index, 5);
    const m2 = await metrics();
    assert.equal(value(m1, 'cdam_cache_misses_total') - value(m0, 'cdam_cache_misses_total'), 1, 'one miss');
    assert.equal(value(m1, 'cdam_cache_hits_total') - value(m0, 'cdam_cache_hits_total'), 0, 'no hit on the first request');
    assert.equal(value(m2, 'cdam_cache_hits_total') - value(m1, 'cdam_cache_hits_total'), 1, 'one hit');
    assert.equal(value(m2, 'cdam_cache_misses_total') - value(m1, 'cdam_cache_misses_total'), 0, 'no miss on the second');
    assert.ok(value(m2, 'cdam_cache_entries') >= 1);
    assert.ok(value(m2, 'cdam_cache_bytes') > 0);
  });
});

describe('static files', () => {
  it('GET / serves index.html as text/html', async () => {
    const r = await call(srv, 'GET', '/');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    assert.equal(r.text, INDEX_HTML);
  });

  it('serves files with the Content-Type of their extension', async () => {
    const js = await call(srv, 'GET', '/app.js');
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type'), /^(text|application)\/javascript/);
    assert.equal(js.text, APP_JS);
    const css = await call(srv, 'GET', '/style.css');
    assert.equal(css.status, 200);
    assert.match(css.headers.get('content-type'), /^text\/css/);
    assert.equal(css.text, STYLE_CSS);
    const html = await call(srv, 'GET', '/index.html');
    assert.equal(html.status, 200);
    assert.equal(html.text, INDEX_HTML);
    const sub = await call(srv, 'GET', '/sub/page.txt');
    assert.equal(sub.status, 200);
    assert.match(sub.headers.get('content-type'), /^text\/plain/);
  });

  it('a missing file is a 404 JSON not_found', async () => {
    const r = await call(srv, 'GET', '/missing-file.html');
    assertError(r, 404, 'not_found');
  });

  it('no path escapes the static folder (.., %2e%2e, encoded slashes)', async () => {
    const paths = [
      '/../secret.txt', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt', '/%2e%2e%2fsecret.txt', '/..%2fsecret.txt',
      '/..%2Fsecret.txt', '/sub/../../secret.txt', '/sub/%2e%2e/%2e%2e/secret.txt', '/.%2e/secret.txt',
      '/%2e./secret.txt', '/sub/..%2f..%2fsecret.txt', '/..\\secret.txt', '/%2e%2e%5csecret.txt',
      '/%252e%252e/secret.txt', '//../secret.txt', '/./../secret.txt', `/${'../'.repeat(8)}secret.txt`,
      '/%2e%2e/static/../secret.txt', '/..', '/%2e%2e',
    ];
    for (const p of paths) {
      const req = `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nConnection: close\r\n\r\n`;
      const r = await raw(srv, 'GET', '/static-escape', req);
      assert.ok(!r.text.includes(SECRET.trim()), `${p} served the secret file`);
      assert.ok([400, 404].includes(r.status), `${p}: expected 404 or 400, got ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(r.json?.error && ['not_found', 'bad_request'].includes(r.json.error.code), `${p}: JSON error, got ${r.text.slice(0, 200)}`);
    }
    // the escape attempts above were refused, but the folder itself still works
    const ok = await rawRequest(srv, `GET /sub/../index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    assert.ok(!ok.text.includes(SECRET.trim()));
  });
});

describe('routing errors', () => {
  it('unknown route: 404 not_found (GET and POST)', async () => {
    assertError(await call(srv, 'GET', '/v1/explain'), 404, 'not_found', 'GET /v1/explain');
    assertError(await call(srv, 'POST', '/no/such/route', { json: {} }), 404, 'not_found', 'POST /no/such/route');
    assertError(await call(srv, 'POST', '/explainx', { json: {} }), 404, 'not_found', 'POST /explainx');
  });

  it('wrong HTTP method: 405 method_not_allowed with Allow', async () => {
    const cases = [
      ['GET', '/explain', ['POST']],
      ['PUT', '/explain', ['POST']],
      ['DELETE', '/model', ['GET']],
      ['POST', '/healthz', ['GET']],
      ['POST', '/metrics', ['GET']],
      ['PATCH', '/concepts', ['GET', 'POST']],
      ['DELETE', '/concepts', ['GET', 'POST']],
      ['PUT', '/concepts/0123456789abcdef0123456789abcdef', ['GET', 'DELETE']],
      ['POST', '/jobs/abc', ['GET', 'DELETE']],
    ];
    for (const [m, p, allow] of cases) {
      const r = await call(srv, m, p, m === 'GET' || m === 'DELETE' ? {} : { body: '{}', contentType: 'application/json' });
      assertError(r, 405, 'method_not_allowed', `${m} ${p}`);
      const got = (r.headers.get('allow') || '').split(',').map((s) => s.trim()).filter(Boolean);
      for (const a of allow) assert.ok(got.includes(a), `${m} ${p}: Allow "${r.headers.get('allow')}" lacks ${a}`);
      assert.ok(!got.includes(m), `${m} ${p}: Allow lists ${m}`);
    }
  });

  it('unsupported Content-Type: 415 unsupported_media_type', async () => {
    const img = b64('rgb8.png');
    const cases = [
      ['/explain', 'text/plain', JSON.stringify({ image: img })],
      ['/explain', 'application/x-www-form-urlencoded', `image=${encodeURIComponent(img)}`],
      ['/explain', 'image/png', Buffer.from(img, 'base64')],
      ['/concepts', 'text/plain', JSON.stringify({ name: 'x', images: [img] })],
      ['/concepts', 'application/xml', '<concept/>'],
    ];
    for (const [p, ct, body] of cases) {
      assertError(await call(srv, 'POST', p, { body, contentType: ct }), 415, 'unsupported_media_type', `${p} ${ct}`);
    }
  });
});

describe('--api-key', () => {
  let keyed;
  before(async () => {
    keyed = await startServer({ args: ['--api-key', 'sesame-42'], healthHeaders: { authorization: 'Bearer sesame-42' } });
  });
  after(async () => { await keyed?.stop(); });

  it('refuses requests without or with a wrong key (401 unauthorized), accepts the right one', async () => {
    assertError(await call(keyed, 'GET', '/model'), 401, 'unauthorized', 'no key');
    assertError(await call(keyed, 'GET', '/model', { headers: { authorization: 'Bearer wrong' } }), 401, 'unauthorized', 'wrong key');
    assertError(await call(keyed, 'GET', '/model', { headers: { authorization: 'sesame-42' } }), 401, 'unauthorized', 'no Bearer');
    assertError(await call(keyed, 'POST', '/explain', { json: { image: b64('rgb8.png') } }), 401, 'unauthorized', 'explain without key');
    assertError(await call(keyed, 'GET', '/concepts'), 401, 'unauthorized', 'concepts without key');
    const health = await call(keyed, 'GET', '/healthz');
    assert.equal(health.status, 200, 'liveness probes need no key');
    const ok = await call(keyed, 'GET', '/model', { headers: { authorization: 'Bearer sesame-42' } });
    assert.equal(ok.status, 200);
    const ex = await call(keyed, 'POST', '/explain', { json: { image: b64('rgb8.png') }, headers: { authorization: 'Bearer sesame-42' } });
    assert.equal(ex.status, 200);
  });
});

describe('SIGTERM', () => {
  it('finishes the request in flight, refuses new connections, exits 0', async () => {
    const s = await startServer({ args: ['--max-size', '256', '--drain-ms', '20000'] });
    // Smooth CDAM with 256 samples at 256x256 keeps the worker busy for a while.
    const slow = call(s, 'POST', '/explain', { json: { image: b64('rgb8.png'), methods: ['smooth_cdam'], samples: 256, size: [256, 256] } });
    await new Promise((r) => setTimeout(r, 150));
    s.proc.kill('SIGTERM');
    const r = await slow;
    assert.equal(r.status, 200, 'the in-flight request is answered');
    assert.equal(r.json.explanations[0].method, 'smooth_cdam');
    const ex = await s.stop();
    assert.equal(ex.code, 0);
    assert.match(s.stderr(), /shutdown: done/);
  });
});

describe('a client that goes away', () => {
  it('while its request runs: the server finishes it, and SIGTERM still exits at once', async () => {
    const net = await import('node:net');
    const s = await startServer({ args: ['--max-size', '256', '--drain-ms', '30000'] });
    const body = JSON.stringify({ image: b64('rgb8.png'), methods: ['smooth_cdam'], samples: 128, size: [256, 256] });
    const sock = net.connect(s.port, '127.0.0.1');
    await new Promise((r) => sock.on('connect', r));
    sock.write(`POST /explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await new Promise((r) => setTimeout(r, 100));
    sock.destroy();                                      // gone while the worker runs
    for (let i = 0; i < 200 && !/POST \/explain/.test(s.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(s.stderr(), /POST \/explain \d+ \d+ [0-9.]+ms/, 'the abandoned request is logged once the worker is done');
    const t0 = Date.now();
    await s.stop();                                      // throws unless exit 0 within 5 s
    assert.ok(Date.now() - t0 < 3000, `SIGTERM took ${Date.now() - t0} ms: the abandoned request was still counted as in flight`);
  });
});

describe('--cors', () => {
  let c;
  before(async () => { c = await startServer({ args: ['--cors', 'https://a.example,https://b.example'] }); });
  after(async () => { await c?.stop(); });

  it('allows only the listed origins, answers preflights', async () => {
    const ok = await call(c, 'GET', '/model', { headers: { origin: 'https://b.example' } });
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://b.example');
    const no = await call(c, 'GET', '/model', { headers: { origin: 'https://evil.example' } });
    assert.equal(no.headers.get('access-control-allow-origin'), null);
    const pre = await fetch(`${c.url}/explain`, { method: 'OPTIONS', headers: { origin: 'https://a.example', 'access-control-request-method': 'POST' } });
    assert.equal(pre.status, 204);
    assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'https://a.example');
  });

  it('is off by default', async () => {
    const r = await call(srv, 'GET', '/model', { headers: { origin: 'https://a.example' } });
    assert.equal(r.headers.get('access-control-allow-origin'), null);
  });
});
