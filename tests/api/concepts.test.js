// /concepts: create (JSON and multipart), list, get, delete, explain with a stored concept
// and with its embedding inline, errors, persistence across a restart, crash safety
// (kill -9 during concept writes), 507 storage_full on a full disk.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { assertError, b64, call, form, image, sleep } from './lib/client.js';
import { assertClose, readSafetensors, row } from './lib/golden.js';
import { GOLDEN, startServer, tempDir } from './lib/server.js';

const G = readSafetensors(`${GOLDEN}/api_tiny.safetensors`);
const T = G.tensors;
const LABELS = JSON.parse(G.metadata.labels);
const [C0] = JSON.parse(G.metadata.classes);
const CONCEPT_IMAGES = JSON.parse(G.metadata.concept_images);   // rgb24.bmp, palette.png
const IMG = b64('rgb8.png');
const TOL = 1e-4;

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv?.stop(); });

const create = (s, json) => call(s, 'POST', '/concepts', { json });
const conceptForm = (name, images) => {
  const fd = new FormData();
  if (name !== null) fd.append('name', name);
  for (const n of images) fd.append('image', new Blob([image(n)], { type: 'application/octet-stream' }), n);
  return fd;
};

/** The same concept: equal id, name, images; embeddings equal as float32 (the server may
 *  print more or fewer digits of the same float32); created equal to the millisecond. */
function assertSameConcept(got, want, what) {
  const { embedding: ge, created: gc, ...g } = got;
  const { embedding: we, created: wc, ...w } = want;
  assert.deepEqual(g, w, what);
  assert.ok(Math.abs(gc - wc) <= 1e-3, `${what}: created ${gc} vs ${wc}`);
  if (we !== undefined || ge !== undefined) {
    assert.deepEqual(ge.map(Math.fround), we.map(Math.fround), `${what}: the same float32 embedding`);
  }
}

function checkConcept(c, name, nimages, what) {
  assert.match(c.id, /^[0-9a-f]{32}$/, `${what}: id`);
  assert.equal(c.name, name, `${what}: name`);
  assert.equal(c.images, nimages, `${what}: images`);
  const now = Date.now() / 1000;
  assert.ok(Math.abs(c.created - now) < 600, `${what}: created ${c.created} is about now (${now})`);
}

