/* cli.c - the `cdam` command: model information, predictions, explanations, concepts
 * and the paper's method comparison, from the terminal. See `usage` below.
 * Exit codes: 0 ok, 1 an error in the work (file, image, model, request), 2 bad usage. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "explain.h"
#include "image.h"
#include "json.h"
#include "render.h"
#include "vit.h"

#define MAX_MODEL_FILES 16
#define MAX_IMAGES 1024
#define MAX_CLASSES 64

static const char usage[] =
    "usage: cdam <command> [options]\n"
    "\n"
    "commands:\n"
    "  info     --model FILE... [--labels FILE]\n"
    "           print the model's configuration and parameter count\n"
    "  predict  --model FILE... [--size HxW] [--top K] IMAGE\n"
    "           classify IMAGE (JPEG, PNG, BMP, GIF, WebP); prints the top K (default 5)\n"
    "           predictions as JSON: index, label, logit, probability\n"
    "  explain  --model FILE... [--method M]... [--class K|NAME]... [--concept FILE]\n"
    "           [--size HxW] [--format json|png] [--out FILE] IMAGE\n"
    "           explanation maps; M: cdam (default), smooth-cdam, integrated-cdam, am, rp,\n"
    "           tam (repeat --method or give a comma list); classes default to the top-1\n"
    "           prediction; --concept adds the concept of a file written by `cdam concept`\n"
    "  concept  --model FILE... --out concept.json [--name NAME] IMAGE...\n"
    "           a concept vector: the mean latent of the example images\n"
    "  compare  --model FILE... [--size HxW] IMAGE...\n"
    "           the paper's comparison: CDAM, RP, TAM and AM for the predicted class of\n"
    "           each image; Pearson correlations over all tokens, mean sparsity\n"
    "\n"
    "options:\n"
    "  --model FILE...     safetensors file(s) of one model, merged by tensor name (e.g. a\n"
    "                      backbone and a head); repeat --model or list several .safetensors\n"
    "  --labels FILE       class names, one a line (overrides the model's metadata)\n"
    "  --size HxW          input size, multiples of the patch size (default: native; N = NxN)\n"
    "  --max-size N        largest height or width accepted (default 1024)\n"
    "  --top K             number of predictions (default 5)\n"
    "  --threads N         threads (default: all cores)\n"
    "  --max-pixels N      refuse images with more pixels (default 40000000)\n"
    "explain options:\n"
    "  --samples K         Smooth CDAM samples / Integrated CDAM steps (default 16)\n"
    "  --sigma S           Smooth CDAM noise level (default 0.1)\n"
    "  --seed N            Smooth CDAM noise seed (default 0)\n"
    "  --head H            AM: one head instead of the mean over heads\n"
    "  --threshold T       AM: DINO's attention-mass threshold, 0 < T <= 1\n"
    "  --format json|png   output (default json); png: an overlay, a panel for several maps\n"
    "  --out FILE          output file (default: standard output for json, explain.png)\n"
    "  --opacity A         overlay opacity 0..1 (default 0.6)\n"
    "  --smooth            smooth (bilinear) upsampling instead of square patches\n"
    "  --clip LO,HI        percentile clipping, e.g. 0.1,99.9 (default none)\n"
    "  --original          draw over the original image instead of the model's input\n";

typedef struct {
    const char *cmd;
    const char *models[MAX_MODEL_FILES];
    int nmodels;
    const char *labels, *concept, *name, *format, *out;
    const char *images[MAX_IMAGES];
    int nimages;
    int methods[EXPLAIN_NMETHODS], nmethods;
    const char *classes[MAX_CLASSES];
    int nclasses;
    int H, W, top, threads, max_size, original;
    long max_pixels;
    explain_opts eo;
    render_opts ro;
} options;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int fail(int code, const char *fmt, const char *arg) {
    fprintf(stderr, "cdam: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return code;
}

// Prints "cdam: <message>" on stderr and returns 1 (the exit code of a failed command).
static int errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int errf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cdam: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int parse_size(const char *s, int *H, int *W) {
    char *end;
    long h = strtol(s, &end, 10), w = h;
    if (end != s && (*end == 'x' || *end == 'X')) {
        const char *r = end + 1;
        w = strtol(r, &end, 10);
        if (end == r) return -1;
    }
    if (end == s || *end || h < 1 || w < 1 || h > 65536 || w > 65536) return -1;
    *H = (int)h;
    *W = (int)w;
    return 0;
}

static int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

// Parses argv into o; returns 0, or the exit code (2) after a message.
static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->top = 5;
    o->max_size = 1024;
    o->max_pixels = IMG_DEFAULT_MAX_PIXELS;
    o->format = "json";
    explain_opts_default(&o->eo);
    render_opts_default(&o->ro);
    long th = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = th > 0 ? (int)(th > 64 ? 64 : th) : 1;
    o->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double f;
#define NEED_VALUE() if (!v) return fail(2, "%s needs a value", a)
        if (!strcmp(a, "--model")) {
            NEED_VALUE();
            do {
                if (o->nmodels == MAX_MODEL_FILES) return fail(2, "at most 16 model files%s", "");
                o->models[o->nmodels++] = argv[++i];
            } while (i + 1 < argc && argv[i + 1][0] != '-' && ends_with(argv[i + 1], ".safetensors"));
        } else if (!strcmp(a, "--labels")) {
            NEED_VALUE();
            o->labels = argv[++i];
        } else if (!strcmp(a, "--size")) {
            if (!v || parse_size(v, &o->H, &o->W) < 0) return fail(2, "--size wants HxW or N, e.g. 224x224, not '%s'", v ? v : "");
            i++;
        } else if (!strcmp(a, "--max-size")) {
            if (!v || parse_long(v, 1, 16384, &n) < 0) return fail(2, "--max-size wants 1..16384, not '%s'", v ? v : "");
            o->max_size = (int)n, i++;
        } else if (!strcmp(a, "--top")) {
            if (!v || parse_long(v, 1, 1000000, &n) < 0) return fail(2, "--top wants a positive number, not '%s'", v ? v : "");
            o->top = (int)n, i++;
        } else if (!strcmp(a, "--threads")) {
            if (!v || parse_long(v, 1, 256, &n) < 0) return fail(2, "--threads wants 1..256, not '%s'", v ? v : "");
            o->threads = (int)n, i++;
        } else if (!strcmp(a, "--max-pixels")) {
            if (!v || parse_long(v, 1, 1L << 40, &n) < 0) return fail(2, "--max-pixels wants a positive number, not '%s'", v ? v : "");
            o->max_pixels = n, i++;
        } else if (!strcmp(a, "--method")) {
            NEED_VALUE();
            char buf[256];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                int mth = explain_method_parse(tok);
                if (mth < 0) return fail(2, "unknown method '%s' (cdam, smooth-cdam, integrated-cdam, am, rp, tam)", tok);
                int dup = 0;
                for (int k = 0; k < o->nmethods; k++) dup |= o->methods[k] == mth;
                if (!dup) o->methods[o->nmethods++] = mth;
            }
        } else if (!strcmp(a, "--class")) {
            NEED_VALUE();
            if (o->nclasses == MAX_CLASSES) return fail(2, "at most 64 classes%s", "");
            o->classes[o->nclasses++] = argv[++i];
        } else if (!strcmp(a, "--concept")) {
            NEED_VALUE();
            o->concept = argv[++i];
        } else if (!strcmp(a, "--name")) {
            NEED_VALUE();
            o->name = argv[++i];
        } else if (!strcmp(a, "--format")) {
            if (!v || (strcmp(v, "json") && strcmp(v, "png"))) return fail(2, "--format wants json or png, not '%s'", v ? v : "");
            o->format = argv[++i];
        } else if (!strcmp(a, "--out")) {
            NEED_VALUE();
            o->out = argv[++i];
        } else if (!strcmp(a, "--samples")) {
            if (!v || parse_long(v, 1, 1024, &n) < 0) return fail(2, "--samples wants 1..1024, not '%s'", v ? v : "");
            o->eo.samples = (int)n, i++;
        } else if (!strcmp(a, "--sigma")) {
            if (!v || parse_float(v, 0, 10, &f) < 0) return fail(2, "--sigma wants 0..10, not '%s'", v ? v : "");
            o->eo.sigma = (float)f, i++;
        } else if (!strcmp(a, "--seed")) {
            if (!v || parse_long(v, 0, 1L << 62, &n) < 0) return fail(2, "--seed wants a non-negative number, not '%s'", v ? v : "");
            o->eo.seed = (uint64_t)n, i++;
        } else if (!strcmp(a, "--head")) {
            if (!v || parse_long(v, 0, 4096, &n) < 0) return fail(2, "--head wants a head index, not '%s'", v ? v : "");
            o->eo.head = (int)n, i++;
        } else if (!strcmp(a, "--threshold")) {
            if (!v || parse_float(v, 0, 1, &f) < 0 || f == 0) return fail(2, "--threshold wants 0 < T <= 1, not '%s'", v ? v : "");
            o->eo.threshold = (float)f, i++;
        } else if (!strcmp(a, "--opacity")) {
            if (!v || parse_float(v, 0, 1, &f) < 0) return fail(2, "--opacity wants 0..1, not '%s'", v ? v : "");
            o->ro.opacity = (float)f, i++;
        } else if (!strcmp(a, "--smooth")) {
            o->ro.upsample = RENDER_SMOOTH;
        } else if (!strcmp(a, "--original")) {
            o->original = 1;
        } else if (!strcmp(a, "--clip")) {
            double lo, hi;
            char buf[64], *comma;
            snprintf(buf, sizeof buf, "%s", v ? v : "");
            if (!v || !(comma = strchr(buf, ',')) || (*comma = 0, parse_float(buf, 0, 100, &lo) < 0) ||
                parse_float(comma + 1, 0, 100, &hi) < 0 || lo > hi)
                return fail(2, "--clip wants LO,HI percentiles, e.g. 0.1,99.9, not '%s'", v ? v : "");
            o->ro.clip_lo = (float)lo, o->ro.clip_hi = (float)hi, i++;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            exit(0);
        } else if (a[0] == '-' && a[1]) {
            return fail(2, "unknown option '%s' (see cdam --help)", a);
        } else {
            if (o->nimages == MAX_IMAGES) return fail(2, "at most 1024 images%s", "");
            o->images[o->nimages++] = a;
        }
#undef NEED_VALUE
    }
    if (!o->nmodels) return fail(2, "--model FILE is required%s", "");
    if (!o->nmethods) o->methods[o->nmethods++] = EXPLAIN_CDAM;
    return 0;
}

/* ---- output helpers ---------------------------------------------------------------- */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void json_floats(FILE *f, const float *v, long n) {
    fputc('[', f);
    for (long i = 0; i < n; i++) fprintf(f, i ? ", %.7g" : "%.7g", isfinite(v[i]) ? v[i] : 0.0f);
    fputc(']', f);
}

