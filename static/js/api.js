// api.js - the cdam-server HTTP API (server/API.md) for the demo page.
//
// Every call resolves with the parsed answer or rejects with an ApiError whose
// `message` is a sentence a visitor can read (`code`, `status` and the server's own
// words in `detail` are kept for the page and the tests). Requests are same-origin.

/** Friendly wording of the server's error codes (API.md). */
const FRIENDLY = {
  bad_json: 'The request was malformed.',
  bad_multipart: 'The upload was malformed.',
  missing_image: 'No image was sent.',
  bad_base64: 'The image data was damaged on the way.',
  bad_image: 'The server could not read this file as an image. Use a JPEG, PNG, BMP, GIF or WebP image.',
  image_too_large: 'This image has too many pixels for the server. Try a smaller image.',
  body_too_large: 'This file is too large to upload. Try a smaller image.',
  unknown_method: 'The server does not know this explanation method.',
  unknown_class: 'The model has no such class.',
  unknown_concept: 'This concept no longer exists on the server.',
  bad_embedding: 'The concept vector does not fit this model.',
  bad_size: 'The server does not accept this input size.',
  too_many_classes: 'Too many targets in one request.',
  bad_request: 'The server refused the request.',
  unauthorized: 'The server needs an API key for this.',
  not_found: 'The server could not find what was asked for.',
  method_not_allowed: 'The server does not allow this request.',
  unsupported_media_type: 'The server does not accept this kind of upload.',
  internal: 'The server failed while working on this.',
  queue_full: 'The server is busy right now. Try again in a few seconds.',
  not_ready: 'The model is still loading. Try again in a moment.',
  timeout: 'The server took too long to answer. Try a smaller input size or a faster method.',
  storage_full: 'The server could not store the concept (its disk is full or read-only).',
};

export class ApiError extends Error {
  /**
   * @param {string} message  the sentence to show
   * @param {{code?: string, status?: number, detail?: string}} info
   */
  constructor(message, { code = 'network', status = 0, detail = '' } = {}) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = status;
    this.detail = detail;
  }
}

/** A sentence for a server error body {"error": {code, message}}. */
function describe(status, code, detail) {
  const base = FRIENDLY[code] || `The server answered with an error (HTTP ${status}).`;
  return detail ? `${base} (Server: ${detail})` : base;
}

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason); }, { once: true });
});

/**
 * fetch + JSON + errors. opts: method, body (FormData | object -> JSON), signal,
 * retries (for 503 queue_full, honouring Retry-After; default 2).
 */
async function request(path, { method = 'GET', body, signal, retries = 2 } = {}) {
  const init = { method, signal, headers: { Accept: 'application/json' } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      if (e?.name === 'AbortError') throw e;
      throw new ApiError('Could not reach the server. Check that it is running and try again.',
        { code: 'network', detail: String(e?.message || e) });
    }
    if (res.status === 204) return null;
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (res.ok) {
      if (data === null) throw new ApiError('The server sent an answer the page cannot read.', { code: 'bad_answer', status: res.status });
      return { status: res.status, data };
    }
    const code = data?.error?.code || `http_${res.status}`;
    const detail = data?.error?.message || (data ? '' : text.slice(0, 200));
    if (code === 'queue_full' && attempt < retries) {
      const after = Number(res.headers.get('Retry-After')) || 1;
      await sleep(Math.min(after, 5) * 1000, signal);
      continue;
    }
    throw new ApiError(describe(res.status, code, detail), { code, status: res.status, detail });
  }
}

/** GET /model */
export async function getModel(signal) {
  return (await request('/model', { signal })).data;
}

const dataUrls = new WeakMap();

/** The blob as a data: URL (which the server accepts as the base64 image), memoised. */
function dataUrl(blob) {
  let p = dataUrls.get(blob);
  if (!p) {
    p = new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(r.result);
      r.onerror = () => reject(new ApiError('The image could not be read in the browser.', { code: 'read_failed' }));
      r.readAsDataURL(blob);
    });
    dataUrls.set(blob, p);
  }
  return p;
}

/**
 * POST /explain. params: image (Blob), name (file name), methods [str], classes [int]
 * | undefined (default: the top-1 prediction), concept (id) | undefined, size [h, w] |
 * undefined, topK, samples, async (bool). Sent as multipart/form-data (the image bytes
 * as they are), except when `classes` is an empty list (a concept alone), which only JSON
 * can say. Resolves with {status: 200, data: result} or {status: 202, data: job}.
 */
export async function explain(params, signal) {
  if (params.classes && params.classes.length === 0) {
    const body = { image: await dataUrl(params.image), methods: params.methods, classes: [] };
    if (params.concept) body.concept = params.concept;
    if (params.size) body.size = params.size;
    if (params.topK) body.top_k = params.topK;
    if (params.samples) body.samples = params.samples;
    if (params.async) body.async = true;
    return request('/explain', { method: 'POST', body, signal });
  }
  const f = new FormData();
  f.append('image', params.image, params.name || 'image');
  f.append('methods', params.methods.join(','));
  if (params.classes) f.append('classes', params.classes.join(','));
  if (params.concept) f.append('concept', params.concept);
  if (params.size) f.append('size', `${params.size[0]}x${params.size[1]}`);
  if (params.topK) f.append('top_k', String(params.topK));
  if (params.samples) f.append('samples', String(params.samples));
  if (params.async) f.append('async', 'true');
  return request('/explain', { method: 'POST', body: f, signal });
}

/** GET /jobs/{id} */
export async function getJob(id, signal) {
  return (await request(`/jobs/${encodeURIComponent(id)}`, { signal, retries: 0 })).data;
}

/** DELETE /jobs/{id} */
export async function cancelJob(id) {
  return (await request(`/jobs/${encodeURIComponent(id)}`, { method: 'DELETE', retries: 0 })).data;
}

/**
 * Polls a job until it is done, failed or cancelled; onProgress(fraction, state) on
 * every answer. Resolves with the finished job. The polling interval starts short and
 * grows (a quick job finishes in a few hundred ms, a long one is not hammered).
 */
export async function waitJob(id, onProgress, signal) {
  let delay = 80;
  for (;;) {
    const job = await getJob(id, signal);
    onProgress?.(job.progress ?? 0, job.state);
    if (job.state === 'done' || job.state === 'failed' || job.state === 'cancelled') return job;
    await sleep(delay, signal);
    delay = Math.min(Math.round(delay * 1.3), 400);
  }
}

/** GET /concepts -> [{id, name, images, created}] */
export async function listConcepts(signal) {
  return (await request('/concepts', { signal })).data.concepts;
}

/** POST /concepts (multipart: name + image parts). images: [{blob, name}] */
export async function createConcept(name, images, signal) {
  const f = new FormData();
  f.append('name', name);
  for (const im of images) f.append('image', im.blob, im.name || 'image');
  return (await request('/concepts', { method: 'POST', body: f, signal, retries: 2 })).data;
}

/** DELETE /concepts/{id} */
export async function deleteConcept(id) {
  await request(`/concepts/${encodeURIComponent(id)}`, { method: 'DELETE', retries: 0 });
}

/** The demo's example scenes and item images (static/examples/index.json); null if absent. */
export async function getExamples(signal) {
  try {
    const res = await fetch('examples/index.json', { signal });
    if (!res.ok) return null;
    const data = await res.json();
    return {
      scenes: Array.isArray(data.scenes) ? data.scenes : [],
      items: Array.isArray(data.items) ? data.items : [],
    };
  } catch (e) {
    if (e?.name === 'AbortError') throw e;
    return null;
  }
}
