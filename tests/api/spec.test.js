// openapi.yaml itself: a valid OpenAPI 3.1 document, every schema compiles under JSON
// Schema 2020-12 (strict Ajv), it documents every route/status of server/API.md, and its
// schemas accept the examples of API.md and reject near misses.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { loadSpec, makeAjv, SPEC_PATH } from './lib/spec.js';
import { ROOT } from './lib/server.js';

describe('openapi.yaml', () => {
  it('is a valid OpenAPI 3.1 document (@seriousme/openapi-schema-validator)', async () => {
    const v = new Validator();
    const r = await v.validate(SPEC_PATH);
    assert.equal(v.version, '3.1');
    assert.ok(r.valid, `openapi.yaml is not valid: ${JSON.stringify(r.errors, null, 1)}`);
  });

  it('every schema compiles with Ajv (JSON Schema 2020-12, strict)', () => {
    const spec = loadSpec();
    const all = spec.allSchemas();
    assert.ok(all.length > 40, `only ${all.length} schemas found`);
    for (const [where, schema] of all) {
      assert.doesNotThrow(() => spec.validator(`compile ${where}`, schema), `${where} does not compile`);
    }
    // and the components stand alone too (no dangling $ref)
    const ajv = makeAjv();
    assert.doesNotThrow(() => ajv.compile({ $defs: spec.doc.components.schemas }));
  });

  it('documents every route, method and error status of server/API.md', () => {
    const spec = loadSpec();
    const p = spec.doc.paths;
    const want = {
      '/explain': { post: ['200', '202', '400', '401', '413', '415', '500', '503', '504'] },
      '/jobs/{id}': { get: ['200', '404'], delete: ['200', '404'] },
      '/concepts': { post: ['201', '400', '413', '415', '503', '507'], get: ['200'] },
      '/concepts/{id}': { get: ['200', '404'], delete: ['204', '404'] },
      '/healthz': { get: ['200', '503'] },
      '/model': { get: ['200'] },
      '/metrics': { get: ['200'] },
      '/': { get: ['200', '404'] },
      '/{file}': { get: ['200', '400', '404'] },
    };
    for (const [route, methods] of Object.entries(want)) {
      assert.ok(p[route], `route ${route} missing`);
      for (const [m, statuses] of Object.entries(methods)) {
        assert.ok(p[route][m], `${m.toUpperCase()} ${route} missing`);
        for (const s of statuses) assert.ok(p[route][m].responses[s], `${m.toUpperCase()} ${route}: status ${s} missing`);
      }
    }
    assert.ok(spec.doc.components.responses.MethodNotAllowed.headers.Allow, '405 Allow header');
    assert.ok(spec.deref(p['/explain'].post.responses['202']).headers.Location.required, '202 Location header');
    assert.ok(spec.deref(p['/explain'].post.responses['503']).headers['Retry-After'], '503 Retry-After header');
    assert.ok(p['/explain'].post.requestBody.content['application/json']);
    assert.ok(p['/explain'].post.requestBody.content['multipart/form-data']);
    assert.ok(p['/concepts'].post.requestBody.content['multipart/form-data']);
    assert.ok(p['/metrics'].get.responses['200'].content['text/plain; version=0.0.4']);
    assert.ok(p['/explain'].post.responses['200'].content['image/png']);
    // every error code of API.md is in the ErrorCode enum, and no other
    const api = readFileSync(path.join(ROOT, 'server', 'API.md'), 'utf8');
    const codes = [...api.matchAll(/^ {4}(\d{3}) ([a-z0-9_]+)\s/gm)].map((m) => m[2]);
    assert.ok(codes.length >= 20, `only ${codes.length} codes parsed from API.md`);
    assert.deepEqual([...spec.doc.components.schemas.ErrorCode.enum].sort(), [...new Set(codes)].sort());
  });

  it('schemas accept the shapes of API.md and reject near misses', () => {
    const spec = loadSpec();
    const ok = (name, data) => assert.deepEqual(spec.checkSchema(name, data), [], `${name} should accept ${JSON.stringify(data)}`);
    const bad = (name, data) => assert.notDeepEqual(spec.checkSchema(name, data), [], `${name} should reject ${JSON.stringify(data)}`);
    const result = {
      model: 'tiny', input: { width: 32, height: 32 }, image: { width: 32, height: 24, format: 'png' },
      grid: { rows: 4, cols: 4 },
      predictions: [{ index: 1, label: 'bicycle', logit: 2.0, probability: 0.6 }],
      explanations: [
        { method: 'cdam', target: { type: 'class', index: 1, label: 'bicycle' }, scores: [0.1, -0.2], min: -0.2, max: 0.1 },
        { method: 'am', target: null, scores: [0.1, 0.2], min: 0.1, max: 0.2 },
        { method: 'cdam', target: { type: 'concept', id: 'a'.repeat(32), name: 'stripes' }, scores: [1], min: 1, max: 1 },
        { method: 'rp', target: { type: 'embedding' }, scores: [1], min: 1, max: 1 },
      ],
      timing_ms: { queue: 0, decode: 1, forward: 2, explain: 3, total: 6 },
      cache: 'miss',
    };
    ok('ExplainResult', result);
    bad('ExplainResult', { ...result, cache: 'maybe' });
    bad('ExplainResult', { ...result, explanations: [{ ...result.explanations[1], target: { type: 'class', index: 0, label: 'x' } }] });
    bad('ExplainResult', { ...result, explanations: [{ ...result.explanations[0], target: null }] });
    bad('ExplainResult', { ...result, explanations: [{ ...result.explanations[0], method: 'gradcam' }] });
    const { timing_ms: _, ...noTiming } = result;
    bad('ExplainResult', noTiming);
    ok('Error', { error: { code: 'bad_json', message: 'x' } });
    bad('Error', { error: { code: 'oops', message: 'x' } });
    bad('Error', { error: { code: 'bad_json' } });
    bad('NotFoundError', { error: { code: 'bad_json', message: 'x' } });
    ok('PayloadTooLargeError', { error: { code: 'body_too_large', message: 'x' } });
    ok('Job', { id: 'j1', state: 'done', progress: 1, result, created: 1700000000.5 });
    bad('Job', { id: 'j1', state: 'done', progress: 1, created: 1 });
    bad('Job', { id: 'j1', state: 'running', progress: 0.5, result, created: 1 });
    ok('Job', { id: 'j1', state: 'failed', progress: 1, error: { code: 'internal', message: 'x' }, created: 1 });
    bad('Job', { id: 'j1', state: 'failed', progress: 1, created: 1 });
    bad('Job', { id: 'j1', state: 'queued', progress: 2, created: 1 });
    ok('JobAccepted', { id: 'j1', state: 'queued', progress: 0, href: '/jobs/j1' });
    bad('JobAccepted', { id: 'j1', state: 'running', progress: 0, href: '/jobs/j1' });
    ok('Concept', { id: '0123456789abcdef0123456789abcdef', name: 'c', images: 2, embedding: [1, 2], created: 1 });
    bad('Concept', { id: 'xyz', name: 'c', images: 2, embedding: [1, 2], created: 1 });
    ok('ConceptList', { concepts: [{ id: '0123456789abcdef0123456789abcdef', name: 'c', images: 1, created: 1 }] });
    bad('ConceptList', { concepts: [{ id: '0123456789abcdef0123456789abcdef', name: 'c', images: 1, created: 1, embedding: [1] }] });
    ok('ExplainRequest', { image: 'AAAA', methods: ['cdam', 'am'], classes: [1, 'bicycle'], size: [40, 24], top_k: 3, async: false });
    bad('ExplainRequest', { methods: ['cdam'] });
    bad('ExplainRequest', { image: 'AAAA', size: [40] });
    bad('ExplainRequest', { image: 'AAAA', threshold: 2 });
    ok('Model', { name: 'tiny', patch_size: 8, embed_dim: 32, depth: 3, heads: 2, native_size: [32, 32], max_size: [64, 64],
      num_classes: 7, labels: ['a'], head: 'linear', methods: ['cdam', 'smooth_cdam', 'integrated_cdam', 'am', 'rp', 'tam'] });
    ok('HealthOk', { status: 'ok' });
    ok('HealthLoading', { status: 'loading' });
    bad('HealthOk', { status: 'loading' });
  });
});
