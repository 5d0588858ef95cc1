/* ops.c - LayerNorm, GELU, softmax and helpers: fast kernels and reference loops.
 * Legend: R rows, D embedding size, F MLP width, N row length. */
#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

// clang before 15 emits target_clones functions without the plain symbol that other files
// call (link errors in `make fuzz`, the only clang build): one generic version there.
#if defined(__clang__) && __clang_major__ < 15
#define CLONES
#else
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif

/* exp(x) (Cephes expf): x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6
 * polynomial, 2^n by building the exponent bits. Arguments below -87 (where
 * float exp underflows) give exactly 0, as libm's does for a softmax tail. */
static inline float fexp(float x) {
    float xc = x > 88.3f ? 88.3f : x;
    xc = xc < -87.0f ? -87.0f : xc;
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;  // round to nearest
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, 4);
    float y = p * s;
    return x < -87.0f ? 0.0f : y;
}

/* erfc(z) for z >= 0: the Chebyshev fit of Numerical Recipes (erfcc, fractional error
 * < 1.2e-7 everywhere): t = 1 / (1 + z/2), erfc(z) = t exp(-z^2 + poly(t)). */
static inline float ferfc_pos(float z) {
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    return t * fexp(-z * z + p);
}

/* GELU(x) = x * Phi(x) = 0.5 x erfc(-x / sqrt 2), with erfc(-z) = 2 - erfc(z) for the
 * positive side. Using erfc keeps the relative accuracy in the negative tail, where
 * 1 + erf would cancel. */
static inline float fgelu(float x) {
    float z = fabsf(x) * 0.70710678118654752f;
    float e = ferfc_pos(z);  // erfc(|x| / sqrt 2)
    return x >= 0 ? x * (1.0f - 0.5f * e) : 0.5f * x * e;
}

float exp_scalar(float x) { return fexp(x); }
float gelu_scalar(float x) { return fgelu(x); }

CLONES void vexp(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = fexp(x[i]);
}

CLONES void layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                              const float *b, int R, int D, float eps) {
    for (int r = 0; r < R; r++) {
        const float *x = in + (long)r * D;
        float *y = out + (long)r * D;
        // Sums in double: residual streams carry large channel offsets, and a float
        // sum's error in the mean would shift every output by it.
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < D; i++) s += x[i];
        float m = (float)(s / D);
        double v = 0;
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < D; i++) v += (double)(x[i] - m) * (x[i] - m);
        float rs = (float)(1.0 / sqrt(v / D + eps));
        for (int i = 0; i < D; i++) y[i] = (x[i] - m) * rs * w[i] + b[i];
        if (mean) mean[r] = m;
        if (rstd) rstd[r] = rs;
    }
}

void layernorm_forward_ref(float *out, const float *in, const float *w, const float *b, int R, int D, float eps) {
    for (int r = 0; r < R; r++) {
        const float *x = in + (long)r * D;
        double s = 0, v = 0;
        for (int i = 0; i < D; i++) s += x[i];
        double m = s / D;
        for (int i = 0; i < D; i++) v += (x[i] - m) * (x[i] - m);
        double rs = 1.0 / sqrt(v / D + eps);
        for (int i = 0; i < D; i++) out[(long)r * D + i] = (float)((x[i] - m) * rs * w[i] + b[i]);
    }
}

CLONES void layernorm_backward(float *dinp, const float *dout, const float *inp, const float *w, const float *mean,
                               const float *rstd, int R, int D) {
    for (int r = 0; r < R; r++) {
        const float *x = inp + (long)r * D, *dy = dout + (long)r * D;
        float *dx = dinp + (long)r * D;
        float m = mean[r], rs = rstd[r];
        double sg = 0, sgx = 0;  // mean(g), mean(g * xhat)
#pragma omp simd reduction(+ : sg, sgx)
        for (int i = 0; i < D; i++) {
            float g = dy[i] * w[i];
            sg += g;
            sgx += (double)g * ((x[i] - m) * rs);
        }
        float mg = (float)(sg / D), mgx = (float)(sgx / D);
        for (int i = 0; i < D; i++) dx[i] += rs * (dy[i] * w[i] - mg - (x[i] - m) * rs * mgx);
    }
}

CLONES void bias_add(float *x, const float *b, int R, int D) {
    for (int r = 0; r < R; r++)
        for (int i = 0; i < D; i++) x[(long)r * D + i] += b[i];
}

CLONES void bias_gelu_forward(float *h, const float *b, int R, int F) {
    for (int r = 0; r < R; r++) {
        float *y = h + (long)r * F;
        for (int i = 0; i < F; i++) y[i] = fgelu(y[i] + b[i]);
    }
}

void bias_gelu_forward_ref(float *h, const float *b, int R, int F) {
    for (long i = 0; i < (long)R * F; i++) {
        double x = (double)h[i] + b[i % F];
        h[i] = (float)(0.5 * x * erfc(-x / sqrt(2.0)));
    }
}

/* GELU'(x) = Phi(x) + x phi(x), with Phi from the same erfc as the forward. */
static inline float fgelu_grad(float x) {
    float z = fabsf(x) * 0.70710678118654752f;
    float e = ferfc_pos(z);  // erfc(|x| / sqrt 2)
    float cdf = x >= 0 ? 1.0f - 0.5f * e : 0.5f * e;
    return cdf + x * 0.39894228040143268f * fexp(-0.5f * x * x);
}

CLONES void gelu_backward(float *dx, const float *x, const float *dy, long n) {
    for (long i = 0; i < n; i++) dx[i] = dy[i] * fgelu_grad(x[i]);
}

CLONES void softmax_backward(float *ds, const float *a, const float *da, int R, int N, int ld) {
    for (int r = 0; r < R; r++) {
        const float *ar = a + (long)r * ld, *dar = da + (long)r * ld;
        float *dsr = ds + (long)r * ld;
        float dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int i = 0; i < N; i++) dot += ar[i] * dar[i];
        for (int i = 0; i < N; i++) dsr[i] = ar[i] * (dar[i] - dot);
    }
}

CLONES void softmax_forward(float *s, int R, int N, int ld) {
    for (int r = 0; r < R; r++) {
        float *x = s + (long)r * ld;
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int i = 0; i < N; i++) m = x[i] > m ? x[i] : m;
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < N; i++) {
            x[i] = fexp(x[i] - m);
            sum += x[i];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < N; i++) x[i] *= inv;
    }
}

void softmax_forward_ref(float *s, int R, int N, int ld) {
    for (int r = 0; r < R; r++) {
        float *x = s + (long)r * ld;
        double m = -INFINITY, sum = 0;
        for (int i = 0; i < N; i++) m = x[i] > m ? x[i] : m;
        for (int i = 0; i < N; i++) sum += exp(x[i] - m);
        for (int i = 0; i < N; i++) x[i] = (float)(exp(x[i] - m) / sum);
    }
}
