// app.js - the demo page: bring an image, pick a target (a predicted class, any class,
// or a stored concept), see its map, compare the methods, build concepts, download.
//
// Data flow: every explanation the server returns is kept in `results` under
// key(image, size, method, target); the view, the comparison tiles and the downloads
// draw from there, so switching back to a target already seen is instant, and a target
// new for this image costs one request (the server caches the forward pass). TAM runs
// as a job (POST /explain async, GET /jobs/{id} polled for progress, DELETE to cancel).
import * as api from './api.js';
import * as heat from './heatmap.js';
import { Combobox } from './combobox.js';

const METHODS = {
  cdam: {
    name: 'CDAM',
    desc: 'Each token entering the last attention layer times the gradient of the target score: signed evidence.',
  },
  smooth_cdam: {
    name: 'Smooth CDAM',
    desc: 'CDAM averaged over 16 noisy copies of those tokens: steadier, less speckle.',
  },
  integrated_cdam: {
    name: 'Integrated CDAM',
    desc: 'CDAM with gradients averaged along a path from empty tokens to the real ones.',
  },
  am: {
    name: 'AM',
    desc: 'Attention of the class token in the last layer: where the model looks, the same for every class.',
    classFree: true,
  },
  rp: {
    name: 'RP',
    desc: 'Relevance propagation through all layers (Chefer et al.): class-specific, never negative.',
  },
  tam: {
    name: 'TAM',
    desc: 'Token ablation: how much the score drops when each patch is removed. Direct but slow: runs as a job.',
    job: true,
  },
};
const TOP_K = 5;
const MAX_CONCEPT_IMAGES = 32;
const BIG_FILE = 6 * 1024 * 1024; // larger uploads are shrunk in the browser first
const BIG_SIDE = 2048;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('aria-') || k.startsWith('data-') || k === 'role') e.setAttribute(k, v);
    else e[k] = v;
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
};

const state = {
  model: null,
  examples: null,
  image: null, // {id, blob, name, bitmap, width, height, scene, note}
  pending: null, // an image being uploaded (shown under the busy veil)
  size: null, // [h, w] asked for, null = native
  input: null, // {width, height} the model ran at
  grid: null, // {rows, cols}
  predictions: [],
  target: null, // {type: 'class', index, label} | {type: 'concept', id, name}
  method: 'cdam',
  results: new Map(),
  shownKey: null,
  concepts: [],
  view: { opacity: 0.6, smooth: false, mode: 'overlay', boxes: false },
  compareAuto: true,
  compareAutoTouched: false,
  compareBusy: null, // key prefix of the comparison in flight
  compareError: null,
  cursor: null, // {row, col}: the patch under the pointer or the keyboard cursor
  keyboardCursor: false,
};
let imageCounter = 0;
let viewSeq = 0; // the latest view asked for (method, target)
let loadSeq = 0; // the latest image asked for
const inflight = new Map(); // result key -> promise
let tam = { state: 'idle' }; // {key, imageId, id, state, progress, abort, started, error}

/* ------------------------------------------------------------------ helpers */

const targetKey = (t) => (!t ? '-' : t.type === 'class' ? `c${t.index}` : `k${t.id}`);
const sizeKey = () => (state.size ? `${state.size[0]}x${state.size[1]}` : 'native');
function resultKey(method, target, imageId = state.image?.id) {
  return `${imageId}|${sizeKey()}|${method}|${METHODS[method]?.classFree ? '-' : targetKey(target)}`;
}
const targetName = (t) => (!t ? '' : t.type === 'class' ? t.label : `concept \u201c${t.name}\u201d`);
const sameTarget = (a, b) => targetKey(a) === targetKey(b);
const methodName = (m) => METHODS[m]?.name || m;
const pct = (p) => (p >= 0.995 ? `${(p * 100).toFixed(0)}%` : p >= 0.001 ? `${(p * 100).toFixed(1)}%` : '<0.1%');
const ms = (v) => (v >= 100 ? `${Math.round(v)} ms` : `${v.toFixed(1)} ms`);
const slug = (s) => String(s).toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'target';

function nativeSize() {
  const n = state.model?.native_size || [224, 224];
  return { height: n[0], width: n[1] };
}
function inputSize() {
  if (state.size) return { height: state.size[0], width: state.size[1] };
  return state.input || nativeSize();
}
/* ------------------------------------------------------------------ messages */

function showError(err, context) {
  if (err?.name === 'AbortError') return;
  const text = `${context ? `${context}: ` : ''}${err?.message || String(err)}`;
  const same = err?.detail || text; // one message per server error, whatever asked
  const box = $('alerts');
  for (const old of box.querySelectorAll('.alert')) {
    if (old.dataset.same === same) old.remove();
  }
  while (box.children.length >= 3) box.firstElementChild.remove();
  const close = el('button', { type: 'button', class: 'alert-close', 'aria-label': 'Dismiss this message', text: '\u00d7' });
  const item = el('div', { class: 'alert', 'data-same': same, 'data-code': err?.code || 'error' },
    el('p', { class: 'alert-text', text }), close);
  close.addEventListener('click', () => item.remove());
  box.append(item);
  // eslint-disable-next-line no-console
  console.warn('cdam:', text, err);
}

let statusTimer = 0;
function status(text) {
  const s = $('status');
  s.textContent = text;
  clearTimeout(statusTimer);
  if (text) statusTimer = setTimeout(() => { s.textContent = ''; }, 8000);
}

/* ------------------------------------------------------------------ images */

async function decode(blob) {
  try {
    return await createImageBitmap(blob);
  } catch {
    return null; // not decodable here; the server has the last word
  }
}

/** Big photos are shrunk before upload (the model sees a few hundred pixels anyway). */
async function shrinkIfBig(blob, bitmap) {
  if (!bitmap || (blob.size <= BIG_FILE && Math.max(bitmap.width, bitmap.height) <= 4 * BIG_SIDE)) return null;
  const f = Math.min(1, BIG_SIDE / Math.max(bitmap.width, bitmap.height));
  const w = Math.max(1, Math.round(bitmap.width * f));
  const h = Math.max(1, Math.round(bitmap.height * f));
  const c = new OffscreenCanvas(w, h);
  const ctx = c.getContext('2d');
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bitmap, 0, 0, w, h);
  const out = await c.convertToBlob({ type: 'image/jpeg', quality: 0.92 });
  return { blob: out, width: w, height: h };
}

async function openFile(file) {
  if (!file) return;
  await loadImage(file, file.name || 'image', null);
}

async function loadExample(scene) {
  try {
    const res = await fetch(`examples/${scene.file}`);
    if (!res.ok) throw new api.ApiError(`The example ${scene.file} could not be loaded (HTTP ${res.status}).`, { status: res.status });
    await loadImage(await res.blob(), scene.file.split('/').pop(), scene);
  } catch (e) {
    showError(e, 'Example');
  }
}

