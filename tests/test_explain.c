/* test_explain.c - CDAM (class, concept), Smooth and Integrated CDAM, AM and the
 * statistics against the PyTorch autograd goldens of tests/ref/make_explain_goldens.py,
 * the closed-form backward against central finite differences, and the zero-attention
 * property. Tolerance: check_close rtol 1e-4 (float32 engine vs float64 reference). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "golden.h"
#include "explain.h"
#include "safetensors.h"

#define RTOL 1e-4

/* f(T) for a class, in double, by plain loops over the last block's CLS path: the
 * independent forward that the finite differences below differentiate. */
static double f_of_T(const vit_model *m, const vit_ws *ws, const double *T, int cls) {
    const vit_config *c = &m->cfg;
    const vit_block *b = &m->blocks[c->L - 1];
    int N = ws->N, D = c->D, H = c->H, Dh = c->Dh, F = c->F;
    double *k = malloc(sizeof(double) * N * D), *v = malloc(sizeof(double) * N * D), q[512], o[512], x1[512], u[512],
           x2[512], *hid = malloc(sizeof(double) * F), *a = malloc(sizeof(double) * N);
    for (int j = 0; j < N; j++)
        for (int e = 0; e < D; e++) {
            double sk = b->qkv_b[D + e], sv = b->qkv_b[2 * D + e];
            for (int d = 0; d < D; d++) sk += T[j * D + d] * b->qkv_w[(long)(D + e) * D + d], sv += T[j * D + d] * b->qkv_w[(long)(2 * D + e) * D + d];
            k[j * D + e] = sk, v[j * D + e] = sv;
        }
    for (int e = 0; e < D; e++) {
        double s = b->qkv_b[e];
        for (int d = 0; d < D; d++) s += T[d] * b->qkv_w[(long)e * D + d];
        q[e] = s;
    }
    for (int h = 0; h < H; h++) {
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int d = 0; d < Dh; d++) s += q[h * Dh + d] * k[j * D + h * Dh + d];
            a[j] = s / sqrt((double)Dh);
            mx = fmax(mx, a[j]);
        }
        for (int j = 0; j < N; j++) sum += (a[j] = exp(a[j] - mx));
        for (int d = 0; d < Dh; d++) {
            double s = 0;
            for (int j = 0; j < N; j++) s += a[j] / sum * v[j * D + h * Dh + d];
            o[h * Dh + d] = s;
        }
    }
    for (int e = 0; e < D; e++) {
        double s = ws->cls_in[e] + b->proj_b[e];
        for (int d = 0; d < D; d++) s += o[d] * b->proj_w[(long)e * D + d];
        x1[e] = s;
    }
    double mu = 0, var = 0;
    for (int d = 0; d < D; d++) mu += x1[d] / D;
    for (int d = 0; d < D; d++) var += (x1[d] - mu) * (x1[d] - mu) / D;
    for (int d = 0; d < D; d++) u[d] = (x1[d] - mu) / sqrt(var + c->ln_eps) * b->ln2_w[d] + b->ln2_b[d];
    for (int i = 0; i < F; i++) {
        double s = b->fc1_b[i];
        for (int d = 0; d < D; d++) s += u[d] * b->fc1_w[(long)i * D + d];
        hid[i] = 0.5 * s * erfc(-s / sqrt(2.0));
    }
    for (int e = 0; e < D; e++) {
        double s = x1[e] + b->fc2_b[e];
        for (int i = 0; i < F; i++) s += hid[i] * b->fc2_w[(long)e * F + i];
        x2[e] = s;
    }
    mu = var = 0;
    for (int d = 0; d < D; d++) mu += x2[d] / D;
    for (int d = 0; d < D; d++) var += (x2[d] - mu) * (x2[d] - mu) / D;
    const float *hw = m->head_w + (long)cls * c->head_in + (c->head_in - D);  // last-block part
    double f = 0;
    for (int d = 0; d < D; d++) f += hw[d] * ((x2[d] - mu) / sqrt(var + c->ln_eps) * m->norm_w[d] + m->norm_b[d]);
    free(k); free(v); free(hid); free(a);
    return f;
}

