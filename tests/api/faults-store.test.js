// Allocation failures on the concept routes (build/cdam-server-fault; see faults.test.js
// and tests/fault/fault_alloc.c): GET /concepts, GET /concepts/{id}, POST /concepts (JSON
// and multipart: 201 with the right embedding, or a clean 500 and nothing stored), DELETE
// (204 and gone, or 500 and still there).
//
// The data folder: read-only or full -> concept creation fails with 507 storage_full and
// the concepts already there stay listed and readable, also after a restart; kill -9 at
// random moments during concept writes and deletes -> after a restart only complete
// concepts are listed and each one is readable.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { assertError, b64, call, image, sleep } from './lib/client.js';
import { DISARM, disarm, startFaultWithConcept, sweep, verdict } from './lib/faults.js';
import { startServer, tempDir } from './lib/server.js';

const IMG = b64('rgb8.png');

describe('allocation failures on the concept routes (cdam-server-fault)', () => {
  let s;
  let concept;
  const points = {};
  before(async () => {
    ({ s, concept } = await startFaultWithConcept(IMG, ['--cache-mb', '0']));
  });

  it('GET /concepts and GET /concepts/{id}', async (t) => {
    const list = (await call(s, 'GET', '/concepts')).json;
    points.list = await sweep(t, s, {
      name: 'GET /concepts',
      run: (headers) => call(s, 'GET', '/concepts', { headers }),
      check: (r, f) => verdict(r, f, 200, (x) => assert.deepEqual(x.json, list)),
    });
    const one = (await call(s, 'GET', `/concepts/${concept.id}`)).json;
    points.get = await sweep(t, s, {
      name: 'GET /concepts/{id}',
      run: (headers) => call(s, 'GET', `/concepts/${concept.id}`, { headers }),
      check: (r, f) => verdict(r, f, 200, (x) => assert.deepEqual(x.json, one)),
    });
  });

  it('POST /concepts (JSON and multipart): 201 with the right embedding, or 500 and nothing stored', async (t) => {
    for (const [name, run] of [
      ['POST /concepts JSON', (headers) => call(s, 'POST', '/concepts', { json: { name: 'fault', images: [IMG, b64('palette.png')] }, headers })],
      ['POST /concepts multipart', (headers) => {
        const fd = new FormData();
        fd.append('name', 'fault');
        for (const n of ['rgb8.png', 'palette.png']) fd.append('image', new Blob([image(n)]), n);
        return call(s, 'POST', '/concepts', { form: fd, headers });
      }],
    ]) {
      let want;
      const made = new Set();
      const before0 = new Set((await call(s, 'GET', '/concepts')).json.concepts.map((c) => c.id));
      points[name] = await sweep(t, s, {
        name,
        run,
        check: (r, f) => verdict(r, f, 201, (x) => {
          made.add(x.json.id);
          if (want === undefined) want = x.json.embedding.map(Math.fround);
          assert.deepEqual(x.json.embedding.map(Math.fround), want);
          assert.equal(x.json.images, 2);
        }),
      });
      const list = (await call(s, 'GET', '/concepts')).json.concepts;
      const extra = list.filter((c) => !before0.has(c.id) && !made.has(c.id));
      assert.deepEqual(extra, [], `${name}: a concept stored without a 201`);
      for (const id of made) assert.ok(list.some((c) => c.id === id), `${name}: concept ${id} answered 201 but not listed`);
      for (const c of list) assert.equal((await call(s, 'GET', `/concepts/${c.id}`)).status, 200, 'every listed concept is readable');
    }
  });

  it('DELETE /concepts/{id}: 204 and gone, or 500 and still there', async (t) => {
    points.del = await sweep(t, s, {
      name: 'DELETE /concepts/{id}',
      async run(headers) {
        const c = await call(s, 'POST', '/concepts', { json: { name: 'to delete', images: [IMG] }, headers: DISARM });
        assert.equal(c.status, 201);
        const d = await call(s, 'DELETE', `/concepts/${c.json.id}`, { headers });
        await disarm(s);   // the check below must not be faulted
        const g = await call(s, 'GET', `/concepts/${c.json.id}`);
        return { d, g };
      },
      check({ d, g }, f) {
        const v = verdict(d, f, 204, () => {});
        if (v === 'ok') assertError(g, 404, 'not_found', 'deleted');
        else assert.equal(g.status, 200, 'a failed delete leaves the concept');
        return v;
      },
    });
    const left = (await call(s, 'GET', '/concepts')).json.concepts.filter((c) => c.name === 'to delete');
    for (const c of left) assert.equal((await call(s, 'DELETE', `/concepts/${c.id}`)).status, 204);
  });

  it('SIGTERM after all that: exit 0 (under ASan: no leak on any failure path)', async () => {
    await s.stop();
    s = null;
    assert.ok(Object.keys(points).length >= 4);
  });

  after(async () => { await s?.kill9(); });
});

