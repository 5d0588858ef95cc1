/* bench_explain.c - cost of each explanation method as a multiple of a plain forward
 * pass, measured side by side in one run (ViT-S/8 at 224 for the goals).
 *
 *   build/bench_explain MODEL [--size 224] [--threads 2] [--reps 5] [--tam]
 *   build/bench_explain MODEL --only METHOD [--size S]   one method once; prints peak RSS
 *
 * Every row times forward + method (the forward included, as a request pays it), except
 * "per extra class", which is the increment from 1 to 5 classes divided by 4.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "explain.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const vit_model *m;
    vit_ws *ws, *ws_rec;
    explain_ws *ew, *ew_rec;
    float *x, *scores;
    int S;
    explain_opts o;
} ctx;

enum { R_FWD, R_CDAM1, R_CDAM5, R_SMOOTH, R_INTEG, R_AM, R_RP, R_TAM, R_N };
static const char *row_name[R_N] = {"forward", "CDAM, 1 class", "CDAM, 5 classes", "Smooth CDAM, 16 samples",
                                    "Integrated CDAM, 16 steps", "AM", "RP", "TAM"};
static const char *only_name[R_N] = {"forward", "cdam", "cdam5", "smooth_cdam", "integrated_cdam", "am", "rp", "tam"};

static int run(ctx *c, int which, char *err) {
    explain_target t[5] = {{0, 3, NULL}, {0, 17, NULL}, {0, 99, NULL}, {0, 386, NULL}, {0, 340, NULL}};
    int C = c->m->cfg.C;
    for (int i = 0; i < 5; i++) t[i].cls %= C;
    vit_ws *ws = which == R_RP ? c->ws_rec : c->ws;
    explain_ws *ew = which == R_RP ? c->ew_rec : c->ew;
    int rc = vit_forward(c->m, ws, c->x, c->S, c->S, err);
    if (rc < 0) return rc;
    switch (which) {
    case R_FWD: return 0;
    case R_CDAM1: return explain_cdam(c->m, ws, ew, t, 1, c->scores, err);
    case R_CDAM5: return explain_cdam(c->m, ws, ew, t, 5, c->scores, err);
    case R_SMOOTH: return explain_smooth_cdam(c->m, ws, ew, t, 1, &c->o, c->scores, err);
    case R_INTEG: return explain_integrated_cdam(c->m, ws, ew, t, 1, &c->o, c->scores, err);
    case R_AM: return explain_am(c->m, ws, &c->o, c->scores, err);
    case R_RP: return explain_rp(c->m, ws, ew, t, &c->o, c->scores, err);
    default: return explain_tam(c->m, ws, ew, c->x, t, 1, &c->o, c->scores, err);
    }
}

int main(int argc, char **argv) {
    const char *model = NULL, *only = NULL;
    int S = 224, threads = 2, reps = 5, tam = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--size") && i + 1 < argc) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--tam")) tam = 1;
        else if (argv[i][0] != '-') model = argv[i];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (!model || reps < 1 || reps > 64) {
        fprintf(stderr, "usage: bench_explain MODEL [--size S] [--threads N] [--reps 1..64] [--tam] [--only METHOD]\n");
        return 2;
    }
    char err[CDAM_ERR_MAX];
    vit_model *m;
    if (vit_model_load(&model, 1, NULL, &m, err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
    ctx c = {.m = m, .S = S};
    explain_opts_default(&c.o);
    int which = -1;
    for (int i = 0; only && i < R_N; i++)
        if (!strcmp(only, only_name[i])) which = i;
    if (only && which < 0) { fprintf(stderr, "unknown --only %s\n", only); return 2; }
    int need_plain = !only || which != R_RP, need_rec = !only || which == R_RP;
    if ((need_plain && (vit_ws_create(m, S, S, threads, 0, &c.ws, err) < 0 || explain_ws_create(m, c.ws, &c.o, &c.ew, err) < 0)) ||
        (need_rec && (vit_ws_create(m, S, S, threads, VIT_REC_BLOCKS, &c.ws_rec, err) < 0 ||
                      explain_ws_create(m, c.ws_rec, &c.o, &c.ew_rec, err) < 0))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    c.x = malloc(sizeof(float) * 3 * S * S);
    c.scores = malloc(sizeof(float) * 5 * S * S);
    srand(1);
    for (long k = 0; k < 3L * S * S; k++) c.x[k] = (float)rand() / RAND_MAX * 4 - 2;

    if (only) {
        // Peak RSS of the request alone: reset the high-water mark after loading (the
        // model file's pages count while it is mapped), then read VmHWM.
        FILE *cr = fopen("/proc/self/clear_refs", "w");
        if (cr) fputs("5", cr), fclose(cr);
        double t0 = now_ms();
        if (run(&c, which, err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
        double ms = now_ms() - t0;
        long hwm = 0;
        char line[256];
        FILE *st = fopen("/proc/self/status", "r");
        while (st && fgets(line, sizeof line, st))
            if (!strncmp(line, "VmHWM:", 6)) hwm = atol(line + 6);
        if (st) fclose(st);
        printf("%s at %dx%d: %.1f ms, peak RSS %.1f MB (weights %.1f MB; the rest is workspaces and runtime)\n", only, S, S,
               ms, hwm / 1024.0, m->arena_bytes / 1048576.0);
        return 0;
    }
    printf("model %s, %dx%d, %d threads; median of %d, each row = forward + method\n", m->cfg.name, S, S, threads, reps);
    printf("| method | median ms | x forward |\n|---|---|---|\n");
    double med[R_N] = {0};
    for (int r = 0; r < R_N; r++) {
        if (r == R_TAM && !tam) continue;
        int nrep = r == R_TAM ? 1 : reps;
        double t[64];
        for (int k = -1; k < nrep; k++) {
            double t0 = now_ms();
            if (run(&c, r, err) < 0) { fprintf(stderr, "%s: %s\n", row_name[r], err); return 1; }
            if (k >= 0) t[k] = now_ms() - t0;
            if (r == R_TAM) break;
        }
        if (r == R_TAM) t[0] = 0, nrep = 1;
        qsort(t, (size_t)nrep, sizeof *t, cmp_d);
        med[r] = t[nrep / 2];
        if (r == R_TAM) {  // one timed run (the warm-up loop above ran it once)
            double t0 = now_ms();
            if (run(&c, r, err) < 0) { fprintf(stderr, "TAM: %s\n", err); return 1; }
            med[r] = now_ms() - t0;
            int n = (S / m->cfg.P) * (S / m->cfg.P);
            printf("| TAM (%d ablated passes) | %.0f | %.1f (= %.2f x %d forwards) |\n", n, med[r], med[r] / med[R_FWD],
                   med[r] / med[R_FWD] / n, n);
            continue;
        }
        printf("| %s | %.1f | %.3f |\n", row_name[r], med[r], med[r] / med[R_FWD]);
        fflush(stdout);
    }
    printf("| per extra class (CDAM 5 - CDAM 1) / 4 | %.2f | %.4f |\n", (med[R_CDAM5] - med[R_CDAM1]) / 4,
           (med[R_CDAM5] - med[R_CDAM1]) / 4 / med[R_FWD]);
    return 0;
}
