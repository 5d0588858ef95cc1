/* explain_rp.c - relevance propagation (method.md section 7; Chefer et al. 2021).
 *
 * Legend: P patch, D embedding, H heads, Dh = D/H, F MLP width, L blocks, n = gh*gw
 * patches, N = n + 1 tokens, cr rows of one tile, T threads.
 *
 * The method: f (a class logit, or z . concept) is back-propagated through the whole
 * network (activation gradients only) to get dA^l = df/dA^l of every block's attention
 * probabilities; R = I, R <- R + Abar_l R for l = 1..L with Abar_l = mean over heads of
 * max(0, dA^l * A^l); the map is R[0, 1:].
 *
 * How it is computed: only row 0 of R is wanted, and e_0^T R = e_0^T (I + Abar_L) ...
 * (I + Abar_1), so the row vector r = e_0 is updated as r <- r + r Abar_l while the
 * backward visits l = L, ..., 1: no N x N x N product, no Abar stored. The backward goes
 * block by block from the workspace's recorded block inputs (vws->rec, VIT_REC_BLOCKS):
 * each block's forward is recomputed from its input (LN stats, q, k, v, attention output,
 * LN2 input, pre-GELU activations), then differentiated, so only one block's state is
 * ever held and no attention matrix is stored: the backward recomputes each head's
 * probabilities tile by tile (one more q k^T GEMM and softmax per block: about 6% of RP
 * on ViT-S/8 at 224, measured, where keeping one block's would take H N^2 floats, 15 MB
 * at 224 and 311 MB at 480 per worker). In the last block only the CLS row reaches f:
 * its forward and backward past q, k, v run for that row alone.
 *
 * Per block l, going down, the team of vws (T threads, single-threaded sgemm each):
 *   rows  LN1 + q, k, v of the block's input (stats kept)                    barrier
 *   rows  per tile: attention forward (o), proj + residual, LN2, fc1 (pre-GELU);
 *         then back: fc2, GELU, fc1, LN2, proj: df/dx1 (kept in gx), df/do        barrier
 *   heads per tile of query rows: probabilities, dA = df/do_h v_h^T, the r Abar
 *         partial sums, softmax backward, df/dq, df/dk, df/dv (heads split: no
 *         reduction over threads)                                                barrier
 *   rows  df/dx0 = df/dx1 + LN1 backward of df/d(q, k, v) Wqkv; r += sum of the
 *         threads' partials; then LN1 + q, k, v of the next block down.
 * A probe head (C, 4D) also reads the final-normed CLS rows of blocks L-4..L-2: their
 * LayerNorm backward is added to row 0 of df/dx at those block outputs.
 *
 * Memory (planned by rp_ws_create for vws's largest input; see rp_bytes): q, k, v and
 * their gradient (N, 3D) each, o / df/do and df/dx (N, D) each, LN1 stats, r and T
 * partial rows (N), and per thread max(2 cr N, cr N + 2 cr (D + F)) floats of tiles:
 * about 8 N D floats plus tiles, so RP never holds the L H N^2 attention floats of the
 * plain method. A request whose size needs more than o->rp_budget is refused with
 * CDAM_ELIMIT; rp_ws_create plans the largest token count that fits its budget.
 * explain_rp allocates nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "explain_internal.h"
#include "ops.h"

#define RP_TILE_ROWS 512        // query rows of one attention / MLP tile (at most)
#define RP_TILE_SCORES (4L << 20)  // and at most this many floats of one tile's scores

struct rp_ws {
    int max_N;         // the largest N planned within the budget at creation (0: none)
    int nthreads;
    size_t budget;     // o->rp_budget at creation
    long per_thread;   // floats of one thread's tiles
    long tile;         // the largest tile planned (rows); a call uses min(tile, tile_rows(N))
    long cr;           // rows of a tile in the running call
    float *qkv;        // (N, 3D) q, k, v of the block being differentiated
    float *og;         // (N, D) its attention output o, then df/do
    float *gx;         // (N, D) df/dx at the block boundary being visited
    float *gqkv;       // (N, 3D) df/d(q, k, v)
    float *mean1;      // (N) LN1 statistics of the block's input
    float *rstd1;      // (N)
    float *r;          // (N) relevance row: e_0^T (I + Abar_L) ... (I + Abar_l)
    float *rpart;      // (T, N) each thread's partial r Abar_l
    float *scratch;    // (T, per_thread) tiles
    // the running call
    const vit_model *m;
    const vit_ws *vws;
    const explain_target *t;
    int N;
    // test hook (rp_debug_capture)
    int dbg_layer;
    float *dbg_dA, *dbg_gx;
};

static long align16(long n) { return (n + 15) & ~15L; }
static long tile_rows(long N) {
    long t = N < RP_TILE_ROWS ? N : RP_TILE_ROWS;
    if (t * N > RP_TILE_SCORES) t = RP_TILE_SCORES / N > 16 ? RP_TILE_SCORES / N : 16;
    return t < N ? t : N;
}

// Floats of one thread's tiles for N tokens and tiles of cr rows (both grow with N, cr).
static long thread_floats(const vit_model *m, long N, long cr) {
    long D = m->cfg.D, F = m->cfg.F;
    long attn = 2 * cr * N, mlp = cr * N + 2 * cr * (D + F) + 2 * cr;
    return align16((attn > mlp ? attn : mlp) + D);
}

// Bytes of the planned buffers for N tokens on T threads.
static size_t rp_bytes(const vit_model *m, int T, long N) {
    long D = m->cfg.D;
    long floats = 2 * align16(N * 3 * D) + 2 * align16(N * D) + 3 * align16(N) + T * align16(N) +
                  T * thread_floats(m, N, tile_rows(N));
    return sizeof(float) * (size_t)floats;
}

static float *alloc_touched(long n) {
    float *p = aligned_alloc(64, sizeof(float) * (size_t)align16(n > 0 ? n : 1));
    if (p) memset(p, 0, sizeof(float) * (size_t)n);
    return p;
}

int rp_ws_create(const vit_model *m, const vit_ws *vws, const explain_opts *o, rp_ws **out, char *err) {
    *out = NULL;
    rp_ws *w = calloc(1, sizeof *w);
    if (!w) return cdam_fail(err, CDAM_ENOMEM, "out of memory");
    w->nthreads = vws->nthreads;
    w->budget = o ? o->rp_budget : (size_t)1 << 30;
    w->dbg_layer = -1;
    long N = vws->max_N;
    if (rp_bytes(m, w->nthreads, N) > w->budget) {  // the largest N within the budget
        long lo = 1, hi = N;
        while (hi - lo > 1) {
            long mid = (lo + hi) / 2;
            if (rp_bytes(m, w->nthreads, mid) <= w->budget) lo = mid;
            else hi = mid;
        }
        N = lo >= 2 && rp_bytes(m, w->nthreads, lo) <= w->budget ? lo : 0;
    }
    w->max_N = (int)N;
    if (N == 0) {  // nothing fits: every request will be refused with the bytes it needs
        *out = w;
        return 0;
    }
    long D = m->cfg.D;
    w->tile = tile_rows(N);
    w->per_thread = thread_floats(m, N, w->tile);
    w->qkv = alloc_touched(N * 3 * D);
    w->gqkv = alloc_touched(N * 3 * D);
    w->og = alloc_touched(N * D);
    w->gx = alloc_touched(N * D);
    w->mean1 = alloc_touched(N);
    w->rstd1 = alloc_touched(N);
    w->r = alloc_touched(N);
    w->rpart = alloc_touched(w->nthreads * align16(N));
    w->scratch = alloc_touched(w->nthreads * w->per_thread);
    if (!w->qkv || !w->gqkv || !w->og || !w->gx || !w->mean1 || !w->rstd1 || !w->r || !w->rpart || !w->scratch) {
        size_t bytes = rp_bytes(m, w->nthreads, N);
        rp_ws_free(w);
        return cdam_fail(err, CDAM_ENOMEM, "out of memory for RP buffers (%zu bytes)", bytes);
    }
    *out = w;
    return 0;
}

void rp_ws_free(rp_ws *w) {
    if (!w) return;
    free(w->qkv);
    free(w->gqkv);
    free(w->og);
    free(w->gx);
    free(w->mean1);
    free(w->rstd1);
    free(w->r);
    free(w->rpart);
    free(w->scratch);
    free(w);
}

/* Test hook, declared by tests/test_rp_tam.c: while set, explain_rp copies df/dA of
 * block `layer` (H, N, N; rows the backward does not reach are 0) into dA and df/d(the
 * embedding) (N, D) into gx; either may be NULL. layer -1 with NULLs turns it off. */