/* ---- the data folder ------------------------------------------------------------------- */

const CONCEPT = { name: 'kept', images: [IMG, b64('palette.png')] };
const isRoot = process.getuid && process.getuid() === 0;

/** Makes `n` concepts on a normal server in dataDir; returns them (with embeddings). */
async function seed(dataDir, n) {
  const s = await startServer({ dataDir });
  const made = [];
  try {
    for (let i = 0; i < n; i++) {
      const r = await call(s, 'POST', '/concepts', { json: { ...CONCEPT, name: `kept ${i}` } });
      assert.equal(r.status, 201);
      made.push(r.json);
    }
  } finally {
    await s.stop();
  }
  return made;
}

/** Every concept in `made` is listed and reads back whole on s. */
async function assertKept(s, made, what) {
  const list = (await call(s, 'GET', '/concepts')).json.concepts;
  assert.deepEqual(list.map((c) => c.id).sort(), made.map((c) => c.id).sort(), `${what}: the same concepts listed`);
  for (const c of made) {
    const g = await call(s, 'GET', `/concepts/${c.id}`);
    assert.equal(g.status, 200, `${what}: concept ${c.id} readable`);
    assert.equal(g.json.name, c.name);
    assert.deepEqual(g.json.embedding.map(Math.fround), c.embedding.map(Math.fround), `${what}: embedding of ${c.id}`);
  }
}

