/* main.c - cdam-server: options, start-up, the libuv main loop (signals, housekeeping)
 * and a bounded graceful shutdown. See srv.h for the threads and `--help` for options.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"
#include "srv.h"
#include "util.h"

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double srv_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uv_mutex_t log_lock;

void srv_log(const char *fmt, ...) {
    char line[1024];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    size_t k = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%SZ ", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof line - k, fmt, ap);
    va_end(ap);
    uv_mutex_lock(&log_lock);
    fprintf(stderr, "%s\n", line);
    uv_mutex_unlock(&log_lock);
}

static void store_log(void *ctx, const char *msg) {
    (void)ctx;
    srv_log("concepts: %s", msg);
}

/* ---- options ------------------------------------------------------------------------------ */

typedef struct {
    const char *flag, *env, *help;
    char kind;  // 's' string, 'i' integer, 'm' model file (repeatable)
    void *dst;
    long lo, hi;
} opt;

static void usage(FILE *f, const opt *o, int n) {
    fprintf(f,
            "usage: cdam-server --model FILE... [options]\n"
            "Serves class-discriminative attention maps of a DINO ViT over HTTP (see openapi.yaml).\n"
            "Every option can also be set by its environment variable; the command line wins.\n\n");
    for (int i = 0; i < n; i++) {
        char def[64] = "";
        if (o[i].kind == 'i') snprintf(def, sizeof def, " (default %ld)", *(long *)o[i].dst);
        else if (o[i].kind == 's' && *(const char **)o[i].dst) snprintf(def, sizeof def, " (default %.40s)", *(const char **)o[i].dst);
        fprintf(f, "  --%-20s %-22s %s%s\n", o[i].flag, o[i].env, o[i].help, def);
    }
}

static int set_opt(const opt *o, const char *v, srv_config *cfg) {
    if (o->kind == 's') {
        *(const char **)o->dst = v;
        return 0;
    }
    if (o->kind == 'm') {
        // a list: "--model a --model b", or "a,b" / "a b" in the variable (kept as given)
        if (cfg->nmodels >= SRV_MAX_MODEL_FILES) {
            fprintf(stderr, "cdam-server: at most %d model files\n", SRV_MAX_MODEL_FILES);
            return -1;
        }
        cfg->models[cfg->nmodels++] = v;
        return 0;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < o->lo || x > o->hi) {
        fprintf(stderr, "cdam-server: --%s %s: expected an integer in %ld..%ld\n", o->flag, v, o->lo, o->hi);
        return -1;
    }
    *(long *)o->dst = x;
    return 0;
}

/* ---- the main loop --------------------------------------------------------------------- */

static srv S;
static uv_timer_t housekeeping, drain_timer;
static uv_signal_t sigterm, sigint;
static double drain_until;

static void on_housekeeping(uv_timer_t *t) {
    (void)t;
    srv_jobs_expire(S.jobs, srv_wall());
    srv_http_sweep(&S);
}

