/* ops.h - the element-wise and row-wise operators of the ViT, with plain reference
 * loops (libm, double accumulation where it matters) beside the fast kernels.
 *
 * Legend: R rows (tokens), D embedding size, F MLP width, N columns of a score row.
 * The fast kernels are written as simple loops that GCC vectorises; they are compiled
 * for AVX-512, AVX2+FMA and baseline x86-64 and picked at run time (target_clones,
 * resolved by the dynamic loader through CPUID), so one binary runs on any x86-64.
 * exp and erfc are polynomial/rational approximations accurate to a few float ulps
 * (relative error < 5e-7), checked against libm by tests/test_ops.c.
 * Reductions use `#pragma omp simd` (-fopenmp-simd, no OpenMP runtime), so sums
 * are reassociated: results differ from a serial loop by float rounding only.
 * All functions are pure: no globals, no allocation; safe from any thread.
 */
#ifndef CDAM_OPS_H
#define CDAM_OPS_H

// LayerNorm over the last dimension with biased variance:
// out[r] = (in[r] - mean) / sqrt(var + eps) * w + b.  in, out: (R, D); w, b: (D).
// mean, rstd: (R) if non-NULL (kept for the backward pass). out may alias in.
void layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                       const float *b, int R, int D, float eps);
void layernorm_forward_ref(float *out, const float *in, const float *w, const float *b, int R, int D, float eps);

// Activation gradient of layernorm_forward (no parameter gradients), ACCUMULATED:
// dinp[r] += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout[r] * w,
// xhat = (inp[r] - mean[r]) * rstd[r]. All (R, D) but w (D), mean/rstd (R).
void layernorm_backward(float *dinp, const float *dout, const float *inp, const float *w, const float *mean,
                        const float *rstd, int R, int D);

// x[r] += b for each row. x: (R, D).
void bias_add(float *x, const float *b, int R, int D);

// h = GELU(h + b), exact erf form 0.5 * x * (1 + erf(x / sqrt 2)). h: (R, F).
void bias_gelu_forward(float *h, const float *b, int R, int F);
void bias_gelu_forward_ref(float *h, const float *b, int R, int F);
float gelu_scalar(float x);  // the fast kernel's formula for one value

// GELU derivative: dx[i] = dy[i] * (Phi(x) + x phi(x)) at the GELU input x (n values).
// dx may alias dy.
void gelu_backward(float *dx, const float *x, const float *dy, long n);

// Row softmax in place: s[r] = exp(s[r] - max s[r]) / sum. s: (R, N) with row stride ld.
void softmax_forward(float *s, int R, int N, int ld);
void softmax_forward_ref(float *s, int R, int N, int ld);

// Softmax backward for rows of probabilities a: ds = a * (da - sum_k da_k a_k).
// a, da, ds: (R, N) with row stride ld; ds may alias da.
void softmax_backward(float *ds, const float *a, const float *da, int R, int N, int ld);

// y[i] = exp(x[i]) for n values (the vectorised approximation; y may alias x).
void vexp(float *y, const float *x, int n);
float exp_scalar(float x);

#endif