/** Uploads a new image: predictions and the first map; the page's state changes only on success. */
async function loadImage(blob, name, scene) {
  const seq = ++loadSeq;
  await stopTam();
  const bitmap = await decode(blob);
  let note = '';
  const small = await shrinkIfBig(blob, bitmap).catch(() => null);
  if (seq !== loadSeq) { bitmap?.close?.(); return false; } // a newer image came meanwhile
  const cand = {
    id: ++imageCounter, blob, name, bitmap, scene,
    width: bitmap?.width || 0, height: bitmap?.height || 0,
  };
  if (small) {
    note = `shrunk in the browser from ${bitmap.width}\u00d7${bitmap.height} to ${small.width}\u00d7${small.height} before upload`;
    cand.blob = small.blob;
  }
  cand.note = note;
  if (state.pending?.bitmap && state.pending !== state.image) state.pending.bitmap.close?.();
  state.pending = cand;
  drawView();
  const prevTarget = state.target;
  const kept = prevTarget?.type === 'concept' ? state.concepts.find((c) => c.id === prevTarget.id) : null;
  const headless = !modelHasHead();
  // a model without a classifier head explains concepts only
  const concept = headless ? kept || state.concepts[state.concepts.length - 1] : null;
  if (headless && !concept) {
    if (!bitmap) {
      state.pending = null;
      drawView();
      showError(new api.ApiError('The browser could not read this file as an image.', { code: 'bad_image' }), `Could not open ${name}`);
      return false;
    }
    commitImage(cand, null);
    state.target = null;
    $('alerts').replaceChildren();
    $('concept-add-current').disabled = false;
    renderAll();
    status('This model has no classifier head: build a concept (under Explain) to explain the image.');
    return true;
  }
  const method = METHODS[state.method]?.job ? 'cdam' : state.method;
  setBusy(`Explaining ${name}\u2026`);
  try {
    const res = await api.explain({
      image: cand.blob, name, methods: [method], topK: TOP_K, size: state.size,
      ...(concept ? { classes: [], concept: concept.id } : {}),
    });
    if (seq !== loadSeq) return false;
    const data = res.data;
    if (res.status === 202) throw new api.ApiError('The server queued this request as a job unexpectedly.');
    commitImage(cand, data);
    const ex = data.explanations.find((x) => x.target);
    const top = state.predictions[0];
    if (ex) state.target = toTarget(ex.target);
    else state.target = top ? { type: 'class', index: top.index, label: top.label } : null;
    storeResult(data, cand.id);
    if (kept) state.target = { type: 'concept', id: kept.id, name: kept.name }; // a concept stays the target
    setBusy(null);
    $('alerts').replaceChildren(); // earlier messages were about what came before
    $('concept-add-current').disabled = false;
    renderAll();
    status(`Explained ${targetName(state.target)} in ${ms(data.timing_ms.total)}.`);
    if (METHODS[state.method]?.job) startTam();
    else if (state.results.get(resultKey(state.method, state.target))) drawView();
    else refreshView();
    maybeCompare();
    return true;
  } catch (e) {
    if (seq !== loadSeq) return false;
    if (bitmap && state.pending === cand) bitmap.close?.();
    state.pending = null;
    setBusy(null);
    drawView();
    showError(e, `Could not explain ${name}`);
    return false;
  }
}

/** Rough GFLOP of one forward pass at the current input size (decides the automatic comparison). */
function forwardGflop() {
  const m = state.model;
  const { width, height } = inputSize();
  const n = Math.round(width / m.patch_size) * Math.round(height / m.patch_size) + 1;
  const d = m.embed_dim;
  return (2 * m.depth * n * (12 * d * d + 2 * n * d)) / 1e9;
}

function updateCompareAuto() {
  if (state.compareAutoTouched) return;
  state.compareAuto = forwardGflop() < 5;
  $('compare-auto').checked = state.compareAuto;
}

async function changeSize(value) {
  const prev = state.size;
  const [h, w] = value.split('x').map(Number);
  const [nh, nw] = state.model.native_size;
  state.size = h === nh && w === nw ? null : [h, w];
  updateCompareAuto();
  if (!state.image) { drawView(); return; }
  const img = state.image;
  const ok = await loadImage(img.blob, img.name, img.scene);
  if (!ok) {
    state.size = prev;
    updateCompareAuto();
    $('size-select').value = sizeKey() === 'native' ? `${nh}x${nw}` : sizeKey();
  }
}

function sizeOptions() {
  const m = state.model;
  const [nh, nw] = m.native_size;
  const [mh, mw] = m.max_size || [nh, nw];
  const P = m.patch_size;
  const seen = new Set();
  const out = [];
  for (const f of [1, 1.5, 2, 3, 4, 5]) {
    const h = Math.max(P, Math.round((nh * f) / P) * P);
    const w = Math.max(P, Math.round((nw * f) / P) * P);
    if (h > mh || w > mw || seen.has(`${h}x${w}`)) continue;
    seen.add(`${h}x${w}`);
    const label = `${w}\u00d7${h} px${f === 1 ? ' (native)' : `, ${w / P}\u00d7${h / P} patches`}`;
    out.push(el('option', { value: `${h}x${w}`, text: label }));
  }
  return out;
}

function modelHasHead() {
  return state.model && state.model.head !== 'none' && state.model.num_classes > 0;
}

/** Makes cand the current image (data: its first answer, or null). */
function commitImage(cand, data) {
  viewSeq++; // views asked for the previous image are void
  if (state.image?.bitmap && state.image !== cand) state.image.bitmap.close?.();
  state.image = cand;
  state.pending = null;
  state.results = new Map();
  state.predictions = data?.predictions || [];
  state.input = data?.input || (state.size ? { height: state.size[0], width: state.size[1] } : null);
  state.grid = data?.grid || null;
}

function toTarget(t) {
  if (t?.type === 'class') return { type: 'class', index: t.index, label: t.label };
  if (t?.type === 'concept') return { type: 'concept', id: t.id, name: t.name };
  return null;
}

/** Keeps every explanation of a result under its key. */
function storeResult(data, imageId) {
  const meta = {
    model: data.model, input: data.input, image: data.image, grid: data.grid,
    predictions: data.predictions, timing_ms: data.timing_ms, cache: data.cache,
  };
  for (const ex of data.explanations) {
    const t = toTarget(ex.target);
    state.results.set(resultKey(ex.method, t, imageId), { explanation: ex, meta, target: t });
  }
}

/* ------------------------------------------------------------------ requests */

function targetParams(target) {
  if (!target) return {};
  if (target.type === 'class') return { classes: [target.index] };
  return { classes: [], concept: target.id };
}

/** Makes sure the results of `methods` (sync ones) for target exist; one request for all missing. */
function ensureSync(methods, target) {
  const img = state.image;
  const missing = methods.filter((m) => !state.results.has(resultKey(m, target)));
  const waits = [];
  const fresh = [];
  for (const m of missing) {
    const p = inflight.get(resultKey(m, target));
    if (p) waits.push(p); else fresh.push(m);
  }
  if (fresh.length) {
    const classFreeOnly = fresh.every((m) => METHODS[m]?.classFree);
    const p = api.explain({
      image: img.blob, name: img.name, methods: fresh, topK: TOP_K, size: state.size,
      ...(classFreeOnly && target?.type === 'class' ? {} : targetParams(target)),
    }).then((res) => {
      if (res.status === 202) throw new api.ApiError('The server turned this request into a job; try TAM separately.');
      storeResult(res.data, img.id);
    }).finally(() => {
      for (const m of fresh) inflight.delete(resultKey(m, target, img.id));
    });
    for (const m of fresh) inflight.set(resultKey(m, target, img.id), p);
    waits.push(p);
  }
  return Promise.all(waits);
}

