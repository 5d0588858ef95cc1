// page.test.js - the demo page (static/) end to end: the real cdam-server on loopback with
// the demo model, Debian's headless Chromium driven by playwright-core. Screenshots and
// downloads go to tests/web/artifacts/ (ignored by git).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, STATIC } from './lib/server.js';
import { launchBrowser } from './lib/browser.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(HERE, 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 375, height: 812 };
const T = 20000; // ms: the longest any single step may wait

let srv;
let browser;
let page; // the desktop page most tests share
let model;
let examples;
const problems = []; // console errors, page errors, CSP violations, failed requests of the shared page

before(async () => {
  srv = await startServer();
  browser = await launchBrowser();
  model = await (await fetch(`${srv.url}/model`)).json();
  examples = JSON.parse(readFileSync(path.join(STATIC, 'examples', 'index.json'), 'utf8'));
  page = await openPage(DESKTOP, problems);
});

after(async () => {
  await browser?.close();
  const exit = await srv?.stop();
  if (exit && (exit.code !== 0 || exit.signal)) {
    throw new Error(`cdam-server did not exit cleanly (code ${exit.code}, signal ${exit.signal}):\n${srv.stderr().slice(-2000)}`);
  }
});

/** A page on the server's demo, ready (GET /model answered); problems collects what went wrong. */
async function openPage(viewport, sink = []) {
  const p = await browser.newPage(viewport);
  p.on('console', (m) => {
    if (m.type() === 'error') sink.push(`console: ${m.text()}`);
  });
  p.on('pageerror', (e) => sink.push(`page error: ${e.message}`));
  await p.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  await p.goto(`${srv.url}/`);
  await p.waitForSelector('body[data-ready="true"]', { timeout: T });
  return p;
}

/** Console errors that are expected: the failed requests of the error tests (HTTP 4xx). */
function unexpected(list) {
  return list.filter((s) => !/Failed to load resource: the server responded with a status of 4\d\d/.test(s));
}

async function viewerState(p) {
  return p.$eval('#viewer', (v) => ({ ...v.dataset }));
}

/** Waits until the viewer shows a map for a new image (data-image differs from `prev`). */
async function waitNewImage(p, prev) {
  await p.waitForFunction((old) => {
    const v = document.getElementById('viewer');
    return v.dataset.ready === 'true' && v.dataset.image && v.dataset.image !== old;
  }, prev ?? '', { timeout: T });
}

async function waitTarget(p, target, method) {
  await p.waitForFunction(([t, m]) => {
    const v = document.getElementById('viewer');
    return v.dataset.ready === 'true' && v.dataset.target === t && (!m || v.dataset.method === m);
  }, [target, method], { timeout: T });
}

/** A digest of the heat layer's pixels (changes when the map changes). */
async function heatDigest(p) {
  return p.$eval('#heat-canvas', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let h = 2166136261;
    for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 16777619) >>> 0;
    let opaque = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) opaque++;
    return { hash: h, opaque, w: c.width, h: c.height, hidden: c.hidden };
  });
}

async function loadExample(p, i = 0) {
  const prev = (await viewerState(p)).image;
  await p.locator('.example').nth(i).click();
  await waitNewImage(p, prev);
}

function noProblems(list, what) {
  const bad = unexpected(list);
  assert.deepEqual(bad, [], `${what}: ${bad.join('\n')}`);
}

test('the page loads with the model and the examples, under the CSP, without errors', async () => {
  const res = await fetch(`${srv.url}/`);
  const csp = res.headers.get('content-security-policy') || '';
  assert.match(csp, /script-src 'self'/, 'the server sends its CSP with the page');
  const html = await res.text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i, 'no inline script');
  assert.doesNotMatch(html, /<style|\sstyle=/i, 'no inline style');
  await page.waitForSelector('.example', { timeout: T });
  assert.equal(await page.locator('.example').count(), examples.scenes.length);
  const info = await page.textContent('#model-info');
  assert.ok(info.includes(model.name), `model info "${info}" names the model`);
  assert.equal(await page.locator('#compare-grid .tile').count(), model.methods.length);
  assert.equal(await page.locator('#method-select option').count(), model.methods.length);
  assert.ok((await page.textContent('#about')).includes('Class-Discriminative Attention Maps for Vision Transformers'));
  if (examples.scenes.length) {
    assert.equal((await viewerState(page)).ready, 'true', 'a first visit shows the first example explained');
  }
  noProblems(problems, 'page load');
});