static void print_predictions(FILE *f, const vit_model *m, const vit_ws *ws, int top) {
    const vit_config *c = &m->cfg;
    int k = top < c->C ? top : c->C;
    float *probs = malloc(sizeof(float) * (size_t)(c->C ? c->C : 1));
    int *idx = malloc(sizeof(int) * (size_t)(k ? k : 1));
    fprintf(f, "\"predictions\": [");
    if (probs && idx && k > 0) {
        vit_softmax(ws->logits, c->C, probs);
        vit_topk(ws->logits, c->C, k, idx);
        for (int i = 0; i < k; i++) {
            fprintf(f, "%s\n  {\"index\": %d, \"label\": ", i ? "," : "", idx[i]);
            json_str(f, m->labels[idx[i]]);
            fprintf(f, ", \"logit\": %.6g, \"probability\": %.6g}", ws->logits[idx[i]], probs[idx[i]]);
        }
    }
    fprintf(f, "\n]");
    free(probs);
    free(idx);
}

/* ---- one image through the model --------------------------------------------------- */

typedef struct {
    const vit_model *m;
    vit_ws *ws;
    explain_ws *ew;
    int H, W;
    float *x;          // (3, H, W) the model input
    img_rgb8 im;       // the decoded image
} session;

static int session_open(session *s, const vit_model *m, const options *o, unsigned flags, int with_explain) {
    char err[CDAM_ERR_MAX];
    const vit_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    s->m = m;
    s->H = o->H ? o->H : c->g0 * c->P;
    s->W = o->W ? o->W : c->g0 * c->P;
    if (s->H % c->P || s->W % c->P) {
        fprintf(stderr, "cdam: size %dx%d is not a multiple of the patch size %d\n", s->H, s->W, c->P);
        return 1;
    }
    if (s->H > o->max_size || s->W > o->max_size) {
        fprintf(stderr, "cdam: size %dx%d is over the maximum %d (--max-size)\n", s->H, s->W, o->max_size);
        return 1;
    }
    if (!(s->x = malloc(sizeof(float) * 3 * (size_t)s->H * s->W))) return fail(1, "out of memory%s", "");
    if (vit_ws_create(m, s->H, s->W, o->threads, flags, &s->ws, err) < 0 ||
        (with_explain && explain_ws_create(m, s->ws, &o->eo, &s->ew, err) < 0))
        return fail(1, "%s", err);
    return 0;
}

