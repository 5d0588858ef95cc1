// spec.js - openapi.yaml as a response validator.
//
//   const spec = loadSpec();                           // parses <repo>/openapi.yaml
//   const problems = spec.checkResponse('POST', '/explain', status, headers, bodyBuffer);
//   // [] when the response is one that openapi.yaml documents for this route, method and
//   // status: documented status, Content-Type among the documented media types, required
//   // headers present and matching their schema, JSON body valid against the response
//   // schema (Ajv, JSON Schema 2020-12, the dialect of OpenAPI 3.1), PNG signature for
//   // image/png, empty body for a response without content.
//
// Route resolution: concrete paths before templated ones; a known path with an
// undocumented method must answer components/responses/MethodNotAllowed (405 + Allow);
// an unknown path (or a non-GET on a path only the static catch-all /{file} matches)
// must answer components/responses/NotFound (404).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';
import { ROOT } from './server.js';

export const SPEC_PATH = path.join(ROOT, 'openapi.yaml');
const COMPONENTS_ID = 'https://cdam.invalid/openapi/components.json';
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Deep copy with "#/components/schemas/X" refs pointed at the Ajv components schema. */
function rewriteRefs(node) {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node && typeof node === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')) {
        out[k] = `${COMPONENTS_ID}#/$defs/${v.slice('#/components/schemas/'.length)}`;
      } else {
        out[k] = rewriteRefs(v);
      }
    }
    return out;
  }
  return node;
}

function mediaType(ct) {
  if (!ct) return { type: '', params: {} };
  const [t, ...rest] = ct.split(';');
  const params = {};
  for (const p of rest) {
    const i = p.indexOf('=');
    if (i > 0) params[p.slice(0, i).trim().toLowerCase()] = p.slice(i + 1).trim().replace(/^"|"$/g, '');
  }
  return { type: t.trim().toLowerCase(), params };
}

function templateRegex(tpl) {
  const re = tpl.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '([^/]+)');
  return new RegExp(`^${re}$`);
}

export function makeAjv() {
  const ajv = new Ajv2020({ strict: true, strictTypes: false, strictTuples: false, strictRequired: false, allErrors: true });
  addFormats(ajv);
  return ajv;
}

