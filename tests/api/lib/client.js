// client.js - HTTP helpers for the API tests; every response is checked against openapi.yaml.
//
//   const r = await call(srv, 'POST', '/explain', { json: { image: b64('rgb8.png') } });
//   r.status, r.headers (Headers), r.body (Buffer), r.text, r.json (parsed or undefined)
//   const r2 = await call(srv, 'POST', '/explain', { form: formData });   // multipart
//   const r3 = await raw(srv, 'GET /../secret.txt HTTP/1.1\r\n...');       // bytes as given
//
// call() and raw() throw an AssertionError when the response is not one openapi.yaml
// documents for that route/method/status (schema, content type, required headers);
// pass { validate: false } to skip that (never used for server responses in the tests).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { loadSpec } from './spec.js';
import { IMAGES } from './server.js';

export function image(name) {
  return readFileSync(path.join(IMAGES, name));
}
export function b64(name) {
  return image(name).toString('base64');
}

export function assertValid(method, p, status, headers, body) {
  const probs = loadSpec().checkResponse(method, p, status, headers, body);
  assert.deepEqual(probs, [], `response of ${method} ${p} does not match openapi.yaml:\n  ${probs.join('\n  ')}`);
}

/**
 * fetch with the body given as { json } (application/json), { form } (FormData:
 * multipart/form-data), or { body, contentType }. Returns { status, headers, body, text, json }.
 */
export async function call(srv, method, p, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  let body;
  if (opts.json !== undefined) {
    body = typeof opts.json === 'string' ? opts.json : JSON.stringify(opts.json);
    headers['content-type'] = headers['content-type'] || 'application/json';
  } else if (opts.form !== undefined) {
    body = opts.form;
  } else if (opts.body !== undefined) {
    body = opts.body;
    if (opts.contentType) headers['content-type'] = opts.contentType;
  }
  const res = await fetch(srv.url + p, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(opts.timeoutMs || 30000) });
  const buf = Buffer.from(await res.arrayBuffer());
  const out = { status: res.status, headers: res.headers, body: buf, text: buf.toString('utf8'), json: undefined };
  const ct = res.headers.get('content-type') || '';
  if (ct.startsWith('application/json')) {
    try { out.json = JSON.parse(out.text); } catch { /* reported by the validator */ }
  }
  if (opts.validate !== false) assertValid(method, p, res.status, res.headers, buf);
  return out;
}

/** Asserts an error answer: status and error.code (code may be a list of acceptable codes). */
export function assertError(r, status, code, what = '') {
  const codes = Array.isArray(code) ? code : [code];
  assert.equal(r.status, status, `${what}: expected HTTP ${status} ${codes.join('|')}, got ${r.status}: ${r.text.slice(0, 300)}`);
  assert.ok(r.json && r.json.error, `${what}: no error envelope: ${r.text.slice(0, 300)}`);
  assert.ok(codes.includes(r.json.error.code), `${what}: expected code ${codes.join('|')}, got ${r.json.error.code} (${r.json.error.message})`);
  assert.equal(typeof r.json.error.message, 'string');
  assert.ok(r.json.error.message.length > 0, `${what}: empty error message`);
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

/**
 * Sends the bytes `request` (a string or Buffer: request line, headers, body as given,
 * no normalisation of the path) on a fresh TCP connection and reads the response until the
 * server closes it (send "Connection: close"). Write errors (the server answering and closing
 * before the whole body was read) are ignored: the response is what counts.
 * Returns { status, headers (lower-case object), body (Buffer), text, json, rawHead }.
 */
export function rawRequest(srv, request, { timeoutMs = 20000, expectContinue = false } = {}) {
  return new Promise((resolve, reject) => {
    let chunks = [];
    const sock = net.connect(srv.port, '127.0.0.1');
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('raw request timed out')); }, timeoutMs);
    const b = Buffer.isBuffer(request) ? request : Buffer.from(request, 'latin1');
    const headEnd = b.indexOf('\r\n\r\n') + 4;
    let waiting = expectContinue;   // headers sent, body held back until "100 Continue"
    sock.on('error', () => { /* EPIPE / ECONNRESET after the answer: handled at close */ });
    // write in pieces so a large body does not sit in one huge buffer; ignore failures
    const writeAll = (buf) => {
      let off = 0;
      const step = () => {
        while (off < buf.length) {
          const piece = buf.subarray(off, off + 65536);
          off += piece.length;
          if (sock.destroyed) return;
          if (!sock.write(piece)) { sock.once('drain', step); return; }
        }
      };
      step();
    };
    sock.on('data', (d) => {
      chunks.push(d);
      if (waiting) {
        const all = Buffer.concat(chunks);
        const he = all.indexOf('\r\n\r\n');
        if (he < 0) return;
        waiting = false;
        if (/^HTTP\/1\.[01] 100/.test(all.toString('latin1', 0, 16))) {
          chunks = [all.subarray(he + 4)];
          writeAll(b.subarray(headEnd));
        }
      }
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const he = all.indexOf('\r\n\r\n');
      if (he < 0) { reject(new Error(`no HTTP response (got ${all.length} bytes: ${all.toString('latin1').slice(0, 200)})`)); return; }
      const head = all.subarray(0, he).toString('latin1');
      const lines = head.split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
      if (!m) { reject(new Error(`bad status line ${lines[0]}`)); return; }
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      let body = all.subarray(he + 4);
      if ((headers['transfer-encoding'] || '').toLowerCase().includes('chunked')) body = decodeChunked(body);
      else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
      const text = body.toString('utf8');
      let json;
      if ((headers['content-type'] || '').startsWith('application/json')) { try { json = JSON.parse(text); } catch { /* */ } }
      resolve({ status: Number(m[1]), headers, body, text, json, rawHead: head });
    });
    sock.on('connect', () => {
      sock.setNoDelay(true);
      if (expectContinue) writeAll(b.subarray(0, headEnd));
      else writeAll(b);
    });
  });
}