// Decodes path, prepares the input and runs the forward pass.
static int session_run(session *s, const options *o, const char *path) {
    char err[CDAM_ERR_MAX];
    img_free(&s->im);
    if (img_load_file(path, o->max_pixels, &s->im, err) < 0 ||
        img_to_input(&s->im, s->H, s->W, s->m->cfg.mean, s->m->cfg.std, s->x, err) < 0 ||
        vit_forward(s->m, s->ws, s->x, s->H, s->W, err) < 0)
        return fail(1, "%s", err);
    return 0;
}

static void session_close(session *s) {
    explain_ws_free(s->ew);
    vit_ws_free(s->ws);
    img_free(&s->im);
    free(s->x);
}

/* ---- commands ------------------------------------------------------------------------ */

static int cmd_info(const vit_model *m) {
    const vit_config *c = &m->cfg;
    printf("name         %s\n", c->name);
    printf("patch size   %d\n", c->P);
    printf("embed dim    %d\n", c->D);
    printf("depth        %d\n", c->L);
    printf("heads        %d (head dim %d)\n", c->H, c->Dh);
    printf("mlp width    %d\n", c->F);
    printf("native size  %dx%d (grid %dx%d)\n", c->g0 * c->P, c->g0 * c->P, c->g0, c->g0);
    printf("head         %s\n", !c->C ? "none" : c->head_in == c->D ? "linear on the latent (C, D)" : "DINO linear probe on the last 4 CLS rows (C, 4D)");
    printf("classes      %d\n", c->C);
    printf("layernorm    eps %g\n", c->ln_eps);
    printf("mean / std   %.4g %.4g %.4g / %.4g %.4g %.4g\n", c->mean[0], c->mean[1], c->mean[2], c->std[0], c->std[1], c->std[2]);
    printf("parameters   %ld (backbone %ld, head %ld)\n", m->n_backbone + m->n_head, m->n_backbone, m->n_head);
    if (c->C) printf("labels       %s, %s%s\n", m->labels[0], c->C > 1 ? m->labels[1] : "", c->C > 2 ? ", ..." : "");
    return 0;
}