/** Shows state.method for state.target, fetching it if needed. */
async function refreshView() {
  if (!state.image) return;
  const seq = ++viewSeq;
  const method = state.method;
  const target = state.target;
  const key = resultKey(method, target);
  renderTargets();
  if (state.results.has(key)) {
    setBusy(null);
    drawView();
    maybeCompare();
    return;
  }
  if (METHODS[method]?.job) {
    drawView();
    startTam();
    maybeCompare();
    return;
  }
  setBusy(`${methodName(method)}: ${targetName(target)}\u2026`);
  const main = ensureSync([method], target); // asked first: the server answers it first
  maybeCompare();
  try {
    await main;
    if (seq !== viewSeq) return;
    setBusy(null);
    drawView();
    const r = state.results.get(key);
    if (r) status(`${methodName(method)} for ${targetName(target)}: ${ms(r.meta.timing_ms.total)} on the server (cache ${r.meta.cache}).`);
  } catch (e) {
    if (seq !== viewSeq) return;
    setBusy(null);
    showError(e, `Could not explain ${targetName(target)}`);
    if (e.code === 'unknown_concept') refreshConcepts();
    // back to what is on screen
    const shown = state.results.get(state.shownKey);
    if (shown) {
      state.target = shown.target || state.target;
      state.method = shown.explanation.method;
    }
    renderAll();
  }
}

function selectTarget(target) {
  if (!state.image) return;
  if (sameTarget(target, state.target) && state.results.has(resultKey(state.method, target))) return;
  state.target = target;
  if (METHODS[state.method]?.classFree) state.method = 'cdam';
  $('method-select').value = state.method;
  refreshView();
}

function selectMethod(method) {
  state.method = method;
  $('method-select').value = method;
  if (state.image) refreshView();
  else renderCompare();
}

/* ------------------------------------------------------------------ TAM job */

async function startTam() {
  const img = state.image;
  const target = state.target;
  if (!img || !state.model.methods.includes('tam')) return;
  const key = resultKey('tam', target);
  if (state.results.has(key)) return;
  if (tam.key === key && (tam.state === 'queued' || tam.state === 'running' || tam.state === 'starting')) return;
  await stopTam();
  const job = {
    key, imageId: img.id, target, id: null, state: 'starting', progress: 0,
    abort: new AbortController(), started: performance.now(),
  };
  tam = job;
  renderTam();
  try {
    const res = await api.explain({
      image: img.blob, name: img.name, methods: ['tam'], topK: TOP_K, size: state.size, async: true,
      ...targetParams(target),
    }, job.abort.signal);
    let result;
    if (res.status === 200) {
      result = res.data;
    } else {
      job.id = res.data.id;
      job.state = 'queued';
      renderTam();
      const fin = await api.waitJob(job.id, (p, s) => {
        if (tam !== job) return;
        job.progress = p;
        job.state = s;
        renderTam();
      }, job.abort.signal);
      if (fin.state === 'failed') {
        throw new api.ApiError(`TAM failed: ${fin.error?.message || 'unknown error'}`, { code: fin.error?.code || 'job_failed' });
      }
      if (fin.state === 'cancelled') {
        job.state = 'cancelled';
        renderTam();
        return;
      }
      result = fin.result;
    }
    if (state.image?.id === job.imageId) storeResult(result, job.imageId);
    job.state = 'done';
    job.progress = 1;
    job.seconds = (performance.now() - job.started) / 1000;
    if (tam === job) {
      renderTam();
      if (state.method === 'tam' && sameTarget(state.target, target)) {
        setBusy(null);
        drawView();
      }
      renderCompare();
      status(`TAM for ${targetName(target)} done in ${job.seconds.toFixed(1)} s.`);
    }
  } catch (e) {
    if (e?.name === 'AbortError' || job.abort.signal.aborted) return;
    job.state = 'failed';
    job.error = e;
    if (tam === job) renderTam();
    showError(e, 'TAM');
  }
}

/** Cancels the running TAM job (if any) on the server and stops polling. */
async function stopTam() {
  const job = tam;
  if (!job || !(job.state === 'starting' || job.state === 'queued' || job.state === 'running')) return;
  job.abort.abort();
  job.state = 'cancelled';
  renderTam();
  if (job.id) {
    try { await api.cancelJob(job.id); } catch (e) { if (e.code !== 'not_found') showError(e, 'Cancel'); }
  }
  status('TAM cancelled.');
}

function renderTam() {
  renderCompare();
  if (state.method === 'tam' && state.image && !state.results.has(resultKey('tam', state.target))) {
    const running = tam.key === resultKey('tam', state.target) && ['starting', 'queued', 'running'].includes(tam.state);
    if (running) setBusy(`TAM: ${targetName(state.target)} (${Math.round(tam.progress * 100)}%)`, tam.progress);
    else setBusy(null);
  }
}

/* ------------------------------------------------------------------ comparison */

function syncMethods() {
  return (state.model?.methods || []).filter((m) => METHODS[m] && !METHODS[m].job);
}

function maybeCompare() {
  renderCompare();
  if (state.compareAuto && state.image && state.target) runCompare(false);
}

async function runCompare(explicit) {
  if (!state.image) return;
  const target = state.target;
  const methods = syncMethods();
  const key = `${state.image.id}|${sizeKey()}|${targetKey(target)}`;
  if (methods.every((m) => state.results.has(resultKey(m, target)))) { renderCompare(); return; }
  if (state.compareBusy === key) return;
  state.compareBusy = key;
  state.compareError = null;
  renderCompare();
  // RP on its own request: it needs every block's attention (its own forward pass) and
  // may hit the server's memory budget on large inputs without taking the others down
  const groups = [methods.filter((m) => m !== 'rp'), methods.filter((m) => m === 'rp')].filter((g) => g.length);
  const settled = await Promise.allSettled(groups.map((g) => ensureSync(g, target).finally(() => renderCompare())));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) {
    if (state.compareBusy === key) state.compareError = key;
    if (explicit || sameTarget(target, state.target)) showError(failed.reason, 'Comparison');
  }
  if (state.compareBusy === key) state.compareBusy = null;
  renderCompare();
}

function buildCompareGrid() {
  const grid = $('compare-grid');
  grid.replaceChildren();
  const tpl = $('tpl-compare-tile');
  for (const m of state.model.methods) {
    if (!METHODS[m]) continue;
    const li = tpl.content.firstElementChild.cloneNode(true);
    li.dataset.method = m;
    li.querySelector('.tile-name').textContent = methodName(m);
    li.querySelector('.tile-desc').textContent = METHODS[m].desc;
    const btn = li.querySelector('.tile-main');
    btn.addEventListener('click', () => selectMethod(m));
    if (!METHODS[m].job) {
      li.querySelector('.tile-job').remove();
    } else {
      li.querySelector('.tile-job').hidden = false;
      li.querySelector('.tile-run').addEventListener('click', () => startTam());
      li.querySelector('.tile-cancel').addEventListener('click', () => stopTam());
    }
    grid.append(li);
  }
}

