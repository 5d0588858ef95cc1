/* http.c - the HTTP front: libmicrohttpd parses requests, this file routes them,
 * validates them (request.c), hands model work to the queue (work.c) with the
 * connection suspended, and answers everything else (model, health, metrics, concepts,
 * jobs, static files) itself. Every error is JSON {"error": {"code", "message"}}.
 *
 * A connection's life: first call (headers only) -> early refusals (401, 413 by
 * Content-Length, 415) or a conn_state; upload calls -> the body accumulates (JSON) or
 * goes through MHD's multipart parser (fields and image parts); last call -> dispatch.
 * Model work: suspend, submit; the worker fills the task and resumes the connection;
 * the next call answers from the task. Completion: one log line, metrics, cleanup.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "errors.h"
#include "srv.h"
#include "util.h"

enum { R_OTHER, R_HEALTHZ, R_MODEL, R_METRICS, R_EXPLAIN, R_CONCEPTS, R_CONCEPT_ID, R_JOB_ID, R_STATIC };
static const char *route_names[] = {"other", "/healthz", "/model", "/metrics", "/explain", "/concepts", "/concepts/{id}",
                                    "/jobs/{id}", "static"};

#define FIELD_MAX (1 << 20)   // one multipart text field

typedef struct {
    srv *s;
    int route;
    char method[16];
    char path[256];
    char id[80];              // {id} of the route
    double t0;
    int first_done;
    // body
    int multipart;
    char *body;
    size_t len, cap;
    size_t received;
    int too_big;
    int body_oom;             // the body buffer could not grow: answered 500
    unsigned long oom0;       // srv_oom_count() when the request started
    struct MHD_PostProcessor *pp;
    int pp_failed;
    cJSON *fields;            // multipart text fields as JSON
    char *fkey;               // the text field being read
    char *fval;
    size_t flen;
    int fields_oom;
    unsigned char *img[SRV_MAX_IMAGES];
    size_t img_len[SRV_MAX_IMAGES], img_cap[SRV_MAX_IMAGES];
    int nimg, too_many_images;
    int nparts;               // multipart iterator calls: 0 = nothing parsed
    // model work
    srv_task *task;
    int counted;              // counted in srv.inflight until answered or closed
    int rejected;             // queue full after suspending
    // answer
    int status;
    size_t bytes;
} conn_state;

/* ---- connections: the header deadline ------------------------------------------------------ */

// Every open connection, from accept (and again after each answer) until its request's
// headers are complete: srv_http_sweep shuts down the socket of one that waits longer than
// --timeout-s, and libmicrohttpd then closes it. The list's lock is also held by
// on_connection's CLOSED notification, which libmicrohttpd sends before closing the
// socket: a swept fd is always still the connection's own.
typedef struct conn_track {
    struct conn_track *prev, *next;
    int fd;
    double waiting_since;     // monotonic seconds; 0: a request is being handled (or swept)
} conn_track;

static pthread_mutex_t track_lock = PTHREAD_MUTEX_INITIALIZER;
static conn_track tracked = {&tracked, &tracked, -1, 0};

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    (void)cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_track *t = ci ? calloc(1, sizeof *t) : NULL;  // out of memory: this one has only the idle timeout
        if (!t) return;
        t->fd = ci->connect_fd;
        t->waiting_since = srv_now();
        pthread_mutex_lock(&track_lock);
        t->prev = &tracked, t->next = tracked.next;
        tracked.next->prev = t, tracked.next = t;
        pthread_mutex_unlock(&track_lock);
        *socket_context = t;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context) {
        conn_track *t = *socket_context;
        pthread_mutex_lock(&track_lock);
        t->prev->next = t->next, t->next->prev = t->prev;
        pthread_mutex_unlock(&track_lock);
        free(t);
        *socket_context = NULL;
    }
}

// The connection's headers are complete (waiting = 0) or it waits for the next ones (1).
static void track_waiting(struct MHD_Connection *c, int waiting) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_track *t = ci ? ci->socket_context : NULL;
    if (!t) return;
    pthread_mutex_lock(&track_lock);
    t->waiting_since = waiting ? srv_now() : 0;
    pthread_mutex_unlock(&track_lock);
}

void srv_http_sweep(srv *s) {
    double now = srv_now();
    int n = 0;
    pthread_mutex_lock(&track_lock);
    for (conn_track *t = tracked.next; t != &tracked; t = t->next)
        if (t->waiting_since > 0 && now - t->waiting_since > s->cfg.timeout_s) {
            shutdown(t->fd, SHUT_RDWR);  // libmicrohttpd sees the end and closes it
            t->waiting_since = 0;
            n++;
        }
    pthread_mutex_unlock(&track_lock);
    if (n) srv_log("closed %d connection(s): no complete request headers within %d s", n, s->cfg.timeout_s);
}

/* ---- answers -------------------------------------------------------------------------- */

// The state of a request whose conn_state could not be allocated (answered 500 at once).
static conn_state oom_state;

static void add_common_headers(conn_state *cs, struct MHD_Connection *c, struct MHD_Response *r) {
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    const char *cors = cs->s->cfg.cors;
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (cors && *cors && origin) {
        if (!strcmp(cors, "*")) {
            MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
        } else {
            size_t ol = strlen(origin);
            for (const char *p = cors; *p;) {
                const char *q = strchr(p, ',');
                size_t n = q ? (size_t)(q - p) : strlen(p);
                if (n == ol && !strncmp(p, origin, n)) {
                    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
                    MHD_add_response_header(r, "Vary", "Origin");
                    break;
                }
                p = q ? q + 1 : p + n;
            }
        }
    }
}

