#!/bin/sh
# test_cli.sh - the `cdam` command end to end: output, usage text, exit codes, messages.
# Usage: tests/test_cli.sh BUILD_DIR   (run from the repository root)
# Exit codes of cdam: 0 ok, 1 an error in the work (file, image, model), 2 bad usage.
B=${1:-build}/cdam
M=tests/data/models/tiny.safetensors
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL test_cli: $*" >&2; }
# expect CODE PATTERN CMD...: exit status CODE and output (stdout+stderr) matching PATTERN
expect() {
  code=$1; pat=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$code" ]; then bad "'$*' exited $rc, want $code: $out"; return; fi
  if ! printf '%s' "$out" | grep -qE -- "$pat"; then bad "'$*' output lacks /$pat/: $out"; return; fi
  ok
}
expect 0 'usage: cdam' "$B" --help
expect 2 'usage: cdam' "$B"
expect 2 "unknown command 'explode'" "$B" explode
expect 0 'parameters +45159 \(backbone 44928, head 231\)' "$B" info --model $M
expect 0 'classes +7' "$B" info --model tests/data/models/tiny_backbone.safetensors tests/data/models/tiny_head.safetensors
expect 0 '"predictions"' "$B" predict --model $M tests/data/images/rgb8.png
expect 0 '"label": "bicycle", "logit": 2.018' "$B" predict --model $M --top 1 tests/data/images/rgb8.png
expect 0 '"grid": \{"rows": 3, "cols": 5\}' "$B" predict --model $M --size 24x40 tests/data/images/lossless.webp
expect 1 'not a multiple of the patch size 8' "$B" predict --model $M --size 30 tests/data/images/rgb8.png
expect 1 'over the maximum' "$B" predict --model $M --size 2048 tests/data/images/rgb8.png
expect 1 'not an image' "$B" predict --model $M tests/data/images/not_an_image.txt
expect 1 'limit is 100 pixels' "$B" predict --model $M --max-pixels 100 tests/data/images/rgb8.png
expect 1 'No such file' "$B" predict --model $M /nonexistent.png
expect 1 'No such file' "$B" info --model /nonexistent.safetensors
expect 1 'needs an IMAGE' "$B" predict --model $M
expect 2 'model is required|--model FILE is required' "$B" predict tests/data/images/rgb8.png
expect 2 "unknown option '--bogus'" "$B" predict --model $M --bogus tests/data/images/rgb8.png
expect 2 'wants HxW' "$B" predict --model $M --size 12y tests/data/images/rgb8.png
expect 1 'no classification head' "$B" predict --model tests/data/models/tiny_backbone.safetensors tests/data/images/rgb8.png
echo "test_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
