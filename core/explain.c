/* explain.c - CDAM (class, concept), Smooth and Integrated CDAM, attention maps, and
 * the paper's statistics. RP and TAM live in explain_rp.c and explain_tam.c.
 *
 * Legend: D embedding, H heads, Dh = D/H, F MLP width, N tokens (CLS first), n = N - 1
 * patches, C classes, nt targets.
 *
 * CDAM needs only the last block's CLS path (method.md section 3): with T = T^L, q0 the
 * CLS query, k_j, v_j all keys and values, a^h the CLS attention of head h, and g_o the
 * gradient of f with respect to the CLS row of the attention output (from the head row
 * back through the final LayerNorm, the CLS row's MLP residual and proj):
 *     ga_j = g_o^h . v_j^h,  gbar = sum_j a_j ga_j,
 *     S_i = sum_h a_i [ (v_i - bv)^h . g_o^h + (ga_i - gbar) (k_i - bk)^h . q0^h / sqrt(Dh) ].
 * (v_i - bv = T_i Wv^T, so S_i = T_i . df/dT_i for every patch token i.) The per-target
 * work is three matrix-vector products and O(N D): no GEMM per target.
 */
#include "explain.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"
#include "ops.h"

#define MAX_TARGETS 64

static const char *method_names[EXPLAIN_NMETHODS] = {"cdam", "smooth_cdam", "integrated_cdam", "am", "rp", "tam"};

const char *explain_method_name(explain_method m) {
    return (unsigned)m < EXPLAIN_NMETHODS ? method_names[m] : "?";
}

int explain_method_parse(const char *s) {
    if (!s) return -1;
    for (int i = 0; i < EXPLAIN_NMETHODS; i++)
        if (!strcmp(s, method_names[i])) return i;
    if (!strcmp(s, "smooth-cdam")) return EXPLAIN_SMOOTH_CDAM;
    if (!strcmp(s, "integrated-cdam")) return EXPLAIN_INTEGRATED_CDAM;
    return -1;
}

void explain_opts_default(explain_opts *o) {
    memset(o, 0, sizeof *o);
    o->samples = 16;
    o->sigma = 0.1f;
    o->seed = 0;
    o->head = -1;
    o->threshold = 0;
    o->rp_budget = (size_t)1 << 30;
    o->tam_batch = 0;
}

/* ---- workspace ------------------------------------------------------------------ */

// ews->vec holds the CLS path's vectors: forward o0, x1, u (D), hpre (F), x2 (D),
// LN statistics (8), kq (H, N), GELU output (F); backward gz, gx2 (D), gg (F), gx1,
// go (D), ga (N); then q0 (D) and the CLS attention (H, N) of a re-run last block.
static long vec_floats(int D, int F, int H, int N) { return 12L * D + 3L * F + 8 + 2L * H * N + 2L * N + 64; }

