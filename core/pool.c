#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

#include "errors.h"

struct tpool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    pthread_barrier_t barrier;
    unsigned long generation;  // bumped by tpool_run; workers wait for a change
    int running;               // helpers still inside the current fn
    int quit;
    tpool_fn fn;
    void *arg;
};

typedef struct {
    tpool *tp;
    int tid;
} worker_arg;

static void *worker(void *p) {
    worker_arg wa = *(worker_arg *)p;
    free(p);
    tpool *tp = wa.tp;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&tp->mu);
        while (tp->generation == seen && !tp->quit) pthread_cond_wait(&tp->start, &tp->mu);
        if (tp->quit) { pthread_mutex_unlock(&tp->mu); return NULL; }
        seen = tp->generation;
        tpool_fn fn = tp->fn;
        void *arg = tp->arg;
        pthread_mutex_unlock(&tp->mu);
        fn(arg, wa.tid, tp->n);
        pthread_mutex_lock(&tp->mu);
        if (--tp->running == 0) pthread_cond_signal(&tp->done);
        pthread_mutex_unlock(&tp->mu);
    }
}

tpool *tpool_create(int n, char *err) {
    if (n < 1 || n > 256) { cdam_fail(err, CDAM_EINVAL, "thread count %d out of range 1..256", n); return NULL; }
    tpool *tp = calloc(1, sizeof *tp);
    if (!tp || !(tp->threads = calloc((size_t)n, sizeof *tp->threads))) {
        free(tp);
        cdam_fail(err, CDAM_ENOMEM, "out of memory");
        return NULL;
    }
    tp->n = n;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->start, NULL);
    pthread_cond_init(&tp->done, NULL);
    pthread_barrier_init(&tp->barrier, NULL, (unsigned)n);
    for (int i = 1; i < n; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { tp->n = i; tpool_free(tp); cdam_fail(err, CDAM_ENOMEM, "out of memory"); return NULL; }
        wa->tp = tp;
        wa->tid = i;
        if (pthread_create(&tp->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            // Helpers 1..i-1 exist; the barrier counts n, so shut them down directly.
            tp->n = i;
            tpool_free(tp);
            cdam_fail(err, CDAM_ENOMEM, "cannot create thread %d", i);
            return NULL;
        }
    }
    return tp;
}

int tpool_size(const tpool *tp) { return tp->n; }

void tpool_run(tpool *tp, tpool_fn fn, void *arg) {
    pthread_mutex_lock(&tp->mu);
    tp->fn = fn;
    tp->arg = arg;
    tp->running = tp->n - 1;
    tp->generation++;
    pthread_cond_broadcast(&tp->start);
    pthread_mutex_unlock(&tp->mu);
    fn(arg, 0, tp->n);
    pthread_mutex_lock(&tp->mu);
    while (tp->running > 0) pthread_cond_wait(&tp->done, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
}

void tpool_barrier(tpool *tp) {
    if (tp->n > 1) pthread_barrier_wait(&tp->barrier);
}

void tpool_free(tpool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    tp->quit = 1;
    pthread_cond_broadcast(&tp->start);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 1; i < tp->n; i++) pthread_join(tp->threads[i], NULL);
    pthread_barrier_destroy(&tp->barrier);
    pthread_cond_destroy(&tp->start);
    pthread_cond_destroy(&tp->done);
    pthread_mutex_destroy(&tp->mu);
    free(tp->threads);
    free(tp);
}

void tpool_split(long n, int nparts, int k, long *lo, long *hi) {
    long base = n / nparts, rem = n % nparts;
    *lo = k * base + (k < rem ? k : rem);
    *hi = *lo + base + (k < rem);
}
