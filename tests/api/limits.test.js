// Limits and load: --max-body-mb (413 body_too_large), 32 concurrent clients mixing good
// and bad requests (answers identical to the sequential ones), a full work queue
// (503 queue_full + Retry-After), the per-request deadline (504 timeout), --max-pixels.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, b64, call, form, raw, stable } from './lib/client.js';
import { makePng } from './lib/png.js';
import { startServer } from './lib/server.js';

const IMG = b64('rgb8.png');
const HEAVY = { image: IMG, methods: ['smooth_cdam', 'integrated_cdam'], samples: 256, size: [64, 64],
  classes: Array.from({ length: 64 }, (_, i) => i % 7) };

describe('--max-body-mb 1', () => {
  let s;
  before(async () => { s = await startServer({ args: ['--max-body-mb', '1'] }); });
  after(async () => { await s?.stop(); });

  const post = (ct, body, extra = '') => Buffer.concat([
    Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nConnection: close\r\n` +
      `Content-Type: ${ct}\r\nContent-Length: ${body.length}\r\n${extra}\r\n`, 'latin1'), body]);
  const bigJson = (mb = 2) => Buffer.from(JSON.stringify({ image: IMG, padding: 'x'.repeat(mb * 1024 * 1024) }));
  const B = 'bNd4ry';
  const bigForm = () => Buffer.concat([
    Buffer.from(`--${B}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n`),
    Buffer.alloc(2 * 1024 * 1024, 7),
    Buffer.from(`\r\n--${B}--\r\n`),
  ]);

  it('a 2 MB JSON body with Expect: 100-continue -> 413 body_too_large', async () => {
    const r = await raw(s, 'POST', '/explain', post('application/json', bigJson(), 'Expect: 100-continue\r\n'), { expectContinue: true });
    assertError(r, 413, 'body_too_large');
  });

  it('a 2 MB multipart body with Expect: 100-continue -> 413 body_too_large', async () => {
    const r = await raw(s, 'POST', '/explain', post(`multipart/form-data; boundary=${B}`, bigForm(), 'Expect: 100-continue\r\n'), { expectContinue: true });
    assertError(r, 413, 'body_too_large');
  });

  // a client that sends the whole body at once (browsers, Node fetch) must get the 413
  // too, not a reset connection: 5 tries each
  it('an 8 MB JSON body sent whole (fetch) -> 413 body_too_large, every time', async () => {
    for (let i = 0; i < 5; i++) {
      let r;
      try {
        r = await call(s, 'POST', '/explain', { body: bigJson(8), contentType: 'application/json' });
      } catch (e) {
        assert.fail(`try ${i + 1}: no answer, the connection failed: ${e.cause?.code || e.message}`);
      }
      assertError(r, 413, 'body_too_large', `try ${i + 1}`);
    }
  });

  it('a 2 MB multipart body sent whole (fetch) -> 413 body_too_large, every time', async () => {
    for (let i = 0; i < 5; i++) {
      const fd = new FormData();
      fd.append('image', new Blob([Buffer.alloc(2 * 1024 * 1024, 7)]), 'big.png');
      let r;
      try {
        r = await call(s, 'POST', '/explain', { form: fd });
      } catch (e) {
        assert.fail(`try ${i + 1}: no answer, the connection failed: ${e.cause?.code || e.message}`);
      }
      assertError(r, 413, 'body_too_large', `try ${i + 1}`);
    }
  });

  it('a 2 MB body sent chunked (no Content-Length) -> 413 body_too_large', async () => {
    const payload = bigJson();
    const chunks = [];
    for (let i = 0; i < payload.length; i += 65536) {
      const c = payload.subarray(i, i + 65536);
      chunks.push(Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n'));
    }
    chunks.push(Buffer.from('0\r\n\r\n'));
    const req = Buffer.concat([Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nConnection: close\r\n` +
      'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', 'latin1'), ...chunks]);
    assertError(await raw(s, 'POST', '/explain', req), 413, 'body_too_large');
  });

  it('a body just under the limit is served; a concept over it is refused', async () => {
    const r = await call(s, 'POST', '/explain', { json: { image: IMG, padding: 'z'.repeat(900 * 1024) } });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    const body = Buffer.from(JSON.stringify({ name: 'x', images: [IMG, 'A'.repeat(2 * 1024 * 1024)] }));
    const req = Buffer.concat([Buffer.from(`POST /concepts HTTP/1.1\r\nHost: 127.0.0.1:${s.port}\r\nConnection: close\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`, 'latin1'), body]);
    assertError(await raw(s, 'POST', '/concepts', req, { expectContinue: true }), 413, 'body_too_large', 'concept over the limit');
  });
});

