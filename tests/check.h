/* check.h - the tiny test harness of the C tests.
 *
 * Each tests/test_*.c is one binary. CHECK(cond, fmt, ...) records a pass or a failure
 * (with file:line and the message); check_close() compares float arrays with a stated
 * tolerance and prints the worst error. check_summary() prints
 * "<name>: N passed, N failed" and returns the exit status. tests/run.sh adds them up.
 */
#ifndef CDAM_CHECK_H
#define CDAM_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            check_passed++;                                                     \
        } else {                                                                \
            check_failed++;                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)

/* Elementwise |got - want| <= rtol * (|want| + rms(want)): relative error with a floor
 * at the tensor's own scale, so entries that are nearly zero (where a relative error
 * is meaningless) are judged against the size of the whole tensor. Prints the worst
 * element's error relative to that bound's scale and returns 1 when all pass. */
static inline int check_close(const char *what, const float *got, const float *want, long n, double rtol) {
    double ss = 0;
    for (long i = 0; i < n; i++) ss += (double)want[i] * want[i];
    double rms = n ? sqrt(ss / n) : 0;
    double worst = 0;
    long worst_i = -1, bad = 0;
    for (long i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (fabs(want[i]) + rms + 1e-30);
        if (!(e <= rtol)) bad++;
        if (!(e <= worst)) { worst = e; worst_i = i; }  // NaN counts as worst
    }
    printf("  %-44s n=%-7ld worst rel err %.2e (tol %.0e)%s\n", what, n, worst, rtol, bad ? "  FAIL" : "");
    if (bad && worst_i >= 0)
        fprintf(stderr, "FAIL %s: %ld of %ld over tolerance; worst [%ld] got %.8g want %.8g\n", what,
                bad, n, worst_i, got[worst_i], want[worst_i]);
    if (bad) check_failed++; else check_passed++;
    return bad == 0;
}

static inline int check_summary(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
