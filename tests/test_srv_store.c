/* test_srv_store.c - server/store.c: add/get/list/delete, reopening the directory
 * (bit-identical names, counts, times and embeddings), corrupt files skipped with a log
 * line naming them, leftover temporary files removed, write failures (a file-size limit
 * always; a read-only directory unless running as root) leaving the store unchanged,
 * names with quotes/controls/unicode, the 10000-concept limit, concurrent adds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "store.h"

#define DIM 8

static char root[256];

// ------------------------------------------------------------------ helpers

typedef struct { int n; char lines[64][1100]; } logbuf;

static void log_fn(void *ctx, const char *msg) {
    logbuf *l = ctx;
    if (l->n < 64) snprintf(l->lines[l->n], sizeof l->lines[0], "%s", msg);
    l->n++;
}

// Index of the first log line containing both a and b, or -1.
static int log_find(const logbuf *l, const char *a, const char *b) {
    for (int i = 0; i < l->n && i < 64; i++)
        if (strstr(l->lines[i], a) && (!b || strstr(l->lines[i], b))) return i;
    return -1;
}

static void path_of(char *out, size_t cap, const char *dir, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static void write_text(const char *dir, const char *name, const char *text, size_t len) {
    char p[512];
    path_of(p, sizeof p, dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(2); }
    fwrite(text, 1, len, f);
    fclose(f);
}

static int file_exists(const char *dir, const char *name) {
    char p[512];
    path_of(p, sizeof p, dir, name);
    return access(p, F_OK) == 0;
}

// Entries of dir that are not "." or "..".
static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    if (system(cmd)) fprintf(stderr, "warning: could not remove %s\n", dir);
}

static void make_emb(float *e, int seed) {
    for (int i = 0; i < DIM; i++) e[i] = sinf((float)(seed * DIM + i) * 0.7f) * powf(10.0f, (float)(i % 5) - 2.0f);
    if (seed % 3 == 0) { e[0] = -0.0f; e[1] = 1.4e-45f; e[2] = 3.4028235e38f; e[3] = -1.17549435e-38f; }
}

// Same bits (so -0.0 vs 0.0 counts as a difference).
static int same_floats(const float *a, const float *b, int n) { return memcmp(a, b, sizeof *a * (size_t)n) == 0; }

static int same_info(const srv_concept_info *a, const srv_concept_info *b) {
    return !strcmp(a->id, b->id) && !strcmp(a->name, b->name) && a->images == b->images &&
           memcmp(&a->created, &b->created, sizeof a->created) == 0;
}

// ------------------------------------------------------------------ tests

static void test_basic(void) {
    char dir[300], err[CDAM_ERR_MAX];
    snprintf(dir, sizeof dir, "%s/basic/nested", root);
    srv_store *st = NULL;
    logbuf lg = {0};
    CHECK(srv_store_open(dir, DIM, log_fn, &lg, &st, err) == 0 && st, "open creates a nested directory");
    struct stat sb;
    CHECK(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & 0777) == 0700, "directory mode 0700 (%o)",
          (unsigned)(sb.st_mode & 0777));
    CHECK(srv_store_count(st) == 0 && srv_store_dim(st) == DIM && lg.n == 0, "empty store");

    const char *names[] = {
        "stripes",
        "say \"hi\" \\ back\\slash",
        "tab\there\nnewline\r\x01\x1f ctl",
        "zèbre — 斑马 🦓",
        "{\"json\": [1, 2]} </script>",
        // exactly 128 bytes, ending in a 2-byte character
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9",
    };
    enum { NN = sizeof names / sizeof *names };
    CHECK(strlen(names[NN - 1]) == 128, "test name is 128 bytes");
    srv_concept_info info[NN];
    float emb[NN][DIM];
    int ok = 1;
    for (int i = 0; i < NN; i++) {
        make_emb(emb[i], i);
        err[0] = 0;
        int rc = srv_store_add(st, names[i], i + 1, emb[i], &info[i], err);
        if (rc) { ok = 0; fprintf(stderr, "add %d: %d %s\n", i, rc, err); }
    }
    CHECK(ok, "adds succeed");
    CHECK(srv_store_count(st) == NN, "count %d", srv_store_count(st));
    int idok = 1;
    for (int i = 0; i < NN; i++) {
        idok &= strlen(info[i].id) == 32 && strspn(info[i].id, "0123456789abcdef") == 32;
        for (int j = 0; j < i; j++) idok &= strcmp(info[i].id, info[j].id) != 0;
    }
    CHECK(idok, "ids are 32 lowercase hex, distinct");
    CHECK(info[1].images == 2 && !strcmp(info[1].name, names[1]) && info[1].created > 1.6e9, "info filled");
    int files = 1;
    for (int i = 0; i < NN; i++) {
        char fn[64];
        snprintf(fn, sizeof fn, "%.32s.json", info[i].id);
        files &= file_exists(dir, fn);
    }
    CHECK(files && count_files(dir) == NN, "one file per concept, nothing else (%d files)", count_files(dir));

    srv_concept_info gi;
    float ge[DIM];
    int getok = 1;
    for (int i = 0; i < NN; i++)
        getok &= srv_store_get(st, info[i].id, &gi, ge) == 0 && same_info(&gi, &info[i]) && same_floats(ge, emb[i], DIM);
    CHECK(getok, "get returns what was added");
    CHECK(srv_store_get(st, info[0].id, NULL, NULL) == 0, "get with NULL outputs");

    srv_concept_info *all = NULL;
    int n = -1;
    CHECK(srv_store_list(st, &all, &n) == 0 && n == NN, "list %d", n);
    int sorted = 1;
    for (int i = 1; i < n; i++)
        sorted &= all[i - 1].created < all[i].created ||
                  (all[i - 1].created == all[i].created && strcmp(all[i - 1].id, all[i].id) < 0);
    CHECK(sorted, "list sorted by created then id");
    int inorder = 1;  // created increases with each add (microsecond stamps; equal only if in the same microsecond)
    for (int i = 0; i < n; i++) inorder &= all[i].created == info[i].created;
    CHECK(inorder, "list holds the infos of the adds");
    free(all);

    // malformed / unknown ids
    CHECK(srv_store_get(st, "0123456789abcdef0123456789abcdef", &gi, ge) == CDAM_ENOTFOUND, "unknown id");
    char up[33];
    snprintf(up, sizeof up, "%s", info[0].id);
    for (char *c = up; *c; c++) if (*c >= 'a' && *c <= 'f') *c = (char)(*c - 32);
    int has_alpha = strcmp(up, info[0].id) != 0;
    CHECK(!has_alpha || srv_store_get(st, up, &gi, NULL) == CDAM_ENOTFOUND, "uppercase id not found");
    char longer[40];
    snprintf(longer, sizeof longer, "%sa", info[0].id);
    CHECK(srv_store_get(st, longer, &gi, NULL) == CDAM_ENOTFOUND, "id with an extra character");
    CHECK(srv_store_get(st, "../../etc/passwd", &gi, NULL) == CDAM_ENOTFOUND, "path id");
    CHECK(srv_store_get(st, NULL, &gi, NULL) == CDAM_ENOTFOUND, "NULL id");
    CHECK(srv_store_get(st, info[0].id + 1, &gi, NULL) == CDAM_ENOTFOUND, "31-char id");

    // invalid adds leave everything unchanged
    float bad[DIM];
    make_emb(bad, 1);
    char big[200];
    memset(big, 'x', 129);
    big[129] = 0;
    CHECK(srv_store_add(st, "", 1, bad, NULL, err) == CDAM_EINVAL, "empty name refused");
    CHECK(srv_store_add(st, NULL, 1, bad, NULL, err) == CDAM_EINVAL, "NULL name refused");
    CHECK(srv_store_add(st, big, 1, bad, NULL, err) == CDAM_EINVAL, "129-byte name refused");
    CHECK(srv_store_add(st, "bad \xff utf8", 1, bad, NULL, err) == CDAM_EINVAL, "invalid UTF-8 refused");
    CHECK(srv_store_add(st, "overlong \xc0\xaf", 1, bad, NULL, err) == CDAM_EINVAL, "overlong UTF-8 refused");
    CHECK(srv_store_add(st, "surrogate \xed\xa0\x80", 1, bad, NULL, err) == CDAM_EINVAL, "UTF-8 surrogate refused");
    CHECK(srv_store_add(st, "cut \xe6\x96", 1, bad, NULL, err) == CDAM_EINVAL, "truncated UTF-8 refused");
    CHECK(srv_store_add(st, "x", -1, bad, NULL, err) == CDAM_EINVAL, "negative images refused");
    CHECK(srv_store_add(st, "x", 1, NULL, NULL, err) == CDAM_EINVAL, "NULL embedding refused");
    bad[5] = NAN;
    CHECK(srv_store_add(st, "x", 1, bad, NULL, err) == CDAM_EINVAL, "NaN refused");
    bad[5] = -INFINITY;
    CHECK(srv_store_add(st, "x", 1, bad, NULL, err) == CDAM_EINVAL && strstr(err, "[5]"), "inf refused, named: %s", err);
    CHECK(srv_store_count(st) == NN && count_files(dir) == NN, "refused adds changed nothing");

    // delete
    char fn0[64];
    snprintf(fn0, sizeof fn0, "%.32s.json", info[0].id);
    CHECK(srv_store_delete(st, info[0].id, err) == 0, "delete");
    CHECK(!file_exists(dir, fn0) && srv_store_get(st, info[0].id, &gi, NULL) == CDAM_ENOTFOUND, "deleted: file and entry gone");
    CHECK(srv_store_delete(st, info[0].id, err) == CDAM_ENOTFOUND, "second delete: not found");
    CHECK(srv_store_delete(st, "nothex!", err) == CDAM_ENOTFOUND, "delete malformed id: not found");
    CHECK(srv_store_count(st) == NN - 1, "count after delete");
    // a file removed behind the store's back still deletes cleanly
    char fn1[64], p1[512];
    snprintf(fn1, sizeof fn1, "%.32s.json", info[1].id);
    path_of(p1, sizeof p1, dir, fn1);
    unlink(p1);
    CHECK(srv_store_delete(st, info[1].id, err) == 0 && srv_store_count(st) == NN - 2, "delete of a vanished file");
    srv_store_close(st);

    // reopen: everything bit-identical
    lg.n = 0;
    CHECK(srv_store_open(dir, DIM, log_fn, &lg, &st, err) == 0, "reopen");
    CHECK(lg.n == 0, "reopen logs nothing (%d: %s)", lg.n, lg.n ? lg.lines[0] : "");
    CHECK(srv_store_count(st) == NN - 2, "reopen count %d", srv_store_count(st));
    getok = 1;
    for (int i = 2; i < NN; i++)
        getok &= srv_store_get(st, info[i].id, &gi, ge) == 0 && same_info(&gi, &info[i]) && same_floats(ge, emb[i], DIM);
    CHECK(getok, "reopened concepts bit-identical (names with quotes, controls, unicode; -0, denormal, FLT_MAX)");
    CHECK(srv_store_get(st, info[0].id, &gi, NULL) == CDAM_ENOTFOUND, "deleted concept stays deleted");
    srv_store_close(st);
    srv_store_close(NULL);

    // opened with another dim: every file is skipped with a reason
    lg.n = 0;
    CHECK(srv_store_open(dir, DIM + 1, log_fn, &lg, &st, err) == 0 && srv_store_count(st) == 0, "other dim: nothing loaded");
    CHECK(lg.n == NN - 2 && log_find(&lg, info[2].id, "dim") >= 0, "other dim: each file logged (%d)", lg.n);
    srv_store_close(st);

    // open errors
    char fpath[400];
    snprintf(fpath, sizeof fpath, "%s/plainfile", root);
    write_text(root, "plainfile", "x", 1);
    CHECK(srv_store_open(fpath, DIM, NULL, NULL, &st, err) == CDAM_EIO && st == NULL, "open on a regular file: EIO");
    snprintf(fpath, sizeof fpath, "%s/plainfile/sub", root);
    CHECK(srv_store_open(fpath, DIM, NULL, NULL, &st, err) == CDAM_EIO, "open below a regular file: EIO (%s)", err);
    CHECK(srv_store_open(dir, 0, NULL, NULL, &st, err) == CDAM_EINVAL, "dim 0 refused");
    CHECK(srv_store_open(NULL, DIM, NULL, NULL, &st, err) == CDAM_EINVAL, "NULL dir refused");
}

// A concept file with the given pieces (raw JSON text for each value).
static void write_concept(const char *dir, const char *fname, const char *id, const char *name, const char *images,
                          const char *dim, const char *embedding) {
    char text[4096];
    int n = snprintf(text, sizeof text, "{\"id\": %s, \"name\": %s, \"images\": %s, \"created\": 1764000000.5, \"dim\": %s, \"embedding\": %s}",
                     id, name, images, dim, embedding);
    write_text(dir, fname, text, (size_t)n);
}

#define H(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c  // 32 x c

static void test_corrupt(void) {
    char dir[300], err[CDAM_ERR_MAX];
    snprintf(dir, sizeof dir, "%s/corrupt", root);
    srv_store *st;
    CHECK(srv_store_open(dir, DIM, NULL, NULL, &st, err) == 0, "open");
    float e[DIM];
    make_emb(e, 4);
    srv_concept_info good;
    CHECK(srv_store_add(st, "good one", 2, e, &good, err) == 0, "add good");
    srv_store_close(st);

    const char *E8 = "[1, 2, 3, 4, 5, 6, 7, 8]";
    // a valid hand-written file also loads (whitespace, key order, integer values, \u escapes)
    {
        char t[512];
        int n = snprintf(t, sizeof t, "\n { \"embedding\": [1,2,3,4,5,6,7,8.5e-3], \"dim\": 8, \"created\": 1764000000, \"images\": 0,"
                                      " \"name\": \"hand \\u00e9\\ud83e\\udd93\", \"id\": \"%s\" } \n", H("1"));
        write_text(dir, H("1") ".json", t, (size_t)n);
    }
    // corrupt files, each for one reason
    write_text(dir, H("2") ".json", "garbage\x01\x02 not json", 18);
    {
        char t[512];
        int n = snprintf(t, sizeof t, "{\"id\": \"%s\", \"name\": \"x\", \"images\": 1, \"created\": 1, \"dim\": 8, \"embedding\": [1, 2, 3", H("3"));
        write_text(dir, H("3") ".json", t, (size_t)n);  // truncated
    }
    write_concept(dir, H("4") ".json", "\"" H("4") "\"", "\"x\"", "1", "9", "[1, 2, 3, 4, 5, 6, 7, 8, 9]");
    write_concept(dir, H("5") ".json", "\"" H("5") "\"", "\"x\"", "1", "8", "[1, 2, NaN, 4, 5, 6, 7, 8]");
    write_concept(dir, H("6") ".json", "\"" H("6") "\"", "\"x\"", "1", "8", "[1, 2, 1e999, 4, 5, 6, 7, 8]");
    write_concept(dir, H("7") ".json", "\"" H("7") "\"", "\"x\"", "1", "8", "[1, 2, 1e39, 4, 5, 6, 7, 8]");
    write_concept(dir, H("8") ".json", "\"" H("9") "\"", "\"x\"", "1", "8", E8);
    {
        size_t n = 4u << 20;
        char *huge = malloc(n);
        int k = snprintf(huge, n, "{\"id\": \"%s\", \"name\": \"x\", \"images\": 1, \"created\": 1, \"dim\": 8, \"embedding\": [1,2,3,4,5,6,7,8], \"pad\": \"", H("9"));
        memset(huge + k, 'p', n - (size_t)k - 2);
        memcpy(huge + n - 2, "\"}", 2);
        write_text(dir, H("9") ".json", huge, n);
        free(huge);
    }
    write_text(dir, H("a") ".json", "", 0);
    {
        char nm[200];
        nm[0] = '"';
        memset(nm + 1, 'n', 129);
        strcpy(nm + 130, "\"");
        write_concept(dir, H("b") ".json", "\"" H("b") "\"", nm, "1", "8", E8);
    }
    write_concept(dir, H("c") ".json", "\"" H("c") "\"", "\"\"", "1", "8", E8);
    write_concept(dir, H("d") ".json", "\"" H("d") "\"", "\"x\"", "1", "8", "[1, 2, 3, 4, 5, 6, 7]");
    write_concept(dir, H("e") ".json", "\"" H("e") "\"", "\"x\"", "1", "8", "[1, 2, 3, 4, 5, 6, 7, 8, 9]");
    write_concept(dir, H("f") ".json", "\"" H("f") "\"", "\"x\"", "1", "8", "[1, 2, 3, \"4\", 5, 6, 7, 8]");
    const char *more[][3] = {  // file id, what to change, expected reason
        {"0123456789abcdef0123456789abcd01", "images=-1", "images"},
        {"0123456789abcdef0123456789abcd02", "images=1.5", "images"},
        {"0123456789abcdef0123456789abcd03", "array", "object"},
        {"0123456789abcdef0123456789abcd04", "nul", "NUL"},
        {"0123456789abcdef0123456789abcd05", "noid", "id"},
        {"0123456789abcdef0123456789abcd06", "dir", "regular"},
        {"0123456789abcdef0123456789abcd07", "trailing", "JSON"},
        {"0123456789abcdef0123456789abcd08", "badutf8", "name"},
        {"0123456789abcdef0123456789abcd09", "nodim", "dim"},
    };
    enum { NMORE = sizeof more / sizeof *more };
    for (int i = 0; i < NMORE; i++) {
        char fn[64], idq[40];
        snprintf(fn, sizeof fn, "%s.json", more[i][0]);
        snprintf(idq, sizeof idq, "\"%s\"", more[i][0]);
        const char *w = more[i][1];
        if (!strcmp(w, "images=-1")) write_concept(dir, fn, idq, "\"x\"", "-1", "8", E8);
        else if (!strcmp(w, "images=1.5")) write_concept(dir, fn, idq, "\"x\"", "1.5", "8", E8);
        else if (!strcmp(w, "array")) write_text(dir, fn, "[1, 2]", 6);
        else if (!strcmp(w, "nul")) write_text(dir, fn, "{\"id\": 1}\0xx", 12);
        else if (!strcmp(w, "noid")) write_concept(dir, fn, "7", "\"x\"", "1", "8", E8);
        else if (!strcmp(w, "dir")) { char p[512]; path_of(p, sizeof p, dir, fn); mkdir(p, 0700); }
        else if (!strcmp(w, "trailing")) {
            char t[512];
            int n = snprintf(t, sizeof t, "{\"id\": \"%s\", \"name\": \"x\", \"images\": 1, \"created\": 1, \"dim\": 8, \"embedding\": %s} {}", more[i][0], E8);
            write_text(dir, fn, t, (size_t)n);
        } else if (!strcmp(w, "badutf8")) write_concept(dir, fn, idq, "\"bad \xff\"", "1", "8", E8);
        else if (!strcmp(w, "nodim")) {
            char t[512];
            int n = snprintf(t, sizeof t, "{\"id\": \"%s\", \"name\": \"x\", \"images\": 1, \"created\": 1, \"embedding\": %s}", more[i][0], E8);
            write_text(dir, fn, t, (size_t)n);
        }
    }
    // leftover temporary files, and unrelated files that must be left alone
    write_text(dir, "." H("5") ".json.tmp", "{\"id\": ", 7);
    write_text(dir, "." H("6") ".json.tmp", "", 0);
    write_text(dir, "README", "hello", 5);
    write_text(dir, "notes.json", "{}", 2);
    write_text(dir, H("A") ".json", "{}", 2);     // uppercase: not a concept name
    write_text(dir, ".other.tmp", "x", 1);

    logbuf lg = {0};
    CHECK(srv_store_open(dir, DIM, log_fn, &lg, &st, err) == 0, "open with corrupt files");
    CHECK(srv_store_count(st) == 2, "good files loaded, bad skipped (count %d)", srv_store_count(st));
    srv_concept_info gi;
    float ge[DIM];
    CHECK(srv_store_get(st, good.id, &gi, ge) == 0 && same_floats(ge, e, DIM) && same_info(&gi, &good), "good concept intact");
    const float hand[DIM] = {1, 2, 3, 4, 5, 6, 7, 8.5e-3f};
    CHECK(srv_store_get(st, H("1"), &gi, ge) == 0 && same_floats(ge, hand, DIM) && !strcmp(gi.name, "hand \xc3\xa9\xf0\x9f\xa6\x93") &&
              gi.images == 0 && gi.created == 1764000000.0,
          "hand-written file loads, \\u escapes decoded (%s)", gi.name);
    const char *exp[][2] = {
        {H("2"), "not valid JSON"}, {H("3"), "not valid JSON"}, {H("4"), "dim"},     {H("5"), "not valid JSON"},
        {H("6"), "finite"},         {H("7"), "finite"},         {H("8"), "\"id\""},  {H("9"), "too large"},
        {H("a"), "empty"},          {H("b"), "\"name\""},       {H("c"), "\"name\""}, {H("d"), "has 7 values"},
        {H("e"), "has 9 values"},      {H("f"), "not a number"},
    };
    int nexp = (int)(sizeof exp / sizeof *exp);
    for (int i = 0; i < nexp; i++) {
        char fn[64];
        snprintf(fn, sizeof fn, "/%s.json: ", exp[i][0]);
        CHECK(log_find(&lg, fn, exp[i][1]) >= 0 && log_find(&lg, dir, fn) >= 0, "log names %s with \"%s\"", fn, exp[i][1]);
    }
    for (int i = 0; i < NMORE; i++) {
        char fn[64];
        snprintf(fn, sizeof fn, "/%s.json: ", more[i][0]);
        CHECK(log_find(&lg, fn, more[i][2]) >= 0, "log names %s (%s) with \"%s\"", fn, more[i][1], more[i][2]);
    }
    CHECK(log_find(&lg, "." H("5") ".json.tmp", "removed") >= 0 && log_find(&lg, "." H("6") ".json.tmp", "removed") >= 0,
          "temporary files reported");
    CHECK(lg.n == nexp + NMORE + 2, "one log line per bad file (%d lines, want %d)", lg.n, nexp + NMORE + 2);
    CHECK(!file_exists(dir, "." H("5") ".json.tmp") && !file_exists(dir, "." H("6") ".json.tmp"), "temporary files removed");
    CHECK(file_exists(dir, "README") && file_exists(dir, "notes.json") && file_exists(dir, ".other.tmp") &&
              file_exists(dir, H("2") ".json"),
          "unrelated and corrupt files left alone");
    for (int i = 0; i < lg.n && i < 64; i++) printf("  log: %.150s\n", lg.lines[i]);
    srv_store_close(st);

    // no log callback: still opens
    CHECK(srv_store_open(dir, DIM, NULL, NULL, &st, err) == 0 && srv_store_count(st) == 2, "open without a log");
    srv_store_close(st);
}

static void test_write_failures(void) {
    char dir[300], err[CDAM_ERR_MAX];
    snprintf(dir, sizeof dir, "%s/fail", root);
    srv_store *st;
    CHECK(srv_store_open(dir, DIM, NULL, NULL, &st, err) == 0, "open");
    float e[DIM];
    make_emb(e, 7);
    srv_concept_info a;
    CHECK(srv_store_add(st, "kept", 1, e, &a, err) == 0, "add");

    // a file-size limit makes the write fail half-way (works as root too)
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 64;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    srv_concept_info b;
    err[0] = 0;
    int rc = srv_store_add(st, "too big", 1, e, &b, err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    CHECK(rc == CDAM_EIO, "write over the size limit: CDAM_EIO (got %d)", rc);
    CHECK(strstr(err, "too large") != NULL && strstr(err, dir) != NULL, "err has the errno text and path: %s", err);
    CHECK(srv_store_count(st) == 1 && count_files(dir) == 1, "failed add left no file (%d files) and no entry", count_files(dir));

    if (geteuid() == 0) {
        printf("  (running as root: read-only directory check skipped, root ignores modes)\n");
    } else {
        chmod(dir, 0500);
        rc = srv_store_add(st, "read-only", 1, e, &b, err);
        CHECK(rc == CDAM_ENOSPC, "add into a read-only directory: CDAM_ENOSPC (got %d: %s)", rc, err);
        CHECK(strstr(err, "ermission") != NULL, "err has the errno text: %s", err);
        CHECK(srv_store_count(st) == 1 && count_files(dir) == 1, "read-only: store unchanged");
        rc = srv_store_delete(st, a.id, err);
        CHECK(rc == CDAM_ENOSPC && srv_store_get(st, a.id, NULL, NULL) == 0, "delete in a read-only directory fails, entry kept");
        srv_store *ro;
        CHECK(srv_store_open(dir, DIM, NULL, NULL, &ro, err) == 0 && srv_store_count(ro) == 1 &&
                  srv_store_get(ro, a.id, NULL, NULL) == 0,
              "read-only directory still opens with its concepts");
        srv_store_close(ro);
        chmod(dir, 0700);
    }
    CHECK(srv_store_add(st, "after", 1, e, &b, err) == 0 && srv_store_count(st) == 2, "adds work again");
    srv_store_close(st);
    CHECK(srv_store_open(dir, DIM, NULL, NULL, &st, err) == 0 && srv_store_count(st) == 2, "reopen after failures");
    srv_store_close(st);
}

// Creates 10001 files: on a disk file system that costs seconds of file creation, so it
// runs on /dev/shm (tmpfs) when there is one.
static void test_limit(void) {
    char base[300], dir[320], err[CDAM_ERR_MAX];
    snprintf(base, sizeof base, "/dev/shm/test_srv_store.XXXXXX");
    int shm = access("/dev/shm", W_OK) == 0 && mkdtemp(base) != NULL;
    if (!shm) snprintf(base, sizeof base, "%s", root);
    snprintf(dir, sizeof dir, "%s/limit", base);
    mkdir(dir, 0700);
    // SRV_STORE_MAX + 1 valid files written directly (dim 1)
    for (int i = 0; i <= SRV_STORE_MAX; i++) {
        char id[33], fn[48], t[256];
        snprintf(id, sizeof id, "%032x", i);
        snprintf(fn, sizeof fn, "%s.json", id);
        int n = snprintf(t, sizeof t, "{\"id\":\"%s\",\"name\":\"c%d\",\"images\":1,\"created\":%d,\"dim\":1,\"embedding\":[%d]}", id, i, i, i);
        write_text(dir, fn, t, (size_t)n);
    }
    logbuf lg = {0};
    srv_store *st;
    CHECK(srv_store_open(dir, 1, log_fn, &lg, &st, err) == 0, "open 10001 files");
    CHECK(srv_store_count(st) == SRV_STORE_MAX, "loads %d (count %d)", SRV_STORE_MAX, srv_store_count(st));
    CHECK(lg.n == 1 && log_find(&lg, "more than", NULL) >= 0, "the extra file is logged (%d lines)", lg.n);
    float v = 1;
    CHECK(srv_store_add(st, "one more", 1, &v, NULL, err) == CDAM_ELIMIT, "add beyond the limit: CDAM_ELIMIT");
    srv_concept_info *all;
    int n;
    CHECK(srv_store_list(st, &all, &n) == 0 && n == SRV_STORE_MAX, "list all");
    int sorted = 1;
    for (int i = 0; i < n; i++) sorted &= all[i].created == i;
    CHECK(sorted, "list sorted by created");
    float got;
    CHECK(srv_store_get(st, all[123].id, NULL, &got) == 0 && got == 123.0f, "get among 10000");
    CHECK(srv_store_delete(st, all[0].id, err) == 0, "delete one");
    CHECK(srv_store_add(st, "one more", 1, &v, NULL, err) == 0, "then an add fits");
    free(all);
    srv_store_close(st);
    if (shm) rm_rf(base);
}

enum { THREADS = 6, PER_THREAD = 15 };
typedef struct { srv_store *st; int t, fails; srv_concept_info info[PER_THREAD]; } targ;

static void *adder(void *p) {
    targ *a = p;
    char err[CDAM_ERR_MAX];
    for (int i = 0; i < PER_THREAD; i++) {
        float e[DIM];
        make_emb(e, a->t * 100 + i);
        char name[64];
        snprintf(name, sizeof name, "thread %d concept %d", a->t, i);
        if (srv_store_add(a->st, name, i, e, &a->info[i], err)) a->fails++;
        srv_concept_info *all;
        int n;
        if (srv_store_list(a->st, &all, &n)) a->fails++;
        else free(all);
    }
    return NULL;
}

static void test_threads(void) {
    char dir[300], err[CDAM_ERR_MAX];
    snprintf(dir, sizeof dir, "%s/threads", root);
    srv_store *st;
    CHECK(srv_store_open(dir, DIM, NULL, NULL, &st, err) == 0, "open");
    pthread_t th[THREADS];
    static targ a[THREADS];
    for (int t = 0; t < THREADS; t++) {
        a[t].st = st;
        a[t].t = t;
        a[t].fails = 0;
        pthread_create(&th[t], NULL, adder, &a[t]);
    }
    int fails = 0;
    for (int t = 0; t < THREADS; t++) { pthread_join(th[t], NULL); fails += a[t].fails; }
    CHECK(fails == 0, "concurrent adds: %d failures", fails);
    CHECK(srv_store_count(st) == THREADS * PER_THREAD, "count %d", srv_store_count(st));
    srv_store_close(st);
    CHECK(srv_store_open(dir, DIM, NULL, NULL, &st, err) == 0 && srv_store_count(st) == THREADS * PER_THREAD, "reopen count");
    int ok = 1;
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < PER_THREAD; i++) {
            srv_concept_info gi;
            float ge[DIM], e[DIM];
            make_emb(e, t * 100 + i);
            ok &= srv_store_get(st, a[t].info[i].id, &gi, ge) == 0 && same_info(&gi, &a[t].info[i]) && same_floats(ge, e, DIM);
        }
    CHECK(ok, "every concurrent add reloads bit-identical");
    srv_store_close(st);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/test_srv_store.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 2; }
    test_basic();
    test_corrupt();
    test_write_failures();
    test_limit();
    test_threads();
    rm_rf(root);
    return check_summary("test_srv_store");
}