describe('32 concurrent clients', () => {
  let s;
  before(async () => { s = await startServer({ args: ['--queue', '64', '--max-size', '64'] }); });
  after(async () => { await s?.stop(); });

  it('every answer is correct; good ones identical to the sequential answers', async () => {
    const good = [];
    for (let i = 0; i < 20; i++) {
      const img = (i % 4 === 0 ? makePng(32, 24, 1000 + (i % 8)) : Buffer.from(b64(['rgb8.png', 'baseline.jpg', 'lossy.webp', 'rgb24.bmp'][i % 4]), 'base64')).toString('base64');
      const body = { image: img, classes: [i % 7, (i + 3) % 7], methods: [['cdam'], ['cdam', 'am'], ['rp'], ['integrated_cdam', 'am']][i % 4], samples: 4 };
      if (i % 5 === 0) body.size = [40, 24];
      good.push({ kind: i % 6 === 5 ? 'form' : 'json', body });
    }
    const bad = [
      [{ image: '!!bad!!' }, 400, 'bad_base64'],
      [{ image: b64('not_an_image.txt') }, 400, 'bad_image'],
      [{ image: IMG, classes: [7] }, 400, 'unknown_class'],
      [{ image: IMG, classes: ['zebra'] }, 400, 'unknown_class'],
      [{ image: IMG, methods: ['nope'] }, 400, 'unknown_method'],
      [{ image: IMG, size: [30, 30] }, 400, 'bad_size'],
      [{ image: b64('huge.png') }, 413, 'image_too_large'],
      [{ image: IMG, concept: 'ffffffffffffffffffffffffffffffff' }, 400, 'unknown_concept'],
      [{ image: IMG, concept_embedding: [1, 2, 3] }, 400, 'bad_embedding'],
      ['{"image": ', 400, 'bad_json'],
      [{}, 400, 'missing_image'],
      [{ image: b64('truncated.png') }, 400, 'bad_image'],
    ];
    const send = (g) => (g.kind === 'form'
      ? call(s, 'POST', '/explain', { form: formOf(g.body) })
      : call(s, 'POST', '/explain', { json: g.body }));
    // sequential answers first
    const seq = [];
    for (const g of good) {
      const r = await send(g);
      assert.equal(r.status, 200, r.text.slice(0, 200));
      seq.push(stable(r.json));
    }
    // then everything at once, interleaved
    const all = [];
    for (let i = 0; i < Math.max(good.length, bad.length); i++) {
      if (i < good.length) all.push(send(good[i]).then((r) => ['good', i, r]));
      if (i < bad.length) all.push(call(s, 'POST', '/explain', { json: bad[i][0] }).then((r) => ['bad', i, r]));
    }
    assert.equal(all.length, 32);
    const results = await Promise.all(all);
    for (const [kind, i, r] of results) {
      if (kind === 'good') {
        assert.equal(r.status, 200, `good request ${i}: ${r.text.slice(0, 200)}`);
        assert.deepEqual(stable(r.json), seq[i], `good request ${i} differs from its sequential answer`);
      } else {
        assertError(r, bad[i][1], bad[i][2], `bad request ${i}`);
      }
    }
  });
});

function formOf(body) {
  const fd = form(null, {});
  fd.append('image', new Blob([Buffer.from(body.image, 'base64')]), 'img');
  for (const [k, v] of Object.entries(body)) {
    if (k === 'image') continue;
    if (Array.isArray(v) && k !== 'size') fd.append(k, v.join(','));
    else fd.append(k, typeof v === 'string' ? v : JSON.stringify(v));
  }
  return fd;
}