int explain_ws_create(const vit_model *m, const vit_ws *vws, const explain_opts *o, explain_ws **out, char *err) {
    const vit_config *c = &m->cfg;
    *out = NULL;
    explain_ws *w = calloc(1, sizeof *w);
    if (!w) return cdam_fail(err, CDAM_ENOMEM, "out of memory");
    w->max_N = vws->max_N;
    w->D = c->D;
    w->F = c->F;
    w->H = c->H;
    w->nthreads = vws->nthreads;
    w->nt_max = MAX_TARGETS;
    long N = vws->max_N, D = c->D;
    w->kv = calloc((size_t)(N * 2 * D), sizeof(float));
    w->at = calloc((size_t)(N * D), sizeof(float));
    w->vec = calloc((size_t)vec_floats(c->D, c->F, c->H, (int)N), sizeof(float));
    w->scores = calloc((size_t)(MAX_TARGETS * N), sizeof(float));
    if (!w->kv || !w->at || !w->vec || !w->scores) {
        explain_ws_free(w);
        return cdam_fail(err, CDAM_ENOMEM, "out of memory for the explanation workspace");
    }
    explain_opts def;
    if (!o) explain_opts_default(&def), o = &def;
    int rc;
    if ((rc = rp_ws_create(m, vws, o, &w->rp, err)) < 0 || (rc = tam_ws_create(m, vws, o, &w->tam, err)) < 0) {
        explain_ws_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

void explain_ws_free(explain_ws *w) {
    if (!w) return;
    rp_ws_free(w->rp);
    tam_ws_free(w->tam);
    free(w->kv);
    free(w->at);
    free(w->vec);
    free(w->scores);
    free(w);
}

/* ---- the CLS path of the last block: forward, then backward per target ------------ */

typedef struct {
    const float *k, *v;  // (N, Dh per head at h*Dh), row stride ld: keys and values with biases
    int ld;
    const float *a;      // (H, N) CLS attention
    const float *q0;     // (D) CLS query (with bias)
    float scale;         // 1 / alpha: the multiplier is T / alpha where k, v came from T
} cls_state;

// Forward of the last block's CLS row from the attention probabilities a (H, N) and
// values v: o0 = sum_j a_j v_j, x1 = cls_in + o0 Wp^T + bp, u = LN2(x1), hpre = u W1^T
// + b1, x2 = x1 + GELU(hpre) W2^T + b2. Keeps x1, u, hpre, x2 and the LN statistics
// (in ews->vec) for the backward; kq (H, N) = (k_j - bk) . q0 / sqrt(Dh).
static void cls_forward(const vit_model *m, const vit_ws *vws, explain_ws *w, const cls_state *s, int N) {
    const vit_config *c = &m->cfg;
    const vit_block *b = &m->blocks[c->L - 1];
    int D = c->D, F = c->F, H = c->H, Dh = c->Dh;
    float *o0 = w->vec, *x1 = o0 + D, *u = x1 + D, *hpre = u + D, *x2 = hpre + F, *st = x2 + D, *kq = st + 8;
    float *g = kq + (long)H * N;  // (F) GELU output
    memset(o0, 0, sizeof(float) * D);
    for (int h = 0; h < H; h++) {
        const float *ah = s->a + (long)h * N;
        for (int j = 0; j < N; j++) {
            const float *vj = s->v + (long)j * s->ld + h * Dh;
            for (int d = 0; d < Dh; d++) o0[h * Dh + d] += ah[j] * vj[d];
        }
        const float *bk = b->qkv_b + D + h * Dh, *q = s->q0 + h * Dh;
        float qb = 0, isq = 1.0f / sqrtf((float)Dh);
        for (int d = 0; d < Dh; d++) qb += q[d] * bk[d];
        for (int j = 0; j < N; j++) {
            const float *kj = s->k + (long)j * s->ld + h * Dh;
            float dot = 0;
            for (int d = 0; d < Dh; d++) dot += kj[d] * q[d];
            kq[(long)h * N + j] = (dot - qb) * isq;
        }
    }
    memcpy(x1, vws->cls_in, sizeof(float) * D);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, D, D, 1.0f, b->proj_w, D, o0, 1, 1.0f, x1, 1);
    for (int d = 0; d < D; d++) x1[d] += b->proj_b[d];
    layernorm_forward(u, &st[0], &st[1], x1, b->ln2_w, b->ln2_b, 1, D, c->ln_eps);
    memcpy(hpre, b->fc1_b, sizeof(float) * F);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, F, D, 1.0f, b->fc1_w, D, u, 1, 1.0f, hpre, 1);
    for (int i = 0; i < F; i++) g[i] = gelu_scalar(hpre[i]);
    memcpy(x2, x1, sizeof(float) * D);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, D, F, 1.0f, b->fc2_w, F, g, 1, 1.0f, x2, 1);
    for (int d = 0; d < D; d++) x2[d] += b->fc2_b[d];
    // final-norm statistics of x2 (the output itself is not needed)
    double sm = 0, sv = 0;
    for (int d = 0; d < D; d++) sm += x2[d];
    float mu = (float)(sm / D);
    for (int d = 0; d < D; d++) sv += (double)(x2[d] - mu) * (x2[d] - mu);
    st[2] = mu;
    st[3] = (float)(1.0 / sqrt(sv / D + c->ln_eps));
}

