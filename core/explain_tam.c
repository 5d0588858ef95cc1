/* explain_tam.c - token ablation maps (method.md section 8).
 *
 * Legend: P patch, D embedding, H heads, F MLP width, L blocks, n = gh*gw patches,
 * N = n + 1 tokens, M = N - 1 rows of an ablated sequence, nt targets.
 *
 * TAM_i = f(full) - f(sequence without patch token i): position embeddings are added
 * first (the embedding rows vit_forward starts from), then row 1 + i is deleted, so
 * every other token keeps its own position; the M rows run through every block, the
 * final norm and the head. All nt targets share the n ablated passes. f(full) is read
 * from the forward held in vws (its latent), so a map needs exactly n passes.
 *
 * The embedding: vws->rec[0] when the workspace records blocks (VIT_REC_BLOCKS; img is
 * then ignored and may be NULL); otherwise it is rebuilt from img, which must be the
 * (3, H, W) input of the last vit_forward on vws (vit_embed with vws->pos).
 *
 * Threads: the passes run in batches of o->tam_batch (automatic: nthreads times enough
 * passes for about TAM_BATCH_FLOPS of work each, at least one: nthreads passes for
 * ViT-S/8 at 224); within a batch every thread of vws's team runs whole ablated
 * sequences on its own (vit_block_seq: single-threaded sgemm on M = N - 1 rows, already
 * a large GEMM; no barriers), taking the next token from a shared counter. Block 0's
 * LN1 and q, k, v are row-wise, so they are computed once for the full sequence and an
 * ablated sequence copies its rows; in the last block only the CLS row goes on past k
 * and v. A sequence runs the same code whatever the thread count, so for a given
 * embedding the map is bit-identical for any number of threads.
 *
 * Progress and cancellation: between batches, on the caller's thread, o->progress gets
 * the fraction of passes done (ceil(n / batch) - 1 calls), then 1.0 once at the end. A
 * non-zero return stops before the next batch: explain_tam returns CDAM_ECANCELLED
 * (scores then undefined; the workspaces stay usable).
 *
 * Memory: per thread, the sequence x (M, D), its q, k, v (M, 3D), the block scratch
 * (vit_seq_scratch) and 4 final-normed CLS rows; shared, block 0's q, k, v (N, 3D), and
 * (N, D) + (n, 3PP) more when the embedding has to be rebuilt. Planned by tam_ws_create
 * for vws's largest input, but for no more tokens than fit TAM_THREAD_BYTES per thread
 * (ViT-S/8 at 1024x1024 takes about 120 MB per thread; inputs over the limit are refused
 * with CDAM_ELIMIT). explain_tam allocates nothing.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "explain_internal.h"
#include "ops.h"

#define TAM_THREAD_BYTES (512L << 20)  // per-thread scratch limit
#define TAM_BATCH_FLOPS 2e9            // automatic batch: about this much work per thread

struct tam_ws {
    int max_N;                // the largest N the scratch is planned for
    int nthreads;
    long per_thread;          // floats of one thread's scratch
    float *scratch;           // (nthreads, per_thread)
    float *qkv0;              // (max_N, 3D) block 0's q, k, v of the full sequence
    float *emb;               // (max_N, D) rebuilt embedding, NULL with VIT_REC_BLOCKS
    float *patches;           // (max_N - 1, 3PP) for vit_embed, idem
    // the running call
    const vit_model *m;
    const float *x0;          // (N, D) the embedding
    const float *full_latent; // (head_in) and z (D) of the full sequence
    const float *full_z;
    const explain_target *t;
    const explain_opts *o;
    int N, nt;
    long batch;
    float *scores;            // (nt, n)
    atomic_long next;         // the next token of the batch to ablate
    long end;                 // the batch's end
};

static long align16(long n) { return (n + 15) & ~15L; }

// Floats of one thread's scratch for sequences of N - 1 rows.
static long thread_floats(const vit_model *m, long N) {
    long D = m->cfg.D, M = N - 1;
    return align16(M * D) + align16(M * 3 * D) + align16(4 * D) + align16(vit_seq_scratch(m, (int)M));
}

int tam_ws_create(const vit_model *m, const vit_ws *vws, const explain_opts *o, tam_ws **out, char *err) {
    (void)o;
    const vit_config *c = &m->cfg;
    *out = NULL;
    tam_ws *w = calloc(1, sizeof *w);
    if (!w) return cdam_fail(err, CDAM_ENOMEM, "out of memory");
    long N = vws->max_N;
    if (thread_floats(m, N) * (long)sizeof(float) > TAM_THREAD_BYTES) {  // the largest N within the limit
        long lo = 2, hi = N;
        while (hi - lo > 1) {
            long mid = (lo + hi) / 2;
            if (thread_floats(m, mid) * (long)sizeof(float) <= TAM_THREAD_BYTES) lo = mid;
            else hi = mid;
        }
        N = lo;
    }
    w->max_N = (int)N;
    w->nthreads = vws->nthreads;
    w->per_thread = thread_floats(m, N);
    size_t bytes = sizeof(float) * (size_t)w->per_thread * (size_t)w->nthreads;
    w->scratch = aligned_alloc(64, bytes);
    if (w->scratch) memset(w->scratch, 0, bytes);  // touch once, not in the passes
    w->qkv0 = calloc((size_t)N * 3 * c->D, sizeof(float));
    if (!(vws->flags & VIT_REC_BLOCKS)) {
        w->emb = calloc((size_t)N * c->D, sizeof(float));
        w->patches = calloc((size_t)(N - 1) * 3 * c->P * c->P, sizeof(float));
    }
    if (!w->scratch || !w->qkv0 || (!(vws->flags & VIT_REC_BLOCKS) && (!w->emb || !w->patches))) {
        tam_ws_free(w);
        return cdam_fail(err, CDAM_ENOMEM, "out of memory for TAM scratch (%zu bytes)", bytes);
    }
    atomic_init(&w->next, 0);
    *out = w;
    return 0;
}

void tam_ws_free(tam_ws *w) {
    if (!w) return;
    free(w->scratch);
    free(w->qkv0);
    free(w->emb);
    free(w->patches);
    free(w);
}

// f of target t given the head's input latent (head_in) and z (D), in double.
static double target_f(const vit_model *m, const explain_target *t, const float *latent, const float *z) {
    const vit_config *c = &m->cfg;
    double f = 0;
    if (t->is_concept) {
        for (int d = 0; d < c->D; d++) f += (double)z[d] * t->concept[d];
        return f;
    }
    const float *w = m->head_w + (long)t->cls * c->head_in;
    for (int j = 0; j < c->head_in; j++) f += (double)w[j] * latent[j];
    return f + m->head_b[t->cls];
}

// One ablated pass: the embedding without token 1 + i through the network; writes
// scores[k * n + i] for every target k.
static void ablated_pass(tam_ws *w, long i, float *scr) {
    const vit_model *m = w->m;
    const vit_config *c = &m->cfg;
    long D = c->D, N = w->N, M = N - 1, n = N - 1;
    float *x = scr;                                  // (M, D)
    float *qkv = x + align16(M * D);                 // (M, 3D)
    float *cls_norm = qkv + align16(M * 3 * D);      // (4, D) final-normed CLS of blocks L-4..L-1
    float *blk = cls_norm + align16(4 * D);          // vit_seq_scratch(M)
    // the rows but 1 + i of the embedding, and of block 0's q, k, v (row-wise until the attention)
    memcpy(x, w->x0, sizeof(float) * (size_t)((1 + i) * D));
    memcpy(x + (1 + i) * D, w->x0 + (2 + i) * D, sizeof(float) * (size_t)((N - 2 - i) * D));
    memcpy(qkv, w->qkv0, sizeof(float) * (size_t)((1 + i) * 3 * D));
    memcpy(qkv + (1 + i) * 3 * D, w->qkv0 + (2 + i) * 3 * D, sizeof(float) * (size_t)((N - 2 - i) * 3 * D));
    memset(cls_norm, 0, sizeof(float) * 4 * (size_t)D);  // slots of blocks that do not exist stay 0
    for (int l = 0; l < c->L; l++) {
        vit_block_seq(m, l, x, (int)M, l == c->L - 1 ? 1 : (int)M, qkv, l == 0, blk);
        int slot = l - (c->L - 4);
        if (slot >= 0) layernorm_forward(cls_norm + slot * D, NULL, NULL, x, m->norm_w, m->norm_b, 1, (int)D, c->ln_eps);
    }
    const float *latent = c->head_in == 4 * D ? cls_norm : cls_norm + 3 * D, *z = cls_norm + 3 * D;
    for (int k = 0; k < w->nt; k++)
        w->scores[k * n + i] = (float)(target_f(m, &w->t[k], w->full_latent, w->full_z) - target_f(m, &w->t[k], latent, z));
}

// One batch: every thread takes the next token of [next, end) until none is left.
static void tam_team(void *arg, int tid, int nthreads) {
    (void)nthreads;
    tam_ws *w = arg;
    float *scr = w->scratch + tid * w->per_thread;
    for (long i; (i = atomic_fetch_add(&w->next, 1)) < w->end;) ablated_pass(w, i, scr);
}

int explain_tam(const vit_model *m, vit_ws *vws, explain_ws *ews, const float *img, const explain_target *t, int nt,
                const explain_opts *o, float *scores, char *err) {
    const vit_config *c = &m->cfg;
    tam_ws *w = ews ? ews->tam : NULL;
    if (!w || !vws || !t || !o || !scores) return cdam_fail(err, CDAM_EINVAL, "TAM: missing workspace, targets, options or output");
    if (vws->m != m || vws->N < 2) return cdam_fail(err, CDAM_EINVAL, "TAM: run vit_forward on the image with this model first");
    if (nt < 1) return cdam_fail(err, CDAM_EINVAL, "TAM: no targets");
    for (int k = 0; k < nt; k++) {
        if (t[k].is_concept && !t[k].concept) return cdam_fail(err, CDAM_EINVAL, "TAM: target %d is a concept without a vector", k);
        if (!t[k].is_concept && (t[k].cls < 0 || t[k].cls >= c->C))
            return cdam_fail(err, CDAM_EINVAL, "TAM: class %d out of range (the model has %d classes)", t[k].cls, c->C);
    }
    if (o->tam_batch < 0) return cdam_fail(err, CDAM_EINVAL, "TAM: batch %d is negative", o->tam_batch);
    if (vws->nthreads > w->nthreads)
        return cdam_fail(err, CDAM_EINVAL, "TAM: the explain workspace was planned for %d threads, the vit workspace has %d",
                         w->nthreads, vws->nthreads);
    int N = vws->N;
    if (N > w->max_N)
        return cdam_fail(err, CDAM_ELIMIT,
                         "TAM: a %dx%d input (%d tokens) needs %ld MiB of scratch per thread, over the limit of %ld MiB "
                         "(at most %d tokens)",
                         vws->H, vws->W, N, thread_floats(m, N) * (long)sizeof(float) >> 20, TAM_THREAD_BYTES >> 20, w->max_N);
    if (vws->rec) {
        w->x0 = vws->rec;
    } else {
        if (!img) return cdam_fail(err, CDAM_EINVAL, "TAM: the workspace does not record blocks: pass the forward's input image");
        if (!w->emb)
            return cdam_fail(err, CDAM_EINVAL, "TAM: the explain workspace was planned for a vit workspace that records blocks");
        vit_embed(m, img, vws->H, vws->W, vws->pos, w->emb, w->patches);
        w->x0 = w->emb;
    }
    long n = N - 1, D = c->D;
    const vit_block *b0 = &m->blocks[0];
    for (long r0 = 0; r0 < N; r0 += n) {  // block 0's LN1 and q, k, v of the full sequence, n rows at a time
        int cr = (int)(r0 + n < N ? n : N - r0);
        float *t0 = w->scratch;           // thread 0's x: (n, D)
        layernorm_forward(t0, NULL, NULL, w->x0 + r0 * D, b0->ln1_w, b0->ln1_b, cr, (int)D, c->ln_eps);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cr, 3 * (int)D, (int)D, 1.0f, t0, (int)D, b0->qkv_w, (int)D, 0.0f,
                    w->qkv0 + r0 * 3 * D, 3 * (int)D);
        bias_add(w->qkv0 + r0 * 3 * D, b0->qkv_b, cr, 3 * (int)D);
    }
    if (o->tam_batch > 0) {
        w->batch = o->tam_batch;
    } else {  // the FLOPs of one pass (multiply-add = 2): linear layers and attention, L blocks
        double flops = 2.0 * c->L * ((N - 1.0) * (4 * D * D + 2 * D * c->F) + 2.0 * (N - 1.0) * (N - 1.0) * D);
        long per = (long)ceil(TAM_BATCH_FLOPS / flops);
        w->batch = (long)vws->nthreads * (per < 1 ? 1 : per);
    }
    w->m = m;
    w->N = N;
    w->nt = nt;
    w->t = t;
    w->o = o;
    w->scores = scores;
    w->full_latent = vws->latent;
    w->full_z = vws->cls_norm + 3 * c->D;
    for (long b0 = 0; b0 < n; b0 += w->batch) {
        w->end = b0 + w->batch < n ? b0 + w->batch : n;
        atomic_store(&w->next, b0);
        tpool_run(vws->pool, tam_team, w);
        if (w->end < n && o->progress && o->progress(o->progress_ctx, (double)w->end / n))
            return cdam_fail(err, CDAM_ECANCELLED, "TAM cancelled by the progress callback after %ld of %ld ablated passes",
                             w->end, n);
    }
    if (o->progress) o->progress(o->progress_ctx, 1.0);
    return 0;
}
