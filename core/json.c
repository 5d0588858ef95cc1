#include "json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

typedef struct {
    const char *s, *end;
    char *err;
    int depth;
} parser;

static int fail(parser *p, const char *what) {
    if (p->err && !p->err[0]) snprintf(p->err, CDAM_ERR_MAX, "%s", what);
    return -1;
}

static void skip_ws(parser *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static void free_value(json_value *v) {
    if (v->type == JSON_STRING) free(v->str);
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT) {
        for (size_t i = 0; i < v->len; i++) {
            free_value(&v->items[i]);
            if (v->keys) free(v->keys[i]);
        }
        free(v->items);
        free(v->keys);
    }
}

static int hex4(parser *p, unsigned *out) {
    if (p->end - p->s < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    p->s += 4;
    *out = v;
    return 0;
}

// Parses a string starting at the opening quote; *out is malloc'ed.
static int parse_string(parser *p, char **out, size_t *outlen) {
    p->s++;  // opening quote
    // The unescaped string is never longer than the escaped one.
    const char *q = p->s;
    while (q < p->end && *q != '"') q += (*q == '\\' && q + 1 < p->end) ? 2 : 1;
    if (q >= p->end) return fail(p, "unterminated string");
    char *buf = malloc((size_t)(q - p->s) + 1), *w = buf;
    if (!buf) return fail(p, "out of memory");
    while (*p->s != '"') {
        unsigned char c = (unsigned char)*p->s++;
        if (c < 0x20) { free(buf); return fail(p, "control character in string"); }
        if (c != '\\') { *w++ = (char)c; continue; }
        char e = *p->s++;
        unsigned cp;
        switch (e) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u':
            if (hex4(p, &cp) < 0) { free(buf); return fail(p, "bad \\u escape"); }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (p->end - p->s < 6 || p->s[0] != '\\' || p->s[1] != 'u') { free(buf); return fail(p, "lone surrogate"); }
                p->s += 2;
                if (hex4(p, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) { free(buf); return fail(p, "bad surrogate pair"); }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(buf); return fail(p, "lone surrogate");
            }
            if (cp == 0) { free(buf); return fail(p, "NUL in string"); }
            // \uXXXX (6 bytes) encodes to at most 3 bytes, a pair (12 bytes) to 4.
            if (cp < 0x80) *w++ = (char)cp;
            else if (cp < 0x800) { *w++ = (char)(0xC0 | (cp >> 6)); *w++ = (char)(0x80 | (cp & 63)); }
            else if (cp < 0x10000) { *w++ = (char)(0xE0 | (cp >> 12)); *w++ = (char)(0x80 | ((cp >> 6) & 63)); *w++ = (char)(0x80 | (cp & 63)); }
            else { *w++ = (char)(0xF0 | (cp >> 18)); *w++ = (char)(0x80 | ((cp >> 12) & 63)); *w++ = (char)(0x80 | ((cp >> 6) & 63)); *w++ = (char)(0x80 | (cp & 63)); }
            break;
        default: free(buf); return fail(p, "bad escape in string");
        }
    }
    p->s++;  // closing quote
    *w = 0;
    *out = buf;
    if (outlen) *outlen = (size_t)(w - buf);
    return 0;
}

static int parse_number(parser *p, json_value *v) {
    const char *s = p->s;
    if (s < p->end && *s == '-') s++;
    if (s >= p->end || *s < '0' || *s > '9') return fail(p, "bad number");
    if (*s == '0') s++;
    else while (s < p->end && *s >= '0' && *s <= '9') s++;
    int is_int = 1;
    if (s < p->end && *s == '.') {
        is_int = 0;
        s++;
        if (s >= p->end || *s < '0' || *s > '9') return fail(p, "bad number");
        while (s < p->end && *s >= '0' && *s <= '9') s++;
    }
    if (s < p->end && (*s == 'e' || *s == 'E')) {
        is_int = 0;
        s++;
        if (s < p->end && (*s == '+' || *s == '-')) s++;
        if (s >= p->end || *s < '0' || *s > '9') return fail(p, "bad number");
        while (s < p->end && *s >= '0' && *s <= '9') s++;
    }
    char tmp[64];
    size_t n = (size_t)(s - p->s);
    if (n >= sizeof tmp) return fail(p, "number too long");
    memcpy(tmp, p->s, n);
    tmp[n] = 0;
    v->type = JSON_NUMBER;
    v->num = strtod(tmp, NULL);
    if (!isfinite(v->num)) return fail(p, "number out of range");
    if (is_int) {
        // Exact int64 parse; fall back to double-only when it does not fit.
        const char *d = tmp + (tmp[0] == '-');
        uint64_t acc = 0;
        int ok = 1;
        for (; *d; d++) {
            unsigned dig = (unsigned)(*d - '0');
            if (acc > (UINT64_MAX - dig) / 10) { ok = 0; break; }
            acc = acc * 10 + dig;
        }
        if (ok && tmp[0] != '-' && acc <= (uint64_t)INT64_MAX) { v->is_int = 1; v->i = (int64_t)acc; }
        else if (ok && tmp[0] == '-' && acc <= (uint64_t)INT64_MAX) { v->is_int = 1; v->i = -(int64_t)acc; }
    }
    p->s = s;
    return 0;
}