// Backward of one target through the CLS path (after cls_forward), then the closed
// form: out[i - 1] = S_i for i = 1..N-1.
static void cls_backward(const vit_model *m, explain_ws *w, const cls_state *s, int N, const explain_target *t,
                         float *out) {
    const vit_config *c = &m->cfg;
    const vit_block *b = &m->blocks[c->L - 1];
    int D = c->D, F = c->F, H = c->H, Dh = c->Dh;
    float *x1 = w->vec + D, *hpre = x1 + 2 * D, *x2 = hpre + F, *st = x2 + D, *kq = st + 8;
    float *gz = kq + (long)H * N + F, *gx2 = gz + D, *gg = gx2 + D, *gx1 = gg + F, *go = gx1 + D, *ga = go + D;
    // df/dz: the head row (its last-block part for a probe head) or the concept vector.
    if (t->is_concept) memcpy(gz, t->concept, sizeof(float) * D);
    else memcpy(gz, m->head_w + (long)t->cls * c->head_in + (c->head_in - D), sizeof(float) * D);
    memset(gx2, 0, sizeof(float) * D);
    layernorm_backward(gx2, gz, x2, m->norm_w, &st[2], &st[3], 1, D);
    // MLP residual: gx1 = gx2 + LN2^T( W1^T (gelu'(hpre) * W2^T gx2) )
    cblas_sgemv(CblasRowMajor, CblasTrans, D, F, 1.0f, b->fc2_w, F, gx2, 1, 0.0f, gg, 1);
    gelu_backward(gg, hpre, gg, F);
    float *gu = go;  // reuse go as the LN2 output gradient
    cblas_sgemv(CblasRowMajor, CblasTrans, F, D, 1.0f, b->fc1_w, D, gg, 1, 0.0f, gu, 1);
    memcpy(gx1, gx2, sizeof(float) * D);
    layernorm_backward(gx1, gu, x1, b->ln2_w, &st[0], &st[1], 1, D);
    // proj: go = Wp^T gx1
    cblas_sgemv(CblasRowMajor, CblasTrans, D, D, 1.0f, b->proj_w, D, gx1, 1, 0.0f, go, 1);
    memset(out, 0, sizeof(float) * (N - 1));
    for (int h = 0; h < H; h++) {
        const float *ah = s->a + (long)h * N, *goh = go + h * Dh, *bv = b->qkv_b + 2 * D + h * Dh;
        float gbv = 0, gbar = 0;
        for (int d = 0; d < Dh; d++) gbv += goh[d] * bv[d];
        for (int j = 0; j < N; j++) {
            const float *vj = s->v + (long)j * s->ld + h * Dh;
            float dot = 0;
            for (int d = 0; d < Dh; d++) dot += goh[d] * vj[d];
            ga[j] = dot;
            gbar += ah[j] * dot;
        }
        const float *kqh = kq + (long)h * N;
        for (int i = 1; i < N; i++) out[i - 1] += ah[i] * ((ga[i] - gbv) + (ga[i] - gbar) * kqh[i]);
    }
    if (s->scale != 1.0f)
        for (int i = 0; i < N - 1; i++) out[i] *= s->scale;
}

static int check_targets(const vit_model *m, const explain_target *t, int nt, char *err) {
    if (nt < 1 || nt > MAX_TARGETS) return cdam_fail(err, CDAM_EINVAL, "%d targets (1 to %d per call)", nt, MAX_TARGETS);
    for (int i = 0; i < nt; i++) {
        if (t[i].is_concept) {
            if (!t[i].concept) return cdam_fail(err, CDAM_EINVAL, "target %d: concept vector missing", i);
        } else if (!m->head_w) {
            return cdam_fail(err, CDAM_EINVAL, "the model has no classification head: use a concept target");
        } else if (t[i].cls < 0 || t[i].cls >= m->cfg.C) {
            return cdam_fail(err, CDAM_EINVAL, "class %d out of range 0..%d", t[i].cls, m->cfg.C - 1);
        }
    }
    return 0;
}

static int check_forward(const vit_ws *vws, char *err) {
    if (vws->N < 2) return cdam_fail(err, CDAM_EINVAL, "no forward pass in the workspace: run vit_forward first");
    return 0;
}

