#include "jobs.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

typedef struct {
    char id[33];
    srv_job_state state;
    double progress;
    double created, finished;  // CLOCK_REALTIME seconds; finished only once finished
    char *result;              // DONE: owned JSON text (may be NULL)
    char *err_code, *err_msg;  // FAILED
} job;

struct srv_jobs {
    pthread_mutex_t mu;
    int max_jobs;
    double ttl;
    job **items;               // sorted by id
    int n;
};

const char *srv_job_state_name(srv_job_state s) {
    switch (s) {
    case SRV_JOB_QUEUED: return "queued";
    case SRV_JOB_RUNNING: return "running";
    case SRV_JOB_DONE: return "done";
    case SRV_JOB_FAILED: return "failed";
    case SRV_JOB_CANCELLED: return "cancelled";
    }
    return "unknown";
}

static double now_realtime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int finished(srv_job_state s) { return s == SRV_JOB_DONE || s == SRV_JOB_FAILED || s == SRV_JOB_CANCELLED; }

static void job_free(job *jb) {
    if (!jb) return;
    free(jb->result);
    free(jb->err_code);
    free(jb->err_msg);
    free(jb);
}

srv_jobs *srv_jobs_create(int max_jobs, double ttl_s) {
    if (max_jobs < 1 || !(ttl_s >= 0)) return NULL;
    srv_jobs *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->items = calloc((size_t)max_jobs, sizeof *j->items);
    if (!j->items) { free(j); return NULL; }
    j->max_jobs = max_jobs;
    j->ttl = ttl_s;
    if (pthread_mutex_init(&j->mu, NULL)) { free(j->items); free(j); return NULL; }
    return j;
}

