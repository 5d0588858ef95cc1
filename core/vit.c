/* vit.c - DINO ViT forward pass.
 * Legend: P patch, D embedding, H heads, Dh = D/H, F MLP width, L blocks, g0 native
 * grid, gh x gw grid, n = gh*gw patches, N = n + 1 tokens, K = 3*P*P patch pixels,
 * C classes, R rows of one thread's share (of the sequence in vit_block_seq), cr rows of
 * one tile. */
#include "vit.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#define TILE_MAX_ROWS 512          // rows of one attention/MLP tile
#define SCORES_MAX (4L << 20)      // floats of one thread's attention score tile

static float *alloc_touched(long n) {
    if (n <= 0) n = 1;
    float *p = aligned_alloc(64, ((size_t)n * sizeof(float) + 63) & ~(size_t)63);
    if (p) memset(p, 0, (size_t)n * sizeof(float));  // first touch now, not in the hot path
    return p;
}

int vit_ws_create(const vit_model *m, int max_h, int max_w, int nthreads, unsigned flags, vit_ws **out, char *err) {
    const vit_config *c = &m->cfg;
    *out = NULL;
    if (max_h < c->P || max_w < c->P || max_h % c->P || max_w % c->P || max_h > 16384 || max_w > 16384)
        return cdam_fail(err, CDAM_EINVAL, "workspace size %dx%d is not a multiple of the patch size %d (or too large)", max_h, max_w, c->P);
    if (nthreads < 1 || nthreads > 256) return cdam_fail(err, CDAM_EINVAL, "thread count %d out of range 1..256", nthreads);
    vit_ws *ws = calloc(1, sizeof *ws);
    if (!ws) return cdam_fail(err, CDAM_ENOMEM, "out of memory");
    long D = c->D, n = (long)(max_h / c->P) * (max_w / c->P), N = n + 1, K = 3L * c->P * c->P;
    ws->max_h = max_h;
    ws->max_w = max_w;
    ws->max_N = (int)N;
    ws->nthreads = nthreads;
    ws->flags = flags;
    long rows = (N + nthreads - 1) / nthreads;
    ws->chunk_rows = (int)(rows < TILE_MAX_ROWS ? rows : TILE_MAX_ROWS);
    long scores = (long)ws->chunk_rows * N;
    if (scores > SCORES_MAX) scores = SCORES_MAX > N ? SCORES_MAX : N;
    ws->scratch_per_thread = ((scores + (long)ws->chunk_rows * (2 * D + c->F)) + 15) & ~15L;
    ws->pos_buf = alloc_touched(N * D);
    ws->x = alloc_touched(N * D);
    ws->t = alloc_touched(N * D);
    ws->qkv = alloc_touched(N * 3 * D);
    ws->cls_attn = alloc_touched((long)c->H * N);
    ws->cls_norm = alloc_touched(4 * D);
    ws->cls_in = alloc_touched(D);
    ws->latent = alloc_touched(4 * D);
    ws->logits = alloc_touched(c->C);
    ws->patches = alloc_touched(n * K);
    ws->scratch = alloc_touched(ws->scratch_per_thread * nthreads);
    ws->errbuf = calloc(1, CDAM_ERR_MAX);
    if (flags & VIT_REC_BLOCKS) ws->rec = ws->rec_mem = alloc_touched((c->L + 1L) * N * D);
    if (flags & VIT_REC_LN1) ws->rec_ln1 = alloc_touched((long)c->L * N * D);
    if (!ws->pos_buf || !ws->x || !ws->t || !ws->qkv || !ws->cls_attn || !ws->cls_norm || !ws->cls_in || !ws->latent || !ws->logits ||
        !ws->patches || !ws->scratch || !ws->errbuf || ((flags & VIT_REC_BLOCKS) && !ws->rec) ||
        ((flags & VIT_REC_LN1) && !ws->rec_ln1)) {
        vit_ws_free(ws);
        return cdam_fail(err, CDAM_ENOMEM, "out of memory for a %dx%d workspace", max_h, max_w);
    }
    if (!(ws->pool = tpool_create(nthreads, err))) {
        vit_ws_free(ws);
        return CDAM_ENOMEM;
    }
    // Our threads split the rows; each sgemm call runs on its caller's thread only.
    openblas_set_num_threads(1);
    *out = ws;
    return 0;
}