static int parse_value(parser *p, json_value *v);

static int push(parser *p, json_value *v, size_t *cap, int with_keys) {
    if (v->len < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 4;
    json_value *ni = realloc(v->items, nc * sizeof *ni);
    if (!ni) return fail(p, "out of memory");
    v->items = ni;
    if (with_keys) {
        char **nk = realloc(v->keys, nc * sizeof *nk);
        if (!nk) return fail(p, "out of memory");
        v->keys = nk;
    }
    *cap = nc;
    return 0;
}

static int parse_container(parser *p, json_value *v, int is_obj) {
    if (++p->depth > JSON_MAX_DEPTH) return fail(p, "nesting too deep");
    v->type = is_obj ? JSON_OBJECT : JSON_ARRAY;
    p->s++;
    size_t cap = 0;
    skip_ws(p);
    if (p->s < p->end && *p->s == (is_obj ? '}' : ']')) { p->s++; p->depth--; return 0; }
    for (;;) {
        if (push(p, v, &cap, is_obj) < 0) return -1;
        char *key = NULL;
        skip_ws(p);
        if (is_obj) {
            if (p->s >= p->end || *p->s != '"') return fail(p, "expected a member name");
            if (parse_string(p, &key, NULL) < 0) return -1;
            for (size_t i = 0; i < v->len; i++)
                if (!strcmp(v->keys[i], key)) { free(key); return fail(p, "duplicate key"); }
            skip_ws(p);
            if (p->s >= p->end || *p->s != ':') { free(key); return fail(p, "expected ':'"); }
            p->s++;
            v->keys[v->len] = key;
        }
        memset(&v->items[v->len], 0, sizeof(json_value));
        v->len++;  // counted before parsing so a partial child is freed
        if (parse_value(p, &v->items[v->len - 1]) < 0) return -1;
        skip_ws(p);
        if (p->s < p->end && *p->s == ',') { p->s++; continue; }
        if (p->s < p->end && *p->s == (is_obj ? '}' : ']')) { p->s++; break; }
        return fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->depth--;
    return 0;
}

static int literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n)) return fail(p, "unexpected token");
    p->s += n;
    return 0;
}

static int parse_value(parser *p, json_value *v) {
    skip_ws(p);
    if (p->s >= p->end) return fail(p, "unexpected end");
    switch (*p->s) {
    case '{': return parse_container(p, v, 1);
    case '[': return parse_container(p, v, 0);
    case '"': v->type = JSON_STRING; return parse_string(p, &v->str, &v->len);
    case 't': v->type = JSON_BOOL; v->num = 1; return literal(p, "true");
    case 'f': v->type = JSON_BOOL; return literal(p, "false");
    case 'n': v->type = JSON_NULL; return literal(p, "null");
    default: return parse_number(p, v);
    }
}

json_value *json_parse(const char *text, size_t len, char *err) {
    if (err) err[0] = 0;
    parser p = {text, text + len, err, 0};
    json_value *v = calloc(1, sizeof *v);
    if (!v) { if (err) snprintf(err, CDAM_ERR_MAX, "out of memory"); return NULL; }
    const char *start = text;
    if (parse_value(&p, v) == 0) {
        skip_ws(&p);
        if (p.s == p.end) return v;
        fail(&p, "trailing characters");
    }
    if (err) {  // append the offset where parsing stopped
        char what[CDAM_ERR_MAX];
        snprintf(what, sizeof what, "%s", err);
        snprintf(err, CDAM_ERR_MAX, "%.200s at byte %zu", what, (size_t)(p.s - start));
    }
    json_free(v);
    return NULL;
}

void json_free(json_value *v) {
    if (!v) return;
    free_value(v);
    free(v);
}

const json_value *json_get(const json_value *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (!strcmp(obj->keys[i], key)) return &obj->items[i];
    return NULL;
}