static enum MHD_Result send_buf(conn_state *cs, struct MHD_Connection *c, int status, char *body, size_t len,
                                const char *type, const char *h1, const char *v1) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    if (type) MHD_add_response_header(r, "Content-Type", type);
    if (h1) MHD_add_response_header(r, h1, v1);
    add_common_headers(cs, c, r);
    cs->status = status;
    cs->bytes = len;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

// The answer when memory ran out: 500 {"error": {"code": "internal", ...}} from a static
// buffer, so that it needs no allocation of ours (cs may be NULL).
static enum MHD_Result send_oom(conn_state *cs, struct MHD_Connection *c) {
    static const char body[] = "{\"error\":{\"code\":\"internal\",\"message\":\"the server is out of memory\"}}";
    struct MHD_Response *r = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (cs) {
        add_common_headers(cs, c, r);
        cs->status = 500;
        cs->bytes = sizeof body - 1;
    }
    enum MHD_Result ret = MHD_queue_response(c, 500, r);
    MHD_destroy_response(r);
    return ret;
}

// Whether cJSON ran out of memory on this thread since the request started (util.h).
static int oom_since_start(const conn_state *cs) { return srv_oom_count() != cs->oom0; }

// body: malloc'd text (NULL: out of memory -> 500).
static enum MHD_Result send_json(conn_state *cs, struct MHD_Connection *c, int status, char *body) {
    if (!body) return send_oom(cs, c);
    return send_buf(cs, c, status, body, strlen(body), "application/json", NULL, NULL);
}

static enum MHD_Result send_error(conn_state *cs, struct MHD_Connection *c, int status, const char *code,
                                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum MHD_Result send_error(conn_state *cs, struct MHD_Connection *c, int status, const char *code,
                                  const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char *body = srv_error_json(code, msg);
    if (!body) return send_oom(cs, c);
    const char *h = NULL, *v = NULL;
    if (status == 503 && !strcmp(code, "queue_full")) h = "Retry-After", v = "1";
    if (status == 405) {
        h = "Allow";
        switch (cs->route) {
        case R_EXPLAIN: v = "POST"; break;
        case R_CONCEPTS: v = "GET, POST"; break;
        case R_CONCEPT_ID: case R_JOB_ID: v = "GET, DELETE"; break;
        default: v = "GET, HEAD"; break;
        }
    }
    if (status == 401) h = "WWW-Authenticate", v = "Bearer";
    return send_buf(cs, c, status, body, strlen(body), "application/json", h, v);
}

static enum MHD_Result send_srv_error(conn_state *cs, struct MHD_Connection *c, const srv_error *e) {
    return send_error(cs, c, e->status, e->code, "%s", e->msg);
}

/* ---- routing ---------------------------------------------------------------------------- */

static int route_of(const char *url, char *id, size_t idn) {
    id[0] = 0;
    if (!strcmp(url, "/healthz")) return R_HEALTHZ;
    if (!strcmp(url, "/model")) return R_MODEL;
    if (!strcmp(url, "/metrics")) return R_METRICS;
    if (!strcmp(url, "/explain")) return R_EXPLAIN;
    if (!strcmp(url, "/concepts") || !strcmp(url, "/concepts/")) return R_CONCEPTS;
    if (!strncmp(url, "/concepts/", 10) && !strchr(url + 10, '/')) {
        snprintf(id, idn, "%s", url + 10);
        return R_CONCEPT_ID;
    }
    if (!strncmp(url, "/jobs/", 6) && url[6] && !strchr(url + 6, '/')) {
        snprintf(id, idn, "%s", url + 6);
        return R_JOB_ID;
    }
    if (!strncmp(url, "/explain/", 9) || !strncmp(url, "/jobs", 5) || !strncmp(url, "/concepts/", 10) ||
        !strncmp(url, "/model/", 7) || !strncmp(url, "/healthz/", 9) || !strncmp(url, "/metrics/", 9))
        return R_OTHER;
    return R_STATIC;
}

static int method_allowed(int route, const char *m) {
    int get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST"), del = !strcmp(m, "DELETE");
    switch (route) {
    case R_HEALTHZ: case R_MODEL: case R_METRICS: case R_STATIC: return get;
    case R_EXPLAIN: return post;
    case R_CONCEPTS: return get || post;
    case R_CONCEPT_ID: case R_JOB_ID: return get || del;
    default: return 1;
    }
}

static int needs_key(int route) { return route != R_HEALTHZ && route != R_METRICS && route != R_STATIC && route != R_OTHER; }

// Constant-time comparison of the bearer token with the key.
static int key_ok(srv *s, struct MHD_Connection *c) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *key = s->cfg.api_key;
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(key);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++) diff |= (unsigned char)(key[i] ^ (i < a ? h[i] : 0));
    return diff == 0;
}

/* ---- request bodies ------------------------------------------------------------------- */

static void flush_field(conn_state *cs) {
    if (!cs->fkey) return;
    if (!cs->fields && !(cs->fields = srv_fields_new())) cs->fields_oom = 1;
    if (cs->fields && srv_fields_add(cs->fields, cs->fkey, cs->fval ? cs->fval : "") < 0) cs->fields_oom = 1;
    free(cs->fkey);
    free(cs->fval);
    cs->fkey = cs->fval = NULL;
    cs->flen = 0;
}

