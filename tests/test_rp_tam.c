/* test_rp_tam.c - relevance propagation (RP) and token ablation maps (TAM).
 *
 * 1. Against the PyTorch autograd goldens of tests/ref/make_explain_goldens.py (float64):
 *    rp (3 classes), rp_concept, tam (3 classes), tam_concept for tiny 32x32, 48x48,
 *    24x40 and probe 24x24, 32x20 (the probe's head reads 4 blocks' CLS rows).
 * 2. Against an independent double-precision forward written here (plain loops, no
 *    backward at all), checked first against the engine's logits:
 *    - TAM by brute force: the forward on each (N - 1)-row ablated sequence;
 *    - the full backward: df/d(embedding) captured from explain_rp against central
 *      finite differences of f over the embedding (every entry on the small cases, a
 *      strided sample on the larger ones): this covers every hand-written backward step
 *      (final norm, MLP, GELU, LN2, proj, softmax-attention, q/k/v, LN1, residuals, the
 *      probe head's extra CLS rows);
 *    - dA^l = df/dA^l captured for every block against central differences of f with
 *      respect to one attention probability (perturbed after the softmax, not
 *      renormalised, in the recomputed forward), and on tiny the whole RP map built from
 *      those finite-difference gradients with the explicit N x N products of the spec.
 *    FD step: 1e-5 on values of order 1 in double: the truncation error is ~h^2 f''' ~
 *    1e-10 and the rounding error ~1e-16 |f| / h ~ 1e-11, so the references are exact
 *    to ~1e-8 relative, far below the 1e-4 tolerance.
 * 3. RP and TAM with 1, 2 and 3 threads agree; TAM from the image (no VIT_REC_BLOCKS)
 *    equals TAM from the recorded embedding; progress is monotone and reaches 1.0;
 *    cancellation returns CDAM_ECANCELLED; RP over its budget is refused with the bytes.
 *
 * Tolerance: check_close rtol 1e-4 (float32 engine vs float64 references; the worst
 * errors are printed, typically 1e-6..1e-5). Thread counts are compared on one shared
 * forward state: RP within 1e-5 (the row split changes the GEMM blocking, so float
 * rounding differs slightly), TAM bit-identical (each pass runs on one thread). TAM from
 * the image vs from the recorded embedding: 1e-4, since the two embeddings differ in
 * rounding and TAM, a difference of two logits, amplifies a logit's float error by
 * |logit| / |TAM| (measured up to 1.4e-5 at the map's scale).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "golden.h"
#include "explain.h"
#include "explain_internal.h"
#include "safetensors.h"
#include "vit.h"

#define RTOL 1e-4
#define FD_H 1e-5

// The test hooks of explain_rp.c (see there): capture df/dA of one block and
// df/d(embedding); force small tiles.

/* ---- an independent double-precision forward ------------------------------------ */

typedef struct {
    const vit_model *m;
    int maxN;
    double *t, *qkv, *o, *S, *u, *hid, *x;  // scratch
} ref;

static void ref_init(ref *r, const vit_model *m, int maxN) {
    const vit_config *c = &m->cfg;
    r->m = m;
    r->maxN = maxN;
    r->t = malloc(sizeof(double) * maxN * c->D);
    r->qkv = malloc(sizeof(double) * maxN * 3 * c->D);
    r->o = malloc(sizeof(double) * maxN * c->D);
    r->S = malloc(sizeof(double) * maxN);
    r->u = malloc(sizeof(double) * maxN * c->D);
    r->hid = malloc(sizeof(double) * c->F);
    r->x = malloc(sizeof(double) * maxN * c->D);
}

static void ref_free(ref *r) {
    free(r->t); free(r->qkv); free(r->o); free(r->S); free(r->u); free(r->hid); free(r->x);
}

static void ref_ln(double *y, const double *x, const float *w, const float *b, int D, float eps) {
    double mu = 0, var = 0;
    for (int d = 0; d < D; d++) mu += x[d];
    mu /= D;
    for (int d = 0; d < D; d++) var += (x[d] - mu) * (x[d] - mu);
    double rs = 1.0 / sqrt(var / D + eps);
    for (int d = 0; d < D; d++) y[d] = (x[d] - mu) * rs * w[d] + b[d];
}