describe('overload', () => {
  it('a full queue answers 503 queue_full with Retry-After; the rest are served', async () => {
    const s = await startServer({ args: ['--workers', '1', '--queue', '1', '--max-size', '64'] });
    try {
      const rs = await Promise.all(Array.from({ length: 6 }, () => call(s, 'POST', '/explain', { json: HEAVY, timeoutMs: 60000 })));
      const full = rs.filter((r) => r.status === 503);
      const ok = rs.filter((r) => r.status === 200);
      assert.ok(full.length >= 1, `statuses ${rs.map((r) => r.status)}: no 503 with 1 worker and a queue of 1`);
      assert.ok(ok.length >= 1, `statuses ${rs.map((r) => r.status)}: nothing served`);
      for (const r of full) {
        assertError(r, 503, 'queue_full');
        const ra = r.headers.get('retry-after');
        assert.match(ra || '', /^\d+$/, 'Retry-After: <seconds>');
      }
      for (const r of rs) assert.ok([200, 503].includes(r.status), `unexpected ${r.status}`);
    } finally {
      await s.stop();
    }
  });

  // TAM at 192x192 (576 tokens) takes about 1.5 s on the tiny model
  const TAM_SLOW = { image: IMG, methods: ['tam'], size: [192, 192] };

  it('a request that waits in the queue past --deadline-ms -> 504 timeout', async () => {
    const s = await startServer({ args: ['--deadline-ms', '300', '--workers', '1', '--max-size', '192', '--drain-ms', '100'] });
    try {
      const slow = call(s, 'POST', '/explain', { json: { ...TAM_SLOW, async: true } });   // a job keeps the worker busy
      assert.equal((await slow).status, 202);
      const r = await call(s, 'POST', '/explain', { json: { image: IMG }, timeoutMs: 60000 });
      assertError(r, 504, 'timeout', 'queued behind a long job');
    } finally {
      await s.stop();
    }
  });

  it('a TAM request that runs past --deadline-ms -> 504 timeout', async () => {
    const s = await startServer({ args: ['--deadline-ms', '200', '--max-size', '192', '--tam-sync-gflop', '1000', '--drain-ms', '100'] });
    try {
      const t0 = Date.now();
      const r = await call(s, 'POST', '/explain', { json: TAM_SLOW, timeoutMs: 60000 });
      assertError(r, 504, 'timeout', `TAM at 192x192 (answered after ${Date.now() - t0} ms)`);
      assert.equal((await call(s, 'POST', '/explain', { json: { image: IMG } })).status, 200, 'the server goes on');
    } finally {
      await s.stop();
    }
  });

  it('a CDAM-family request that runs past --deadline-ms -> 504 timeout', async () => {
    const s = await startServer({ args: ['--deadline-ms', '20', '--max-size', '64'] });
    try {
      const t0 = Date.now();
      const r = await call(s, 'POST', '/explain', { json: HEAVY, timeoutMs: 60000 });
      const ms = Date.now() - t0;
      if (r.status === 200) assert.ok(r.json.timing_ms.total <= 20, `answered 200 after timing_ms.total = ${r.json.timing_ms.total} ms (${ms} ms seen), past the 20 ms deadline`);
      else assertError(r, 504, 'timeout');
    } finally {
      await s.stop();
    }
  });

  it('--max-megapixels refuses a larger image (413 image_too_large)', async () => {
    const s = await startServer({ args: ['--max-megapixels', '1'] });
    try {
      const big = makePng(1200, 1000, 7, { flat: true }).toString('base64');   // 1.2 megapixels
      assertError(await call(s, 'POST', '/explain', { json: { image: big } }), 413, 'image_too_large');
      const ok = makePng(1000, 1000, 7, { flat: true }).toString('base64');    // exactly 1 megapixel
      assert.equal((await call(s, 'POST', '/explain', { json: { image: ok } })).status, 200);
    } finally {
      await s.stop();
    }
  });
});