describe('concepts: create, list, get, delete', () => {
  let made;
  let madeForm;

  it('POST /concepts (JSON) -> 201 with the reference embedding', async () => {
    const r = await create(srv, { name: 'stripes', images: CONCEPT_IMAGES.map(b64) });
    assert.equal(r.status, 201, r.text.slice(0, 300));
    checkConcept(r.json, 'stripes', 2, 'JSON concept');
    assert.equal(r.json.embedding.length, 32);
    assertClose('concept embedding', r.json.embedding, Array.from(T.concept.data), TOL);
    made = r.json;
  });

  it('POST /concepts (multipart, repeated image parts) -> 201, the same embedding', async () => {
    const r = await call(srv, 'POST', '/concepts', { form: conceptForm('stripes (form)', CONCEPT_IMAGES) });
    assert.equal(r.status, 201, r.text.slice(0, 300));
    checkConcept(r.json, 'stripes (form)', 2, 'multipart concept');
    assert.notEqual(r.json.id, made.id, 'a fresh id');
    assert.deepEqual(r.json.embedding.map(Math.fround), made.embedding.map(Math.fround), 'multipart and JSON give the same embedding');
    madeForm = r.json;
  });

  it('a concept from one image, a data: URL and a 128-character name', async () => {
    const name = 'n'.repeat(128);
    const r = await create(srv, { name, images: [`data:image/png;base64,${IMG}`] });
    assert.equal(r.status, 201, r.text.slice(0, 300));
    checkConcept(r.json, name, 1, 'one image');
    assert.equal(r.json.embedding.length, 32);
    const u = await create(srv, { name: 'zebra "stripes" / ünïcødé', images: [IMG] });
    assert.equal(u.status, 201);
    assert.equal(u.json.name, 'zebra "stripes" / ünïcødé');
    assert.deepEqual(u.json.embedding.map(Math.fround), r.json.embedding.map(Math.fround), 'same image, same embedding');
  });

  it('GET /concepts lists them sorted by created, without embeddings', async () => {
    const r = await call(srv, 'GET', '/concepts');
    assert.equal(r.status, 200);
    const ids = r.json.concepts.map((c) => c.id);
    assert.ok(ids.includes(made.id) && ids.includes(madeForm.id));
    const created = r.json.concepts.map((c) => c.created);
    assert.deepEqual(created, [...created].sort((a, b) => a - b), 'sorted by created');
    const c = r.json.concepts.find((x) => x.id === made.id);
    assertSameConcept(c, { id: made.id, name: made.name, images: made.images, created: made.created }, 'listed');
  });

  it('GET /concepts/{id} returns the whole concept', async () => {
    const r = await call(srv, 'GET', `/concepts/${made.id}`);
    assert.equal(r.status, 200);
    assertSameConcept(r.json, made, 'GET');
  });

  it('explain with a stored concept: target {type: concept, id, name}, reference scores', async () => {
    const r = await call(srv, 'POST', '/explain', { json: { image: IMG, concept: made.id } });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const e = r.json.explanations;
    assert.equal(e.length, 2, 'top-1 class, then the concept');
    assert.deepEqual(e[0].target, { type: 'class', index: C0, label: LABELS[C0] });
    assertClose('class cdam', e[0].scores, row(T.cdam, 0), TOL);
    assert.deepEqual(e[1].target, { type: 'concept', id: made.id, name: 'stripes' });
    assertClose('concept cdam', e[1].scores, Array.from(T.cdam_concept.data), TOL);
  });

  it('the embedding inline gives the same scores as the stored id', async () => {
    const r = await call(srv, 'POST', '/explain', {
      json: { image: IMG, classes: [C0], concept: made.id, concept_embedding: made.embedding, methods: ['cdam', 'rp'] },
    });
    assert.equal(r.status, 200, r.text.slice(0, 300));
    const e = r.json.explanations;
    assert.deepEqual(e.map((x) => [x.method, x.target.type]),
      [['cdam', 'class'], ['cdam', 'concept'], ['cdam', 'embedding'], ['rp', 'class'], ['rp', 'concept'], ['rp', 'embedding']]);
    assertClose('cdam: embedding vs concept id', e[2].scores, e[1].scores, 1e-6);
    assertClose('rp: embedding vs concept id', e[5].scores, e[4].scores, 1e-6);
    assertClose('cdam concept vs reference', e[1].scores, Array.from(T.cdam_concept.data), TOL);
  });

  it('explain with a stored concept from multipart', async () => {
    const j = await call(srv, 'POST', '/explain', { json: { image: IMG, concept: made.id } });
    const m = await call(srv, 'POST', '/explain', { form: form('rgb8.png', { concept: made.id }) });
    assert.equal(m.status, 200);
    assert.deepEqual(m.json.explanations, j.json.explanations);
  });

  it('DELETE /concepts/{id} -> 204 without a body; then 404 everywhere', async () => {
    const d = await call(srv, 'DELETE', `/concepts/${madeForm.id}`);
    assert.equal(d.status, 204);
    assert.equal(d.body.length, 0);
    assertError(await call(srv, 'GET', `/concepts/${madeForm.id}`), 404, 'not_found', 'GET after delete');
    assertError(await call(srv, 'DELETE', `/concepts/${madeForm.id}`), 404, 'not_found', 'DELETE twice');
    const l = await call(srv, 'GET', '/concepts');
    assert.ok(!l.json.concepts.some((c) => c.id === madeForm.id), 'not listed');
    assertError(await call(srv, 'POST', '/explain', { json: { image: IMG, concept: madeForm.id } }), 400, 'unknown_concept', 'explain');
    const still = await call(srv, 'GET', `/concepts/${made.id}`);
    assert.equal(still.status, 200, 'the other concept is still there');
  });

  it('unknown concept ids -> 404 not_found', async () => {
    assertError(await call(srv, 'GET', '/concepts/0123456789abcdef0123456789abcdef'), 404, 'not_found');
    assertError(await call(srv, 'GET', '/concepts/not-an-id'), 404, 'not_found');
    assertError(await call(srv, 'DELETE', '/concepts/ffffffffffffffffffffffffffffffff'), 404, 'not_found');
  });
});

