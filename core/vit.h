/* vit.h - the DINO ViT forward pass on OpenBLAS, and its per-worker workspace.
 *
 * Usage:
 *     vit_ws *ws;
 *     vit_ws_create(m, 1024, 1024, 2, 0, &ws, err);   // largest input, threads, flags
 *     vit_forward(m, ws, x, 224, 224, err);            // x: (3, 224, 224) normalised
 *     ws->logits[c], ws->latent[d], ws->t[i * D + j] ...
 *     vit_ws_free(ws);
 *
 * Legend: P patch, D embedding, H heads, Dh = D/H, F MLP width, L blocks, gh x gw grid,
 * n = gh*gw patches, N = n + 1 tokens (CLS first, then patches row-major), C classes.
 *
 * Threads: a workspace owns a team of nthreads threads (the caller is one of them);
 * each runs whole blocks on its share of the rows, calling single-threaded sgemm, and
 * the team meets twice per block (after q,k,v; after the block). OpenBLAS's own
 * threading is therefore switched off by vit_ws_create (openblas_set_num_threads(1),
 * a process-wide setting). Several workspaces may run forward passes at the same time
 * on one model; a workspace is used by one caller at a time.
 *
 * Memory: everything is allocated (and touched) once by vit_ws_create for the largest
 * input; vit_forward allocates nothing. Recording every block's output (VIT_REC_BLOCKS)
 * costs (L + 1) * N * D floats more, every block's LN1 output (VIT_REC_LN1) L * N * D.
 *
 * Results, valid until the next vit_forward on the workspace: see the struct below.
 */
#ifndef CDAM_VIT_H
#define CDAM_VIT_H

#include "errors.h"
#include "model.h"
#include "pool.h"

enum {
    VIT_REC_BLOCKS = 1,  // keep the embedding and every block's output in ws->rec
    VIT_REC_LN1 = 2,     // keep every block's LN1 output in ws->rec_ln1
};

typedef struct vit_ws {
    // configuration (read-only)
    int max_h, max_w, max_N;     // the largest input the workspace was sized for
    int nthreads;
    unsigned flags;
    // results of the last vit_forward
    int H, W, gh, gw, N;         // input size, grid, tokens
    const float *pos;            // (N, D) position embedding used (resampled if needed)
    float *x;                    // (N, D) residual stream after the last block: every row
                                 //   with VIT_REC_BLOCKS, else only row 0 (CLS) is computed
                                 //   past the last block's q, k, v
    float *t;                    // (N, D) LN1 output of the LAST block: T^L
    float *qkv;                  // (N, 3D) q, k, v of the last block
    float *cls_attn;             // (H, N) last block's attention of the CLS query
    float *cls_in;               // (D) CLS row of the residual stream entering the last block
    float *cls_norm;             // (4, D) final-normed CLS rows of blocks L-4..L-1
                                 //   (fewer blocks: the rows that exist, last at [3])
    float *latent;               // (D) or (4D) the head's input: z (= cls_norm[3]) or
                                 //   the concatenated last-4 rows for a probe head
    float *logits;               // (C)
    float *rec;                  // (L + 1, N, D) with VIT_REC_BLOCKS: [0] embedding,
                                 //   [l + 1] after block l; NULL otherwise
    float *rec_ln1;              // (L, N, D) with VIT_REC_LN1: LN1 output of block l
    float *rec_mem;              // the (L + 1, N, D) buffer behind rec (vit_ws_record)
    // internals
    float *pos_buf;              // (max_N, D)
    int pos_gh, pos_gw;          // grid pos_buf holds, 0 if none
    float *patches;              // (max_n, 3*P*P) unfolded input
    float *scratch;              // per-thread: scores tile, o, u, hidden
    long scratch_per_thread;     // floats
    int chunk_rows;              // rows per attention/MLP tile
    tpool *pool;
    const vit_model *m;          // the model of the running pass
    const float *img;            // the input of the running pass
    char *errbuf;                // message for errors found inside the team
} vit_ws;