void vit_ws_free(vit_ws *ws) {
    if (!ws) return;
    tpool_free(ws->pool);
    free(ws->pos_buf);
    free(ws->x);
    free(ws->t);
    free(ws->qkv);
    free(ws->cls_attn);
    free(ws->cls_norm);
    free(ws->cls_in);
    free(ws->latent);
    free(ws->logits);
    free(ws->patches);
    free(ws->scratch);
    free(ws->rec_mem);
    free(ws->rec_ln1);
    free(ws->errbuf);
    free(ws);
}

int vit_ws_record(vit_ws *ws, int on, char *err) {
    if (!ws->rec_mem) return cdam_fail(err, CDAM_EINVAL, "the workspace was not created with VIT_REC_BLOCKS");
    ws->rec = on ? ws->rec_mem : NULL;
    ws->flags = on ? ws->flags | VIT_REC_BLOCKS : ws->flags & ~(unsigned)VIT_REC_BLOCKS;
    return 0;
}

/* ---- forward state for caching ----------------------------------------------- */

#define VIT_STATE_MAGIC 0x31545356u  // "VST1"
typedef struct {
    uint32_t magic, D, C, L;
    int32_t H, W, gh, gw, N, head_in, nheads, pad;
} vit_state_hdr;

// The state's arrays, in blob order, for N tokens: t (N, D), qkv (N, 3D), cls_attn (H, N),
// cls_in (D), cls_norm (4, D), latent (4D), logits (C). One table for size, save and load.
#define VIT_STATE_NARR 7
static void state_arrays(const vit_config *c, const vit_ws *ws, size_t N, float *ptr[VIT_STATE_NARR],
                         size_t cnt[VIT_STATE_NARR]) {
    size_t D = (size_t)c->D;
    const size_t n[VIT_STATE_NARR] = {N * D, N * 3 * D, (size_t)c->H * N, D, 4 * D, 4 * D, (size_t)c->C};
    memcpy(cnt, n, sizeof n);
    if (!ptr) return;
    float *const p[VIT_STATE_NARR] = {ws->t, ws->qkv, ws->cls_attn, ws->cls_in, ws->cls_norm, ws->latent, ws->logits};
    memcpy(ptr, p, sizeof p);
}

size_t vit_state_bytes(const vit_model *m, int gh, int gw) {
    size_t cnt[VIT_STATE_NARR], bytes = sizeof(vit_state_hdr);
    state_arrays(&m->cfg, NULL, (size_t)gh * gw + 1, NULL, cnt);
    for (int i = 0; i < VIT_STATE_NARR; i++) bytes += sizeof(float) * cnt[i];
    return bytes;
}

void vit_state_save(const vit_model *m, const vit_ws *ws, void *buf) {
    const vit_config *c = &m->cfg;
    vit_state_hdr h = {VIT_STATE_MAGIC, (uint32_t)c->D, (uint32_t)c->C, (uint32_t)c->L,
                       ws->H, ws->W, ws->gh, ws->gw, ws->N, c->head_in, c->H, 0};
    char *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    float *ptr[VIT_STATE_NARR];
    size_t cnt[VIT_STATE_NARR];
    state_arrays(c, ws, (size_t)ws->N, ptr, cnt);
    for (int i = 0; i < VIT_STATE_NARR; i++) {
        memcpy(p, ptr[i], sizeof(float) * cnt[i]);
        p += sizeof(float) * cnt[i];
    }
}