// y (rows) = W (rows, cols) x + b
static void ref_lin(double *y, const float *W, const float *b, const double *x, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        double s = b[i];
        for (int j = 0; j < cols; j++) s += (double)W[(long)i * cols + j] * x[j];
        y[i] = s;
    }
}

// Block l on x (N, D) in place. If attn (H, N, N) is given, the probabilities are
// stored there. A perturbation adds delta to A[ph][pi][pj] after the softmax.
static void ref_block(ref *r, int l, double *x, int N, double *attn, int ph, int pi, int pj, double delta) {
    const vit_config *c = &r->m->cfg;
    const vit_block *b = &r->m->blocks[l];
    int D = c->D, Dh = c->Dh, F = c->F;
    for (int i = 0; i < N; i++) {
        ref_ln(r->t + (long)i * D, x + (long)i * D, b->ln1_w, b->ln1_b, D, c->ln_eps);
        ref_lin(r->qkv + (long)i * 3 * D, b->qkv_w, b->qkv_b, r->t + (long)i * D, 3 * D, D);
    }
    double scale = 1.0 / sqrt((double)Dh);
    for (int h = 0; h < c->H; h++)
        for (int i = 0; i < N; i++) {
            const double *q = r->qkv + (long)i * 3 * D + h * Dh;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < N; j++) {
                const double *k = r->qkv + (long)j * 3 * D + D + h * Dh;
                double s = 0;
                for (int d = 0; d < Dh; d++) s += q[d] * k[d];
                r->S[j] = s * scale;
                if (r->S[j] > mx) mx = r->S[j];
            }
            for (int j = 0; j < N; j++) sum += (r->S[j] = exp(r->S[j] - mx));
            for (int j = 0; j < N; j++) r->S[j] /= sum;
            if (h == ph && i == pi) r->S[pj] += delta;
            if (attn) memcpy(attn + ((long)h * N + i) * N, r->S, sizeof(double) * N);
            double *o = r->o + (long)i * D + h * Dh;
            for (int d = 0; d < Dh; d++) o[d] = 0;
            for (int j = 0; j < N; j++)
                for (int d = 0; d < Dh; d++) o[d] += r->S[j] * r->qkv[(long)j * 3 * D + 2 * D + h * Dh + d];
        }
    for (int i = 0; i < N; i++) {
        double *xi = x + (long)i * D, tmp[512];
        ref_lin(tmp, b->proj_w, b->proj_b, r->o + (long)i * D, D, D);
        for (int d = 0; d < D; d++) xi[d] += tmp[d];
        ref_ln(r->u, xi, b->ln2_w, b->ln2_b, D, c->ln_eps);
        ref_lin(r->hid, b->fc1_w, b->fc1_b, r->u, F, D);
        for (int j = 0; j < F; j++) r->hid[j] = 0.5 * r->hid[j] * erfc(-r->hid[j] / sqrt(2.0));
        ref_lin(tmp, b->fc2_w, b->fc2_b, r->hid, D, F);
        for (int d = 0; d < D; d++) xi[d] += tmp[d];
    }
}

typedef struct {
    int layer, h, i, j;
    double delta;
} pert;
static const pert NO_PERT = {-1, 0, 0, 0, 0};

// Blocks l0..L-1 on a copy of x (N, D); cls (4, D) receives the final-normed CLS rows
// of blocks L-4..L-1 (rows of blocks before l0 must already be in cls). rec (L+1, N, D)
// and attn (L, H, N, N) record the pass if non-NULL (with l0 = 0).
static void ref_run(ref *r, const double *x, int N, int l0, pert p, double *cls, double *rec, double *attn) {
    const vit_config *c = &r->m->cfg;
    int D = c->D;
    memcpy(r->x, x, sizeof(double) * N * D);
    if (rec) memcpy(rec, x, sizeof(double) * N * D);
    for (int l = l0; l < c->L; l++) {
        int on = p.layer == l;
        ref_block(r, l, r->x, N, attn ? attn + (long)l * c->H * N * N : NULL, on ? p.h : -1, p.i, p.j, on ? p.delta : 0);
        if (rec) memcpy(rec + (long)(l + 1) * N * D, r->x, sizeof(double) * N * D);
        int slot = l - (c->L - 4);
        if (slot >= 0) ref_ln(cls + slot * D, r->x, r->m->norm_w, r->m->norm_b, D, c->ln_eps);
    }
}

