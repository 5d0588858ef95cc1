/* explain_internal.h - what the explanation modules share inside core/ (not public).
 * explain.c owns explain_ws and the CDAM family, AM and statistics; explain_rp.c and
 * explain_tam.c own their scratch (rp_ws, tam_ws), created by explain_ws_create. */
#ifndef CDAM_EXPLAIN_INTERNAL_H
#define CDAM_EXPLAIN_INTERNAL_H

#include "explain.h"

typedef struct rp_ws rp_ws;
typedef struct tam_ws tam_ws;

// RP scratch for inputs up to vws's maximum size (within o->rp_budget where it can
// plan that at creation; requests over the budget are refused by explain_rp).
int rp_ws_create(const vit_model *m, const vit_ws *vws, const explain_opts *o, rp_ws **out, char *err);
void rp_ws_free(rp_ws *w);
// TAM scratch for inputs up to vws's maximum size, for vws's thread count.
int tam_ws_create(const vit_model *m, const vit_ws *vws, const explain_opts *o, tam_ws **out, char *err);
void tam_ws_free(tam_ws *w);

// Test hooks of explain_rp.c: capture df/dA of one block (layer >= 0) into dA (H, N, N)
// and df/d(embedding) into gx (N, D) on the next explain_rp (NULL: off); force smaller
// row tiles to exercise the tiling on small inputs.
void rp_debug_capture(rp_ws *w, int layer, float *dA, float *gx);
void rp_debug_tile(rp_ws *w, int rows);

struct explain_ws {
    int max_N, D, F, H, nthreads;
    float *kv;          // (max_N, 2D) k, v of the last block re-run on a perturbed T
    float *at;          // (max_N, D) a perturbed / scaled T^L
    float *vec;         // small per-call vectors (see explain.c)
    float *scores;      // (nt_max, n) accumulation for smooth / integrated
    int nt_max;
    rp_ws *rp;
    tam_ws *tam;
};

#endif
