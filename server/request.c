/* request.c - parsing and validation of request bodies: see request.h. */
#include "request.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nettle/base64.h>

int srv_fail(srv_error *e, int status, const char *code, const char *fmt, ...) {
    if (e) {
        e->status = status;
        e->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ---- base64 -------------------------------------------------------------------- */

int srv_base64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len, srv_error *e) {
    *out = NULL;
    *out_len = 0;
    if (len >= 5 && strncmp(s, "data:", 5) == 0) {  // data URL: skip to the payload
        const char *comma = memchr(s, ',', len);
        if (!comma) return srv_fail(e, 400, "bad_base64", "a data: URL without a comma");
        size_t head = (size_t)(comma - s);
        if (head < 7 || strncmp(comma - 7, ";base64", 7) != 0)
            return srv_fail(e, 400, "bad_base64", "a data: URL that is not base64");
        len -= head + 1;
        s = comma + 1;
    }
    int url = 0;
    size_t sig = 0, pad = 0;  // significant characters, '=' seen
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '-' || ch == '_') url = 1;
        if (ch == '=') pad++;
        else if (!isspace(ch)) {
            if (pad) return srv_fail(e, 400, "bad_base64", "base64 data after the '=' padding");
            sig++;
        }
    }
    if (sig == 0) return srv_fail(e, 400, "bad_base64", "empty base64 image");
    if (sig % 4 == 1 || pad > 2 || (pad && (sig + pad) % 4))
        return srv_fail(e, 400, "bad_base64", "base64 of a wrong length (%zu characters)", sig);
    unsigned char *buf = malloc(BASE64_DECODE_LENGTH(len) + 8);
    if (!buf) return srv_fail(e, 500, "internal", "out of memory decoding %zu bytes of base64", len);
    struct base64_decode_ctx ctx;
    if (url) base64url_decode_init(&ctx);
    else base64_decode_init(&ctx);
    size_t n = BASE64_DECODE_LENGTH(len) + 8;
    static const char fill[] = "==";
    size_t missing = (4 - sig % 4) % 4;  // padding the client left out
    if (pad) missing = 0;
    size_t n2 = 8;
    if (!base64_decode_update(&ctx, &n, buf, len, s) ||
        (missing && !base64_decode_update(&ctx, &n2, buf + n, missing, fill)) || !base64_decode_final(&ctx)) {
        free(buf);
        return srv_fail(e, 400, "bad_base64", "the image is not valid base64");
    }
    *out = buf;
    *out_len = n + (missing ? n2 : 0);
    return 0;
}

/* ---- multipart fields -> JSON ---------------------------------------------------- */

cJSON *srv_fields_new(void) { return cJSON_CreateObject(); }

static const char *skip_ws(const char *p) {
    while (isspace((unsigned char)*p)) p++;
    return p;
}

// A whole-string integer (optional sign, digits, surrounding spaces).
static int parse_int_text(const char *s, double *v) {
    const char *p = skip_ws(s);
    if (*p == '+' || *p == '-') p++;
    if (!isdigit((unsigned char)*p)) return 0;
    char *end;
    *v = strtod(skip_ws(s), &end);
    return *skip_ws(end) == 0;
}

static int parse_num_text(const char *s, double *v) {
    const char *p = skip_ws(s);
    if (!*p) return 0;
    char *end;
    *v = strtod(p, &end);
    return end != p && *skip_ws(end) == 0 && isfinite(*v);
}

// Appends the comma-separated items of text to the array field key (created if absent).
static int add_list(cJSON *obj, const char *key, const char *text, int numbers) {
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!arr) {
        if (!(arr = cJSON_AddArrayToObject(obj, key))) return -1;
    } else if (!cJSON_IsArray(arr)) {
        return 0;
    }
    const char *p = text;
    char item[512];
    for (;;) {
        const char *q = strchr(p, ',');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        while (n && isspace((unsigned char)*p)) p++, n--;
        while (n && isspace((unsigned char)p[n - 1])) n--;
        if (n >= sizeof item) n = sizeof item - 1;
        memcpy(item, p, n);
        item[n] = 0;
        double v;
        cJSON *it = numbers && parse_int_text(item, &v) ? cJSON_CreateNumber(v) : cJSON_CreateString(item);
        if (!it) return -1;
        cJSON_AddItemToArray(arr, it);
        if (!q) break;
        p = q + 1;
    }
    return 0;
}