static double ref_f(const vit_model *m, const explain_target *t, const double *cls) {
    const vit_config *c = &m->cfg;
    double f = 0;
    if (t->is_concept) {
        for (int d = 0; d < c->D; d++) f += cls[3 * c->D + d] * t->concept[d];
        return f;
    }
    const double *lat = c->head_in == 4 * c->D ? cls : cls + 3 * c->D;
    for (int j = 0; j < c->head_in; j++) f += (double)m->head_w[(long)t->cls * c->head_in + j] * lat[j];
    return f + m->head_b[t->cls];
}

/* ---- per case ------------------------------------------------------------------ */

// Gives dst the forward state of src (what RP and TAM read), so that runs with other
// thread counts are compared on the same forward, not on one rounded differently.
static void share_forward(const vit_model *m, vit_ws *dst, const vit_ws *src) {
    long ND = (long)src->N * m->cfg.D;
    memcpy(dst->rec, src->rec, sizeof(float) * (m->cfg.L + 1) * ND);
    memcpy(dst->latent, src->latent, sizeof(float) * 4 * m->cfg.D);
    memcpy(dst->cls_norm, src->cls_norm, sizeof(float) * 4 * m->cfg.D);
}

typedef struct {
    int calls, monotone, cancel_at;
    double last;
} progress_log;

static int on_progress(void *ctx, double f) {
    progress_log *p = ctx;
    if (f < p->last || f > 1.0) p->monotone = 0;
    p->last = f;
    p->calls++;
    return p->cancel_at && p->calls >= p->cancel_at;
}

#define NT 4  // 3 classes and the concept