static int grow(unsigned char **p, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 65536;
    while (c < need) c *= 2;
    unsigned char *q = realloc(*p, c);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                 const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size) {
    (void)kind, (void)filename, (void)content_type, (void)transfer_encoding;
    conn_state *cs = cls;
    if (!key) return MHD_YES;
    cs->nparts++;
    if (size == 0) return MHD_YES;  // MHD may announce a value before its data: not a new value
    if (!strcmp(key, "image") || !strcmp(key, "images") || !strcmp(key, "image[]")) {
        if (off == 0) {
            flush_field(cs);
            if (cs->nimg >= SRV_MAX_IMAGES) {
                cs->too_many_images = 1;
                return MHD_YES;
            }
            cs->nimg++;
        }
        if (cs->too_many_images) return MHD_YES;
        int i = cs->nimg - 1;
        if (grow(&cs->img[i], &cs->img_cap[i], cs->img_len[i] + size) < 0) {
            cs->fields_oom = 1;
            return MHD_NO;
        }
        memcpy(cs->img[i] + cs->img_len[i], data, size);
        cs->img_len[i] += size;
        return MHD_YES;
    }
    if (off == 0 || !cs->fkey || strcmp(cs->fkey, key)) {
        flush_field(cs);
        if (!(cs->fkey = strdup(key))) return cs->fields_oom = 1, MHD_NO;
    }
    if (cs->flen + size > FIELD_MAX) {
        cs->pp_failed = 1;
        return MHD_NO;
    }
    char *v = realloc(cs->fval, cs->flen + size + 1);
    if (!v) return cs->fields_oom = 1, MHD_NO;
    memcpy(v + cs->flen, data, size);
    cs->flen += size;
    v[cs->flen] = 0;
    cs->fval = v;
    return MHD_YES;
}

static void free_state(conn_state *cs) {
    if (!cs) return;
    if (cs->pp) MHD_destroy_post_processor(cs->pp);
    free(cs->body);
    cJSON_Delete(cs->fields);
    free(cs->fkey);
    free(cs->fval);
    for (int i = 0; i < SRV_MAX_IMAGES; i++) free(cs->img[i]);
    srv_task_free(cs->task);
    free(cs);
}

// The request's fields (JSON object) and images, from a JSON or multipart body. For JSON,
// img_key names the member holding base64 image(s) ("image" or "images"). 0 or -1 (e).
static int body_fields(conn_state *cs, const char *img_key, cJSON **root, srv_error *e) {
    *root = NULL;
    if (cs->multipart) {
        if (cs->pp) {
            enum MHD_Result ok = MHD_destroy_post_processor(cs->pp);
            cs->pp = NULL;
            if (ok != MHD_YES) cs->pp_failed = 1;
        }
        flush_field(cs);
        if (cs->fields_oom || oom_since_start(cs)) return srv_fail(e, 500, "internal", "out of memory reading the form");
        if (cs->pp_failed) return srv_fail(e, 400, "bad_multipart", "the multipart/form-data body is malformed or truncated");
        if (cs->nparts == 0)
            return srv_fail(e, 400, "bad_multipart", "no form fields or files in the multipart/form-data body (missing or wrong boundary?)");
        if (cs->too_many_images) return srv_fail(e, 400, "bad_request", "more than %d images", SRV_MAX_IMAGES);
        *root = cs->fields ? cs->fields : srv_fields_new();
        cs->fields = NULL;
        return *root ? 0 : srv_fail(e, 500, "internal", "out of memory");
    }
    if (cs->body_oom) return srv_fail(e, 500, "internal", "out of memory reading the body");
    if (cs->len == 0) return srv_fail(e, 400, "bad_json", "the request body is empty");
    cJSON *j = cJSON_ParseWithLength(cs->body, cs->len);
    if (!j && oom_since_start(cs)) return srv_fail(e, 500, "internal", "out of memory parsing the body");
    if (!j) return srv_fail(e, 400, "bad_json", "the body is not valid JSON (near byte %ld)",
                            cJSON_GetErrorPtr() ? (long)(cJSON_GetErrorPtr() - cs->body) : -1L);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return srv_fail(e, 400, "bad_json", "the body must be a JSON object");
    }
    cJSON *im = cJSON_GetObjectItemCaseSensitive(j, img_key);
    if (im && !cJSON_IsNull(im)) {
        int list = cJSON_IsArray(im);
        if ((!list && !cJSON_IsString(im)) || (!list && !strcmp(img_key, "images"))) {
            cJSON_Delete(j);
            return srv_fail(e, 400, "bad_request", "%s must be %s", img_key, !strcmp(img_key, "images") ? "a list of base64 strings" : "a base64 string");
        }
        int n = list ? cJSON_GetArraySize(im) : 1;
        if (n > SRV_MAX_IMAGES) {
            cJSON_Delete(j);
            return srv_fail(e, 400, "bad_request", "more than %d images", SRV_MAX_IMAGES);
        }
        for (int i = 0; i < n; i++) {
            cJSON *it = list ? cJSON_GetArrayItem(im, i) : im;
            if (!cJSON_IsString(it)) {
                cJSON_Delete(j);
                return srv_fail(e, 400, "bad_request", "%s[%d] must be a base64 string", img_key, i);
            }
            if (srv_base64_decode(it->valuestring, strlen(it->valuestring), &cs->img[cs->nimg], &cs->img_len[cs->nimg], e) < 0) {
                cJSON_Delete(j);
                return -1;
            }
            cs->nimg++;
        }
    }
    *root = j;
    return 0;
}

