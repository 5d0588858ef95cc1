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
expect 2 'needs one IMAGE' "$B" predict --model $M
expect 2 'model is required|--model FILE is required' "$B" predict tests/data/images/rgb8.png
expect 2 "unknown option '--bogus'" "$B" predict --model $M --bogus tests/data/images/rgb8.png
expect 2 'wants HxW' "$B" predict --model $M --size 12y tests/data/images/rgb8.png
expect 1 'no classification head' "$B" predict --model tests/data/models/tiny_backbone.safetensors tests/data/images/rgb8.png
# explain, concept, compare
I=tests/data/images/rgb8.png
T=$(mktemp -d)
expect 0 '"explanations": \[' "$B" explain --model $M $I
expect 0 '"method": "cdam", "target": \{"type": "class", "index": 1, "label": "bicycle"\}' "$B" explain --model $M $I
expect 0 '"type": "class", "index": 3, "label": "dolphin"' "$B" explain --model $M --class dolphin --class 2 $I
expect 0 '"method": "am", "target": null' "$B" explain --model $M --method am,rp --class 0 $I
expect 0 '"method": "tam"' "$B" explain --model $M --method tam $I
expect 0 '"method": "integrated_cdam"' "$B" explain --model $M --method smooth-cdam --method integrated-cdam $I
expect 0 "concept 'horse' from 2 image" "$B" concept --model $M --name horse --out $T/c.json $I tests/data/images/lossless.webp
expect 0 '"type": "concept", "index": -1, "label": "horse"' "$B" explain --model $M --concept $T/c.json $I
expect 0 "wrote $T/e.png" "$B" explain --model $M --method cdam,rp,am --format png --out $T/e.png $I
expect 0 'Pearson correlation' "$B" compare --model $M $I tests/data/images/lossless.webp
expect 1 "unknown class 'zebra'" "$B" explain --model $M --class zebra $I
expect 1 "unknown class '7'" "$B" explain --model $M --class 7 $I
expect 2 "unknown method 'gradcam'" "$B" explain --model $M --method gradcam $I
expect 1 'embedding has 3 values' sh -c "printf '{\"name\": \"x\", \"embedding\": [1, 2, 3]}' > $T/bad.json && $B explain --model $M --concept $T/bad.json $I"
expect 1 'not a concept file' sh -c "printf 'nope' > $T/bad2.json && $B explain --model $M --concept $T/bad2.json $I"
expect 2 'needs --out' "$B" concept --model $M $I
rm -rf "$T"
echo "test_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