int vit_state_load(const vit_model *m, vit_ws *ws, const void *buf, size_t len, char *err) {
    const vit_config *c = &m->cfg;
    vit_state_hdr h;
    if (len < sizeof h) return cdam_fail(err, CDAM_EINVAL, "forward state: %zu bytes is too short", len);
    memcpy(&h, buf, sizeof h);
    if (h.magic != VIT_STATE_MAGIC || h.D != (uint32_t)c->D || h.C != (uint32_t)c->C || h.L != (uint32_t)c->L ||
        h.head_in != c->head_in || h.nheads != c->H || h.gh < 1 || h.gw < 1 || h.H != h.gh * c->P || h.W != h.gw * c->P ||
        h.N != h.gh * h.gw + 1 || len != vit_state_bytes(m, h.gh, h.gw))
        return cdam_fail(err, CDAM_EINVAL, "forward state: not a state of this model");
    if (h.H > ws->max_h || h.W > ws->max_w || h.N > ws->max_N)
        return cdam_fail(err, CDAM_EINVAL, "forward state: a %dx%d input does not fit the %dx%d workspace", h.H, h.W,
                         ws->max_h, ws->max_w);
    const char *p = (const char *)buf + sizeof h;
    float *ptr[VIT_STATE_NARR];
    size_t cnt[VIT_STATE_NARR];
    state_arrays(c, ws, (size_t)h.N, ptr, cnt);
    for (int i = 0; i < VIT_STATE_NARR; i++) {
        memcpy(ptr[i], p, sizeof(float) * cnt[i]);
        p += sizeof(float) * cnt[i];
    }
    ws->H = h.H, ws->W = h.W, ws->gh = h.gh, ws->gw = h.gw, ws->N = h.N;
    ws->pos = NULL;       // not part of the state; TAM needs a new forward
    ws->rec = NULL;       // the records are of another input now
    ws->flags &= ~(unsigned)VIT_REC_BLOCKS;
    return 0;
}

/* ---- position embedding ------------------------------------------------------ */

// Cubic convolution weights (a = -0.75) for the 4 taps around a fractional offset t,
// as PyTorch's upsample_bicubic2d computes them.
static void cubic_weights(float t, float w[4]) {
    const float A = -0.75f;
    float x;
    x = t + 1.0f;
    w[0] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
    x = t;
    w[1] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 1.0f - t;
    w[2] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 2.0f - t;
    w[3] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
}

