// POST /explain: the numbers against the PyTorch goldens (tests/data/golden/api_tiny.safetensors,
// written by tests/ref/make_api_goldens.py), JSON and multipart bodies, options, PNG output,
// and every 400/413 error of server/API.md, each bad input its own test.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertError, b64, call, form, multipartRequest, raw, rawSplit, stable } from './lib/client.js';
import { assertClose, readSafetensors, row } from './lib/golden.js';
import { pngSize } from './lib/png.js';
import { GOLDEN, startServer } from './lib/server.js';

const G = readSafetensors(`${GOLDEN}/api_tiny.safetensors`);
const T = G.tensors;
const LABELS = JSON.parse(G.metadata.labels);
const [C0, C1] = JSON.parse(G.metadata.classes);            // top-1 and lowest class at 32x32
const [C40] = JSON.parse(G.metadata.classes_40x24);         // top-1 at 40x24
const IMG = b64('rgb8.png');
const TOL = 1e-4;

let srv;
before(async () => { srv = await startServer({ args: ['--max-size', '64'] }); });
after(async () => { await srv?.stop(); });

const explain = (json, opts = {}) => call(srv, 'POST', '/explain', { json, ...opts });
const explainForm = (fd) => call(srv, 'POST', '/explain', { form: fd });

function checkPredictions(preds, logits, probs, k, what) {
  assert.equal(preds.length, k, `${what}: ${k} predictions`);
  const order = Array.from(logits.data.keys()).sort((a, b) => logits.data[b] - logits.data[a]);
  assert.deepEqual(preds.map((p) => p.index), order.slice(0, k), `${what}: top-${k} indices`);
  for (const p of preds) assert.equal(p.label, LABELS[p.index], `${what}: label of ${p.index}`);
  for (let i = 1; i < preds.length; i++) assert.ok(preds[i].probability <= preds[i - 1].probability, `${what}: descending`);
  assertClose(`${what}: logits`, preds.map((p) => p.logit), order.slice(0, k).map((i) => logits.data[i]), TOL);
  assertClose(`${what}: probabilities`, preds.map((p) => p.probability), order.slice(0, k).map((i) => probs.data[i]), TOL);
}

function checkExplanation(e, method, target, want, what) {
  assert.equal(e.method, method, `${what}: method`);
  assert.deepEqual(e.target, target, `${what}: target`);
  if (want) assertClose(`${what}: scores`, e.scores, want, TOL);
  assert.equal(e.min, Math.min(...e.scores), `${what}: min is the minimum of the scores`);
  assert.equal(e.max, Math.max(...e.scores), `${what}: max is the maximum of the scores`);
}

const cls = (i) => ({ type: 'class', index: i, label: LABELS[i] });