int explain_cdam(const vit_model *m, const vit_ws *vws, explain_ws *w, const explain_target *t, int nt, float *scores,
                 char *err) {
    int rc;
    if ((rc = check_forward(vws, err)) < 0 || (rc = check_targets(m, t, nt, err)) < 0) return rc;
    int D = m->cfg.D, N = vws->N;
    cls_state s = {vws->qkv + D, vws->qkv + 2 * D, 3 * D, vws->cls_attn, vws->qkv, 1.0f};
    cls_forward(m, vws, w, &s, N);
    for (int i = 0; i < nt; i++) cls_backward(m, w, &s, N, &t[i], scores + (long)i * (N - 1));
    return 0;
}

/* ---- CDAM on a perturbed or scaled T (Smooth, Integrated) ---------------------------- */

typedef struct {
    const vit_model *m;
    const float *at;   // (N, D)
    float *kv;         // (N, 2D) out
    int N;
} kv_job;

// k, v = at Wk^T + bk, at Wv^T + bv for the thread's share of rows.
static void kv_team(void *arg, int tid, int nt) {
    kv_job *j = arg;
    const vit_config *c = &j->m->cfg;
    const vit_block *b = &j->m->blocks[c->L - 1];
    int D = c->D;
    long r0, r1;
    tpool_split(j->N, nt, tid, &r0, &r1);
    if (r1 <= r0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), 2 * D, D, 1.0f, j->at + r0 * D, D,
                b->qkv_w + (long)D * D, D, 0.0f, j->kv + r0 * 2 * D, 2 * D);
    bias_add(j->kv + r0 * 2 * D, b->qkv_b + D, (int)(r1 - r0), 2 * D);
}

// CLS query and attention from at and the keys in s: fills q0 and a (in ews->vec).
static void cls_attention(const vit_model *m, explain_ws *w, const float *at0, cls_state *s, int N) {
    const vit_config *c = &m->cfg;
    const vit_block *b = &m->blocks[c->L - 1];
    int D = c->D, H = c->H, Dh = c->Dh;
    float *q0 = w->vec + vec_floats(D, c->F, H, N) - 64 - (long)H * N - D, *a = q0 + D;
    memcpy(q0, b->qkv_b, sizeof(float) * D);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, D, D, 1.0f, b->qkv_w, D, at0, 1, 1.0f, q0, 1);
    float isq = 1.0f / sqrtf((float)Dh);
    for (int h = 0; h < H; h++) {
        float *ah = a + (long)h * N;
        for (int j = 0; j < N; j++) {
            const float *kj = s->k + (long)j * s->ld + h * Dh;
            float dot = 0;
            for (int d = 0; d < Dh; d++) dot += kj[d] * q0[h * Dh + d];
            ah[j] = dot * isq;
        }
        softmax_forward(ah, 1, N, N);
    }
    s->q0 = q0;
    s->a = a;
}

int explain_cdam_at(const vit_model *m, const vit_ws *vws, explain_ws *w, const float *at, float alpha,
                    const explain_target *t, int nt, float *scores, char *err) {
    int rc;
    if ((rc = check_forward(vws, err)) < 0 || (rc = check_targets(m, t, nt, err)) < 0) return rc;
    if (!(alpha > 0) || !isfinite(alpha)) return cdam_fail(err, CDAM_EINVAL, "alpha must be positive");
    int D = m->cfg.D, N = vws->N;
    kv_job j = {m, at, w->kv, N};
    tpool_run(vws->pool, kv_team, &j);
    cls_state s = {w->kv, w->kv + D, 2 * D, NULL, NULL, 1.0f / alpha};
    cls_attention(m, w, at, &s, N);
    cls_forward(m, vws, w, &s, N);
    for (int i = 0; i < nt; i++) cls_backward(m, w, &s, N, &t[i], scores + (long)i * (N - 1));
    return 0;
}

/* Deterministic Gaussian noise: one xoshiro256** stream per (seed, sample, row), so the
 * noise does not depend on the thread count; Box-Muller for the normal deviates. */
typedef struct { uint64_t s[4]; } rng;

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t x = a ^ splitmix(&b) ^ (splitmix(&c) << 1);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

typedef struct {
    const float *t;  // (N, D) T^L
    float *at;       // (N, D) out: T^L + sd * noise
    float sd;
    uint64_t seed, sample;
    int N, D;
} noise_job;