test('an example scene gives the top-5 predictions and a heat map', async () => {
  await loadExample(page, 0);
  const k = Math.min(5, model.num_classes);
  const preds = page.locator('#predictions .prediction');
  assert.equal(await preds.count(), k);
  const probs = await page.$$eval('#predictions .pred-prob', (els) => els.map((e) => e.textContent));
  assert.ok(probs.every((t) => /%$/.test(t)), `probabilities shown: ${probs}`);
  assert.equal(await preds.first().getAttribute('aria-pressed'), 'true', 'the top-1 class is explained first');
  const v = await viewerState(page);
  assert.equal(v.method, 'cdam');
  const top = await preds.first().getAttribute('data-index');
  assert.equal(v.target, `c${top}`);
  const d = await heatDigest(page);
  assert.equal(d.hidden, false);
  assert.ok(d.opaque > 0, 'the heat layer has coloured patches');
  const grid = (model.native_size[0] / model.patch_size) * (model.native_size[1] / model.patch_size);
  assert.equal(d.w * d.h, grid, 'nearest patches: one canvas pixel per patch');
  assert.match(await page.textContent('#timing'), /Server [\d.]+ ms.*cache (hit|miss)/s);
  assert.match(await page.textContent('#legend-max'), /^\+\S+/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'desktop-example.png'), fullPage: true });
  noProblems(problems, 'example');
});

test('clicking another class changes the map (and the forward pass comes from the cache)', async () => {
  const first = await heatDigest(page);
  const second = page.locator('#predictions .prediction').nth(1);
  const idx = await second.getAttribute('data-index');
  await second.click();
  await waitTarget(page, `c${idx}`, 'cdam');
  assert.equal(await second.getAttribute('aria-pressed'), 'true');
  const next = await heatDigest(page);
  assert.notEqual(next.hash, first.hash, 'the map differs between the two classes');
  assert.match(await page.textContent('#timing'), /cache hit/);
  assert.match(await page.textContent('#view-title'), new RegExp(await second.locator('.pred-label').textContent()));
  // hover readout
  const box = await page.locator('#viewer').boundingBox();
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height * 0.5);
  await page.waitForFunction(() => /Patch row \d+, column \d+/.test(document.getElementById('readout').textContent));
  const score = Number(await page.$eval('#readout', (r) => r.dataset.score));
  assert.ok(Number.isFinite(score));
  assert.equal(await page.isVisible('#cursor'), true);
  noProblems(problems, 'class switch');
});

test('any class can be found by name and explained (keyboard only)', async () => {
  const shown = await page.$$eval('#predictions .prediction', (els) => els.map((e) => Number(e.dataset.index)));
  const idx = model.labels.findIndex((_, i) => !shown.includes(i));
  const want = idx >= 0 ? idx : 0;
  const label = model.labels[want];
  await page.focus('#class-search');
  await page.keyboard.type(label.slice(0, Math.max(3, Math.min(label.length, 6))));
  await page.waitForSelector('#class-options:not([hidden]) [role="option"]');
  // walk down to the wanted label
  const options = await page.$$eval('#class-options [role="option"]', (els) => els.map((e) => e.firstChild.textContent));
  const at = options.indexOf(label);
  assert.ok(at >= 0, `"${label}" is offered: ${options}`);
  for (let i = 0; i < at; i++) await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await waitTarget(page, `c${want}`, 'cdam');
  assert.equal(await page.getAttribute('#class-search', 'aria-expanded'), 'false');
  // keyboard on the map: the arrow keys move a patch cursor and read its score
  await page.focus('#viewer');
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction(() => /Patch row/.test(document.getElementById('readout').textContent));
  const r1 = await page.textContent('#readout');
  await page.keyboard.press('Home');
  await page.waitForFunction(() => /row 1, column 1:/.test(document.getElementById('readout').textContent));
  assert.notEqual(r1, await page.textContent('#readout'));
  // a prediction by keyboard: Tab to it, Enter
  await page.focus('#predictions .prediction >> nth=0');
  const first = await page.getAttribute('#predictions .prediction >> nth=0', 'data-index');
  await page.keyboard.press('Enter');
  await waitTarget(page, `c${first}`, 'cdam');
  noProblems(problems, 'search');
});

