/* test_srv_metrics.c - server/metrics.c: request counters, cumulative histogram buckets
 * (boundaries, sum, count, odd latencies), route folding into "other", label escaping,
 * the exposition format (every sample line parsed as `name{labels} value`, a # HELP and
 * # TYPE before each family), the extra text, and concurrent updates while rendering. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "metrics.h"

// ------------------------------------------------------------------ a small parser

enum { MAXL = 4 };
typedef struct {
    char name[96];
    int nl;
    char key[MAXL][32], val[MAXL][128];  // label values unescaped
    double value;
} sample;

typedef struct {
    sample *s;
    int n;
    char typed[32][96];  // families with a # TYPE line, in order
    char type[32][16];
    int ntyped;
    int helped_ok;       // every # TYPE preceded by a # HELP of the same name
} parsed;

static int name_char(char c, int first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}

// The family of a sample name: histogram series map to their base name.
static void family_of(const char *name, const parsed *p, char *fam, size_t cap) {
    snprintf(fam, cap, "%s", name);
    static const char *suf[] = {"_bucket", "_sum", "_count"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(name), k = strlen(suf[i]);
        if (n > k && !strcmp(name + n - k, suf[i])) {
            char base[96];
            snprintf(base, sizeof base, "%.*s", (int)(n - k), name);
            for (int t = 0; t < p->ntyped; t++)
                if (!strcmp(p->typed[t], base) && !strcmp(p->type[t], "histogram")) { snprintf(fam, cap, "%s", base); return; }
        }
    }
}

// Parses the exposition text. Returns the number of malformed lines (0 = all good); a
// sample whose family has no # TYPE line before it counts as malformed too.
static int parse(const char *text, parsed *p) {
    memset(p, 0, sizeof *p);
    p->helped_ok = 1;
    int cap = 256, bad = 0;
    p->s = malloc(sizeof *p->s * (size_t)cap);
    char last_help[96] = "";
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        if (!end) { bad++; break; }  // every line ends with a newline
        char buf[1024];
        size_t n = (size_t)(end - line);
        if (n >= sizeof buf) { bad++; line = end + 1; continue; }
        memcpy(buf, line, n);
        buf[n] = 0;
        line = end + 1;
        if (buf[0] == '#') {
            char nm[96], rest[600];
            if (sscanf(buf, "# HELP %95s %599[^\n]", nm, rest) == 2) { snprintf(last_help, sizeof last_help, "%s", nm); continue; }
            char ty[16];
            if (sscanf(buf, "# TYPE %95s %15s", nm, ty) == 2 && p->ntyped < 32) {
                if (strcmp(nm, last_help)) p->helped_ok = 0;
                if (strcmp(ty, "counter") && strcmp(ty, "gauge") && strcmp(ty, "histogram")) bad++;
                snprintf(p->typed[p->ntyped], 96, "%s", nm);
                snprintf(p->type[p->ntyped++], 16, "%s", ty);
                continue;
            }
            bad++;
            continue;
        }
        if (p->n == cap) p->s = realloc(p->s, sizeof *p->s * (size_t)(cap *= 2));
        sample *s = &p->s[p->n];
        memset(s, 0, sizeof *s);
        const char *c = buf;
        int k = 0;
        if (!name_char(*c, 1)) { bad++; continue; }
        while (name_char(*c, 0) && k < 95) s->name[k++] = *c++;
        int ok = 1;
        if (*c == '{') {
            c++;
            while (ok && *c != '}') {
                if (s->nl == MAXL) { ok = 0; break; }
                k = 0;
                if (!name_char(*c, 1)) { ok = 0; break; }
                while (name_char(*c, 0) && k < 31) s->key[s->nl][k++] = *c++;
                if (c[0] != '=' || c[1] != '"') { ok = 0; break; }
                c += 2;
                k = 0;
                while (*c && *c != '"' && k < 127) {
                    if (*c == '\\') {
                        c++;
                        if (*c == 'n') s->val[s->nl][k++] = '\n';
                        else if (*c == '\\' || *c == '"') s->val[s->nl][k++] = *c;
                        else { ok = 0; break; }
                        c++;
                    } else {
                        s->val[s->nl][k++] = *c++;
                    }
                }
                if (!ok || *c != '"') { ok = 0; break; }
                c++;
                s->nl++;
                if (*c == ',') c++;
                else if (*c != '}') ok = 0;
            }
            if (ok) c++;  // '}'
        }
        if (!ok || *c != ' ') { bad++; continue; }
        c++;
        char *e;
        if (!strcmp(c, "+Inf")) s->value = INFINITY;
        else if (!strcmp(c, "-Inf")) s->value = -INFINITY;
        else if (!strcmp(c, "NaN")) s->value = NAN;
        else {
            s->value = strtod(c, &e);
            if (e == c || *e) { bad++; continue; }
        }
        char fam[96];
        family_of(s->name, p, fam, sizeof fam);
        int typed = 0;
        for (int t = 0; t < p->ntyped; t++) typed |= !strcmp(p->typed[t], fam);
        if (!typed) { bad++; continue; }
        p->n++;
    }
    return bad;
}

// Value of the sample with this name and labels (pairs k1, v1, k2, v2, ..., NULL), or
// NaN if absent (or present more than once).
static double value_of(const parsed *p, const char *name, ...) {
    const char *kv[2 * MAXL + 1];
    int n = 0;
    va_list ap;
    va_start(ap, name);
    while (n < 2 * MAXL && (kv[n] = va_arg(ap, const char *))) n++;
    va_end(ap);
    double v = NAN;
    int found = 0;
    for (int i = 0; i < p->n; i++) {
        const sample *s = &p->s[i];
        if (strcmp(s->name, name) || s->nl != n / 2) continue;
        int match = 1;
        for (int j = 0; j < n; j += 2) {
            int hit = 0;
            for (int l = 0; l < s->nl; l++) hit |= !strcmp(s->key[l], kv[j]) && !strcmp(s->val[l], kv[j + 1]);
            match &= hit;
        }
        if (match) { v = s->value; found++; }
    }
    return found == 1 ? v : NAN;
}

static int count_named(const parsed *p, const char *name) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += !strcmp(p->s[i].name, name);
    return n;
}

static const char *les[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "+Inf"};
static const char *all_routes[] = {SRV_METRICS_ROUTES};
enum { NLE = sizeof les / sizeof *les, NR = sizeof all_routes / sizeof *all_routes };

// ------------------------------------------------------------------ tests

static void test_empty(void) {
    srv_metrics *m = srv_metrics_create();
    size_t len = 0;
    char *t = srv_metrics_render(m, NULL, &len);
    CHECK(t && len == strlen(t), "render, len %zu", len);
    parsed p;
    CHECK(parse(t, &p) == 0, "empty render parses");
    CHECK(p.helped_ok && p.ntyped == 3, "3 families with # HELP and # TYPE (%d)", p.ntyped);
    CHECK(count_named(&p, "cdam_requests_total") == 0, "no request lines yet");
    CHECK(count_named(&p, "cdam_request_duration_seconds_bucket") == NR * NLE, "every route's buckets present");
    int zeros = 1;
    for (int r = 0; r < NR; r++) {
        zeros &= value_of(&p, "cdam_request_duration_seconds_count", "route", all_routes[r], NULL) == 0;
        zeros &= value_of(&p, "cdam_request_duration_seconds_sum", "route", all_routes[r], NULL) == 0;
        zeros &= value_of(&p, "cdam_request_duration_seconds_bucket", "route", all_routes[r], "le", "+Inf", NULL) == 0;
    }
    CHECK(zeros, "all zero");
    double up = value_of(&p, "cdam_uptime_seconds", NULL);
    CHECK(up >= 0 && up < 5, "uptime %g", up);
    CHECK(strstr(t, "# TYPE cdam_requests_total counter\n") && strstr(t, "# TYPE cdam_request_duration_seconds histogram\n") &&
              strstr(t, "# TYPE cdam_uptime_seconds gauge\n"),
          "TYPE lines");
    free(p.s);
    free(t);
    CHECK(srv_metrics_render(NULL, NULL, &len) == NULL && len == 0, "NULL metrics render NULL");
    srv_metrics_request(NULL, "/model", 200, 1);
    srv_metrics_free(m);
    srv_metrics_free(NULL);
}

static void test_counts(void) {
    srv_metrics *m = srv_metrics_create();
    for (int i = 0; i < 3; i++) srv_metrics_request(m, "/explain", 200, 0.1);
    srv_metrics_request(m, "/explain", 400, 0.002);
    srv_metrics_request(m, "/concepts/{id}", 404, 0.001);
    srv_metrics_request(m, "/concepts/{id}", 404, 0.001);
    srv_metrics_request(m, "/bogus", 404, 0.001);
    srv_metrics_request(m, NULL, 404, 0.001);
    srv_metrics_request(m, "/explain\"} 1\nfake_metric 2", 500, 0.001);  // must not inject anything
    srv_metrics_request(m, "/EXPLAIN", 200, 0.001);
    srv_metrics_request(m, "/model", 42, 0.001);
    srv_metrics_request(m, "/model", 1000, 0.001);
    srv_metrics_request(m, "static", 304, 0.001);

    // histogram of /healthz with boundary and odd values
    const double lat[] = {0.001, 0.005, 0.0051, 0.3, 1, 2, 100, -1, NAN, INFINITY, 59.99, 60, 60.01};
    const int nlat = (int)(sizeof lat / sizeof *lat);
    for (int i = 0; i < nlat; i++) srv_metrics_request(m, "/healthz", 200, lat[i]);

    size_t len;
    char *t = srv_metrics_render(m, NULL, &len);
    parsed p;
    CHECK(parse(t, &p) == 0, "render parses");
    CHECK(value_of(&p, "cdam_requests_total", "route", "/explain", "status", "200", NULL) == 3, "/explain 200 x3");
    CHECK(value_of(&p, "cdam_requests_total", "route", "/explain", "status", "400", NULL) == 1, "/explain 400 x1");
    CHECK(value_of(&p, "cdam_requests_total", "route", "/concepts/{id}", "status", "404", NULL) == 2, "/concepts/{id} 404 x2");
    CHECK(value_of(&p, "cdam_requests_total", "route", "other", "status", "404", NULL) == 2, "unknown route and NULL count as other");
    CHECK(value_of(&p, "cdam_requests_total", "route", "other", "status", "500", NULL) == 1, "hostile route counts as other");
    CHECK(value_of(&p, "cdam_requests_total", "route", "other", "status", "200", NULL) == 1, "routes are case-sensitive");
    CHECK(value_of(&p, "cdam_requests_total", "route", "/model", "status", "0", NULL) == 2, "out-of-range statuses count as 0");
    CHECK(value_of(&p, "cdam_requests_total", "route", "static", "status", "304", NULL) == 1, "static 304");
    CHECK(value_of(&p, "cdam_requests_total", "route", "/healthz", "status", "200", NULL) == nlat, "/healthz count");
    CHECK(count_named(&p, "cdam_requests_total") == 9, "one line per (route, status) seen: %d", count_named(&p, "cdam_requests_total"));
    CHECK(strstr(t, "fake_metric") == NULL, "no injected line");

    // cumulative buckets: count of clamped latencies <= le
    int okb = 1;
    double prev = -1;
    for (int k = 0; k < NLE; k++) {
        double le = k == NLE - 1 ? INFINITY : strtod(les[k], NULL);
        int want = 0;
        for (int i = 0; i < nlat; i++) {
            double v = lat[i] >= 0 ? lat[i] : 0;  // NaN, -1 -> 0
            if (v > 1e9) v = 1e9;
            want += v <= le;
        }
        double got = value_of(&p, "cdam_request_duration_seconds_bucket", "route", "/healthz", "le", les[k], NULL);
        if (got != want || got < prev) { okb = 0; fprintf(stderr, "le=%s got %g want %d\n", les[k], got, want); }
        prev = got;
    }
    CHECK(okb, "cumulative buckets (boundaries inclusive, NaN/negative as 0, +Inf clamped)");
    CHECK(value_of(&p, "cdam_request_duration_seconds_bucket", "route", "/healthz", "le", "0.005", NULL) == 4,
          "0.005 is in le=0.005 (0.001, 0.005, -1 and NaN as 0: 4)");
    CHECK(value_of(&p, "cdam_request_duration_seconds_count", "route", "/healthz", NULL) == nlat, "_count");
    double want_sum = 0.001 + 0.005 + 0.0051 + 0.3 + 1 + 2 + 100 + 0 + 0 + 1e9 + 59.99 + 60 + 60.01;
    double got_sum = value_of(&p, "cdam_request_duration_seconds_sum", "route", "/healthz", NULL);
    CHECK(fabs(got_sum - want_sum) <= 1e-12 * want_sum, "_sum %.17g want %.17g", got_sum, want_sum);
    CHECK(value_of(&p, "cdam_request_duration_seconds_sum", "route", "/explain", NULL) == 0.1 + 0.1 + 0.1 + 0.002, "/explain sum");
    CHECK(value_of(&p, "cdam_request_duration_seconds_bucket", "route", "/explain", "le", "0.1", NULL) == 4 &&
              value_of(&p, "cdam_request_duration_seconds_bucket", "route", "/explain", "le", "0.05", NULL) == 1,
          "/explain buckets");
    CHECK(value_of(&p, "cdam_request_duration_seconds_count", "route", "/jobs/{id}", NULL) == 0, "untouched route zero");
    free(p.s);
    free(t);

    // uptime grows
    struct timespec ts = {0, 30 * 1000000L};
    nanosleep(&ts, NULL);
    t = srv_metrics_render(m, NULL, NULL);
    parse(t, &p);
    double up = value_of(&p, "cdam_uptime_seconds", NULL);
    CHECK(up >= 0.025, "uptime after 30 ms: %g", up);
    free(p.s);
    free(t);
    srv_metrics_free(m);
}

static void test_escape_and_extra(void) {
    char buf[64];
    size_t n = srv_metrics_escape(buf, sizeof buf, "a\\b\"c\nd");
    CHECK(!strcmp(buf, "a\\\\b\\\"c\\nd") && n == 10, "escape: %s (%zu)", buf, n);
    n = srv_metrics_escape(buf, 5, "a\\b\"c\nd");
    CHECK(n == 10 && strlen(buf) == 4, "escape truncates like snprintf (%zu, \"%s\")", n, buf);
    n = srv_metrics_escape(buf, sizeof buf, NULL);
    CHECK(n == 0 && buf[0] == 0, "escape NULL");
    CHECK(srv_metrics_escape(NULL, 0, "xy\"") == 4, "escape measures with cap 0");
    n = srv_metrics_escape(buf, sizeof buf, "plain é {}");
    CHECK(!strcmp(buf, "plain é {}"), "other characters verbatim");

    // the server builds its gauges with escaped labels; they parse back to the original
    const char *odd = "we\"ird\\state\nx";
    char esc[64], extra[512];
    srv_metrics_escape(esc, sizeof esc, odd);
    snprintf(extra, sizeof extra,
             "# HELP cdam_jobs Jobs by state.\n# TYPE cdam_jobs gauge\ncdam_jobs{state=\"queued\"} 3\ncdam_jobs{state=\"%s\"} 1\n"
             "# HELP cdam_queue_depth Requests waiting.\n# TYPE cdam_queue_depth gauge\ncdam_queue_depth 7\n",
             esc);
    srv_metrics *m = srv_metrics_create();
    srv_metrics_request(m, "/metrics", 200, 0.0001);
    size_t len;
    char *t = srv_metrics_render(m, extra, &len);
    CHECK(len >= strlen(extra) && !strcmp(t + len - strlen(extra), extra), "extra appended verbatim at the end");
    parsed p;
    CHECK(parse(t, &p) == 0 && p.helped_ok, "render with extra parses");
    CHECK(value_of(&p, "cdam_jobs", "state", odd, NULL) == 1, "escaped label parses back to the original");
    CHECK(value_of(&p, "cdam_jobs", "state", "queued", NULL) == 3 && value_of(&p, "cdam_queue_depth", NULL) == 7, "extra samples");
    CHECK(value_of(&p, "cdam_requests_total", "route", "/metrics", "status", "200", NULL) == 1, "own samples still there");
    free(p.s);
    free(t);
    t = srv_metrics_render(m, "", &len);
    CHECK(t && len == strlen(t) && t[len - 1] == '\n', "empty extra");
    free(t);

    // the parser itself rejects malformed lines (so the checks above can fail)
    parsed q;
    CHECK(parse("# HELP x y\n# TYPE x gauge\nx{a=\"b} 1\n", &q) == 1, "parser rejects an unterminated label");
    free(q.s);
    CHECK(parse("# HELP x y\n# TYPE x gauge\nx 1 2\n", &q) == 1, "parser rejects a trailing field");
    free(q.s);
    CHECK(parse("y 1\n", &q) == 1, "parser rejects a sample without # TYPE");
    free(q.s);
    srv_metrics_free(m);
}

enum { THREADS = 6, PER = 20000 };
typedef struct { srv_metrics *m; int t; } targ;
typedef struct { srv_metrics *m; volatile int *stop; int renders, bad; } rarg;

static void *updater(void *p) {
    targ *a = p;
    static const int statuses[] = {200, 400, 404, 503};
    for (int i = 0; i < PER; i++)
        srv_metrics_request(a->m, all_routes[(a->t + i) % NR], statuses[i % 4], (i % 100) * 0.001);
    return NULL;
}

// Renders while the updaters run: each snapshot must parse, and within it every route's
// +Inf bucket equals its _count; totals never go down between snapshots.
static void *renderer(void *p) {
    rarg *a = p;
    double last_total = 0;
    while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE) || a->renders == 0) {
        char *t = srv_metrics_render(a->m, "# HELP x y\n# TYPE x gauge\nx 1\n", NULL);
        parsed q;
        if (!t || parse(t, &q)) { a->bad++; free(t); continue; }
        double total = 0;
        for (int r = 0; r < NR; r++) {
            double inf = value_of(&q, "cdam_request_duration_seconds_bucket", "route", all_routes[r], "le", "+Inf", NULL);
            double cnt = value_of(&q, "cdam_request_duration_seconds_count", "route", all_routes[r], NULL);
            if (inf != cnt) a->bad++;
            total += cnt;
        }
        double req = 0;
        for (int i = 0; i < q.n; i++)
            if (!strcmp(q.s[i].name, "cdam_requests_total")) req += q.s[i].value;
        if (req != total || total < last_total) a->bad++;
        last_total = total;
        a->renders++;
        free(q.s);
        free(t);
    }
    return NULL;
}

static void test_threads(void) {
    srv_metrics *m = srv_metrics_create();
    volatile int stop = 0;
    rarg ra = {m, &stop, 0, 0};
    pthread_t rt, t[THREADS];
    targ a[THREADS];
    pthread_create(&rt, NULL, renderer, &ra);
    for (int i = 0; i < THREADS; i++) {
        a[i] = (targ){m, i};
        pthread_create(&t[i], NULL, updater, &a[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    pthread_join(rt, NULL);
    CHECK(ra.bad == 0 && ra.renders > 0, "concurrent renders consistent (%d renders, %d bad)", ra.renders, ra.bad);

    char *txt = srv_metrics_render(m, NULL, NULL);
    parsed p;
    CHECK(parse(txt, &p) == 0, "final render parses");
    double total = 0;
    int okc = 1;
    for (int r = 0; r < NR; r++) {
        double cnt = value_of(&p, "cdam_request_duration_seconds_count", "route", all_routes[r], NULL);
        // each updater spreads its PER requests round-robin over the routes
        double want = 0;
        for (int th = 0; th < THREADS; th++)
            for (int i = 0; i < PER; i++) want += (th + i) % NR == r;
        okc &= cnt == want;
        total += cnt;
    }
    CHECK(okc && total == (double)THREADS * PER, "no update lost: %.0f of %d", total, THREADS * PER);
    double s200 = 0;
    for (int r = 0; r < NR; r++) {
        double v = value_of(&p, "cdam_requests_total", "route", all_routes[r], "status", "200", NULL);
        if (v == v) s200 += v;
    }
    CHECK(s200 == (double)THREADS * PER / 4, "status 200 total %.0f", s200);
    free(p.s);
    free(txt);
    srv_metrics_free(m);
}

int main(void) {
    test_empty();
    test_counts();
    test_escape_and_extra();
    test_threads();
    return check_summary("test_srv_metrics");
}