describe('POST /explain: numbers against the PyTorch reference', () => {
  it('default request: native size, top-5 predictions, CDAM of the top-1 class', async () => {
    const r = await explain({ image: IMG });
    assert.equal(r.status, 200);
    const j = r.json;
    assert.equal(j.model, 'tiny');
    assert.deepEqual(j.input, { width: 32, height: 32 });
    assert.deepEqual(j.image, { width: 32, height: 24, format: 'png' });
    assert.deepEqual(j.grid, { rows: 4, cols: 4 });
    checkPredictions(j.predictions, T.logits, T.probabilities, 5, 'default');
    assert.equal(j.explanations.length, 1);
    checkExplanation(j.explanations[0], 'cdam', cls(C0), row(T.cdam, 0), 'cdam top-1');
    for (const k of ['queue', 'decode', 'forward', 'explain', 'total']) assert.ok(j.timing_ms[k] >= 0, `timing_ms.${k}`);
    assert.ok(j.timing_ms.total >= j.timing_ms.forward, 'total >= forward');
  });

  it('top_k 7: every logit and probability', async () => {
    const r = await explain({ image: IMG, top_k: 7 });
    assert.equal(r.status, 200);
    checkPredictions(r.json.predictions, T.logits, T.probabilities, 7, 'top_k 7');
    const s = r.json.predictions.reduce((a, p) => a + p.probability, 0);
    assert.ok(Math.abs(s - 1) < 1e-5, `probabilities sum to ${s}`);
  });

  it('top_k 3 gives 3 predictions', async () => {
    const r = await explain({ image: IMG, top_k: 3 });
    assert.equal(r.status, 200);
    checkPredictions(r.json.predictions, T.logits, T.probabilities, 3, 'top_k 3');
  });

  it('classes by index with cdam, am, rp: methods in request order, one per target, am once', async () => {
    const r = await explain({ image: IMG, classes: [C0, C1], methods: ['cdam', 'am', 'rp'] });
    assert.equal(r.status, 200);
    const e = r.json.explanations;
    assert.deepEqual(e.map((x) => [x.method, x.target && x.target.index]),
      [['cdam', C0], ['cdam', C1], ['am', null], ['rp', C0], ['rp', C1]]);
    checkExplanation(e[0], 'cdam', cls(C0), row(T.cdam, 0), `cdam class ${C0}`);
    checkExplanation(e[1], 'cdam', cls(C1), row(T.cdam, 1), `cdam class ${C1}`);
    checkExplanation(e[2], 'am', null, Array.from(T.am_mean.data), 'am (mean over heads)');
    checkExplanation(e[3], 'rp', cls(C0), Array.from(T.rp.data), `rp class ${C0}`);
    checkExplanation(e[4], 'rp', cls(C1), null, `rp class ${C1}`);
    for (const x of e[4].scores) assert.ok(x >= -1e-6, 'RP is non-negative');
  });

  it('classes by label name (case-insensitive) equal classes by index', async () => {
    const byIndex = await explain({ image: IMG, classes: [C0, C1] });
    const byName = await explain({ image: IMG, classes: [LABELS[C0].toUpperCase(), LABELS[C1]] });
    const mixed = await explain({ image: IMG, classes: [C0, LABELS[C1][0].toUpperCase() + LABELS[C1].slice(1)] });
    for (const r of [byIndex, byName, mixed]) assert.equal(r.status, 200);
    assert.deepEqual(byName.json.explanations, byIndex.json.explanations);
    assert.deepEqual(mixed.json.explanations, byIndex.json.explanations);
    checkExplanation(byName.json.explanations[1], 'cdam', cls(C1), row(T.cdam, 1), 'by name');
  });

  it('non-square size [40, 24]: input 24 wide x 40 high, 5x3 grid, numbers of that size', async () => {
    const r = await explain({ image: IMG, size: [40, 24] });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.input, { width: 24, height: 40 });
    assert.deepEqual(r.json.grid, { rows: 5, cols: 3 });
    checkPredictions(r.json.predictions, T.logits_40x24, T.probabilities_40x24, 5, 'size [40, 24]');
    checkExplanation(r.json.explanations[0], 'cdam', cls(C40), row(T.cdam_40x24, 0), 'cdam at 40x24');
  });

  it('concept_embedding inline: a target of type "embedding" with the reference scores', async () => {
    const emb = Array.from(T.concept.data);
    const r = await explain({ image: IMG, concept_embedding: emb });
    assert.equal(r.status, 200);
    const e = r.json.explanations;
    assert.deepEqual(e.map((x) => x.target.type), ['class', 'embedding'], 'targets: top-1 class, then the embedding');
    checkExplanation(e[0], 'cdam', cls(C0), row(T.cdam, 0), 'class target');
    checkExplanation(e[1], 'cdam', { type: 'embedding' }, Array.from(T.cdam_concept.data), 'embedding target');
  });

  it('integrated_cdam with 1 step equals cdam; smooth_cdam is deterministic per seed', async () => {
    const r = await explain({ image: IMG, methods: ['cdam', 'integrated_cdam'], samples: 1 });
    assert.equal(r.status, 200);
    assertClose('integrated_cdam(1 step) vs cdam', r.json.explanations[1].scores, r.json.explanations[0].scores, 1e-5);
    assertClose('integrated_cdam(1 step) vs golden', r.json.explanations[1].scores, row(T.cdam, 0), TOL);
    const s1 = await explain({ image: IMG, methods: ['smooth_cdam'], samples: 4, seed: 3 });
    const s2 = await explain({ image: IMG, methods: ['smooth_cdam'], samples: 4, seed: 3 });
    const s3 = await explain({ image: IMG, methods: ['smooth_cdam'], samples: 4, seed: 4 });
    const s4 = await explain({ image: IMG, methods: ['smooth_cdam'], samples: 4, seed: 3, sigma: 0.5 });
    for (const x of [s1, s2, s3, s4]) assert.equal(x.status, 200);
    assert.deepEqual(s2.json.explanations, s1.json.explanations, 'same seed, same map');
    assert.notDeepEqual(s3.json.explanations[0].scores, s1.json.explanations[0].scores, 'another seed, another map');
    assert.notDeepEqual(s4.json.explanations[0].scores, s1.json.explanations[0].scores, 'another sigma, another map');
  });

  it('am with head and threshold', async () => {
    const r = await explain({ image: IMG, methods: ['am'] });
    const h0 = await explain({ image: IMG, methods: ['am'], head: 0 });
    const h1 = await explain({ image: IMG, methods: ['am'], head: 1 });
    const th = await explain({ image: IMG, methods: ['am'], threshold: 0.6 });
    for (const x of [r, h0, h1, th]) assert.equal(x.status, 200);
    const mean = h0.json.explanations[0].scores.map((v, i) => (v + h1.json.explanations[0].scores[i]) / 2);
    assertClose('mean of head 0 and head 1 = am', mean, Array.from(T.am_mean.data), TOL);
    assert.notDeepEqual(h0.json.explanations[0].scores, h1.json.explanations[0].scores);
    const t = th.json.explanations[0].scores;
    assert.ok(t.some((v) => v === 0), 'threshold 0.6 zeroes some tokens');
    t.forEach((v, i) => assert.ok(v <= r.json.explanations[0].scores[i] + 1e-7 && v >= 0, `thresholded token ${i}`));
  });
});

