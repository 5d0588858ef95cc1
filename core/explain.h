/* explain.h - explanation methods on a DINO ViT (../shared/spec/method.md, sections 3-9):
 * CDAM for classes and concepts, Smooth and Integrated CDAM, attention maps (AM),
 * relevance propagation (RP), token ablation maps (TAM), and the paper's statistics.
 *
 * Usage:
 *     vit_ws *vws;      vit_ws_create(m, 480, 480, 2, VIT_REC_BLOCKS, &vws, err);
 *     explain_ws *ews;  explain_ws_create(m, vws, &ews, err);
 *     vit_forward(m, vws, x, H, W, err);                     // the image, once
 *     explain_target t[2] = {{.cls = 386}, {.cls = 340}};
 *     float *s = malloc(sizeof(float) * 2 * n);              // n = gh * gw patches
 *     explain_cdam(m, vws, ews, t, 2, s, err);               // (2, gh, gw) row-major
 *     explain_opts o; explain_opts_default(&o);
 *     explain_rp(m, vws, ews, &t[0], &o, s, err);            // needs VIT_REC_BLOCKS
 *
 * Every map is (gh, gw) row-major over the patch tokens (CLS dropped), raw and signed
 * as the spec defines it (no ReLU, no normalisation). Every method reads the forward
 * pass held in vws (run vit_forward on the image first); TAM also re-runs the network
 * on ablated token sequences, RP back-propagates through every block.
 *
 * Legend: P patch, D embedding, H heads, Dh = D/H, F MLP width, L blocks, n = gh*gw
 * patches, N = n + 1 tokens, C classes, nt targets.
 *
 * Ownership: an explain_ws holds all scratch memory of the methods for inputs up to
 * the vit_ws's maximum size; the methods allocate nothing (TAM and RP use buffers
 * planned at explain_ws_create). Thread-safety: one explain_ws per worker, used with
 * that worker's vit_ws; the model is shared read-only.
 */
#ifndef CDAM_EXPLAIN_H
#define CDAM_EXPLAIN_H

#include <stddef.h>
#include <stdint.h>

#include "vit.h"

typedef enum {
    EXPLAIN_CDAM,
    EXPLAIN_SMOOTH_CDAM,
    EXPLAIN_INTEGRATED_CDAM,
    EXPLAIN_AM,
    EXPLAIN_RP,
    EXPLAIN_TAM,
    EXPLAIN_NMETHODS
} explain_method;

// "cdam", "smooth_cdam", "integrated_cdam", "am", "rp", "tam" (the API's names);
// explain_method_parse also takes "smooth-cdam" / "integrated-cdam". -1 if unknown.
const char *explain_method_name(explain_method m);
int explain_method_parse(const char *s);

// What f is: the logit of class cls, or z . concept with z the final-normed CLS row of
// the last block (D) and concept a vector of D floats (section 4).
typedef struct {
    int is_concept;
    int cls;
    const float *concept;  // (D), used when is_concept
} explain_target;

typedef struct {
    int samples;           // Smooth: k samples; Integrated: steps. Default 16.
    float sigma;           // Smooth: noise std as a fraction of max(T) - min(T). Default 0.1.
    uint64_t seed;         // Smooth: noise seed; same seed, same map. Default 0.
    int head;              // AM: head index, or -1 for the mean over heads (default).
    float threshold;       // AM: DINO's mass threshold t in (0, 1]; 0 = off (default).
    size_t rp_budget;      // RP: bytes the planned buffers may take (default 1 GiB).
    int tam_batch;         // TAM: ablated sequences per batch; 0 = automatic.
    // TAM: called between batches with the fraction done; a non-zero return cancels
    // (the method then returns CDAM_ECANCELLED). May be NULL.
    int (*progress)(void *ctx, double fraction);
    void *progress_ctx;
} explain_opts;

void explain_opts_default(explain_opts *o);

typedef struct explain_ws explain_ws;

// Scratch for every method for inputs up to vws's maximum size, for vws's thread count.
int explain_ws_create(const vit_model *m, const vit_ws *vws, const explain_opts *o, explain_ws **out, char *err);
void explain_ws_free(explain_ws *ews);

// CDAM (sections 3, 4) for nt targets on the forward pass in vws: scores (nt, n).
// One backward pass through the last block's CLS path per target, no GEMM per target.
int explain_cdam(const vit_model *m, const vit_ws *vws, explain_ws *ews, const explain_target *t, int nt,
                 float *scores, char *err);

// Smooth CDAM and Integrated CDAM (section 5): only the last block is re-run per
// sample. scores (nt, n).
int explain_smooth_cdam(const vit_model *m, const vit_ws *vws, explain_ws *ews, const explain_target *t, int nt,
                        const explain_opts *o, float *scores, char *err);
int explain_integrated_cdam(const vit_model *m, const vit_ws *vws, explain_ws *ews, const explain_target *t,
                            int nt, const explain_opts *o, float *scores, char *err);

// The core of both: with T^L replaced by `at` (N, D), the last block re-run on it (its
// CLS residual input taken from vws), S_i = sum_j (at_ij / alpha) * df/dT_ij evaluated
// at `at`, for nt targets. Smooth CDAM: at = T^L + noise, alpha = 1; Integrated CDAM:
// at = alpha * T^L (so the multiplier is T^L itself). scores (nt, n).
int explain_cdam_at(const vit_model *m, const vit_ws *vws, explain_ws *ews, const float *at, float alpha,
                    const explain_target *t, int nt, float *scores, char *err);

// Attention map (section 6): the last block's CLS attention to the patches, mean over
// heads or o->head, optionally DINO's mass threshold. scores (n).
int explain_am(const vit_model *m, const vit_ws *vws, const explain_opts *o, float *scores, char *err);

// Relevance propagation (section 7): needs vws created with VIT_REC_BLOCKS. scores (n).
// CDAM_ELIMIT (with the bytes needed) when the input needs more than o->rp_budget.
int explain_rp(const vit_model *m, vit_ws *vws, explain_ws *ews, const explain_target *t, const explain_opts *o,
               float *scores, char *err);

// Token ablation map (section 8) for nt targets: n ablated forward passes of the input
// held in vws, shared by all targets. img: the (3, H, W) input of the last vit_forward;
// ignored (may be NULL) when vws records blocks (VIT_REC_BLOCKS), whose rec[0] is used.
// scores (nt, n). o->progress is called between batches on the caller's thread, then
// once with 1.0; a non-zero return cancels (CDAM_ECANCELLED).
int explain_tam(const vit_model *m, vit_ws *vws, explain_ws *ews, const float *img, const explain_target *t, int nt,
                const explain_opts *o, float *scores, char *err);

// Concept vector (section 4): the mean of k latents z (each D floats). out: (D).
void explain_concept_mean(const float *const *latents, int k, int D, float *out);

// The latent z of the forward pass in vws: the last block's final-normed CLS row (D),
// what a concept vector averages (also for a probe head, whose input is 4D).
const float *explain_latent(const vit_model *m, const vit_ws *vws);

// A concept vector from k example inputs (each (3, H, W), normalised, H x W within the
// workspace): runs the forward pass on each and averages their latents into out (D).
// Overwrites the forward state in vws.
int explain_concept_from_inputs(const vit_model *m, vit_ws *vws, const float *const *inputs, int k, int H, int W,
                                float *out, char *err);

// Statistics (section 9). Pearson correlation of a and b over n values (NaN if either
// is constant); sparsity: the fraction of |s_i| < 0.05 * max_i s_i (signed max).
double explain_pearson(const float *a, const float *b, long n);
double explain_sparsity(const float *s, long n);

#endif
