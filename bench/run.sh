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
"$BUILD/bench_forward" "$MODEL" --sizes 224,480 --threads 1,2 --reps 7 | tee "$BUILD/bench_c.txt"
echo "== explanation methods, ViT-S/8 at 224, 2 threads (build/bench_explain)"
"$BUILD/bench_explain" "$MODEL" --size 224 --threads 2 --reps 5 --tam | tee "$BUILD/bench_explain.txt"
echo "== peak memory (RSS) of one request per method, each in its own process"
for m in forward cdam smooth_cdam integrated_cdam am rp tam; do "$BUILD/bench_explain" "$MODEL" --only $m --size 224; done
for s in 224 480; do "$BUILD/bench_explain" "$MODEL" --only rp --size $s; done
if "$PY" -c 'import torch' 2>/dev/null; then
  echo "== PyTorch CDAM on the same machine (bench/torch_cdam.py), default allocator"
  : > "$BUILD/bench_torch_cdam.txt"
  for cfg in "1 2" "2 1"; do
    set -- $cfg
    printf 'OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s: ' "$1" "$2"
    OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=$2 "$PY" bench/torch_cdam.py "$MODEL" --size 224 --reps 5 | tee -a "$BUILD/bench_torch_cdam.txt"
  done
  "$PY" - "$BUILD" <<'PYEOF'
import json, sys
b = sys.argv[1]
c = {}
for line in open(f"{b}/bench_explain.txt"):
    f = [x.strip() for x in line.split("|")]
    if len(f) > 3 and f[1] in ("CDAM, 1 class", "CDAM, 5 classes"):
        c[f[1]] = float(f[2])
rows = [json.loads(l) for l in open(f"{b}/bench_torch_cdam.txt")]
nb = min(r["notebook_1class_ms"] for r in rows)
l1 = min(r["last_block_1class_ms"] for r in rows)
l5 = min(r["last_block_5class_ms"] for r in rows)
print(f"CDAM 1 class: C {c['CDAM, 1 class']:.0f} ms; PyTorch notebook way {nb:.0f} ms -> {nb / c['CDAM, 1 class']:.2f}x; "
      f"PyTorch last block only {l1:.0f} ms -> {l1 / c['CDAM, 1 class']:.2f}x")
print(f"CDAM 5 classes: C {c['CDAM, 5 classes']:.0f} ms; PyTorch last block only {l5:.0f} ms -> {l5 / c['CDAM, 5 classes']:.2f}x")
PYEOF
  echo "== PyTorch $("$PY" -c 'import torch; print(torch.__version__)') on the same machine, ms (default allocator)"
  : > "$BUILD/bench_torch.txt"
  for s in 224 480; do
    for cfg in "1 2" "2 1" "1 1" "2 2"; do
      set -- $cfg
      printf 'size %s, OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s: ' "$s" "$1" "$2"
      OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=$2 "$PY" bench/torch_forward.py "$MODEL" --size "$s" --reps 7 | tee -a "$BUILD/bench_torch.txt"
    done
  done
  echo "== speed-up of the C engine (2 threads) over PyTorch's best thread setting (median ms)"
  "$PY" - "$BUILD" <<'PYEOF'
import json, sys
b = sys.argv[1]
c = {}
for line in open(f"{b}/bench_c.txt"):
    f = [x.strip() for x in line.split("|")]
    if len(f) > 5 and f[1].isdigit() and f[2] == "2":
        c[int(f[1])] = float(f[4])
t = {}
for line in open(f"{b}/bench_torch.txt"):
    r = json.loads(line)
    t[r["height"]] = min(t.get(r["height"], 1e18), r["ms_median"])
for s in sorted(c):
    if s in t:
        print(f"{s}x{s}: C {c[s]:.1f} ms, PyTorch best {t[s]:.1f} ms -> {t[s] / c[s]:.2f}x")
PYEOF
  echo "== parity: C vs PyTorch logits at 224 on the same random input"
  "$PY" -c 'import numpy as np; np.random.default_rng(0).standard_normal((3,224,224)).astype(np.float32).tofile("'"$BUILD"'/x224.f32")'
  "$BUILD/bench_forward" "$MODEL" --sizes 224 --threads 2 --input "$BUILD/x224.f32" --dump "$BUILD/c_logits.f32"
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=2 "$PY" bench/torch_forward.py "$MODEL" --size 224 --reps 0 --input "$BUILD/x224.f32" --dump "$BUILD/t_logits.f32" >/dev/null
  "$PY" -c 'import numpy as np; c=np.fromfile("'"$BUILD"'/c_logits.f32",np.float32); t=np.fromfile("'"$BUILD"'/t_logits.f32",np.float32); print("max |C - torch| / max |torch| over %d logits: %.2e" % (c.size, np.abs(c-t).max()/np.abs(t).max()))'
else
  echo "(python3-torch not installed: no PyTorch comparison; tools/install-deps.sh --ref installs it)"
fi