/* ---- handlers ------------------------------------------------------------------------- */

// cJSON_AddItemToObject / ToArray, freeing the item when it cannot be added (cJSON leaves
// it to the caller: out of memory for the key, or a NULL container).
static void add_or_free(cJSON *obj, const char *key, cJSON *item) {
    if (!cJSON_AddItemToObject(obj, key, item)) cJSON_Delete(item);
}

static void push_or_free(cJSON *arr, cJSON *item) {
    if (!cJSON_AddItemToArray(arr, item)) cJSON_Delete(item);
}

static enum MHD_Result answer_model(conn_state *cs, struct MHD_Connection *c) {
    const vit_model *m = cs->s->model;
    const vit_config *k = &m->cfg;
    cJSON *j = cJSON_CreateObject(), *labels = cJSON_CreateArray(), *methods = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "name", k->name);
    cJSON_AddNumberToObject(j, "patch_size", k->P);
    cJSON_AddNumberToObject(j, "embed_dim", k->D);
    cJSON_AddNumberToObject(j, "depth", k->L);
    cJSON_AddNumberToObject(j, "heads", k->H);
    int nat[2] = {k->g0 * k->P, k->g0 * k->P}, mx[2] = {cs->s->max_h, cs->s->max_w};
    add_or_free(j, "native_size", cJSON_CreateIntArray(nat, 2));
    add_or_free(j, "max_size", cJSON_CreateIntArray(mx, 2));
    cJSON_AddNumberToObject(j, "num_classes", k->C);
    for (int i = 0; i < k->C; i++) push_or_free(labels, cJSON_CreateString(m->labels[i]));
    add_or_free(j, "labels", labels);
    cJSON_AddStringToObject(j, "head", k->head_in == 0 ? "none" : k->head_in == k->D ? "linear" : "probe");
    for (int i = 0; i < EXPLAIN_NMETHODS; i++) push_or_free(methods, cJSON_CreateString(explain_method_name(i)));
    add_or_free(j, "methods", methods);
    char *txt = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (oom_since_start(cs)) {  // a part could not be added: no incomplete answer
        free(txt);
        return send_oom(cs, c);
    }
    return send_json(cs, c, 200, txt);
}

static enum MHD_Result answer_metrics(conn_state *cs, struct MHD_Connection *c) {
    srv *s = cs->s;
    srv_cache_stats cst;
    srv_cache_stats_get(s->cache, &cst);
    int jc[5];
    srv_jobs_counts(s->jobs, jc);
    char extra[2048];
    int k = snprintf(extra, sizeof extra,
                     "# HELP cdam_queue_depth Tasks waiting for a worker.\n# TYPE cdam_queue_depth gauge\ncdam_queue_depth %d\n"
                     "# HELP cdam_queue_capacity Size of the work queue.\n# TYPE cdam_queue_capacity gauge\ncdam_queue_capacity %d\n"
                     "# HELP cdam_workers Worker threads.\n# TYPE cdam_workers gauge\ncdam_workers %d\n"
                     "# HELP cdam_workers_busy Workers running a task.\n# TYPE cdam_workers_busy gauge\ncdam_workers_busy %d\n"
                     "# HELP cdam_cache_hits_total Forward-cache hits.\n# TYPE cdam_cache_hits_total counter\ncdam_cache_hits_total %llu\n"
                     "# HELP cdam_cache_misses_total Forward-cache misses.\n# TYPE cdam_cache_misses_total counter\ncdam_cache_misses_total %llu\n"
                     "# HELP cdam_cache_evictions_total Forward-cache evictions.\n# TYPE cdam_cache_evictions_total counter\ncdam_cache_evictions_total %llu\n"
                     "# HELP cdam_cache_bytes Bytes held by the forward cache.\n# TYPE cdam_cache_bytes gauge\ncdam_cache_bytes %zu\n"
                     "# HELP cdam_cache_entries Entries in the forward cache.\n# TYPE cdam_cache_entries gauge\ncdam_cache_entries %zu\n"
                     "# HELP cdam_jobs Jobs by state.\n# TYPE cdam_jobs gauge\n",
                     srv_queue_depth(s), s->cfg.queue, s->cfg.workers, atomic_load(&s->busy), cst.hits, cst.misses,
                     cst.evictions, cst.bytes, cst.entries);
    for (int i = 0; i < 5 && k < (int)sizeof extra; i++)
        k += snprintf(extra + k, sizeof extra - (size_t)k, "cdam_jobs{state=\"%s\"} %d\n", srv_job_state_name((srv_job_state)i), jc[i]);
    size_t len;
    char *txt = srv_metrics_render(s->metrics, extra, &len);
    if (!txt) return send_oom(cs, c);
    return send_buf(cs, c, 200, txt, len, "text/plain; version=0.0.4; charset=utf-8", NULL, NULL);
}

// {"id", "name", "images", "embedding" (floats as %.9g: they read back as the same
// float32), "created" (%.6f, as stored)}.
static char *concept_json(const srv_concept_info *in, const float *emb, int dim) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", in->id);
    cJSON_AddStringToObject(j, "name", in->name);
    cJSON_AddNumberToObject(j, "images", in->images);
    char *raw = malloc((size_t)dim * 24 + 8), num[48];
    if (!raw) {
        cJSON_Delete(j);
        return NULL;
    }
    size_t k = 0;
    raw[k++] = '[';
    for (int i = 0; i < dim; i++) k += (size_t)sprintf(raw + k, "%s%.9g", i ? "," : "", isfinite(emb[i]) ? emb[i] : 0.0f);
    raw[k++] = ']';
    raw[k] = 0;
    cJSON_AddRawToObject(j, "embedding", raw);
    free(raw);
    snprintf(num, sizeof num, "%.6f", in->created);
    cJSON_AddRawToObject(j, "created", num);
    char *t = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return t;
}

