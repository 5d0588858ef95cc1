/* cli.c - the `cdam` command: model information and predictions from the terminal.
 *
 *   cdam info    --model FILE... [--labels FILE]
 *   cdam predict --model FILE... [--labels FILE] [--size HxW] [--top K] [--threads N]
 *                [--max-pixels N] IMAGE
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "vit.h"

#define MAX_MODEL_FILES 16

static const char usage[] =
    "usage: cdam <command> [options]\n"
    "\n"
    "commands:\n"
    "  info    --model FILE... [--labels FILE]\n"
    "          print the model's configuration and parameter count\n"
    "  predict --model FILE... [--labels FILE] [--size HxW] [--top K] [--threads N]\n"
    "          [--max-pixels N] IMAGE\n"
    "          classify IMAGE (JPEG, PNG, BMP, GIF, WebP); prints the top K (default 5)\n"
    "          predictions as JSON: index, label, logit, probability\n"
    "\n"
    "options:\n"
    "  --model FILE...   safetensors file(s) of one model, merged by tensor name (e.g. a\n"
    "                    backbone and a head); repeat --model or list several .safetensors\n"
    "  --labels FILE     class names, one a line (overrides the model's metadata)\n"
    "  --size HxW        input size, multiples of the patch size (default: native; N = NxN)\n"
    "  --max-size N      largest height or width accepted (default 1024)\n"
    "  --top K           number of predictions (default 5)\n"
    "  --threads N       threads for the forward pass (default: all cores)\n"
    "  --max-pixels N    refuse images with more pixels (default 40000000)\n";

typedef struct {
    const char *cmd;
    const char *models[MAX_MODEL_FILES];
    int nmodels;
    const char *labels, *image;
    int H, W, top, threads, max_size;
    long max_pixels;
} options;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int die(const char *fmt, const char *arg) {
    fprintf(stderr, "cdam: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
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
    if (*end || h < 1 || w < 1 || h > 65536 || w > 65536) return -1;
    *H = (int)h;
    *W = (int)w;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, options *o) {
    memset(o, 0, sizeof *o);
    o->top = 5;
    o->max_size = 1024;
    o->max_pixels = IMG_DEFAULT_MAX_PIXELS;
    long th = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = th > 0 ? (int)(th > 64 ? 64 : th) : 1;
    if (argc < 2) return -1;
    o->cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        if (!strcmp(a, "--model")) {
            if (!v) return die("--model needs a file", "");
            do {
                if (o->nmodels == MAX_MODEL_FILES) return die("at most 16 model files%s", "");
                o->models[o->nmodels++] = argv[++i];
            } while (i + 1 < argc && argv[i + 1][0] != '-' && ends_with(argv[i + 1], ".safetensors"));
        } else if (!strcmp(a, "--labels")) {
            if (!v) return die("--labels needs a file%s", "");
            o->labels = argv[++i];
        } else if (!strcmp(a, "--size")) {
            if (!v || parse_size(v, &o->H, &o->W) < 0) return die("--size wants HxW or N, e.g. 224x224, not '%s'", v ? v : "");
            i++;
        } else if (!strcmp(a, "--max-size")) {
            if (!v || parse_int(v, 1, 16384, &n) < 0) return die("--max-size wants 1..16384, not '%s'", v ? v : "");
            o->max_size = (int)n, i++;
        } else if (!strcmp(a, "--top")) {
            if (!v || parse_int(v, 1, 1000000, &n) < 0) return die("--top wants a positive number, not '%s'", v ? v : "");
            o->top = (int)n, i++;
        } else if (!strcmp(a, "--threads")) {
            if (!v || parse_int(v, 1, 256, &n) < 0) return die("--threads wants 1..256, not '%s'", v ? v : "");
            o->threads = (int)n, i++;
        } else if (!strcmp(a, "--max-pixels")) {
            if (!v || parse_int(v, 1, 1L << 40, &n) < 0) return die("--max-pixels wants a positive number, not '%s'", v ? v : "");
            o->max_pixels = n, i++;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            return -1;
        } else if (a[0] == '-' && a[1]) {
            return die("unknown option '%s' (see cdam --help)", a);
        } else if (!o->image) {
            o->image = a;
        } else {
            return die("unexpected argument '%s'", a);
        }
    }
    if (!o->nmodels) return die("--model FILE is required%s", "");
    return 0;
}

// Writes s as a JSON string literal.
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static int cmd_info(const options *o, const vit_model *m) {
    const vit_config *c = &m->cfg;
    (void)o;
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
    const vit_config *c = &m->cfg;
    char err[CDAM_ERR_MAX];
    if (!o->image) return die("predict needs an IMAGE%s", "");
    if (!c->C) return die("the model has no classification head%s", "");
    int H = o->H ? o->H : c->g0 * c->P, W = o->W ? o->W : c->g0 * c->P;
    if (H % c->P || W % c->P) {
        fprintf(stderr, "cdam: size %dx%d is not a multiple of the patch size %d\n", H, W, c->P);
        return 1;
    }
    if (H > o->max_size || W > o->max_size) {
        fprintf(stderr, "cdam: size %dx%d is over the maximum %d (--max-size)\n", H, W, o->max_size);
        return 1;
    }
    img_rgb8 im = {0};
    if (img_load_file(o->image, o->max_pixels, &im, err) < 0) return die("%s", err);
    float *x = malloc(sizeof(float) * 3 * (size_t)H * W);
    float *probs = malloc(sizeof(float) * (size_t)c->C);
    int k = o->top < c->C ? o->top : c->C;
    int *idx = malloc(sizeof(int) * (size_t)k);
    vit_ws *ws = NULL;
    int rc = 1;
    if (!x || !probs || !idx) { fprintf(stderr, "cdam: out of memory\n"); goto out; }
    if (img_to_input(&im, H, W, c->mean, c->std, x, err) < 0 || vit_ws_create(m, H, W, o->threads, 0, &ws, err) < 0 ||
        vit_forward(m, ws, x, H, W, err) < 0) {
        fprintf(stderr, "cdam: %s\n", err);
        goto out;
    }
    vit_softmax(ws->logits, c->C, probs);
    vit_topk(ws->logits, c->C, k, idx);
    printf("{\"model\": ");
    json_str(stdout, c->name);
    printf(", \"image\": {\"width\": %d, \"height\": %d}, \"input\": {\"width\": %d, \"height\": %d}, "
           "\"grid\": {\"rows\": %d, \"cols\": %d},\n \"predictions\": [",
           im.w, im.h, W, H, ws->gh, ws->gw);
    for (int i = 0; i < k; i++) {
        printf("%s\n  {\"index\": %d, \"label\": ", i ? "," : "", idx[i]);
        json_str(stdout, m->labels[idx[i]]);
        printf(", \"logit\": %.6g, \"probability\": %.6g}", ws->logits[idx[i]], probs[idx[i]]);
    }
    printf("\n]}\n");
    rc = 0;
out:
    vit_ws_free(ws);
    img_free(&im);
    free(x);
    free(probs);
    free(idx);
    return rc;
}

int main(int argc, char **argv) {
    options o;
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "info") && strcmp(argv[1], "predict")) {
        fprintf(stderr, "cdam: unknown command '%s'\n\n%s", argv[1], usage);
        return 2;
    }
    int pr = parse_args(argc, argv, &o);
    if (pr != 0 || !o.cmd) {
        if (pr < 0) fputs(usage, stderr);
        return 2;
    }
    char err[CDAM_ERR_MAX];
    vit_model *m;
    if (vit_model_load(o.models, o.nmodels, o.labels, &m, err) < 0) return die("%s", err);
    int rc = !strcmp(o.cmd, "info") ? cmd_info(&o, m) : cmd_predict(&o, m);
    vit_model_free(m);
    return rc;
}