static int cmd_predict(const options *o, const vit_model *m) {
    if (o->nimages != 1) return fail(2, "predict needs one IMAGE%s", "");
    if (!m->cfg.C) return fail(1, "the model has no classification head%s", "");
    session s;
    int rc = session_open(&s, m, o, 0, 0);
    if (!rc) rc = session_run(&s, o, o->images[0]);
    if (!rc) {
        printf("{\"model\": ");
        json_str(stdout, m->cfg.name);
        printf(", \"image\": {\"width\": %d, \"height\": %d}, \"input\": {\"width\": %d, \"height\": %d}, "
               "\"grid\": {\"rows\": %d, \"cols\": %d},\n ",
               s.im.w, s.im.h, s.W, s.H, s.ws->gh, s.ws->gw);
        print_predictions(stdout, m, s.ws, o->top);
        printf("}\n");
    }
    session_close(&s);
    return rc;
}

// Reads a concept file written by `cdam concept` into vec (D floats) and its name.
static int read_concept(const char *path, int D, float *vec, char *name, size_t namelen) {
    FILE *f = fopen(path, "rb");
    if (!f) return errf("%s: %s", path, strerror(errno));
    char *buf = malloc(1 << 22);
    size_t n = buf ? fread(buf, 1, (1 << 22) - 1, f) : 0;
    fclose(f);
    char err[CDAM_ERR_MAX];
    json_value *v = buf ? json_parse(buf, n, err) : NULL;
    int had_buf = buf != NULL;
    free(buf);
    const json_value *e = json_get(v, "embedding"), *nm = json_get(v, "name");
    int rc = 0;
    if (!v) rc = errf("%s: not a concept file (%s)", path, had_buf ? err : "out of memory");
    else if (!e || e->type != JSON_ARRAY) rc = errf("%s: no \"embedding\" array", path);
    else if ((int)e->len != D) rc = errf("%s: embedding has %zu values, the model's latent %d", path, e->len, D);
    for (int i = 0; !rc && i < D; i++) {
        if (e->items[i].type != JSON_NUMBER) rc = errf("%s: embedding value %d is not a number", path, i);
        else vec[i] = (float)e->items[i].num;
    }
    snprintf(name, namelen, "%s", nm && nm->type == JSON_STRING ? nm->str : "concept");
    json_free(v);
    return rc;
}

