#!/usr/bin/env node
// soak.js - mixed-load soak and overload driver for cdam-server (Node >= 20, built-in modules only).
//
//   node bench/soak.js [--duration S] [--requests N] [--build DIR] [--model FILE] [--concurrency N] ...
//   (bench/soak.sh is the command; `node bench/soak.js --help` lists every option)
//
//   const { runSoak } = require('./soak.js');     // or: import soak from '../../bench/soak.js'
//   const r = await runSoak({ build: 'build', model: 'tests/data/models/tiny.safetensors', requests: 2500 });
//   r.ok, r.failures, r.report (the printed summary), r.summary (figures)
//
// What it does: starts BUILD/cdam-server on 127.0.0.1 (--port 0, the "listening on" line
// of stderr gives the port) with a fresh temporary --data-dir; measures the answer of every
// good request template once, sequentially (the engine is deterministic); then `concurrency`
// lanes run a weighted random mix until the duration or request count is reached:
//   good POST /explain (JSON and multipart, several methods, classes, sizes, PNG output, a
//   stored concept, async jobs polled to the end; a pool of images bigger than the forward
//   cache, so hits, misses and evictions), bad images (random bytes, truncated PNG/JPEG,
//   huge-dimension headers), other bad requests, bodies over --max-body-mb (Content-Length,
//   chunked, multipart, a huge declared length), slow clients that trickle headers and body,
//   clients that disconnect mid-upload, while queued and mid-response, stalled connections
//   the server must close, concept writes/reads/lists/deletes, GET /metrics and /healthz.
// At fixed points the lanes pause for an overload phase: 10x more simultaneous clients than
// --queue + workers send heavy good requests for a few seconds (the 503s must be quick, with
// Retry-After; /metrics queue depth never above the capacity); then the time from the end of
// the burst until a good request gets 200 again, and the latency of a light request before
// and after the burst.
// Every answer is checked: the status expected for its kind; good answers equal to the
// reference byte for byte (JSON without timing_ms and cache; PNG bytes). RSS (VmRSS) is
// sampled every second: growth = (mean of the last 10% of the run - mean just after the
// warm-up, 20-30% of the run) / the warm-up value. At the end: every concept that should
// exist is listed and readable, deleted ones are gone; SIGTERM must give exit 0 (under ASan
// a leak makes it non-zero); a restart on the same --data-dir must show the same concepts.
// Memory of the driver stays bounded: counters and log-bucket histograms, no per-request lists.
'use strict';

const http = require('node:http');
const net = require('node:net');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { spawn } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sleepUnref = (ms) => new Promise((r) => setTimeout(r, ms).unref());   // for races: keeps nothing alive
const now = () => performance.now();

/* ---- small utilities ------------------------------------------------------------------ */

function prng(seed) {  // mulberry32
  let a = seed >>> 0;
  const f = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  f.int = (n) => Math.floor(f() * n);
  f.pick = (arr) => arr[Math.floor(f() * arr.length)];
  f.between = (lo, hi) => lo + f() * (hi - lo);
  return f;
}

// Log-bucket histogram of milliseconds (5% buckets from 0.05 ms to ~30 min): bounded memory.
class Hist {
  constructor() { this.b = new Uint32Array(360); this.n = 0; this.sum = 0; this.max = 0; this.min = Infinity; }
  add(ms) {
    const i = Math.max(0, Math.min(this.b.length - 1, Math.ceil(Math.log(Math.max(ms, 0.05) / 0.05) / Math.log(1.05))));
    this.b[i]++; this.n++; this.sum += ms;
    if (ms > this.max) this.max = ms;
    if (ms < this.min) this.min = ms;
  }
  q(p) {  // upper edge of the bucket holding the p-quantile
    if (!this.n) return NaN;
    const want = Math.max(1, Math.ceil(p * this.n));
    let c = 0;
    for (let i = 0; i < this.b.length; i++) {
      c += this.b[i];
      if (c >= want) return Math.min(this.max, 0.05 * 1.05 ** i);
    }
    return this.max;
  }
}

// null when got equals want up to 1e-4 (|want| + rms) per number (rms over the enclosing
// array of numbers, |want| for a lone number) and exactly otherwise; else where it differs.
function numDiff(got, want, where = '') {
  if (typeof want === 'number') {
    if (typeof got !== 'number') return `${where}: ${JSON.stringify(got)} for ${want}`;
    return Math.abs(got - want) <= 1e-4 * 2 * Math.abs(want) ? null : `${where}: ${got} for ${want}`;
  }
  if (Array.isArray(want)) {
    if (!Array.isArray(got) || got.length !== want.length) return `${where}: length ${got?.length} for ${want.length}`;
    if (want.length && want.every((x) => typeof x === 'number')) {
      const rms = Math.sqrt(want.reduce((a, x) => a + x * x, 0) / want.length);
      for (let i = 0; i < want.length; i++) {
        if (typeof got[i] !== 'number' || !(Math.abs(got[i] - want[i]) <= 1e-4 * (Math.abs(want[i]) + rms))) return `${where}[${i}]: ${got[i]} for ${want[i]}`;
      }
      return null;
    }
    for (let i = 0; i < want.length; i++) { const d = numDiff(got[i], want[i], `${where}[${i}]`); if (d) return d; }
    return null;
  }
  if (want && typeof want === 'object') {
    if (!got || typeof got !== 'object') return `${where}: not an object`;
    const kw = Object.keys(want), kg = Object.keys(got);
    if (kw.join() !== kg.join()) return `${where}: members ${kg.join(',')} for ${kw.join(',')}`;
    for (const k of kw) { const d = numDiff(got[k], want[k], `${where}.${k}`); if (d) return d; }
    return null;
  }
  return got === want ? null : `${where}: ${JSON.stringify(got)} for ${JSON.stringify(want)}`;
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s.length ? s[(s.length - 1) >> 1] : NaN; };
const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

/* ---- PNG writer (unique images for cache misses; huge-dimension headers) ---------------- */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function pngFile(w, h, idat) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr),
    pngChunk('IDAT', idat), pngChunk('IEND', Buffer.alloc(0))]);
}
function makePng(w, h, seed) {  // RGB noise blobs, deterministic in seed
  const rnd = prng(seed * 7919 + 17);
  const rows = [];
  const cx = rnd() * w, cy = rnd() * h, r0 = 4 + rnd() * w / 2, col = [rnd() * 255, rnd() * 255, rnd() * 255];
  for (let y = 0; y < h; y++) {
    const r = Buffer.alloc(1 + 3 * w);
    for (let x = 0; x < w; x++) {
      const inside = (x - cx) ** 2 + (y - cy) ** 2 < r0 * r0;
      for (let c = 0; c < 3; c++) r[1 + 3 * x + c] = inside ? col[c] : rnd.int(64);
    }
    rows.push(r);
  }
  return pngFile(w, h, zlib.deflateSync(Buffer.concat(rows)));
}

/* ---- HTTP ----------------------------------------------------------------------------- */

// One request with node:http. Resolves { status, headers (lower-case object), body, ms }.
function httpOnce(port, method, p, { headers = {}, body = null, agent, localAddress, timeoutMs = 60000, chunked = false } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const h = { host: `127.0.0.1:${port}`, ...headers };
    if (body && !chunked) h['content-length'] = body.length;
    if (chunked) h['transfer-encoding'] = 'chunked';
    let done = false;
    let timer;
    const finish = (err, val) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(val);
    };
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: h, agent, localAddress }, (res) => {
      const chunks = [];
      let n = 0;
      res.on('data', (d) => { chunks.push(d); n += d.length; });
      res.on('end', () => finish(null, { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks, n), ms: now() - t0 }));
      res.on('error', (e) => finish(e));
      res.on('aborted', () => finish(new Error('response aborted')));
    });
    timer = setTimeout(() => { const e = new Error(`no answer within ${timeoutMs} ms`); e.code = 'TIMEOUT'; req.destroy(e); finish(e); }, timeoutMs);
    req.on('error', (e) => { e.reused = req.reusedSocket; finish(e); });
    if (body && chunked) {
      for (let i = 0; i < body.length; i += 65536) req.write(body.subarray(i, i + 65536));
      req.end();
    } else {
      req.end(body || undefined);
    }
  });
}

// A keep-alive socket the server closed just before reuse: retried once (the documented race).
async function httpCall(port, method, p, opts = {}, stats = null) {
  try {
    return await httpOnce(port, method, p, opts);
  } catch (e) {
    if (e.reused && ['ECONNRESET', 'EPIPE'].includes(e.code) || (e.reused && /socket hang up/.test(e.message))) {
      if (stats) stats.keepaliveRetries++;
      return httpOnce(port, method, p, opts);
    }
    throw e;
  }
}

function decodeChunked(buf) {
  const parts = [];
  let i = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', i);
    if (eol < 0) break;
    const n = parseInt(buf.subarray(i, eol).toString('latin1').split(';')[0], 16);
    if (!Number.isFinite(n) || n === 0) break;
    parts.push(buf.subarray(eol + 2, eol + 2 + n));
    i = eol + 2 + n + 2;
  }
  return Buffer.concat(parts);
}

function parseRaw(all) {
  const he = all.indexOf('\r\n\r\n');
  if (he < 0) return null;
  const head = all.subarray(0, he).toString('latin1');
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return null;
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = all.subarray(he + 4);
  if ((headers['transfer-encoding'] || '').toLowerCase().includes('chunked')) body = decodeChunked(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status: Number(m[1]), headers, body };
}

/**
 * A request over a raw TCP socket, written in pieces [{ data, delay }] (delay in ms before
 * the piece). abort: { afterPiece: i, delay } destroys the socket after piece i was written,
 * 'firstData' after the first response bytes, 'head' once the response head is complete (or
 * after 100 Continue: { waitContinue: true } sends the pieces after the head only then).
 * Resolves { status, headers, body, aborted, bytes, closedByServer, ms, error }.
 */
