/* test_srv_jobs.c - server/jobs.c: every state transition, the JSON of each state
 * (parsed back with cJSON), progress rules, expiry, the job limit, calls on unknown
 * ids, and workers racing cancellers and readers on many threads. */
#include <cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "jobs.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void sleep_us(int us) {
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

static char *dup_str(const char *s) {
    char *p = malloc(strlen(s) + 1);
    strcpy(p, s);
    return p;
}

// Parses the job's JSON; NULL if the job is unknown or the text is not JSON.
static cJSON *get(srv_jobs *j, const char *id) {
    char *s = srv_jobs_get_json(j, id);
    if (!s) return NULL;
    cJSON *o = cJSON_Parse(s);
    if (!o) fprintf(stderr, "not JSON: %s\n", s);
    free(s);
    return o;
}

static const char *state_of(const cJSON *o) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "state");
    return cJSON_IsString(s) ? s->valuestring : "?";
}

static double progress_of(const cJSON *o) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "progress");
    return cJSON_IsNumber(p) ? p->valuedouble : -1;
}

static int has_key(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k) != NULL; }

// 1 if the job exists and its JSON shows state want.
static int is_state(srv_jobs *j, const char *id, const char *want) {
    cJSON *o = get(j, id);
    int ok = o && !strcmp(state_of(o), want);
    cJSON_Delete(o);
    return ok;
}

static void test_names(void) {
    CHECK(!strcmp(srv_job_state_name(SRV_JOB_QUEUED), "queued") && !strcmp(srv_job_state_name(SRV_JOB_RUNNING), "running") &&
              !strcmp(srv_job_state_name(SRV_JOB_DONE), "done") && !strcmp(srv_job_state_name(SRV_JOB_FAILED), "failed") &&
              !strcmp(srv_job_state_name(SRV_JOB_CANCELLED), "cancelled"),
          "state names");
    CHECK(!strcmp(srv_job_state_name((srv_job_state)99), "unknown"), "unknown state name");
    CHECK(srv_jobs_create(0, 10) == NULL && srv_jobs_create(5, -1) == NULL && srv_jobs_create(5, NAN) == NULL, "bad create args");
    srv_jobs_free(NULL);
}