typedef struct {
    int fd_is_tty;
} progress_state;

static int progress_bar(void *ctx, double frac) {
    progress_state *p = ctx;
    if (p->fd_is_tty) {
        int w = 40, k = (int)(frac * w + 0.5);
        fprintf(stderr, "\rTAM [%.*s%*s] %3.0f%%", k, "========================================", w - k, "", frac * 100);
        if (frac >= 1) fputc('\n', stderr);
    }
    return 0;
}

typedef struct {
    int method;
    int target;      // index into the targets, -1 for AM (no target)
    float *scores;   // (n)
} map_entry;

static int cmd_explain(const options *o, const vit_model *m) {
    const vit_config *c = &m->cfg;
    if (o->nimages != 1) return fail(2, "explain needs one IMAGE%s", "");
    int png = !strcmp(o->format, "png");
    char err[CDAM_ERR_MAX], cname[256];
    int need_rec = 0;
    for (int i = 0; i < o->nmethods; i++) need_rec |= o->methods[i] == EXPLAIN_RP;
    session s;
    int rc = session_open(&s, m, o, need_rec ? VIT_REC_BLOCKS : 0, 1);
    float *concept = NULL;
    map_entry *maps = NULL;
    int nmaps = 0;
    explain_target t[MAX_CLASSES + 1];
    int nt = 0;
    if (!rc) rc = session_run(&s, o, o->images[0]);
    // Targets: the classes asked for (default: the top-1 prediction), then the concept.
    for (int i = 0; !rc && i < o->nclasses; i++) {
        if (!c->C) rc = fail(1, "the model has no classification head: use --concept%s", "");
        else if ((t[nt].cls = vit_model_class(m, o->classes[i])) < 0)
            rc = errf("unknown class '%s' (a label, or an index 0..%d)", o->classes[i], c->C - 1);
        else t[nt++].is_concept = 0;
    }
    if (!rc && !o->nclasses && (c->C || !o->concept)) {
        if (!c->C) rc = fail(1, "the model has no classification head: use --concept%s", "");
        else vit_topk(s.ws->logits, c->C, 1, &t[nt].cls), t[nt++].is_concept = 0;
    }
    if (!rc && o->concept) {
        if (!(concept = malloc(sizeof(float) * c->D))) rc = fail(1, "out of memory%s", "");
        else if (!(rc = read_concept(o->concept, c->D, concept, cname, sizeof cname)))
            t[nt++] = (explain_target){1, -1, concept};
    }
    int n = s.ws ? s.ws->gh * s.ws->gw : 0;
    if (!rc && !(maps = calloc((size_t)o->nmethods * (nt + 1), sizeof *maps))) rc = fail(1, "out of memory%s", "");
    float *buf = NULL;
    if (!rc && !(buf = malloc(sizeof(float) * (size_t)n * nt))) rc = fail(1, "out of memory%s", "");
    progress_state ps = {isatty(2)};
    explain_opts eo = o->eo;
    eo.progress = progress_bar;
    eo.progress_ctx = &ps;
    for (int k = 0; !rc && k < o->nmethods; k++) {
        int mth = o->methods[k], r = 0;
        switch (mth) {
        case EXPLAIN_CDAM: r = explain_cdam(m, s.ws, s.ew, t, nt, buf, err); break;
        case EXPLAIN_SMOOTH_CDAM: r = explain_smooth_cdam(m, s.ws, s.ew, t, nt, &eo, buf, err); break;
        case EXPLAIN_INTEGRATED_CDAM: r = explain_integrated_cdam(m, s.ws, s.ew, t, nt, &eo, buf, err); break;
        case EXPLAIN_AM: r = explain_am(m, s.ws, &eo, buf, err); break;
        case EXPLAIN_TAM: r = explain_tam(m, s.ws, s.ew, s.x, t, nt, &eo, buf, err); break;
        case EXPLAIN_RP:
            for (int i = 0; !r && i < nt; i++) r = explain_rp(m, s.ws, s.ew, &t[i], &eo, buf + (long)i * n, err);
            break;
        }
        if (r < 0) { rc = fail(1, "%s", err); break; }
        int per = mth == EXPLAIN_AM ? 1 : nt;
        for (int i = 0; i < per && !rc; i++) {
            map_entry *e = &maps[nmaps];
            e->method = mth;
            e->target = mth == EXPLAIN_AM ? -1 : i;
            if (!(e->scores = malloc(sizeof(float) * (size_t)n))) rc = fail(1, "out of memory%s", "");
            else memcpy(e->scores, buf + (long)i * n, sizeof(float) * (size_t)n), nmaps++;
        }
    }
    if (!rc && !png) {
        FILE *f = o->out ? fopen(o->out, "w") : stdout;
        if (!f) rc = errf("%s: %s", o->out, strerror(errno));
        else {
            fprintf(f, "{\"model\": ");
            json_str(f, c->name);
            fprintf(f, ", \"image\": {\"width\": %d, \"height\": %d}, \"input\": {\"width\": %d, \"height\": %d}, "
                       "\"grid\": {\"rows\": %d, \"cols\": %d},\n ",
                    s.im.w, s.im.h, s.W, s.H, s.ws->gh, s.ws->gw);
            print_predictions(f, m, s.ws, o->top);
            fprintf(f, ",\n \"explanations\": [");
            for (int i = 0; i < nmaps; i++) {
                const map_entry *e = &maps[i];
                float lo = INFINITY, hi = -INFINITY;
                for (int j = 0; j < n; j++) lo = e->scores[j] < lo ? e->scores[j] : lo, hi = e->scores[j] > hi ? e->scores[j] : hi;
                fprintf(f, "%s\n  {\"method\": \"%s\", \"target\": ", i ? "," : "", explain_method_name(e->method));
                if (e->target < 0) fprintf(f, "null");
                else if (t[e->target].is_concept) fprintf(f, "{\"type\": \"concept\", \"index\": -1, \"label\": "), json_str(f, cname), fputc('}', f);
                else fprintf(f, "{\"type\": \"class\", \"index\": %d, \"label\": ", t[e->target].cls), json_str(f, m->labels[t[e->target].cls]), fputc('}', f);
                fprintf(f, ", \"min\": %.7g, \"max\": %.7g, \"scores\": ", lo, hi);
                json_floats(f, e->scores, n);
                fputc('}', f);
            }
            fprintf(f, "\n]}\n");
            if (f != stdout && fclose(f) != 0) rc = errf("%s: write failed", o->out);
        }
    }
    if (!rc && png) {
        // Draw over the model's input as it saw it (squashed to H x W), or the original.
        img_rgb8 base = {0}, out = {0};
        if (o->original) {
            base = s.im;
        } else {
            float *rs = malloc(sizeof(float) * 3 * (size_t)s.H * s.W);
            base.w = s.W, base.h = s.H, base.px = malloc(3 * (size_t)s.H * s.W);
            if (!rs || !base.px || img_resize_bilinear_aa(&s.im, s.H, s.W, rs, err) < 0) rc = fail(1, "%s", rs && base.px ? err : "out of memory");
            for (long i = 0; !rc && i < 3L * s.H * s.W; i++) base.px[i] = (uint8_t)fminf(255.0f, fmaxf(0.0f, rs[i] + 0.5f));
            free(rs);
        }
        render_tile tiles[EXPLAIN_NMETHODS * (MAX_CLASSES + 1) + 1];
        char captions[EXPLAIN_NMETHODS * (MAX_CLASSES + 1)][300];
        for (int i = 0; !rc && i < nmaps; i++) {
            const map_entry *e = &maps[i];
            const char *tl = e->target < 0 ? "" : t[e->target].is_concept ? cname : m->labels[t[e->target].cls];
            snprintf(captions[i], sizeof captions[i], "%s%s%s", explain_method_name(e->method), *tl ? ": " : "", tl);
            tiles[i] = (render_tile){e->scores, s.ws->gh, s.ws->gw, captions[i]};
        }
        if (!rc) {
            int r = nmaps == 1 ? render_map(maps[0].scores, s.ws->gh, s.ws->gw, &base, &o->ro, &out, NULL, err)
                               : render_panel(&base, tiles, nmaps, 0, &o->ro, &out, err);
            if (r < 0 || render_png_write(&out, o->out ? o->out : "explain.png", err) < 0) rc = fail(1, "%s", err);
            else fprintf(stderr, "cdam: wrote %s (%dx%d)\n", o->out ? o->out : "explain.png", out.w, out.h);
        }
        img_free(&out);
        if (!o->original) img_free(&base);
    }
    for (int i = 0; i < nmaps; i++) free(maps[i].scores);
    free(maps);
    free(buf);
    free(concept);
    session_close(&s);
    return rc;
}

