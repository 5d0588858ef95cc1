/* fuzz_store.c - libFuzzer target: the concept store's loader on one hostile concept
 * file.
 *
 * Path under test: srv_store_parse_concept, the function srv_store_open runs on the text
 * of every "<id>.json" file it finds (size limit, NUL bytes, JSON, id matching the file
 * name, name 1..128 bytes of strict UTF-8, images, created, dim, embedding of exactly
 * dim finite floats), for a store of dim 32 (the test model's D) and, when the first
 * byte is odd, of dim 4 so that whole valid files stay small.
 * When bits 1, 2 and 3 of the first byte are all set (an eighth of the inputs: a file
 * system round trip costs a hundred parses), the file is also written into a scratch data
 * directory (with a leftover temporary file when bit 4 is set too) and loaded the way the server starts: srv_store_open, which must accept it
 * exactly when srv_store_parse_concept does, then srv_store_get / srv_store_list.
 * Invariants: an accepted file gives an id equal to the file name's, a valid name, and
 * dim finite floats; nothing stays allocated either way.
 */
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "store.h"

#define ID "0123456789abcdef0123456789abcdef"

static char dir[64];

static void remove_dir(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/" ID ".json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/." ID ".json.tmp", dir);
    unlink(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    snprintf(dir, sizeof dir, "/tmp/cdam-fuzz-store-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("fuzz_store: mkdtemp");
        exit(2);
    }
    atexit(remove_dir);
    return 0;
}

static void write_file(const char *name, const char *text, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0 && (n == 0 || write(fd, text, n) == (ssize_t)n) && close(fd) == 0, "cannot write %s", path);
}

// The whole store on a directory holding this one file; must agree with the parse.
static void open_dir(const char *text, size_t n, int dim, int leftover, int parsed, const srv_concept_info *info,
                     const float *emb) {
    write_file(ID ".json", text, n);
    if (leftover) write_file("." ID ".json.tmp", "{", 1);
    srv_store *st = NULL;
    char err[CDAM_ERR_MAX];
    FUZZ_CHECK(srv_store_open(dir, dim, NULL, NULL, &st, err) == 0, "srv_store_open: %s", err);
    FUZZ_CHECK(srv_store_count(st) == (parsed ? 1 : 0), "%d concepts loaded, parse said %d", srv_store_count(st), parsed);
    srv_concept_info got, *list = NULL;
    float e2[32];
    int k = 0;
    FUZZ_CHECK(srv_store_get(st, ID, &got, e2) == (parsed ? 0 : CDAM_ENOTFOUND), "srv_store_get");
    if (parsed)
        FUZZ_CHECK(!strcmp(got.id, info->id) && !strcmp(got.name, info->name) && got.images == info->images &&
                       got.created == info->created && !memcmp(e2, emb, sizeof(float) * (size_t)dim),
                   "store differs from parse");
    FUZZ_CHECK(srv_store_list(st, &list, &k) == 0 && k == (parsed ? 1 : 0), "srv_store_list");
    free(list);
    srv_store_close(st);
    char path[128];
    snprintf(path, sizeof path, "%s/." ID ".json.tmp", dir);
    FUZZ_CHECK(access(path, F_OK) != 0, "leftover temporary file not removed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int dim = size && (data[0] & 1) ? 4 : 32;
    char *text = malloc(size + 1);  // the loader's own buffer: the file's bytes and a NUL
    FUZZ_CHECK(text != NULL, "out of memory");
    if (size) memcpy(text, data, size);
    text[size] = 0;
    float emb[32];
    srv_concept_info info;
    char why[256] = "";
    int rc = srv_store_parse_concept(text, size, ID ".json", dim, &info, emb, why, sizeof why);
    if (rc == 0) {
        FUZZ_CHECK(!memcmp(info.id, ID, 33), "id %.40s", info.id);
        size_t n = strlen(info.name);
        FUZZ_CHECK(n >= 1 && n <= SRV_STORE_NAME_MAX, "name of %zu bytes", n);
        FUZZ_CHECK(info.images >= 0 && isfinite(info.created) && info.created >= 0, "images %d created %g", info.images, info.created);
        for (int i = 0; i < dim; i++) FUZZ_CHECK(isfinite(emb[i]), "embedding[%d]", i);
    } else {
        FUZZ_CHECK(rc == CDAM_EFORMAT || rc == CDAM_ELIMIT, "rc %d", rc);
        FUZZ_CHECK(why[0] && memchr(why, 0, sizeof why), "no reason");
    }
    if (size && (data[0] & 14) == 14) open_dir(text, size, dim, data[0] & 16, rc == 0, &info, emb);
    free(text);
    return 0;
}
