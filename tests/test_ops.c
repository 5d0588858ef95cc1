/* test_ops.c - the fast kernels of core/ops.c against their plain reference loops and
 * libm. Tolerances: exp and GELU within 2e-6 relative of double-precision libm (the
 * approximations are good to ~1e-7; 2e-6 covers float rounding of the argument). GELU:
 * 5e-6 relative down to x = -5.5 (the float rounding of z^2 inside exp(-z^2) grows like
 * x^2 * eps there) and 1e-12 absolute below, where GELU itself is under 2e-7.
 * LayerNorm and softmax within 1e-5 of the double-accumulating references. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops.h"

static float frand(float lo, float hi) { return lo + (hi - lo) * (float)rand() / (float)RAND_MAX; }

/* Double-precision forwards of the same functions, for central finite differences
 * (h = 1e-4 in double: truncation ~1e-8, so the float backward kernels are held to
 * rtol 1e-4 against them). Each returns the loss sum_i c_i * out_i. */
static double loss_layernorm(const double *x, const float *w, const float *b, const float *c, int R, int D, double eps) {
    double L = 0;
    for (int r = 0; r < R; r++) {
        double m = 0, v = 0;
        for (int i = 0; i < D; i++) m += x[r * D + i];
        m /= D;
        for (int i = 0; i < D; i++) v += (x[r * D + i] - m) * (x[r * D + i] - m);
        double rs = 1 / sqrt(v / D + eps);
        for (int i = 0; i < D; i++) L += c[r * D + i] * ((x[r * D + i] - m) * rs * w[i] + b[i]);
    }
    return L;
}

static double loss_gelu(const double *x, const float *c, int n) {
    double L = 0;
    for (int i = 0; i < n; i++) L += c[i] * 0.5 * x[i] * erfc(-x[i] / sqrt(2.0));
    return L;
}

static double loss_softmax(const double *x, const float *c, int R, int N) {
    double L = 0;
    for (int r = 0; r < R; r++) {
        double mx = -INFINITY, s = 0;
        for (int i = 0; i < N; i++) mx = fmax(mx, x[r * N + i]);
        for (int i = 0; i < N; i++) s += exp(x[r * N + i] - mx);
        for (int i = 0; i < N; i++) L += c[r * N + i] * exp(x[r * N + i] - mx) / s;
    }
    return L;
}

enum { FD_LN, FD_GELU, FD_SOFTMAX };

// Central differences of one of the losses above with respect to every input.
static void finite_diff(int which, const float *x, int R, int D, const float *w, const float *b, const float *c, float *g) {
    int n = R * D;
    double *xd = malloc(sizeof(double) * n), h = 1e-4;
    for (int i = 0; i < n; i++) xd[i] = x[i];
    for (int i = 0; i < n; i++) {
        double lp, lm, keep = xd[i];
        xd[i] = keep + h;
        lp = which == FD_LN ? loss_layernorm(xd, w, b, c, R, D, 1e-6) : which == FD_GELU ? loss_gelu(xd, c, n) : loss_softmax(xd, c, R, D);
        xd[i] = keep - h;
        lm = which == FD_LN ? loss_layernorm(xd, w, b, c, R, D, 1e-6) : which == FD_GELU ? loss_gelu(xd, c, n) : loss_softmax(xd, c, R, D);
        xd[i] = keep;
        g[i] = (float)((lp - lm) / (2 * h));
    }
    free(xd);
}