static int cmd_concept(const options *o, const vit_model *m) {
    const vit_config *c = &m->cfg;
    if (!o->nimages) return fail(2, "concept needs one or more example IMAGEs%s", "");
    if (!o->out) return fail(2, "concept needs --out FILE%s", "");
    session s;
    int rc = session_open(&s, m, o, 0, 0);
    float **lat = calloc((size_t)o->nimages, sizeof *lat), *mean = malloc(sizeof(float) * c->D);
    if (!rc && (!lat || !mean)) rc = fail(1, "out of memory%s", "");
    for (int i = 0; !rc && i < o->nimages; i++) {
        if ((rc = session_run(&s, o, o->images[i]))) break;
        if (!(lat[i] = malloc(sizeof(float) * c->D))) rc = fail(1, "out of memory%s", "");
        else memcpy(lat[i], explain_latent(m, s.ws), sizeof(float) * c->D);
    }
    if (!rc) {
        explain_concept_mean((const float *const *)lat, o->nimages, c->D, mean);
        FILE *f = fopen(o->out, "w");
        if (!f) rc = errf("%s: %s", o->out, strerror(errno));
        else {
            char name[256];
            const char *base = strrchr(o->out, '/') ? strrchr(o->out, '/') + 1 : o->out;
            snprintf(name, sizeof name, "%s", o->name ? o->name : base);
            char *dot = o->name ? NULL : strrchr(name, '.');
            if (dot && dot != name) *dot = 0;
            fprintf(f, "{\"name\": ");
            json_str(f, name);
            fprintf(f, ", \"model\": ");
            json_str(f, c->name);
            fprintf(f, ", \"dim\": %d, \"size\": [%d, %d], \"images\": [", c->D, s.H, s.W);
            for (int i = 0; i < o->nimages; i++) fprintf(f, i ? ", " : ""), json_str(f, o->images[i]);
            fprintf(f, "],\n \"embedding\": ");
            json_floats(f, mean, c->D);
            fprintf(f, "}\n");
            if (fclose(f) != 0) rc = errf("%s: write failed", o->out);
            else fprintf(stderr, "cdam: concept '%s' from %d image(s) written to %s\n", name, o->nimages, o->out);
        }
    }
    for (int i = 0; lat && i < o->nimages; i++) free(lat[i]);
    free(lat);
    free(mean);
    session_close(&s);
    return rc;
}