describe('POST /explain: bodies and options', () => {
  it('multipart/form-data gives the same result as JSON', async () => {
    const j = await explain({ image: IMG, classes: [C0, C1], methods: ['cdam', 'am', 'rp'], top_k: 3 });
    const m = await explainForm(form('rgb8.png', { classes: `${C0},${C1}`, methods: 'cdam,am,rp', top_k: '3' }));
    const m2 = await explainForm(form('rgb8.png', { classes: [String(C0), LABELS[C1]], methods: ['cdam', 'am', 'rp'], top_k: '3' }));
    for (const x of [j, m, m2]) assert.equal(x.status, 200);
    assert.deepEqual(stable(m.json), stable(j.json), 'comma-separated lists');
    assert.deepEqual(stable(m2.json), stable(j.json), 'repeated fields');
  });

  it('a multipart body arriving in two TCP segments gives the same answer wherever it is split', async () => {
    const fd = form('rgb8.png', { methods: ['cdam', 'am', 'rp'], classes: [String(C0), LABELS[C1]] });
    const req = new Request('http://x/', { method: 'POST', body: fd });
    const ct = req.headers.get('content-type');
    const body = Buffer.from(await req.arrayBuffer());
    const head = `POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nConnection: close\r\n` +
      `Content-Type: ${ct}\r\nContent-Length: ${body.length}\r\n\r\n`;
    const whole = await explain({ image: IMG, methods: ['cdam', 'am', 'rp'], classes: [C0, C1] });
    assert.equal(whole.status, 200);
    const bad = [];
    for (let split = 1; split < body.length; split += 3) {
      const r = await rawSplit(srv, head, body, split);
      if (r.status !== 200 || JSON.stringify(stable(r.json)) !== JSON.stringify(stable(whole.json))) {
        bad.push(`split at byte ${split}: ${r.status} ${r.text.slice(0, 120)}`);
      }
    }
    assert.deepEqual(bad, [], `${bad.length} of ${Math.ceil((body.length - 1) / 3)} split points give another answer:\n  ${bad.slice(0, 8).join('\n  ')}`);
  });

  it('multipart size as JSON text, "h,w" and "hxw"', async () => {
    const j = await explain({ image: IMG, size: [40, 24] });
    assert.equal(j.status, 200);
    for (const size of ['[40, 24]', '40,24', '40x24']) {
      const m = await explainForm(form('rgb8.png', { size }));
      assert.equal(m.status, 200, `size ${size}: ${m.text.slice(0, 200)}`);
      assert.deepEqual(stable(m.json), stable(j.json), `size ${size}`);
    }
  });

  it('multipart concept_embedding as JSON text', async () => {
    const emb = Array.from(T.concept.data);
    const j = await explain({ image: IMG, concept_embedding: emb });
    const m = await explainForm(form('rgb8.png', { concept_embedding: JSON.stringify(emb) }));
    assert.equal(m.status, 200);
    assert.deepEqual(stable(m.json), stable(j.json));
  });

  it('a data: URL prefix is accepted', async () => {
    const plain = await explain({ image: IMG });
    const url = await explain({ image: `data:image/png;base64,${IMG}` });
    assert.equal(url.status, 200);
    assert.deepEqual(stable(url.json), stable(plain.json));
  });

  it('unknown fields are ignored', async () => {
    const plain = await explain({ image: IMG });
    const extra = await explain({ image: IMG, colour: 'blue', nested: { a: [1, 2] } });
    assert.equal(extra.status, 200);
    assert.deepEqual(stable(extra.json), stable(plain.json));
  });

  it('every image format decodes (JPEG, progressive JPEG, PNG 8/16 bit, palette, alpha, BMP, GIF, WebP; EXIF-rotated JPEGs report their displayed size)', async () => {
    const cases = [
      ['baseline.jpg', 'jpeg', 32, 24], ['progressive.jpg', 'jpeg', 32, 24], ['rgb16.png', 'png', 32, 24],
      ['palette.png', 'png', 32, 24], ['rgba8.png', 'png', 32, 24], ['grey8.png', 'png', 32, 24],
      ['rgb24.bmp', 'bmp', 32, 24], ['anim2.gif', 'gif', 32, 24], ['lossy.webp', 'webp', 32, 24],
      ['lossless.webp', 'webp', 32, 24], ['exif6.jpg', 'jpeg', 32, 24], ['exif8.jpg', 'jpeg', 32, 24],
    ];
    for (const [name, fmt, w, h] of cases) {
      const r = await explain({ image: b64(name) });
      assert.equal(r.status, 200, `${name}: ${r.text.slice(0, 200)}`);
      assert.deepEqual(r.json.image, { width: w, height: h, format: fmt }, name);
      assert.deepEqual(r.json.input, { width: 32, height: 32 }, name);
      assert.ok(r.json.explanations[0].scores.every(Number.isFinite), `${name}: finite scores`);
    }
  });

  it('every method in one request', async () => {
    const methods = ['cdam', 'smooth_cdam', 'integrated_cdam', 'am', 'rp', 'tam'];
    const r = await explain({ image: IMG, methods, classes: [C0, C1], samples: 4 });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const e = r.json.explanations;
    const want = [];
    for (const m of methods) {
      if (m === 'am') want.push([m, null]);
      else want.push([m, C0], [m, C1]);
    }
    assert.deepEqual(e.map((x) => [x.method, x.target && x.target.index]), want);
    for (const x of e) {
      assert.equal(x.scores.length, 16);
      assert.ok(x.scores.every(Number.isFinite), `${x.method}: finite`);
    }
    checkExplanation(e[0], 'cdam', cls(C0), row(T.cdam, 0), 'cdam');
    checkExplanation(e[6], 'am', null, Array.from(T.am_mean.data), 'am');
    checkExplanation(e[7], 'rp', cls(C0), Array.from(T.rp.data), 'rp');
  });

  it('64 targets are accepted', async () => {
    const classes = Array.from({ length: 64 }, (_, i) => i % 7);
    const r = await explain({ image: IMG, classes });
    assert.equal(r.status, 200);
    assert.equal(r.json.explanations.length, 64);
    assert.deepEqual(r.json.explanations.map((e) => e.target.index), classes);
    assert.deepEqual(r.json.explanations[7].scores, r.json.explanations[0].scores);
  });

  it('format=png answers an image/png overlay (JSON and multipart)', async () => {
    const r = await explain({ image: IMG, format: 'png' });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^image\/png/);
    const s = pngSize(r.body);
    assert.ok(s, 'PNG signature and IHDR');
    // an overlay at least as large as the uploaded image (32x24), of a sane size
    assert.ok(s.width >= 32 && s.height >= 24 && s.width <= 4096 && s.height <= 4096, `IHDR ${s.width}x${s.height}`);
    const m = await explainForm(form('rgb8.png', { format: 'png' }));
    assert.equal(m.status, 200);
    assert.match(m.headers.get('content-type'), /^image\/png/);
    assert.deepEqual(pngSize(m.body), s, 'same picture size from multipart');
    const panel = await explain({ image: IMG, format: 'png', methods: ['cdam', 'am', 'rp'] });
    assert.equal(panel.status, 200);
    const ps = pngSize(panel.body);
    assert.ok(ps && ps.width * ps.height > s.width * s.height, `a panel of 3 maps is larger (${ps?.width}x${ps?.height} vs ${s.width}x${s.height})`);
    const big = await explain({ image: IMG, format: 'png', size: [64, 64] });
    assert.equal(big.status, 200);
    const bs = pngSize(big.body);
    assert.ok(bs && bs.width >= 32 && bs.height >= 24, `overlay at size [64, 64]: ${bs?.width}x${bs?.height}`);
  });
});