static enum MHD_Result answer_concepts_get(conn_state *cs, struct MHD_Connection *c) {
    srv *s = cs->s;
    if (cs->route == R_CONCEPTS) {
        srv_concept_info *list;
        int n;
        if (srv_store_list(s->store, &list, &n) < 0) return send_error(cs, c, 500, "internal", "out of memory");
        cJSON *j = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(j, "concepts");
        for (int i = 0; i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "id", list[i].id);
            cJSON_AddStringToObject(o, "name", list[i].name);
            cJSON_AddNumberToObject(o, "images", list[i].images);
            cJSON_AddNumberToObject(o, "created", list[i].created);
            push_or_free(arr, o);
        }
        free(list);
        char *t = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (oom_since_start(cs)) {
            free(t);
            return send_oom(cs, c);
        }
        return send_json(cs, c, 200, t);
    }
    int D = srv_store_dim(s->store);
    float *emb = malloc(sizeof(float) * (size_t)D);
    srv_concept_info in;
    if (!emb) return send_error(cs, c, 500, "internal", "out of memory");
    if (srv_store_get(s->store, cs->id, &in, emb) < 0) {
        free(emb);
        return send_error(cs, c, 404, "not_found", "no concept has the id \"%.64s\"", cs->id);
    }
    char *t = concept_json(&in, emb, D);
    free(emb);
    if (oom_since_start(cs)) {
        free(t);
        return send_oom(cs, c);
    }
    return send_json(cs, c, 200, t);
}

// Suspends the connection and queues its task; queue full -> resumed at once and 503.
static enum MHD_Result submit_sync(conn_state *cs, struct MHD_Connection *c) {
    srv *s = cs->s;
    srv_task *t = cs->task;
    t->conn = c;
    t->t_arrive = cs->t0;
    t->deadline = s->cfg.deadline_ms > 0 ? cs->t0 + s->cfg.deadline_ms / 1e3 : 0;
    MHD_suspend_connection(c);
    atomic_fetch_add(&s->inflight, 1);
    cs->counted = 1;
    if (srv_submit(s, t) < 0) {
        atomic_fetch_sub(&s->inflight, 1);
        cs->counted = 0;
        cs->rejected = 1;
        MHD_resume_connection(c);
    }
    return MHD_YES;
}

static enum MHD_Result submit_job(conn_state *cs, struct MHD_Connection *c) {
    srv *s = cs->s;
    srv_task *t = cs->task;
    char id[33], loc[64];
    char *body = malloc(160);  // before the job exists: nothing to undo if this fails
    if (!body) return send_oom(cs, c);
    int rc = srv_jobs_add(s->jobs, id);
    if (rc < 0) {
        free(body);
        if (rc == CDAM_ENOMEM) return send_oom(cs, c);
        return send_error(cs, c, 503, "queue_full", "too many jobs; try again later");
    }
    memcpy(t->job_id, id, sizeof id);
    t->t_arrive = cs->t0;
    t->deadline = 0;
    if (srv_submit(s, t) < 0) {
        free(body);
        srv_jobs_cancel(s->jobs, id);
        return send_error(cs, c, 503, "queue_full", "the work queue is full; try again later");
    }
    cs->task = NULL;  // the worker owns it now
    snprintf(body, 160, "{\"id\":\"%s\",\"state\":\"queued\",\"progress\":0,\"href\":\"/jobs/%s\"}", id, id);
    snprintf(loc, sizeof loc, "/jobs/%s", id);
    return send_buf(cs, c, 202, body, strlen(body), "application/json", "Location", loc);
}

// Estimated GFLOP of TAM on the request's grid: n ablated passes of the network.
static double tam_gflop(const vit_model *m, int H, int W) {
    const vit_config *k = &m->cfg;
    double n = (double)(H / k->P) * (W / k->P), N = n + 1, D = k->D;
    double per_pass = k->L * N * (2 * (4 * D * D + 2 * D * k->F) + 4 * N * D);
    return n * per_pass / 1e9;
}

// A new task of the connection (freed with it unless a worker takes it); NULL: out of memory.
static srv_task *new_task(conn_state *cs, srv_task_kind kind) {
    srv_task *t = calloc(1, sizeof *t);
    if (t) t->kind = kind, cs->task = t;
    return t;
}

