/* pool.h - a fixed team of threads that run one function together (fork-join), with
 * a barrier inside it. The engine's parallelism: every thread runs the same block
 * code on its own rows, meeting at tpool_barrier where rows depend on each other.
 *
 * Usage:
 *     tpool *tp = tpool_create(2, err);          // the caller is thread 0; 1 helper
 *     tpool_run(tp, fn, arg);                    // fn(arg, tid, n) on every thread
 *     tpool_free(tp);
 * Inside fn, every one of the n threads must call tpool_barrier the same number of
 * times. Ownership: the pool owns its threads; tpool_free joins them. Thread-safety:
 * one tpool_run at a time per pool (a pool belongs to one engine workspace).
 */
#ifndef CDAM_POOL_H
#define CDAM_POOL_H

typedef struct tpool tpool;
typedef void (*tpool_fn)(void *arg, int tid, int nthreads);

tpool *tpool_create(int nthreads, char *err);
int tpool_size(const tpool *tp);
void tpool_run(tpool *tp, tpool_fn fn, void *arg);
void tpool_barrier(tpool *tp);
void tpool_free(tpool *tp);

// Splits [0, n) into nparts near-equal contiguous ranges; part k is [*lo, *hi).
void tpool_split(long n, int nparts, int k, long *lo, long *hi);

#endif