function renderCompare() {
  if (!state.model) return;
  const target = state.target;
  $('compare-target').textContent = state.image && target ? `for ${targetName(target)}` : '';
  $('compare-run').disabled = !state.image || !target;
  const prefix = state.image ? `${state.image.id}|${sizeKey()}|${targetKey(target)}` : '';
  const busy = state.compareBusy && state.compareBusy === prefix;
  for (const li of $('compare-grid').children) {
    const m = li.dataset.method;
    const btn = li.querySelector('.tile-main');
    const stateEl = li.querySelector('.tile-state');
    const r = state.image ? state.results.get(resultKey(m, target)) : null;
    btn.setAttribute('aria-pressed', String(m === state.method));
    btn.setAttribute('aria-label', `${methodName(m)}${r ? '' : ' (not computed yet)'}: show it large`);
    let text;
    li.classList.toggle('has-map', Boolean(r));
    if (!state.image) text = 'no image';
    else if (r) text = '';
    else if (METHODS[m].job) text = 'not run';
    else if (busy) text = 'working\u2026';
    else if (state.compareError === prefix) text = 'failed';
    else text = 'not computed';
    stateEl.textContent = text;
    stateEl.hidden = !text;
    li.classList.toggle('busy', Boolean(!r && busy && !METHODS[m].job));
    drawTile(li, r);
    li.querySelector('.tile-scale').textContent = r ? `max |score| ${heat.formatG(heat.mapScale(r.explanation.scores), 2)}` : '\u00a0';
    if (METHODS[m].job) renderTamTile(li, r);
  }
}

function renderTamTile(li, r) {
  const run = li.querySelector('.tile-run');
  const cancel = li.querySelector('.tile-cancel');
  const bar = li.querySelector('.progress');
  const mine = state.image && tam.key === resultKey('tam', state.target);
  const running = mine && ['starting', 'queued', 'running'].includes(tam.state);
  let p = 0;
  if (r) p = 1;
  else if (mine) p = tam.progress || 0;
  setProgress(bar, p, running ? `TAM progress ${Math.round(p * 100)}%` : r ? 'TAM done' : 'TAM progress');
  bar.dataset.state = r ? 'done' : mine ? tam.state : 'idle';
  if (mine && tam.id) li.dataset.job = tam.id;
  run.hidden = running || Boolean(r);
  run.disabled = !state.image || !state.target;
  run.textContent = mine && (tam.state === 'failed' || tam.state === 'cancelled') ? 'Run TAM again' : 'Run TAM';
  cancel.hidden = !running;
  const stateEl = li.querySelector('.tile-state');
  if (running) {
    stateEl.textContent = tam.state === 'running' ? `${Math.round(p * 100)}%` : tam.state === 'queued' ? 'queued' : 'starting';
    stateEl.hidden = false;
  } else if (!r && mine && tam.state === 'cancelled') {
    stateEl.textContent = 'cancelled';
    stateEl.hidden = false;
  } else if (!r && mine && tam.state === 'failed') {
    stateEl.textContent = 'failed';
    stateEl.hidden = false;
  }
  if (r && mine && tam.seconds) li.querySelector('.tile-scale').textContent += ` \u00b7 ${tam.seconds.toFixed(1)} s`;
}

function setProgress(bar, p, label) {
  const v = Math.round(Math.max(0, Math.min(1, p)) * 100);
  bar.setAttribute('aria-valuenow', String(v));
  bar.setAttribute('aria-valuetext', `${v}%`);
  if (label) bar.setAttribute('aria-label', label);
  bar.firstElementChild.style.transform = `scaleX(${v / 100})`;
}

function drawTile(li, r) {
  const base = li.querySelector('.tile-base');
  const hc = li.querySelector('.tile-heat');
  const img = state.image;
  const { width: W, height: H } = inputSize();
  li.querySelector('.tile-canvas').style.aspectRatio = `${W} / ${H}`;
  const stamp = `${img?.id}|${W}x${H}`;
  if (base.dataset.stamp !== stamp) {
    base.dataset.stamp = stamp;
    drawBase(base, img, W, H);
  }
  const hstamp = r ? `${stamp}|${r.explanation.method}|${targetKey(r.target)}|${state.view.smooth}|${state.view.mode}` : '';
  if (hc.dataset.stamp !== hstamp) {
    hc.dataset.stamp = hstamp;
    if (r) paintHeatCanvas(hc, r, 192);
    else { hc.width = 1; hc.height = 1; hc.getContext('2d').clearRect(0, 0, 1, 1); }
  }
  hc.style.opacity = state.view.mode === 'map' ? '1' : String(Math.max(state.view.opacity, 0.35));
  base.hidden = state.view.mode === 'map';
}

/* ------------------------------------------------------------------ drawing */

function drawBase(canvas, img, W, H) {
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, W, H);
  if (img?.bitmap) {
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(img.bitmap, 0, 0, W, H);
  } else if (img) {
    ctx.fillStyle = '#333';
    ctx.fillRect(0, 0, W, H);
  }
}

/** The heat layer of a result: patches as a grid-sized canvas (scaled up pixelated) or, smooth, at display size. */
function paintHeatCanvas(canvas, r, displayPx) {
  const g = r.meta.grid;
  const map = { scores: r.explanation.scores, rows: g.rows, cols: g.cols };
  const opts = { smooth: state.view.smooth, mode: state.view.mode };
  let W = g.cols;
  let H = g.rows;
  if (state.view.smooth) {
    const inW = r.meta.input.width;
    const inH = r.meta.input.height;
    const f = Math.max(1, Math.min(4, (displayPx * (window.devicePixelRatio || 1)) / Math.max(inW, inH)));
    W = Math.min(2048, Math.round(inW * f));
    H = Math.min(2048, Math.round(inH * f));
  }
  canvas.classList.toggle('pixelated', !state.view.smooth);
  return heat.drawHeat(canvas, map, W, H, opts);
}

let busyTimer = 0;
/** The veil over the map while it is being computed: shown only after 150 ms, so that a
 *  quick answer (the usual case) never flickers; at once with a progress bar (TAM). */
function setBusy(text, progress) {
  const veil = $('viewer-busy');
  clearTimeout(busyTimer);
  $('viewer').setAttribute('aria-busy', text ? 'true' : 'false');
  if (!text) { veil.hidden = true; return; }
  $('busy-text').textContent = text;
  const bar = $('busy-progress');
  bar.hidden = progress === undefined;
  if (progress !== undefined) setProgress(bar, progress, 'TAM progress');
  if (!veil.hidden || progress !== undefined) { veil.hidden = false; return; }
  busyTimer = setTimeout(() => { veil.hidden = false; }, 150);
}