int main(void) {
    srand(3);
    // exp over the whole useful range, including the underflow tail.
    {
        double worst = 0;
        int n = 200001, bad_tail = 0;
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
        for (int i = 0; i < n; i++) x[i] = -87.0f + 175.0f * i / (n - 1);
        vexp(y, x, n);
        for (int i = 0; i < n; i++) {
            double e = fabs(y[i] - exp((double)x[i])) / exp((double)x[i]);
            if (e > worst) worst = e;
        }
        float tail[4] = {-88.0f, -100.0f, -1e4f, -INFINITY}, ty[4];
        vexp(ty, tail, 4);
        for (int i = 0; i < 4; i++) bad_tail += ty[i] != 0.0f;
        printf("  exp on [-87, 88]: worst rel err %.2e\n", worst);
        CHECK(worst < 2e-6, "exp rel err %.3g", worst);
        CHECK(bad_tail == 0, "exp underflows to exactly 0 below -87");
        CHECK(exp_scalar(0.0f) == 1.0f, "exp(0) == 1");
        free(x);
        free(y);
    }
    // GELU (with bias) against 0.5 x erfc(-x / sqrt 2) in double.
    {
        int R = 3, F = 40001;
        float *h = malloc(sizeof(float) * R * F), *g = malloc(sizeof(float) * R * F), *b = malloc(sizeof(float) * F);
        for (int i = 0; i < F; i++) b[i] = 0.25f;
        for (int i = 0; i < R * F; i++) h[i] = -12.0f + 24.0f * (i % F) / (F - 1) - 0.25f;
        memcpy(g, h, sizeof(float) * R * F);
        bias_gelu_forward(h, b, R, F);
        double worst = 0, tail = 0;
        for (int i = 0; i < R * F; i++) {
            double x = (double)(g[i] + 0.25f), want = 0.5 * x * erfc(-x / sqrt(2.0));
            // Relative error in float grows like x^2 * eps in the far negative tail, where
            // GELU is below 1e-8: there the absolute error counts.
            if (x >= -5.5) {
                double e = fabs(h[i] - want) / fabs(want);
                if (e > worst) worst = e;
            } else if (fabs(h[i] - want) > tail) {
                tail = fabs(h[i] - want);
            }
        }
        printf("  GELU on [-5.5, 12]: worst rel err %.2e; below -5.5: worst abs err %.2e\n", worst, tail);
        CHECK(worst < 5e-6, "gelu rel err %.3g", worst);
        CHECK(tail < 1e-12, "gelu tail abs err %.3g", tail);
        bias_gelu_forward_ref(g, b, R, F);
        check_close("bias_gelu_forward vs ref", h, g, (long)R * F, 2e-6);
        free(h);
        free(g);
        free(b);
    }
    // LayerNorm with an offset mean (cancellation) and odd sizes.
    {
        int R = 37, D = 389;
        float *x = malloc(sizeof(float) * R * D), *y = malloc(sizeof(float) * R * D), *z = malloc(sizeof(float) * R * D);
        float *w = malloc(sizeof(float) * D), *b = malloc(sizeof(float) * D), mean[37], rstd[37];
        for (int i = 0; i < R * D; i++) x[i] = frand(-3, 3) + 20.0f * (i / D % 3);
        for (int i = 0; i < D; i++) w[i] = frand(0.5f, 1.5f), b[i] = frand(-0.2f, 0.2f);
        layernorm_forward(y, mean, rstd, x, w, b, R, D, 1e-6f);
        layernorm_forward_ref(z, x, w, b, R, D, 1e-6f);
        check_close("layernorm_forward vs ref", y, z, (long)R * D, 1e-5);
        CHECK(fabsf(mean[2] - 40.0f) < 0.5f && rstd[0] > 0.4f && rstd[0] < 0.7f, "mean/rstd recorded");
        layernorm_forward(x, NULL, NULL, x, w, b, R, D, 1e-6f);  // in place
        check_close("layernorm_forward in place", x, z, (long)R * D, 1e-5);
        free(x); free(y); free(z); free(w); free(b);
    }
    // Softmax with a row stride, peaked and flat rows.
    {
        int R = 9, N = 785, ld = 800;
        float *s = malloc(sizeof(float) * R * ld), *t = malloc(sizeof(float) * R * ld);
        for (int i = 0; i < R * ld; i++) s[i] = frand(-8, 8) * (float)(i / ld);
        memcpy(t, s, sizeof(float) * R * ld);
        softmax_forward(s, R, N, ld);
        softmax_forward_ref(t, R, N, ld);
        float *a = malloc(sizeof(float) * R * N), *bb = malloc(sizeof(float) * R * N);
        for (int r = 0; r < R; r++) memcpy(a + r * N, s + r * ld, sizeof(float) * N), memcpy(bb + r * N, t + r * ld, sizeof(float) * N);
        check_close("softmax_forward vs ref", a, bb, (long)R * N, 1e-5);
        double sum = 0;
        for (int i = 0; i < N; i++) sum += s[4 * ld + i];
        CHECK(fabs(sum - 1) < 1e-5, "softmax row sums to 1 (%.8f)", sum);
        CHECK(s[ld - 1] == t[ld - 1], "softmax leaves the stride padding alone");
        free(s); free(t); free(a); free(bb);
    }
    // Backward kernels against central finite differences.
    {
        int R = 5, D = 67;
        float *x = malloc(sizeof(float) * R * D), *c = malloc(sizeof(float) * R * D), *g = malloc(sizeof(float) * R * D);
        float *fd = malloc(sizeof(float) * R * D), *y = malloc(sizeof(float) * R * D), w[67], b[67], mean[5], rstd[5];
        for (int i = 0; i < R * D; i++) x[i] = frand(-2, 2) + (float)(i / D), c[i] = frand(-1, 1);
        for (int i = 0; i < D; i++) w[i] = frand(0.5f, 1.5f), b[i] = frand(-0.3f, 0.3f);
        layernorm_forward(y, mean, rstd, x, w, b, R, D, 1e-6f);
        for (int i = 0; i < R * D; i++) g[i] = 0.5f;  // accumulates onto what is there
        layernorm_backward(g, c, x, w, mean, rstd, R, D);
        for (int i = 0; i < R * D; i++) g[i] -= 0.5f;
        finite_diff(FD_LN, x, R, D, w, b, c, fd);
        check_close("layernorm_backward vs finite differences", g, fd, (long)R * D, 1e-4);

        for (int i = 0; i < R * D; i++) x[i] = frand(-5, 5);
        gelu_backward(g, x, c, (long)R * D);
        finite_diff(FD_GELU, x, R, D, NULL, NULL, c, fd);
        check_close("gelu_backward vs finite differences", g, fd, (long)R * D, 1e-4);

        for (int i = 0; i < R * D; i++) x[i] = frand(-4, 4);
        memcpy(y, x, sizeof(float) * R * D);
        softmax_forward(y, R, D, D);
        softmax_backward(g, y, c, R, D, D);
        finite_diff(FD_SOFTMAX, x, R, D, NULL, NULL, c, fd);
        check_close("softmax_backward vs finite differences", g, fd, (long)R * D, 1e-4);
        free(x); free(c); free(g); free(fd); free(y);
    }
    return check_summary("test_ops");
}