function rawExchange(port, pieces, { abort = null, timeoutMs = 60000, localAddress, onlyHeadFirst = false } = {}) {
  return new Promise((resolve) => {
    const t0 = now();
    const chunks = [];
    let bytes = 0, aborted = false, closedByServer = false, error = null, settled = false;
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    const timer = setTimeout(() => { error = `no answer within ${timeoutMs} ms`; aborted = true; sock.destroy(); }, timeoutMs);
    const kill = () => { if (!sock.destroyed) { aborted = true; sock.destroy(); } };
    sock.on('error', (e) => { if (!aborted) error = error || e.code || e.message; });
    sock.on('end', () => { closedByServer = true; });
    sock.on('data', (d) => {
      chunks.push(d);
      bytes += d.length;
      if (abort === 'firstData') kill();
      if (onlyHeadFirst && !settled) {
        const all = Buffer.concat(chunks);
        const he = all.indexOf('\r\n\r\n');
        if (he >= 0) {
          settled = true;
          if (/^HTTP\/1\.[01] 100/.test(all.toString('latin1', 0, 16))) {
            chunks.length = 0;
            chunks.push(all.subarray(he + 4));
            writeRest(1);
          }
        }
      }
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const r = parseRaw(Buffer.concat(chunks)) || { status: 0, headers: {}, body: Buffer.alloc(0) };
      resolve({ ...r, aborted, bytes, closedByServer, ms: now() - t0, error });
    });
    const writeRest = async (from) => {
      for (let i = from; i < pieces.length; i++) {
        if (pieces[i].delay) await sleep(pieces[i].delay);
        if (sock.destroyed) return;
        sock.write(pieces[i].data);
        if (abort && typeof abort === 'object' && abort.afterPiece === i) {
          if (abort.delay) await sleep(abort.delay);
          kill();
          return;
        }
      }
    };
    sock.on('connect', () => {
      sock.setNoDelay(true);
      if (onlyHeadFirst) {
        sock.write(pieces[0].data);
        if (abort && typeof abort === 'object' && abort.afterPiece === 0) setTimeout(kill, abort.delay || 0);
      } else {
        writeRest(0);
      }
    });
  });
}

/* ---- the server ------------------------------------------------------------------------ */

const REQUEST_LINE = /^\d{4}-\d\d-\d\dT\S+ [A-Z]+ \S+ \d{3} \d+ [\d.]+ms/;
const BAD_LINE = /Sanitizer|runtime error|SUMMARY|Assertion|abort|panic|double free|corrupt|leak/i;

class Server {
  constructor(bin, args, { logFile } = {}) {
    this.bin = bin;
    this.args = args;
    this.logFile = logFile;
    this.tail = [];          // last lines of stderr
    this.notable = [];       // lines other than request logs (bounded)
    this.bad = [];           // sanitizer / crash lines (bounded)
    this.notableCount = 0;
    this.exited = null;
  }