void rp_debug_capture(rp_ws *w, int layer, float *dA, float *gx) {
    w->dbg_layer = layer;
    w->dbg_dA = dA;
    w->dbg_gx = gx;
}

/* Test hook: tiles of at most `rows` rows (>= 1, at most the planned tile), so that
 * small inputs exercise the tiled paths. */
void rp_debug_tile(rp_ws *w, int rows) {
    if (rows >= 1 && rows < w->tile) w->tile = rows;
}

// df/d(final-normed CLS row of block l's output) (D), or NULL if f does not read it.
static const float *top_grad(const vit_model *m, const explain_target *t, int l) {
    const vit_config *c = &m->cfg;
    int slot = l - (c->L - 4);
    if (slot < 0) return NULL;
    if (t->is_concept) return slot == 3 ? t->concept : NULL;
    if (c->head_in == 4 * c->D) return m->head_w + (long)t->cls * c->head_in + (long)slot * c->D;
    return slot == 3 ? m->head_w + (long)t->cls * c->head_in : NULL;
}

// gx0 (D) += the final LayerNorm's backward of g at the CLS row x0 (D). tmp: D floats.
static void add_final_norm_grad(const vit_model *m, float *gx0, const float *g, const float *x0, float *tmp) {
    float mean, rstd;
    layernorm_forward(tmp, &mean, &rstd, x0, m->norm_w, m->norm_b, 1, m->cfg.D, m->cfg.ln_eps);
    layernorm_backward(gx0, g, x0, m->norm_w, &mean, &rstd, 1, m->cfg.D);
}