// Source index and fraction of output coordinate i when resampling g0 -> g with
// DINO's scale factor (g + 0.1) / g0 (PyTorch keeps the given scale: src = (i + 0.5) /
// scale - 0.5, computed in float from the double 1 / scale).
static void src_coord(int i, int g, int g0, int *idx, float *t) {
    float inv = (float)(1.0 / ((g + 0.1) / g0));
    float s = inv * ((float)i + 0.5f) - 0.5f;
    float f = floorf(s);
    *idx = (int)f;
    *t = s - f;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void vit_pos_embed(const vit_model *m, int gh, int gw, float *out) {
    const vit_config *c = &m->cfg;
    int D = c->D, g0 = c->g0;
    if (gh == g0 && gw == g0) {
        memcpy(out, m->pos, sizeof(float) * (size_t)D * (1 + g0 * g0));
        return;
    }
    memcpy(out, m->pos, sizeof(float) * (size_t)D);  // CLS row unchanged
    const float *src = m->pos + D;                     // (g0*g0, D), row = y*g0 + x
    for (int oy = 0; oy < gh; oy++) {
        int iy;
        float ty, wy[4];
        src_coord(oy, gh, g0, &iy, &ty);
        cubic_weights(ty, wy);
        for (int ox = 0; ox < gw; ox++) {
            int ix;
            float tx, wx[4];
            src_coord(ox, gw, g0, &ix, &tx);
            cubic_weights(tx, wx);
            float *o = out + (long)(1 + oy * gw + ox) * D;
            for (int d = 0; d < D; d++) {
                float acc = 0;
                for (int j = 0; j < 4; j++) {  // rows first along x, then along y, as PyTorch
                    const float *r = src + (long)clampi(iy - 1 + j, 0, g0 - 1) * g0 * D;
                    float v = 0;
                    for (int i = 0; i < 4; i++) v += r[(long)clampi(ix - 1 + i, 0, g0 - 1) * D + d] * wx[i];
                    acc += v * wy[j];
                }
                o[d] = acc;
            }
        }
    }
}

/* ---- the blocks ---------------------------------------------------------------- */

// Patch embedding, CLS and position embedding for token rows [r0, r1).
static void embed_rows(const vit_model *m, vit_ws *ws, long r0, long r1) {
    const vit_config *c = &m->cfg;
    int D = c->D, P = c->P, gw = ws->gw, K = 3 * P * P;
    const float *img = ws->img;                     // (3, H, W)
    if (r0 == 0 && r1 > 0)
        for (int d = 0; d < D; d++) ws->x[d] = m->cls[d] + ws->pos[d];
    long p0 = r0 > 1 ? r0 - 1 : 0, p1 = r1 - 1;     // patch rows
    if (p1 <= p0) return;
    for (long p = p0; p < p1; p++) {                // unfold: (n, K), col = ch*P*P + ky*P + kx
        int py = (int)(p / gw), px = (int)(p % gw);
        float *dst = ws->patches + p * K;
        for (int ch = 0; ch < 3; ch++)
            for (int ky = 0; ky < P; ky++)
                memcpy(dst + (ch * P + ky) * P, img + ((long)ch * ws->H + py * P + ky) * ws->W + (long)px * P,
                       sizeof(float) * P);
    }
    float *x = ws->x + (1 + p0) * D;                // (p1-p0, D) = patches (p1-p0, K) . Wpe^T (K, D)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(p1 - p0), D, K, 1.0f, ws->patches + p0 * K, K,
                m->patch_w, K, 0.0f, x, D);
    for (long p = p0; p < p1; p++) {
        float *xr = ws->x + (1 + p) * D;
        const float *pr = ws->pos + (1 + p) * D;
        for (int d = 0; d < D; d++) xr[d] += m->patch_b[d] + pr[d];
    }
}

// LN1 and q, k, v for rows [r0, r1) of block l: t = LN1(x), qkv = t Wqkv^T + bqkv.
static void block_qkv(const vit_model *m, const vit_block *b, vit_ws *ws, long r0, long r1) {
    int D = m->cfg.D;
    if (r1 <= r0) return;
    layernorm_forward(ws->t + r0 * D, NULL, NULL, ws->x + r0 * D, b->ln1_w, b->ln1_b, (int)(r1 - r0), D, m->cfg.ln_eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), 3 * D, D, 1.0f, ws->t + r0 * D, D, b->qkv_w, D,
                0.0f, ws->qkv + r0 * 3 * D, 3 * D);
    bias_add(ws->qkv + r0 * 3 * D, b->qkv_b, (int)(r1 - r0), 3 * D);
}