  async start() {
    const log = this.logFile ? fs.createWriteStream(this.logFile, { flags: 'a' }) : null;
    this.log = log;
    this.proc = spawn(this.bin, this.args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    this.pid = this.proc.pid;
    this.t0 = now();
    this.exitPromise = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => { this.exited = { code, signal, at: now() }; resolve(this.exited); });
    });
    let buf = '';
    let portResolve;
    const portP = new Promise((r) => { portResolve = r; });
    this.proc.stderr.on('data', (d) => {
      if (log) log.write(d);
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.tail.push(line);
        if (this.tail.length > 200) this.tail.shift();
        const m = /cdam-server: listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
        if (m) portResolve(Number(m[1]));
        if (!REQUEST_LINE.test(line)) {
          this.notableCount++;
          if (this.notable.length < 200) this.notable.push(line);
          if (BAD_LINE.test(line) && this.bad.length < 200) this.bad.push(line);
        }
      }
    });
    const port = await Promise.race([portP, this.exitPromise.then(() => 0), sleepUnref(30000).then(() => -1)]);
    if (port <= 0) {
      this.kill();
      throw new Error(`cdam-server did not start (${port === 0 ? `exited ${JSON.stringify(this.exited)}` : 'no "listening on" line in 30 s'}): ${this.bin} ${this.args.join(' ')}\n${this.tail.join('\n')}`);
    }
    this.port = port;
    const deadline = now() + 30000;
    for (;;) {
      try {
        const r = await httpOnce(port, 'GET', '/healthz', { agent: false, timeoutMs: 2000 });
        if (r.status === 200) break;
      } catch { /* not yet */ }
      if (this.exited || now() > deadline) throw new Error(`cdam-server /healthz not 200 within 30 s\n${this.tail.join('\n')}`);
      await sleep(50);
    }
    return this;
  }

  rssKb() {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${this.pid}/status`, 'latin1'));
      return m ? Number(m[1]) : NaN;
    } catch { return NaN; }
  }

  async stop(timeoutMs) {
    if (this.exited) return { ...this.exited, early: true };
    const t0 = now();
    this.proc.kill('SIGTERM');
    const r = await Promise.race([this.exitPromise, sleepUnref(timeoutMs).then(() => null)]);
    if (!r) {
      this.kill();
      await this.exitPromise;
      return { code: null, signal: 'SIGKILL', ms: now() - t0, hung: true };
    }
    if (this.log) await new Promise((res) => this.log.end(res));
    return { ...r, ms: now() - t0 };
  }

  kill() { try { this.proc.kill('SIGKILL'); } catch { /* gone */ } }
}

/* ---- the soak ------------------------------------------------------------------------- */

const DEFAULT_WEIGHTS = {
  explain_json: 30, explain_form: 14, explain_async: 2, slow_client: 3,
  bad_image: 8, bad_request: 5, oversized: 3,
  disconnect_upload: 3, disconnect_queued: 2, disconnect_response: 2, stall: 0.3,
  concept_write: 4, concept_delete: 3, concept_read: 3, metrics: 2, healthz: 2,
};

const GOOD_TEST_IMAGES = ['rgb8.png', 'baseline.jpg', 'lossy.webp', 'rgb24.bmp', 'grey8.png', 'palette_trns.png',
  'progressive.jpg', 'anim2.gif', 'exif6.jpg', 'rgba8.png', 'rgb16.png', 'lossless.webp'];

function defaultImages() {
  const out = [];
  const ex = path.join(ROOT, 'static', 'examples');
  if (fs.existsSync(ex)) for (const f of fs.readdirSync(ex).sort()) if (/^scene-.*\.png$/.test(f)) out.push(path.join(ex, f));
  for (const f of GOOD_TEST_IMAGES) {
    const p = path.join(ROOT, 'tests', 'data', 'images', f);
    if (fs.existsSync(p)) out.push(p);
  }
  return out;
}

function conceptImages() {  // single items for concepts, when the demo examples are there
  const dir = path.join(ROOT, 'static', 'examples', 'items');
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.png')).sort().map((f) => path.join(dir, f));
}

/**
 * Runs the soak. Options (all optional):
 *  build ('build'), bin (BUILD/cdam-server), model (models/fashion-vit.safetensors or the tiny
 *  test model), durationS (600), requests (stop after this many requests too; 0 = none),
 *  concurrency (4), queue (8; raised to 2 x concurrency + 1), workers (server default),
 *  maxBodyMb (2), cacheMb (8), uniqueImages (24), seed (1), overloadPhases (2),
 *  overloadSeconds (4), overloadFactor (10), heavyMs (60: the burst request's cost), quick503Ms
 *  (the p99 a 503 must stay under: 1000, 5000 for an ASan build), slowMs (2000),
 *  rssCheck (true unless the binary is built with ASan), rssLimitPct (5), restart (true),
 *  serverArgs ([]), serverLog (file), keepTmp (false), weights, checkResponse(method, path,
 *  status, headers, body) -> [problems] (the API tests' openapi check), log (progress lines;
 *  default console.error), progressS (10).
 * Resolves { ok, failures, failureCount, summary, report }.
 */
async function runSoak(o = {}) {
  const opt = {
    build: 'build', durationS: 600, requests: 0, concurrency: 4, queue: 8, workers: 0, maxBodyMb: 2, cacheMb: 8,
    uniqueImages: 24, seed: 1, overloadPhases: 2, overloadSeconds: 4, overloadFactor: 10, heavyMs: 60,
    slowMs: 2000, rssLimitPct: 5, restart: true, serverArgs: [], keepTmp: false, progressS: 10, drainMs: 10000,
    ...o,
  };
  const log = opt.log || ((s) => console.error(s));
  const build = path.resolve(ROOT, opt.build);
  const bin = opt.bin ? path.resolve(opt.bin) : path.join(build, 'cdam-server');
  if (!fs.existsSync(bin)) throw new Error(`${bin} does not exist (build it: make ${path.relative(ROOT, bin)})`);
  let model = opt.model ? path.resolve(ROOT, opt.model) : path.join(ROOT, 'models', 'fashion-vit.safetensors');
  if (!opt.model && !fs.existsSync(model)) model = path.join(ROOT, 'tests', 'data', 'models', 'tiny.safetensors');
  const asan = fs.readFileSync(bin).includes('__asan_init');
  const rssCheck = opt.rssCheck ?? !asan;
  const quick503Ms = opt.quick503Ms ?? (asan ? 5000 : 1000);
  const C = Math.max(1, opt.concurrency | 0);
  const queue = Math.max(opt.queue | 0, 2 * C + 1);
  const weights = { ...DEFAULT_WEIGHTS, ...(opt.weights || {}) };
  const rnd = prng(opt.seed);

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cdam-soak-'));
  const dataDir = path.join(tmp, 'data');
  const staticDir = path.join(tmp, 'static');
  fs.mkdirSync(staticDir);
  fs.writeFileSync(path.join(staticDir, 'index.html'), '<!doctype html><title>soak</title>\n');
  const serverArgs = ['--model', model, '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, '--static', staticDir,
    '--queue', String(queue), '--max-body-mb', String(opt.maxBodyMb), '--cache-mb', String(opt.cacheMb),
    '--job-ttl-s', '30', '--drain-ms', String(opt.drainMs),
    ...(opt.workers ? ['--workers', String(opt.workers)] : []), ...opt.serverArgs];

  // ---- bookkeeping (all bounded) ----
  const counts = new Map();                 // "kind status" -> n
  const failures = [];
  let failureCount = 0;
  const fail = (msg) => {
    failureCount++;
    if (failures.length < 60) failures.push(msg);
  };
  const count = (kind, status) => { const k = `${kind}\t${status}`; counts.set(k, (counts.get(k) || 0) + 1); };
  const goodHist = new Hist();
  const stats = { keepaliveRetries: 0, total: 0, burst: 0, good: 0, goodChecked: 0, goodNear: 0, nearExamples: [], cacheHits: 0, cacheMisses: 0, queueMax: 0,
    stallsClosed: 0, stallCloseMaxMs: 0, conceptsWritten: 0, conceptsDeleted: 0, jobs: 0 };
  const rss = [];                            // [seconds since load start, kB], one a second
  let runStart = 0;
  const check = (method, p, r, what) => {
    if (!opt.checkResponse) return;
    const probs = opt.checkResponse(method, p, r.status, r.headers, r.body);
    if (probs && probs.length) fail(`${what}: ${method} ${p} ${r.status} does not match openapi.yaml: ${probs.join('; ')}`);
  };

  let srv = new Server(bin, serverArgs, { logFile: opt.serverLog });
  const summary = { model: path.relative(ROOT, model), bin: path.relative(ROOT, bin), asan, concurrency: C, queue, seed: opt.seed };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 * C + 8, keepAliveMsecs: 1000 });
  let stalls = 0;
  const stallPromises = new Set();
  let serverDied = false;

  try {
    await srv.start();
    const port = () => srv.port;
    srv.exitPromise.then((e) => { if (!srv.stopping) { serverDied = true; fail(`the server exited during the soak: ${JSON.stringify(e)}; last stderr:\n${srv.tail.slice(-30).join('\n')}`); } });
    const modelInfo = JSON.parse((await httpOnce(port(), 'GET', '/model', { agent: false })).body);
    const metricsText = (await httpOnce(port(), 'GET', '/metrics', { agent: false })).body.toString();
    const workers = Number(/^cdam_workers (\d+)/m.exec(metricsText)?.[1] || 1);
    summary.workers = workers;
    summary.serverArgs = serverArgs.slice(2).filter((a) => a !== model).join(' ').replace(tmp, '$TMP').replace(tmp, '$TMP');
    const P = modelInfo.patch_size, nat = modelInfo.native_size[0], maxS = modelInfo.max_size[0];
    const NC = modelInfo.num_classes, labels = modelInfo.labels, D = modelInfo.embed_dim, H = modelInfo.heads;
    log(`soak: ${path.relative(ROOT, bin)} pid ${srv.pid} port ${srv.port}; model ${modelInfo.name} (${nat}x${nat}, ${NC} classes)` +
      `; ${workers} worker(s), queue ${queue}, concurrency ${C}${asan ? ', ASan build' : ''}`);

    // ---- images and request templates ----
    const pool = (opt.images || defaultImages()).map((f) => ({ name: path.basename(f), bytes: fs.readFileSync(f) }));
    for (let i = 0; i < opt.uniqueImages; i++) pool.push({ name: `gen${i}.png`, bytes: makePng(40 + (i % 5) * 8, 40 + (i % 3) * 8, i + 1) });
    const b64 = new Map(pool.map((im) => [im.name, im.bytes.toString('base64')]));
    const scenes = pool.slice(0, Math.min(6, pool.length));
    const cls = (k) => ((k % NC) + NC) % NC;
    const templates = [];
    const addT = (img, fields, weight, tag = '') => templates.push({ img, fields, weight, tag, id: templates.length });
    pool.forEach((im) => addT(im, {}, 3));
    scenes.forEach((im, k) => {
      addT(im, { methods: ['cdam', 'am'], classes: [cls(k), cls(k + 3)] }, 1);
      addT(im, { methods: ['integrated_cdam'], classes: [cls(k + 1)], samples: 8 }, 1);
      addT(im, { methods: ['smooth_cdam'], samples: 8, seed: k, sigma: 0.2 }, 1);
      addT(im, { methods: ['rp'], classes: [cls(k + 2)] }, 1);
      addT(im, { methods: ['am'], head: k % H, threshold: 0.5 }, 0.5);
      addT(im, { classes: [labels[cls(k + 4)]], top_k: 3 }, 1);
      if (2 * nat <= maxS) addT(im, { size: [2 * nat, 2 * nat] }, 0.7);
      if (2 * nat <= maxS) addT(im, { size: [nat, 2 * nat], methods: ['cdam', 'integrated_cdam'], samples: 4 }, 0.5);
      addT(im, { concept_embedding: Array.from({ length: D }, (_, i) => Math.round(Math.sin(i + k) * 1000) / 1000) }, 0.5);
      addT(im, { format: 'png', methods: ['cdam', 'am'] }, 0.7, 'png');
      addT(im, { format: 'png', classes: [cls(k), cls(k + 1)] }, 0.5, 'png');
    });
    const bigSize = Math.min(maxS, 4 * nat) - (Math.min(maxS, 4 * nat) % P);
    const bigT = templates.length;
    addT(scenes[0], { size: [bigSize, bigSize], classes: Array.from({ length: Math.min(NC, 10) }, (_, i) => i) }, 0.15, 'big');
    const heavy = { img: scenes[1 % scenes.length], fields: { methods: ['smooth_cdam', 'integrated_cdam'], samples: 16, classes: [0, cls(1), cls(2), cls(3)] }, weight: 0, tag: 'heavy', id: templates.length };
    templates.push(heavy);
    const probe = templates[0];

    // concept templates: image sets; one permanent reference concept each
    const items = conceptImages();
    const cimg = items.length >= 6 ? items.map((f) => ({ name: path.basename(f), bytes: fs.readFileSync(f) })) : pool;
    for (const im of cimg) if (!b64.has(im.name)) b64.set(im.name, im.bytes.toString('base64'));
    const conceptSets = [[cimg[0], cimg[1]], [cimg[2 % cimg.length]], [cimg[3 % cimg.length], cimg[4 % cimg.length], cimg[5 % cimg.length]]];

    // encodings
    const formField = (k, v, t) => {
      if (Array.isArray(v) && k === 'size') return [[k, [`${v[0]},${v[1]}`, `${v[0]}x${v[1]}`, JSON.stringify(v)][t % 3]]];
      if (k === 'concept_embedding') return [[k, JSON.stringify(v)]];
      if (Array.isArray(v)) return t % 2 ? v.map((x) => [k, String(x)]) : [[k, v.join(',')]];
      return [[k, String(v)]];
    };
    const multipart = (fields, images, boundary) => {
      const parts = [];
      for (const [k, v] of fields) parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
      for (const [k, name, bytes] of images) {
        parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`));
        parts.push(bytes, Buffer.from('\r\n'));
      }
      parts.push(Buffer.from(`--${boundary}--\r\n`));
      return Buffer.concat(parts);
    };
    const encode = (t, extra = {}) => {
      const fields = { ...t.fields, ...extra };
      const json = Buffer.from(JSON.stringify({ image: b64.get(t.img.name), ...fields }));
      const boundary = `soakBoundary${t.id}x${(t.id * 2654435761 >>> 0).toString(36)}`;
      const ff = Object.entries(fields).flatMap(([k, v]) => formField(k, v, t.id));
      const form = multipart(ff, [['image', t.img.name, t.img.bytes]], boundary);
      return { json, form, formType: `multipart/form-data; boundary=${boundary}` };
    };

    // ---- references: every template once, sequentially ----
    const stableText = (buf) => {
      const j = JSON.parse(buf.toString('utf8'));
      delete j.timing_ms;
      delete j.cache;
      return JSON.stringify(j);
    };
    const refConcepts = [];     // { id, name, set, embedding (JSON text) }
    const conceptBody = (setIdx, name, asForm) => {
      const set = conceptSets[setIdx];
      if (!asForm) return { body: Buffer.from(JSON.stringify({ name, images: set.map((im) => b64.get(im.name)) })), type: 'application/json' };
      const boundary = `soakConcept${setIdx}`;
      return { body: multipart([['name', name]], set.map((im) => ['image', im.name, im.bytes]), boundary), type: `multipart/form-data; boundary=${boundary}` };
    };
    for (let k = 0; k < conceptSets.length; k++) {
      const { body, type } = conceptBody(k, `soak-ref-${k}`, false);
      const r = await httpOnce(port(), 'POST', '/concepts', { body, headers: { 'content-type': type }, agent: false });
      if (r.status !== 201) throw new Error(`reference concept ${k}: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
      const j = JSON.parse(r.body);
      refConcepts.push({ id: j.id, name: j.name, set: k, embedding: JSON.stringify(j.embedding) });
    }
    refConcepts.forEach((c, k) => addT(scenes[k % scenes.length], { concept: c.id, methods: ['cdam', 'integrated_cdam'], samples: 4 }, 0.7));
    // templates are complete: encode them
    for (const t of templates) Object.assign(t, encode(t));
    const t0ref = now();
    const ctJsonRef = { 'content-type': 'application/json' };
    for (const t of templates) {
      const ts = now();
      const r = await httpOnce(port(), 'POST', '/explain', { body: t.json, headers: { 'content-type': 'application/json' }, agent: false });
      t.refMs = now() - ts;
      if (r.status !== 200) throw new Error(`reference answer of template ${t.id} (${t.img.name} ${JSON.stringify(t.fields).slice(0, 200)}): HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
      t.ref = t.tag === 'png' ? r.body : stableText(r.body);
      t.refType = r.headers['content-type'];
    }
    // the burst's request: Smooth + Integrated CDAM with as many samples as make it take
    // about heavyMs (60) on this machine and build; its reference and time measured warm
    {
      const timeOf = async () => {
        let best = Infinity, r;
        for (let i = 0; i < 2; i++) {
          const ts = now();
          r = await httpOnce(port(), 'POST', '/explain', { body: heavy.json, headers: ctJsonRef, agent: false });
          best = Math.min(best, now() - ts);
        }
        if (r.status !== 200) throw new Error(`the heavy request: HTTP ${r.status} ${r.body.toString().slice(0, 300)}`);
        return [best, r];
      };
      const [t16] = await timeOf();
      heavy.fields.samples = Math.max(2, Math.min(256, Math.round((16 * opt.heavyMs) / t16)));
      Object.assign(heavy, encode(heavy));
      const [t, r] = await timeOf();
      heavy.refMs = t;
      heavy.ref = stableText(r.body);
    }
    summary.templates = templates.length;
    summary.ref_s = (now() - t0ref) / 1000;
    summary.heavy_ms = heavy.refMs;
    summary.heavy_samples = heavy.fields.samples;
    log(`soak: ${templates.length} request templates, references measured in ${fmt((now() - t0ref) / 1000)} s; ` +
      `heavy request (burst: ${heavy.fields.samples} samples) ${fmt(heavy.refMs)} ms, big response ${templates[bigT].ref.length} bytes`);

    // ---- checks of answers ----
    const goodTemplates = templates.filter((t) => t.weight > 0);
    const totalW = goodTemplates.reduce((a, t) => a + t.weight, 0);
    const pickTemplate = (filter) => {
      for (;;) {
        let x = rnd() * totalW;
        let t = goodTemplates[0];
        for (const c of goodTemplates) { x -= c.weight; if (x <= 0) { t = c; break; } }
        if (!filter || filter(t)) return t;
      }
    };
    const shapeProblem = (j) => {
      if (typeof j.model !== 'string' || !j.grid || !Array.isArray(j.predictions) || !Array.isArray(j.explanations) ||
          !j.timing_ms || !['hit', 'miss'].includes(j.cache) || !j.input || !j.image) return 'missing members';
      const cells = j.grid.rows * j.grid.cols;
      for (const e of j.explanations) {
        if (!Array.isArray(e.scores) || e.scores.length !== cells) return `scores of ${e.method}: ${e.scores?.length} values for a ${j.grid.rows}x${j.grid.cols} grid`;
        if (!e.scores.every(Number.isFinite)) return `non-finite score in ${e.method}`;
      }
      for (const p of j.predictions) if (!Number.isFinite(p.logit) || !(p.probability >= 0 && p.probability <= 1)) return 'bad prediction';
      for (const k of ['queue', 'decode', 'forward', 'explain', 'total']) if (!Number.isFinite(j.timing_ms[k])) return `timing_ms.${k}`;
      return null;
    };
    // Checks a good /explain answer against the template's reference; false on a failure.
    const checkGood = (t, r, what) => {
      if (r.status !== 200) {
        fail(`${what}: good request (template ${t.id}: ${t.img.name} ${JSON.stringify(t.fields).slice(0, 120)}) answered ${r.status}: ${r.body.toString().slice(0, 200)}`);
        return false;
      }
      if (t.tag === 'png') {
        if (!String(r.headers['content-type']).startsWith('image/png') || !r.body.equals(t.ref)) {
          fail(`${what}: PNG answer of template ${t.id} differs from its reference (${r.body.length} vs ${t.ref.length} bytes)`);
          return false;
        }
        stats.goodChecked++;
        return true;
      }
      let j;
      try { j = JSON.parse(r.body.toString('utf8')); } catch { fail(`${what}: template ${t.id}: the 200 body is not JSON`); return false; }
      const sp = shapeProblem(j);
      if (sp) { fail(`${what}: template ${t.id}: bad answer shape: ${sp}`); return false; }
      if (j.cache === 'hit') stats.cacheHits++; else stats.cacheMisses++;
      delete j.timing_ms;
      delete j.cache;
      const s = JSON.stringify(j);
      if (s !== t.ref) {
        // Not byte-equal. The engine is deterministic (the same request gives the same bits
        // whatever came before it; bench/README.md tells how a cached forward state once broke
        // that), so this fails too; numDiff says whether it is within 1e-4 (|want| + rms(want)).
        t.refObj = t.refObj || JSON.parse(t.ref);
        const d0 = numDiff(j, t.refObj);
        if (d0 === null) {
          stats.goodNear++;
          if (stats.nearExamples.length < 3) stats.nearExamples.push(`template ${t.id} (${t.img.name} ${JSON.stringify(t.fields).slice(0, 60)})`);
        }
        const d = d0 === null ? 'equal within 1e-4 but not byte for byte (nondeterministic answer)' : d0;
        let at = 0;
        while (at < s.length && s[at] === t.ref[at]) at++;
        fail(`${what}: template ${t.id} (${t.img.name} ${JSON.stringify(t.fields).slice(0, 100)}): answer differs from the reference at char ${at}: ` +
          `${d}; got ...${s.slice(Math.max(0, at - 40), at + 60)}... want ...${t.ref.slice(Math.max(0, at - 40), at + 60)}...`);
        return false;
      }
      stats.goodChecked++;
      return true;
    };
    const expectError = (kind, r, status, codes, what) => {
      count(kind, r.status);
      const cs = Array.isArray(codes) ? codes : [codes];
      let code = null;
      try { code = JSON.parse(r.body.toString('utf8')).error.code; } catch { /* */ }
      if (r.status !== status || (cs[0] && !cs.includes(code))) {
        fail(`${kind} (${what}): expected ${status} ${cs.join('|')}, got ${r.status} ${code || r.body.toString().slice(0, 160)}`);
        return false;
      }
      return true;
    };
    const netFail = (kind, e, what) => { count(kind, 'neterr'); fail(`${kind} (${what}): no answer: ${e.code || ''} ${e.message}`); };

    // ---- lanes and operations ----
    const ctJson = { 'content-type': 'application/json' };
    const explainPost = (t, asForm, extra = {}) => httpCall(port(), 'POST', '/explain',
      { agent, body: asForm ? t.form : t.json, headers: { 'content-type': asForm ? t.formType : 'application/json', ...extra } }, stats);

    const alive = new Map();      // concept id -> { set, name }, settled (201 received, no delete under way)
    for (const c of refConcepts) alive.set(c.id, { set: c.set, name: c.name, permanent: true });
    const deleted = [];           // recent deletions { id, at } (ring of 200)
    let conceptSeq = 0;

    const ops = {
      async explain_json(lane, forceGood) {
        const t = pickTemplate();
        const r = await explainPost(t, false);
        count(forceGood ? 'explain_json(after abandon)' : 'explain_json', r.status);
        check('POST', '/explain', r, 'explain_json');
        if (checkGood(t, r, 'explain_json')) { stats.good++; goodHist.add(r.ms); }
      },
      async explain_form() {
        const t = pickTemplate();
        const r = await explainPost(t, true);
        count('explain_form', r.status);
        check('POST', '/explain', r, 'explain_form');
        if (checkGood(t, r, 'explain_form')) { stats.good++; goodHist.add(r.ms); }
      },
      async explain_async() {
        const t = pickTemplate((x) => x.tag !== 'png' && x.tag !== 'big');
        const body = Buffer.from(JSON.stringify({ image: b64.get(t.img.name), ...t.fields, async: true }));
        const r = await httpCall(port(), 'POST', '/explain', { agent, body, headers: ctJson }, stats);
        count('explain_async', r.status);
        check('POST', '/explain', r, 'explain_async');
        if (r.status !== 202) { fail(`explain_async: expected 202, got ${r.status} ${r.body.toString().slice(0, 200)}`); return; }
        const id = JSON.parse(r.body).id;
        if (r.headers.location !== `/jobs/${id}`) fail(`explain_async: Location ${r.headers.location} for job ${id}`);
        stats.jobs++;
        const until = now() + 60000;
        for (;;) {
          const g = await httpCall(port(), 'GET', `/jobs/${id}`, { agent }, stats);
          if (g.status !== 200) { count('job_poll', g.status); fail(`job ${id}: GET answered ${g.status}`); return; }
          const j = JSON.parse(g.body);
          if (j.state === 'done') {
            count('job_poll', 'done');
            check('GET', `/jobs/${id}`, g, 'job_poll');
            const res = { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(j.result)) };
            if (checkGood(t, res, `job ${id}`)) stats.good++;
            return;
          }
          if (!['queued', 'running'].includes(j.state)) { count('job_poll', j.state); fail(`job ${id}: state ${j.state} ${JSON.stringify(j.error || {})}`); return; }
          if (now() > until) { fail(`job ${id}: not done within 60 s (state ${j.state})`); return; }
          await sleep(15);
        }
      },
      async slow_client() {
        // the whole request trickled: headers in pieces of 1-16 bytes, then the body in pieces
        const t = pickTemplate((x) => x.tag !== 'big');
        const asForm = rnd() < 0.4;
        const body = asForm ? t.form : t.json;
        const head = Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\nConnection: close\r\n` +
          `Content-Type: ${asForm ? t.formType : 'application/json'}\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1');
        const pieces = [];
        const total = opt.slowMs * rnd.between(0.5, 1.5);
        for (let i = 0; i < head.length;) { const n = 1 + rnd.int(16); pieces.push({ data: head.subarray(i, i + n) }); i += n; }
        const nh = pieces.length;
        const nb = 4 + rnd.int(12);
        for (let k = 0; k < nb; k++) {
          const a = Math.floor((k * body.length) / nb), b = Math.floor(((k + 1) * body.length) / nb);
          if (b > a) pieces.push({ data: body.subarray(a, b) });
        }
        const gap = total / pieces.length;
        pieces.forEach((p, i) => { p.delay = i === 0 ? 0 : gap * rnd.between(0.3, 1.7) * (i < nh ? 0.6 : 1.4); });
        const r = await rawExchange(port(), pieces, { timeoutMs: 60000 + total });
        count('slow_client', r.status || r.error || 'noanswer');
        if (!r.status) { fail(`slow_client: no answer (${r.error || 'closed'}, ${r.bytes} bytes)`); return; }
        check('POST', '/explain', r, 'slow_client');
        if (checkGood(t, r, 'slow_client')) stats.good++;
      },
      async bad_image() {
        const v = rnd.int(6);
        let bytes, status = 400, code = 'bad_image', what;
        if (v === 0) {  // random bytes (never an image magic: first byte 0)
          bytes = Buffer.alloc(16 + rnd.int(4000));
          for (let i = 0; i < bytes.length; i++) bytes[i] = rnd.int(256);
          bytes[0] = 0;
          what = `${bytes.length} random bytes`;
        } else if (v === 1 || v === 2) {  // a PNG or JPEG cut short
          const src = v === 1 ? rnd.pick(pool.filter((x) => x.name.endsWith('.png')).slice(0, 3)) : pool.find((x) => x.name === 'baseline.jpg' || x.name === 'progressive.jpg') || pool[0];
          const cut = 10 + rnd.int(Math.max(1, src.bytes.length - 23));
          bytes = src.bytes.subarray(0, cut);
          what = `${src.name} cut at ${cut}/${src.bytes.length}`;
        } else if (v === 3) {  // huge dimensions in the header
          const w = 50000 + rnd.int(50000), h = 50000 + rnd.int(50000);
          bytes = pngFile(w, h, zlib.deflateSync(Buffer.alloc(64)));
          status = 413; code = 'image_too_large'; what = `PNG header ${w}x${h}`;
        } else if (v === 4) {  // the test images of API.md
          const f = rnd.pick(['truncated.png', 'truncated.jpg', 'not_an_image.txt', 'huge.png', 'huge.jpg', 'huge.webp']);
          const p = path.join(ROOT, 'tests', 'data', 'images', f);
          bytes = fs.existsSync(p) ? fs.readFileSync(p) : Buffer.from('not an image at all');
          if (f.startsWith('huge')) { status = 413; code = 'image_too_large'; }
          what = f;
        } else {  // text
          bytes = Buffer.from('GIF8? no. just text pretending to be an image\n');
          what = 'text';
        }
        const asForm = rnd() < 0.4;
        let body, type;
        if (asForm) {
          type = 'multipart/form-data; boundary=soakBad';
          body = multipart([['methods', 'cdam']], [['image', 'bad.bin', bytes]], 'soakBad');
        } else {
          type = 'application/json';
          body = Buffer.from(JSON.stringify({ image: bytes.toString('base64') }));
        }
        const r = await httpCall(port(), 'POST', '/explain', { agent, body, headers: { 'content-type': type } }, stats);
        check('POST', '/explain', r, 'bad_image');
        expectError('bad_image', r, status, code, `${what}${asForm ? ', multipart' : ''}`);
      },
      async bad_request() {
        const img = b64.get(scenes[0].name);
        const cases = [
          ['POST', '/explain', { image: img, classes: [NC] }, 400, 'unknown_class'],
          ['POST', '/explain', { image: img, classes: ['no-such-label-xyz'] }, 400, 'unknown_class'],
          ['POST', '/explain', { image: img, methods: ['gradcam'] }, 400, 'unknown_method'],
          ['POST', '/explain', '{"image": ', 400, 'bad_json'],
          ['POST', '/explain', {}, 400, 'missing_image'],
          ['POST', '/explain', { image: '!!not base64!!' }, 400, 'bad_base64'],
          ['POST', '/explain', { image: img, size: [P * 3 + 1, P * 3] }, 400, 'bad_size'],
          ['POST', '/explain', { image: img, concept: 'f'.repeat(32) }, 400, 'unknown_concept'],
          ['POST', '/explain', { image: img, concept_embedding: [1, 2, 3] }, 400, 'bad_embedding'],
          ['POST', '/explain', { image: img, top_k: 0 }, 400, 'bad_request'],
          ['POST', '/concepts', { name: '', images: [img] }, 400, 'bad_request'],
          ['GET', `/concepts/${'0'.repeat(32)}`, null, 404, 'not_found'],
          ['DELETE', `/concepts/${'1'.repeat(32)}`, null, 404, 'not_found'],
          ['GET', `/jobs/${'2'.repeat(32)}`, null, 404, 'not_found'],
          ['GET', '/explain', null, 405, 'method_not_allowed'],
          ['POST', '/explain', 'text/plain body', 415, 'unsupported_media_type'],
        ];
        const [m, p, b, status, code] = rnd.pick(cases);
        const headers = b === 'text/plain body' ? { 'content-type': 'text/plain' } : b !== null ? ctJson : {};
        const body = b === null ? null : Buffer.from(typeof b === 'string' ? b : JSON.stringify(b));
        const r = await httpCall(port(), m, p, { agent, body, headers }, stats);
        check(m, p, r, 'bad_request');
        expectError('bad_request', r, status, code, `${m} ${p} ${code}`);
      },
      async oversized() {
        const lim = opt.maxBodyMb << 20;
        const v = rnd.int(4);
        const pad = 'x'.repeat(lim + (1 << 19) + rnd.int(1 << 19));
        if (v === 0 || v === 1) {  // JSON over the limit, with Content-Length or chunked, sent whole
          const body = Buffer.from(JSON.stringify({ image: b64.get(scenes[0].name), padding: pad }));
          let r;
          try {
            r = await httpOnce(port(), 'POST', '/explain', { agent: false, body, chunked: v === 1, headers: { 'content-type': 'application/json', connection: 'close' } });
          } catch (e) { netFail('oversized', e, v ? 'chunked' : 'Content-Length'); return; }
          check('POST', '/explain', r, 'oversized');
          expectError('oversized', r, 413, 'body_too_large', `${body.length} bytes, ${v ? 'chunked' : 'Content-Length'}`);
        } else if (v === 2) {  // multipart with a huge image part
          const body = multipart([['methods', 'cdam']], [['image', 'big.png', Buffer.alloc(pad.length, 7)]], 'soakBig');
          let r;
          try {
            r = await httpOnce(port(), 'POST', '/explain', { agent: false, body, headers: { 'content-type': 'multipart/form-data; boundary=soakBig', connection: 'close' } });
          } catch (e) { netFail('oversized', e, 'multipart'); return; }
          check('POST', '/explain', r, 'oversized');
          expectError('oversized', r, 413, 'body_too_large', `multipart ${body.length} bytes`);
        } else {  // a declared length far over the limit: answered before the body
          const n = 200 * 1024 * 1024 + rnd.int(1 << 20);
          const head = Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\nConnection: close\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${n}\r\n\r\n{"image": "`, 'latin1');
          const r = await rawExchange(port(), [{ data: head }], { timeoutMs: 30000 });
          if (!r.status) { count('oversized', r.error || 'noanswer'); fail(`oversized (declared ${n} bytes): no answer (${r.error || 'closed'})`); return; }
          check('POST', '/explain', r, 'oversized');
          expectError('oversized', r, 413, 'body_too_large', `declared ${n} bytes`);
        }
      },
      async disconnect_upload() {
        const t = pickTemplate((x) => x.tag !== 'big');
        const asForm = rnd() < 0.5;
        const body = asForm ? t.form : t.json;
        const head = Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\n` +
          `Content-Type: ${asForm ? t.formType : 'application/json'}\r\nContent-Length: ${body.length}\r\n\r\n`, 'latin1');
        const v = rnd.int(3);
        const cut = 1 + rnd.int(Math.max(1, body.length - 2));
        const pieces = v === 0 ? [{ data: head.subarray(0, 10 + rnd.int(head.length - 12)) }]       // inside the headers
          : [{ data: head }, { data: body.subarray(0, cut), delay: v === 2 ? 20 + rnd.int(80) : 0 }];
        const r = await rawExchange(port(), pieces, { abort: { afterPiece: pieces.length - 1, delay: rnd.int(30) }, timeoutMs: 20000 });
        count('disconnect_upload', r.status ? `answered ${r.status}` : 'closed');
        if (r.status) fail(`disconnect_upload: an answer (${r.status}) to an incomplete request`);
      },
      async disconnect_queued(lane) {
        // the whole request, then gone before the answer: the task runs for nobody
        const t = pickTemplate((x) => x.tag !== 'big');
        const req = Buffer.concat([Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${t.json.length}\r\n\r\n`, 'latin1'), t.json]);
        const r = await rawExchange(port(), [{ data: req }], { abort: { afterPiece: 0, delay: rnd.int(5) }, timeoutMs: 20000 });
        count('disconnect_queued', r.status ? `answered ${r.status}` : 'gone');
        if (r.status && r.status !== 200) fail(`disconnect_queued: answered ${r.status} before the disconnect`);
        lane.mustBeGood = true;   // the next request of this lane waits behind the orphan (queue bound)
      },
      async disconnect_response() {
        const t = templates[bigT];
        const req = Buffer.concat([Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${t.json.length}\r\n\r\n`, 'latin1'), t.json]);
        const r = await rawExchange(port(), [{ data: req }], { abort: 'firstData', timeoutMs: 60000 });
        count('disconnect_response', r.bytes > 0 ? 'cut' : r.error || 'noanswer');
        if (!r.bytes) fail(`disconnect_response: no response bytes (${r.error || 'closed'})`);
        else if (r.bytes >= t.ref.length) stats.fullBeforeCut = (stats.fullBeforeCut || 0) + 1;
      },
      async stall() {
        // a connection that stops sending: the server must close it (its idle timeout is 60 s)
        if (stalls >= 2 || deadlineLeft() < 80000) return ops.healthz();
        stalls++;
        const v = rnd.int(2);
        const head = v === 0 ? Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\nContent-Ty`, 'latin1')
          : Buffer.from(`POST /explain HTTP/1.1\r\nHost: 127.0.0.1:${port()}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"image": "iVBOR`, 'latin1');
        const p = rawExchange(port(), [{ data: head }], { timeoutMs: 80000 }).then((r) => {
          stalls--;
          stallPromises.delete(p);
          count('stall', r.error && /no answer/.test(r.error) ? 'not closed in 80 s' : r.status ? `closed after ${r.status}` : 'closed');
          if (r.error && /no answer/.test(r.error)) fail(`stall (${v ? 'body' : 'headers'}): the server kept a stalled connection open for 80 s`);
          else { stats.stallsClosed++; stats.stallCloseMaxMs = Math.max(stats.stallCloseMaxMs, r.ms); }
        });
        stallPromises.add(p);
      },
      async concept_write() {
        if (alive.size > 60) return ops.concept_delete();
        const set = rnd.int(conceptSets.length);
        const name = `soak-${++conceptSeq}-set${set}`;
        const asForm = rnd() < 0.4;
        const { body, type } = conceptBody(set, name, asForm);
        const r = await httpCall(port(), 'POST', '/concepts', { agent, body, headers: { 'content-type': type } }, stats);
        count('concept_write', r.status);
        check('POST', '/concepts', r, 'concept_write');
        if (r.status !== 201) { fail(`concept_write ${name}: expected 201, got ${r.status} ${r.body.toString().slice(0, 200)}`); return; }
        const j = JSON.parse(r.body);
        if (j.name !== name || !/^[0-9a-f]{32}$/.test(j.id) || j.images !== conceptSets[set].length) fail(`concept_write ${name}: answer ${r.body.toString().slice(0, 200)}`);
        if (JSON.stringify(j.embedding) !== refConcepts[set].embedding) fail(`concept_write ${name}: embedding differs from the reference of image set ${set}`);
        alive.set(j.id, { set, name });
        stats.conceptsWritten++;
      },
      async concept_delete() {
        const ids = [...alive.keys()].filter((id) => !alive.get(id).permanent);
        if (ids.length === 0) return ops.concept_write();
        const id = rnd.pick(ids);
        const c = alive.get(id);
        alive.delete(id);     // no other lane reads or deletes it from now on
        const r = await httpCall(port(), 'DELETE', `/concepts/${id}`, { agent }, stats);
        count('concept_delete', r.status);
        check('DELETE', `/concepts/${id}`, r, 'concept_delete');
        if (r.status !== 204) { fail(`concept_delete ${id} (${c.name}): expected 204, got ${r.status}`); alive.set(id, c); return; }
        deleted.push({ id, at: now() });
        if (deleted.length > 200) deleted.shift();
        stats.conceptsDeleted++;
      },
      async concept_read() {
        if (rnd() < 0.3) {
          const before = new Set(alive.keys());
          const t0 = now();
          const r = await httpCall(port(), 'GET', '/concepts', { agent }, stats);
          count('concept_list', r.status);
          check('GET', '/concepts', r, 'concept_list');
          if (r.status !== 200) { fail(`GET /concepts: ${r.status}`); return; }
          const listed = new Set(JSON.parse(r.body).concepts.map((c) => c.id));
          for (const id of before) if (alive.has(id) && !listed.has(id)) fail(`GET /concepts: ${id} (${alive.get(id).name}) is missing`);
          for (const d of deleted) if (d.at < t0 && listed.has(d.id)) fail(`GET /concepts: deleted ${d.id} is still listed`);
          return;
        }
        const ids = [...alive.keys()];
        const id = rnd.pick(ids);
        const r = await httpCall(port(), 'GET', `/concepts/${id}`, { agent }, stats);
        count('concept_get', r.status);
        const c = alive.get(id);
        if (!c) return;       // deleted meanwhile by another lane: either answer is right
        check('GET', `/concepts/${id}`, r, 'concept_get');
        if (r.status !== 200) { fail(`GET /concepts/${id} (${c.name}): ${r.status}`); return; }
        const j = JSON.parse(r.body);
        if (j.name !== c.name || JSON.stringify(j.embedding) !== refConcepts[c.set].embedding) fail(`GET /concepts/${id}: name or embedding differs`);
      },
      async metrics() {
        const r = await httpCall(port(), 'GET', '/metrics', { agent }, stats);
        count('metrics', r.status);
        check('GET', '/metrics', r, 'metrics');
        if (r.status !== 200) { fail(`GET /metrics: ${r.status}`); return; }
        const q = Number(/^cdam_queue_depth (\d+)/m.exec(r.body.toString())?.[1]);
        if (q > stats.queueMax) stats.queueMax = q;
        if (q > queue) fail(`/metrics: queue depth ${q} over the capacity ${queue}`);
      },
      async healthz() {
        const r = await httpCall(port(), 'GET', '/healthz', { agent }, stats);
        count('healthz', r.status);
        check('GET', '/healthz', r, 'healthz');
        if (r.status !== 200 || !r.body.toString().includes('"ok"')) fail(`GET /healthz: ${r.status} ${r.body.toString().slice(0, 100)}`);
      },
    };
    const opNames = Object.keys(weights).filter((k) => weights[k] > 0 && ops[k]);
    const opW = opNames.map((k) => weights[k]);
    const opTotal = opW.reduce((a, b) => a + b, 0);
    const pickOp = () => {
      let x = rnd() * opTotal;
      for (let i = 0; i < opNames.length; i++) { x -= opW[i]; if (x <= 0) return opNames[i]; }
      return opNames[0];
    };

    // ---- run control ----
    runStart = now();
    const durMs = opt.durationS * 1000;
    const deadlineLeft = () => durMs - (now() - runStart);
    const progress = () => Math.max((now() - runStart) / durMs, opt.requests ? stats.total / opt.requests : 0);
    const finished = () => serverDied || progress() >= 1;
    let gate = null, gateOpen = null, waiting = 0, activeLanes = 0;
    const lanes = [];
    const laneLoop = async (lane) => {
      activeLanes++;
      while (!finished()) {
        if (gate) { waiting++; await gate; waiting--; continue; }
        const name = lane.mustBeGood ? 'explain_json' : pickOp();
        const force = lane.mustBeGood;
        lane.mustBeGood = false;
        stats.total++;
        try {
          await ops[name](lane, force);
        } catch (e) {
          netFail(name, e, 'request failed');
        }
      }
      activeLanes--;
    };

    // RSS sampler (1 s) and progress
    let lastProgress = now();
    const sampler = setInterval(() => {
      const kb = srv.rssKb();
      if (Number.isFinite(kb)) rss.push([(now() - runStart) / 1000, kb]);
      if (now() - lastProgress >= opt.progressS * 1000) {
        lastProgress = now();
        const el = (now() - runStart) / 1000;
        log(`soak: ${fmt(el, 0)} s, ${stats.total + stats.burst} requests (${fmt((stats.total + stats.burst) / el)}/s), good p50 ${fmt(goodHist.q(0.5))} ms, ` +
          `RSS ${fmt(kb / 1024)} MB, concepts ${alive.size}, failures ${failureCount}`);
      }
    }, 1000);

    // ---- an overload phase ----
    const phases = [];
    const overload = async (k) => {
      // 1. pause the lanes (each finishes its current request)
      gate = new Promise((r) => { gateOpen = r; });
      const tw = now();
      while (waiting < activeLanes && now() - tw < 90000 && !serverDied) await sleep(10);
      const ph = { phase: k + 1, at_s: (now() - runStart) / 1000 };
      const N = Math.min(400, opt.overloadFactor * (queue + workers));
      ph.clients = N;
      ph.burst_s = opt.overloadSeconds;
      // 2. the light request's latency before the burst
      const probeOnce = async () => {
        const r = await httpOnce(port(), 'POST', '/explain', { agent: false, body: probe.json, headers: ctJson });
        count('probe', r.status);
        return r;
      };
      const pre = [];
      for (let i = 0; i < 7; i++) { const r = await probeOnce(); if (checkGood(probe, r, 'probe before the burst')) pre.push(r.ms); }
      ph.pre_ms = median(pre);
      // 3. the burst: N clients at once, on 4 source addresses (the server allows 128 connections per IP)
      const agents = [2, 3, 4, 5].map(() => new http.Agent({ keepAlive: true, maxSockets: Infinity }));
      const h503 = new Hist(), h200 = new Hist();
      let n200 = 0, n503 = 0, nOther = 0, badRetry = 0;
      const burstMs = opt.overloadSeconds * 1000;
      const tb = now();
      let stop = false;
      let qMax = 0, qSamples = 0, metricsMaxMs = 0;
      const qPoll = (async () => {
        while (!stop) {
          try {
            const r = await httpOnce(port(), 'GET', '/metrics', { agent: false, timeoutMs: 10000 });
            metricsMaxMs = Math.max(metricsMaxMs, r.ms);
            const q = Number(/^cdam_queue_depth (\d+)/m.exec(r.body.toString())?.[1]);
            qSamples++;
            if (q > qMax) qMax = q;
          } catch (e) { fail(`overload ${k + 1}: GET /metrics failed during the burst: ${e.message}`); }
          await sleep(25);
        }
      })();
      const client = async (i) => {
        const a = agents[i % 4];
        const localAddress = `127.0.0.${2 + (i % 4)}`;
        while (now() - tb < burstMs && !serverDied) {
          let r;
          try {
            r = await httpOnce(port(), 'POST', '/explain', { agent: a, localAddress, body: heavy.json, headers: ctJson });
          } catch (e) {
            count('burst', e.code || 'neterr');
            fail(`overload ${k + 1}: a burst client got no answer: ${e.code || ''} ${e.message}`);
            await sleep(100);
            continue;
          }
          stats.burst++;
          count('burst', r.status);
          if (r.status === 503) {
            n503++;
            h503.add(r.ms);
            const ra = r.headers['retry-after'];
            let code = null;
            try { code = JSON.parse(r.body).error.code; } catch { /* */ }
            if (!/^\d+$/.test(ra || '') || code !== 'queue_full') { badRetry++; if (badRetry <= 3) fail(`overload ${k + 1}: 503 with Retry-After ${ra} and code ${code}`); }
            check('POST', '/explain', r, 'burst');
            await sleep(Number(ra || 1) * 1000 * rnd.between(0.1, 0.5));    // a client that retries early
          } else if (r.status === 200) {
            n200++;
            h200.add(r.ms);
            checkGood(heavy, r, `overload ${k + 1} burst`);
          } else {
            nOther++;
            fail(`overload ${k + 1}: burst answer ${r.status} ${r.body.toString().slice(0, 160)}`);
          }
        }
      };
      const clients = Array.from({ length: N }, (_, i) => client(i));
      await sleep(burstMs);
      // 4. recovery: from the end of the burst (clients stop sending), a good request every 10 ms until one gets 200
      const tEnd = now();
      let recovered = NaN, tries = 0;
      while (now() - tEnd < 60000 && !serverDied) {
        tries++;
        const r = await httpOnce(port(), 'POST', '/explain', { agent: false, body: probe.json, headers: ctJson });
        count('recovery', r.status);
        if (r.status === 200) { checkGood(probe, r, 'recovery probe'); recovered = now() - tEnd; break; }
        if (r.status !== 503) { fail(`overload ${k + 1}: recovery probe answered ${r.status}`); break; }
        await sleep(10);
      }
      await Promise.all(clients);
      const tDrained = now() - tEnd;
      stop = true;
      await qPoll;
      agents.forEach((a) => a.destroy());
      // 5. the light request's latency after the burst; queue back to 0
      const post = [];
      for (let i = 0; i < 7; i++) { const r = await probeOnce(); if (checkGood(probe, r, 'probe after the burst')) post.push(r.ms); }
      const m = (await httpOnce(port(), 'GET', '/metrics', { agent: false })).body.toString();
      const qAfter = Number(/^cdam_queue_depth (\d+)/m.exec(m)?.[1]);
      Object.assign(ph, {
        requests: n200 + n503 + nOther, ok200: n200, r503: n503, other: nOther, bad_retry_after: badRetry,
        p50_503_ms: h503.q(0.5), p99_503_ms: h503.q(0.99), max_503_ms: h503.max, p50_200_ms: h200.q(0.5),
        queue_max: qMax, queue_samples: qSamples, metrics_max_ms: metricsMaxMs, recovery_ms: recovered, recovery_tries: tries,
        drained_ms: tDrained, post_ms: median(post), queue_after: qAfter,
      });
      stats.queueMax = Math.max(stats.queueMax, qMax);
      const recLimit = 2000 + 2 * (queue + workers) * heavy.refMs / workers;
      if (n503 === 0) fail(`overload ${k + 1}: ${N} clients for ${queue} queue slots + ${workers} worker(s) never got a 503 (no overload reached)`);
      if (n503 && h503.q(0.99) > quick503Ms) fail(`overload ${k + 1}: 503s are slow: p99 ${fmt(h503.q(0.99))} ms > ${quick503Ms} ms`);
      if (qMax > queue) fail(`overload ${k + 1}: queue depth ${qMax} over the capacity ${queue}`);
      if (!(recovered <= recLimit)) fail(`overload ${k + 1}: no 200 within ${fmt(recLimit, 0)} ms of the end of the burst (recovery ${fmt(recovered, 0)} ms)`);
      if (!(ph.post_ms <= 2 * ph.pre_ms + 50)) fail(`overload ${k + 1}: latency after the burst ${fmt(ph.post_ms)} ms vs ${fmt(ph.pre_ms)} ms before`);
      if (qAfter !== 0) fail(`overload ${k + 1}: queue depth ${qAfter} after the burst (want 0)`);
      phases.push(ph);
      log(`soak: overload ${k + 1}: ${N} clients x ${opt.overloadSeconds} s: ${n200} x 200, ${n503} x 503 (p50 ${fmt(h503.q(0.5))} ms, ` +
        `p99 ${fmt(h503.q(0.99))} ms), queue max ${qMax}/${queue}, recovery ${fmt(recovered, 0)} ms, ` +
        `light request ${fmt(ph.pre_ms)} ms before / ${fmt(ph.post_ms)} ms after`);
      // 6. the lanes go on
      const g = gateOpen;
      gate = null;
      g();
    };

    for (let i = 0; i < C; i++) { const lane = { i, mustBeGood: false }; lanes.push(laneLoop(lane)); }
    const phaseAt = Array.from({ length: opt.overloadPhases }, (_, k) => (opt.overloadPhases === 1 ? 0.5 : 0.35 + (0.3 * k) / (opt.overloadPhases - 1)));
    let nextPhase = 0;
    while (!finished()) {
      if (nextPhase < phaseAt.length && progress() >= phaseAt[nextPhase]) await overload(nextPhase++);
      else await sleep(50);
    }
    await Promise.all(lanes);
    while (nextPhase < phaseAt.length && !serverDied) await overload(nextPhase++);   // a run too short for its phases
    const runMs = now() - runStart;
    clearInterval(sampler);
    if (stallPromises.size) log(`soak: waiting for ${stallPromises.size} stalled connection(s) to be closed by the server`);
    await Promise.all([...stallPromises]);
    agent.destroy();

    // ---- RSS ----
    const T = runMs / 1000;
    const meanIn = (a, b) => { const xs = rss.filter(([t]) => t >= a && t <= b).map(([, v]) => v); return xs.length ? xs.reduce((x, y) => x + y, 0) / xs.length : NaN; };
    const rssStart = rss.length ? rss[0][1] : NaN;
    const rssWarm = meanIn(0.2 * T, Math.max(0.3 * T, 0.2 * T + 2));
    const rssEnd = meanIn(0.9 * T, T + 1);
    const rssMax = rss.reduce((m, [, v]) => Math.max(m, v), 0);
    const growth = (100 * (rssEnd - rssWarm)) / rssWarm;
    const every = Math.max(1, Math.ceil(rss.length / 60));
    summary.rss_series_mb = rss.filter((_, i) => i % every === 0).map(([t, v]) => [Math.round(t), Math.round(v / 102.4) / 10]);
    Object.assign(summary, { run_s: T, rss_start_mb: rssStart / 1024, rss_warm_mb: rssWarm / 1024, rss_end_mb: rssEnd / 1024, rss_max_mb: rssMax / 1024, rss_growth_pct: growth, rss_samples: rss.length });
    if (rssCheck && !(growth < opt.rssLimitPct)) fail(`RSS grew ${fmt(growth, 2)}% after the warm-up (${fmt(rssWarm / 1024)} -> ${fmt(rssEnd / 1024)} MB; limit ${opt.rssLimitPct}%)`);

    // ---- final checks: concepts, metrics, SIGTERM, restart ----
    const tFinal = now();
    const finalMetrics = (await httpOnce(port(), 'GET', '/metrics', { agent: false })).body.toString();
    const mget = (re) => Number(re.exec(finalMetrics)?.[1]);
    Object.assign(summary, { cache_hits: mget(/^cdam_cache_hits_total (\d+)/m), cache_misses: mget(/^cdam_cache_misses_total (\d+)/m),
      cache_evictions: mget(/^cdam_cache_evictions_total (\d+)/m) });
    const checkConcepts = async (where) => {
      const r = await httpOnce(port(), 'GET', '/concepts', { agent: false });
      if (r.status !== 200) { fail(`${where}: GET /concepts ${r.status}`); return; }
      const listed = new Set(JSON.parse(r.body).concepts.map((c) => c.id));
      let ok = 0;
      for (const [id, c] of alive) {
        if (!listed.has(id)) fail(`${where}: concept ${id} (${c.name}) is not listed`);
        const g = await httpOnce(port(), 'GET', `/concepts/${id}`, { agent: false });
        if (g.status !== 200) { fail(`${where}: GET /concepts/${id} (${c.name}): ${g.status}`); continue; }
        const j = JSON.parse(g.body);
        if (j.name !== c.name || JSON.stringify(j.embedding) !== refConcepts[c.set].embedding) fail(`${where}: concept ${id} (${c.name}) reads back different`);
        else ok++;
      }
      for (const id of listed) if (!alive.has(id)) fail(`${where}: concept ${id} is listed but was deleted or never written`);
      for (const d of deleted) {
        const g = await httpOnce(port(), 'GET', `/concepts/${d.id}`, { agent: false });
        if (g.status !== 404) fail(`${where}: deleted concept ${d.id}: GET answered ${g.status}`);
      }
      const ex = await httpOnce(port(), 'POST', '/explain', { agent: false, body: templates.find((t) => t.fields.concept === refConcepts[0].id).json, headers: ctJson });
      checkGood(templates.find((t) => t.fields.concept === refConcepts[0].id), ex, `${where}: explain with a stored concept`);
      return ok;
    };
    summary.concepts_alive = alive.size;
    summary.concepts_readable = await checkConcepts('after the soak');
    summary.deleted_checked = deleted.length;
    srv.stopping = true;
    const st = await srv.stop(opt.drainMs + 15000);
    summary.sigterm = st;
    if (st.code !== 0 || st.signal) fail(`SIGTERM: the server exited with code ${st.code} signal ${st.signal}${st.hung ? ' (did not exit; killed)' : ''}; last stderr:\n${srv.tail.slice(-40).join('\n')}`);
    if (srv.bad.length) fail(`server stderr has ${srv.bad.length} sanitizer/crash line(s):\n${srv.bad.slice(0, 20).join('\n')}`);
    summary.server_notable_lines = srv.notableCount;
    if (opt.restart && !serverDied) {
      srv = new Server(bin, serverArgs, { logFile: opt.serverLog });
      await srv.start();
      srv.exitPromise.then((e) => { if (!srv.stopping) fail(`the restarted server exited: ${JSON.stringify(e)}`); });
      summary.concepts_after_restart = await checkConcepts('after a restart');
      srv.stopping = true;
      const st2 = await srv.stop(opt.drainMs + 15000);
      summary.sigterm_restart = st2;
      if (st2.code !== 0 || st2.signal) fail(`SIGTERM after the restart: exit code ${st2.code} signal ${st2.signal}; last stderr:\n${srv.tail.slice(-40).join('\n')}`);
      if (srv.bad.length) fail(`restarted server stderr has sanitizer/crash lines:\n${srv.bad.slice(0, 20).join('\n')}`);
    }

    summary.final_s = (now() - tFinal) / 1000;
    Object.assign(summary, {
      requests: stats.total + stats.burst, mixed_requests: stats.total, burst_requests: stats.burst, good: stats.good, good_checked: stats.goodChecked, good_not_bytewise: stats.goodNear, not_bytewise_examples: stats.nearExamples, good_p50_ms: goodHist.q(0.5), good_p99_ms: goodHist.q(0.99),
      good_max_ms: goodHist.max, answers_cache_hit: stats.cacheHits, answers_cache_miss: stats.cacheMisses, queue_max: stats.queueMax,
      jobs: stats.jobs, concepts_written: stats.conceptsWritten, concepts_deleted: stats.conceptsDeleted, stalls_closed: stats.stallsClosed,
      stall_close_max_ms: stats.stallCloseMaxMs, cut_with_whole_answer: stats.fullBeforeCut || 0, keepalive_retries: stats.keepaliveRetries, overload: phases,
      by_kind: Object.fromEntries([...counts].map(([k, v]) => [k, v])),
    });
  } catch (e) {
    fail(`soak aborted: ${e.stack || e.message}\nlast server stderr:\n${srv.tail.slice(-30).join('\n')}`);
  } finally {
    agent.destroy();
    srv.kill();
    if (!opt.keepTmp) fs.rmSync(tmp, { recursive: true, force: true });
  }

  summary.failures = failureCount;
  summary.rss_checked = rssCheck;
  const ok = failureCount === 0;
  summary.ok = ok;
  const report = formatReport(summary, counts, failures, failureCount, ok);
  return { ok, failures, failureCount, summary, report };
}