static enum MHD_Result handle_explain(conn_state *cs, struct MHD_Connection *c) {
    srv *s = cs->s;
    srv_error e;
    cJSON *root;
    if (body_fields(cs, "image", &root, &e) < 0) return send_srv_error(cs, c, &e);
    srv_task *t = new_task(cs, SRV_TASK_EXPLAIN);
    if (!t) {
        cJSON_Delete(root);
        return send_error(cs, c, 500, "internal", "out of memory");
    }
    int rc = srv_parse_explain(root, s->model, s->max_h, s->max_w, &t->req, &e);
    cJSON_Delete(root);
    if (rc < 0) return send_srv_error(cs, c, &e);
    if (cs->nimg == 0) return send_error(cs, c, 400, "missing_image", "no image: send \"image\" (base64) or an image file part");
    if (cs->nimg > 1) return send_error(cs, c, 400, "bad_request", "one image per /explain request");
    t->images[0] = cs->img[0];
    t->image_len[0] = cs->img_len[0];
    t->nimages = 1;
    cs->img[0] = NULL;
    if (t->image_len[0] == 0) return send_error(cs, c, 400, "missing_image", "the image is empty");
    if (t->req.has_concept) {
        int D = s->model->cfg.D;
        srv_concept_info in;
        if (!(t->concept_vec = malloc(sizeof(float) * (size_t)D))) return send_error(cs, c, 500, "internal", "out of memory");
        if (srv_store_get(s->store, t->req.concept_id, &in, t->concept_vec) < 0)
            return send_error(cs, c, 400, "unknown_concept", "no concept has the id \"%.64s\"", t->req.concept_id);
        snprintf(t->concept_name, sizeof t->concept_name, "%s", in.name);
    }
    int tam = 0;
    for (int i = 0; i < t->req.nmethods; i++) tam |= t->req.methods[i] == EXPLAIN_TAM;
    if (t->req.async || (tam && tam_gflop(s->model, t->req.H, t->req.W) > (double)s->cfg.tam_sync_gflop)) {
        if (t->req.png) return send_error(cs, c, 400, "bad_request", "format png is not available for jobs; ask for json");
        return submit_job(cs, c);
    }
    return submit_sync(cs, c);
}

static enum MHD_Result handle_concept_post(conn_state *cs, struct MHD_Connection *c) {
    srv_error e;
    cJSON *root;
    if (body_fields(cs, "images", &root, &e) < 0) return send_srv_error(cs, c, &e);
    if (!cs->multipart && cs->nimg == 0) {  // {"image": "..."} accepted too
        cJSON *one = cJSON_GetObjectItemCaseSensitive(root, "image");
        if (cJSON_IsString(one) &&
            srv_base64_decode(one->valuestring, strlen(one->valuestring), &cs->img[0], &cs->img_len[0], &e) < 0) {
            cJSON_Delete(root);
            return send_srv_error(cs, c, &e);
        }
        if (cJSON_IsString(one)) cs->nimg = 1;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 128) {
        cJSON_Delete(root);
        return send_error(cs, c, 400, "bad_request", "name must be a string of 1 to 128 bytes");
    }
    srv_task *t = new_task(cs, SRV_TASK_CONCEPT);
    if (!t) {
        cJSON_Delete(root);
        return send_error(cs, c, 500, "internal", "out of memory");
    }
    snprintf(t->name, sizeof t->name, "%s", name->valuestring);
    cJSON_Delete(root);
    if (cs->nimg == 0) return send_error(cs, c, 400, "missing_image", "a concept needs at least one image");
    for (int i = 0; i < cs->nimg; i++) {
        if (cs->img_len[i] == 0) return send_error(cs, c, 400, "missing_image", "image %d is empty", i + 1);
        t->images[i] = cs->img[i];
        t->image_len[i] = cs->img_len[i];
        cs->img[i] = NULL;
    }
    t->nimages = cs->nimg;
    return submit_sync(cs, c);
}

