// server.js - starts and stops the real cdam-server for the page tests.
//
//   const srv = await startServer();   // --port 0 on 127.0.0.1, --static <repo>/static,
//   srv.url                            // a fresh temporary --data-dir, the demo model
//   await srv.stop();                  // SIGTERM (SIGKILL after 5 s); removes the data dir
//
// The binary is $CDAM_BUILD/cdam-server (run.sh sets CDAM_BUILD; default <repo>/build).
// The model is $CDAM_WEB_MODEL, else the first that exists of models/fashion-vit.safetensors,
// /tmp/devmodel/fashion-vit.safetensors, tests/data/models/tiny.safetensors: the page must
// work with any model (labels and native size come from GET /model).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BUILD = path.resolve(ROOT, process.env.CDAM_BUILD || 'build');
export const SERVER_BIN = path.join(BUILD, 'cdam-server');
export const STATIC = path.join(ROOT, 'static');

export function pickModel() {
  if (process.env.CDAM_WEB_MODEL) return path.resolve(ROOT, process.env.CDAM_WEB_MODEL);
  const candidates = [
    path.join(ROOT, 'models', 'fashion-vit.safetensors'),
    '/tmp/devmodel/fashion-vit.safetensors',
    path.join(ROOT, 'tests', 'data', 'models', 'tiny.safetensors'),
  ];
  return candidates.find((p) => existsSync(p)) || candidates[candidates.length - 1];
}

const running = new Set();
process.on('exit', () => {
  for (const p of running) {
    try { p.kill('SIGKILL'); } catch { /* gone */ }
  }
});

export async function startServer({ args = [] } = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`${SERVER_BIN} does not exist: build it first (make ${path.relative(ROOT, SERVER_BIN)})`);
  }
  const model = pickModel();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'cdam-web-data-'));
  const argv = ['--model', model, '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir,
    '--static', STATIC, ...args];
  const proc = spawn(SERVER_BIN, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  let stderr = '';
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      exited = { code, signal };
      running.delete(proc);
      resolve(exited);
    });
  });
  proc.stdout.on('data', () => {});
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cdam-server printed no "listening on" line within 20 s; stderr:\n${stderr}`)), 20000);
    proc.stderr.on('data', (d) => {
      stderr += d;
      const m = /cdam-server: listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`cdam-server exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20000;
  for (;;) {
    let status = 0;
    try {
      const r = await fetch(`${url}/healthz`);
      status = r.status;
      await r.arrayBuffer();
    } catch { /* not yet */ }
    if (status === 200) break;
    if (exited) throw new Error(`cdam-server exited during start-up; stderr:\n${stderr}`);
    if (Date.now() > deadline) throw new Error(`cdam-server /healthz not 200 within 20 s (last ${status})`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url, port, model, dataDir, proc,
    stderr: () => stderr,
    async stop() {
      if (!exited) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => { try { proc.kill('SIGKILL'); } catch { /* gone */ } }, 5000);
        await exitPromise;
        clearTimeout(t);
      }
      if (!process.env.CDAM_KEEP_TMP) rmSync(dataDir, { recursive: true, force: true });
      return exited;
    },
  };
}
