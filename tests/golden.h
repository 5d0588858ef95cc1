/* golden.h - reading the PyTorch goldens (safetensors) in the C tests and comparing
 * the engine's tensors with them through check_close (tests/check.h). */
#ifndef CDAM_GOLDEN_H
#define CDAM_GOLDEN_H

#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "safetensors.h"

// A golden tensor as malloc'ed float32 (NULL if absent); *n gets its size if n != NULL.
static inline float *golden(const st_file *g, const char *name, long *n) {
    const st_tensor *t = st_find(g, name);
    if (!t) return NULL;
    long k = (long)st_numel(t);
    if (n) *n = k;
    float *p = malloc(sizeof(float) * (size_t)(k ? k : 1));
    st_to_f32(t, p);
    return p;
}

// check_close of got (n_expect values) against golden `name`, labelled "label name".
static inline void golden_compare(double rtol, const char *label, const char *name, const st_file *g, const float *got,
                                  long n_expect) {
    long n = 0;
    float *want = golden(g, name, &n);
    CHECK(want && n == n_expect, "%s: golden '%s' missing or %ld values (engine %ld)", label, name, n, n_expect);
    if (want && n == n_expect) {
        char what[160];
        snprintf(what, sizeof what, "%s %s", label, name);
        check_close(what, got, want, n, rtol);
    }
    free(want);
}

#endif
