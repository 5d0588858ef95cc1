/* jobs.h - the table of asynchronous jobs (POST /explain with async, GET/DELETE /jobs/{id}).
 *
 * Usage:
 *     srv_jobs *j = srv_jobs_create(1000, 600);        // at most 1000 jobs, keep 600 s
 *     char id[33];
 *     srv_jobs_add(j, id);                             // client: queued; hand id to a worker
 *     // worker:
 *     if (srv_jobs_start(j, id) == 0) {                // queued -> running
 *         ... if (srv_jobs_progress(j, id, 0.5)) { stop; srv_jobs_finish(j, id, SRV_JOB_CANCELLED, NULL, NULL, NULL); }
 *         srv_jobs_finish(j, id, SRV_JOB_DONE, result_json, NULL, NULL);   // table owns result_json
 *     }
 *     // client:
 *     char *s = srv_jobs_get_json(j, id); ... free(s);
 *     srv_jobs_cancel(j, id);
 *     srv_jobs_expire(j, now);                         // now: CLOCK_REALTIME seconds
 *
 * States: queued -> running -> done | failed | cancelled, and queued -> cancelled.
 * Cancelling a running job marks it cancelled at once (so a DELETE can answer with the
 * final state); the worker learns it from srv_jobs_progress returning 1, stops, and its
 * srv_jobs_finish is then ignored. Finished jobs are immutable.
 *
 * Expiry: a finished job is dropped by srv_jobs_expire once more than ttl_s seconds have
 * passed since it finished; srv_jobs_add expires with the current time first. Unfinished
 * jobs never expire.
 *
 * Ids: 32 lowercase hex characters from getrandom(2).
 *
 * Ownership: the table owns the result texts handed to srv_jobs_finish; get_json returns
 * a fresh copy. Thread-safety: every function may be called from any thread at the same
 * time (one mutex; lookups are O(log n) in a table sorted by id); srv_jobs_free only once
 * nobody else uses the table. Worker calls on a job that no longer exists are harmless.
 */
#ifndef CDAM_SRV_JOBS_H
#define CDAM_SRV_JOBS_H

#include "errors.h"

typedef enum { SRV_JOB_QUEUED, SRV_JOB_RUNNING, SRV_JOB_DONE, SRV_JOB_FAILED, SRV_JOB_CANCELLED } srv_job_state;

// "queued", "running", "done", "failed", "cancelled" ("unknown" for anything else).
const char *srv_job_state_name(srv_job_state s);

typedef struct srv_jobs srv_jobs;

// New table for at most max_jobs jobs (>= 1) in any state; finished jobs are kept ttl_s
// seconds (>= 0) after finishing. NULL on out of memory or a bad argument.
srv_jobs *srv_jobs_create(int max_jobs, double ttl_s);

// Frees the table, every job and every result. NULL is ignored.
void srv_jobs_free(srv_jobs *j);

// Adds a queued job with progress 0 and writes its id (33 bytes with the NUL). Expires
// old finished jobs first. Returns 0, CDAM_ELIMIT when max_jobs jobs exist, CDAM_ENOMEM,
// CDAM_EIO (no random bytes), CDAM_EINVAL (NULL argument).
int srv_jobs_add(srv_jobs *j, char id[33]);

// Worker: queued -> running. Returns 0, CDAM_ECANCELLED if the job was cancelled before
// it started, CDAM_ENOTFOUND if unknown, CDAM_EINVAL if it is already running or
// finished (started twice).
int srv_jobs_start(srv_jobs *j, const char *id);

// Worker: records progress of a running job, clamped to [0,1]; smaller values than the
// current one (and NaN) are ignored. Returns 1 when the worker should stop: the job was
// cancelled, or no longer exists; else 0.
int srv_jobs_progress(srv_jobs *j, const char *id, double progress);

// Worker: finishes a queued or running job. state SRV_JOB_DONE takes ownership of
// result_json (a malloc'd NUL-terminated JSON text, embedded verbatim by get_json;
// NULL is shown as null) and sets progress to 1; SRV_JOB_FAILED copies err_code and
// err_message (NULL shown as "internal" and ""); SRV_JOB_CANCELLED. The call is ignored,
// and result_json freed, if the job does not exist, is already finished (for instance
// cancelled meanwhile), or state is not one of those three.
void srv_jobs_finish(srv_jobs *j, const char *id, srv_job_state state, char *result_json, const char *err_code,
                     const char *err_message);

// Client: the job as JSON text (malloc'd; the caller frees it), NULL if unknown or out of
// memory:
//   {"id": "...", "state": "queued", "progress": 0.25, "created": 1764000000.123,
//    "result": <result JSON verbatim>          (state done only)
//    "error": {"code": "...", "message": "..."} (state failed only)}
// created is unix seconds (CLOCK_REALTIME) of srv_jobs_add.
char *srv_jobs_get_json(srv_jobs *j, const char *id);
// 1 if a job has this id (queued, running or finished and not yet expired), else 0:
// tells "unknown" from "out of memory" when srv_jobs_get_json gives NULL.
int srv_jobs_exists(srv_jobs *j, const char *id);

// Client: cancels a queued or running job: its state becomes cancelled at once (a running
// worker finds out through srv_jobs_progress). A finished job is left as it is. Returns
// 0, or CDAM_ENOTFOUND if unknown.
int srv_jobs_cancel(srv_jobs *j, const char *id);

// Drops finished jobs that finished more than ttl_s seconds before now_s (CLOCK_REALTIME
// seconds, as from clock_gettime).
void srv_jobs_expire(srv_jobs *j, double now_s);

// counts[s] = number of jobs in state s, for the 5 states.
void srv_jobs_counts(srv_jobs *j, int counts[5]);

#endif