function formatReport(s, counts, failures, failureCount, ok) {
  const L = [];
  L.push(`== cdam soak: ${s.bin}, model ${s.model}${s.asan ? ' (ASan)' : ''}`);
  L.push(`server: ${s.serverArgs || ''}`);
  L.push(`references: ${s.templates} request templates measured in ${fmt(s.ref_s)} s; final checks and restart ${fmt(s.final_s)} s`);
  L.push(`run: ${fmt(s.run_s)} s, ${s.requests} requests (${fmt(s.requests / s.run_s)}/s): ${s.mixed_requests} of the mix ` +
    `(${s.concurrency} lanes, seed ${s.seed}) + ${s.burst_requests} in overload bursts`);
  const kinds = new Map();
  for (const [k, v] of counts) {
    const [kind, status] = k.split('\t');
    if (!kinds.has(kind)) kinds.set(kind, []);
    kinds.get(kind).push(`${status}: ${v}`);
  }
  L.push('requests by kind and status:');
  for (const [kind, sts] of [...kinds].sort()) L.push(`  ${kind.padEnd(28)} ${sts.sort().join(', ')}`);
  L.push(`good answers equal to the reference byte for byte: ${s.good_checked} (and ${s.good_not_bytewise} only within 1e-4, ` +
    `counted as failures${s.good_not_bytewise ? `, e.g. ${(s.not_bytewise_examples || []).join('; ')}` : ''}; ` +
    `cache hit ${s.answers_cache_hit}, miss ${s.answers_cache_miss}); ` +
    `latency p50 ${fmt(s.good_p50_ms)} ms, p99 ${fmt(s.good_p99_ms)} ms, max ${fmt(s.good_max_ms)} ms`);
  L.push(`server cache: ${s.cache_hits} hits, ${s.cache_misses} misses, ${s.cache_evictions} evictions; jobs ${s.jobs}; ` +
    `concepts written ${s.concepts_written}, deleted ${s.concepts_deleted}, alive at the end ${s.concepts_alive} ` +
    `(readable ${s.concepts_readable}, after restart ${s.concepts_after_restart ?? '-'})`);
  L.push(`stalled connections closed by the server: ${s.stalls_closed} (slowest ${fmt((s.stall_close_max_ms || 0) / 1000)} s); ` +
    `disconnects mid-response that had the whole answer already: ${s.cut_with_whole_answer}; keep-alive retries ${s.keepalive_retries}`);
  L.push(`RSS: start ${fmt(s.rss_start_mb)} MB, after warm-up ${fmt(s.rss_warm_mb)} MB, end ${fmt(s.rss_end_mb)} MB, max ${fmt(s.rss_max_mb)} MB; ` +
    `growth ${fmt(s.rss_growth_pct, 2)}%${s.rss_checked ? '' : ' (not checked)'}`);
  for (const p of s.overload || []) {
    L.push(`overload ${p.phase} (at ${fmt(p.at_s, 0)} s): ${p.clients} clients for ${s.queue} queue slots + ${s.workers} worker(s), ` +
      `each sending Smooth + Integrated CDAM (${s.heavy_samples} samples, ${fmt(s.heavy_ms)} ms alone) for ${p.burst_s} s: ` +
      `${p.requests} requests, ${p.ok200} x 200, ${p.r503} x 503 (all with Retry-After: ${p.bad_retry_after === 0 ? 'yes' : 'NO'}), ` +
      `503 latency p50 ${fmt(p.p50_503_ms)} / p99 ${fmt(p.p99_503_ms)} / max ${fmt(p.max_503_ms)} ms; queue depth max ${p.queue_max}/${s.queue} ` +
      `(${p.queue_samples} samples); recovery ${fmt(p.recovery_ms, 0)} ms (${p.recovery_tries} tries), all answered ${fmt(p.drained_ms, 0)} ms after the end; ` +
      `light request ${fmt(p.pre_ms)} ms before, ${fmt(p.post_ms)} ms after`);
  }
  L.push(`queue depth max seen in /metrics: ${s.queue_max} (capacity ${s.queue})`);
  if (s.sigterm) L.push(`SIGTERM: exit ${s.sigterm.code}${s.sigterm.signal ? ` signal ${s.sigterm.signal}` : ''} after ${fmt(s.sigterm.ms, 0)} ms` +
    (s.sigterm_restart ? `; restart on the same data dir: exit ${s.sigterm_restart.code} after ${fmt(s.sigterm_restart.ms, 0)} ms` : ''));
  if (failureCount) {
    L.push(`FAILURES (${failureCount}${failureCount > failures.length ? `, first ${failures.length}` : ''}):`);
    for (const f of failures) L.push(`  - ${f}`);
  }
  L.push(`soak: ${ok ? 'PASS' : 'FAIL'}`);
  return L.join('\n');
}

