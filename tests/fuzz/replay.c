/* replay.c - a plain main() for one fuzz target (no libFuzzer needed): feeds every file
 * given on the command line, and every regular file in every directory given (sorted by
 * name, not recursive), to the target's LLVMFuzzerTestOneInput, after its
 * LLVMFuzzerInitialize if it has one. Built as build/tests/replay_<target> by `make`
 * (with gcc, and under SANITIZE=address/undefined) and run by `make test` over
 * tests/fuzz/corpus/<target>/, which holds the seeds and every input that ever crashed.
 *
 * Prints "fuzz-<target>: N passed, 0 failed" (the tests/run.sh summary). A crash or a
 * failed invariant (FUZZ_CHECK aborts) kills the process before the summary, which
 * tests/run.sh counts as a failure; so does an input running longer than
 * REPLAY_TIMEOUT seconds (SIGALRM). An unreadable file or directory counts as failed.
 * The input that killed it is named on stderr; REPLAY_VERBOSE=1 names every input.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

#ifndef FUZZ_NAME
#define FUZZ_NAME "target"
#endif
#define REPLAY_TIMEOUT 120

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);
__attribute__((weak)) void __sanitizer_set_death_callback(void (*cb)(void));  // in sanitizer builds

static int passed, failed;
static char current[4096];  // the input being run, named when it crashes

static void say_current(void) {
    static const char pre[] = "fuzz-" FUZZ_NAME ": died on input ";
    ssize_t r = write(2, pre, sizeof pre - 1);
    r = write(2, current, strlen(current));
    r = write(2, "\n", 1);
    (void)r;
}

static void on_signal(int sig) {
    say_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    if (f) {
        for (;;) {
            if (len == cap) {
                cap = cap ? cap * 2 : 65536;
                uint8_t *p = realloc(buf, cap);
                if (!p) break;
                buf = p;
            }
            size_t k = fread(buf + len, 1, cap - len, f);
            len += k;
            if (k == 0) break;
        }
    }
    if (!f || ferror(f)) {
        fprintf(stderr, "fuzz-%s: cannot read %s: %s\n", FUZZ_NAME, path, strerror(errno));
        failed++;
        if (f) fclose(f);
        free(buf);
        return;
    }
    fclose(f);
    // an exact-size copy, so that the sanitizers see reads past the input's end
    uint8_t *in = malloc(len ? len : 1);
    if (!in) {
        fprintf(stderr, "fuzz-%s: out of memory for %s\n", FUZZ_NAME, path);
        exit(1);
    }
    if (len) memcpy(in, buf, len);
    free(buf);
    snprintf(current, sizeof current, "%s (%zu bytes)", path, len);
    if (getenv("REPLAY_VERBOSE")) fprintf(stderr, "fuzz-%s: %s\n", FUZZ_NAME, current);
    alarm(REPLAY_TIMEOUT);
    LLVMFuzzerTestOneInput(in, len);
    alarm(0);
    free(in);
    passed++;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fuzz-%s: cannot open %s: %s\n", FUZZ_NAME, dir, strerror(errno));
        failed++;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) exit(1);
            names = p;
        }
        if (!(names[n++] = strdup(de->d_name))) exit(1);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) run_file(path);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv) {
    signal(SIGABRT, on_signal);
    signal(SIGSEGV, on_signal);
    signal(SIGALRM, on_signal);
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(say_current);
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) run_dir(argv[i]);
        else run_file(argv[i]);
    }
    printf("fuzz-%s: %d passed, %d failed\n", FUZZ_NAME, passed, failed);
    return failed ? 1 : 0;
}