// Rows [r0, r1) of block l's input: LN1 (stats kept) and q, k, v.
static void fwd_qkv(rp_ws *w, int l, long r0, long r1, float *scr) {
    const vit_model *m = w->m;
    const vit_block *b = &m->blocks[l];
    long D = m->cfg.D, N = w->N, cr = w->cr;
    const float *x = w->vws->rec + (long)l * N * D;              // (N, D) block input
    for (long c0 = r0; c0 < r1; c0 += cr) {
        int n = (int)(c0 + cr < r1 ? cr : r1 - c0);
        layernorm_forward(scr, w->mean1 + c0, w->rstd1 + c0, x + c0 * D, b->ln1_w, b->ln1_b, n, (int)D, m->cfg.ln_eps);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, 3 * (int)D, (int)D, 1.0f, scr, (int)D, b->qkv_w, (int)D,
                    0.0f, w->qkv + c0 * 3 * D, 3 * (int)D);
        bias_add(w->qkv + c0 * 3 * D, b->qkv_b, n, 3 * (int)D);
    }
}

// Query rows [q0, q1) of block l: forward from the attention to fc1, then backward from
// df/dx (block output, in gx) to df/dx1 (in gx) and df/do (in og).
static void rows_mlp(rp_ws *w, int l, long q0, long q1, float *scr) {
    const vit_model *m = w->m;
    const vit_config *c = &m->cfg;
    const vit_block *b = &m->blocks[l];
    int D = c->D, Dh = c->Dh, F = c->F, N = w->N;
    long cr = w->cr;
    const float scale = 1.0f / sqrtf((float)Dh);
    const float *xin = w->vws->rec + (long)l * N * D;            // (N, D) block input
    float *S = scr;                                              // (cr, N) one head's scores
    float *x1 = S + cr * N;                                      // (cr, D) after attention
    float *u = x1 + cr * D;                                      // (cr, D) LN2 output, then df/du
    float *hpre = u + cr * D;                                    // (cr, F) fc1 output before GELU
    float *gh = hpre + cr * F;                                   // (cr, F) df/d(hidden)
    float *mean2 = gh + cr * F, *rstd2 = mean2 + cr;             // (cr)
    for (long c0 = q0; c0 < q1; c0 += cr) {
        int n = (int)(c0 + cr < q1 ? cr : q1 - c0);
        float *o = w->og + c0 * D, *gx = w->gx + c0 * D;         // (n, D)
        for (int h = 0; h < c->H; h++) {
            const float *q = w->qkv + c0 * 3 * D + h * Dh, *k = w->qkv + D + h * Dh, *v = w->qkv + 2 * D + h * Dh;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, N, Dh, scale, q, 3 * D, k, 3 * D, 0.0f, S, N);
            softmax_forward(S, n, N, N);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dh, N, 1.0f, S, N, v, 3 * D, 0.0f, o + h * Dh, D);
        }
        memcpy(x1, xin + c0 * D, sizeof(float) * (size_t)n * D);  // x1 = x + o Wp^T + bp
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, D, 1.0f, o, D, b->proj_w, D, 1.0f, x1, D);
        bias_add(x1, b->proj_b, n, D);
        layernorm_forward(u, mean2, rstd2, x1, b->ln2_w, b->ln2_b, n, D, c->ln_eps);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, F, D, 1.0f, u, D, b->fc1_w, D, 0.0f, hpre, F);
        bias_add(hpre, b->fc1_b, n, F);
        // back: gh = gx W2 (n, D).(D, F); GELU'; df/du = gh W1 (n, F).(F, D); LN2
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, F, D, 1.0f, gx, D, b->fc2_w, F, 0.0f, gh, F);
        gelu_backward(gh, hpre, gh, (long)n * F);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, F, 1.0f, gh, F, b->fc1_w, D, 0.0f, u, D);
        layernorm_backward(gx, u, x1, b->ln2_w, mean2, rstd2, n, D);  // gx = df/dx1 (residual + LN2 path)
        // df/do = df/dx1 Wp (n, D).(D, D), over o (no longer needed)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, D, 1.0f, gx, D, b->proj_w, D, 0.0f, o, D);
    }
}