test('the heat map is drawn exactly like the engine: the page overlay equals the server PNG', async () => {
  // A synthetic image at the model's native size (no resize on either side), explained as
  // JSON and as PNG; the page's heatmap.js overlays the JSON scores on the same pixels.
  const res = await page.evaluate(async ([h, w]) => {
    const heat = await import('/js/heatmap.js');
    const c = new OffscreenCanvas(w, h);
    const ctx = c.getContext('2d');
    const g = ctx.createLinearGradient(0, 0, w, h);
    g.addColorStop(0, '#203040');
    g.addColorStop(1, '#e0c080');
    ctx.fillStyle = g;
    ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = '#fff';
    ctx.fillRect(w * 0.2, h * 0.3, w * 0.3, h * 0.3);
    const png = await c.convertToBlob({ type: 'image/png' });
    const base = ctx.getImageData(0, 0, w, h).data;
    const form = (fmt) => {
      const f = new FormData();
      f.append('image', png, 'synthetic.png');
      f.append('format', fmt);
      return f;
    };
    const json = await (await fetch('/explain', { method: 'POST', body: form('json') })).json();
    const srvPng = await (await fetch('/explain', { method: 'POST', body: form('png') })).blob();
    const bm = await createImageBitmap(srvPng);
    const sc = new OffscreenCanvas(bm.width, bm.height);
    const sctx = sc.getContext('2d');
    sctx.drawImage(bm, 0, 0);
    const server = sctx.getImageData(0, 0, w, h).data;
    const ex = json.explanations[0];
    const { image } = heat.composite(base, { scores: ex.scores, rows: json.grid.rows, cols: json.grid.cols }, w, h,
      { smooth: false, mode: 'overlay', opacity: 0.6 });
    let maxDiff = 0;
    for (let i = 0; i < server.length; i++) if (i % 4 !== 3) maxDiff = Math.max(maxDiff, Math.abs(server[i] - image.data[i]));
    const cm = [heat.colormap(-1), heat.colormap(0), heat.colormap(1), heat.colormap(0.5), heat.colormap(-0.5)];
    return { maxDiff, pngW: bm.width, pngH: bm.height, cm, g2: heat.formatG(0.3123, 2), g3: heat.formatG(1234, 2) };
  }, model.native_size);
  assert.equal(res.pngW, model.native_size[1]);
  assert.ok(res.pngH > model.native_size[0], 'the server PNG has its legend below');
  assert.ok(res.maxDiff <= 1, `page overlay vs engine PNG: max channel difference ${res.maxDiff}`);
  assert.deepEqual(res.cm, [[40, 150, 255], [0, 0, 0], [255, 140, 0], [128, 70, 0], [20, 75, 128]]);
  assert.equal(res.g2, '0.31');
  assert.equal(res.g3, '1.2e+03');
});