// Attention, proj, residual, LN2, MLP, residual for the cr query rows at q/x of a
// sequence of N tokens whose k, v are in qkv (N, 3D). S: (cr, N) scores of one head;
// o, u: (cr, D); hid: (cr, F). cls_attn (H, N): if non-NULL, records the attention of
// the tile's first row (the CLS query when the tile starts at row 0).
static void attn_mlp_tile(const vit_model *m, const vit_block *b, const float *qkv, int N, const float *q, float *x,
                          int cr, float *S, float *o, float *u, float *hid, float *cls_attn) {
    const vit_config *c = &m->cfg;
    int D = c->D, Dh = c->Dh, F = c->F;
    const float scale = 1.0f / sqrtf((float)Dh);
    for (int h = 0; h < c->H; h++) {
        const float *k = qkv + D + h * Dh;                      // (N, Dh), row stride 3D
        const float *v = qkv + 2 * D + h * Dh;                  // (N, Dh)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cr, N, Dh, scale, q + h * Dh, 3 * D, k, 3 * D, 0.0f, S, N);
        softmax_forward(S, cr, N, N);
        if (cls_attn) memcpy(cls_attn + (long)h * N, S, sizeof(float) * N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cr, Dh, N, 1.0f, S, N, v, 3 * D, 0.0f, o + h * Dh, D);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cr, D, D, 1.0f, o, D, b->proj_w, D, 1.0f, x, D);
    bias_add(x, b->proj_b, cr, D);
    layernorm_forward(u, NULL, NULL, x, b->ln2_w, b->ln2_b, cr, D, c->ln_eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cr, F, D, 1.0f, u, D, b->fc1_w, D, 0.0f, hid, F);
    bias_gelu_forward(hid, b->fc1_b, cr, F);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cr, D, F, 1.0f, hid, F, b->fc2_w, F, 1.0f, x, D);
    bias_add(x, b->fc2_b, cr, D);
}

// Attention, proj, residual, LN2, MLP, residual for rows [c0, c1) of block l
// (needs k, v of all N rows). last: record the CLS attention row.
static void block_rest(const vit_model *m, const vit_block *b, vit_ws *ws, long c0, long c1, float *scr, int last) {
    const vit_config *c = &m->cfg;
    int D = c->D, F = c->F;
    float *S = scr;                                             // (cr, N) scores of one head
    float *o = scr + ws->scratch_per_thread - (long)ws->chunk_rows * (2 * D + F);  // (cr, D)
    float *u = o + (long)ws->chunk_rows * D;                    // (cr, D)
    float *hid = u + (long)ws->chunk_rows * D;                  // (cr, F)
    attn_mlp_tile(m, b, ws->qkv, ws->N, ws->qkv + c0 * 3 * D, ws->x + c0 * D, (int)(c1 - c0), S, o, u, hid,
                  last && c0 == 0 ? ws->cls_attn : NULL);
}

// The team's body: every thread runs every block on its rows.
static void forward_team(void *arg, int tid, int nt) {
    vit_ws *ws = arg;
    const vit_model *m = ws->m;
    const vit_config *c = &m->cfg;
    long D = c->D, N = ws->N, r0, r1;
    tpool_split(N, nt, tid, &r0, &r1);
    float *scr = ws->scratch + tid * ws->scratch_per_thread;
    long tile = ws->chunk_rows;
    long fit = (ws->scratch_per_thread - (long)ws->chunk_rows * (2 * D + c->F)) / N;  // rows whose scores fit
    if (fit < tile) tile = fit;
    embed_rows(m, ws, r0, r1);
    if (ws->rec) memcpy(ws->rec + r0 * D, ws->x + r0 * D, sizeof(float) * (size_t)((r1 - r0) * D));
    for (int l = 0; l < c->L; l++) {
        const vit_block *b = &m->blocks[l];
        if (l == c->L - 1 && r0 == 0 && r1 > 0) memcpy(ws->cls_in, ws->x, sizeof(float) * (size_t)D);
        block_qkv(m, b, ws, r0, r1);
        if (ws->rec_ln1) memcpy(ws->rec_ln1 + (l * N + r0) * D, ws->t + r0 * D, sizeof(float) * (size_t)((r1 - r0) * D));
        tpool_barrier(ws->pool);                                // k, v of all rows ready
        // Only the CLS row of the last block reaches the head: past its q, k, v the
        // other rows are skipped unless every block's output is being recorded. The CLS
        // row runs as a tile of its own either way, so that its numbers (logits, the
        // cached forward state) are the same bits with and without recording (a 1-row
        // GEMM and a many-row GEMM may sum in different orders).
        long s0 = r0;
        if (l == c->L - 1 && r0 == 0 && r1 > 0) {
            block_rest(m, b, ws, 0, 1, scr, 1);
            s0 = 1;
        }
        long e1 = l == c->L - 1 && !ws->rec ? s0 : r1;
        for (long c0 = s0; c0 < e1; c0 += tile)
            block_rest(m, b, ws, c0, c0 + tile < e1 ? c0 + tile : e1, scr, l == c->L - 1);
        if (ws->rec) memcpy(ws->rec + ((l + 1) * N + r0) * D, ws->x + r0 * D, sizeof(float) * (size_t)((r1 - r0) * D));
        int slot = l - (c->L - 4);
        if (r0 == 0 && r1 > 0 && slot >= 0)                     // final-normed CLS of the last 4 blocks
            layernorm_forward(ws->cls_norm + slot * D, NULL, NULL, ws->x, m->norm_w, m->norm_b, 1, (int)D, c->ln_eps);
        tpool_barrier(ws->pool);                                // block done before q, k, v are overwritten
    }
}