// "H W", "H,W", "HxW" (separators: any run of spaces, commas and x) -> 0, or -1 when the
// text is not exactly two decimal integers so separated. strtol, not sscanf("%d"), whose
// behaviour on out-of-range text is undefined; out-of-range values saturate at LONG_MIN/MAX.
static int size_pair(const char *p, long *h, long *w) {
    char *end;
    if (!isdigit((unsigned char)*p) && *p != '-' && *p != '+') return -1;
    *h = strtol(p, &end, 10);
    if (end == p || !strchr(" ,x", *end) || !*end) return -1;
    p = end;
    while (*p && strchr(" ,x", *p)) p++;
    if (!isdigit((unsigned char)*p) && *p != '-' && *p != '+') return -1;
    *w = strtol(p, &end, 10);
    if (end == p) return -1;
    return *skip_ws(end) == 0 ? 0 : -1;
}

int srv_fields_add(cJSON *obj, const char *key, const char *text) {
    cJSON *v = NULL;
    double d;
    if (!strcmp(key, "methods") || !strcmp(key, "classes")) {
        const char *p = skip_ws(text);
        if (*p == '[') {  // a JSON array in a form field
            cJSON *j = cJSON_Parse(p);
            if (j && cJSON_IsArray(j)) {
                cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
                if (cJSON_AddItemToObject(obj, key, j)) return 0;
                cJSON_Delete(j);  // not added (out of memory): still ours
                return -1;
            }
            cJSON_Delete(j);
        }
        return add_list(obj, key, text, !strcmp(key, "classes"));
    }
    if (!strcmp(key, "size")) {
        const char *p = skip_ws(text);
        long h, w;
        if (*p == '[') v = cJSON_Parse(p);
        else if (size_pair(p, &h, &w) == 0) {  // numbers beyond int stay numbers: the validator says bad_size
            v = cJSON_CreateArray();
            if (v) {
                cJSON_AddItemToArray(v, cJSON_CreateNumber(h));
                cJSON_AddItemToArray(v, cJSON_CreateNumber(w));
            }
        }
    } else if (!strcmp(key, "concept_embedding")) {
        v = cJSON_Parse(text);
    } else if (!strcmp(key, "async")) {
        const char *p = skip_ws(text);
        if (!strcasecmp(p, "true") || !strcmp(p, "1") || !strcasecmp(p, "on") || !strcasecmp(p, "yes")) v = cJSON_CreateTrue();
        else if (!strcasecmp(p, "false") || !strcmp(p, "0") || !strcasecmp(p, "off") || !strcasecmp(p, "no") || !*p)
            v = cJSON_CreateFalse();
    } else if (!strcmp(key, "top_k") || !strcmp(key, "head") || !strcmp(key, "samples") || !strcmp(key, "seed") ||
               !strcmp(key, "sigma") || !strcmp(key, "threshold")) {
        if (parse_num_text(text, &d)) v = cJSON_CreateNumber(d);
    }
    if (!v) v = cJSON_CreateString(text);
    if (!v) return -1;
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    if (cJSON_AddItemToObject(obj, key, v)) return 0;
    cJSON_Delete(v);  // not added (out of memory): still ours
    return -1;
}

/* ---- POST /explain fields ------------------------------------------------------------ */

void srv_explain_req_free(srv_explain_req *r) {
    free(r->embedding);
    r->embedding = NULL;
}

// Class index from a JSON item: an integer index, or a label (exact, then case-insensitive).
static int class_of(const cJSON *it, const vit_model *m, srv_error *e) {
    const vit_config *c = &m->cfg;
    if (cJSON_IsNumber(it)) {
        double v = it->valuedouble;
        if (v != floor(v) || v < 0 || v >= c->C)
            return srv_fail(e, 400, "unknown_class", "class index %g is out of range 0..%d", v, c->C - 1);
        return (int)v;
    }
    if (!cJSON_IsString(it)) return srv_fail(e, 400, "bad_request", "a class must be an index or a label name");
    const char *s = it->valuestring;
    for (int i = 0; i < c->C; i++)
        if (m->labels && m->labels[i] && !strcmp(m->labels[i], s)) return i;
    for (int i = 0; i < c->C; i++)
        if (m->labels && m->labels[i] && !strcasecmp(m->labels[i], s)) return i;
    double v;
    if (parse_int_text(s, &v)) {
        if (v < 0 || v >= c->C) return srv_fail(e, 400, "unknown_class", "class index %s is out of range 0..%d", s, c->C - 1);
        return (int)v;
    }
    return srv_fail(e, 400, "unknown_class", "no class is named \"%.200s\"", s);
}