test('display controls: opacity, nearest or smooth patches, map only, legend', async () => {
  await page.locator('#opacity').fill('25');
  assert.equal(await page.$eval('#heat-canvas', (c) => c.style.opacity), '0.25');
  assert.equal(await page.textContent('#opacity-out'), '25%');
  const nearest = await heatDigest(page);
  await page.click('label[for="up-smooth"]');
  await page.waitForFunction((n) => document.getElementById('heat-canvas').width > n, nearest.w);
  const smooth = await heatDigest(page);
  assert.ok(smooth.w > nearest.w, 'smooth patches are drawn at display resolution');
  assert.equal(await page.$eval('#heat-canvas', (c) => c.classList.contains('pixelated')), false);
  await page.click('label[for="mode-map"]');
  assert.equal(await page.isHidden('#base-canvas'), true, 'map only hides the image');
  assert.equal(await page.$eval('#heat-canvas', (c) => c.style.opacity), '1');
  assert.equal(await page.isDisabled('#opacity'), true);
  // map only + nearest: the strongest patch is exactly the engine's end colour
  await page.click('label[for="up-nearest"]');
  const px = await page.evaluate(() => {
    const c = document.getElementById('heat-canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let best = [0, 0, 0];
    let bestSum = -1;
    for (let i = 0; i < d.length; i += 4) {
      const s = Math.abs(d[i] - 0) + Math.abs(d[i + 2] - 0);
      if (s > bestSum) { bestSum = s; best = [d[i], d[i + 1], d[i + 2]]; }
    }
    return best;
  });
  assert.ok(JSON.stringify(px) === '[255,140,0]' || JSON.stringify(px) === '[40,150,255]', `strongest patch colour ${px}`);
  await page.click('label[for="mode-overlay"]');
  await page.locator('#opacity').fill('60');
  assert.equal(await page.isVisible('#base-canvas'), true);
  // the example scene's item boxes (from index.json)
  const items = examples.scenes[0]?.items || [];
  assert.equal(await page.isVisible('#boxes-field'), items.length > 0);
  if (items.length) {
    await page.click('label[for="show-boxes"]');
    assert.equal(await page.locator('#boxes .box').count(), items.length);
    assert.deepEqual(await page.$$eval('#boxes .box-label', (els) => els.map((e) => e.textContent)), items.map((it) => it.class));
    await page.click('label[for="show-boxes"]');
    assert.equal(await page.locator('#boxes .box').count(), 0);
  }
  noProblems(problems, 'controls');
});

test('compare methods side by side; a tile shows its method large', async () => {
  if (!(await page.isChecked('#compare-auto'))) await page.click('#compare-run');
  const sync = model.methods.filter((m) => m !== 'tam');
  await page.waitForFunction((n) => document.querySelectorAll('#compare-grid .tile.has-map').length >= n, sync.length, { timeout: T });
  for (const m of model.methods) {
    const tile = page.locator(`#compare-grid .tile[data-method="${m}"]`);
    assert.ok((await tile.locator('.tile-name').textContent()).length > 1);
    assert.ok((await tile.locator('.tile-desc').textContent()).length > 20, `${m} has a one-line explanation`);
  }
  const names = await page.$$eval('#compare-grid .tile-name', (els) => els.map((e) => e.textContent));
  for (const n of ['CDAM', 'Smooth CDAM', 'Integrated CDAM', 'AM', 'RP', 'TAM']) assert.ok(names.includes(n), `${n} tile`);
  const target = (await viewerState(page)).target;
  await page.click('#compare-grid .tile[data-method="rp"] .tile-main');
  await waitTarget(page, target, 'rp');
  assert.equal(await page.$eval('#method-select', (s) => s.value), 'rp');
  await page.click('#compare-grid .tile[data-method="am"] .tile-main');
  await page.waitForFunction(() => document.getElementById('viewer').dataset.method === 'am');
  await page.selectOption('#method-select', 'cdam');
  await waitTarget(page, target, 'cdam');
  noProblems(problems, 'compare');
});

test('TAM runs as a job with a progress bar that reaches the end', async () => {
  const tile = page.locator('#compare-grid .tile[data-method="tam"]');
  const bar = tile.locator('.progress');
  await page.evaluate(() => {
    const b = document.querySelector('#compare-grid .tile[data-method="tam"] .progress');
    window.tamSeen = [];
    new MutationObserver(() => window.tamSeen.push(Number(b.getAttribute('aria-valuenow'))))
      .observe(b, { attributes: true, attributeFilter: ['aria-valuenow'] });
  });
  await tile.locator('.tile-run').click();
  await page.waitForFunction(() => {
    const b = document.querySelector('#compare-grid .tile[data-method="tam"] .progress');
    return b.dataset.state === 'done' && b.getAttribute('aria-valuenow') === '100';
  }, null, { timeout: 60000 });
  const seen = await page.evaluate(() => window.tamSeen);
  assert.equal(seen[seen.length - 1], 100);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1] || seen[i - 1] === 100, `progress never goes back: ${seen}`);
  assert.equal(await bar.isVisible(), true, 'the full bar stays visible');
  assert.match(await tile.getAttribute('class'), /has-map/);
  const job = await tile.getAttribute('data-job');
  assert.ok(job, 'the tile knows its job id');
  const j = await (await fetch(`${srv.url}/jobs/${job}`)).json();
  assert.equal(j.state, 'done');
  // shown large
  const target = (await viewerState(page)).target;
  await tile.locator('.tile-main').click();
  await waitTarget(page, target, 'tam');
  await page.selectOption('#method-select', 'cdam');
  await waitTarget(page, target, 'cdam');
  noProblems(problems, 'TAM');
});