/* ---- one token sequence on the calling thread (TAM's ablated sequences) ---------- */

#define SEQ_TILE_ROWS 512          // query rows of one vit_block_seq tile (at most)

static long seq_tile(int R) {
    long t = R < SEQ_TILE_ROWS ? R : SEQ_TILE_ROWS;
    if (t * R > SCORES_MAX) t = SCORES_MAX / R > 16 ? SCORES_MAX / R : 16;  // a tile's scores stay small
    return t < R ? t : R;
}

long vit_seq_scratch(const vit_model *m, int R) {
    const vit_config *c = &m->cfg;
    // seq_tile(r) * r grows with r, seq_tile(r) is at most min(r, SEQ_TILE_ROWS): enough for any r <= R
    return seq_tile(R) * R + (R < SEQ_TILE_ROWS ? R : SEQ_TILE_ROWS) * (2L * c->D + c->F);
}

void vit_embed(const vit_model *m, const float *img, int H, int W, const float *pos, float *x, float *patches) {
    const vit_config *c = &m->cfg;
    int D = c->D, P = c->P, gw = W / P, K = 3 * P * P;
    long n = (long)(H / P) * gw;
    for (long p = 0; p < n; p++) {                  // unfold: (n, K), col = ch*P*P + ky*P + kx
        int py = (int)(p / gw), px = (int)(p % gw);
        for (int ch = 0; ch < 3; ch++)
            for (int ky = 0; ky < P; ky++)
                memcpy(patches + p * K + (ch * P + ky) * P, img + ((long)ch * H + py * P + ky) * W + (long)px * P,
                       sizeof(float) * P);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, D, K, 1.0f, patches, K, m->patch_w, K, 0.0f, x + D, D);
    for (int d = 0; d < D; d++) x[d] = m->cls[d] + pos[d];
    for (long p = 0; p < n; p++)
        for (int d = 0; d < D; d++) x[(1 + p) * D + d] += m->patch_b[d] + pos[(1 + p) * D + d];
}