/** Draws the viewer: the image (pending or current), the current map, legend, readout, timing. */
function drawView() {
  const img = state.pending || state.image;
  const { width: W, height: H } = state.pending ? (state.size ? inputSize() : nativeSize()) : inputSize();
  const viewer = $('viewer');
  viewer.style.aspectRatio = `${W} / ${H}`;
  $('viewer-empty').hidden = Boolean(img);
  const base = $('base-canvas');
  const bstamp = `${img?.id}|${W}x${H}`;
  if (base.dataset.stamp !== bstamp) {
    base.dataset.stamp = bstamp;
    drawBase(base, img, W, H);
  }
  const displayPx = viewer.clientWidth || 480;
  base.classList.toggle('pixelated', displayPx / Math.max(W, H) >= 2);
  base.hidden = !img || state.view.mode === 'map';

  const key = state.image && !state.pending ? resultKey(state.method, state.target) : null;
  const r = key ? state.results.get(key) : null;
  const hc = $('heat-canvas');
  if (r) {
    const hstamp = `${key}|${state.view.smooth}|${state.view.mode}|${state.view.smooth ? displayPx : ''}`;
    if (hc.dataset.stamp !== hstamp) {
      hc.dataset.stamp = hstamp;
      const scale = paintHeatCanvas(hc, r, displayPx);
      $('legend-min').textContent = `\u2212${heat.formatG(scale, 2)}`;
      $('legend-max').textContent = `+${heat.formatG(scale, 2)}`;
    }
    hc.hidden = false;
    state.shownKey = key;
  } else if (!state.pending && state.shownKey && state.results.has(state.shownKey)) {
    hc.hidden = false; // keep the previous map while the next one is on its way
  } else {
    hc.hidden = true;
    hc.dataset.stamp = '';
    state.shownKey = null;
    $('legend-min').textContent = '\u2212s';
    $('legend-max').textContent = '+s';
  }
  hc.style.opacity = state.view.mode === 'map' ? '1' : String(state.view.opacity);
  viewer.dataset.method = r ? r.explanation.method : '';
  viewer.dataset.target = r ? targetKey(r.target) : '';
  viewer.dataset.ready = r ? 'true' : 'false';
  viewer.dataset.image = r ? String(state.image.id) : '';

  const shown = state.results.get(state.shownKey);
  $('view-title').textContent = shown ? `${methodName(shown.explanation.method)} \u00b7 ${shown.target ? targetName(shown.target) : 'any class'}` : '';
  viewer.setAttribute('aria-label', shown
    ? `${methodName(shown.explanation.method)} map${shown.target ? ` for ${targetName(shown.target)}` : ''} over ${state.image.name}: orange patches are evidence, blue counter-evidence`
    : img ? `Image ${img.name}` : 'No image yet');
  $('download-png').disabled = !shown;
  $('download-json').disabled = !shown;
  renderTiming(shown);
  renderBoxes();
  renderCursor();
}

function renderTiming(r) {
  const t = $('timing');
  if (!r) { t.textContent = state.image?.note ? `Image ${state.image.note}.` : ''; return; }
  const tm = r.meta.timing_ms;
  t.replaceChildren(
    el('span', { class: 'timing-total', text: `Server ${ms(tm.total)}` }),
    ` (queue ${ms(tm.queue)}, decode ${ms(tm.decode)}, forward ${ms(tm.forward)}, explain ${ms(tm.explain)}) \u00b7 `,
    el('span', { class: `cache cache-${r.meta.cache}`, text: `cache ${r.meta.cache}` }),
    state.image?.note ? ` \u00b7 image ${state.image.note}` : '',
  );
}

function renderBoxes() {
  const boxes = $('boxes');
  const scene = state.image && !state.pending ? state.image.scene : null;
  $('boxes-field').hidden = !scene?.items?.length;
  boxes.replaceChildren();
  if (!scene || !state.view.boxes || !state.image.width) return;
  for (const it of scene.items || []) {
    const [x, y, w, h] = it.box || [];
    if (![x, y, w, h].every(Number.isFinite)) continue;
    const b = el('div', { class: 'box' }, el('span', { class: 'box-label', text: it.class }));
    b.style.left = `${(100 * x) / state.image.width}%`;
    b.style.top = `${(100 * y) / state.image.height}%`;
    b.style.width = `${(100 * w) / state.image.width}%`;
    b.style.height = `${(100 * h) / state.image.height}%`;
    boxes.append(b);
  }
}

function currentResult() {
  return state.results.get(state.shownKey) || null;
}

function renderCursor() {
  const cur = $('cursor');
  const r = currentResult();
  const c = state.cursor;
  if (!r || !c) {
    cur.hidden = true;
    if (!r && state.image && !state.target) $('readout').textContent = 'Choose a class or a concept to explain.';
    else if (!r && state.image) $('readout').textContent = 'Waiting for the map\u2026';
    else $('readout').textContent = 'Point at the map (or focus it and use the arrow keys) to read a patch\u2019s score.';
    return;
  }
  const { rows, cols } = r.meta.grid;
  const row = Math.min(c.row, rows - 1);
  const col = Math.min(c.col, cols - 1);
  cur.hidden = false;
  cur.style.left = `${(100 * col) / cols}%`;
  cur.style.top = `${(100 * row) / rows}%`;
  cur.style.width = `${100 / cols}%`;
  cur.style.height = `${100 / rows}%`;
  const v = r.explanation.scores[row * cols + col];
  const scale = heat.mapScale(r.explanation.scores);
  const kind = !(Math.abs(v) > 0) ? 'neutral' : v > 0 ? 'evidence' : 'counter-evidence';
  const rel = scale > 0 ? ` (${Math.round((100 * Math.abs(v)) / scale)}% of the largest)` : '';
  const ro = $('readout');
  ro.replaceChildren(
    `Patch row ${row + 1}, column ${col + 1}: `,
    el('strong', { class: kind === 'evidence' ? 'pos-text' : kind === 'counter-evidence' ? 'neg-text' : '', text: heat.formatScore(v) }),
    ` ${kind}${rel}`,
  );
  ro.dataset.score = String(v);
}

/* ------------------------------------------------------------------ predictions, targets */

function renderTargets() {
  const ol = $('predictions');
  ol.replaceChildren();
  const preds = state.predictions;
  if (!state.image) {
    for (let i = 0; i < TOP_K; i++) ol.append(el('li', { class: 'placeholder' }));
  } else if (!preds.length) {
    ol.append(el('li', { class: 'empty', text: 'This model has no classifier head: explain the image against a concept (below).' }));
  }
  for (const p of preds) {
    const t = { type: 'class', index: p.index, label: p.label };
    const on = sameTarget(t, state.target);
    const bar = el('span', { class: 'prob-bar', 'aria-hidden': 'true' });
    bar.style.setProperty('--p', String(p.probability));
    const btn = el('button', { type: 'button', class: 'target-btn prediction', 'aria-pressed': String(on), 'data-index': String(p.index) },
      el('span', { class: 'pred-label', text: p.label }),
      el('span', { class: 'pred-prob', text: pct(p.probability) }),
      bar);
    btn.title = `logit ${p.logit.toFixed(3)}, class #${p.index}`;
    btn.addEventListener('click', () => selectTarget(t));
    ol.append(el('li', {}, btn));
  }
  // a chosen class outside the top-k is shown after them
  if (state.target?.type === 'class' && !preds.some((p) => p.index === state.target.index)) {
    const t = state.target;
    const btn = el('button', { type: 'button', class: 'target-btn prediction extra', 'aria-pressed': 'true', 'data-index': String(t.index) },
      el('span', { class: 'pred-label', text: t.label }),
      el('span', { class: 'pred-prob', text: 'searched' }));
    ol.append(el('li', {}, btn));
  }
  renderConcepts();
}