describe('POST /explain: errors', () => {
  const img = IMG;
  const cases = [
    ['class index out of range (7)', { image: img, classes: [7] }, 400, 'unknown_class'],
    ['class index out of range (1000)', { image: img, classes: [0, 1000] }, 400, 'unknown_class'],
    ['unknown label name', { image: img, classes: ['zebra'] }, 400, 'unknown_class'],
    ['unknown method', { image: img, methods: ['cdam', 'gradcam'] }, 400, 'unknown_method'],
    ['unknown concept id', { image: img, concept: '0123456789abcdef0123456789abcdef' }, 400, 'unknown_concept'],
    ['embedding of the wrong length (31)', { image: img, concept_embedding: new Array(31).fill(0.1) }, 400, 'bad_embedding'],
    ['embedding of the wrong length (33)', { image: img, concept_embedding: new Array(33).fill(0.1) }, 400, 'bad_embedding'],
    ['embedding with non-numbers', { image: img, concept_embedding: [...new Array(31).fill(0.1), 'x'] }, 400, 'bad_embedding'],
    ['embedding not a list', { image: img, concept_embedding: 0.5 }, 400, 'bad_embedding'],
    ['size not a multiple of 8 (height)', { image: img, size: [30, 32] }, 400, 'bad_size'],
    ['size not a multiple of 8 (width)', { image: img, size: [32, 36] }, 400, 'bad_size'],
    ['size zero', { image: img, size: [0, 32] }, 400, 'bad_size'],
    ['size negative', { image: img, size: [32, -8] }, 400, 'bad_size'],
    ['size over --max-size', { image: img, size: [72, 32] }, 400, 'bad_size'],
    ['size with one number', { image: img, size: [32] }, 400, 'bad_size'],
    ['size with three numbers', { image: img, size: [32, 32, 32] }, 400, 'bad_size'],
    ['too many classes (65)', { image: img, classes: Array.from({ length: 65 }, (_, i) => i % 7) }, 400, 'too_many_classes'],
    ['too many targets (64 classes + embedding)', { image: img, classes: Array.from({ length: 64 }, (_, i) => i % 7), concept_embedding: new Array(32).fill(0.1) }, 400, 'too_many_classes'],
    ['top_k 0', { image: img, top_k: 0 }, 400, 'bad_request'],
    ['head out of range', { image: img, methods: ['am'], head: 2 }, 400, 'bad_request'],
    ['head negative', { image: img, methods: ['am'], head: -1 }, 400, 'bad_request'],
    ['threshold over 1', { image: img, methods: ['am'], threshold: 1.5 }, 400, 'bad_request'],
    ['threshold negative', { image: img, methods: ['am'], threshold: -0.1 }, 400, 'bad_request'],
    ['samples 0', { image: img, methods: ['smooth_cdam'], samples: 0 }, 400, 'bad_request'],
    ['samples 257', { image: img, methods: ['integrated_cdam'], samples: 257 }, 400, 'bad_request'],
    ['sigma 0', { image: img, methods: ['smooth_cdam'], sigma: 0 }, 400, 'bad_request'],
    ['seed negative', { image: img, methods: ['smooth_cdam'], seed: -1 }, 400, 'bad_request'],
    ['format unknown', { image: img, format: 'gif' }, 400, 'bad_request'],
    ['missing image', { methods: ['cdam'] }, 400, 'missing_image'],
    ['missing image (empty object)', {}, 400, 'missing_image'],
    ['image not valid base64', { image: '!!!not*base64###' }, 400, 'bad_base64'],
    ['not an image (text file)', { image: b64('not_an_image.txt') }, 400, 'bad_image'],
    ['truncated PNG', { image: b64('truncated.png') }, 400, 'bad_image'],
    ['truncated JPEG', { image: b64('truncated.jpg') }, 400, 'bad_image'],
    ['huge-dimension PNG header', { image: b64('huge.png') }, 413, 'image_too_large'],
    ['huge-dimension JPEG header', { image: b64('huge.jpg') }, 413, 'image_too_large'],
    ['huge-dimension WebP header', { image: b64('huge.webp') }, 413, 'image_too_large'],
  ];
  for (const [what, body, status, code] of cases) {
    it(`${what} -> ${status} ${code}`, async () => {
      assertError(await explain(body), status, code, what);
    });
  }

  it('malformed JSON -> 400 bad_json', async () => {
    assertError(await explain(`{"image": "${img.slice(0, 20)}`), 400, 'bad_json', 'unterminated');
    assertError(await explain('{"image": }'), 400, 'bad_json', 'no value');
    assertError(await explain('not json at all'), 400, 'bad_json', 'not json');
  });

  it('a JSON body that is not an object -> 400 bad_json', async () => {
    assertError(await explain('[1, 2, 3]'), 400, 'bad_json', 'array');
    assertError(await explain('"image"'), 400, 'bad_json', 'string');
  });

  // API.md names both bad_json ("wrong JSON types") and bad_request ("wrong type") for these.
  it('fields of the wrong JSON type -> 400 bad_json or bad_request', async () => {
    const wrong = [
      { image: img, top_k: 'five' }, { image: img, methods: 5 }, { image: img, classes: { a: 1 } },
      { image: img, async: 'yes' }, { image: img, samples: 'many', methods: ['smooth_cdam'] }, { image: 42 },
      { image: img, size: 'big' },
    ];
    for (const b of wrong) {
      const r = await explain(b);
      const what = JSON.stringify({ ...b, image: typeof b.image === 'string' ? '<b64>' : b.image });
      if (b.size) assertError(r, 400, ['bad_json', 'bad_request', 'bad_size'], what);
      else assertError(r, 400, ['bad_json', 'bad_request'], what);
    }
  });

  it('missing image part in multipart -> 400 missing_image', async () => {
    assertError(await explainForm(form(null, { methods: 'cdam' })), 400, 'missing_image');
  });

  const malformed = [
    ['garbage instead of parts', 'XyZ', 'this is not a multipart body at all'],
    ['no closing boundary', 'XyZ', '--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n' +
      'Content-Type: image/png\r\n\r\n' + 'A'.repeat(50)],
    ['part headers never end', 'XyZ', '--XyZ\r\nContent-Disposition: form-data; name="image"'],
    ['part without Content-Disposition', 'XyZ', '--XyZ\r\nContent-Type: image/png\r\n\r\nAAAA\r\n--XyZ--\r\n'],
  ];
  for (const [what, boundary, body] of malformed) {
    it(`malformed multipart (${what}) -> 400 bad_multipart`, async () => {
      const r = await raw(srv, 'POST', '/explain', multipartRequest(srv, '/explain', boundary, Buffer.from(body, 'latin1')));
      assertError(r, 400, 'bad_multipart', what);
    });
  }

  it('multipart/form-data without a boundary -> 400 bad_multipart', async () => {
    const nb = await call(srv, 'POST', '/explain', { body: 'abc', contentType: 'multipart/form-data' });
    assertError(nb, 400, 'bad_multipart', 'no boundary');
  });

  it('bad field values in multipart (unknown class, bad size) -> 400', async () => {
    assertError(await explainForm(form('rgb8.png', { classes: 'zebra' })), 400, 'unknown_class', 'multipart classes');
    assertError(await explainForm(form('rgb8.png', { size: '30x32' })), 400, 'bad_size', 'multipart size');
    assertError(await explainForm(form('rgb8.png', { methods: 'cdam,gradcam' })), 400, 'unknown_method', 'multipart methods');
    assertError(await explainForm(form('not_an_image.txt')), 400, 'bad_image', 'multipart not an image');
    assertError(await explainForm(form('huge.png')), 413, 'image_too_large', 'multipart huge image');
  });

  it('the server still answers correctly after the errors', async () => {
    const r = await explain({ image: IMG });
    assert.equal(r.status, 200);
    checkExplanation(r.json.explanations[0], 'cdam', cls(C0), row(T.cdam, 0), 'after errors');
  });
});