// Head h of block l over query rows [0, nq): the probabilities again, dA, the partial
// r Abar (into rpart), and df/dq, df/dk, df/dv into gqkv.
static void head_backward(rp_ws *w, int l, int h, int nq, float *scr, float *rpart) {
    const vit_model *m = w->m;
    const vit_config *c = &m->cfg;
    int D = c->D, Dh = c->Dh, N = w->N;
    long cr = w->cr;
    const float scale = 1.0f / sqrtf((float)Dh), inv_h = 1.0f / (float)c->H;
    const float *q = w->qkv + h * Dh, *k = w->qkv + D + h * Dh, *v = w->qkv + 2 * D + h * Dh;  // (N, Dh), stride 3D
    const float *go = w->og + h * Dh;                            // (N, Dh), stride D
    float *gq = w->gqkv + h * Dh, *gk = w->gqkv + D + h * Dh, *gv = w->gqkv + 2 * D + h * Dh;
    float *A = scr, *G = scr + cr * N;                           // (cr, N) each
    float *dbg = l == w->dbg_layer && w->dbg_dA ? w->dbg_dA + (long)h * N * N : NULL;
    for (long i0 = 0; i0 < nq; i0 += cr) {
        int n = (int)(i0 + cr < nq ? cr : nq - i0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, N, Dh, scale, q + i0 * 3 * D, 3 * D, k, 3 * D, 0.0f, A, N);
        softmax_forward(A, n, N, N);
        // dA = df/do_h v_h^T (n, Dh).(Dh, N)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, N, Dh, 1.0f, go + i0 * D, D, v, 3 * D, 0.0f, G, N);
        if (dbg) memcpy(dbg + i0 * N, G, sizeof(float) * (size_t)n * N);
        for (int i = 0; i < n; i++) {                            // r Abar partials; G becomes df/dS
            float *a = A + (long)i * N, *g = G + (long)i * N;
            float wi = w->r[i0 + i] * inv_h, dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < N; j++) dot += a[j] * g[j];
            if (wi != 0) {
#pragma omp simd
                for (int j = 0; j < N; j++) {
                    float p = a[j] * g[j];
                    rpart[j] += wi * (p > 0 ? p : 0);
                }
            }
            for (int j = 0; j < N; j++) g[j] = a[j] * (g[j] - dot);
        }
        // df/dq = scale dS k (n, N).(N, Dh); df/dk += scale dS^T q (N, n).(n, Dh); df/dv += A^T df/do
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, Dh, N, scale, G, N, k, 3 * D, 0.0f, gq + i0 * 3 * D, 3 * D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, Dh, n, scale, G, N, q + i0 * 3 * D, 3 * D, i0 ? 1.0f : 0.0f,
                    gk, 3 * D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, Dh, n, 1.0f, A, N, go + i0 * D, D, i0 ? 1.0f : 0.0f, gv,
                    3 * D);
    }
    for (long i = nq; i < N; i++) memset(gq + i * 3 * D, 0, sizeof(float) * (size_t)Dh);  // rows the backward does not reach
}