// Creates a workspace for inputs up to max_h x max_w (multiples of P). nthreads >= 1.
int vit_ws_create(const vit_model *m, int max_h, int max_w, int nthreads, unsigned flags, vit_ws **out, char *err);
void vit_ws_free(vit_ws *ws);

// Turns recording of every block's input (VIT_REC_BLOCKS) on or off for the next
// forwards of a workspace created with VIT_REC_BLOCKS (off saves the last block's full
// pass when neither RP nor TAM will read it). CDAM_EINVAL if the workspace has no buffer.
int vit_ws_record(vit_ws *ws, int on, char *err);

// The forward state the CLS-path methods read (CDAM, Smooth and Integrated CDAM, AM,
// the latent and the logits), as one flat blob, so a server can cache it per image and
// explain other targets without a forward pass. Not RP or TAM (they need every block).
// Bytes of the state for a gh x gw grid:
size_t vit_state_bytes(const vit_model *m, int gh, int gw);
// Copies the state of the last vit_forward into buf (vit_state_bytes(m, ws->gh, ws->gw)).
void vit_state_save(const vit_model *m, const vit_ws *ws, void *buf);
// Makes buf (from vit_state_save on the same model) the workspace's forward state. The
// block records are dropped (rec = NULL): after a load, RP and TAM need a new forward
// (call vit_ws_record(ws, 1, err) first). CDAM_EINVAL if buf is not a state of this
// model or does not fit the workspace.
int vit_state_load(const vit_model *m, vit_ws *ws, const void *buf, size_t len, char *err);

// Runs the forward pass on x (3, H, W), H and W multiples of P within the workspace's
// size. Fills the results above. CDAM_EINVAL for a size it cannot take.
int vit_forward(const vit_model *m, vit_ws *ws, const float *x, int H, int W, char *err);

// Position embedding for a gh x gw grid, resampled from the model's g0 x g0 exactly
// as DINO does (bicubic a = -0.75, scale factors (g + 0.1) / g0, align_corners false,
// edges clamped); copied unchanged when the grid is g0 x g0. out: (1 + gh*gw, D).
void vit_pos_embed(const vit_model *m, int gh, int gw, float *out);

// Single-threaded building blocks for passes over other token sequences than the
// forward's (TAM's ablated sequences). They use only the caller's thread and sgemm on it
// (single-threaded once a workspace exists), allocate nothing, and are safe to run
// concurrently on different buffers.
//
// Embedding of img (3, H, W): x = [cls; unfolded patches . Wpe^T + bpe] + pos, the rows
// vit_forward starts from. pos: (N, D) from vit_pos_embed for this grid; x: (N, D);
// patches: (n, 3*P*P) scratch.
void vit_embed(const vit_model *m, const float *img, int H, int W, const float *pos, float *x, float *patches);
// Floats of scratch vit_block_seq needs for a sequence of R rows (or any fewer).
long vit_seq_scratch(const vit_model *m, int R);
// Block l on the R token rows x (R, D), in place, as vit_forward computes it. Every row
// enters k and v, but only the first nq rows (1 <= nq <= R) go on through attention,
// proj and MLP: rows [nq, R) of x are left unchanged (nq = 1 suffices for the last
// block, where only the CLS row reaches the head). qkv: (R, 3D) scratch (q is computed
// for rows [0, nq) only); have_qkv: qkv already holds LN1 and q, k, v of these rows
// (they are row-wise: e.g. copied from a sequence the rows were taken from), so the
// block starts at the attention. scr: vit_seq_scratch(m, R) floats.
void vit_block_seq(const vit_model *m, int l, float *x, int R, int nq, float *qkv, int have_qkv, float *scr);

// softmax of the logits for display; probs: (C).
void vit_softmax(const float *logits, int C, float *probs);
// Indices of the k largest values, largest first (ties: lower index first). k <= C.
void vit_topk(const float *v, int C, int k, int *idx);

#endif