void srv_jobs_free(srv_jobs *j) {
    if (!j) return;
    for (int i = 0; i < j->n; i++) job_free(j->items[i]);
    free(j->items);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

// Position of id in the sorted table (found: *pos is its index and 1 is returned;
// else *pos is where it would go). Caller holds the lock.
static int locate(const srv_jobs *j, const char *id, int *pos) {
    int lo = 0, hi = j->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(j->items[mid]->id, id);
        if (!c) { *pos = mid; return 1; }
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    *pos = lo;
    return 0;
}

// The job of id or NULL (also for a malformed id). Caller holds the lock.
static job *find(const srv_jobs *j, const char *id) {
    int pos;
    if (!id || strnlen(id, 33) != 32) return NULL;
    return locate(j, id, &pos) ? j->items[pos] : NULL;
}

// Drops finished jobs older than the ttl, keeping the order. Caller holds the lock.
static void expire_locked(srv_jobs *j, double now) {
    int k = 0;
    for (int i = 0; i < j->n; i++) {
        job *jb = j->items[i];
        if (finished(jb->state) && now - jb->finished > j->ttl) job_free(jb);
        else j->items[k++] = jb;
    }
    j->n = k;
}


int srv_jobs_add(srv_jobs *j, char id[33]) {
    if (!j || !id) return CDAM_EINVAL;
    job *jb = calloc(1, sizeof *jb);
    if (!jb) return CDAM_ENOMEM;
    jb->state = SRV_JOB_QUEUED;
    jb->created = now_realtime();
    pthread_mutex_lock(&j->mu);
    expire_locked(j, jb->created);
    int rc = 0, pos = 0;
    if (j->n >= j->max_jobs) {
        rc = CDAM_ELIMIT;
    } else {
        do {
            if (srv_random_id(jb->id)) { rc = CDAM_EIO; break; }
        } while (locate(j, jb->id, &pos));
    }
    if (!rc) {
        memmove(&j->items[pos + 1], &j->items[pos], sizeof *j->items * (size_t)(j->n - pos));
        j->items[pos] = jb;
        j->n++;
        memcpy(id, jb->id, 33);
    }
    pthread_mutex_unlock(&j->mu);
    if (rc) free(jb);
    return rc;
}

int srv_jobs_start(srv_jobs *j, const char *id) {
    if (!j) return CDAM_ENOTFOUND;
    pthread_mutex_lock(&j->mu);
    job *jb = find(j, id);
    int rc = !jb                                 ? CDAM_ENOTFOUND
             : jb->state == SRV_JOB_CANCELLED    ? CDAM_ECANCELLED
             : jb->state != SRV_JOB_QUEUED       ? CDAM_EINVAL
                                                 : 0;
    if (!rc) jb->state = SRV_JOB_RUNNING;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int srv_jobs_progress(srv_jobs *j, const char *id, double progress) {
    if (!j) return 1;
    pthread_mutex_lock(&j->mu);
    job *jb = find(j, id);
    int stop = !jb || jb->state == SRV_JOB_CANCELLED;
    if (jb && jb->state == SRV_JOB_RUNNING && progress > jb->progress)  // NaN compares false
        jb->progress = progress > 1 ? 1 : progress;
    pthread_mutex_unlock(&j->mu);
    return stop;
}

void srv_jobs_finish(srv_jobs *j, const char *id, srv_job_state state, char *result_json, const char *err_code,
                     const char *err_message) {
    if (!j || (state != SRV_JOB_DONE && state != SRV_JOB_FAILED && state != SRV_JOB_CANCELLED)) {
        free(result_json);
        return;
    }
    char *code = NULL, *msg = NULL;
    if (state == SRV_JOB_FAILED) {  // copy outside the lock
        code = strdup(err_code ? err_code : "internal");
        msg = strdup(err_message ? err_message : "");
    }
    if (state != SRV_JOB_DONE) { free(result_json); result_json = NULL; }
    pthread_mutex_lock(&j->mu);
    job *jb = find(j, id);
    if (jb && !finished(jb->state)) {
        jb->state = state;
        jb->finished = now_realtime();
        if (state == SRV_JOB_DONE) { jb->progress = 1; jb->result = result_json; result_json = NULL; }
        if (state == SRV_JOB_FAILED) { jb->err_code = code; jb->err_msg = msg; code = msg = NULL; }
    }
    pthread_mutex_unlock(&j->mu);
    free(result_json);
    free(code);
    free(msg);
}

char *srv_jobs_get_json(srv_jobs *j, const char *id) {
    if (!j) return NULL;
    char *out = NULL;
    pthread_mutex_lock(&j->mu);
    job *jb = find(j, id);
    if (!jb) goto done;
    // the small fields through cJSON; the result (possibly large) is spliced in verbatim
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "id", jb->id) &&
             cJSON_AddStringToObject(o, "state", srv_job_state_name(jb->state)) &&
             cJSON_AddNumberToObject(o, "progress", jb->progress) && cJSON_AddNumberToObject(o, "created", jb->created);
    if (ok && jb->state == SRV_JOB_FAILED) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        ok = e && cJSON_AddStringToObject(e, "code", jb->err_code ? jb->err_code : "internal") &&
             cJSON_AddStringToObject(e, "message", jb->err_msg ? jb->err_msg : "the job failed (out of memory)");
    }
    char *head = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!head) goto done;
    if (jb->state != SRV_JOB_DONE) { out = head; goto done; }
    const char *res = jb->result ? jb->result : "null";
    size_t hl = strlen(head), rl = strlen(res);
    static const char key[] = ",\"result\":";
    out = malloc(hl - 1 + sizeof key - 1 + rl + 2);
    if (out) {  // head ends with '}'
        char *p = out;
        memcpy(p, head, hl - 1); p += hl - 1;
        memcpy(p, key, sizeof key - 1); p += sizeof key - 1;
        memcpy(p, res, rl); p += rl;
        memcpy(p, "}", 2);
    }
    free(head);
done:
    pthread_mutex_unlock(&j->mu);
    return out;
}

int srv_jobs_exists(srv_jobs *j, const char *id) {
    if (!j) return 0;
    pthread_mutex_lock(&j->mu);
    int yes = find(j, id) != NULL;
    pthread_mutex_unlock(&j->mu);
    return yes;
}

int srv_jobs_cancel(srv_jobs *j, const char *id) {
    if (!j) return CDAM_ENOTFOUND;
    pthread_mutex_lock(&j->mu);
    job *jb = find(j, id);
    if (jb && !finished(jb->state)) {
        jb->state = SRV_JOB_CANCELLED;
        jb->finished = now_realtime();
    }
    pthread_mutex_unlock(&j->mu);
    return jb ? 0 : CDAM_ENOTFOUND;
}

void srv_jobs_expire(srv_jobs *j, double now_s) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    expire_locked(j, now_s);
    pthread_mutex_unlock(&j->mu);
}

void srv_jobs_counts(srv_jobs *j, int counts[5]) {
    for (int s = 0; s < 5; s++) counts[s] = 0;
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    for (int i = 0; i < j->n; i++) counts[j->items[i]->state]++;
    pthread_mutex_unlock(&j->mu);
}