static void test_transitions(void) {
    srv_jobs *j = srv_jobs_create(100, 600);
    char id[33], id2[33];
    double t0 = now_s();
    CHECK(srv_jobs_add(j, id) == 0, "add");
    CHECK(strlen(id) == 32 && strspn(id, "0123456789abcdef") == 32, "id is 32 lowercase hex: %s", id);
    CHECK(srv_jobs_add(j, id2) == 0 && strcmp(id, id2) != 0, "second add, distinct id");

    // queued JSON
    cJSON *o = get(j, id);
    CHECK(o && cJSON_IsObject(o), "queued JSON parses");
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(o, "id"), *cr = cJSON_GetObjectItemCaseSensitive(o, "created");
    CHECK(cJSON_IsString(jid) && !strcmp(jid->valuestring, id), "JSON id");
    CHECK(!strcmp(state_of(o), "queued") && progress_of(o) == 0, "queued, progress 0");
    CHECK(cJSON_IsNumber(cr) && fabs(cr->valuedouble - t0) < 5, "created is now (%.3f vs %.3f)", cr ? cr->valuedouble : 0, t0);
    CHECK(!has_key(o, "result") && !has_key(o, "error"), "queued: no result, no error");
    CHECK(cJSON_GetArraySize(o) == 4, "queued JSON has exactly 4 members");
    cJSON_Delete(o);

    int c[5];
    srv_jobs_counts(j, c);
    CHECK(c[SRV_JOB_QUEUED] == 2 && c[SRV_JOB_RUNNING] == 0, "counts: 2 queued");

    // progress of a queued job is ignored
    CHECK(srv_jobs_progress(j, id, 0.5) == 0, "progress on queued: 0");
    o = get(j, id);
    CHECK(progress_of(o) == 0, "queued progress unchanged");
    cJSON_Delete(o);

    // running, progress rules
    CHECK(srv_jobs_start(j, id) == 0, "start");
    CHECK(srv_jobs_start(j, id) == CDAM_EINVAL, "start twice: EINVAL");
    CHECK(is_state(j, id, "running"), "running");
    CHECK(srv_jobs_progress(j, id, 0.3) == 0, "progress 0.3");
    CHECK(srv_jobs_progress(j, id, 0.2) == 0, "progress 0.2 (ignored)");
    CHECK(srv_jobs_progress(j, id, NAN) == 0, "progress NaN (ignored)");
    CHECK(srv_jobs_progress(j, id, -1) == 0, "progress -1 (ignored)");
    o = get(j, id);
    CHECK(progress_of(o) == 0.3, "progress monotone: %g", progress_of(o));
    cJSON_Delete(o);
    CHECK(srv_jobs_progress(j, id, 7) == 0, "progress 7 (clamped)");
    o = get(j, id);
    CHECK(progress_of(o) == 1, "progress clamped to 1: %g", progress_of(o));
    cJSON_Delete(o);
    srv_jobs_counts(j, c);
    CHECK(c[SRV_JOB_QUEUED] == 1 && c[SRV_JOB_RUNNING] == 1, "counts: 1 queued, 1 running");

    // done
    srv_jobs_finish(j, id, SRV_JOB_DONE, dup_str("{\"model\": \"tiny\", \"scores\": [1, 2.5, -3], \"s\": \"a\\\"b\"}"), "x", "y");
    o = get(j, id);
    CHECK(!strcmp(state_of(o), "done") && progress_of(o) == 1, "done, progress 1");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "result");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(r, "scores");
    const cJSON *ss = cJSON_GetObjectItemCaseSensitive(r, "s");
    CHECK(cJSON_IsObject(r) && cJSON_GetArraySize(sc) == 3 && cJSON_GetArrayItem(sc, 1)->valuedouble == 2.5 &&
              cJSON_IsString(ss) && !strcmp(ss->valuestring, "a\"b"),
          "result embedded verbatim");
    CHECK(!has_key(o, "error") && cJSON_GetArraySize(o) == 5, "done: result, no error");
    cJSON_Delete(o);
    // finished jobs are immutable: later finish/cancel/progress/start change nothing
    srv_jobs_finish(j, id, SRV_JOB_FAILED, dup_str("{\"leak\": 1}"), "late", "late");
    srv_jobs_finish(j, id, SRV_JOB_CANCELLED, NULL, NULL, NULL);
    CHECK(srv_jobs_cancel(j, id) == 0, "cancel of a done job returns 0");
    CHECK(srv_jobs_start(j, id) == CDAM_EINVAL, "start of a done job: EINVAL");
    CHECK(srv_jobs_progress(j, id, 0.5) == 0, "progress of a done job: 0");
    o = get(j, id);
    CHECK(!strcmp(state_of(o), "done") && progress_of(o) == 1 && has_key(o, "result"), "done job unchanged");
    cJSON_Delete(o);

    // failed (from running), with quotes and newlines in the message
    CHECK(srv_jobs_start(j, id2) == 0, "start 2");
    srv_jobs_progress(j, id2, 0.4);
    srv_jobs_finish(j, id2, SRV_JOB_FAILED, dup_str("[1]"), "bad_image", "not an \"image\"\nline 2 \xc3\xa9");
    o = get(j, id2);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(e, "code"), *em = cJSON_GetObjectItemCaseSensitive(e, "message");
    CHECK(!strcmp(state_of(o), "failed") && cJSON_IsString(ec) && !strcmp(ec->valuestring, "bad_image") && cJSON_IsString(em) &&
              !strcmp(em->valuestring, "not an \"image\"\nline 2 \xc3\xa9"),
          "failed: error code and message round-trip");
    CHECK(!has_key(o, "result") && progress_of(o) == 0.4 && cJSON_GetArraySize(o) == 5, "failed: no result, progress kept");
    cJSON_Delete(o);

    // failed straight from queued, NULL code and message
    char id3[33];
    srv_jobs_add(j, id3);
    srv_jobs_finish(j, id3, SRV_JOB_FAILED, NULL, NULL, NULL);
    o = get(j, id3);
    e = cJSON_GetObjectItemCaseSensitive(o, "error");
    ec = cJSON_GetObjectItemCaseSensitive(e, "code");
    em = cJSON_GetObjectItemCaseSensitive(e, "message");
    CHECK(!strcmp(state_of(o), "failed") && cJSON_IsString(ec) && !strcmp(ec->valuestring, "internal") && cJSON_IsString(em) &&
              !strcmp(em->valuestring, ""),
          "queued -> failed with default code");
    CHECK(srv_jobs_start(j, id3) == CDAM_EINVAL, "start of a failed job: EINVAL");
    cJSON_Delete(o);

    // done with a NULL result
    char id4[33];
    srv_jobs_add(j, id4);
    srv_jobs_start(j, id4);
    srv_jobs_finish(j, id4, SRV_JOB_DONE, NULL, NULL, NULL);
    o = get(j, id4);
    CHECK(!strcmp(state_of(o), "done") && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "result")), "NULL result shown as null");
    cJSON_Delete(o);

    // a finish with a state that is not final is ignored (and frees the result)
    char id5[33];
    srv_jobs_add(j, id5);
    srv_jobs_finish(j, id5, SRV_JOB_RUNNING, dup_str("{}"), NULL, NULL);
    srv_jobs_finish(j, id5, SRV_JOB_QUEUED, dup_str("{}"), NULL, NULL);
    CHECK(is_state(j, id5, "queued"), "non-final finish ignored");

    // cancel a queued job: cancelled at once; the worker's start then fails
    CHECK(srv_jobs_cancel(j, id5) == 0 && is_state(j, id5, "cancelled"), "queued -> cancelled");
    CHECK(srv_jobs_start(j, id5) == CDAM_ECANCELLED, "start of a cancelled job: ECANCELLED");
    CHECK(srv_jobs_progress(j, id5, 0.5) == 1, "progress of a cancelled job: 1");
    srv_jobs_finish(j, id5, SRV_JOB_DONE, dup_str("{\"late\": true}"), NULL, NULL);
    o = get(j, id5);
    CHECK(!strcmp(state_of(o), "cancelled") && !has_key(o, "result") && !has_key(o, "error"), "late finish of a cancelled job ignored");
    cJSON_Delete(o);

    // cancel a running job: cancelled at once, the worker sees it through progress
    char id6[33];
    srv_jobs_add(j, id6);
    srv_jobs_start(j, id6);
    CHECK(srv_jobs_progress(j, id6, 0.25) == 0, "running, not cancelled");
    CHECK(srv_jobs_cancel(j, id6) == 0, "cancel running");
    CHECK(is_state(j, id6, "cancelled"), "running -> cancelled at once");
    CHECK(srv_jobs_progress(j, id6, 0.5) == 1, "worker told to stop");
    srv_jobs_finish(j, id6, SRV_JOB_CANCELLED, NULL, NULL, NULL);
    o = get(j, id6);
    CHECK(!strcmp(state_of(o), "cancelled") && progress_of(o) == 0.25, "stays cancelled, progress kept");
    cJSON_Delete(o);
    CHECK(srv_jobs_cancel(j, id6) == 0 && is_state(j, id6, "cancelled"), "cancel twice");

    // a running job the worker finishes as cancelled on its own
    char id7[33];
    srv_jobs_add(j, id7);
    srv_jobs_start(j, id7);
    srv_jobs_finish(j, id7, SRV_JOB_CANCELLED, dup_str("{}"), NULL, NULL);
    CHECK(is_state(j, id7, "cancelled"), "running -> cancelled by the worker");

    srv_jobs_counts(j, c);
    CHECK(c[SRV_JOB_QUEUED] == 0 && c[SRV_JOB_RUNNING] == 0 && c[SRV_JOB_DONE] == 2 && c[SRV_JOB_FAILED] == 2 &&
              c[SRV_JOB_CANCELLED] == 3,
          "counts %d %d %d %d %d", c[0], c[1], c[2], c[3], c[4]);

    // unknown and malformed ids
    const char *unknown = "0123456789abcdef0123456789abcdef";
    CHECK(srv_jobs_get_json(j, unknown) == NULL, "get unknown: NULL");
    CHECK(srv_jobs_get_json(j, "short") == NULL && srv_jobs_get_json(j, NULL) == NULL, "get malformed: NULL");
    CHECK(srv_jobs_cancel(j, unknown) == CDAM_ENOTFOUND, "cancel unknown");
    CHECK(srv_jobs_start(j, unknown) == CDAM_ENOTFOUND, "start unknown");
    CHECK(srv_jobs_progress(j, unknown, 0.5) == 1, "progress unknown: stop");
    srv_jobs_finish(j, unknown, SRV_JOB_DONE, dup_str("{}"), NULL, NULL);  // freed (LeakSanitizer checks)
    char longer[40];
    snprintf(longer, sizeof longer, "%sx", id);
    CHECK(srv_jobs_get_json(j, longer) == NULL, "id with a suffix: NULL");
    CHECK(srv_jobs_add(j, NULL) == CDAM_EINVAL && srv_jobs_add(NULL, id) == CDAM_EINVAL, "add NULL args");

    // a large result is spliced in whole
    char id8[33];
    srv_jobs_add(j, id8);
    srv_jobs_start(j, id8);
    size_t n = 200000;
    char *big = malloc(n * 4 + 16), *p = big;
    p += sprintf(p, "{\"scores\":[");
    for (size_t i = 0; i < n; i++) p += sprintf(p, i ? ",%d" : "%d", (int)(i % 10));
    sprintf(p, "]}");
    srv_jobs_finish(j, id8, SRV_JOB_DONE, big, NULL, NULL);
    o = get(j, id8);
    sc = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "result"), "scores");
    CHECK(cJSON_GetArraySize(sc) == (int)n && cJSON_GetArrayItem(sc, 12345)->valuedouble == 5, "large result intact");
    cJSON_Delete(o);
    srv_jobs_free(j);
}