static void run_case(const char *model_path, const char *golden_path) {
    char err[CDAM_ERR_MAX], label[64];
    snprintf(label, sizeof label, "%s", strrchr(golden_path, '/') + 1);
    *strstr(label, ".safetensors") = 0;
    vit_model *m = NULL;
    st_file g;
    if (vit_model_load(&model_path, 1, NULL, &m, err) < 0 || st_open(golden_path, &g, err) < 0) {
        CHECK(0, "%s: %s", label, err);
        vit_model_free(m);
        return;
    }
    const vit_config *c = &m->cfg;
    const st_tensor *in = st_find(&g, "input");
    int H = (int)in->shape[1], W = (int)in->shape[2];
    vit_ws *ws;
    explain_ws *ew;
    CHECK(vit_ws_create(m, 64, 64, 2, 0, &ws, err) == 0, "%s", err);
    CHECK(explain_ws_create(m, ws, NULL, &ew, err) == 0, "%s", err);
    float *cls = golden(&g, "classes", NULL), *x;
    explain_target t[3];
    for (int i = 0; i < 3; i++) t[i] = (explain_target){0, (int)cls[i], NULL};
    int N0;
    long n;

    // The concept: mean latent of the two concept inputs, computed by the engine.
    float *concept = malloc(sizeof(float) * c->D), *lat[2];
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "concept_input.%d", i);
        x = golden(&g, name, NULL);
        CHECK(vit_forward(m, ws, x, H, W, err) == 0, "%s", err);
        lat[i] = malloc(sizeof(float) * c->D);
        memcpy(lat[i], explain_latent(m, ws), sizeof(float) * c->D);  // z: last block's final-normed CLS
        free(x);
    }
    explain_concept_mean((const float *const *)lat, 2, c->D, concept);
    golden_compare(RTOL, label, "concept", &g, concept, c->D);
    {
        float *ci[2] = {golden(&g, "concept_input.0", NULL), golden(&g, "concept_input.1", NULL)};
        float *c2 = malloc(sizeof(float) * c->D);
        CHECK(explain_concept_from_inputs(m, ws, (const float *const *)ci, 2, H, W, c2, err) == 0, "%s", err);
        golden_compare(RTOL, label, "concept", &g, c2, c->D);
        CHECK(explain_concept_from_inputs(m, ws, (const float *const *)ci, 0, H, W, c2, err) == CDAM_EINVAL, "no images");
        free(ci[0]); free(ci[1]); free(c2);
    }
    free(lat[0]);
    free(lat[1]);

    x = golden(&g, "input", NULL);
    CHECK(vit_forward(m, ws, x, H, W, err) == 0, "%s", err);
    N0 = ws->N;
    n = N0 - 1;
    float *s = malloc(sizeof(float) * 3 * n), *s1 = malloc(sizeof(float) * n);
    golden_compare(RTOL, label, "T", &g, ws->t, (long)N0 * c->D);

    // CDAM for 3 classes in one call, and for the concept.
    CHECK(explain_cdam(m, ws, ew, t, 3, s, err) == 0, "%s", err);
    golden_compare(RTOL, label, "cdam", &g, s, 3 * n);
    explain_target tc = {1, 0, concept};
    CHECK(explain_cdam(m, ws, ew, &tc, 1, s1, err) == 0, "%s", err);
    golden_compare(RTOL, label, "cdam_concept", &g, s1, n);

    // The forward state saved, overwritten by another forward and loaded back gives the
    // same CDAM, AM and logits, bit for bit (what the server's cache relies on).
    {
        size_t sb = vit_state_bytes(m, ws->gh, ws->gw);
        char *blob = malloc(sb);
        float *s2 = malloc(sizeof(float) * 3 * n), *am = malloc(sizeof(float) * n), *am2 = malloc(sizeof(float) * n);
        float *lg = malloc(sizeof(float) * c->C);
        explain_opts o;
        explain_opts_default(&o);
        CHECK(explain_am(m, ws, &o, am, err) == 0, "%s", err);
        memcpy(lg, ws->logits, sizeof(float) * c->C);
        vit_state_save(m, ws, blob);
        float *other = golden(&g, "concept_input.0", NULL);
        CHECK(vit_forward(m, ws, other, H, W, err) == 0, "%s", err);
        CHECK(vit_state_load(m, ws, blob, sb - 1, err) == CDAM_EINVAL, "%s: a short state is refused", label);
        blob[0] ^= 1;
        CHECK(vit_state_load(m, ws, blob, sb, err) == CDAM_EINVAL, "%s: a state with a bad magic is refused", label);
        blob[0] ^= 1;
        CHECK(vit_state_load(m, ws, blob, sb, err) == 0, "%s", err);
        CHECK(ws->N == N0 && ws->H == H && ws->W == W, "%s: state size", label);
        CHECK(explain_cdam(m, ws, ew, t, 3, s2, err) == 0, "%s", err);
        CHECK(memcmp(s, s2, sizeof(float) * 3 * n) == 0, "%s: CDAM after a state load is identical", label);
        CHECK(explain_am(m, ws, &o, am2, err) == 0, "%s", err);
        CHECK(memcmp(am, am2, sizeof(float) * n) == 0, "%s: AM after a state load is identical", label);
        CHECK(memcmp(lg, ws->logits, sizeof(float) * c->C) == 0, "%s: logits after a state load", label);
        CHECK(explain_rp(m, ws, ew, t, &o, s2, err) == CDAM_EINVAL, "%s: RP refuses a loaded state (no records)", label);
        CHECK(vit_forward(m, ws, x, H, W, err) == 0, "%s", err);
        free(blob); free(s2); free(am); free(am2); free(lg); free(other);
    }

    // Smooth CDAM with the golden's own noise: the mean of CDAM at T + noise_k.
    {
        long nn = 0;
        float *noise = golden(&g, "smooth_noise", &nn), *at = malloc(sizeof(float) * N0 * c->D);
        int k = (int)(nn / ((long)N0 * c->D));
        memset(s, 0, sizeof(float) * n);
        for (int i = 0; i < k; i++) {
            for (long j = 0; j < (long)N0 * c->D; j++) at[j] = ws->t[j] + noise[(long)i * N0 * c->D + j];
            CHECK(explain_cdam_at(m, ws, ew, at, 1.0f, t, 1, s1, err) == 0, "%s", err);
            for (long j = 0; j < n; j++) s[j] += s1[j] / k;
        }
        golden_compare(RTOL, label, "smooth_cdam", &g, s, n);
        free(noise);
        free(at);
        explain_opts o;
        explain_opts_default(&o);
        o.samples = 4;
        o.seed = 11;
        float *s2 = malloc(sizeof(float) * n);
        CHECK(explain_smooth_cdam(m, ws, ew, t, 1, &o, s1, err) == 0, "%s", err);
        CHECK(explain_smooth_cdam(m, ws, ew, t, 1, &o, s2, err) == 0, "%s", err);
        CHECK(!memcmp(s1, s2, sizeof(float) * n), "%s: smooth CDAM is deterministic for a seed", label);
        o.sigma = 0;
        CHECK(explain_smooth_cdam(m, ws, ew, t, 1, &o, s2, err) == 0, "%s", err);
        CHECK(explain_cdam(m, ws, ew, t, 1, s1, err) == 0, "%s", err);
        check_close("  smooth CDAM at sigma 0 == CDAM", s2, s1, n, 1e-5);
        free(s2);
    }

    // Integrated CDAM, 16 and 4 steps.
    {
        explain_opts o;
        explain_opts_default(&o);
        CHECK(explain_integrated_cdam(m, ws, ew, t, 1, &o, s, err) == 0, "%s", err);
        golden_compare(RTOL, label, "integrated_cdam", &g, s, n);
        o.samples = 4;
        CHECK(explain_integrated_cdam(m, ws, ew, t, 1, &o, s, err) == 0, "%s", err);
        golden_compare(RTOL, label, "integrated_cdam4", &g, s, n);
    }

    // Attention maps.
    {
        explain_opts o;
        explain_opts_default(&o);
        CHECK(explain_am(m, ws, &o, s, err) == 0, "%s", err);
        golden_compare(RTOL, label, "am_mean", &g, s, n);
        char name[48];
        for (int h = 0; h < c->H; h++) {
            o.head = h;
            o.threshold = 0;
            CHECK(explain_am(m, ws, &o, s, err) == 0, "%s", err);
            snprintf(name, sizeof name, "am_head%d", h);
            golden_compare(RTOL, label, name, &g, s, n);
            o.threshold = 0.6f;
            CHECK(explain_am(m, ws, &o, s, err) == 0, "%s", err);
            snprintf(name, sizeof name, "am_thresh0.6_head%d", h);
            golden_compare(RTOL, label, name, &g, s, n);
        }
        o.head = -1;
        CHECK(explain_am(m, ws, &o, s, err) == 0, "%s", err);
        golden_compare(RTOL, label, "am_thresh0.6", &g, s, n);
        o.head = c->H;
        CHECK(explain_am(m, ws, &o, s, err) == CDAM_EINVAL, "head out of range refused");
    }

    // Statistics on the golden maps themselves.
    {
        const char *pairs[][2] = {{"cdam", "rp"}, {"cdam", "tam"}, {"rp", "tam"}, {"cdam", "am_mean"}};
        const char *pn[] = {"pearson_cdam_rp", "pearson_cdam_tam", "pearson_rp_tam", "pearson_cdam_am"};
        for (int i = 0; i < 4; i++) {
            float *a = golden(&g, pairs[i][0], NULL), *b = golden(&g, pairs[i][1], NULL), *want = golden(&g, pn[i], NULL);
            float got = (float)explain_pearson(a, b, n);  // first map of each (classes[0])
            char what[160];
            snprintf(what, sizeof what, "%s %s", label, pn[i]);
            check_close(what, &got, want, 1, 1e-5);
            free(a); free(b); free(want);
        }
        const char *sm[] = {"cdam", "rp", "tam", "am_mean"}, *sn[] = {"sparsity_cdam", "sparsity_rp", "sparsity_tam", "sparsity_am"};
        for (int i = 0; i < 4; i++) {
            float *a = golden(&g, sm[i], NULL), *want = golden(&g, sn[i], NULL);
            CHECK(fabs(explain_sparsity(a, n) - want[0]) < 1e-6, "%s %s: %g vs %g", label, sn[i], explain_sparsity(a, n), want[0]);
            free(a); free(want);
        }
    }

    // The closed-form backward against central finite differences of an independent
    // double-precision forward of the CLS path: S_i = sum_j T_ij df/dT_ij.
    {
        long ND = (long)N0 * c->D;
        double *T = malloc(sizeof(double) * ND), h = 1e-4;
        float *fd = malloc(sizeof(float) * n);
        for (long j = 0; j < ND; j++) T[j] = ws->t[j];
        for (long i = 1; i < N0; i++) {
            double acc = 0;
            for (int d = 0; d < c->D; d++) {
                double keep = T[i * c->D + d];
                T[i * c->D + d] = keep + h;
                double fp = f_of_T(m, ws, T, t[0].cls);
                T[i * c->D + d] = keep - h;
                double fm = f_of_T(m, ws, T, t[0].cls);
                T[i * c->D + d] = keep;
                acc += keep * (fp - fm) / (2 * h);
            }
            fd[i - 1] = (float)acc;
        }
        CHECK(explain_cdam(m, ws, ew, t, 1, s1, err) == 0, "%s", err);
        char what[160];
        snprintf(what, sizeof what, "%s cdam vs finite differences", label);
        check_close(what, s1, fd, n, RTOL);
        free(T);
        free(fd);
    }

    // A token with zero CLS attention in every head gets exactly zero CDAM.
    {
        int i = (int)(n / 2) + 1;
        for (int h = 0; h < c->H; h++) ws->cls_attn[(long)h * N0 + i] = 0;
        CHECK(explain_cdam(m, ws, ew, t, 3, s, err) == 0, "%s", err);
        CHECK(s[i - 1] == 0 && s[n + i - 1] == 0 && s[2 * n + i - 1] == 0, "%s: zero attention, zero CDAM (%g)", label, s[i - 1]);
    }

    // Bad targets.
    explain_target bad = {0, c->C, NULL};
    CHECK(explain_cdam(m, ws, ew, &bad, 1, s, err) == CDAM_EINVAL && strstr(err, "out of range"), "class out of range: %s", err);
    CHECK(explain_cdam(m, ws, ew, t, 0, s, err) == CDAM_EINVAL, "no targets");
    free(x); free(s); free(s1); free(cls); free(concept);
    explain_ws_free(ew);
    vit_ws_free(ws);
    vit_model_free(m);
    st_close(&g);
}

int main(void) {
    const char *cases[][2] = {
        {"tests/data/models/tiny.safetensors", "tests/data/golden/explain_tiny_32x32.safetensors"},
        {"tests/data/models/tiny.safetensors", "tests/data/golden/explain_tiny_48x48.safetensors"},
        {"tests/data/models/tiny.safetensors", "tests/data/golden/explain_tiny_24x40.safetensors"},
        {"tests/data/models/probe.safetensors", "tests/data/golden/explain_probe_24x24.safetensors"},
        {"tests/data/models/probe.safetensors", "tests/data/golden/explain_probe_32x20.safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) run_case(cases[i][0], cases[i][1]);
    return check_summary("test_explain");
}
