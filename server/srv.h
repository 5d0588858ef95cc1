/* srv.h - the server's shared state: configuration, the model, the work queue and its
 * workers, and the stores they share (internal to server/).
 *
 * Threads: libmicrohttpd's threads parse requests and answer them (http.c); a pool of
 * worker threads (libuv threads, work.c) runs all model work, each with its own engine
 * workspaces; the main thread runs a libuv loop for signals and housekeeping (main.c).
 * A request that needs the model becomes a srv_task on a bounded queue; its HTTP
 * connection is suspended until a worker has filled in the answer, then resumed. An
 * asynchronous task (a job) has no connection: its answer goes into the job table.
 *
 * Ownership: srv owns everything below; the model is read-only and shared by all
 * workers; a task belongs to the queue, then to its worker, then to its connection
 * (or is freed by the worker for a job).
 */
#ifndef CDAM_SRV_H
#define CDAM_SRV_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cache.h"
#include "explain.h"
#include "jobs.h"
#include "metrics.h"
#include "model.h"
#include "request.h"
#include "store.h"
#include "vit.h"

#define SRV_MAX_MODEL_FILES 8

typedef struct {
    const char *models[SRV_MAX_MODEL_FILES];
    int nmodels;
    const char *labels;
    const char *host;
    int port;
    int workers, threads_per_worker, queue;
    const char *data_dir, *static_dir;
    long cache_mb, max_body_mb;
    int max_size;            // largest input side in pixels (0: the larger of 480 and native)
    const char *cors, *api_key;
    long deadline_ms;        // per synchronous request, from arrival
    long job_ttl_s;          // finished jobs are kept this long
    int max_jobs;
    long max_pixels;         // decoder limit per image
    long drain_ms;           // SIGTERM: how long in-flight requests may still take
    long tam_sync_gflop;     // TAM above this much work runs as a job even without async
    int timeout_s;           // idle connection timeout; also the time allowed for a request's headers
    int max_connections, max_connections_per_ip;  // 0 per IP: no limit
    int max_header_kb;       // per-connection buffer: request line + headers must fit
} srv_config;

typedef enum { SRV_TASK_EXPLAIN, SRV_TASK_CONCEPT } srv_task_kind;

typedef struct srv_task {
    srv_task_kind kind;
    struct MHD_Connection *conn;     // NULL for a job
    char job_id[33];                 // a job's id, "" for a synchronous request
    double t_arrive;                 // monotonic seconds
    double deadline;                 // monotonic seconds; 0 = none
    // input
    unsigned char *images[SRV_MAX_IMAGES];  // encoded image bytes, malloc'd
    size_t image_len[SRV_MAX_IMAGES];
    int nimages;
    srv_explain_req req;             // explain
    float *concept_vec;              // (D) stored concept of req.concept_id, malloc'd
    char concept_name[129];
    char name[129];                  // concept to create
    // output, filled by the worker
    int status;
    char *body;                      // malloc'd
    size_t body_len;
    const char *content_type;
    atomic_int done;
} srv_task;

typedef struct srv_worker srv_worker;

typedef struct srv {
    srv_config cfg;
    vit_model *model;
    int max_h, max_w;
    atomic_int ready;
    srv_cache *cache;
    srv_store *store;
    srv_jobs *jobs;
    srv_metrics *metrics;
    // the queue
    uv_mutex_t qlock;
    uv_cond_t qcond;
    srv_task **q;                    // ring of cfg.queue slots
    int qhead, qlen;
    atomic_int stopping;
    srv_worker *workers;
    int nworkers;
    atomic_int busy;
    atomic_int inflight;             // synchronous tasks queued or running
    struct MHD_Daemon *daemon;
    double t_start;
} srv;

double srv_now(void);        // monotonic seconds
double srv_wall(void);       // CLOCK_REALTIME seconds
void srv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Workers (work.c). srv_workers_start creates cfg.workers threads, each with its
// workspaces for inputs up to max_h x max_w; 0 or a negative code (err filled).
int srv_workers_start(srv *s, char *err);
// Wakes and joins the workers after the queue is drained (tasks still queued are
// answered 503).
void srv_workers_stop(srv *s);
// Queues t; 0, or -1 when the queue is full (t untouched).
int srv_submit(srv *s, srv_task *t);
void srv_task_free(srv_task *t);
int srv_queue_depth(srv *s);

// HTTP front (http.c): starts libmicrohttpd on cfg.host:cfg.port (0 = any free port);
// *port gets the bound port. 0 or -1 (err filled).
int srv_http_start(srv *s, int *port, char *err);
void srv_http_quiesce(srv *s);
// Closes the connections that have waited longer than cfg.timeout_s for complete request
// headers (libmicrohttpd's timeout is only an idle one: a client trickling its headers
// byte by byte is never idle). Called from the main loop a few times a second.
void srv_http_sweep(srv *s);
void srv_http_stop(srv *s);

// JSON error body {"error": {"code", "message"}} (malloc'd).
char *srv_error_json(const char *code, const char *message);

#endif