static void test_expiry_and_limit(void) {
    srv_jobs *j = srv_jobs_create(3, 10);
    char a[33], b[33], c[33], d[33];
    CHECK(srv_jobs_add(j, a) == 0 && srv_jobs_add(j, b) == 0 && srv_jobs_add(j, c) == 0, "three adds");
    CHECK(srv_jobs_add(j, d) == CDAM_ELIMIT, "fourth: ELIMIT");
    srv_jobs_start(j, a);
    srv_jobs_finish(j, a, SRV_JOB_DONE, dup_str("{\"x\": 1}"), NULL, NULL);
    double t = now_s();
    CHECK(srv_jobs_add(j, d) == CDAM_ELIMIT, "finished but young job still counts");
    srv_jobs_expire(j, t + 5);
    CHECK(is_state(j, a, "done"), "not expired before the ttl");
    srv_jobs_expire(j, t + 11);
    CHECK(srv_jobs_get_json(j, a) == NULL, "expired after the ttl");
    CHECK(is_state(j, b, "queued") && is_state(j, c, "queued"), "unfinished jobs kept");
    srv_jobs_start(j, b);
    srv_jobs_expire(j, t + 1e9);
    CHECK(is_state(j, b, "running") && is_state(j, c, "queued"), "unfinished jobs never expire");
    CHECK(srv_jobs_add(j, d) == 0, "room again after expiry");
    CHECK(srv_jobs_add(j, a) == CDAM_ELIMIT, "full again");
    srv_jobs_cancel(j, c);
    srv_jobs_expire(j, t + 1e9);
    CHECK(srv_jobs_get_json(j, c) == NULL, "cancelled jobs expire too");
    int n[5];
    srv_jobs_counts(j, n);
    CHECK(n[SRV_JOB_RUNNING] == 1 && n[SRV_JOB_QUEUED] == 1 && n[2] + n[3] + n[4] == 0, "counts after expiry");
    srv_jobs_free(j);

    // ttl 0: add expires finished jobs by itself
    j = srv_jobs_create(2, 0);
    srv_jobs_add(j, a);
    srv_jobs_add(j, b);
    srv_jobs_finish(j, a, SRV_JOB_FAILED, NULL, "e", "m");
    sleep_ms(5);
    CHECK(srv_jobs_add(j, c) == 0, "add expires an old finished job to make room");
    CHECK(srv_jobs_get_json(j, a) == NULL && is_state(j, b, "queued") && is_state(j, c, "queued"), "the finished one went");
    srv_jobs_free(j);

    // free with results still held (LeakSanitizer checks they are freed)
    j = srv_jobs_create(4, 100);
    srv_jobs_add(j, a);
    srv_jobs_start(j, a);
    srv_jobs_finish(j, a, SRV_JOB_DONE, dup_str("{\"held\": 1}"), NULL, NULL);
    srv_jobs_add(j, b);
    srv_jobs_finish(j, b, SRV_JOB_FAILED, NULL, "c", "m");
    srv_jobs_free(j);
}

