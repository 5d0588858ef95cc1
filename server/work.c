/* work.c - the worker pool: a bounded queue of tasks served by libuv threads, each
 * with its own engine workspaces; runs /explain and concept creation and writes the
 * answers (JSON or PNG). See srv.h for the threading model.
 *
 * Per worker, allocated once at start for the largest input (max_h x max_w): the
 * forward workspace (recording every block, switched on only for RP and TAM), the
 * explanation scratch, the input tensor, the score maps of a request and a buffer for
 * the cached forward state. The request path allocates only the encoded answer and the
 * decoded image.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>
#include <nettle/sha2.h>

#include "errors.h"
#include "image.h"
#include "render.h"
#include "srv.h"
#include "util.h"

struct srv_worker {
    srv *s;
    int index;
    uv_thread_t thread;
    vit_ws *ws;
    explain_ws *ews;
    float *x;            // (3, max_h, max_w) model input
    float *scores;       // (EXPLAIN_NMETHODS * SRV_MAX_TARGETS, max_n) maps of a request
    char *state;         // cache value: srv_img_meta + vit state of the largest grid
    size_t state_cap;
    double *acc;         // (D) concept: sum of latents
};

// What the cache keeps beside the forward state: the uploaded image's description.
typedef struct {
    int w, h;
    char fmt[8];
} srv_img_meta;

char *srv_error_json(const char *code, const char *message) {
    srv_buf b = {0};
    srv_buf_add(&b, "{\"error\":{\"code\":");
    srv_buf_str(&b, code);
    srv_buf_add(&b, ",\"message\":");
    srv_buf_str(&b, message);
    srv_buf_add(&b, "}}");
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- answers -------------------------------------------------------------------------- */

static void task_answer(srv_task *t, int status, char *body, size_t len, const char *type) {
    free(t->body);
    t->status = status;
    t->body = body;
    t->body_len = len;
    t->content_type = type;
}

