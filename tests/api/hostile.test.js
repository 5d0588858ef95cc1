// Slow or hostile HTTP clients: --timeout-s (idle connections, a slowloris trickling its
// headers, a body that stalls), --max-header-kb (431), hundreds of idle connections and
// --max-connections-per-ip, clients that never read their answer; and static files that
// are symlinks (only targets inside the folder are served). Throughout, good requests on
// other connections must be answered promptly: nothing of this reaches the workers.
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertError, b64, call, rawRequest, sleep } from './lib/client.js';
import { APP_JS, SECRET, SERVER_BIN, startServer } from './lib/server.js';

const IMG = b64('rgb8.png');
const TIMEOUT_S = 3;
// a good request while the server is being harassed: a few ms on an idle machine; the
// bound only says "not held up until the slow client is cut off" (CI machines are busy)
const PROMPT_MS = 2500;

/** A raw connection: { sock, closed (promise of { ms, data }) } with ms since connect. */
function open(srv, onConnect = () => {}) {
  const sock = net.connect(srv.port, '127.0.0.1');
  let t0 = Date.now();
  let data = '';
  sock.on('error', () => { /* reset by the server: the close event tells */ });
  sock.on('data', (d) => { data += d.toString('latin1'); });
  const connected = new Promise((resolve) => sock.on('connect', () => { t0 = Date.now(); onConnect(sock); resolve(); }));
  const closed = new Promise((resolve) => sock.on('close', () => resolve({ ms: Date.now() - t0, data })));
  return { sock, connected, closed };
}

/** A good /explain request, timed. fetch reuses kept-alive connections, and this suite's
 *  server closes them after TIMEOUT_S idle seconds: a request sent on one just as the server
 *  closes it fails with "other side closed" before any answer (the keep-alive race every
 *  HTTP/1.1 client meets). Then it is sent once more, on a new connection, as clients do. */
async function good(srv, what) {
  let t0 = Date.now();
  let r;
  try {
    r = await call(srv, 'POST', '/explain', { json: { image: IMG }, timeoutMs: 10000 });
  } catch (e) {
    if (e?.cause?.code !== 'UND_ERR_SOCKET') throw e;
    t0 = Date.now();
    r = await call(srv, 'POST', '/explain', { json: { image: IMG }, timeoutMs: 10000 });
  }
  const ms = Date.now() - t0;
  assert.equal(r.status, 200, `${what}: ${r.text.slice(0, 200)}`);
  assert.ok(ms < PROMPT_MS, `${what}: answered after ${ms} ms`);
  return ms;
}

const withTimeout = (p, ms, what) => Promise.race([p, sleep(ms).then(() => { throw new Error(`${what}: still open after ${ms} ms`); })]);

