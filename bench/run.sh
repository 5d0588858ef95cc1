#!/bin/sh
# make bench: forward-pass speed of the C engine on a full-size random ViT-S/8,
# against a large sgemm measured in the same run and, where Debian's python3-torch is
# installed, PyTorch on the same machine (its best thread setting, default allocator).
# Usage: bench/run.sh BUILD_DIR     (the model is written once to BUILD_DIR/vits8.safetensors)
set -eu
BUILD=${1:-build}
MODEL=$BUILD/vits8.safetensors
PY=/usr/bin/python3
if [ ! -f "$MODEL" ]; then
  "$PY" -c 'import numpy' 2>/dev/null || tools/install-deps.sh --ref
  "$PY" tools/make_random_model.py "$MODEL"
fi
echo "== C engine (build/bench_forward)"
"$BUILD/bench_forward" "$MODEL" --sizes 224,480 --threads 1,2 --reps 7
if "$PY" -c 'import torch' 2>/dev/null; then
  echo "== PyTorch $("$PY" -c 'import torch; print(torch.__version__)') on the same machine, ms (default allocator)"
  for s in 224 480; do
    for cfg in "1 1" "1 2" "2 1"; do
      set -- $cfg
      printf 'size %s, OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s: ' "$s" "$1" "$2"
      OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=$2 "$PY" bench/torch_forward.py "$MODEL" --size "$s" --reps 7
    done
  done
  echo "== parity: C vs PyTorch logits at 224 on the same random input"
  "$PY" -c 'import numpy as np; np.random.default_rng(0).standard_normal((3,224,224)).astype(np.float32).tofile("'"$BUILD"'/x224.f32")'
  "$BUILD/bench_forward" "$MODEL" --sizes 224 --threads 2 --input "$BUILD/x224.f32" --dump "$BUILD/c_logits.f32"
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=2 "$PY" bench/torch_forward.py "$MODEL" --size 224 --reps 0 --input "$BUILD/x224.f32" --dump "$BUILD/t_logits.f32" >/dev/null
  "$PY" -c 'import numpy as np; c=np.fromfile("'"$BUILD"'/c_logits.f32",np.float32); t=np.fromfile("'"$BUILD"'/t_logits.f32",np.float32); print("max |C - torch| / max |torch| over %d logits: %.2e" % (c.size, np.abs(c-t).max()/np.abs(t).max()))'
else
  echo "(python3-torch not installed: no PyTorch comparison; tools/install-deps.sh --ref installs it)"
fi