static const char *mime_of(const char *path) {
    const char *dot = strrchr(path, '.');
    static const char *map[][2] = {{".html", "text/html; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
                                   {".js", "text/javascript; charset=utf-8"}, {".mjs", "text/javascript; charset=utf-8"},
                                   {".json", "application/json"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
                                   {".jpeg", "image/jpeg"}, {".webp", "image/webp"}, {".gif", "image/gif"},
                                   {".svg", "image/svg+xml"}, {".ico", "image/x-icon"}, {".txt", "text/plain; charset=utf-8"},
                                   {".md", "text/plain; charset=utf-8"}, {".woff2", "font/woff2"}};
    if (dot)
        for (size_t i = 0; i < sizeof map / sizeof *map; i++)
            if (!strcasecmp(dot, map[i][0])) return map[i][1];
    return "application/octet-stream";
}

// A file under the static folder: no ".." component, no NUL, and its real path (symlinks
// resolved) inside the folder's real path.
static enum MHD_Result answer_static(conn_state *cs, struct MHD_Connection *c, const char *url) {
    srv *s = cs->s;
    if (!s->cfg.static_dir) return send_error(cs, c, 404, "not_found", "no such route");
    for (const char *p = url; *p; p++)
        if ((p[0] == '.' && p[1] == '.' && (p == url || p[-1] == '/') && (p[2] == '/' || p[2] == 0)) || *p == '\\')
            return send_error(cs, c, 404, "not_found", "no such file");
    char root[PATH_MAX], want[PATH_MAX + 300], real[PATH_MAX];
    if (!realpath(s->cfg.static_dir, root)) return send_error(cs, c, 404, "not_found", "no such file");
    int k = snprintf(want, sizeof want, "%s%s", root, url);
    if (k <= 0 || (size_t)k >= sizeof want) return send_error(cs, c, 404, "not_found", "no such file");
    // the real path first (a symlinked directory pointing out is not even redirected)
    size_t rl = strlen(root);
    if (!realpath(want, real) || strncmp(real, root, rl) || (real[rl] != '/' && real[rl] != 0))
        return send_error(cs, c, 404, "not_found", "no such file: %.200s", url);
    struct stat st;
    if (stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (url[strlen(url) - 1] != '/') {  // "/examples" -> "/examples/"
            char *body = strdup(""), loc[300];
            snprintf(loc, sizeof loc, "%.290s/", url);
            return send_buf(cs, c, 301, body, 0, NULL, "Location", loc);
        }
        snprintf(want, sizeof want, "%s/index.html", real);
        if (!realpath(want, real) || strncmp(real, root, rl) || (real[rl] != '/' && real[rl] != 0))
            return send_error(cs, c, 404, "not_found", "no such file: %.200s", url);
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return send_error(cs, c, 404, "not_found", "no such file: %.200s", url);
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    const char *type = mime_of(real);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    if (!strncmp(type, "text/html", 9)) {
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                                "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'");
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(r, "X-Frame-Options", "DENY");
    }
    add_common_headers(cs, c, r);
    cs->status = 200;
    cs->bytes = (size_t)st.st_size;
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result dispatch(conn_state *cs, struct MHD_Connection *c, const char *url) {
    srv *s = cs->s;
    const char *m = cs->method;
    if (cs->too_big)
        return send_error(cs, c, 413, "body_too_large", "the request body is over the limit of %ld MB", s->cfg.max_body_mb);
    switch (cs->route) {
    case R_HEALTHZ: {  // from static text: the probe answers even when memory is short
        static const char ok[] = "{\"status\":\"ok\"}", loading[] = "{\"status\":\"loading\"}";
        int up = atomic_load(&s->ready);
        struct MHD_Response *r = MHD_create_response_from_buffer(up ? sizeof ok - 1 : sizeof loading - 1,
                                                                 (void *)(up ? ok : loading), MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        MHD_add_response_header(r, "Content-Type", "application/json");
        add_common_headers(cs, c, r);
        cs->status = up ? 200 : 503;
        cs->bytes = up ? sizeof ok - 1 : sizeof loading - 1;
        enum MHD_Result ret = MHD_queue_response(c, (unsigned)cs->status, r);
        MHD_destroy_response(r);
        return ret;
    }
    case R_MODEL: return answer_model(cs, c);
    case R_METRICS: return answer_metrics(cs, c);
    case R_EXPLAIN: return handle_explain(cs, c);
    case R_CONCEPTS:
        if (!strcmp(m, "POST")) return handle_concept_post(cs, c);
        return answer_concepts_get(cs, c);
    case R_CONCEPT_ID:
        if (!strcmp(m, "DELETE")) {
            char err[CDAM_ERR_MAX];
            int rc = srv_store_delete(s->store, cs->id, err);
            if (rc == CDAM_ENOTFOUND) return send_error(cs, c, 404, "not_found", "no concept has the id \"%.64s\"", cs->id);
            if (rc == CDAM_ENOSPC) return send_error(cs, c, 507, "storage_full", "the concept could not be deleted: %s", err);
            if (rc < 0) return send_error(cs, c, 500, "internal", "the concept could not be deleted: %s", err);
            return send_buf(cs, c, 204, NULL, 0, NULL, NULL, NULL);
        }
        return answer_concepts_get(cs, c);
    case R_JOB_ID: {
        if (!strcmp(m, "DELETE") && srv_jobs_cancel(s->jobs, cs->id) < 0)
            return send_error(cs, c, 404, "not_found", "no job has the id \"%.64s\" (finished jobs expire after %ld s)", cs->id, s->cfg.job_ttl_s);
        char *j = srv_jobs_get_json(s->jobs, cs->id);
        if (!j && srv_jobs_exists(s->jobs, cs->id)) return send_oom(cs, c);
        if (!j) return send_error(cs, c, 404, "not_found", "no job has the id \"%.64s\" (finished jobs expire after %ld s)", cs->id, s->cfg.job_ttl_s);
        return send_json(cs, c, 200, j);
    }
    case R_STATIC: return answer_static(cs, c, url);
    default: return send_error(cs, c, 404, "not_found", "no route %.200s", url);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    srv *s = cls;
    conn_state *cs = *con_cls;
    if (cs == &oom_state) {  // no state: the body is read and dropped, then 500
        if (*upload_size) {
            *upload_size = 0;
            return MHD_YES;
        }
        return send_oom(NULL, c);
    }
    if (!cs) {  // headers are in: decide early what can be refused before the body
        track_waiting(c, 0);
        srv_request_hook(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Fault-Alloc"));
        if (!(cs = calloc(1, sizeof *cs))) {  // answered 500 once the body is in (a client
            *con_cls = &oom_state;             // still sending it would see a reset)
            return MHD_YES;
        }
        *con_cls = cs;
        cs->s = s;
        cs->t0 = srv_now();
        cs->oom0 = srv_oom_count();
        snprintf(cs->method, sizeof cs->method, "%s", method);
        snprintf(cs->path, sizeof cs->path, "%s", url);
        cs->route = route_of(url, cs->id, sizeof cs->id);
        if (!strcmp(method, "OPTIONS") && s->cfg.cors && *s->cfg.cors) {  // CORS preflight
            struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
            MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
            MHD_add_response_header(r, "Access-Control-Max-Age", "600");
            add_common_headers(cs, c, r);
            cs->status = 204;
            enum MHD_Result ret = MHD_queue_response(c, 204, r);
            MHD_destroy_response(r);
            return ret;
        }
        if (cs->route == R_OTHER || (cs->route == R_STATIC && !method_allowed(cs->route, method) && strcmp(url, "/") &&
                                     strcmp(url, "/index.html")))
            return send_error(cs, c, 404, "not_found", "no route %.200s", url);
        if (!method_allowed(cs->route, method))
            return send_error(cs, c, 405, "method_not_allowed", "%s is not allowed on %s", method, route_names[cs->route]);
        if (s->cfg.api_key && *s->cfg.api_key && needs_key(cs->route) && !key_ok(s, c))
            return send_error(cs, c, 401, "unauthorized", "this server needs \"Authorization: Bearer <key>\"");
        if (!strcmp(method, "POST")) {
            const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            unsigned long long n = len ? strtoull(len, NULL, 10) : 0, lim = (unsigned long long)s->cfg.max_body_mb << 20;
            // Over the limit: the body is read and dropped, so that a client that sends it
            // all still reads the 413; far over it, the answer comes now and the
            // connection closes.
            if (n > lim) cs->too_big = 1;
            if (n > 4 * lim + (64ULL << 20))
                return send_error(cs, c, 413, "body_too_large", "the request body (%s bytes) is over the limit of %ld MB", len,
                                  s->cfg.max_body_mb);
            const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
            if (ct && !strncasecmp(ct, "multipart/form-data", 19)) {
                cs->multipart = 1;
                cs->pp = MHD_create_post_processor(c, 65536, post_iter, cs);
                if (!cs->pp) cs->pp_failed = 1;
            } else if (!ct || strncasecmp(ct, "application/json", 16)) {
                return send_error(cs, c, 415, "unsupported_media_type",
                                  "send application/json or multipart/form-data, not %.100s", ct ? ct : "no Content-Type");
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {  // a piece of the body
        size_t n = *upload_size;
        *upload_size = 0;
        cs->received += n;
        if (cs->too_big || cs->received > (size_t)s->cfg.max_body_mb << 20) {
            cs->too_big = 1;
            // discard the rest, answered 413 at the end; a client that goes on far past
            // the limit (a chunked body has no length) is cut off
            if (cs->received > ((size_t)s->cfg.max_body_mb << 22) + ((size_t)64 << 20)) return MHD_NO;
            return MHD_YES;
        }
        if (cs->multipart) {
            if (!cs->pp_failed && MHD_post_process(cs->pp, upload_data, n) != MHD_YES) cs->pp_failed = 1;
        } else {
            if (cs->body_oom || grow((unsigned char **)&cs->body, &cs->cap, cs->len + n + 1) < 0) {
                cs->body_oom = 1;  // the rest is read and dropped; answered 500
                return MHD_YES;
            }
            memcpy(cs->body + cs->len, upload_data, n);
            cs->len += n;
        }
        return MHD_YES;
    }
    if (cs->task && atomic_load(&cs->task->done)) {  // a worker has answered
        srv_task *t = cs->task;
        cs->task = NULL;
        char *body = t->body;
        t->body = NULL;
        enum MHD_Result r = body || t->status == 204 ? send_buf(cs, c, t->status, body, t->body_len, t->content_type, NULL, NULL)
                                                     : send_oom(cs, c);  // the worker could not write its answer
        srv_task_free(t);
        if (cs->counted) atomic_fetch_sub(&s->inflight, 1);  // answered: SIGTERM's drain may now end
        cs->counted = 0;
        return r;
    }
    if (cs->rejected) {
        cs->rejected = 0;
        return send_error(cs, c, 503, "queue_full", "all workers are busy and the queue is full; try again shortly");
    }
    if (cs->task) return MHD_YES;  // spurious call while queued
    return dispatch(cs, c, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    srv *s = cls;
    track_waiting(c, 1);  // a kept-alive connection: the next request's headers are due
    conn_state *cs = *con_cls;
    if (cs == &oom_state) {
        srv_log("request answered 500: out of memory for its state");
        *con_cls = NULL;
        return;
    }
    if (!cs) return;
    double dt = srv_now() - cs->t0;
    int status = cs->status ? cs->status : 499;
    if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK && cs->status) status = cs->status;
    // A client that went away while its request was queued: the worker has finished
    // (a suspended connection only closes once resumed), but nobody answered.
    if (cs->counted) atomic_fetch_sub(&s->inflight, 1);
    cs->counted = 0;
    srv_metrics_request(s->metrics, route_names[cs->route], status, dt);
    srv_log("%s %s %d %zu %.1fms%s", cs->method, cs->path, status, cs->bytes, dt * 1e3,
            why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    free_state(cs);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = 0;
    srv_log("microhttpd: %s", buf);
}

int srv_http_start(srv *s, int *port, char *err) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    const char *host = s->cfg.host ? s->cfg.host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)s->cfg.port);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)s->cfg.port);
        flags |= MHD_USE_IPv6;
    } else {
        return cdam_fail(err, CDAM_EINVAL, "--host %s is not an IPv4 or IPv6 address", host);
    }
    s->daemon = MHD_start_daemon(flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                 MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.timeout_s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
                                 MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections_per_ip,
                                 // libmicrohttpd keeps about half of a connection's memory for the
                                 // answer: headers of max_header_kb need twice that, and a margin
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, ((size_t)s->cfg.max_header_kb * 2 + 8) * 1024,
                                 MHD_OPTION_END);
    if (!s->daemon) return cdam_fail(err, CDAM_EIO, "cannot listen on %s:%d: %s", host, s->cfg.port, strerror(errno));
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : s->cfg.port;
    return 0;
}

void srv_http_quiesce(srv *s) {
    if (s->daemon) {
        MHD_socket fd = MHD_quiesce_daemon(s->daemon);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
}

void srv_http_stop(srv *s) {
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