static void run_case(const char *model_path, const char *golden_path) {
    char err[CDAM_ERR_MAX], label[64], what[200];
    snprintf(label, sizeof label, "%s", strrchr(golden_path, '/') + 1);
    *strstr(label, ".safetensors") = 0;
    vit_model *m = NULL;
    st_file g;
    if (vit_model_load(&model_path, 1, NULL, &m, err) < 0 || st_open(golden_path, &g, err) < 0) {
        CHECK(0, "%s: %s", label, err);
        vit_model_free(m);
        return;
    }
    const vit_config *c = &m->cfg;
    const st_tensor *in = st_find(&g, "input");
    int H = (int)in->shape[1], W = (int)in->shape[2], D = c->D, L = c->L;
    float *x = golden(&g, "input", NULL), *cls = golden(&g, "classes", NULL), *concept = golden(&g, "concept", NULL);
    explain_target t[NT];
    for (int i = 0; i < 3; i++) t[i] = (explain_target){0, (int)cls[i], NULL};
    t[3] = (explain_target){1, 0, concept};

    vit_ws *ws[4] = {0};
    explain_ws *ew[4] = {0};
    for (int k = 1; k <= 3; k++) {  // 1, 2, 3 threads
        CHECK(vit_ws_create(m, 48, 48, k, VIT_REC_BLOCKS, &ws[k], err) == 0, "%s", err);
        CHECK(explain_ws_create(m, ws[k], NULL, &ew[k], err) == 0, "%s", err);
        CHECK(vit_forward(m, ws[k], x, H, W, err) == 0, "%s", err);
    }
    vit_ws *w2 = ws[2];
    explain_ws *e2 = ew[2];
    int N = w2->N;
    for (int k = 1; k <= 3; k += 2) share_forward(m, ws[k], w2);
    long n = N - 1;
    explain_opts o;
    explain_opts_default(&o);

    // Engine vs goldens.
    float *rp = malloc(sizeof(float) * NT * n), *tam = malloc(sizeof(float) * NT * n), *s = malloc(sizeof(float) * NT * n);
    for (int k = 0; k < NT; k++) CHECK(explain_rp(m, w2, e2, &t[k], &o, rp + k * n, err) == 0, "rp: %s", err);
    golden_compare(RTOL, label, "rp", &g, rp, 3 * n);
    golden_compare(RTOL, label, "rp_concept", &g, rp + 3 * n, n);
    progress_log pl = {0, 1, 0, 0};
    o.progress = on_progress;
    o.progress_ctx = &pl;
    o.tam_batch = 3;
    CHECK(explain_tam(m, w2, e2, x, t, NT, &o, tam, err) == 0, "tam: %s", err);
    CHECK(pl.monotone && pl.last == 1.0 && pl.calls == (int)((n + 2) / 3),
          "%s: progress monotone, ends at 1 (calls %d, last %g)", label, pl.calls, pl.last);
    o.progress = NULL;
    golden_compare(RTOL, label, "tam", &g, tam, 3 * n);
    golden_compare(RTOL, label, "tam_concept", &g, tam + 3 * n, n);
    for (long i = 0; i < NT * n; i++) CHECK(rp[i] >= 0, "%s: RP is non-negative", label);

    // The double reference forward from the engine's embedding.
    ref r;
    ref_init(&r, m, N);
    double *x0 = malloc(sizeof(double) * N * D), *cls0 = calloc(4 * D, sizeof(double)), *clsp = calloc(4 * D, sizeof(double));
    double *rec = malloc(sizeof(double) * (L + 1) * N * D), *attn = malloc(sizeof(double) * L * c->H * N * N);
    for (long i = 0; i < (long)N * D; i++) x0[i] = w2->rec[i];
    ref_run(&r, x0, N, 0, NO_PERT, cls0, rec, attn);
    {
        float lg[64];
        for (int k = 0; k < c->C; k++) {
            explain_target tk = {0, k, NULL};
            lg[k] = (float)ref_f(m, &tk, cls0);
        }
        snprintf(what, sizeof what, "%s reference logits vs engine", label);
        check_close(what, lg, w2->logits, c->C, 1e-5);
    }

    // TAM by brute force on the reference.
    {
        float *want = malloc(sizeof(float) * NT * n);
        double *xa = malloc(sizeof(double) * (N - 1) * D), *ca = calloc(4 * D, sizeof(double));
        for (long i = 0; i < n; i++) {
            for (int row = 0, dst = 0; row < N; row++)
                if (row != 1 + i) memcpy(xa + (long)dst++ * D, x0 + (long)row * D, sizeof(double) * D);
            ref_run(&r, xa, N - 1, 0, NO_PERT, ca, NULL, NULL);
            for (int k = 0; k < NT; k++) want[k * n + i] = (float)(ref_f(m, &t[k], cls0) - ref_f(m, &t[k], ca));
        }
        snprintf(what, sizeof what, "%s tam vs brute-force double", label);
        check_close(what, tam, want, NT * n, RTOL);
        free(want); free(xa); free(ca);
    }

    // The full backward: df/d(embedding) against central differences of the reference.
    {
        long ND = (long)N * D, stride = ND <= 700 ? 1 : ND / 257;  // every entry on tiny 32x32/24x40
        float *gx = malloc(sizeof(float) * ND), *gsel = malloc(sizeof(float) * ND), *fd = malloc(sizeof(float) * ND);
        double *xp = malloc(sizeof(double) * ND);
        for (int k = 0; k < NT; k += 3) {  // class classes[0] and the concept
            rp_debug_capture(e2->rp, -1, NULL, gx);
            CHECK(explain_rp(m, w2, e2, &t[k], &o, s, err) == 0, "%s", err);
            rp_debug_capture(e2->rp, -1, NULL, NULL);
            long cnt = 0;
            memcpy(xp, x0, sizeof(double) * ND);
            for (long e = 0; e < ND; e += stride) {
                double keep = xp[e];
                xp[e] = keep + FD_H;
                ref_run(&r, xp, N, 0, NO_PERT, clsp, NULL, NULL);
                double fp = ref_f(m, &t[k], clsp);
                xp[e] = keep - FD_H;
                ref_run(&r, xp, N, 0, NO_PERT, clsp, NULL, NULL);
                double fm = ref_f(m, &t[k], clsp);
                xp[e] = keep;
                fd[cnt] = (float)((fp - fm) / (2 * FD_H));
                gsel[cnt++] = gx[e];
            }
            snprintf(what, sizeof what, "%s df/dembed (%s) vs FD, %ld entries", label, k == 3 ? "concept" : "class", cnt);
            check_close(what, gsel, fd, cnt, RTOL);
        }
        free(gx); free(gsel); free(fd); free(xp);
    }

    // dA^l of every block against central differences with respect to A^l[h, i, j];
    // on the small cases every entry, and the RP map rebuilt from them.
    {
        long NN = (long)N * N, HNN = (long)c->H * NN, stride = N <= 20 ? 1 : HNN / 97;
        int full = stride == 1;
        float *dA = malloc(sizeof(float) * HNN), *gsel = malloc(sizeof(float) * HNN), *fd = malloc(sizeof(float) * HNN);
        double *dA_fd = full ? malloc(sizeof(double) * NT * L * HNN) : NULL;
        for (int l = 0; l < L; l++) {
            rp_debug_capture(e2->rp, l, dA, NULL);
            CHECK(explain_rp(m, w2, e2, &t[0], &o, s, err) == 0, "%s", err);
            rp_debug_capture(e2->rp, -1, NULL, NULL);
            // cls rows of blocks before l: from the unperturbed pass
            long cnt = 0;
            for (long e = 0; e < HNN; e += stride) {
                pert p = {l, (int)(e / NN), (int)(e % NN / N), (int)(e % N), FD_H};
                double fp[NT], fm[NT];
                memcpy(clsp, cls0, sizeof(double) * 4 * D);
                ref_run(&r, rec + (long)l * N * D, N, l, p, clsp, NULL, NULL);
                for (int k = 0; k < NT; k++) fp[k] = ref_f(m, &t[k], clsp);
                p.delta = -FD_H;
                ref_run(&r, rec + (long)l * N * D, N, l, p, clsp, NULL, NULL);
                for (int k = 0; k < NT; k++) fm[k] = ref_f(m, &t[k], clsp);
                fd[cnt] = (float)((fp[0] - fm[0]) / (2 * FD_H));
                gsel[cnt++] = dA[e];
                if (full)
                    for (int k = 0; k < NT; k++) dA_fd[((long)k * L + l) * HNN + e] = (fp[k] - fm[k]) / (2 * FD_H);
            }
            snprintf(what, sizeof what, "%s dA block %d vs FD, %ld entries", label, l, cnt);
            check_close(what, gsel, fd, cnt, RTOL);
        }
        if (full) {  // R = I; R += mean_h relu(dA * A) R in forward order; map = R[0, 1:]
            double *R = malloc(sizeof(double) * NN), *Ab = malloc(sizeof(double) * NN), *T = malloc(sizeof(double) * NN);
            float *want = malloc(sizeof(float) * NT * n);
            for (int k = 0; k < NT; k++) {
                for (long e = 0; e < NN; e++) R[e] = e / N == e % N;
                for (int l = 0; l < L; l++) {
                    for (long e = 0; e < NN; e++) {
                        double a = 0;
                        for (int h = 0; h < c->H; h++) {
                            double p = dA_fd[((long)k * L + l) * HNN + h * NN + e] * attn[((long)l * c->H + h) * NN + e];
                            a += p > 0 ? p : 0;
                        }
                        Ab[e] = a / c->H;
                    }
                    for (int i = 0; i < N; i++)
                        for (int j = 0; j < N; j++) {
                            double acc = 0;
                            for (int q = 0; q < N; q++) acc += Ab[(long)i * N + q] * R[(long)q * N + j];
                            T[(long)i * N + j] = R[(long)i * N + j] + acc;
                        }
                    memcpy(R, T, sizeof(double) * NN);
                }
                for (long i = 0; i < n; i++) want[k * n + i] = (float)R[1 + i];
            }
            snprintf(what, sizeof what, "%s rp vs FD-gradient N x N products", label);
            check_close(what, rp, want, NT * n, RTOL);
            free(R); free(Ab); free(T); free(want);
        }
        free(dA); free(gsel); free(fd); free(dA_fd);
    }

    // 1, 2 and 3 threads agree; with 3 threads RP runs on 5-row tiles (several tiles
    // per thread and head: the tiled accumulation of df/dk, df/dv and the partial rows).
    rp_debug_tile(ew[3]->rp, 5);
    for (int k = 1; k <= 3; k += 2) {
        for (int j = 0; j < NT; j += 3) {
            CHECK(explain_rp(m, ws[k], ew[k], &t[j], &o, s, err) == 0, "%s", err);
            snprintf(what, sizeof what, "%s rp %s, %d vs 2 threads%s", label, j ? "concept" : "class", k, k == 3 ? ", 5-row tiles" : "");
            check_close(what, s, rp + j * n, n, 1e-5);
        }
        CHECK(explain_tam(m, ws[k], ew[k], NULL, t, NT, &o, s, err) == 0, "%s", err);
        CHECK(!memcmp(s, tam, sizeof(float) * NT * n), "%s: tam, %d threads bit-identical to 2 threads", label, k);
    }

    // TAM from the image on a workspace that does not record blocks.
    {
        vit_ws *wn;
        explain_ws *en;
        CHECK(vit_ws_create(m, 48, 48, 2, 0, &wn, err) == 0, "%s", err);
        CHECK(explain_ws_create(m, wn, NULL, &en, err) == 0, "%s", err);
        CHECK(vit_forward(m, wn, x, H, W, err) == 0, "%s", err);
        CHECK(explain_tam(m, wn, en, NULL, t, NT, &o, s, err) == CDAM_EINVAL && strstr(err, "image"), "no image: %s", err);
        CHECK(explain_tam(m, wn, en, x, t, NT, &o, s, err) == 0, "%s", err);
        snprintf(what, sizeof what, "%s tam from the image (no rec)", label);
        check_close(what, s, tam, NT * n, 1e-4);
        CHECK(explain_rp(m, wn, en, t, &o, s, err) == CDAM_EINVAL && strstr(err, "VIT_REC_BLOCKS"), "rp without rec: %s", err);
        explain_ws_free(en);
        vit_ws_free(wn);
    }

    ref_free(&r);
    free(x0); free(cls0); free(clsp); free(rec); free(attn);
    free(rp); free(tam); free(s); free(x); free(cls); free(concept);
    for (int k = 1; k <= 3; k++) {
        explain_ws_free(ew[k]);
        vit_ws_free(ws[k]);
    }
    vit_model_free(m);
    st_close(&g);
}