static void on_drain(uv_timer_t *t) {
    static double idle_since;
    int left = atomic_load(&S.inflight);
    if (left > 0 && srv_now() < drain_until) return;
    // every answer is queued: give the network threads a moment to send the last ones
    if (left == 0 && idle_since == 0) idle_since = srv_now();
    if (left == 0 && srv_now() < idle_since + 0.2) return;
    if (left > 0) srv_log("shutdown: %d requests still in flight after %ld ms; stopping anyway", left, S.cfg.drain_ms);
    uv_timer_stop(t);
    uv_close((uv_handle_t *)&housekeeping, NULL);
    uv_close((uv_handle_t *)&drain_timer, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum) {
    (void)h;
    if (drain_until > 0) return;
    srv_log("shutdown: signal %d, no new connections; draining (at most %ld ms)", signum, S.cfg.drain_ms);
    srv_http_quiesce(&S);
    drain_until = srv_now() + S.cfg.drain_ms / 1e3;
    uv_timer_start(&drain_timer, on_drain, 0, 20);
}

int main(int argc, char **argv) {
    uv_mutex_init(&log_lock);
    srv_json_init();  // before any thread: cJSON's out-of-memory becomes visible (util.h)
    long ncores = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncores < 1) ncores = 1;
    long port = 8080, workers = 0, tpw = 0, queue = 16, cache_mb = 256, max_body_mb = 32, max_size = 0, deadline_ms = 60000,
         job_ttl_s = 600, max_jobs = 256, max_mpix = 40, drain_ms = 10000, tam_sync = 50, timeout_s = 60,
         max_conn = 512, max_conn_ip = 128, max_header_kb = 32;
    srv_config *cfg = &S.cfg;
    cfg->host = "127.0.0.1";
    cfg->data_dir = "data";
    cfg->static_dir = "static";
    const opt opts[] = {
        {"model", "CDAM_MODEL", "safetensors file(s) of the model (backbone, head); repeatable", 'm', NULL, 0, 0},
        {"labels", "CDAM_LABELS", "class names, one a line (overrides the model's)", 's', &cfg->labels, 0, 0},
        {"host", "CDAM_HOST", "address to listen on", 's', &cfg->host, 0, 0},
        {"port", "CDAM_PORT", "port (0: any free port, printed at start)", 'i', &port, 0, 65535},
        {"workers", "CDAM_WORKERS", "model workers (0: automatic)", 'i', &workers, 0, 256},
        {"threads-per-worker", "CDAM_THREADS_PER_WORKER", "threads of each worker (0: automatic)", 'i', &tpw, 0, 256},
        {"queue", "CDAM_QUEUE", "requests that may wait for a worker before 503", 'i', &queue, 1, 100000},
        {"data-dir", "CDAM_DATA_DIR", "where concepts are stored", 's', &cfg->data_dir, 0, 0},
        {"static", "CDAM_STATIC", "folder of the demo page", 's', &cfg->static_dir, 0, 0},
        {"cache-mb", "CDAM_CACHE_MB", "forward-pass cache size in MB (0: off)", 'i', &cache_mb, 0, 1 << 20},
        {"max-body-mb", "CDAM_MAX_BODY_MB", "largest request body in MB", 'i', &max_body_mb, 1, 4096},
        {"max-size", "CDAM_MAX_SIZE", "largest input side in pixels (0: max(480, native))", 'i', &max_size, 0, 4096},
        {"max-megapixels", "CDAM_MAX_MEGAPIXELS", "largest uploaded image in megapixels", 'i', &max_mpix, 1, 1000},
        {"deadline-ms", "CDAM_DEADLINE_MS", "deadline of a synchronous request (0: none)", 'i', &deadline_ms, 0, 86400000},
        {"job-ttl-s", "CDAM_JOB_TTL_S", "how long finished jobs are kept", 'i', &job_ttl_s, 1, 604800},
        {"max-jobs", "CDAM_MAX_JOBS", "jobs kept at once", 'i', &max_jobs, 1, 100000},
        {"tam-sync-gflop", "CDAM_TAM_SYNC_GFLOP", "TAM above this much work always runs as a job", 'i', &tam_sync, 0, 1000000},
        {"drain-ms", "CDAM_DRAIN_MS", "on SIGTERM, how long in-flight requests may finish", 'i', &drain_ms, 0, 600000},
        {"timeout-s", "CDAM_TIMEOUT_S", "close a connection idle this long, or whose headers take longer", 'i', &timeout_s, 1, 3600},
        {"max-connections", "CDAM_MAX_CONNECTIONS", "open connections at most", 'i', &max_conn, 1, 100000},
        {"max-connections-per-ip", "CDAM_MAX_CONNECTIONS_PER_IP", "open connections per client address (0: no limit)", 'i',
         &max_conn_ip, 0, 100000},
        {"max-header-kb", "CDAM_MAX_HEADER_KB", "request line + headers at most, in KB (larger: 431 or 414)", 'i', &max_header_kb, 2, 1024},
        {"cors", "CDAM_CORS", "allowed origins, comma-separated, or * (default: none)", 's', &cfg->cors, 0, 0},
        {"api-key", "CDAM_API_KEY", "require Authorization: Bearer KEY (default: none)", 's', &cfg->api_key, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof *opts);
    for (int i = 0; i < nopts; i++) {  // environment first
        const char *v = getenv(opts[i].env);
        if (!v || !*v) continue;
        if (opts[i].kind == 'm') {  // CDAM_MODEL="a.safetensors b.safetensors" (spaces or commas)
            static char buf[4096];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, " ,"); tok; tok = strtok(NULL, " ,"))
                if (set_opt(&opts[i], tok, cfg) < 0) return 2;
        } else if (set_opt(&opts[i], v, cfg) < 0) {
            return 2;
        }
    }
    int cli_models = 0;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(stdout, opts, nopts);
            return 0;
        }
        const opt *o = NULL;
        const char *v = NULL;
        for (int i = 0; i < nopts && !o; i++) {
            size_t fl = strlen(opts[i].flag);
            if (!strncmp(arg, "--", 2) && !strncmp(arg + 2, opts[i].flag, fl)) {
                if (arg[2 + fl] == '=') o = &opts[i], v = arg + 3 + fl;
                else if (arg[2 + fl] == 0) o = &opts[i];
            }
        }
        if (!o) {
            fprintf(stderr, "cdam-server: unknown option %s (see --help)\n", arg);
            return 2;
        }
        if (!v) {
            if (a + 1 >= argc) {
                fprintf(stderr, "cdam-server: %s needs a value\n", arg);
                return 2;
            }
            v = argv[++a];
        }
        if (o->kind == 'm' && !cli_models++) cfg->nmodels = 0;  // the command line replaces CDAM_MODEL
        if (set_opt(o, v, cfg) < 0) return 2;
        if (o->kind == 'm')  // --model a b c: more files until the next option
            while (a + 1 < argc && strncmp(argv[a + 1], "--", 2))
                if (set_opt(o, argv[++a], cfg) < 0) return 2;
    }
    if (cfg->nmodels == 0) {
        fprintf(stderr, "cdam-server: no model: give --model FILE (or CDAM_MODEL); see --help\n");
        return 2;
    }
    // Workers x threads: see bench/README.md (server section) for the measurements.
    if (workers == 0 && tpw == 0) workers = 1, tpw = ncores;
    else if (workers == 0) workers = ncores / tpw > 0 ? ncores / tpw : 1;
    else if (tpw == 0) tpw = ncores / workers > 0 ? ncores / workers : 1;
    cfg->port = (int)port;
    cfg->workers = (int)workers;
    cfg->threads_per_worker = (int)tpw;
    cfg->queue = (int)queue;
    cfg->cache_mb = cache_mb;
    cfg->max_body_mb = max_body_mb;
    cfg->deadline_ms = deadline_ms;
    cfg->job_ttl_s = job_ttl_s;
    cfg->max_jobs = (int)max_jobs;
    cfg->max_pixels = max_mpix * 1000000L;
    cfg->drain_ms = drain_ms;
    cfg->tam_sync_gflop = tam_sync;
    cfg->timeout_s = (int)timeout_s;
    cfg->max_connections = (int)max_conn;
    cfg->max_connections_per_ip = (int)max_conn_ip;
    cfg->max_header_kb = (int)max_header_kb;

    char err[CDAM_ERR_MAX];
    S.t_start = srv_now();
    uv_mutex_init(&S.qlock);
    uv_cond_init(&S.qcond);
    if (!(S.metrics = srv_metrics_create()) || !(S.jobs = srv_jobs_create(cfg->max_jobs, (double)cfg->job_ttl_s)) ||
        !(S.cache = srv_cache_create((size_t)cfg->cache_mb << 20))) {
        fprintf(stderr, "cdam-server: out of memory\n");
        return 1;
    }
    // Load the model, then listen: /healthz answers only once the workers are ready.
    int bound = 0;
    double t0 = srv_now();
    if (vit_model_load(cfg->models, cfg->nmodels, cfg->labels, &S.model, err) < 0) {
        srv_log("cannot load the model: %s", err);
        return 1;
    }
    const vit_config *c = &S.model->cfg;
    int native = c->g0 * c->P, mx = (int)max_size;
    if (mx == 0) mx = native > 480 ? native : 480;
    mx -= mx % c->P;
    if (mx < native) mx = native;
    S.max_h = S.max_w = mx;
    if (srv_store_open(cfg->data_dir, c->D, store_log, NULL, &S.store, err) < 0) {
        srv_log("cannot open the concept store: %s", err);
        return 1;
    }
    if (srv_workers_start(&S, err) < 0) {
        srv_log("cannot start the workers: %s", err);
        return 1;
    }
    // Signals are caught before the first request can arrive: a SIGTERM right after start
    // drains (delivered once the loop runs) instead of killing the process.
    uv_loop_t *loop = uv_default_loop();
    uv_timer_init(loop, &housekeeping);
    uv_timer_start(&housekeeping, on_housekeeping, 250, 250);
    uv_timer_init(loop, &drain_timer);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    atomic_store(&S.ready, 1);
    if (srv_http_start(&S, &bound, err) < 0) {
        srv_log("%s", err);
        return 1;
    }
    srv_log("model %s: P=%d D=%d L=%d H=%d, %d classes, native %dx%d, max %dx%d; loaded in %.0f ms", c->name, c->P, c->D,
            c->L, c->H, c->C, native, native, mx, mx, (srv_now() - t0) * 1e3);
    srv_log("%d worker(s) x %d thread(s), queue %d, cache %ld MB, %d concept(s) in %s", cfg->workers, cfg->threads_per_worker,
            cfg->queue, cfg->cache_mb, srv_store_count(S.store), cfg->data_dir);
    fprintf(stderr, "cdam-server: listening on http://%s%s%s:%d\n", strchr(cfg->host, ':') ? "[" : "", cfg->host,
            strchr(cfg->host, ':') ? "]" : "", bound);
    fflush(stderr);

    uv_run(loop, UV_RUN_DEFAULT);

    srv_workers_stop(&S);   // answers what is still queued, joins the workers
    srv_http_stop(&S);
    uv_loop_close(loop);
    srv_store_close(S.store);
    srv_jobs_free(S.jobs);
    srv_cache_free(S.cache);
    srv_metrics_free(S.metrics);
    vit_model_free(S.model);
    srv_log("shutdown: done");
    return 0;
}
