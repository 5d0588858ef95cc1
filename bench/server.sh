#!/bin/sh
# make bench-server: cdam-server under load on loopback, against the engine's own speed
# measured in the same run. ViT-S/8 (random weights) at 224x224, POST /explain with CDAM
# for the top-1 class of one real photo (resized to 224x224 PNG, so decoding is cheap).
#
#   bench/server.sh BUILD_DIR [SECONDS]
#
# 1. engine: build/bench_explain, CDAM 1 class, 2 threads -> engine requests/s = 1000/ms.
# 2. for each worker layout (1 worker x 2 threads, 2 workers x 1 thread): the server with
#    its cache off (every request pays decode + forward + CDAM), concurrency 1, 2 and 8.
# 3. the cached second-class latency: server with its cache on, 20 other classes of an
#    image already seen.
set -eu
BUILD=${1:-build}
SECS=${2:-20}
PY=/usr/bin/python3
MODEL=$BUILD/vits8.safetensors
IMG=$BUILD/bench-224.png
[ -f "$MODEL" ] || "$PY" tools/make_random_model.py "$MODEL"
[ -f "$IMG" ] || "$PY" -c "
from PIL import Image
Image.open('tests/data/images/baseline.jpg').convert('RGB').resize((224, 224), Image.BICUBIC).save('$IMG')"
tmp=$(mktemp -d)
srv_pid=
trap '[ -n "$srv_pid" ] && kill $srv_pid 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

start() {  # start ARGS...: starts the server, sets $port
  "$BUILD/cdam-server" --model "$MODEL" --port 0 --data-dir "$tmp/data" --static "$tmp" "$@" >/dev/null 2>"$tmp/log" &
  srv_pid=$!
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$tmp/log")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  cat "$tmp/log" >&2
  exit 1
}

stop() {
  kill "$srv_pid"
  wait "$srv_pid" || true
  srv_pid=
  rm -f "$tmp/log"
}

echo "== engine: bench_explain, CDAM 1 class, 224, 2 threads"
"$BUILD/bench_explain" "$MODEL" --size 224 --threads 2 --reps 7 | tee "$tmp/engine.txt"
ms=$(sed -n 's/^| CDAM, 1 class | \([0-9.]*\) .*/\1/p' "$tmp/engine.txt")
echo "engine: $ms ms per request -> $(echo "$ms" | awk '{printf "%.3f", 1000 / $1}') requests/s"

for layout in "1 2" "2 1"; do
  set -- $layout
  echo "== server: $1 worker(s) x $2 thread(s), cache off, $SECS s per level"
  start --workers "$1" --threads-per-worker "$2" --cache-mb 0 --queue 64
  "$PY" bench/server_load.py --url "http://127.0.0.1:$port" --image "$IMG" --seconds "$SECS" --concurrency 1,2,8 --json \
    > "$tmp/load-$1x$2.json"
  stop
  "$PY" - "$tmp/load-$1x$2.json" "$ms" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1])); engine = 1000 / float(sys.argv[2])
print("| concurrency | requests/s | p50 ms | p99 ms | errors | server / engine throughput |")
print("|---|---|---|---|---|---|")
for l in r["levels"]:
    print(f"| {l['concurrency']} | {l['rps']:.2f} | {l['p50_ms']:.0f} | {l['p99_ms']:.0f} | {l['errors']} | {l['rps'] / engine:.2f} |")
EOF
done

echo "== server: cached second class (1 worker x 2 threads, cache on)"
start --cache-mb 256
"$PY" bench/server_load.py --url "http://127.0.0.1:$port" --image "$IMG" --concurrency "" --cached-classes 20
stop