// Rows [r0, r1) of block l: gx += LN1 backward of df/dt = df/d(q, k, v) Wqkv; r += the
// threads' partials; and, at the output of block l - 1, the final norm's backward of a
// probe head's CLS row.
static void rows_qkv_backward(rp_ws *w, int l, long r0, long r1, float *scr, int nth) {
    const vit_model *m = w->m;
    const vit_block *b = &m->blocks[l];
    long D = m->cfg.D, N = w->N, cr = w->cr;
    const float *x = w->vws->rec + (long)l * N * D;              // (N, D) block input
    for (long c0 = r0; c0 < r1; c0 += cr) {
        int n = (int)(c0 + cr < r1 ? cr : r1 - c0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, (int)D, 3 * (int)D, 1.0f, w->gqkv + c0 * 3 * D, 3 * (int)D,
                    b->qkv_w, (int)D, 0.0f, scr, (int)D);
        layernorm_backward(w->gx + c0 * D, scr, x + c0 * D, b->ln1_w, w->mean1 + c0, w->rstd1 + c0, n, (int)D);
    }
    for (long j = r0; j < r1; j++) {
        float s = 0;
        for (int t = 0; t < nth; t++) s += w->rpart[t * align16(N) + j];
        w->r[j] += s;
    }
    const float *g = l > 0 ? top_grad(m, w->t, l - 1) : NULL;
    if (g && r0 == 0 && r1 > 0) add_final_norm_grad(m, w->gx, g, x, scr);
}