static void task_error(srv_task *t, int status, const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void task_error(srv_task *t, int status, const char *code, const char *fmt, ...) {
    char msg[CDAM_ERR_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *body = srv_error_json(code, msg);
    task_answer(t, status, body, body ? strlen(body) : 0, "application/json");
}

void srv_task_free(srv_task *t) {
    if (!t) return;
    for (int i = 0; i < t->nimages; i++) free(t->images[i]);
    srv_explain_req_free(&t->req);
    free(t->concept_vec);
    free(t->body);
    free(t);
}

/* ---- the queue -------------------------------------------------------------------------- */

int srv_submit(srv *s, srv_task *t) {
    uv_mutex_lock(&s->qlock);
    if (s->stopping || s->qlen >= s->cfg.queue) {
        uv_mutex_unlock(&s->qlock);
        return -1;
    }
    s->q[(s->qhead + s->qlen++) % s->cfg.queue] = t;
    uv_cond_signal(&s->qcond);
    uv_mutex_unlock(&s->qlock);
    return 0;
}

int srv_queue_depth(srv *s) {
    uv_mutex_lock(&s->qlock);
    int n = s->qlen;
    uv_mutex_unlock(&s->qlock);
    return n;
}

// Next task, or NULL once stopping and the queue is empty.
static srv_task *next_task(srv *s) {
    uv_mutex_lock(&s->qlock);
    while (s->qlen == 0 && !s->stopping) uv_cond_wait(&s->qcond, &s->qlock);
    srv_task *t = NULL;
    if (s->qlen > 0) {
        t = s->q[s->qhead];
        s->qhead = (s->qhead + 1) % s->cfg.queue;
        s->qlen--;
    }
    uv_mutex_unlock(&s->qlock);
    return t;
}

/* ---- running a task ------------------------------------------------------------------ */

typedef struct {
    srv *s;
    srv_task *t;
    int timed_out;
} progress_ctx;

// TAM's progress callback: job progress and cancellation, the deadline of a synchronous
// request, and server shutdown.
static int on_progress(void *ctx, double f) {
    progress_ctx *p = ctx;
    if (p->s->stopping) return 1;
    if (p->t->job_id[0]) return srv_jobs_progress(p->s->jobs, p->t->job_id, f);
    if (p->t->deadline > 0 && srv_now() > p->t->deadline) {
        p->timed_out = 1;
        return 1;
    }
    return 0;
}

// Maps an image decoding failure to the HTTP error.
static void image_error(srv_task *t, int rc, int index, const char *err) {
    char which[32] = "";
    if (t->nimages > 1) snprintf(which, sizeof which, "image %d: ", index + 1);
    if (rc == CDAM_ELIMIT) task_error(t, 413, "image_too_large", "%s%s", which, err);
    else if (rc == CDAM_ENOMEM) task_error(t, 500, "internal", "%sout of memory decoding the image", which);
    else task_error(t, 400, "bad_image", "%s%s", which, err);
}

static int need_records(const srv_explain_req *r) {
    for (int i = 0; i < r->nmethods; i++)
        if (r->methods[i] == EXPLAIN_RP || r->methods[i] == EXPLAIN_TAM) return 1;
    return 0;
}

static const char *method_title(int k) {
    static const char *t[] = {"CDAM", "Smooth CDAM", "Integrated CDAM", "AM", "RP", "TAM"};
    return k >= 0 && k < EXPLAIN_NMETHODS ? t[k] : "?";
}

static void run_explain(srv_worker *w, srv_task *t) {
    srv *s = w->s;
    const vit_model *m = s->model;
    const vit_config *c = &m->cfg;
    srv_explain_req *r = &t->req;
    char err[CDAM_ERR_MAX];
    double t0 = srv_now(), t_dec = 0, t_fwd = 0;
    img_rgb8 im = {0};
    srv_img_meta meta = {0};

    unsigned char key[SHA256_DIGEST_SIZE];
    struct sha256_ctx h;
    sha256_init(&h);
    sha256_update(&h, t->image_len[0], t->images[0]);
    sha256_digest(&h, sizeof key, key);

    int full = need_records(r), hit = 0, rc;
    size_t sbytes = sizeof meta + vit_state_bytes(m, r->H / c->P, r->W / c->P), len = 0;
    if (!full && !r->png && srv_cache_get(s->cache, key, r->H, r->W, w->state, w->state_cap, &len) && len == sbytes &&
        vit_state_load(m, w->ws, w->state + sizeof meta, len - sizeof meta, err) == 0) {
        memcpy(&meta, w->state, sizeof meta);
        hit = 1;
    }
    if (!hit) {
        double a = srv_now();
        if ((rc = img_decode(t->images[0], t->image_len[0], s->cfg.max_pixels, &im, err)) < 0) {
            image_error(t, rc, 0, err);
            return;
        }
        const char *fmt = img_sniff(t->images[0], t->image_len[0]);
        meta.w = im.w, meta.h = im.h;
        snprintf(meta.fmt, sizeof meta.fmt, "%s", fmt ? fmt : "?");
        if ((rc = img_to_input(&im, r->H, r->W, c->mean, c->std, w->x, err)) < 0) {
            img_free(&im);
            task_error(t, 500, "internal", "%s", err);
            return;
        }
        double b = srv_now();
        t_dec = b - a;
        vit_ws_record(w->ws, full, NULL);
        if ((rc = vit_forward(m, w->ws, w->x, r->H, r->W, err)) < 0) {
            img_free(&im);
            task_error(t, 500, "internal", "forward pass: %s", err);
            return;
        }
        t_fwd = srv_now() - b;
        memcpy(w->state, &meta, sizeof meta);
        vit_state_save(m, w->ws, w->state + sizeof meta);
        srv_cache_put(s->cache, key, r->H, r->W, w->state, sbytes);
    }
    const vit_ws *ws = w->ws;
    long n = (long)ws->gh * ws->gw;

    // Targets: the classes (default: the top-1 prediction), the concept, the embedding.
    explain_target tg[SRV_MAX_TARGETS];
    int nt = 0;
    for (int i = 0; i < r->nclasses; i++) tg[nt++] = (explain_target){0, r->classes[i], NULL};
    if (r->default_class) {
        tg[0] = (explain_target){0, 0, NULL};
        vit_topk(ws->logits, c->C, 1, &tg[0].cls);
        nt = 1;
    }
    int i_concept = -1, i_embed = -1;
    if (r->has_concept) i_concept = nt, tg[nt++] = (explain_target){1, 0, t->concept_vec};
    if (r->has_embedding) i_embed = nt, tg[nt++] = (explain_target){1, 0, r->embedding};

    explain_opts o;
    explain_opts_default(&o);
    o.samples = r->samples;
    o.sigma = r->sigma;
    o.seed = r->seed;
    o.head = r->head;
    o.threshold = r->threshold;
    progress_ctx pc = {s, t, 0};
    o.progress = on_progress;
    o.progress_ctx = &pc;

    double e0 = srv_now();
    int nmaps[EXPLAIN_NMETHODS];
    float *maps[EXPLAIN_NMETHODS];
    float *sc = w->scores;
    for (int k = 0; k < r->nmethods; k++) {
        int meth = r->methods[k];
        maps[k] = sc;
        nmaps[k] = meth == EXPLAIN_AM ? 1 : nt;
        switch (meth) {
        case EXPLAIN_CDAM: rc = explain_cdam(m, ws, w->ews, tg, nt, sc, err); break;
        case EXPLAIN_SMOOTH_CDAM: rc = explain_smooth_cdam(m, ws, w->ews, tg, nt, &o, sc, err); break;
        case EXPLAIN_INTEGRATED_CDAM: rc = explain_integrated_cdam(m, ws, w->ews, tg, nt, &o, sc, err); break;
        case EXPLAIN_AM: rc = explain_am(m, ws, &o, sc, err); break;
        case EXPLAIN_RP:
            rc = 0;
            for (int i = 0; i < nt && rc == 0; i++) rc = explain_rp(m, w->ws, w->ews, &tg[i], &o, sc + i * n, err);
            break;
        case EXPLAIN_TAM: rc = explain_tam(m, w->ws, w->ews, w->x, tg, nt, &o, sc, err); break;
        default: rc = cdam_fail(err, CDAM_EINVAL, "unknown method");
        }
        if (rc == 0 && t->deadline > 0 && !t->job_id[0] && srv_now() > t->deadline) {
            pc.timed_out = 1;
            rc = CDAM_ECANCELLED;
        }
        if (rc < 0) {
            img_free(&im);
            if (rc == CDAM_ECANCELLED && pc.timed_out)
                task_error(t, 504, "timeout", "the request ran past its deadline of %ld ms", s->cfg.deadline_ms);
            else if (rc == CDAM_ECANCELLED) task_error(t, 499, "cancelled", "cancelled");
            else if (rc == CDAM_ELIMIT) task_error(t, 400, "bad_size", "%s: %s", explain_method_name(meth), err);
            else task_error(t, 500, "internal", "%s: %s", explain_method_name(meth), err);
            return;
        }
        sc += (long)nmaps[k] * n;
    }
    double e1 = srv_now();

    if (r->png) {
        render_tile tiles[EXPLAIN_NMETHODS * SRV_MAX_TARGETS];
        char caps[EXPLAIN_NMETHODS * SRV_MAX_TARGETS][160];
        int ntile = 0;
        for (int k = 0; k < r->nmethods; k++)
            for (int i = 0; i < nmaps[k]; i++) {
                const char *what = "";
                if (r->methods[k] != EXPLAIN_AM)
                    what = i == i_concept ? t->concept_name : i == i_embed ? "embedding" : m->labels[tg[i].cls];
                snprintf(caps[ntile], sizeof caps[ntile], "%s%s%s", method_title(r->methods[k]), *what ? ": " : "", what);
                tiles[ntile] = (render_tile){maps[k] + (long)i * n, ws->gh, ws->gw, caps[ntile]};
                ntile++;
            }
        render_opts ro;
        render_opts_default(&ro);
        ro.max_side = 768;
        img_rgb8 out = {0};
        uint8_t *png = NULL;
        size_t plen = 0;
        rc = ntile == 1 ? render_map(tiles[0].map, ws->gh, ws->gw, &im, &ro, &out, NULL, err)
                        : render_panel(&im, tiles, ntile, 0, &ro, &out, err);
        if (rc == 0) rc = render_png_encode(&out, &png, &plen, err);
        img_free(&out);
        img_free(&im);
        if (rc < 0) task_error(t, 500, "internal", "rendering: %s", err);
        else task_answer(t, 200, (char *)png, plen, "image/png");
        return;
    }
    img_free(&im);

    srv_buf b = {0};
    srv_buf_add(&b, "{\"model\":");
    srv_buf_str(&b, c->name);
    srv_buf_add(&b, ",\"input\":{\"width\":%d,\"height\":%d},\"image\":{\"width\":%d,\"height\":%d,\"format\":", ws->W,
              ws->H, meta.w, meta.h);
    srv_buf_str(&b, meta.fmt);
    srv_buf_add(&b, "},\"grid\":{\"rows\":%d,\"cols\":%d},\"predictions\":[", ws->gh, ws->gw);
    if (c->C > 0) {
        int top[256], k = r->top_k < 256 ? r->top_k : 256;
        double mx = -INFINITY, z = 0;
        for (int i = 0; i < c->C; i++) mx = ws->logits[i] > mx ? ws->logits[i] : mx;
        for (int i = 0; i < c->C; i++) z += exp(ws->logits[i] - mx);
        vit_topk(ws->logits, c->C, k, top);
        for (int i = 0; i < k; i++) {
            srv_buf_add(&b, "%s{\"index\":%d,\"label\":", i ? "," : "", top[i]);
            srv_buf_str(&b, m->labels[top[i]]);
            srv_buf_add(&b, ",\"logit\":");
            srv_buf_float(&b, ws->logits[top[i]]);
            srv_buf_add(&b, ",\"probability\":");
            srv_buf_float(&b, exp(ws->logits[top[i]] - mx) / z);
            srv_buf_add(&b, "}");
        }
    }
    srv_buf_add(&b, "],\"explanations\":[");
    int first = 1;
    for (int k = 0; k < r->nmethods; k++)
        for (int i = 0; i < nmaps[k]; i++) {
            const float *map = maps[k] + (long)i * n;
            srv_buf_add(&b, "%s{\"method\":\"%s\",\"target\":", first ? "" : ",", explain_method_name(r->methods[k]));
            first = 0;
            if (r->methods[k] == EXPLAIN_AM) {
                srv_buf_add(&b, "null");
            } else if (i == i_concept) {
                srv_buf_add(&b, "{\"type\":\"concept\",\"id\":");
                srv_buf_str(&b, r->concept_id);
                srv_buf_add(&b, ",\"name\":");
                srv_buf_str(&b, t->concept_name);
                srv_buf_add(&b, "}");
            } else if (i == i_embed) {
                srv_buf_add(&b, "{\"type\":\"embedding\"}");
            } else {
                srv_buf_add(&b, "{\"type\":\"class\",\"index\":%d,\"label\":", tg[i].cls);
                srv_buf_str(&b, m->labels[tg[i].cls]);
                srv_buf_add(&b, "}");
            }
            float lo = INFINITY, hi = -INFINITY;
            srv_buf_add(&b, ",\"scores\":[");
            for (long j = 0; j < n; j++) {
                float v = isfinite(map[j]) ? map[j] : 0;
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                if (j) srv_buf_add(&b, ",");
                srv_buf_float(&b, v);
            }
            srv_buf_add(&b, "],\"min\":");
            srv_buf_float(&b, lo);
            srv_buf_add(&b, ",\"max\":");
            srv_buf_float(&b, hi);
            srv_buf_add(&b, "}");
        }
    double end = srv_now();
    srv_buf_add(&b, "],\"timing_ms\":{\"queue\":%.3f,\"decode\":%.3f,\"forward\":%.3f,\"explain\":%.3f,\"total\":%.3f},"
                  "\"cache\":\"%s\"}",
              (t0 - t->t_arrive) * 1e3, t_dec * 1e3, t_fwd * 1e3, (e1 - e0) * 1e3, (end - t->t_arrive) * 1e3,
              hit ? "hit" : "miss");
    if (b.oom) {
        free(b.p);
        task_error(t, 500, "internal", "out of memory writing the answer");
        return;
    }
    task_answer(t, 200, b.p, b.len, "application/json");
}

static void run_concept(srv_worker *w, srv_task *t) {
    srv *s = w->s;
    const vit_model *m = s->model;
    const vit_config *c = &m->cfg;
    char err[CDAM_ERR_MAX];
    int H = c->g0 * c->P, W = H, rc;
    for (int d = 0; d < c->D; d++) w->acc[d] = 0;
    for (int i = 0; i < t->nimages; i++) {
        img_rgb8 im;
        if ((rc = img_decode(t->images[i], t->image_len[i], s->cfg.max_pixels, &im, err)) < 0) {
            image_error(t, rc, i, err);
            return;
        }
        rc = img_to_input(&im, H, W, c->mean, c->std, w->x, err);
        img_free(&im);
        vit_ws_record(w->ws, 0, NULL);
        if (rc == 0) rc = vit_forward(m, w->ws, w->x, H, W, err);
        if (rc < 0) {
            task_error(t, 500, "internal", "%s", err);
            return;
        }
        const float *z = explain_latent(m, w->ws);
        for (int d = 0; d < c->D; d++) w->acc[d] += z[d];
    }
    float *emb = (float *)w->scores;  // D floats of scratch
    for (int d = 0; d < c->D; d++) emb[d] = (float)(w->acc[d] / t->nimages);
    // The answer's buffer comes before the store: once the concept is stored, writing the
    // answer cannot fail (else a client told 500 would find the concept listed).
    size_t cap = 1024 + 6 * strlen(t->name) + (size_t)c->D * 20;  // name escaped, "%.9g," per float
    srv_buf b = {malloc(cap), 0, cap, 0};
    if (!b.p) {
        task_error(t, 500, "internal", "out of memory writing the answer");
        return;
    }
    srv_concept_info info;
    if ((rc = srv_store_add(s->store, t->name, t->nimages, emb, &info, err)) < 0) {
        free(b.p);
        if (rc == CDAM_ENOSPC) task_error(t, 507, "storage_full", "the concept could not be stored: %s", err);
        else if (rc == CDAM_ELIMIT) task_error(t, 507, "storage_full", "%s", err);
        else task_error(t, 500, "internal", "the concept could not be stored: %s", err);
        return;
    }
    srv_buf_add(&b, "{\"id\":");
    srv_buf_str(&b, info.id);
    srv_buf_add(&b, ",\"name\":");
    srv_buf_str(&b, info.name);
    srv_buf_add(&b, ",\"images\":%d,\"embedding\":[", info.images);
    for (int d = 0; d < c->D; d++) {
        if (d) srv_buf_add(&b, ",");
        srv_buf_float(&b, emb[d]);
    }
    srv_buf_add(&b, "],\"created\":%.6f}", info.created);
    if (b.oom) {
        free(b.p);
        task_error(t, 500, "internal", "out of memory writing the answer");
        return;
    }
    task_answer(t, 201, b.p, b.len, "application/json");
}

static void worker_main(void *arg) {
    srv_worker *w = arg;
    srv *s = w->s;
    srv_task *t;
    while ((t = next_task(s))) {
        atomic_fetch_add(&s->busy, 1);
        int job = t->job_id[0] != 0;
        if (job && srv_jobs_start(s->jobs, t->job_id) < 0) {
            srv_task_free(t);  // cancelled while queued
            atomic_fetch_sub(&s->busy, 1);
            continue;
        }
        if (s->stopping && !job) {
            task_error(t, 503, "shutting_down", "the server is shutting down");
        } else if (!job && t->deadline > 0 && srv_now() > t->deadline) {
            task_error(t, 504, "timeout", "the request waited in the queue past its deadline of %ld ms", s->cfg.deadline_ms);
        } else if (t->kind == SRV_TASK_EXPLAIN) {
            run_explain(w, t);
        } else {
            run_concept(w, t);
        }
        atomic_fetch_sub(&s->busy, 1);
        if (job) {
            if (t->status == 200 || t->status == 201) {
                srv_jobs_finish(s->jobs, t->job_id, SRV_JOB_DONE, t->body, NULL, NULL);
                t->body = NULL;
            } else if (t->status == 499) {
                srv_jobs_finish(s->jobs, t->job_id, SRV_JOB_CANCELLED, NULL, NULL, NULL);
            } else {
                // the error body is {"error":{"code","message"}}: pass code and message
                cJSON *j = cJSON_ParseWithLength(t->body ? t->body : "", t->body_len);
                cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
                const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code"), *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
                srv_jobs_finish(s->jobs, t->job_id, SRV_JOB_FAILED, NULL, cJSON_IsString(code) ? code->valuestring : "internal",
                                cJSON_IsString(msg) ? msg->valuestring : "failed");
                cJSON_Delete(j);
            }
            srv_task_free(t);
        } else {
            struct MHD_Connection *conn = t->conn;
            atomic_store(&t->done, 1);
            MHD_resume_connection(conn);  // the HTTP thread answers and frees t
        }
    }
}

static void worker_free(srv_worker *w) {
    explain_ws_free(w->ews);
    vit_ws_free(w->ws);
    free(w->x);
    free(w->scores);
    free(w->state);
    free(w->acc);
}

int srv_workers_start(srv *s, char *err) {
    const vit_model *m = s->model;
    const vit_config *c = &m->cfg;
    int rc;
    if (!(s->q = calloc((size_t)s->cfg.queue, sizeof *s->q)) || !(s->workers = calloc((size_t)s->cfg.workers, sizeof *s->workers)))
        return cdam_fail(err, CDAM_ENOMEM, "out of memory");
    long n = (long)(s->max_h / c->P) * (s->max_w / c->P);
    for (int i = 0; i < s->cfg.workers; i++) {
        srv_worker *w = &s->workers[i];
        w->s = s;
        w->index = i;
        w->state_cap = sizeof(srv_img_meta) + vit_state_bytes(m, s->max_h / c->P, s->max_w / c->P);
        if ((rc = vit_ws_create(m, s->max_h, s->max_w, s->cfg.threads_per_worker, VIT_REC_BLOCKS, &w->ws, err)) < 0 ||
            (rc = explain_ws_create(m, w->ws, NULL, &w->ews, err)) < 0) {
            worker_free(w);
            return rc;
        }
        w->x = calloc((size_t)3 * s->max_h * s->max_w, sizeof(float));
        w->scores = calloc((size_t)EXPLAIN_NMETHODS * SRV_MAX_TARGETS * (size_t)(n > c->D ? n : c->D), sizeof(float));
        w->state = calloc(1, w->state_cap);
        w->acc = calloc((size_t)c->D, sizeof(double));
        if (!w->x || !w->scores || !w->state || !w->acc) {
            worker_free(w);
            return cdam_fail(err, CDAM_ENOMEM, "out of memory for worker %d", i);
        }
        s->nworkers = i + 1;
    }
    for (int i = 0; i < s->nworkers; i++)
        if (uv_thread_create(&s->workers[i].thread, worker_main, &s->workers[i]) != 0) {
            s->nworkers = i;
            srv_workers_stop(s);
            return cdam_fail(err, CDAM_ENOMEM, "cannot start worker thread %d", i);
        }
    return 0;
}

void srv_workers_stop(srv *s) {
    uv_mutex_lock(&s->qlock);
    s->stopping = 1;
    uv_cond_broadcast(&s->qcond);
    uv_mutex_unlock(&s->qlock);
    for (int i = 0; i < s->nworkers; i++) uv_thread_join(&s->workers[i].thread);
    for (int i = 0; i < s->cfg.workers && s->workers; i++) worker_free(&s->workers[i]);
    free(s->workers);
    s->workers = NULL;
    s->nworkers = 0;
    free(s->q);
    s->q = NULL;
}