test('a long TAM job can be cancelled', async (t) => {
  // a larger input size (2x native: 16 times the work) makes TAM long enough to cancel
  const sizes = await page.$$eval('#size-select option', (os) => os.map((o) => o.value));
  assert.ok(sizes.length >= 2, `input sizes offered: ${sizes}`);
  const prev = (await viewerState(page)).image;
  await page.selectOption('#size-select', sizes[Math.min(2, sizes.length - 1)]);
  await waitNewImage(page, prev);
  const tile = page.locator('#compare-grid .tile[data-method="tam"]');
  await tile.locator('.tile-run').click();
  await page.waitForFunction(() => {
    const tl = document.querySelector('#compare-grid .tile[data-method="tam"]');
    return tl.dataset.job && ['queued', 'running', 'done'].includes(tl.querySelector('.progress').dataset.state);
  }, null, { timeout: T });
  const job = await tile.getAttribute('data-job');
  const stateBefore = await tile.locator('.progress').getAttribute('data-state');
  if (stateBefore === 'done') t.diagnostic('TAM finished before it could be cancelled (a small model)');
  if (stateBefore !== 'done') {
    await tile.locator('.tile-cancel').click();
    await page.waitForFunction(() => document.querySelector('#compare-grid .tile[data-method="tam"] .tile-state').textContent === 'cancelled');
    assert.equal(await tile.locator('.tile-run').isVisible(), true, 'it can be run again');
    const deadline = Date.now() + 10000;
    let j;
    for (;;) {
      j = await (await fetch(`${srv.url}/jobs/${job}`)).json();
      if (j.state !== 'running' && j.state !== 'queued') break;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(['cancelled', 'done'].includes(j.state), `the server job ended: ${j.state}`);
  }
  const prev2 = (await viewerState(page)).image;
  await page.selectOption('#size-select', sizes[0]);
  await waitNewImage(page, prev2);
  noProblems(problems, 'TAM cancel');
});

test('a concept: build it from examples, explain against it, delete it', async () => {
  await page.click('#concept-builder summary');
  await page.fill('#concept-name', 'web test concept');
  const picks = page.locator('#concept-picker .pick');
  if (await picks.count() >= 2) {
    await picks.nth(0).click();
    await picks.nth(1).click();
    await page.waitForFunction(() => document.querySelectorAll('#concept-chosen .chosen-item').length === 2);
  } else {
    // no item images in index.json: upload two of the scenes
    const files = examples.scenes.slice(0, 2).map((s) => path.join(STATIC, 'examples', s.file));
    await page.setInputFiles('#concept-files', files);
  }
  await page.click('#concept-add-current');
  await page.waitForFunction(() => document.querySelectorAll('#concept-chosen .chosen-item').length === 3);
  await page.click('#concept-save');
  const btn = page.locator('#concepts .concept', { hasText: 'web test concept' });
  await btn.waitFor({ timeout: T });
  const id = await btn.getAttribute('data-id');
  assert.match(id, /^[0-9a-f]{32}$/);
  await waitTarget(page, `k${id}`, 'cdam');
  assert.equal(await btn.getAttribute('aria-pressed'), 'true');
  assert.match(await page.textContent('#view-title'), /web test concept/);
  assert.ok((await heatDigest(page)).opaque >= 0);
  const list = await (await fetch(`${srv.url}/concepts`)).json();
  assert.ok(list.concepts.some((c) => c.id === id && c.images === 3), 'stored on the server with 3 images');
  // persists: a fresh page lists it
  const p2 = await openPage(DESKTOP);
  await p2.locator('#concepts .concept', { hasText: 'web test concept' }).waitFor({ timeout: T });
  await p2.close();
  // delete
  await page.click(`#concepts button[aria-label="Delete concept web test concept"]`);
  await btn.waitFor({ state: 'detached', timeout: T });
  const list2 = await (await fetch(`${srv.url}/concepts`)).json();
  assert.ok(!list2.concepts.some((c) => c.id === id), 'deleted on the server');
  await page.waitForFunction(() => document.getElementById('viewer').dataset.target.startsWith('c'));
  noProblems(problems, 'concept');
});

test('downloads: the map as PNG and the scores as JSON', async () => {
  const [png] = await Promise.all([page.waitForEvent('download'), page.click('#download-png')]);
  const pngPath = path.join(ARTIFACTS, png.suggestedFilename());
  await png.saveAs(pngPath);
  const bytes = readFileSync(pngPath);
  assert.equal(bytes.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'a PNG file');
  assert.match(png.suggestedFilename(), /-cdam-.+\.png$/);
  const [js] = await Promise.all([page.waitForEvent('download'), page.click('#download-json')]);
  const jsPath = path.join(ARTIFACTS, js.suggestedFilename());
  await js.saveAs(jsPath);
  const doc = JSON.parse(readFileSync(jsPath, 'utf8'));
  assert.equal(doc.method, 'cdam');
  assert.equal(doc.scores.length, doc.grid.rows * doc.grid.cols);
  assert.equal(doc.target.type, 'class');
  noProblems(problems, 'downloads');
});

test('errors are shown in words and the page keeps working', async () => {
  const was = await viewerState(page);
  // a text file through the file picker
  await page.setInputFiles('#file-input', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('this is not an image\n') });
  const alert = page.locator('#alerts .alert').last();
  await alert.waitFor({ timeout: T });
  assert.match(await alert.textContent(), /notes\.txt.*could not read this file as an image/i);
  assert.equal(await alert.getAttribute('data-code'), 'bad_image');
  const now = await viewerState(page);
  assert.equal(now.image, was.image, 'the previous image and map stay');
  assert.equal(now.ready, 'true');
  await alert.locator('.alert-close').click();
  assert.equal(await page.locator('#alerts .alert').count(), 0);
  // a concept without a name, then one from a text file (the server refuses it)
  await page.click('#concept-builder summary');
  await page.click('#concept-save');
  await page.locator('#alerts .alert', { hasText: 'name' }).waitFor();
  assert.equal(await page.getAttribute('#concept-name', 'aria-invalid'), 'true');
  await page.fill('#concept-name', 'broken');
  await page.setInputFiles('#concept-files', { name: 'bad.png', mimeType: 'image/png', buffer: Buffer.from('not a png at all') });
  await page.click('#concept-save');
  await page.locator('#alerts .alert[data-code="bad_image"]', { hasText: 'concept' }).waitFor({ timeout: T });
  await page.click('#concept-chosen .icon-btn');
  await page.fill('#concept-name', '');
  // a concept deleted behind the page's back
  const c = await (await fetch(`${srv.url}/concepts`, {
    method: 'POST',
    body: JSON.stringify({ name: 'ghost', images: [readFileSync(path.join(STATIC, 'examples', examples.scenes[0].file)).toString('base64')] }),
    headers: { 'Content-Type': 'application/json' },
  })).json();
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await loadExample(page, 1 % examples.scenes.length);
  const ghost = page.locator('#concepts .concept', { hasText: 'ghost' });
  await ghost.waitFor();
  await fetch(`${srv.url}/concepts/${c.id}`, { method: 'DELETE' });
  await ghost.click();
  await page.locator('#alerts .alert[data-code="unknown_concept"]').waitFor({ timeout: T });
  await ghost.waitFor({ state: 'detached', timeout: T });
  // still working: another example and another class
  await loadExample(page, 0);
  const second = page.locator('#predictions .prediction').nth(1);
  const idx = await second.getAttribute('data-index');
  await second.click();
  await waitTarget(page, `c${idx}`, 'cdam');
  noProblems(problems, 'errors');
});