export class Spec {
  constructor(doc) {
    this.doc = doc;
    this.ajv = makeAjv();
    this.ajv.addSchema({ $id: COMPONENTS_ID, $defs: rewriteRefs(doc.components?.schemas || {}) });
    this.cache = new Map();
    const paths = Object.keys(doc.paths || {});
    // concrete paths first, then by fewer parameters
    this.routes = paths.map((p) => ({ tpl: p, re: templateRegex(p), params: (p.match(/\{/g) || []).length }))
      .sort((a, b) => a.params - b.params);
  }

  /** Resolves a local "#/..." $ref (responses, headers, parameters). */
  deref(obj) {
    let o = obj;
    for (let i = 0; o && o.$ref && i < 10; i++) {
      const parts = o.$ref.replace(/^#\//, '').split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
      o = parts.reduce((acc, k) => (acc == null ? acc : acc[k]), this.doc);
      if (o === undefined) throw new Error(`unresolved $ref ${obj.$ref}`);
    }
    return o;
  }

  validator(key, schema) {
    let v = this.cache.get(key);
    if (!v) {
      v = this.ajv.compile(rewriteRefs(schema));
      this.cache.set(key, v);
    }
    return v;
  }

  /** The documented response object for (method, path) -> { where, response } (response may be null). */
  findResponse(method, rawPath, status) {
    const p = rawPath.split('?')[0];
    const m = method.toLowerCase();
    const matched = this.routes.filter((r) => r.re.test(p));
    // the most specific route decides; only the static catch-all /{file} is a fallback
    const known = matched.find((r) => r.tpl !== '/{file}');
    const withOp = known ? (this.doc.paths[known.tpl][m] ? known : null) : matched.find((r) => this.doc.paths[r.tpl][m]);
    let where;
    let responses;
    if (withOp) {
      where = `${method} ${withOp.tpl}`;
      responses = this.doc.paths[withOp.tpl][m].responses;
    } else if (known) {
      where = `${method} ${known.tpl} (method not served)`;
      responses = { 405: { $ref: '#/components/responses/MethodNotAllowed' } };
    } else if (m === 'get' && this.doc.paths['/{file}']) {
      where = `GET /{file} (static catch-all for ${p})`;
      responses = this.doc.paths['/{file}'].get.responses;
    } else {
      where = `${method} ${p} (unknown route)`;
      responses = { 404: { $ref: '#/components/responses/NotFound' } };
    }
    const s = String(status);
    const r = responses[s] ?? responses[`${s[0]}XX`] ?? responses.default ?? null;
    return { where, response: r ? this.deref(r) : null, documented: Object.keys(responses) };
  }

  /**
   * Problems (list of strings) with a response. headers: a Headers object or a plain
   * object with lower-case names; body: Buffer.
   */
  checkResponse(method, rawPath, status, headers, body) {
    const get = (n) => (typeof headers.get === 'function' ? headers.get(n) : headers[n.toLowerCase()]) ?? null;
    const probs = [];
    const { where, response, documented } = this.findResponse(method, rawPath, status);
    if (!response) {
      return [`${where}: status ${status} is not documented (documented: ${documented.join(', ')})`];
    }
    for (const [name, h0] of Object.entries(response.headers || {})) {
      const h = this.deref(h0);
      const val = get(name);
      if (val == null) {
        if (h.required) probs.push(`${where} ${status}: required header ${name} missing`);
        continue;
      }
      if (h.schema) {
        const v = this.validator(`hdr ${where} ${status} ${name}`, h.schema);
        if (!v(val)) probs.push(`${where} ${status}: header ${name}: ${JSON.stringify(val)} ${this.ajv.errorsText(v.errors)}`);
      }
    }
    const content = response.content;
    if (!content) {
      if (body && body.length) probs.push(`${where} ${status}: documented without a body but got ${body.length} bytes`);
      return probs;
    }
    const ct = get('content-type');
    const got = mediaType(ct);
    let key = null;
    for (const k of Object.keys(content)) {
      const want = mediaType(k);
      if (want.type === '*/*' || want.type === got.type ||
          (want.type.endsWith('/*') && got.type.startsWith(want.type.slice(0, -1)))) {
        const paramsOk = Object.entries(want.params).every(([pk, pv]) => got.params[pk] === pv);
        if (paramsOk) { key = k; break; }
      }
    }
    if (!key) {
      probs.push(`${where} ${status}: Content-Type ${JSON.stringify(ct)} is not one of ${Object.keys(content).join(' | ')}`);
      return probs;
    }
    const schema = content[key].schema;
    if (got.type === 'application/json' || got.type.endsWith('+json')) {
      let data;
      try {
        data = JSON.parse(body.toString('utf8'));
      } catch (e) {
        probs.push(`${where} ${status}: body is not JSON (${e.message}): ${body.toString('utf8').slice(0, 200)}`);
        return probs;
      }
      if (schema) {
        const v = this.validator(`body ${where} ${status} ${key}`, schema);
        if (!v(data)) {
          probs.push(`${where} ${status}: body does not match the schema: ${this.ajv.errorsText(v.errors, { separator: '; ' })}` +
            `\n    body: ${JSON.stringify(data).slice(0, 400)}`);
        }
      }
      if (data && data.error && data.error.code === 'queue_full' && get('retry-after') == null) {
        probs.push(`${where} ${status}: queue_full without a Retry-After header`);
      }
      if (status === 405 && get('allow') == null) probs.push(`${where}: 405 without an Allow header`);
    } else if (got.type === 'image/png') {
      const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      if (!body || body.length < 8 || !body.subarray(0, 8).equals(sig)) probs.push(`${where} ${status}: image/png body without the PNG signature`);
    } else if (got.type.startsWith('text/')) {
      if (schema && schema.type && schema.type !== 'string') probs.push(`${where} ${status}: text body but schema type ${schema.type}`);
    }
    return probs;
  }

  /** Every schema of the document (components, parameters, headers, bodies), for a compile check. */
  allSchemas() {
    const out = [];
    for (const [name, s] of Object.entries(this.doc.components?.schemas || {})) out.push([`components.schemas.${name}`, s]);
    for (const [name, h] of Object.entries(this.doc.components?.headers || {})) if (h.schema) out.push([`components.headers.${name}`, h.schema]);
    for (const [name, p] of Object.entries(this.doc.components?.parameters || {})) if (p.schema) out.push([`components.parameters.${name}`, p.schema]);
    for (const [name, r] of Object.entries(this.doc.components?.responses || {})) {
      for (const [mt, c] of Object.entries(r.content || {})) if (c.schema) out.push([`components.responses.${name}.${mt}`, c.schema]);
    }
    for (const [p, item] of Object.entries(this.doc.paths || {})) {
      for (const prm of item.parameters || []) { const d = this.deref(prm); if (d.schema) out.push([`${p} param ${d.name}`, d.schema]); }
      for (const m of HTTP_METHODS) {
        const op = item[m];
        if (!op) continue;
        for (const [mt, c] of Object.entries(op.requestBody?.content || {})) if (c.schema) out.push([`${m} ${p} request ${mt}`, c.schema]);
        for (const [st, r0] of Object.entries(op.responses || {})) {
          const r = this.deref(r0);
          for (const [mt, c] of Object.entries(r.content || {})) if (c.schema) out.push([`${m} ${p} ${st} ${mt}`, c.schema]);
          for (const [hn, h0] of Object.entries(r.headers || {})) { const h = this.deref(h0); if (h.schema) out.push([`${m} ${p} ${st} header ${hn}`, h.schema]); }
        }
      }
    }
    return out;
  }

  /** Validates data against a named component schema; returns the problems. */
  checkSchema(name, data) {
    const v = this.validator(`component ${name}`, { $ref: `#/components/schemas/${name}` });
    return v(data) ? [] : [this.ajv.errorsText(v.errors, { separator: '; ' })];
  }
}

let shared = null;
export function loadSpec() {
  if (!shared) shared = new Spec(YAML.parse(readFileSync(SPEC_PATH, 'utf8')));
  return shared;
}
