#!/bin/sh
# Soak and overload test of cdam-server: mixed load on loopback, then the pass criteria
# (no crash; no error status for a good request except 503 in the deliberate overload
# phases; good answers equal to the engine's reference answers; quick 503 + Retry-After
# and recovery after a burst of 10x more clients than queue + workers; queue depth never
# over its capacity; RSS growth < 5% after the warm-up; every concept written readable,
# also after a restart; SIGTERM -> exit 0). The driver is bench/soak.js (Node >= 20,
# built-in modules only); see bench/README.md, "Soak and overload".
#
#   bench/soak.sh [--duration S] [--build DIR] [--model FILE] [--concurrency N] [soak.js options...]
#
#   --duration S      seconds of load (default 600)
#   --build DIR       build folder holding cdam-server (default build; build-address = ASan)
#   --model FILE      model (default models/fashion-vit.safetensors, the demo model)
#   --concurrency N   load lanes (default 4)
#   other options go to bench/soak.js as they are (node bench/soak.js --help): --requests N,
#   --queue N, --workers N, --seed N, --overload-phases N, --rss-check on|off, --json FILE,
#   --server-log FILE, -- SERVER-ARGS...
# Exit status 0 = pass, 1 = a criterion failed, 2 = could not run.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

duration=600
build=build
model=models/fashion-vit.safetensors
concurrency=4
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done

command -v node >/dev/null 2>&1 || { echo "soak: node is not installed (Node 20 or newer: apt-get install nodejs)" >&2; exit 2; }
major=$(node -e 'process.stdout.write(process.versions.node.split(".")[0])')
[ "$major" -ge 20 ] || { echo "soak: node $(node --version) is too old (Node 20 or newer)" >&2; exit 2; }
[ -x "$build/cdam-server" ] || { echo "soak: $build/cdam-server does not exist (make $build/cdam-server, or make SANITIZE=address for build-address)" >&2; exit 2; }
if [ ! -f "$model" ]; then
  echo "soak: warning: $model is missing; using the small test model" >&2
  model=tests/data/models/tiny.safetensors
fi

exec node "$here/soak.js" --duration "$duration" --build "$build" --model "$model" --concurrency "$concurrency" "$@"