function renderConcepts() {
  const ul = $('concepts');
  ul.replaceChildren();
  if (!state.concepts.length) {
    ul.append(el('li', { class: 'concepts-empty', text: 'No concepts yet: build one below.' }));
    return;
  }
  for (const c of state.concepts) {
    const t = { type: 'concept', id: c.id, name: c.name };
    const on = sameTarget(t, state.target);
    const btn = el('button', { type: 'button', class: 'target-btn concept', 'aria-pressed': String(on), 'data-id': c.id, disabled: !state.image },
      el('span', { class: 'pred-label', text: c.name }),
      el('span', { class: 'pred-prob', text: `${c.images} image${c.images === 1 ? '' : 's'}` }));
    btn.title = state.image ? `Explain the image against the concept \u201c${c.name}\u201d` : 'Choose an image first';
    btn.addEventListener('click', () => selectTarget(t));
    const del = el('button', { type: 'button', class: 'icon-btn delete', 'aria-label': `Delete concept ${c.name}`, title: 'Delete', text: '\u00d7' });
    del.addEventListener('click', () => removeConcept(c));
    ul.append(el('li', { class: 'concept-item' }, btn, del));
  }
}

function renderAll() {
  const file = state.image?.scene?.file;
  for (const b of document.querySelectorAll('#examples .example')) {
    if (file && b.dataset.file === file) b.setAttribute('aria-current', 'true');
    else b.removeAttribute('aria-current');
  }
  renderTargets();
  $('method-select').value = state.method;
  drawView();
  renderCompare();
}

/* ------------------------------------------------------------------ concepts */

async function refreshConcepts() {
  try {
    state.concepts = await api.listConcepts();
  } catch (e) {
    showError(e, 'Could not load the concepts');
  }
  renderConcepts();
}

async function removeConcept(c) {
  try {
    await api.deleteConcept(c.id);
    status(`Deleted the concept \u201c${c.name}\u201d.`);
  } catch (e) {
    if (e.code !== 'not_found') { showError(e, `Could not delete \u201c${c.name}\u201d`); return; }
  }
  state.concepts = state.concepts.filter((x) => x.id !== c.id);
  for (const k of [...state.results.keys()]) if (k.endsWith(`|k${c.id}`)) state.results.delete(k);
  if (state.target?.type === 'concept' && state.target.id === c.id) {
    const p = state.predictions[0];
    state.target = p ? { type: 'class', index: p.index, label: p.label } : null;
    if (state.target) refreshView();
  }
  renderAll();
  // keep the keyboard focus nearby: the next concept, or the builder
  const next = document.querySelector('#concepts .concept');
  (next || document.querySelector('#concept-builder summary')).focus({ preventScroll: true });
}

const builder = { images: [] }; // {blob, name, url, key}

function renderBuilder() {
  const ul = $('concept-chosen');
  ul.replaceChildren();
  builder.images.forEach((im, i) => {
    const img = el('img', { src: im.url, alt: im.name, width: 48, height: 48 });
    zoomToBox(img, im.box);
    const rm = el('button', { type: 'button', class: 'icon-btn', 'aria-label': `Remove ${im.name}`, title: 'Remove', text: '\u00d7' });
    rm.addEventListener('click', () => {
      URL.revokeObjectURL(im.url);
      builder.images.splice(i, 1);
      renderBuilder();
    });
    ul.append(el('li', { class: 'chosen-item' }, el('span', { class: 'chosen-frame' }, img), rm));
  });
  $('concept-count').textContent = `${builder.images.length} image${builder.images.length === 1 ? '' : 's'} (1 to ${MAX_CONCEPT_IMAGES})`;
  for (const b of $('concept-picker').querySelectorAll('button')) {
    b.setAttribute('aria-pressed', String(builder.images.some((im) => im.key === b.dataset.key)));
  }
}

function addBuilderImage(blob, name, key, box) {
  if (builder.images.length >= MAX_CONCEPT_IMAGES) {
    showError(new Error(`A concept takes at most ${MAX_CONCEPT_IMAGES} images.`), 'Concept');
    return false;
  }
  builder.images.push({ blob, name, key, box, url: URL.createObjectURL(blob) });
  return true;
}

/** Zooms a thumbnail onto its item's box (index.json boxes are in the image's pixels). */
function zoomToBox(img, box) {
  if (!Array.isArray(box) || box.length !== 4) return;
  const fit = () => {
    const W = img.naturalWidth;
    const H = img.naturalHeight;
    const [x, y, w, h] = box;
    if (!W || !H || !(w > 0 && h > 0)) return;
    const k = Math.max(1, Math.min(W / w, H / h) * 0.9);
    const cx = (x + w / 2) / W - 0.5;
    const cy = (y + h / 2) / H - 0.5;
    img.style.transform = `scale(${k}) translate(${-cx * 100}%, ${-cy * 100}%)`;
  };
  if (img.complete) fit(); else img.addEventListener('load', fit, { once: true });
}

function buildPicker() {
  const items = state.examples?.items || [];
  $('concept-picker-wrap').hidden = !items.length;
  const ul = $('concept-picker');
  ul.replaceChildren();
  const groups = new Map();
  for (const it of items) {
    const g = it.class || 'examples';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(it);
  }
  for (const [cls, list] of groups) {
    const row = el('ul', { class: 'pick-row', 'aria-label': cls });
    list.forEach((it, n) => {
      const key = `ex:${it.file}`;
      const img = el('img', { src: `examples/${it.file}`, alt: `${cls} ${n + 1}`, width: 34, height: 34 });
      zoomToBox(img, it.box);
      const btn = el('button', { type: 'button', class: 'pick', 'aria-pressed': 'false', 'data-key': key, 'data-class': cls },
        el('span', { class: 'pick-frame' }, img));
      btn.title = `${cls} (example ${n + 1})`;
      btn.addEventListener('click', () => toggleExampleItem(it, key));
      row.append(el('li', {}, btn));
    });
    ul.append(el('li', { class: 'pick-group' }, el('span', { class: 'pick-label', text: cls }), row));
  }
}

async function toggleExampleItem(it, key) {
  const at = builder.images.findIndex((im) => im.key === key);
  if (at >= 0) {
    URL.revokeObjectURL(builder.images[at].url);
    builder.images.splice(at, 1);
    renderBuilder();
    return;
  }
  try {
    const res = await fetch(`examples/${it.file}`);
    if (!res.ok) throw new Error(`the example ${it.file} could not be loaded (HTTP ${res.status})`);
    if (addBuilderImage(await res.blob(), it.file.split('/').pop(), key, it.box)) renderBuilder();
  } catch (e) {
    showError(e, 'Concept');
  }
}

