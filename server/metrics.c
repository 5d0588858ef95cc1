#include "metrics.h"
#include "util.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const routes[] = {SRV_METRICS_ROUTES};
enum { NROUTES = sizeof routes / sizeof *routes, ROUTE_OTHER = NROUTES - 1 };

static const double bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const char *const bound_text[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
                                         "1",     "2.5",  "5",     "10",   "30",  "60"};
enum { NBOUNDS = sizeof bounds / sizeof *bounds, NSTATUS = 600 };

typedef struct {
    unsigned long long requests[NROUTES][NSTATUS];  // [route][status], status 0 = out of range
    unsigned long long buckets[NROUTES][NBOUNDS + 1]; // per bucket (not cumulative); last = +Inf
    double sum[NROUTES];
    unsigned long long count[NROUTES];
} counters;

struct srv_metrics {
    pthread_mutex_t mu;
    struct timespec start;  // CLOCK_MONOTONIC
    counters c;
};

srv_metrics *srv_metrics_create(void) {
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (pthread_mutex_init(&m->mu, NULL)) { free(m); return NULL; }
    clock_gettime(CLOCK_MONOTONIC, &m->start);
    return m;
}

void srv_metrics_free(srv_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static int route_index(const char *route) {
    if (route)
        for (int i = 0; i < NROUTES; i++)
            if (!strcmp(route, routes[i])) return i;
    return ROUTE_OTHER;
}

void srv_metrics_request(srv_metrics *m, const char *route, int status, double seconds) {
    if (!m) return;
    int r = route_index(route);
    int s = status >= 100 && status < NSTATUS ? status : 0;
    if (!(seconds >= 0)) seconds = 0;        // negative or NaN
    if (seconds > 1e9) seconds = 1e9;        // +Inf: keep the sum finite (lands in +Inf)
    int b = 0;
    while (b < NBOUNDS && seconds > bounds[b]) b++;  // le: value <= bound
    pthread_mutex_lock(&m->mu);
    m->c.requests[r][s]++;
    m->c.buckets[r][b]++;
    m->c.sum[r] += seconds;
    m->c.count[r]++;
    pthread_mutex_unlock(&m->mu);
}

size_t srv_metrics_escape(char *dst, size_t cap, const char *value) {
    size_t n = 0;
    for (const char *p = value ? value : ""; *p; p++) {
        const char *rep = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        char one[2] = {*p, 0};
        for (const char *q = rep ? rep : one; *q; q++, n++)
            if (n + 1 < cap) dst[n] = *q;
    }
    if (cap) dst[n < cap ? n : cap - 1] = 0;
    return n;
}

static void sb_value(srv_buf *b, double v) {
    if (isnan(v)) srv_buf_add(b, "NaN");
    else if (isinf(v)) srv_buf_add(b, v > 0 ? "+Inf" : "-Inf");
    else srv_buf_add(b, "%.17g", v);
}

char *srv_metrics_render(srv_metrics *m, const char *extra, size_t *len) {
    if (len) *len = 0;
    if (!m) return NULL;
    counters *c = malloc(sizeof *c);  // snapshot, so formatting runs outside the lock
    if (!c) return NULL;
    pthread_mutex_lock(&m->mu);
    *c = m->c;
    pthread_mutex_unlock(&m->mu);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double uptime = (double)(now.tv_sec - m->start.tv_sec) + (now.tv_nsec - m->start.tv_nsec) * 1e-9;

    srv_buf b = {malloc(16384), 0, 16384, 0};
    if (!b.p) { free(c); return NULL; }
    srv_buf_add(&b, "# HELP cdam_requests_total HTTP requests answered, by route template and status.\n"
               "# TYPE cdam_requests_total counter\n");
    for (int r = 0; r < NROUTES; r++)
        for (int s = 0; s < NSTATUS; s++)
            if (c->requests[r][s])
                srv_buf_add(&b, "cdam_requests_total{route=\"%s\",status=\"%d\"} %llu\n", routes[r], s, c->requests[r][s]);

    srv_buf_add(&b, "# HELP cdam_request_duration_seconds Time from request start to response, by route template.\n"
               "# TYPE cdam_request_duration_seconds histogram\n");
    for (int r = 0; r < NROUTES; r++) {
        unsigned long long cum = 0;
        for (int k = 0; k <= NBOUNDS; k++) {
            cum += c->buckets[r][k];
            srv_buf_add(&b, "cdam_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n", routes[r],
                   k < NBOUNDS ? bound_text[k] : "+Inf", cum);
        }
        srv_buf_add(&b, "cdam_request_duration_seconds_sum{route=\"%s\"} ", routes[r]);
        sb_value(&b, c->sum[r]);
        srv_buf_add(&b, "\ncdam_request_duration_seconds_count{route=\"%s\"} %llu\n", routes[r], c->count[r]);
    }

    srv_buf_add(&b, "# HELP cdam_uptime_seconds Seconds since the server started.\n"
               "# TYPE cdam_uptime_seconds gauge\n"
               "cdam_uptime_seconds %.3f\n",
           uptime);
    if (extra) srv_buf_add(&b, "%s", extra);
    free(c);
    if (b.oom) { free(b.p); return NULL; }
    if (len) *len = b.len;
    return b.p;
}