// A large grid (tiny at 256x256: N = 1025, several 512-row tiles): vit_block_seq
// against the forward's recorded blocks, and RP with the default tiles against RP on
// 100-row tiles and on 1 thread.
static void run_large(void) {
    const char *path = "tests/data/models/tiny.safetensors";
    char err[CDAM_ERR_MAX], what[160];
    vit_model *m;
    if (vit_model_load(&path, 1, NULL, &m, err) < 0) {
        CHECK(0, "%s", err);
        return;
    }
    const vit_config *c = &m->cfg;
    int S = 256, D = c->D;
    float *x = malloc(sizeof(float) * 3 * S * S);
    unsigned long long st = 12345;
    for (int i = 0; i < 3 * S * S; i++) {  // smooth pattern plus noise, about N(0, 1)
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = sinf(i * 0.013f) + (float)((st >> 40) / (double)(1 << 24) - 0.5);
    }
    vit_ws *ws[3];
    explain_ws *ew[3];
    for (int k = 1; k <= 2; k++) {
        CHECK(vit_ws_create(m, S, S, k, VIT_REC_BLOCKS, &ws[k], err) == 0, "%s", err);
        CHECK(explain_ws_create(m, ws[k], NULL, &ew[k], err) == 0, "%s", err);
        CHECK(vit_forward(m, ws[k], x, S, S, err) == 0, "%s", err);
    }
    share_forward(m, ws[1], ws[2]);
    int N = ws[2]->N, n = N - 1;
    long ND = (long)N * D;
    float *xs = malloc(sizeof(float) * ND), *xs2 = malloc(sizeof(float) * ND), *qkv = malloc(sizeof(float) * ND * 3);
    float *scr = malloc(sizeof(float) * vit_seq_scratch(m, N));
    for (int l = 0; l < c->L; l++) {
        const float *in = ws[2]->rec + l * ND, *want = ws[2]->rec + (l + 1) * ND;
        memcpy(xs, in, sizeof(float) * ND);
        vit_block_seq(m, l, xs, N, N, qkv, 0, scr);
        snprintf(what, sizeof what, "vit_block_seq block %d, N=%d vs forward", l, N);
        check_close(what, xs, want, ND, 1e-5);
        memcpy(xs2, in, sizeof(float) * ND);
        vit_block_seq(m, l, xs2, N, N, qkv, 1, scr);  // q, k, v left by the call above
        CHECK(!memcmp(xs, xs2, sizeof(float) * ND), "vit_block_seq with have_qkv gives the same rows");
        memcpy(xs2, in, sizeof(float) * ND);
        vit_block_seq(m, l, xs2, N, 600, qkv, 0, scr);  // a partial tile of query rows
        CHECK(!memcmp(xs2 + 600 * D, in + 600 * D, sizeof(float) * (ND - 600 * D)), "rows past nq unchanged");
        snprintf(what, sizeof what, "vit_block_seq block %d, nq=600 vs forward", l);
        check_close(what, xs2, want, 600L * D, 1e-5);
    }
    explain_opts o;
    explain_opts_default(&o);
    explain_target t[2] = {{0, 4, NULL}, {1, 0, ws[1]->latent}};
    float *s = malloc(sizeof(float) * n), *s2 = malloc(sizeof(float) * n), *s1 = malloc(sizeof(float) * n);
    for (int j = 0; j < 2; j++) {
        CHECK(explain_rp(m, ws[2], ew[2], &t[j], &o, s, err) == 0, "%s", err);
        CHECK(explain_rp(m, ws[1], ew[1], &t[j], &o, s1, err) == 0, "%s", err);
        snprintf(what, sizeof what, "rp N=%d, 1 vs 2 threads (%s)", N, j ? "concept" : "class");
        check_close(what, s1, s, n, 1e-5);
        rp_debug_tile(ew[2]->rp, 100);
        CHECK(explain_rp(m, ws[2], ew[2], &t[j], &o, s2, err) == 0, "%s", err);
        snprintf(what, sizeof what, "rp N=%d, 100-row vs 512-row tiles (%s)", N, j ? "concept" : "class");
        check_close(what, s2, s, n, 1e-5);
        explain_ws_free(ew[2]);
        CHECK(explain_ws_create(m, ws[2], NULL, &ew[2], err) == 0, "%s", err);
    }
    free(s); free(s1); free(s2); free(xs); free(xs2); free(qkv); free(scr); free(x);
    for (int k = 1; k <= 2; k++) {
        explain_ws_free(ew[k]);
        vit_ws_free(ws[k]);
    }
    vit_model_free(m);
}