async function saveConcept(ev) {
  ev.preventDefault();
  const nameEl = $('concept-name');
  const name = nameEl.value.trim();
  if (!name) {
    nameEl.setAttribute('aria-invalid', 'true');
    showError(new Error('Give the concept a name.'), 'Concept');
    nameEl.focus();
    return;
  }
  nameEl.removeAttribute('aria-invalid');
  if (!builder.images.length) {
    showError(new Error('Add at least one example image.'), 'Concept');
    $('concept-upload').focus();
    return;
  }
  const save = $('concept-save');
  save.disabled = true;
  save.textContent = 'Saving\u2026';
  try {
    const c = await api.createConcept(name, builder.images);
    state.concepts = [...state.concepts.filter((x) => x.id !== c.id), { id: c.id, name: c.name, images: c.images, created: c.created }];
    for (const im of builder.images) URL.revokeObjectURL(im.url);
    builder.images = [];
    nameEl.value = '';
    renderBuilder();
    $('concept-builder').open = false;
    status(`Saved the concept \u201c${c.name}\u201d (${c.images} image${c.images === 1 ? '' : 's'}).`);
    renderConcepts();
    if (state.image) selectTarget({ type: 'concept', id: c.id, name: c.name });
  } catch (e) {
    showError(e, 'Could not save the concept');
  } finally {
    save.disabled = false;
    save.textContent = 'Save concept';
  }
}

/* ------------------------------------------------------------------ downloads */

function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

function downloadName(r, ext) {
  const t = r.target ? (r.target.type === 'class' ? r.target.label : r.target.name) : 'any';
  const stem = (state.image?.name || 'image').replace(/\.[a-z0-9]+$/i, '');
  return `${slug(stem)}-${r.explanation.method}-${slug(t)}.${ext}`;
}

async function downloadPng() {
  const r = currentResult();
  if (!r) return;
  const { width: inW, height: inH } = r.meta.input;
  const k = Math.max(1, Math.ceil(480 / Math.max(inW, inH)));
  const W = inW * k;
  const H = inH * k;
  // the image as the model saw it, enlarged pixel for pixel
  const small = new OffscreenCanvas(inW, inH);
  drawBase(small, state.image, inW, inH);
  const big = new OffscreenCanvas(W, H);
  const bctx = big.getContext('2d');
  bctx.imageSmoothingEnabled = false;
  bctx.drawImage(small, 0, 0, W, H);
  const base = bctx.getImageData(0, 0, W, H).data;
  const map = { scores: r.explanation.scores, rows: r.meta.grid.rows, cols: r.meta.grid.cols };
  const { image, scale } = heat.composite(base, map, W, H, { ...state.view });
  const font = Math.max(12, Math.round(W / 32));
  const cap = Math.round(font * 2);
  const leg = Math.round(font * 4.2);
  const out = new OffscreenCanvas(W, cap + H + leg);
  const ctx = out.getContext('2d');
  ctx.fillStyle = '#16181d';
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.putImageData(image, 0, cap);
  ctx.font = `${font}px system-ui, sans-serif`;
  ctx.textBaseline = 'middle';
  ctx.fillStyle = '#e8eaed';
  ctx.textAlign = 'center';
  ctx.fillText(`${methodName(r.explanation.method)}: ${r.target ? targetName(r.target) : 'any class'}`, W / 2, cap / 2, W - 8);
  // legend: words, ramp, ticks
  const ramp = document.createElement('canvas');
  heat.drawRamp(ramp, 255, 1);
  const m = Math.round(font * 0.6);
  const y0 = cap + H;
  ctx.textAlign = 'left';
  ctx.fillStyle = `rgb(${heat.NEG.join(',')})`;
  ctx.fillText('counter-evidence', m, y0 + font * 0.9);
  ctx.textAlign = 'right';
  ctx.fillStyle = `rgb(${heat.POS.join(',')})`;
  ctx.fillText('evidence', W - m, y0 + font * 0.9);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(ramp, m, y0 + font * 1.6, W - 2 * m, Math.round(font * 0.8));
  ctx.fillStyle = '#c9ccd1';
  const ty = y0 + font * 3.2;
  ctx.textAlign = 'left';
  ctx.fillText(`\u2212${heat.formatG(scale, 2)}`, m, ty);
  ctx.textAlign = 'center';
  ctx.fillText('0', W / 2, ty);
  ctx.textAlign = 'right';
  ctx.fillText(`+${heat.formatG(scale, 2)}`, W - m, ty);
  const blob = await out.convertToBlob({ type: 'image/png' });
  download(blob, downloadName(r, 'png'));
}

function downloadJson() {
  const r = currentResult();
  if (!r) return;
  const doc = {
    image: state.image.name,
    model: r.meta.model,
    input: r.meta.input,
    grid: r.meta.grid,
    method: r.explanation.method,
    target: r.explanation.target,
    scores: r.explanation.scores,
    min: r.explanation.min,
    max: r.explanation.max,
    scale: heat.mapScale(r.explanation.scores),
    predictions: r.meta.predictions,
    timing_ms: r.meta.timing_ms,
    cache: r.meta.cache,
  };
  download(new Blob([`${JSON.stringify(doc, null, 1)}\n`], { type: 'application/json' }), downloadName(r, 'json'));
}

/* ------------------------------------------------------------------ pointer and keys */

function patchAt(ev) {
  const r = currentResult();
  if (!r) return null;
  const rect = $('viewer').getBoundingClientRect();
  const x = (ev.clientX - rect.left) / rect.width;
  const y = (ev.clientY - rect.top) / rect.height;
  if (x < 0 || y < 0 || x >= 1 || y >= 1) return null;
  const { rows, cols } = r.meta.grid;
  return { row: Math.floor(y * rows), col: Math.floor(x * cols) };
}

function wireViewer() {
  const v = $('viewer');
  v.addEventListener('pointermove', (ev) => {
    const p = patchAt(ev);
    if (!p) return;
    if (state.cursor && state.cursor.row === p.row && state.cursor.col === p.col) return;
    state.cursor = p;
    state.keyboardCursor = false;
    renderCursor();
  });
  v.addEventListener('pointerdown', (ev) => {
    const p = patchAt(ev);
    if (p) { state.cursor = p; renderCursor(); }
  });
  v.addEventListener('pointerleave', (ev) => {
    if (ev.pointerType === 'mouse' && !state.keyboardCursor) { state.cursor = null; renderCursor(); }
  });
  v.addEventListener('keydown', (ev) => {
    const r = currentResult();
    if (!r) return;
    const { rows, cols } = r.meta.grid;
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    let c = state.cursor ? { ...state.cursor } : null;
    if (moves[ev.key]) {
      if (!c) {
        // start at the strongest evidence
        const s = r.explanation.scores;
        let best = 0;
        for (let i = 1; i < s.length; i++) if (s[i] > s[best]) best = i;
        c = { row: Math.floor(best / cols), col: best % cols };
      } else {
        c.row = Math.max(0, Math.min(rows - 1, c.row + moves[ev.key][0]));
        c.col = Math.max(0, Math.min(cols - 1, c.col + moves[ev.key][1]));
      }
    } else if (ev.key === 'Home') c = { row: 0, col: 0 };
    else if (ev.key === 'End') c = { row: rows - 1, col: cols - 1 };
    else if (ev.key === 'Escape') c = null;
    else return;
    ev.preventDefault();
    state.cursor = c;
    state.keyboardCursor = Boolean(c);
    renderCursor();
  });
  v.addEventListener('blur', () => {
    if (state.keyboardCursor) { state.cursor = null; state.keyboardCursor = false; renderCursor(); }
  });
  new ResizeObserver(() => {
    if (state.view.smooth) drawView();
    else $('base-canvas').classList.toggle('pixelated', v.clientWidth / Math.max(inputSize().width, inputSize().height) >= 2);
  }).observe(v);
}

