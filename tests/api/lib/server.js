// server.js - starts and stops a real cdam-server for the API tests.
//
//   const srv = await startServer({ args: ['--max-body-mb', '1'] });
//   srv.url            // http://127.0.0.1:PORT (the server is started with --port 0 and
//                      // prints "cdam-server: listening on http://127.0.0.1:PORT" to stderr)
//   await srv.stop();  // SIGTERM, then SIGKILL after 5 s
//   await srv.kill9(); // SIGKILL at once (crash test)
//
// Every server gets a fresh temporary --data-dir (unless one is given, e.g. to restart on
// the same data) and a --static folder holding an index.html, app.js and style.css
// written here; a file "secret.txt" is written NEXT TO the static folder (never inside)
// for the path-traversal tests. The binary is $CDAM_BUILD/cdam-server (run.sh sets
// CDAM_BUILD; default <repo>/build).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BUILD = path.resolve(ROOT, process.env.CDAM_BUILD || 'build');
export const SERVER_BIN = path.join(BUILD, 'cdam-server');
export const MODEL = path.join(ROOT, 'tests', 'data', 'models', 'tiny.safetensors');
export const IMAGES = path.join(ROOT, 'tests', 'data', 'images');
export const GOLDEN = path.join(ROOT, 'tests', 'data', 'golden');

export const INDEX_HTML = '<!doctype html>\n<html><head><title>cdam test page</title></head>' +
  '<body><h1>cdam-api-test-index-7f3a</h1></body></html>\n';
export const APP_JS = 'console.log("cdam-api-test-app-js");\n';
export const STYLE_CSS = 'body { color: #123456; }\n';
export const SECRET = 'TOP-SECRET-cdam-api-test-9d41e\n';

const running = new Set();
const tempDirs = new Set();

function cleanup() {
  for (const p of running) {
    try { p.kill('SIGKILL'); } catch { /* gone */ }
  }
  if (!process.env.CDAM_KEEP_TMP) {
    for (const d of tempDirs) {
      try { rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
    }
  }
}
process.on('exit', cleanup);

/** A new temporary folder, removed when the test process exits. */
export function tempDir(prefix = 'cdam-api-') {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}

/** A static folder (inside a fresh temp folder) with index.html, app.js, style.css, sub/page.txt;
 *  secret.txt sits beside it, outside. Returns { staticDir, secretPath }. */
export function makeStaticDir() {
  const base = tempDir('cdam-static-');
  const staticDir = path.join(base, 'static');
  mkdirSync(path.join(staticDir, 'sub'), { recursive: true });
  writeFileSync(path.join(staticDir, 'index.html'), INDEX_HTML);
  writeFileSync(path.join(staticDir, 'app.js'), APP_JS);
  writeFileSync(path.join(staticDir, 'style.css'), STYLE_CSS);
  writeFileSync(path.join(staticDir, 'sub', 'page.txt'), 'sub page\n');
  const secretPath = path.join(base, 'secret.txt');
  writeFileSync(secretPath, SECRET);
  return { staticDir, secretPath, base };
}

/**
 * Starts build/cdam-server on 127.0.0.1, port 0, with the tiny model.
 * opts.args: extra flags; opts.dataDir: reuse a data folder (restart tests);
 * opts.staticDir; opts.env; opts.waitHealthy (default true): poll /healthz until 200.
 */
export async function startServer(opts = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`${SERVER_BIN} does not exist: build it first (make ${path.relative(ROOT, SERVER_BIN)})`);
  }
  const dataDir = opts.dataDir || tempDir('cdam-data-');
  const st = opts.staticDir ? { staticDir: opts.staticDir } : makeStaticDir();
  const args = ['--model', MODEL, '--host', '127.0.0.1', '--port', '0',
    '--data-dir', dataDir, '--static', st.staticDir, ...(opts.args || [])];
  // opts.wrap(bin, args) -> [command, args]: run the server through another command
  // (e.g. unshare + mount for the storage-full test); the server must still exec itself.
  const [cmd, cmdArgs] = opts.wrap ? opts.wrap(SERVER_BIN, args) : [SERVER_BIN, args];
  const proc = spawn(cmd, cmdArgs, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(opts.env || {}) },
  });
  running.add(proc);
  let stderr = '';
  let stdout = '';
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exited = { code, signal };
      running.delete(proc);
      resolve(exited);
    });
  });
  proc.stdout.on('data', (d) => { stdout += d; });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(
      `cdam-server printed no "listening on" line within 20 s; stderr:\n${stderr}`)), 20000);
    const onData = (d) => {
      stderr += d;
      const m = /cdam-server: listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stderr.on('data', onData);
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`cdam-server exited (code ${code}, signal ${signal}) before listening; ` +
        `args: ${args.join(' ')}\nstderr:\n${stderr}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const srv = {
    port, url, proc, dataDir, staticDir: st.staticDir, secretPath: st.secretPath, args,
    stderr: () => stderr,
    stdout: () => stdout,
    exited: () => exited,
    // SIGTERM; the server must drain and exit 0 within 5 s (under ASan a leak makes the
    // exit status non-zero, so every server stopped here is also a leak check).
    async stop() {
      if (exited) return exited;
      proc.kill('SIGTERM');
      const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, 5000);
      const r = await exitPromise;
      clearTimeout(t);
      if (r.code !== 0 || r.signal) {
        throw new Error(`cdam-server did not exit cleanly on SIGTERM (code ${r.code}, signal ${r.signal}); stderr:\n${stderr.slice(-4000)}`);
      }
      return r;
    },
    async kill9() {
      if (exited) return exited;
      proc.kill('SIGKILL');
      return exitPromise;
    },
  };
  if (opts.waitHealthy !== false) {
    const deadline = Date.now() + 20000;
    for (;;) {
      let status = 0;
      try {
        const r = await fetch(`${url}/healthz`, { headers: opts.healthHeaders || {} });
        status = r.status;
        await r.arrayBuffer();
      } catch { /* not yet */ }
      if (status === 200) break;
      if (exited) throw new Error(`cdam-server exited during start-up; stderr:\n${stderr}`);
      if (Date.now() > deadline) throw new Error(`cdam-server /healthz not 200 within 20 s (last ${status})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return srv;
}