describe('concepts: errors', () => {
  const img = IMG;
  const cases = [
    ['no name', { images: [img] }, 400, 'bad_request'],
    ['empty name', { name: '', images: [img] }, 400, 'bad_request'],
    ['name over 128 characters', { name: 'x'.repeat(129), images: [img] }, 400, 'bad_request'],
    ['no images field', { name: 'refused' }, 400, 'missing_image'],
    ['more than 32 images', { name: 'refused', images: new Array(33).fill(img) }, 400, 'bad_request'],
    ['image not valid base64', { name: 'refused', images: [img, '***not base64***'] }, 400, 'bad_base64'],
    ['not an image', { name: 'refused', images: [b64('not_an_image.txt')] }, 400, 'bad_image'],
    ['truncated image', { name: 'refused', images: [b64('truncated.png')] }, 400, 'bad_image'],
    ['huge-dimension image', { name: 'refused', images: [b64('huge.png')] }, 413, 'image_too_large'],
  ];
  for (const [what, body, status, code] of cases) {
    it(`${what} -> ${status} ${code}`, async () => {
      assertError(await create(srv, body), status, code, what);
    });
  }
  // "1..32 images": an empty list is both "no image given" and an out-of-range list
  it('empty image list -> 400 missing_image or bad_request', async () => {
    assertError(await create(srv, { name: 'refused', images: [] }), 400, ['missing_image', 'bad_request']);
  });
  it('malformed JSON -> 400 bad_json', async () => {
    assertError(await create(srv, '{"name": "refused", "images": ['), 400, 'bad_json');
  });
  it('name of the wrong JSON type -> 400 bad_json or bad_request', async () => {
    assertError(await create(srv, { name: 5, images: [img] }), 400, ['bad_json', 'bad_request'], 'name a number');
  });
  it('images not a list -> 400 bad_json or bad_request', async () => {
    assertError(await create(srv, { name: 'wrong type', images: img }), 400, ['bad_json', 'bad_request'], 'images a string');
  });
  it('multipart without an image part -> 400 missing_image', async () => {
    assertError(await call(srv, 'POST', '/concepts', { form: conceptForm('refused', []) }), 400, 'missing_image');
  });
  it('multipart without a name -> 400 bad_request', async () => {
    assertError(await call(srv, 'POST', '/concepts', { form: conceptForm(null, ['rgb8.png']) }), 400, 'bad_request');
  });
  it('no failed request left a concept behind', async () => {
    const r = await call(srv, 'GET', '/concepts');
    assert.deepEqual(r.json.concepts.filter((c) => c.name === 'refused'), [], 'a refused concept was stored');
  });
});