static void rp_team(void *arg, int tid, int nth) {
    rp_ws *w = arg;
    const vit_config *c = &w->m->cfg;
    long N = w->N, D = c->D, r0, r1, q0, q1, h0, h1;
    tpool_split(N, nth, tid, &r0, &r1);
    tpool_split(c->H, nth, tid, &h0, &h1);
    float *scr = w->scratch + tid * w->per_thread;
    float *rpart = w->rpart + tid * align16(N);
    fwd_qkv(w, c->L - 1, r0, r1, scr);
    for (int l = c->L - 1; l >= 0; l--) {
        int nq = l == c->L - 1 ? 1 : (int)N;                     // the last block: the CLS row only
        tpool_barrier(w->vws->pool);                             // q, k, v of every row ready
        tpool_split(nq, nth, tid, &q0, &q1);
        rows_mlp(w, l, q0, q1, scr);
        memset(rpart, 0, sizeof(float) * (size_t)N);
        tpool_barrier(w->vws->pool);                             // df/do of every row ready
        for (long h = h0; h < h1; h++) head_backward(w, l, (int)h, nq, scr, rpart);
        tpool_barrier(w->vws->pool);                             // df/d(q, k, v) and partials ready
        rows_qkv_backward(w, l, r0, r1, scr, nth);
        if (l > 0) fwd_qkv(w, l - 1, r0, r1, scr);
    }
    if (w->dbg_gx) memcpy(w->dbg_gx + r0 * D, w->gx + r0 * D, sizeof(float) * (size_t)((r1 - r0) * D));
}

int explain_rp(const vit_model *m, vit_ws *vws, explain_ws *ews, const explain_target *t, const explain_opts *o,
               float *scores, char *err) {
    const vit_config *c = &m->cfg;
    rp_ws *w = ews ? ews->rp : NULL;
    if (!w || !vws || !t || !o || !scores) return cdam_fail(err, CDAM_EINVAL, "RP: missing workspace, target, options or output");
    if (!vws->rec) return cdam_fail(err, CDAM_EINVAL, "RP needs a workspace created with VIT_REC_BLOCKS");
    if (vws->m != m || vws->N < 2) return cdam_fail(err, CDAM_EINVAL, "RP: run vit_forward on the image with this model first");
    if (t->is_concept && !t->concept) return cdam_fail(err, CDAM_EINVAL, "RP: concept target without a vector");
    if (!t->is_concept && (t->cls < 0 || t->cls >= c->C))
        return cdam_fail(err, CDAM_EINVAL, "RP: class %d out of range (the model has %d classes)", t->cls, c->C);
    if (vws->nthreads > w->nthreads)
        return cdam_fail(err, CDAM_EINVAL, "RP: the explain workspace was planned for %d threads, the vit workspace has %d",
                         w->nthreads, vws->nthreads);
    int N = vws->N;
    size_t need = rp_bytes(m, w->nthreads, N);
    if (need > o->rp_budget)
        return cdam_fail(err, CDAM_ELIMIT, "RP needs %zu bytes for a %dx%d input (%d tokens), over the budget of %zu bytes",
                         need, vws->H, vws->W, N, o->rp_budget);
    if (N > w->max_N)
        return cdam_fail(err, CDAM_ELIMIT,
                         "RP needs %zu bytes for a %dx%d input (%d tokens), but its buffers were planned for %d tokens "
                         "within the budget of %zu bytes at explain_ws_create",
                         need, vws->H, vws->W, N, w->max_N, w->budget);
    long D = c->D;
    w->m = m;
    w->vws = vws;
    w->t = t;
    w->N = N;
    w->cr = tile_rows(N) < w->tile ? tile_rows(N) : w->tile;
    memset(w->gx, 0, sizeof(float) * (size_t)N * D);             // df/dx at the last block's output:
    add_final_norm_grad(m, w->gx, top_grad(m, t, c->L - 1), vws->rec + (long)c->L * N * D, w->scratch);  // CLS row
    memset(w->r, 0, sizeof(float) * (size_t)N);
    w->r[0] = 1;
    if (w->dbg_dA) memset(w->dbg_dA, 0, sizeof(float) * (size_t)c->H * N * N);
    tpool_run(vws->pool, rp_team, w);
    memcpy(scores, w->r + 1, sizeof(float) * (size_t)(N - 1));
    return 0;
}
