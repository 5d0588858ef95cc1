/* fuzz.h - shared by the libFuzzer targets in tests/fuzz/ (fuzz_<name>.c).
 *
 * Each target defines LLVMFuzzerTestOneInput (and optionally LLVMFuzzerInitialize). It is
 * linked either with libFuzzer (`make fuzz`: clang -fsanitize=fuzzer,address,undefined)
 * or with tests/fuzz/replay.c (a plain main() that feeds files to it; part of `make` and
 * `make test`). FUZZ_CHECK states an invariant of the code under test: when it does not
 * hold, the input is a finding, so the target aborts (libFuzzer then saves a reproducer,
 * the replay binary dies without its summary line and `make test` fails).
 */
#ifndef CDAM_FUZZ_H
#define CDAM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                         \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "fuzz: invariant failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            abort();                                                                  \
        }                                                                             \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

// The small model the request targets validate against: $CDAM_FUZZ_MODEL, else the
// test model (paths are relative to the repository root, where make runs everything).
#define FUZZ_DEFAULT_MODEL "tests/data/models/tiny.safetensors"

#endif
