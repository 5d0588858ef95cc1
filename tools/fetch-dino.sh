#!/bin/sh
# fetch-dino.sh - downloads the paper's model (DINO ViT-S/8 + the CDAM authors' ImageNet
# head), checks it and converts it into models/dino/ for the engine. Needs internet, so
# it is not part of `make test`.
#
#   tools/fetch-dino.sh            (from anywhere; run again: it skips what it has)
#
# Downloads (into models/dino/download/; files already there are reused, so on a
# machine without internet copy them there by hand):
#   model.safetensors   timm's DINO ViT-S/8 backbone, Hugging Face hub repository
#                       timm/vit_small_patch8_224.dino (DINO names, no head)
#   best-checkpoint-full-imgnet-augment.ckpt
#                       the CDAM authors' PyTorch Lightning checkpoint (github.com/
#                       lenbrocki/CDAM): model.* (the frozen DINO backbone) and
#                       linear.{weight,bias}, the 1000-class ImageNet head on the CLS token
#   elephant-zebra.jpg  the CDAM authors' sample image (method.md section 9's reference)
# Writes:
#   models/dino/dino-vits8.safetensors           backbone, F32, 87 MB, num_heads 6
#   models/dino/cdam-head-imagenet.safetensors   head (1000 x 384), labels in the metadata
#   models/dino/SHA256SUMS                       the checksums of the downloads
# then serve it with `make run MODEL=dino`, or by hand:
#   build/cdam predict --model models/dino/dino-vits8.safetensors \
#       models/dino/cdam-head-imagenet.safetensors models/dino/elephant-zebra.jpg
#
# Checksums: no published SHA-256 is known for these files, so the first download pins
# them: the script prints them and writes models/dino/SHA256SUMS; later runs (and
# re-downloads) must match that file, or the values below once they are filled in
# (TIMM_SHA256=... CDAM_SHA256=... in the environment override both).
# Tools: curl (or wget), sha256sum, /usr/bin/python3 with numpy; converting the
# Lightning checkpoint needs torch (apt-get install python3-torch).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/models/dino
DL=$OUT/download
PY=${PYTHON:-/usr/bin/python3}

TIMM_URL=https://huggingface.co/timm/vit_small_patch8_224.dino/resolve/main/model.safetensors
CDAM_URL=https://github.com/lenbrocki/CDAM/raw/main/best-checkpoint-full-imgnet-augment.ckpt
IMAGE_URL=https://github.com/lenbrocki/CDAM/raw/main/images/elephant-zebra.jpg
TIMM_SHA256=${TIMM_SHA256:-}   # pin here once known (see models/dino/SHA256SUMS)
CDAM_SHA256=${CDAM_SHA256:-}

die() { echo "fetch-dino: $*" >&2; exit 1; }
command -v sha256sum >/dev/null || die "needs sha256sum (coreutils)"
"$PY" -c "import numpy" 2>/dev/null || die "needs $PY with numpy (apt-get install python3-numpy)"
"$PY" -c "import torch" 2>/dev/null || die "needs torch to read the Lightning checkpoint (apt-get install python3-torch)"
mkdir -p "$DL"

fetch() {  # URL FILE
  [ -s "$2" ] && return 0
  echo "fetch-dino: downloading $1" >&2
  if command -v curl >/dev/null; then
    curl -fL --retry 3 -o "$2.part" "$1" || die "download failed: $1"
  elif command -v wget >/dev/null; then
    wget -q -O "$2.part" "$1" || die "download failed: $1"
  else
    die "needs curl or wget"
  fi
  mv "$2.part" "$2"
}

verify() {  # FILE PINNED_SHA256 MIN_BYTES
  f=$1; name=$(basename "$1")
  size=$(wc -c < "$f")
  [ "$size" -ge "$3" ] || die "$f: only $size bytes (a Git LFS pointer or an error page?); delete it and retry"
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  want=$2
  if [ -z "$want" ] && [ -f "$OUT/SHA256SUMS" ]; then
    want=$(awk -v n="$name" '$2 == n {print $1}' "$OUT/SHA256SUMS")
  fi
  if [ -n "$want" ]; then
    [ "$sum" = "$want" ] || die "$f: SHA-256 $sum, expected $want; delete it and retry"
    echo "fetch-dino: $name: SHA-256 ok ($sum)" >&2
  else
    echo "fetch-dino: $name: SHA-256 $sum (pinned now in models/dino/SHA256SUMS)" >&2
    echo "$sum  $name" >> "$OUT/SHA256SUMS"
  fi
}

fetch "$TIMM_URL" "$DL/model.safetensors"
fetch "$CDAM_URL" "$DL/best-checkpoint-full-imgnet-augment.ckpt"
fetch "$IMAGE_URL" "$OUT/elephant-zebra.jpg"
verify "$DL/model.safetensors" "$TIMM_SHA256" 80000000
verify "$DL/best-checkpoint-full-imgnet-augment.ckpt" "$CDAM_SHA256" 1000000

LABELS=$ROOT/models/imagenet-labels.txt
if [ ! -s "$LABELS" ]; then
  "$PY" -c "from torchvision.models import ResNet50_Weights as W; print('\n'.join(W.IMAGENET1K_V1.meta['categories']))" \
    > "$LABELS" || die "models/imagenet-labels.txt is missing and torchvision cannot write it (apt-get install python3-torchvision)"
fi
[ "$(wc -l < "$LABELS")" -eq 1000 ] || die "$LABELS: want 1000 lines"

"$PY" "$ROOT/tools/convert.py" "$DL/model.safetensors" -o "$OUT/dino-vits8.safetensors" \
  --num-heads 6 --name dino-vits8
"$PY" "$ROOT/tools/convert.py" "$DL/best-checkpoint-full-imgnet-augment.ckpt" --head-only \
  -o "$OUT/cdam-head-imagenet.safetensors" --labels "$LABELS" --name dino-vits8-cdam-imagenet \
  --compare "$OUT/dino-vits8.safetensors"

if [ -x "$ROOT/build/cdam" ]; then
  echo "fetch-dino: top 5 for elephant-zebra.jpg (method.md section 9, squashed to 224 by PIL:" >&2
  echo "  African elephant 18.82, tusker 17.03, Indian elephant 14.50, zebra 14.45, warthog 9.61;" >&2
  echo "  the engine's own antialiased resize gives close, not identical, numbers)" >&2
  "$ROOT/build/cdam" predict --model "$OUT/dino-vits8.safetensors" "$OUT/cdam-head-imagenet.safetensors" \
    --top 5 "$OUT/elephant-zebra.jpg"
fi
echo "fetch-dino: done: models/dino/dino-vits8.safetensors + models/dino/cdam-head-imagenet.safetensors" >&2