test('the file picker, drag and drop, and paste from the clipboard', async () => {
  const file = path.join(STATIC, 'examples', examples.scenes[examples.scenes.length - 1].file);
  const prev0 = (await viewerState(page)).image;
  await page.setInputFiles('#file-input', file);
  await waitNewImage(page, prev0);
  assert.match(await page.getAttribute('#viewer', 'aria-label'), new RegExp(path.basename(file).replace('.', '\\.')));
  const b64 = readFileSync(file).toString('base64');
  const fire = (kind) => page.evaluate(async ([data, k]) => {
    const bytes = Uint8Array.from(atob(data), (ch) => ch.charCodeAt(0));
    const f = new File([bytes], `${k}.png`, { type: 'image/png' });
    const dt = new DataTransfer();
    dt.items.add(f);
    if (k === 'dropped') {
      const target = document.getElementById('viewer');
      for (const type of ['dragenter', 'dragover', 'drop']) {
        target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
      }
    } else {
      document.body.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    }
  }, [b64, kind]);
  let prev = (await viewerState(page)).image;
  await fire('dropped');
  await waitNewImage(page, prev);
  assert.match(await page.getAttribute('#viewer', 'aria-label'), /dropped\.png/);
  assert.equal(await page.isHidden('#drop-overlay'), true);
  prev = (await viewerState(page)).image;
  await fire('pasted');
  await waitNewImage(page, prev);
  assert.match(await page.getAttribute('#viewer', 'aria-label'), /pasted\.png/);
  noProblems(problems, 'drop and paste');
});

