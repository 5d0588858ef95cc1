/* metrics.h - request counters and latency histograms, rendered for Prometheus.
 *
 * Usage:
 *     srv_metrics *m = srv_metrics_create();
 *     srv_metrics_request(m, "/explain", 200, 0.137);        // after each response
 *     size_t len;
 *     char *text = srv_metrics_render(m, extra, &len);       // GET /metrics body
 *     ... free(text);
 *     srv_metrics_free(m);
 *
 * Families rendered (text exposition format 0.0.4, each with # HELP and # TYPE):
 *     cdam_requests_total{route="...",status="..."}     counter, one line per pair seen
 *     cdam_request_duration_seconds{route="..."}        histogram, every route always:
 *         _bucket{route,le} for le 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 +Inf
 *         (cumulative), _sum, _count
 *     cdam_uptime_seconds                               gauge, since srv_metrics_create
 * then `extra` verbatim: the server's own gauges (queue, cache, jobs), complete lines
 * with their # HELP/# TYPE. srv_metrics_escape helps build label values for them.
 *
 * Routes are the fixed templates of SRV_METRICS_ROUTES; anything else counts as "other",
 * so label values stay few and never need escaping. Statuses outside 100..599 count as 0.
 *
 * Ownership: render returns a malloc'd string the caller frees. Thread-safety: every
 * function may be called from any thread at the same time (one mutex, held only to
 * count or to copy the numbers); srv_metrics_free only once nobody uses the metrics.
 */
#ifndef CDAM_SRV_METRICS_H
#define CDAM_SRV_METRICS_H

#include <stddef.h>

// The route label values, in rendering order.
#define SRV_METRICS_ROUTES "/explain", "/concepts", "/concepts/{id}", "/jobs/{id}", "/model", "/healthz", "/metrics", "static", "other"

typedef struct srv_metrics srv_metrics;

// New zeroed metrics; the uptime clock (CLOCK_MONOTONIC) starts now. NULL on out of memory.
srv_metrics *srv_metrics_create(void);

// Frees the metrics. NULL is ignored.
void srv_metrics_free(srv_metrics *m);

// Counts one finished request: route one of SRV_METRICS_ROUTES (anything else, or NULL,
// counts as "other"), status the HTTP status, seconds the latency (negative or NaN
// counts as 0; values over 1e9, +Inf included, count as 1e9 so the sum stays finite).
void srv_metrics_request(srv_metrics *m, const char *route, int status, double seconds);

// Renders every family (see above) and appends extra (may be NULL) verbatim. Returns a
// malloc'd NUL-terminated string and sets *len (if non-NULL) to its length, or NULL on
// out of memory.
char *srv_metrics_render(srv_metrics *m, const char *extra, size_t *len);

// Escapes a label value for the exposition format (backslash, double quote and newline
// become \\ \" \n) into dst of cap bytes, always NUL-terminating when cap > 0. Returns the
// length of the full escaped text (like snprintf: >= cap means it was cut short).
size_t srv_metrics_escape(char *dst, size_t cap, const char *value);

#endif