// An integer field in [lo, hi]; absent: *v unchanged. 0 or -1.
static int int_field(const cJSON *root, const char *key, long lo, long hi, long *v, srv_error *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < (double)lo ||
        it->valuedouble > (double)hi)
        return srv_fail(e, 400, "bad_request", "%s must be an integer in %ld..%ld", key, lo, hi);
    *v = (long)it->valuedouble;
    return 0;
}

static int num_field(const cJSON *root, const char *key, double lo, double hi, int lo_open, double *v, srv_error *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!it || cJSON_IsNull(it)) return 0;
    // the value is used as a float: an open lower bound must hold after the conversion too
    // (sigma 1e-63 is > 0 as a double but 0 as a float; found by tests/fuzz)
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble > hi ||
        (lo_open ? it->valuedouble <= lo || (float)it->valuedouble <= (float)lo : it->valuedouble < lo))
        return srv_fail(e, 400, "bad_request", "%s must be a number in %s%g, %g]", key, lo_open ? "(" : "[", lo, hi);
    *v = it->valuedouble;
    return 0;
}

int srv_parse_explain(const cJSON *root, const vit_model *m, int max_h, int max_w, srv_explain_req *r, srv_error *e) {
    const vit_config *c = &m->cfg;
    memset(r, 0, sizeof *r);
    r->H = r->W = c->g0 * c->P;
    r->top_k = 5;
    r->head = -1;
    r->samples = 16;
    r->sigma = 0.1f;
    if (!cJSON_IsObject(root)) return srv_fail(e, 400, "bad_json", "the body must be a JSON object");

    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "methods");
    if (!it || cJSON_IsNull(it)) {
        r->methods[r->nmethods++] = EXPLAIN_CDAM;
    } else {
        if (cJSON_IsString(it)) {  // a single name is accepted as a list of one
            int k = explain_method_parse(it->valuestring);
            if (k < 0) return srv_fail(e, 400, "unknown_method", "unknown method \"%.100s\" (cdam, smooth_cdam, integrated_cdam, am, rp, tam)", it->valuestring);
            r->methods[r->nmethods++] = k;
        } else if (!cJSON_IsArray(it)) {
            return srv_fail(e, 400, "bad_request", "methods must be a list of method names");
        } else {
            const cJSON *x;
            cJSON_ArrayForEach(x, it) {
                if (!cJSON_IsString(x)) return srv_fail(e, 400, "bad_request", "methods must be a list of method names");
                int k = explain_method_parse(x->valuestring);
                if (k < 0)
                    return srv_fail(e, 400, "unknown_method", "unknown method \"%.100s\" (cdam, smooth_cdam, integrated_cdam, am, rp, tam)",
                                    x->valuestring);
                int dup = 0;
                for (int i = 0; i < r->nmethods; i++) dup |= r->methods[i] == k;
                if (!dup) r->methods[r->nmethods++] = k;
            }
            if (r->nmethods == 0) return srv_fail(e, 400, "bad_request", "methods is an empty list");
        }
    }

    int nextra = 0;
    it = cJSON_GetObjectItemCaseSensitive(root, "concept");
    if (it && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it)) return srv_fail(e, 400, "bad_request", "concept must be a concept id (a string)");
        if (strlen(it->valuestring) >= sizeof r->concept_id)
            return srv_fail(e, 400, "unknown_concept", "no concept has the id \"%.64s\"", it->valuestring);
        strcpy(r->concept_id, it->valuestring);
        r->has_concept = 1;
        nextra++;
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "concept_embedding");
    if (it && !cJSON_IsNull(it)) {
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != c->D)
            return srv_fail(e, 400, "bad_embedding", "concept_embedding must be a list of %d numbers (the embedding size)", c->D);
        if (!(r->embedding = malloc(sizeof(float) * (size_t)c->D))) return srv_fail(e, 500, "internal", "out of memory");
        int i = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, it) {
            if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || fabs(x->valuedouble) > 3.0e38) {
                srv_explain_req_free(r);
                return srv_fail(e, 400, "bad_embedding", "concept_embedding[%d] is not a finite number", i);
            }
            r->embedding[i++] = (float)x->valuedouble;
        }
        r->has_embedding = 1;
        nextra++;
    }

    it = cJSON_GetObjectItemCaseSensitive(root, "classes");
    r->default_class = !it || cJSON_IsNull(it);
    if (it && !cJSON_IsNull(it)) {
        const cJSON *one = it, *x;
        if (!cJSON_IsArray(it) && !cJSON_IsNumber(it) && !cJSON_IsString(it)) {
            srv_explain_req_free(r);
            return srv_fail(e, 400, "bad_request", "classes must be a list of class indices or label names");
        }
        int n = cJSON_IsArray(it) ? cJSON_GetArraySize(it) : 1;
        if (n + nextra > SRV_MAX_TARGETS) {
            srv_explain_req_free(r);
            return srv_fail(e, 400, "too_many_classes", "%d targets in one request; at most %d", n + nextra, SRV_MAX_TARGETS);
        }
        if (c->C == 0 && n > 0) {
            srv_explain_req_free(r);
            return srv_fail(e, 400, "unknown_class", "the model has no classification head; explain a concept instead");
        }
        if (cJSON_IsArray(it)) {
            cJSON_ArrayForEach(x, it) {
                int k = class_of(x, m, e);
                if (k < 0) return srv_explain_req_free(r), -1;
                r->classes[r->nclasses++] = k;
            }
        } else {
            int k = class_of(one, m, e);
            if (k < 0) return srv_explain_req_free(r), -1;
            r->classes[r->nclasses++] = k;
        }
    }
    if (r->nclasses == 0 && nextra == 0 && c->C == 0) {
        srv_explain_req_free(r);
        return srv_fail(e, 400, "unknown_class", "the model has no classification head: give a concept or concept_embedding");
    }
    if (c->C == 0) r->default_class = 0;
    if (r->nclasses == 0 && nextra == 0 && !r->default_class) {
        srv_explain_req_free(r);
        return srv_fail(e, 400, "bad_request", "no targets: classes is empty and there is no concept");
    }
    if (r->default_class && 1 + nextra > SRV_MAX_TARGETS) {
        srv_explain_req_free(r);
        return srv_fail(e, 400, "too_many_classes", "too many targets");
    }

    it = cJSON_GetObjectItemCaseSensitive(root, "size");
    if (it && !cJSON_IsNull(it)) {
        const cJSON *h = cJSON_GetArrayItem(it, 0), *w = cJSON_GetArrayItem(it, 1);
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsNumber(h) || !cJSON_IsNumber(w) ||
            h->valuedouble != floor(h->valuedouble) || w->valuedouble != floor(w->valuedouble) || h->valuedouble < c->P ||
            w->valuedouble < c->P || h->valuedouble > 1e6 || w->valuedouble > 1e6) {
            srv_explain_req_free(r);
            return srv_fail(e, 400, "bad_size", "size must be [height, width], positive multiples of the patch size %d", c->P);
        }
        int H = (int)h->valuedouble, W = (int)w->valuedouble;
        if (H % c->P || W % c->P) {
            srv_explain_req_free(r);
            return srv_fail(e, 400, "bad_size", "size %dx%d is not a multiple of the patch size %d", H, W, c->P);
        }
        if (H > max_h || W > max_w) {
            srv_explain_req_free(r);
            return srv_fail(e, 400, "bad_size", "size %dx%d is over the maximum %dx%d", H, W, max_h, max_w);
        }
        r->H = H, r->W = W;
    }

    long v;
    double d;
    v = r->top_k;
    if (int_field(root, "top_k", 1, 100000, &v, e) < 0) return srv_explain_req_free(r), -1;
    r->top_k = (int)(v < c->C ? v : c->C);
    v = -1;
    if (int_field(root, "head", 0, c->H - 1, &v, e) < 0) return srv_explain_req_free(r), -1;
    r->head = (int)v;
    v = r->samples;
    if (int_field(root, "samples", 1, 256, &v, e) < 0) return srv_explain_req_free(r), -1;
    r->samples = (int)v;
    v = 0;
    if (int_field(root, "seed", 0, 9007199254740991L, &v, e) < 0) return srv_explain_req_free(r), -1;
    r->seed = (uint64_t)v;
    d = r->sigma;
    if (num_field(root, "sigma", 0, 100, 1, &d, e) < 0) return srv_explain_req_free(r), -1;
    r->sigma = (float)d;
    d = 0;
    if (num_field(root, "threshold", 0, 1, 0, &d, e) < 0) return srv_explain_req_free(r), -1;
    r->threshold = (float)d;

    it = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (it && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it) || (strcmp(it->valuestring, "json") && strcmp(it->valuestring, "png"))) {
            srv_explain_req_free(r);
            return srv_fail(e, 400, "bad_request", "format must be \"json\" or \"png\"");
        }
        r->png = !strcmp(it->valuestring, "png");
    }
    it = cJSON_GetObjectItemCaseSensitive(root, "async");
    if (it && !cJSON_IsNull(it)) {
        if (!cJSON_IsBool(it)) {
            srv_explain_req_free(r);
            return srv_fail(e, 400, "bad_request", "async must be true or false");
        }
        r->async = cJSON_IsTrue(it);
    }
    return 0;
}