/** Sends head + body in two TCP writes, the body split at `split`, with a pause between. */
export function rawSplit(srv, head, body, split, pauseMs = 5) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const sock = net.connect(srv.port, '127.0.0.1');
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('split request timed out')); }, 20000);
    sock.on('error', () => {});
    sock.on('data', (d) => chunks.push(d));
    sock.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks).toString('utf8');
      const he = all.indexOf('\r\n\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(all);
      let json;
      try { json = JSON.parse(all.slice(he + 4)); } catch { /* */ }
      resolve({ status: m ? Number(m[1]) : 0, json, text: all.slice(he + 4) });
    });
    sock.on('connect', () => {
      sock.setNoDelay(true);
      sock.write(Buffer.concat([Buffer.from(head, 'latin1'), body.subarray(0, split)]));
      setTimeout(() => { if (!sock.destroyed) sock.write(body.subarray(split)); }, pauseMs);
    });
  });
}

/** rawRequest + openapi check; `method` and `p` are what the validator resolves the route with. */
export async function raw(srv, method, p, request, opts) {
  const r = await rawRequest(srv, request, opts);
  assertValid(method, p, r.status, r.headers, r.body);
  return r;
}

/** A multipart body built by hand (for malformed-multipart tests). */
export function multipartRequest(srv, p, boundary, bodyBuf, extraHeaders = '') {
  return Buffer.concat([
    Buffer.from(`POST ${p} HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nConnection: close\r\n` +
      `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${bodyBuf.length}\r\n${extraHeaders}\r\n`, 'latin1'),
    bodyBuf,
  ]);
}

/** A FormData with the image file part (name "image") and the given text fields. */
export function form(imageName, fields = {}, { imageBytes, fileName } = {}) {
  const fd = new FormData();
  if (imageName || imageBytes) {
    const bytes = imageBytes || image(imageName);
    fd.append('image', new Blob([bytes], { type: 'application/octet-stream' }), fileName || imageName || 'image.bin');
  }
  for (const [k, v] of Object.entries(fields)) {
    if (Array.isArray(v) && k !== '__raw') for (const x of v) fd.append(k, String(x));
    else fd.append(k, typeof v === 'string' ? v : JSON.stringify(v));
  }
  return fd;
}

/** The engine's answer without what varies between identical requests (timing, cache). */
export function stable(result) {
  const { timing_ms: _t, cache: _c, ...rest } = result;
  return rest;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