// Progress, cancellation, budget refusal and bad arguments on tiny 48x48.
static void run_controls(void) {
    const char *path = "tests/data/models/tiny.safetensors";
    char err[CDAM_ERR_MAX];
    vit_model *m;
    st_file g;
    if (vit_model_load(&path, 1, NULL, &m, err) < 0 || st_open("tests/data/golden/explain_tiny_48x48.safetensors", &g, err) < 0) {
        CHECK(0, "%s", err);
        return;
    }
    float *x = golden(&g, "input", NULL), s[64 * 4];
    explain_target t[2] = {{0, 1, NULL}, {0, 2, NULL}};
    for (int nth = 1; nth <= 3; nth += 2) {
        vit_ws *ws;
        explain_ws *ew;
        explain_opts o;
        explain_opts_default(&o);
        CHECK(vit_ws_create(m, 48, 48, nth, VIT_REC_BLOCKS, &ws, err) == 0, "%s", err);
        CHECK(explain_ws_create(m, ws, &o, &ew, err) == 0, "%s", err);
        CHECK(vit_forward(m, ws, x, 48, 48, err) == 0, "%s", err);
        int n = ws->N - 1;
        // automatic batches: progress still monotone and ends at 1
        progress_log pl = {0, 1, 0, 0};
        o.progress = on_progress;
        o.progress_ctx = &pl;
        CHECK(explain_tam(m, ws, ew, x, t, 2, &o, s, err) == 0, "%s", err);
        CHECK(pl.monotone && pl.last == 1.0 && pl.calls >= 1, "auto batch: progress monotone to 1 (%d calls)", pl.calls);
        // cancel at the second report
        pl = (progress_log){0, 1, 2, 0};
        o.tam_batch = 4;
        int rc = explain_tam(m, ws, ew, x, t, 2, &o, s, err);
        CHECK(rc == CDAM_ECANCELLED && strstr(err, "cancel"), "%d threads: cancelled: %d %s", nth, rc, err);
        CHECK(pl.calls == 2 && pl.monotone && pl.last < 1.0, "no report after the cancel (%d calls, last %g)", pl.calls, pl.last);
        CHECK(strstr(err, "after 8 of 36"), "stops right after the 2nd batch: %s", err);
        // a cancelled call leaves the workspace usable
        o.progress = NULL;
        CHECK(explain_tam(m, ws, ew, x, t, 2, &o, s, err) == 0, "after cancel: %s", err);
        CHECK(explain_tam(m, ws, ew, x, t, 0, &o, s, err) == CDAM_EINVAL, "no targets");
        explain_target bad = {0, m->cfg.C, NULL}, badc = {1, 0, NULL};
        CHECK(explain_tam(m, ws, ew, x, &bad, 1, &o, s, err) == CDAM_EINVAL && strstr(err, "out of range"), "%s", err);
        CHECK(explain_rp(m, ws, ew, &bad, &o, s, err) == CDAM_EINVAL && strstr(err, "out of range"), "%s", err);
        CHECK(explain_rp(m, ws, ew, &badc, &o, s, err) == CDAM_EINVAL, "%s", err);
        // the RP budget: refused with the bytes needed and the budget
        o.rp_budget = 10000;
        rc = explain_rp(m, ws, ew, t, &o, s, err);
        char want[64];
        snprintf(want, sizeof want, "budget of %zu bytes", o.rp_budget);
        CHECK(rc == CDAM_ELIMIT && strstr(err, "RP needs") && strstr(err, " bytes for a 48x48 input") && strstr(err, want),
              "budget refusal: %d %s", rc, err);
        printf("  refusal: %s\n", err);
        explain_ws_free(ew);
        // a workspace created with a small budget plans fewer tokens and refuses larger inputs
        o.rp_budget = 30000;
        CHECK(explain_ws_create(m, ws, &o, &ew, err) == 0, "%s", err);
        o.rp_budget = (size_t)1 << 30;
        rc = explain_rp(m, ws, ew, t, &o, s, err);
        CHECK(rc == CDAM_ELIMIT && strstr(err, "planned for"), "planned smaller: %d %s", rc, err);
        printf("  refusal: %s\n", err);
        float *x16 = calloc(3 * 16 * 16, sizeof(float));
        CHECK(vit_forward(m, ws, x16, 16, 16, err) == 0, "%s", err);
        CHECK(explain_rp(m, ws, ew, t, &o, s, err) == 0, "a small input fits the small plan: %s", err);
        free(x16);
        explain_ws_free(ew);
        vit_ws_free(ws);
        (void)n;
    }
    // An explain workspace used with a vit workspace it was not planned for.
    {
        vit_ws *w1, *w3n;
        explain_ws *e1;
        explain_opts o;
        explain_opts_default(&o);
        CHECK(vit_ws_create(m, 48, 48, 1, VIT_REC_BLOCKS, &w1, err) == 0, "%s", err);
        CHECK(vit_ws_create(m, 48, 48, 3, 0, &w3n, err) == 0, "%s", err);
        CHECK(explain_ws_create(m, w1, &o, &e1, err) == 0, "%s", err);
        CHECK(vit_forward(m, w3n, x, 48, 48, err) == 0, "%s", err);
        CHECK(explain_tam(m, w3n, e1, x, t, 1, &o, s, err) == CDAM_EINVAL && strstr(err, "threads"), "threads: %s", err);
        vit_ws_free(w3n);
        CHECK(vit_ws_create(m, 48, 48, 1, 0, &w3n, err) == 0, "%s", err);
        CHECK(vit_forward(m, w3n, x, 48, 48, err) == 0, "%s", err);
        CHECK(explain_tam(m, w3n, e1, x, t, 1, &o, s, err) == CDAM_EINVAL && strstr(err, "records blocks"), "rec: %s", err);
        CHECK(explain_rp(m, w1, e1, t, &o, s, err) == CDAM_EINVAL && strstr(err, "vit_forward"), "no forward yet: %s", err);
        explain_ws_free(e1);
        vit_ws_free(w1);
        vit_ws_free(w3n);
    }
    free(x);
    st_close(&g);
    vit_model_free(m);
}

int main(void) {
    const char *cases[][2] = {
        {"tests/data/models/tiny.safetensors", "tests/data/golden/explain_tiny_32x32.safetensors"},
        {"tests/data/models/tiny.safetensors", "tests/data/golden/explain_tiny_48x48.safetensors"},
        {"tests/data/models/tiny.safetensors", "tests/data/golden/explain_tiny_24x40.safetensors"},
        {"tests/data/models/probe.safetensors", "tests/data/golden/explain_probe_24x24.safetensors"},
        {"tests/data/models/probe.safetensors", "tests/data/golden/explain_probe_32x20.safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(cases[i][0], cases[i][1]);
    run_large();
    run_controls();
    return check_summary("test_rp_tam");
}
