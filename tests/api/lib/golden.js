// golden.js - reads safetensors goldens and compares numbers like tests/check.h.
//
//   const g = readSafetensors('tests/data/golden/api_tiny.safetensors');
//   g.tensors.cdam.shape, g.tensors.cdam.data (Float64Array), g.metadata
//   assertClose('cdam class 1', got, want, 1e-4);
//
// Format: 8-byte little-endian u64 header length n, n bytes of JSON
// {"__metadata__": {...}, name: {dtype, shape, data_offsets: [begin, end]}}, then the
// buffer (offsets relative to it).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

export function readSafetensors(file) {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const metadata = header.__metadata__ || {};
  const tensors = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = info.data_offsets;
    const count = info.shape.reduce((a, x) => a * x, 1);
    const data = new Float64Array(count);
    if (info.dtype === 'F32') {
      assert.equal(e - b, count * 4, `${name}: size`);
      for (let i = 0; i < count; i++) data[i] = buf.readFloatLE(base + b + 4 * i);
    } else if (info.dtype === 'F64') {
      assert.equal(e - b, count * 8, `${name}: size`);
      for (let i = 0; i < count; i++) data[i] = buf.readDoubleLE(base + b + 8 * i);
    } else {
      throw new Error(`${file}: ${name}: dtype ${info.dtype} not handled`);
    }
    tensors[name] = { shape: info.shape, data };
  }
  return { tensors, metadata };
}

/** Rows k of a tensor whose first dimension indexes maps: a flat array. */
export function row(t, k) {
  const per = t.data.length / t.shape[0];
  return Array.from(t.data.subarray(k * per, (k + 1) * per));
}

/** tests/check.h check_close: every |got - want| <= rtol * (|want| + rms(want)). */
export function closeError(got, want) {
  const w = Array.from(want);
  const g = Array.from(got);
  if (g.length !== w.length) return { ok: false, worst: Infinity, index: -1, reason: `length ${g.length} != ${w.length}` };
  const rms = Math.sqrt(w.reduce((a, x) => a + x * x, 0) / (w.length || 1));
  let worst = 0;
  let index = -1;
  for (let i = 0; i < w.length; i++) {
    const e = Math.abs(g[i] - w[i]) / (Math.abs(w[i]) + rms + 1e-30);
    if (!(e <= worst)) { worst = e; index = i; }
  }
  return { worst, index };
}

export function assertClose(what, got, want, rtol = 1e-4) {
  assert.ok(Array.isArray(got) || ArrayBuffer.isView(got), `${what}: not an array: ${JSON.stringify(got)?.slice(0, 100)}`);
  const { worst, index, reason } = closeError(got, want);
  assert.ok(!reason, `${what}: ${reason}`);
  assert.ok(worst <= rtol, `${what}: worst relative error ${worst.toExponential(2)} > ${rtol} at [${index}]: ` +
    `got ${got[index]} want ${want[index]}\n  got  ${Array.from(got).join(', ')}\n  want ${Array.from(want).join(', ')}`);
}