// ------------------------------------------------------------ races

enum { NJOBS = 400, WORKERS = 4, CANCELLERS = 2, READERS = 2 };

typedef struct {
    srv_jobs *j;
    char ids[NJOBS][33];
    int next;                 // next job for a worker
    pthread_mutex_t mu;
    int bad;                  // invariant violations seen by any thread
    int seen_cancelled[NJOBS];
    int done_ok;
} race;

static void *worker(void *p) {
    race *r = p;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int k = r->next++;
        pthread_mutex_unlock(&r->mu);
        if (k >= NJOBS) return NULL;
        const char *id = r->ids[k];
        int rc = srv_jobs_start(r->j, id);
        if (rc == CDAM_ECANCELLED) continue;
        if (rc) { __atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED); continue; }
        int stopped = 0;
        for (int s = 1; s <= 20 && !stopped; s++) {
            sleep_us(50);  // "work"
            stopped = srv_jobs_progress(r->j, id, s / 20.0);
        }
        if (stopped) {
            srv_jobs_finish(r->j, id, SRV_JOB_CANCELLED, NULL, NULL, NULL);
        } else {
            char res[64];
            snprintf(res, sizeof res, "{\"job\": \"%s\"}", id);
            srv_jobs_finish(r->j, id, SRV_JOB_DONE, dup_str(res), NULL, NULL);
        }
    }
}