describe(`--timeout-s ${TIMEOUT_S}: slow clients are cut off, good ones are served meanwhile`, () => {
  let s;
  before(async () => {
    s = await startServer({ args: ['--timeout-s', String(TIMEOUT_S), '--workers', '1'] });
    await call(s, 'POST', '/explain', { json: { image: IMG } });   // warm-up
  });
  after(async () => { await s?.stop(); });

  it('--help lists the connection options with their variables', async () => {
    const { spawnSync } = await import('node:child_process');
    const h = spawnSync(SERVER_BIN, ['--help'], { encoding: 'utf8' });
    for (const [flag, env] of [['timeout-s', 'CDAM_TIMEOUT_S'], ['max-connections', 'CDAM_MAX_CONNECTIONS'],
      ['max-connections-per-ip', 'CDAM_MAX_CONNECTIONS_PER_IP'], ['max-header-kb', 'CDAM_MAX_HEADER_KB']]) {
      assert.match(h.stdout, new RegExp(`--${flag}\\s+${env}\\s`), `--help shows --${flag}`);
    }
  });

  it('a connection that sends nothing is closed after the timeout', async (t) => {
    const c = open(s);
    const r = await withTimeout(c.closed, (TIMEOUT_S + 3) * 1000, 'idle connection');
    t.diagnostic(`idle connection closed after ${r.ms} ms`);
    assert.ok(r.ms >= TIMEOUT_S * 1000 - 300, `closed too early (${r.ms} ms)`);
    assert.equal(r.data, '', 'no answer to nothing');
  });

  it('a slowloris (a header byte every 200 ms) is disconnected after the timeout; others are served meanwhile', async (t) => {
    let timer;
    const c = open(s, (sock) => {
      sock.write('GET /model HTTP/1.1\r\nHost: x\r\n');
      const line = 'X-Slow-Header: ' + 'z'.repeat(200) + '\r\n';
      let i = 0;
      timer = setInterval(() => { if (!sock.destroyed) sock.write(line[i++ % line.length]); }, 200);
    });
    await c.connected;
    const times = [];
    for (let i = 0; i < 5; i++) {
      times.push(await good(s, `good request ${i} during the slowloris`));
      await sleep(150);
    }
    const r = await withTimeout(c.closed, (TIMEOUT_S + 3) * 1000, 'slowloris');
    clearInterval(timer);
    t.diagnostic(`slowloris disconnected after ${r.ms} ms; good requests meanwhile: ${times.join(', ')} ms`);
    assert.ok(r.ms >= TIMEOUT_S * 1000 - 300 && r.ms <= (TIMEOUT_S + 2) * 1000, `disconnected after ${r.ms} ms`);
    assert.equal(r.data, '', 'the slowloris got no answer');
    for (let i = 0; i < 100 && !s.stderr().includes('no complete request headers'); i++) await sleep(10);
    assert.match(s.stderr(), new RegExp(`closed 1 connection\\(s\\): no complete request headers within ${TIMEOUT_S} s`));
  });

  it('headers with Content-Length, then a body that stalls: disconnected after the timeout', async (t) => {
    const c = open(s, (sock) => {
      sock.write(`POST /explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"image": "${IMG.slice(0, 500)}`);
    });
    await c.connected;
    const times = [];
    for (let i = 0; i < 3; i++) times.push(await good(s, `good request ${i} during the stalled body`));
    const r = await withTimeout(c.closed, (TIMEOUT_S + 3) * 1000, 'stalled body');
    t.diagnostic(`stalled body disconnected after ${r.ms} ms; good requests meanwhile: ${times.join(', ')} ms`);
    assert.ok(r.ms >= TIMEOUT_S * 1000 - 300 && r.ms <= (TIMEOUT_S + 2) * 1000, `disconnected after ${r.ms} ms`);
    await good(s, 'after');
  });

  it('a kept-alive connection that goes quiet after its answer is closed after the timeout', async (t) => {
    const c = open(s, (sock) => sock.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`));
    const r = await withTimeout(c.closed, (TIMEOUT_S + 3) * 1000, 'quiet keep-alive');
    t.diagnostic(`quiet keep-alive connection closed ${r.ms} ms after connecting`);
    assert.match(r.data, /^HTTP\/1\.1 200/, 'the request was answered first');
    assert.ok(r.ms >= TIMEOUT_S * 1000 - 300, `closed too early (${r.ms} ms)`);
  });

  it('clients that never read a large answer do not hold up the workers or other clients', async (t) => {
    const big = Buffer.alloc(48 << 20, 'b');
    writeFileSync(path.join(s.staticDir, 'big.txt'), big);
    const stuck = [];
    for (let i = 0; i < 4; i++) {
      const c = open(s, (sock) => {
        sock.pause();   // never read
        sock.write('GET /big.txt HTTP/1.1\r\nHost: x\r\n\r\n');
      });
      stuck.push(c);
    }
    // and a large /explain answer nobody reads (64 classes x 5 methods at 64x64)
    const body = JSON.stringify({ image: IMG, methods: ['cdam', 'smooth_cdam', 'integrated_cdam', 'rp'], samples: 2,
      classes: Array.from({ length: 64 }, (_, i) => i % 7) });
    stuck.push(open(s, (sock) => {
      sock.pause();
      sock.write(`POST /explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    }));
    await Promise.all(stuck.map((c) => c.connected));
    await sleep(300);
    const times = [];
    for (let i = 0; i < 8; i++) times.push(await good(s, `good request ${i} beside 5 clients that do not read`));
    const m = await call(s, 'GET', '/metrics');
    assert.match(m.text, /cdam_workers_busy 0/, 'no worker is held by an unread answer');
    t.diagnostic(`good requests beside 5 non-reading clients: ${times.join(', ')} ms`);
    for (const c of stuck) c.sock.destroy();
  });
});