static void noise_team(void *arg, int tid, int nt) {
    noise_job *j = arg;
    long r0, r1;
    tpool_split(j->N, nt, tid, &r0, &r1);
    for (long r = r0; r < r1; r++) {
        rng g;
        rng_seed(&g, j->seed, j->sample, (uint64_t)r);
        const float *tr = j->t + r * j->D;
        float *ar = j->at + r * j->D;
        for (int d = 0; d < j->D; d += 2) {
            // two uniforms in (0, 1] and [0, 1), then Box-Muller
            double u1 = ((rng_next(&g) >> 11) + 1) * 0x1.0p-53, u2 = (rng_next(&g) >> 11) * 0x1.0p-53;
            double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
            ar[d] = tr[d] + j->sd * (float)(rad * cos(th));
            if (d + 1 < j->D) ar[d + 1] = tr[d + 1] + j->sd * (float)(rad * sin(th));
        }
    }
}

int explain_smooth_cdam(const vit_model *m, const vit_ws *vws, explain_ws *w, const explain_target *t, int nt,
                        const explain_opts *o, float *scores, char *err) {
    int rc;
    if ((rc = check_forward(vws, err)) < 0 || (rc = check_targets(m, t, nt, err)) < 0) return rc;
    if (o->samples < 1 || o->samples > 1024) return cdam_fail(err, CDAM_EINVAL, "samples %d out of range 1..1024", o->samples);
    if (!(o->sigma >= 0) || o->sigma > 10) return cdam_fail(err, CDAM_EINVAL, "sigma out of range 0..10");
    int D = m->cfg.D, N = vws->N, n = N - 1;
    float lo = INFINITY, hi = -INFINITY;
    for (long i = 0; i < (long)N * D; i++) {
        lo = vws->t[i] < lo ? vws->t[i] : lo;
        hi = vws->t[i] > hi ? vws->t[i] : hi;
    }
    memset(scores, 0, sizeof(float) * (size_t)nt * n);
    for (int k = 0; k < o->samples; k++) {
        noise_job nj = {vws->t, w->at, o->sigma * (hi - lo), o->seed, (uint64_t)k, N, D};
        tpool_run(vws->pool, noise_team, &nj);
        if ((rc = explain_cdam_at(m, vws, w, w->at, 1.0f, t, nt, w->scores, err)) < 0) return rc;
        for (long i = 0; i < (long)nt * n; i++) scores[i] += w->scores[i];
    }
    for (long i = 0; i < (long)nt * n; i++) scores[i] /= (float)o->samples;
    return 0;
}

// Integrated CDAM: k, v and q are affine in T, so at alpha T they are alpha (x - b) + b
// from the forward's own q, k, v: no GEMM per step, only the CLS path.
int explain_integrated_cdam(const vit_model *m, const vit_ws *vws, explain_ws *w, const explain_target *t, int nt,
                            const explain_opts *o, float *scores, char *err) {
    int rc;
    if ((rc = check_forward(vws, err)) < 0 || (rc = check_targets(m, t, nt, err)) < 0) return rc;
    if (o->samples < 1 || o->samples > 1024) return cdam_fail(err, CDAM_EINVAL, "steps %d out of range 1..1024", o->samples);
    const vit_config *c = &m->cfg;
    const float *bqkv = m->blocks[c->L - 1].qkv_b;
    int D = c->D, N = vws->N, n = N - 1;
    memset(scores, 0, sizeof(float) * (size_t)nt * n);
    for (int k = 1; k <= o->samples; k++) {
        float alpha = (float)k / (float)o->samples;
        for (long i = 0; i < N; i++)
            for (int d = 0; d < 2 * D; d++) {
                float b = bqkv[D + d];
                w->kv[i * 2 * D + d] = alpha * (vws->qkv[i * 3 * D + D + d] - b) + b;
            }
        for (int d = 0; d < D; d++) w->at[d] = alpha * vws->t[d];  // CLS row of alpha T
        cls_state s = {w->kv, w->kv + D, 2 * D, NULL, NULL, 1.0f / alpha};
        cls_attention(m, w, w->at, &s, N);
        cls_forward(m, vws, w, &s, N);
        for (int i = 0; i < nt; i++) {
            cls_backward(m, w, &s, N, &t[i], w->scores);
            float *sc = scores + (long)i * n;
            for (int j = 0; j < n; j++) sc[j] += w->scores[j];
        }
    }
    for (long i = 0; i < (long)nt * n; i++) scores[i] /= (float)o->samples;
    return 0;
}

