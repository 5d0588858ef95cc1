/* bench_forward.c - times the ViT forward pass and, in the same run, a large sgemm
 * (the machine's attainable fp32 throughput), so speed is a ratio, not a wall time.
 *
 *   build/bench_forward MODEL [--sizes 224,480] [--threads 1,2] [--reps N] [--input x.f32 --dump out.f32]
 * Prints a table: size, threads, median/min ms, GFLOP/s, ratio to sgemm on as many
 * threads. --input/--dump run one forward at the first size on a raw float32 input
 * and write the logits (parity check with bench/torch_forward.py).
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vit.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// FLOPs of one forward as the engine runs it (multiply-add = 2): patch GEMM, per block
// q/k/v, scores, A.v, proj, fc1, fc2 for all N rows, except the last block, which
// past q/k/v computes the CLS row only; and the head.
static double forward_flops(const vit_config *c, int H, int W) {
    double n = (double)(H / c->P) * (W / c->P), N = n + 1, D = c->D, F = c->F;
    double qkv = 2 * N * D * 3 * D, rest_per_row = 2 * 2 * N * D + 2 * D * D + 2 * 2 * D * F;
    return 2 * n * 3 * c->P * c->P * D + c->L * qkv + ((c->L - 1) * N + 1) * rest_per_row + 2.0 * c->C * c->head_in;
}

// Median GFLOP/s of an s x s x s sgemm on `threads` OpenBLAS threads.
static double sgemm_gflops(int s, int threads, int reps) {
    float *a = malloc(sizeof(float) * s * s), *b = malloc(sizeof(float) * s * s), *c = malloc(sizeof(float) * s * s);
    for (long i = 0; i < (long)s * s; i++) a[i] = b[i] = c[i] = (float)(i % 7) * 0.1f;
    openblas_set_num_threads(threads);
    double t[64];
    for (int r = -1; r < reps; r++) {
        double t0 = now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s, s, s, 1, a, s, b, s, 0, c, s);
        if (r >= 0) t[r] = now_ms() - t0;
    }
    openblas_set_num_threads(1);
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    free(a); free(b); free(c);
    return 2.0 * s * s * s / (t[reps / 2] * 1e6);
}

int main(int argc, char **argv) {
    const char *model = NULL, *sizes = "224,480", *threads = "1,2", *input = NULL, *dump = NULL;
    int reps = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) sizes = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--input") && i + 1 < argc) input = argv[++i];
        else if (!strcmp(argv[i], "--dump") && i + 1 < argc) dump = argv[++i];
        else if (argv[i][0] != '-') model = argv[i];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (!model || reps < 1 || reps > 64) {
        fprintf(stderr, "usage: bench_forward MODEL [--sizes 224,480] [--threads 1,2] [--reps 1..64] [--input x.f32 --dump out.f32]\n");
        return 2;
    }
    char err[CDAM_ERR_MAX];
    vit_model *m;
    if (vit_model_load(&model, 1, NULL, &m, err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
    const vit_config *c = &m->cfg;
    int size_list[8], ns = 0, thr_list[8], nt = 0;
    for (char *s = strdup(sizes), *tok = strtok(s, ","); tok && ns < 8; tok = strtok(NULL, ",")) size_list[ns++] = atoi(tok);
    for (char *s = strdup(threads), *tok = strtok(s, ","); tok && nt < 8; tok = strtok(NULL, ",")) thr_list[nt++] = atoi(tok);
    int maxs = 0;
    for (int i = 0; i < ns; i++) maxs = size_list[i] > maxs ? size_list[i] : maxs;

    if (input) {  // parity: one forward on a given input
        int S = size_list[0];
        float *x = malloc(sizeof(float) * 3 * S * S);
        FILE *f = fopen(input, "rb");
        if (!f || fread(x, sizeof(float), 3 * (size_t)S * S, f) != 3 * (size_t)S * S) { fprintf(stderr, "cannot read %s\n", input); return 1; }
        fclose(f);
        vit_ws *ws;
        if (vit_ws_create(m, S, S, thr_list[nt - 1], 0, &ws, err) < 0 || vit_forward(m, ws, x, S, S, err) < 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        f = fopen(dump, "wb");
        fwrite(ws->logits, sizeof(float), (size_t)c->C, f);
        fclose(f);
        vit_ws_free(ws);
        free(x);
        vit_model_free(m);
        return 0;
    }

    printf("model %s: P=%d D=%d L=%d H=%d C=%d\n", c->name, c->P, c->D, c->L, c->H, c->C);
    double peak[9] = {0};
    for (int j = 0; j < nt; j++) {
        peak[j] = sgemm_gflops(2048, thr_list[j], 5);
        printf("sgemm 2048^3, %d OpenBLAS thread(s): %.1f GFLOP/s\n", thr_list[j], peak[j]);
    }
    printf("| size | threads | GFLOP | median ms | min ms | GFLOP/s | vs sgemm |\n|---|---|---|---|---|---|---|\n");
    for (int j = 0; j < nt; j++) {
        vit_ws *ws;
        if (vit_ws_create(m, maxs, maxs, thr_list[j], 0, &ws, err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
        for (int i = 0; i < ns; i++) {
            int S = size_list[i];
            float *x = malloc(sizeof(float) * 3 * S * S);
            srand(1);
            for (long k = 0; k < 3L * S * S; k++) x[k] = (float)rand() / RAND_MAX * 4 - 2;
            double t[64];
            for (int r = -1; r < reps; r++) {
                double t0 = now_ms();
                if (vit_forward(m, ws, x, S, S, err) < 0) { fprintf(stderr, "%s\n", err); return 1; }
                if (r >= 0) t[r] = now_ms() - t0;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp_d);
            double gf = forward_flops(c, S, S) / 1e9;
            printf("| %d | %d | %.1f | %.1f | %.1f | %.1f | %.2f |\n", S, thr_list[j], gf, t[reps / 2], t[0],
                   gf / (t[reps / 2] / 1e3), gf / (t[reps / 2] / 1e3) / peak[j]);
            fflush(stdout);
            free(x);
        }
        vit_ws_free(ws);
    }
    vit_model_free(m);
    return 0;
}