describe('--max-header-kb: headers over the limit get 431 (a URL 414) and the server goes on', () => {
  // the status, or "reset" when the server answered and closed while the client was still
  // sending (libmicrohttpd does not drain what is left of over-large headers)
  const status = async (s, req) => {
    try {
      return (await rawRequest(s, req)).status;
    } catch {
      return 'reset';
    }
  };
  const get = (path, headers = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\n${headers}Connection: close\r\n\r\n`;

  it('default (32 KB): a 30 KB header is served; 80 KB, or 2000 headers adding up to 90 KB -> 431', async () => {
    const s = await startServer();
    try {
      assert.equal(await status(s, get('/healthz', `X-Big: ${'a'.repeat(30 * 1024)}\r\n`)), 200);
      assert.equal(await status(s, get('/healthz', `X-Big: ${'a'.repeat(80 * 1024)}\r\n`)), 431);
      const many = Array.from({ length: 2000 }, (_, i) => `X-H${i}: ${'v'.repeat(40)}\r\n`).join('');
      assert.ok([431, 'reset'].includes(await status(s, get('/healthz', many))), '90 KB of headers');
      const r = await rawRequest(s, get('/healthz', `X-Big: ${'a'.repeat(80 * 1024)}\r\n`));
      assert.equal(r.status, 431);
      assert.equal(r.headers.connection, 'close', 'the connection is closed after a 431');
      assert.equal((await call(s, 'POST', '/explain', { json: { image: IMG } })).status, 200, 'the server goes on');
    } finally {
      await s.stop();
    }
  });

  it('--max-header-kb 8: 6 KB served, 24 KB -> 431, a 40 KB URL -> 414, 100 KB -> 431 or reset', async () => {
    const s = await startServer({ args: ['--max-header-kb', '8'] });
    try {
      assert.equal(await status(s, get('/healthz', `Cookie: ${'c'.repeat(6 * 1024)}\r\n`)), 200);
      assert.equal(await status(s, get('/healthz', `X-Big: ${'c'.repeat(6 * 1024)}\r\n`)), 200);
      assert.equal(await status(s, get('/healthz', `X-Big: ${'c'.repeat(24 * 1024)}\r\n`)), 431);
      assert.ok([414, 'reset'].includes(await status(s, get(`/${'u'.repeat(40 * 1024)}`))));
      assert.ok([431, 'reset'].includes(await status(s, get('/healthz', `Cookie: ${'c'.repeat(100 * 1024)}\r\n`))));
      // a POST whose headers fit is not hurt by the smaller buffer
      assert.equal((await call(s, 'POST', '/explain', { json: { image: IMG } })).status, 200, 'the server goes on');
    } finally {
      await s.stop();
    }
  });
});

describe('many idle connections', () => {
  const idle = async (s, n) => {
    const cs = [];
    for (let i = 0; i < n; i++) cs.push(open(s));
    await Promise.all(cs.map((c) => c.connected));
    await sleep(200);
    return cs;
  };

  it('300 idle connections (--max-connections-per-ip 0): a good request is answered at once; the idle ones are closed after the timeout', async (t) => {
    const s = await startServer({ args: ['--timeout-s', String(TIMEOUT_S), '--max-connections-per-ip', '0'] });
    try {
      await call(s, 'GET', '/healthz');   // warm-up
      const cs = await idle(s, 300);
      const ms = await good(s, 'beside 300 idle connections');
      const t0 = Date.now();
      const closed = await withTimeout(Promise.all(cs.map((c) => c.closed)), (TIMEOUT_S + 4) * 1000, '300 idle connections');
      t.diagnostic(`good request beside 300 idle connections: ${ms} ms; all 300 closed by the server within ${Date.now() - t0} ms ` +
        `(${Math.min(...closed.map((c) => c.ms))}..${Math.max(...closed.map((c) => c.ms))} ms after connecting)`);
      await good(s, 'after');
    } finally {
      await s.stop();
    }
  });

  // a new client (a fresh TCP connection: fetch would reuse a warm keep-alive one) polls
  // until it is answered; returns { ms, first }
  const newClient = async (s, limitMs) => {
    const t0 = Date.now();
    let first;
    for (;;) {
      try {
        const r = await rawRequest(s, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { timeoutMs: limitMs });
        if (first === undefined) first = `answered ${r.status}`;
        if (r.status === 200) return { ms: Date.now() - t0, first };
      } catch (e) {
        if (first === undefined) first = `refused (${e.message.slice(0, 60)})`;
      }
      if (Date.now() - t0 > limitMs) return { ms: Infinity, first };
      await sleep(100);
    }
  };

  it('--max-connections 64: 100 idle connections fill it; a new client is served once the timeout frees the slots', async (t) => {
    const s = await startServer({ args: ['--timeout-s', String(TIMEOUT_S), '--max-connections', '64', '--max-connections-per-ip', '0'] });
    try {
      const cs = await idle(s, 100);
      const r = await newClient(s, (TIMEOUT_S + 4) * 1000);
      t.diagnostic(`a new client beside 100 idle connections (limit 64): first try ${r.first}, served after ${r.ms} ms (timeout ${TIMEOUT_S} s)`);
      assert.ok(r.ms <= (TIMEOUT_S + 2) * 1000, `served only after ${r.ms} ms`);
      for (const c of cs) c.sock.destroy();
    } finally {
      await s.stop();
    }
  });

  it('default --max-connections-per-ip 128: 200 idle connections from one address lock it out for at most the timeout', async (t) => {
    const s = await startServer({ args: ['--timeout-s', String(TIMEOUT_S)] });
    try {
      const cs = await idle(s, 200);
      const refused = (await Promise.all(cs.map((c) => Promise.race([c.closed.then(() => 1), sleep(300).then(() => 0)])))).reduce((a, b) => a + b, 0);
      const r = await newClient(s, (TIMEOUT_S + 4) * 1000);
      t.diagnostic(`${refused} of 200 idle connections refused at once; a new client from the same address: first try ${r.first}, ` +
        `served after ${r.ms} ms (timeout ${TIMEOUT_S} s)`);
      assert.ok(refused >= 60, `${refused} of 200 refused (limit 128 per address)`);
      assert.ok(r.ms <= (TIMEOUT_S + 2) * 1000, `the address was locked out for ${r.ms} ms`);
      for (const c of cs) c.sock.destroy();
    } finally {
      await s.stop();
    }
  });
});

describe('static files and symlinks', () => {
  let s;
  before(async () => {
    s = await startServer();
    const dir = s.staticDir;
    const base = path.dirname(dir);
    mkdirSync(path.join(base, 'outside'), { recursive: true });
    writeFileSync(path.join(base, 'outside', 'other.txt'), SECRET);
    symlinkSync(s.secretPath, path.join(dir, 'secret-link.txt'));                 // a file outside
    symlinkSync(path.join(base, 'outside'), path.join(dir, 'linked-dir'));          // a directory outside
    symlinkSync(base, path.join(dir, 'parent-link'));                               // the parent itself
    symlinkSync(path.join(dir, 'app.js'), path.join(dir, 'app-link.js'));           // a file inside (absolute)
    symlinkSync('sub', path.join(dir, 'sub-link'));                                 // a directory inside (relative)
    symlinkSync('../app.js', path.join(dir, 'sub', 'up-link.js'));                  // inside, through ..
  });
  after(async () => { await s?.stop(); });

  for (const p of ['/secret-link.txt', '/linked-dir/other.txt', '/linked-dir/', '/linked-dir', '/parent-link/secret.txt',
    '/parent-link/outside/other.txt', '/sub-link/../../secret.txt', '/sub-link/%2e%2e/%2e%2e/secret.txt']) {
    it(`GET ${p} (symlink out of the folder) -> 404, the secret is not served`, async () => {
      const r = await rawRequest(s, `GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.ok([404, 400].includes(r.status), `${p}: ${r.status}`);
      if (r.status === 404) assertError(r, 404, 'not_found', p);
      assert.ok(!r.text.includes(SECRET.trim()), `${p} leaked the secret`);
    });
  }

  it('symlinks that stay inside the folder are served', async () => {
    // (parent-link leads back into the folder through a link to its parent: inside, served)
    for (const p of ['/app-link.js', '/sub-link/page.txt', '/sub/up-link.js', '/parent-link/static/app.js']) {
      const r = await call(s, 'GET', p);
      assert.equal(r.status, 200, `${p}: ${r.text.slice(0, 100)}`);
      assert.equal(r.text, p === '/sub-link/page.txt' ? 'sub page\n' : APP_JS, p);
    }
  });
});