/* ---- attention maps ---------------------------------------------------------------- */

static int cmp_desc(const void *a, const void *b) {
    float x = **(const float *const *)a, y = **(const float *const *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int explain_am(const vit_model *m, const vit_ws *vws, const explain_opts *o, float *scores, char *err) {
    int rc;
    if ((rc = check_forward(vws, err)) < 0) return rc;
    int H = m->cfg.H, N = vws->N, n = N - 1;
    if (o->head < -1 || o->head >= H) return cdam_fail(err, CDAM_EINVAL, "head %d out of range 0..%d (or -1 for the mean)", o->head, H - 1);
    if (!(o->threshold >= 0 && o->threshold <= 1)) return cdam_fail(err, CDAM_EINVAL, "threshold must be in [0, 1]");
    int h0 = o->head < 0 ? 0 : o->head, h1 = o->head < 0 ? H : o->head + 1;
    memset(scores, 0, sizeof(float) * n);
    for (int h = h0; h < h1; h++) {
        const float *a = vws->cls_attn + (long)h * N + 1;  // patch columns
        if (o->threshold > 0) {
            // DINO's mask: sort descending, keep the largest values until the kept mass
            // reaches threshold * total (visualize_attention.py: cumval > 1 - t ascending).
            // The forward's scratch is free once the pass is done; n pointers fit in it
            // (it holds at least N * N floats across threads).
            const float **ord = (const float **)(void *)vws->scratch;
            double total = 0, acc = 0;
            for (int i = 0; i < n; i++) ord[i] = a + i, total += a[i];
            if (!(total > 0)) continue;
            qsort(ord, (size_t)n, sizeof *ord, cmp_desc);
            for (int i = 0; i < n; i++) {
                // ascending cumsum after this one = total - acc_before; kept if > (1 - t) total
                if ((total - acc) / total > 1.0 - o->threshold) scores[ord[i] - a] += a[ord[i] - a];
                acc += *ord[i];
            }
        } else {
            for (int i = 0; i < n; i++) scores[i] += a[i];
        }
    }
    for (int i = 0; i < n; i++) scores[i] /= (float)(h1 - h0);
    return 0;
}

/* ---- concepts and statistics -------------------------------------------------------- */

void explain_concept_mean(const float *const *latents, int k, int D, float *out) {
    for (int d = 0; d < D; d++) {
        double s = 0;
        for (int i = 0; i < k; i++) s += latents[i][d];
        out[d] = (float)(s / k);
    }
}

const float *explain_latent(const vit_model *m, const vit_ws *vws) { return vws->cls_norm + 3 * m->cfg.D; }

int explain_concept_from_inputs(const vit_model *m, vit_ws *vws, const float *const *inputs, int k, int H, int W,
                                float *out, char *err) {
    if (k < 1) return cdam_fail(err, CDAM_EINVAL, "a concept needs at least one example image");
    int D = m->cfg.D, rc;
    memset(out, 0, sizeof(float) * D);
    for (int i = 0; i < k; i++) {
        if ((rc = vit_forward(m, vws, inputs[i], H, W, err)) < 0) return rc;
        const float *z = explain_latent(m, vws);
        for (int d = 0; d < D; d++) out[d] += z[d] / (float)k;
    }
    return 0;
}

double explain_pearson(const float *a, const float *b, long n) {
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (long i = 0; i < n; i++) ma += a[i], mb += b[i];
    ma /= n;
    mb /= n;
    for (long i = 0; i < n; i++) {
        double x = a[i] - ma, y = b[i] - mb;
        sab += x * y, saa += x * x, sbb += y * y;
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

double explain_sparsity(const float *s, long n) {
    float mx = -INFINITY;
    for (long i = 0; i < n; i++) mx = s[i] > mx ? s[i] : mx;
    long k = 0;
    for (long i = 0; i < n; i++) k += fabsf(s[i]) < 0.05f * mx;
    return n ? (double)k / n : NAN;
}