// The paper's Fig. 6 procedure: for each image, the maps of CDAM, RP, TAM and AM for
// the predicted class; Pearson correlation of each pair over all tokens of all images,
// and each method's sparsity averaged over the images.
static int cmd_compare(const options *o, const vit_model *m) {
    const vit_config *c = &m->cfg;
    if (!o->nimages) return fail(2, "compare needs one or more IMAGEs%s", "");
    if (!c->C) return fail(1, "the model has no classification head%s", "");
    enum { K = 4 };
    const int meth[K] = {EXPLAIN_TAM, EXPLAIN_CDAM, EXPLAIN_RP, EXPLAIN_AM};
    const char *names[K] = {"TAM", "CDAM", "RP", "AM"};
    session s;
    int rc = session_open(&s, m, o, VIT_REC_BLOCKS, 1);
    int n = (s.H / c->P) * (s.W / c->P);
    float *all[K] = {0};
    double sparsity[K] = {0};
    char err[CDAM_ERR_MAX];
    for (int k = 0; !rc && k < K; k++)
        if (!(all[k] = malloc(sizeof(float) * (size_t)n * o->nimages))) rc = fail(1, "out of memory%s", "");
    progress_state ps = {isatty(2)};
    explain_opts eo = o->eo;
    eo.progress = progress_bar;
    eo.progress_ctx = &ps;
    for (int i = 0; !rc && i < o->nimages; i++) {
        if ((rc = session_run(&s, o, o->images[i]))) break;
        explain_target t = {0, 0, NULL};
        vit_topk(s.ws->logits, c->C, 1, &t.cls);
        fprintf(stderr, "cdam: %s: %s\n", o->images[i], m->labels[t.cls]);
        for (int k = 0; !rc && k < K; k++) {
            float *dst = all[k] + (long)i * n;
            int r = meth[k] == EXPLAIN_CDAM ? explain_cdam(m, s.ws, s.ew, &t, 1, dst, err)
                  : meth[k] == EXPLAIN_RP   ? explain_rp(m, s.ws, s.ew, &t, &eo, dst, err)
                  : meth[k] == EXPLAIN_TAM  ? explain_tam(m, s.ws, s.ew, s.x, &t, 1, &eo, dst, err)
                                            : explain_am(m, s.ws, &eo, dst, err);
            if (r < 0) rc = fail(1, "%s", err);
            else sparsity[k] += explain_sparsity(dst, n) / o->nimages;
        }
    }
    if (!rc) {
        printf("%d image(s), %d tokens each, target: the predicted class\n\nPearson correlation\n%6s", o->nimages, n, "");
        for (int b = 0; b < K; b++) printf("%8s", names[b]);
        printf("\n");
        for (int a = 0; a < K; a++) {
            printf("%6s", names[a]);
            for (int b = 0; b < K; b++) printf("%8.3f", explain_pearson(all[a], all[b], (long)n * o->nimages));
            printf("\n");
        }
        printf("\nSparsity (fraction of |score| < 0.05 max score, mean over images)\n");
        for (int k = 0; k < K; k++) printf("%6s%8.3f\n", names[k], sparsity[k]);
    }
    for (int k = 0; k < K; k++) free(all[k]);
    session_close(&s);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) return fputs(usage, stderr), 2;
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) return fputs(usage, stdout), 0;
    const char *cmds[] = {"info", "predict", "explain", "concept", "compare"};
    int which = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(argv[1], cmds[i])) which = i;
    if (which < 0) {
        fprintf(stderr, "cdam: unknown command '%s'\n\n%s", argv[1], usage);
        return 2;
    }
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    char err[CDAM_ERR_MAX];
    vit_model *m;
    if (vit_model_load(o.models, o.nmodels, o.labels, &m, err) < 0) return fail(1, "%s", err);
    switch (which) {
    case 0: rc = cmd_info(m); break;
    case 1: rc = cmd_predict(&o, m); break;
    case 2: rc = cmd_explain(&o, m); break;
    case 3: rc = cmd_concept(&o, m); break;
    default: rc = cmd_compare(&o, m); break;
    }
    vit_model_free(m);
    return rc;
}