function wireInputs() {
  const fileInput = $('file-input');
  $('choose-file').addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => {
    const f = fileInput.files?.[0];
    fileInput.value = '';
    openFile(f);
  });
  // drag and drop anywhere
  let depth = 0;
  const overlay = $('drop-overlay');
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  window.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth++;
    overlay.hidden = false;
  });
  window.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener('dragleave', (e) => {
    if (!hasFiles(e)) return;
    depth = Math.max(0, depth - 1);
    if (!depth) overlay.hidden = true;
  });
  window.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const f = e.dataTransfer.files?.[0];
    if (e.target.closest?.('#concept-builder')) { addConceptFiles(e.dataTransfer.files); return; }
    openFile(f);
  });
  // paste
  window.addEventListener('paste', (e) => {
    const items = [...(e.clipboardData?.items || [])];
    const it = items.find((x) => x.kind === 'file');
    if (!it) return;
    e.preventDefault();
    const f = it.getAsFile();
    if (f) openFile(new File([f], f.name && f.name !== 'image.png' ? f.name : 'pasted image', { type: f.type }));
  });
}

function addConceptFiles(files) {
  let n = 0;
  for (const f of files || []) {
    if (!addBuilderImage(f, f.name || 'image', `file:${f.name}:${f.size}:${Math.random()}`)) break;
    n++;
  }
  if (n) renderBuilder();
}

function wireControls() {
  const op = $('opacity');
  op.addEventListener('input', () => {
    state.view.opacity = Number(op.value) / 100;
    $('opacity-out').textContent = `${op.value}%`;
    $('heat-canvas').style.opacity = state.view.mode === 'map' ? '1' : String(state.view.opacity);
    for (const hc of document.querySelectorAll('.tile-heat')) hc.style.opacity = state.view.mode === 'map' ? '1' : String(Math.max(state.view.opacity, 0.35));
  });
  for (const r of document.querySelectorAll('input[name="upsample"]')) {
    r.addEventListener('change', () => { state.view.smooth = r.value === 'smooth' && r.checked; drawView(); renderCompare(); });
  }
  for (const r of document.querySelectorAll('input[name="viewmode"]')) {
    r.addEventListener('change', () => {
      if (!r.checked) return;
      state.view.mode = r.value;
      op.disabled = r.value === 'map';
      drawView();
      renderCompare();
    });
  }
  $('show-boxes').addEventListener('change', (e) => { state.view.boxes = e.target.checked; renderBoxes(); });
  $('method-select').addEventListener('change', (e) => selectMethod(e.target.value));
  $('size-select').addEventListener('change', (e) => changeSize(e.target.value));
  $('download-png').addEventListener('click', () => downloadPng().catch((e) => showError(e, 'Download')));
  $('download-json').addEventListener('click', () => { try { downloadJson(); } catch (e) { showError(e, 'Download'); } });
  $('compare-auto').addEventListener('change', (e) => {
    state.compareAuto = e.target.checked;
    state.compareAutoTouched = true;
    if (state.compareAuto) runCompare(false);
  });
  $('compare-run').addEventListener('click', () => runCompare(true));
  // concept builder
  const cf = $('concept-files');
  $('concept-upload').addEventListener('click', () => cf.click());
  cf.addEventListener('change', () => { addConceptFiles(cf.files); cf.value = ''; });
  $('concept-add-current').addEventListener('click', () => {
    if (!state.image) return;
    if (builder.images.some((im) => im.key === `img:${state.image.id}`)) return;
    if (addBuilderImage(state.image.blob, state.image.name, `img:${state.image.id}`)) renderBuilder();
  });
  $('concept-form').addEventListener('submit', saveConcept);
  $('concept-name').addEventListener('input', (e) => { if (e.target.value.trim()) e.target.removeAttribute('aria-invalid'); });
}

/* ------------------------------------------------------------------ start */

function renderModel() {
  const m = state.model;
  const [h, w] = m.native_size;
  const g = `${Math.round(h / m.patch_size)}\u00d7${Math.round(w / m.patch_size)}`;
  $('model-info').textContent = `Model ${m.name}: ${w}\u00d7${h} input, ${g} patches of ${m.patch_size} px, ${m.num_classes} classes`;
  const sel = $('method-select');
  sel.replaceChildren(...m.methods.filter((x) => METHODS[x]).map((x) => el('option', { value: x, text: methodName(x) })));
  if (!m.methods.includes(state.method)) state.method = m.methods.includes('cdam') ? 'cdam' : m.methods[0];
  sel.value = state.method;
  const search = $('class-search');
  search.closest('.search').hidden = !modelHasHead();
  $('class-search-label').textContent = `Any of the ${m.num_classes} classes`;
  const size = $('size-select');
  size.replaceChildren(...sizeOptions());
  size.value = `${h}x${w}`;
  $('size-field').hidden = size.options.length < 2;
  updateCompareAuto();
  buildCompareGrid();
}

function renderExamples() {
  const ul = $('examples');
  ul.replaceChildren();
  const scenes = state.examples?.scenes || [];
  if (!scenes.length) {
    ul.append(el('li', { class: 'examples-empty', text: 'No example scenes on this server.' }));
    return;
  }
  for (const s of scenes) {
    const names = (s.items || []).map((it) => it.class).filter(Boolean);
    const label = names.length ? names.join(', ') : s.file;
    const btn = el('button', { type: 'button', class: 'example', 'data-file': s.file },
      el('img', { src: `examples/${s.file}`, alt: '', width: 64, height: 64 }),
      el('span', { class: 'example-label', text: label }));
    btn.setAttribute('aria-label', `Example scene: ${label}`);
    btn.addEventListener('click', () => loadExample(s));
    ul.append(el('li', {}, btn));
  }
}

async function start() {
  window.addEventListener('unhandledrejection', (e) => showError(e.reason, 'Unexpected error'));
  window.addEventListener('error', (e) => showError(e.error || e.message, 'Unexpected error'));
  heat.drawRamp($('legend-ramp'), 255, 1);
  wireInputs();
  wireControls();
  wireViewer();
  const combo = new Combobox($('class-search'), $('class-options'), {
    onChoose: (it) => {
      if (!state.image) { showError(new Error('Choose an image first.'), 'Explain'); return; }
      selectTarget({ type: 'class', index: it.value, label: it.label });
    },
  });
  let tries = 0;
  for (;;) {
    try {
      state.model = await api.getModel();
      break;
    } catch (e) {
      if (e.code === 'not_ready' && tries++ < 60) { await new Promise((r) => setTimeout(r, 1000)); continue; }
      $('model-info').textContent = 'The model is not available.';
      showError(e, 'Could not load the model');
      return;
    }
  }
  renderModel();
  combo.setItems(state.model.labels.map((label, i) => ({ value: i, label, hint: `#${i}` })));
  renderAll();
  const [ex] = await Promise.all([api.getExamples().catch(() => null), refreshConcepts()]);
  state.examples = ex;
  renderExamples();
  buildPicker();
  renderBuilder();
  // a first visit shows a real result at once: the first example scene
  const first = ex?.scenes?.[0];
  if (first && !state.image && !state.pending) await loadExample(first);
  document.body.dataset.ready = 'true';
}

start();