describe('the data folder: read-only, full, kill -9', () => {
  // as root a chmod does not stop writes: a read-only bind mount in a private mount
  // namespace instead (root is what CI runs as); other users: chmod 0555
  it(`a read-only data folder (${isRoot ? 'root: a read-only bind mount, since chmod 0555 does not stop root' : 'chmod 0555'}): ` +
    '507 storage_full, existing concepts kept, also after a restart', async () => {
    const dataDir = tempDir('cdam-ro-');
    const made = await seed(dataDir, 2);
    let wrap;
    if (isRoot) {
      const probe = spawnSync('unshare', ['-m', 'sh', '-c', `mount --bind "${dataDir}" "${dataDir}" && mount -o remount,bind,ro "${dataDir}"`]);
      assert.equal(probe.status, 0, `a read-only bind mount needs mount namespaces (unshare -m): ${probe.stderr}`);
      wrap = (bin, args) => ['unshare', ['-m', 'sh', '-c',
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"', 'sh', dataDir, bin, ...args]];
    } else {
      chmodSync(dataDir, 0o555);
    }
    const s = await startServer({ dataDir, wrap });
    try {
      await assertKept(s, made, 'read-only');
      const r = await call(s, 'POST', '/concepts', { json: { ...CONCEPT, name: 'refused' } });
      assertError(r, 507, 'storage_full', 'a concept in a read-only folder');
      assert.match(r.json.error.message, /read-only|permission denied/i, 'the message says why');
      const d = await call(s, 'DELETE', `/concepts/${made[0].id}`);
      assertError(d, 507, 'storage_full', 'a delete in a read-only folder');
      await assertKept(s, made, 'after the refused writes');
      assert.equal((await call(s, 'POST', '/explain', { json: { image: IMG, concept: made[1].id } })).status, 200);
    } finally {
      await s.stop();
      if (!isRoot) chmodSync(dataDir, 0o755);
    }
    assert.deepEqual(readdirSync(dataDir).sort(), made.map((c) => `${c.id}.json`).sort(), 'nothing else in the folder');
    const again = await startServer({ dataDir });
    try {
      await assertKept(again, made, 'restarted writable');
    } finally {
      await again.stop();
    }
  });

  it('a full data folder: 507 storage_full, existing concepts kept, also after a restart', async () => {
    const probe = spawnSync('unshare', ['-m', 'sh', '-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" && umount "$d" && rmdir "$d"']);
    assert.equal(probe.status, 0, `this test needs root and mount namespaces (unshare -m, mount -t tmpfs): ${probe.stderr}`);
    const src = tempDir('cdam-full-src-');
    const made = await seed(src, 3);
    const out = tempDir('cdam-full-out-');
    const dataDir = tempDir('cdam-full-');
    // a 256 KiB tmpfs holding the concepts, then filled up; when the server exits (SIGTERM is
    // passed on) its content is copied to `out`, to restart on
    const script = 'src=$1 out=$2 d=$3; shift 3; mount -t tmpfs -o size=256k tmpfs "$d" || exit 90; ' +
      'cp -a "$src"/. "$d"/ || exit 91; dd if=/dev/zero of="$d/filler" bs=4k >/dev/null 2>&1; ' +
      '"$@" & pid=$!; trap \'kill -TERM $pid\' TERM INT; wait $pid; rc=$?; ' +
      'while kill -0 $pid 2>/dev/null; do wait $pid; rc=$?; done; ' +
      'rm -f "$d/filler"; cp -a "$d"/. "$out"/ || exit 92; exit $rc';
    const s = await startServer({ dataDir, wrap: (bin, args) => ['unshare', ['-m', 'sh', '-c', script, 'sh', src, out, dataDir, bin, ...args]] });
    try {
      await assertKept(s, made, 'full');
      for (let i = 0; i < 3; i++) {
        const r = await call(s, 'POST', '/concepts', { json: { ...CONCEPT, name: 'no room' } });
        assertError(r, 507, 'storage_full', 'a concept on a full disk');
        assert.match(r.json.error.message, /no space/i, 'the message says why');
      }
      await assertKept(s, made, 'after the refused writes');
    } finally {
      await s.stop();
    }
    assert.deepEqual(readdirSync(out).sort(), made.map((c) => `${c.id}.json`).sort(), 'no temporary or partial file left');
    const again = await startServer({ dataDir: out });
    try {
      await assertKept(again, made, 'restarted');
    } finally {
      await again.stop();
    }
  });

  it('kill -9 at a random moment during concept writes and deletes (5 rounds): only complete concepts, each readable', async (t) => {
    const dataDir = tempDir('cdam-kill-');
    const base = await seed(dataDir, 1);
    const want = base[0].embedding.map(Math.fround);
    let present = new Set([base[0].id]);   // what the last restart listed
    for (let round = 0; round < 5; round++) {
      const s = await startServer({ dataDir });
      const created = [];
      const deleted = [];
      const pending = [];
      const victims = [...present].filter((id) => id !== base[0].id);
      for (let i = 0; i < 16; i++) {
        pending.push(call(s, 'POST', '/concepts', { json: { ...CONCEPT, name: `round ${round} #${i}` } })
          .then((r) => { if (r.status === 201) created.push(r.json.id); }).catch(() => {}));
        const v = victims[i];
        if (v) {
          pending.push(call(s, 'DELETE', `/concepts/${v}`)
            .then((r) => { if (r.status === 204) deleted.push(v); }).catch(() => {}));
        }
      }
      await sleep(Math.floor(Math.random() * 300));
      await s.kill9();
      await Promise.all(pending);
      const s2 = await startServer({ dataDir });
      try {
        const list = (await call(s2, 'GET', '/concepts')).json.concepts;
        const ids = new Set(list.map((c) => c.id));
        for (const id of created) assert.ok(ids.has(id), `round ${round}: acknowledged concept ${id} lost`);
        for (const id of deleted) assert.ok(!ids.has(id), `round ${round}: acknowledged delete of ${id} undone`);
        assert.ok(ids.has(base[0].id), `round ${round}: the untouched concept is gone`);
        for (const c of list) {
          const g = await call(s2, 'GET', `/concepts/${c.id}`);
          assert.equal(g.status, 200, `round ${round}: listed concept ${c.id} cannot be read`);
          assert.equal(g.json.images, 2);
          assert.deepEqual(g.json.embedding.map(Math.fround), want, `round ${round}: concept ${c.id} is complete`);
        }
        const files = readdirSync(dataDir);
        assert.deepEqual(files.filter((f) => !/^[0-9a-f]{32}\.json$/.test(f)), [], `round ${round}: leftover files after the restart`);
        t.diagnostic(`round ${round}: ${created.length} created and ${deleted.length} of ${victims.length} deleted before kill -9; ` +
          `${list.length} listed after the restart`);
        present = ids;
      } finally {
        await s2.stop();
      }
    }
  });
});