module.exports = { runSoak, makePng, Hist };

/* ---- command line ---------------------------------------------------------------------- */

if (require.main === module) {
  const usage = `usage: node bench/soak.js [options]   (bench/soak.sh runs it)
  --duration S        run time in seconds (default 600)
  --requests N        stop after N requests too (default: no limit)
  --build DIR         build folder holding cdam-server (default build)
  --model FILE        model (default models/fashion-vit.safetensors)
  --concurrency N     load lanes (default 4)
  --queue N           the server's --queue (default 8; at least 2 x concurrency + 1)
  --workers N         the server's --workers (default: the server's)
  --max-body-mb N     the server's --max-body-mb (default 2)
  --cache-mb N        the server's --cache-mb (default 8: smaller than the image pool)
  --overload-phases N overload bursts (default 2), --overload-seconds S (default 4), --overload-factor F (default 10)
  --quick-503-ms MS   the p99 a 503 must stay under (default 1000; 5000 for an ASan build)
  --heavy-ms MS       about how long a burst request takes (default 60; sets its sample count)
  --slow-ms MS        how long a slow client takes to send its request (default 2000)
  --seed N            random seed (default 1)
  --rss-check on|off  check RSS growth < 5% (default on, off for an ASan build)
  --no-restart        skip the restart on the same data dir
  --server-log FILE   append the server's stderr to FILE
  --json FILE         write the figures as JSON
  --keep-tmp          keep the temporary data dir
  -- ARGS...          more server options`;
  const a = process.argv.slice(2);
  const o = {};
  let jsonOut = null;
  const num = (v, f) => { const x = Number(v); if (!Number.isFinite(x)) { console.error(`soak: ${f} needs a number`); process.exit(2); } return x; };
  for (let i = 0; i < a.length; i++) {
    const f = a[i];
    const v = () => { if (i + 1 >= a.length) { console.error(`soak: ${f} needs a value`); process.exit(2); } return a[++i]; };
    switch (f) {
      case '-h': case '--help': console.log(usage); process.exit(0); break;
      case '--duration': o.durationS = num(v(), f); break;
      case '--requests': o.requests = num(v(), f); break;
      case '--build': o.build = v(); break;
      case '--model': o.model = v(); break;
      case '--concurrency': o.concurrency = num(v(), f); break;
      case '--queue': o.queue = num(v(), f); break;
      case '--workers': o.workers = num(v(), f); break;
      case '--max-body-mb': o.maxBodyMb = num(v(), f); break;
      case '--cache-mb': o.cacheMb = num(v(), f); break;
      case '--overload-phases': o.overloadPhases = num(v(), f); break;
      case '--overload-seconds': o.overloadSeconds = num(v(), f); break;
      case '--overload-factor': o.overloadFactor = num(v(), f); break;
      case '--quick-503-ms': o.quick503Ms = num(v(), f); break;
      case '--heavy-ms': o.heavyMs = num(v(), f); break;
      case '--slow-ms': o.slowMs = num(v(), f); break;
      case '--seed': o.seed = num(v(), f); break;
      case '--rss-check': o.rssCheck = v() !== 'off'; break;
      case '--no-restart': o.restart = false; break;
      case '--server-log': o.serverLog = path.resolve(v()); break;
      case '--json': jsonOut = path.resolve(v()); break;
      case '--keep-tmp': o.keepTmp = true; break;
      case '--': o.serverArgs = a.slice(i + 1); i = a.length; break;
      default: console.error(`soak: unknown option ${f}\n${usage}`); process.exit(2);
    }
  }
  runSoak(o).then((r) => {
    console.log(r.report);
    if (jsonOut) fs.writeFileSync(jsonOut, `${JSON.stringify({ ...r.summary, failure_list: r.failures }, null, 1)}\n`);
    process.exit(r.ok ? 0 : 1);
  }, (e) => { console.error(`soak: ${e.stack || e.message}`); process.exit(2); });
}