describe('concepts: persistence', () => {
  it('a restarted server on the same --data-dir finds the concepts', async () => {
    const dataDir = tempDir('cdam-persist-');
    const a = await startServer({ dataDir });
    const made = [];
    for (const [name, imgs] of [['one', ['rgb8.png']], ['two', CONCEPT_IMAGES], ['three', ['palette.png', 'rgb8.png', 'rgb24.bmp']]]) {
      const r = await create(a, { name, images: imgs.map(b64) });
      assert.equal(r.status, 201);
      made.push(r.json);
    }
    const del = await call(a, 'DELETE', `/concepts/${made[0].id}`);
    assert.equal(del.status, 204);
    const listA = (await call(a, 'GET', '/concepts')).json;
    await a.stop();
    const b = await startServer({ dataDir });
    try {
      const listB = (await call(b, 'GET', '/concepts')).json;
      assert.deepEqual(listB, listA, 'the same list after the restart');
      assert.deepEqual(listB.concepts.map((c) => c.id), [made[1].id, made[2].id], 'the deleted one stays deleted');
      for (const c of made.slice(1)) {
        const g = await call(b, 'GET', `/concepts/${c.id}`);
        assert.equal(g.status, 200);
        assertSameConcept(g.json, c, 'after the restart');
      }
      const e = await call(b, 'POST', '/explain', { json: { image: IMG, classes: [C0], concept: made[1].id } });
      assert.equal(e.status, 200);
      assertClose('concept cdam after restart', e.json.explanations[1].scores, Array.from(T.cdam_concept.data), TOL);
    } finally {
      await b.stop();
    }
  });

  it('kill -9 during concept writes: after a restart every listed concept is complete, every acknowledged one is there', async (t) => {
    const dataDir = tempDir('cdam-crash-');
    const images = CONCEPT_IMAGES.map(b64);
    for (let round = 0; round < 2; round++) {
      const s = await startServer({ dataDir });
      const acked = [];
      const pending = [];
      for (let i = 0; i < 24; i++) {
        pending.push(create(s, { name: `crash-${round}-${i}`, images })
          .then((r) => { if (r.status === 201) acked.push(r.json.id); })
          .catch(() => { /* the connection died with the server */ }));
      }
      // kill as soon as a few writes are acknowledged: the others are in flight
      const t0 = Date.now();
      while (acked.length < 3 && Date.now() - t0 < 10000) await sleep(2);
      await s.kill9();
      await Promise.all(pending);
      assert.ok(acked.length >= 3, `round ${round}: ${acked.length} concepts acknowledged before the kill`);
      const s2 = await startServer({ dataDir });
      try {
        const list = (await call(s2, 'GET', '/concepts')).json.concepts;
        const ids = new Set(list.map((c) => c.id));
        t.diagnostic(`round ${round}: ${acked.length} of 24 acknowledged before kill -9, ${list.length} listed after the restart (all rounds)`);
        for (const id of acked) assert.ok(ids.has(id), `round ${round}: acknowledged concept ${id} lost`);
        for (const c of list) {
          const g = await call(s2, 'GET', `/concepts/${c.id}`);
          assert.equal(g.status, 200, `listed concept ${c.id} cannot be read`);
          assert.match(g.json.name, /^crash-\d+-\d+$/);
          assert.equal(g.json.images, 2);
          assert.equal(g.json.embedding.length, 32);
          assertClose(`concept ${c.id} embedding`, g.json.embedding, Array.from(T.concept.data), TOL);
        }
      } finally {
        await s2.stop();
      }
    }
  });

  it('a full disk answers 507 storage_full and stores nothing', async () => {
    // a private mount namespace with a 256 KiB tmpfs as --data-dir, filled up before the
    // server starts (directories need no data pages; a concept file does)
    const probe = spawnSync('unshare', ['-m', 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" && umount "$d" && rmdir "$d"']);
    assert.equal(probe.status, 0, `this test needs root and mount namespaces (unshare -m, mount -t tmpfs): ${probe.stderr}`);
    const dataDir = tempDir('cdam-full-');
    const s = await startServer({
      dataDir,
      wrap: (bin, args) => ['unshare', ['-m', 'sh', '-c',
        'mount -t tmpfs -o size=256k tmpfs "$1" && dd if=/dev/zero of="$1/filler" bs=4k >/dev/null 2>&1; shift; exec "$@"',
        'sh', dataDir, bin, ...args]],
    });
    try {
      const r = await create(s, { name: 'no room', images: [IMG] });
      assertError(r, 507, 'storage_full', 'concept on a full disk');
      const l = await call(s, 'GET', '/concepts');
      assert.deepEqual(l.json.concepts, [], 'nothing stored');
      const e = await call(s, 'POST', '/explain', { json: { image: IMG } });
      assert.equal(e.status, 200, 'explanations still work');
    } finally {
      await s.stop();
    }
  });
});