test('rapid clicks end on the last choice', async () => {
  const n = examples.scenes.length;
  if (n >= 2) {
    // two examples in a row: the second one wins, whatever answers first
    const prev = (await viewerState(page)).image;
    await page.locator('.example').nth(n - 1).click();
    await page.locator('.example').nth(0).click();
    await waitNewImage(page, prev);
    await page.waitForFunction(() => document.getElementById('viewer-busy').hidden);
    await page.waitForTimeout(200);
    assert.match(await page.getAttribute('#viewer', 'aria-label'), new RegExp(examples.scenes[0].file.split('/').pop().replace('.', '\\.')));
    assert.equal(await page.getAttribute('.example >> nth=0', 'aria-current'), 'true');
  }
  // several classes and methods in a row: the view ends on the last one
  const preds = page.locator('#predictions .prediction');
  const k = await preds.count();
  for (let i = 0; i < k; i++) await preds.nth(i).click({ noWaitAfter: true });
  await page.selectOption('#method-select', 'integrated_cdam');
  const last = await preds.nth(k - 1).getAttribute('data-index');
  await waitTarget(page, `c${last}`, 'integrated_cdam');
  await page.waitForTimeout(300);
  const v = await viewerState(page);
  assert.equal(v.target, `c${last}`);
  assert.equal(v.method, 'integrated_cdam');
  assert.equal(await preds.nth(k - 1).getAttribute('aria-pressed'), 'true');
  await page.selectOption('#method-select', 'cdam');
  await waitTarget(page, `c${last}`, 'cdam');
  noProblems(problems, 'rapid clicks');
});

