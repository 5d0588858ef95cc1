// A short soak (bench/soak.js, the driver of bench/soak.sh) against the server of
// $CDAM_BUILD with the tiny test model: a few thousand mixed requests (good JSON and
// multipart /explain with several methods, PNG output, stored concepts and jobs; bad
// images; other 4xx; bodies over --max-body-mb; slow clients; disconnects mid-upload,
// while queued and mid-response; concept writes, reads and deletes; /metrics, /healthz),
// one overload burst (10x more clients than queue + workers: quick 503 + Retry-After,
// queue depth bounded, recovery), every good answer equal to the reference answer and
// every response valid against openapi.yaml; then every concept readable, SIGTERM -> exit
// 0, a restart on the same data dir with the same concepts, SIGTERM -> exit 0. Under
// `make SANITIZE=address test` the exit status carries LeakSanitizer's verdict, so a leak
// anywhere on these paths fails this test. (RSS growth needs a longer run: bench/soak.sh.)
import assert from 'node:assert/strict';
import path from 'node:path';
import { it } from 'node:test';
import soak from '../../bench/soak.js';
import { BUILD, MODEL } from './lib/server.js';
import { loadSpec } from './lib/spec.js';

const REQUESTS = Number(process.env.CDAM_SOAK_REQUESTS || 2000);

it(`${REQUESTS} mixed requests and an overload burst: correct answers, no leak, clean exit`, async (t) => {
  const spec = loadSpec();
  const r = await soak.runSoak({
    bin: path.join(BUILD, 'cdam-server'),
    model: MODEL,
    requests: REQUESTS,
    durationS: 120,          // a cap: the request count ends the run first
    concurrency: 4,
    overloadPhases: 1,
    overloadSeconds: 2,
    slowMs: 400,
    quick503Ms: 5000,        // p50 is about 1 ms on a quiet machine; the limit is for busy ones
    cacheMb: 1,              // with 60 generated images: cache misses and evictions
    uniqueImages: 60,
    rssCheck: false,
    weights: { stall: 0 },   // a stalled connection takes the server's 60 s idle timeout
    checkResponse: (m, p, status, headers, body) => spec.checkResponse(m, p, status, headers, body),
    log: () => {},
  });
  for (const line of r.report.split('\n')) if (!/^ {2}\S/.test(line)) t.diagnostic(line);
  assert.ok(r.ok, `soak failed:\n${r.report}`);
  assert.ok(r.summary.mixed_requests >= REQUESTS, `only ${r.summary.mixed_requests} requests within the 120 s cap`);
  assert.ok(r.summary.overload[0].r503 > 0 && r.summary.overload[0].ok200 > 0, 'the burst gave 200s and 503s');
});