// Cancels odd-numbered jobs only (so the even ones always end done): first the last one
// (still queued: workers take jobs in order, ~100 ms in all), then random ones, paced
// to overlap the workers so that queued and running jobs both get cancelled.
static void *canceller(void *p) {
    race *r = p;
    unsigned seed = 7;
    for (int i = 0; i < NJOBS / 2; i++) {
        int k = i == 0 ? NJOBS - 1 : (int)(rand_r(&seed) % (NJOBS / 2)) * 2 + 1;
        if (i) sleep_us(100);
        if (srv_jobs_cancel(r->j, r->ids[k])) __atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
        // right after a cancel the job is final: cancelled, or done if it won the race
        cJSON *o = get(r->j, r->ids[k]);
        const char *s = o ? state_of(o) : "?";
        if (strcmp(s, "cancelled") && strcmp(s, "done")) __atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
        if (!strcmp(s, "cancelled")) __atomic_store_n(&r->seen_cancelled[k], 1, __ATOMIC_RELAXED);
        cJSON_Delete(o);
    }
    return NULL;
}

static void *reader(void *p) {
    race *r = p;
    unsigned seed = 11;
    for (int i = 0; i < 3 * NJOBS; i++) {
        int k = (int)(rand_r(&seed) % NJOBS);
        cJSON *o = get(r->j, r->ids[k]);
        if (!o) { __atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED); continue; }
        const char *s = state_of(o);
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "result");
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(res, "job");
        double pr = progress_of(o);
        int ok = pr >= 0 && pr <= 1 && !has_key(o, "error");
        if (!strcmp(s, "done")) ok &= cJSON_IsString(jid) && !strcmp(jid->valuestring, r->ids[k]) && pr == 1;
        else ok &= !res && (!strcmp(s, "queued") || !strcmp(s, "running") || !strcmp(s, "cancelled"));
        if (!ok) __atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
        cJSON_Delete(o);
        int c[5];
        srv_jobs_counts(r->j, c);
        if (c[0] + c[1] + c[2] + c[3] + c[4] != NJOBS || c[SRV_JOB_FAILED]) __atomic_add_fetch(&r->bad, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_races(void) {
    static race r;
    memset(&r, 0, sizeof r);
    r.j = srv_jobs_create(NJOBS, 600);
    pthread_mutex_init(&r.mu, NULL);
    int addfail = 0;
    for (int i = 0; i < NJOBS; i++) addfail += srv_jobs_add(r.j, r.ids[i]) != 0;
    CHECK(addfail == 0, "adds for the race");
    pthread_t t[WORKERS + CANCELLERS + READERS];
    int nt = 0;
    for (int i = 0; i < READERS; i++) pthread_create(&t[nt++], NULL, reader, &r);
    for (int i = 0; i < CANCELLERS; i++) pthread_create(&t[nt++], NULL, canceller, &r);
    for (int i = 0; i < WORKERS; i++) pthread_create(&t[nt++], NULL, worker, &r);
    for (int i = 0; i < nt; i++) pthread_join(t[i], NULL);
    CHECK(r.bad == 0, "race: %d invariant violations", r.bad);
    int c[5];
    srv_jobs_counts(r.j, c);
    CHECK(c[SRV_JOB_DONE] + c[SRV_JOB_CANCELLED] == NJOBS, "race: every job final (done %d, cancelled %d)", c[2], c[4]);
    CHECK(c[SRV_JOB_CANCELLED] > 0 && c[SRV_JOB_DONE] >= NJOBS / 2, "race: both outcomes happened");
    int flips = 0, results = 0, even_done = 0;
    for (int i = 0; i < NJOBS; i++) {
        cJSON *o = get(r.j, r.ids[i]);
        if (i % 2 == 0) even_done += !strcmp(state_of(o), "done");
        if (r.seen_cancelled[i] && strcmp(state_of(o), "cancelled")) flips++;
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "result"), "job");
        if (!strcmp(state_of(o), "done")) results += cJSON_IsString(jid) && !strcmp(jid->valuestring, r.ids[i]);
        cJSON_Delete(o);
    }
    CHECK(even_done == NJOBS / 2, "race: jobs nobody cancelled all done (%d of %d)", even_done, NJOBS / 2);
    CHECK(flips == 0, "race: a job seen cancelled never became anything else (%d did)", flips);
    CHECK(results == c[SRV_JOB_DONE], "race: every done job carries its own result");
    pthread_mutex_destroy(&r.mu);
    srv_jobs_free(r.j);
}

int main(void) {
    test_names();
    test_transitions();
    test_expiry_and_limit();
    test_races();
    return check_summary("test_srv_jobs");
}