test('accessible: names, labels, unique ids, contrast', async () => {
  const audit = await page.evaluate(() => {
    const out = [];
    const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
    const name = (e) => (e.getAttribute('aria-label') || e.textContent || e.title || '').trim()
      || [...(e.labels || [])].map((l) => l.textContent).join('').trim()
      || (e.getAttribute('aria-labelledby') || '').split(/\s+/).map((id) => document.getElementById(id)?.textContent || '').join('').trim()
      || [...e.querySelectorAll('img[alt]')].map((i) => i.alt).join('').trim();
    for (const e of document.querySelectorAll('button, a[href], [role="combobox"], [role="progressbar"]')) {
      if (!name(e)) out.push(`no accessible name: ${e.outerHTML.slice(0, 80)}`);
    }
    for (const e of document.querySelectorAll('input, select')) {
      if (e.type === 'file' || e.type === 'hidden') continue;
      if (!e.labels?.length && !e.getAttribute('aria-label')) out.push(`no label: ${e.outerHTML.slice(0, 80)}`);
    }
    for (const e of document.querySelectorAll('img')) if (!e.hasAttribute('alt')) out.push(`img without alt: ${e.src}`);
    const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
    const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
    if (dup.length) out.push(`duplicate ids: ${dup}`);
    // contrast of every visible text against its backdrop
    const parse = (c) => { const m = c.match(/[\d.]+/g).map(Number); return { r: m[0], g: m[1], b: m[2], a: m[3] ?? 1 }; };
    const lum = ({ r, g, b }) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const backdrop = (e) => {
      const layers = [];
      for (let n = e; n; n = n.parentElement) {
        const c = parse(getComputedStyle(n).backgroundColor);
        if (c.a > 0) layers.push(c);
        if (c.a >= 1) break;
      }
      let col = { r: 15, g: 17, b: 21 };
      for (const c of layers.reverse()) col = { r: c.r * c.a + col.r * (1 - c.a), g: c.g * c.a + col.g * (1 - c.a), b: c.b * c.a + col.b * (1 - c.a) };
      return col;
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      const e = t.parentElement;
      if (!t.textContent.trim() || seen.has(e) || !visible(e) || e.closest('[hidden], .visually-hidden, template')) continue;
      seen.add(e);
      const st = getComputedStyle(e);
      if (e.closest(':disabled')) continue; // disabled controls are exempt (WCAG 1.4.3)
      const fg = parse(st.color);
      const bg = backdrop(e);
      const l1 = lum(fg);
      const l2 = lum(bg);
      const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
      const large = parseFloat(st.fontSize) >= 24 || (parseFloat(st.fontSize) >= 18.66 && Number(st.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) out.push(`contrast ${ratio.toFixed(2)} for "${t.textContent.trim().slice(0, 30)}"`);
    }
    return out;
  });
  assert.deepEqual(audit, []);
  // the viewer and every control can be reached with Tab
  const tabbable = await page.evaluate(() => ['viewer', 'opacity', 'method-select', 'class-search', 'choose-file']
    .every((id) => document.getElementById(id).tabIndex >= 0));
  assert.ok(tabbable);
});

test('screenshots at desktop and phone width; nothing overflows at 375 px', async () => {
  await page.setViewportSize(DESKTOP);
  await loadExample(page, 0);
  assert.equal(await page.locator('#alerts .alert').count(), 0, 'a new image clears the old messages');
  if (!(await page.isChecked('#compare-auto'))) await page.click('#compare-run');
  await page.waitForFunction(() => document.querySelectorAll('#compare-grid .tile.has-map').length >= 5, null, { timeout: T });
  await page.screenshot({ path: path.join(ARTIFACTS, 'desktop.png'), fullPage: true });
  const phoneProblems = [];
  const phone = await openPage(PHONE, phoneProblems);
  await loadExample(phone, 0);
  const second = phone.locator('#predictions .prediction').nth(1);
  const idx = await second.getAttribute('data-index');
  await second.click();
  await waitTarget(phone, `c${idx}`, 'cdam');
  await phone.waitForTimeout(300);
  const overflow = await phone.evaluate(() => ({
    doc: document.documentElement.scrollWidth,
    wide: [...document.querySelectorAll('body *')].filter((e) => {
      const r = e.getBoundingClientRect();
      return r.width > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5) && !e.closest('.visually-hidden, .skip-link');
    }).map((e) => e.id || e.className).slice(0, 5),
  }));
  assert.ok(overflow.doc <= PHONE.width, `page is ${overflow.doc} px wide at ${PHONE.width}: ${overflow.wide}`);
  assert.deepEqual(overflow.wide, []);
  const vb = await phone.locator('#viewer').boundingBox();
  assert.ok(vb.width >= 300, `the map is ${vb.width} px wide on a phone`);
  await phone.screenshot({ path: path.join(ARTIFACTS, 'phone.png'), fullPage: true });
  await phone.evaluate(() => window.scrollTo(0, 0));
  await phone.screenshot({ path: path.join(ARTIFACTS, 'phone-top.png') });
  await phone.locator('#viewer').scrollIntoViewIfNeeded();
  await phone.screenshot({ path: path.join(ARTIFACTS, 'phone-map.png') });
  await phone.close();
  writeFileSync(path.join(ARTIFACTS, 'model.txt'), `${srv.model}\n`);
  noProblems(phoneProblems, 'phone');
  noProblems(problems, 'screenshots');
});