void vit_block_seq(const vit_model *m, int l, float *x, int R, int nq, float *qkv, int have_qkv, float *scr) {
    const vit_config *c = &m->cfg;
    const vit_block *b = &m->blocks[l];
    int D = c->D;
    long tile = seq_tile(R);
    float *S = scr;                                 // (tile, R) scores of one head
    float *o = S + tile * R;                        // (tile, D)
    float *u = o + tile * D;                        // (tile, D)
    float *hid = u + tile * D;                      // (tile, F)
    for (long r0 = 0; r0 < R && !have_qkv; r0 += tile) {  // t = LN1(x) tile by tile into u, then q, k, v
        int cr = (int)(r0 + tile < R ? tile : R - r0);
        layernorm_forward(u, NULL, NULL, x + r0 * D, b->ln1_w, b->ln1_b, cr, D, c->ln_eps);
        int nqt = r0 >= nq ? 0 : (int)(nq - r0 < cr ? nq - r0 : cr);  // rows of the tile that need q
        if (nqt == cr) {                            // qkv (cr, 3D) = u Wqkv^T
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cr, 3 * D, D, 1.0f, u, D, b->qkv_w, D, 0.0f,
                        qkv + r0 * 3 * D, 3 * D);
            bias_add(qkv + r0 * 3 * D, b->qkv_b, cr, 3 * D);
            continue;
        }
        if (nqt > 0) {                              // q (nqt, D) for the query rows only
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nqt, D, D, 1.0f, u, D, b->qkv_w, D, 0.0f,
                        qkv + r0 * 3 * D, 3 * D);
            for (int i = 0; i < nqt; i++) bias_add(qkv + (r0 + i) * 3 * D, b->qkv_b, 1, D);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cr, 2 * D, D, 1.0f, u, D, b->qkv_w + (long)D * D, D, 0.0f,
                    qkv + r0 * 3 * D + D, 3 * D);  // k, v (cr, 2D)
        for (int i = 0; i < cr; i++) bias_add(qkv + (r0 + i) * 3 * D + D, b->qkv_b + D, 1, 2 * D);
    }
    for (long c0 = 0; c0 < nq; c0 += tile) {
        int cr = (int)(c0 + tile < nq ? tile : nq - c0);
        attn_mlp_tile(m, b, qkv, R, qkv + c0 * 3 * D, x + c0 * D, cr, S, o, u, hid, NULL);
    }
}

int vit_forward(const vit_model *m, vit_ws *ws, const float *img, int H, int W, char *err) {
    const vit_config *c = &m->cfg;
    if (H < c->P || W < c->P || H % c->P || W % c->P)
        return cdam_fail(err, CDAM_EINVAL, "input size %dx%d is not a multiple of the patch size %d", H, W, c->P);
    if (H > ws->max_h || W > ws->max_w)
        return cdam_fail(err, CDAM_ELIMIT, "input size %dx%d is over the maximum %dx%d", H, W, ws->max_h, ws->max_w);
    ws->H = H;
    ws->W = W;
    ws->gh = H / c->P;
    ws->gw = W / c->P;
    ws->N = ws->gh * ws->gw + 1;
    if (ws->pos_gh != ws->gh || ws->pos_gw != ws->gw) {
        vit_pos_embed(m, ws->gh, ws->gw, ws->pos_buf);
        ws->pos_gh = ws->gh;
        ws->pos_gw = ws->gw;
    }
    ws->pos = ws->pos_buf;
    ws->m = m;
    ws->img = img;
    tpool_run(ws->pool, forward_team, ws);
    int D = c->D;
    if (c->head_in == 4 * D) memcpy(ws->latent, ws->cls_norm, sizeof(float) * 4 * (size_t)D);
    else memcpy(ws->latent, ws->cls_norm + 3 * D, sizeof(float) * (size_t)D);
    if (c->C) {
        memcpy(ws->logits, m->head_b, sizeof(float) * (size_t)c->C);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, c->C, c->head_in, 1.0f, m->head_w, c->head_in, ws->latent, 1, 1.0f,
                    ws->logits, 1);
    }
    return 0;
}

void vit_softmax(const float *logits, int C, float *probs) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < C; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < C; i++) s += exp(logits[i] - mx);
    for (int i = 0; i < C; i++) probs[i] = (float)(exp(logits[i] - mx) / s);
}

void vit_topk(const float *v, int C, int k, int *idx) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < C; i++) {
            int taken = 0;
            for (int q = 0; q < j && !taken; q++) taken = idx[q] == i;
            if (!taken && (best < 0 || v[i] > v[best])) best = i;
        }
        idx[j] = best;
    }
}
