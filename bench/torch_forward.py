#!/usr/bin/python3
"""torch_forward.py - times the PyTorch reference forward on a safetensors model (batch 1).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/torch_forward.py MODEL \\
        [--size 224 | --height H --width W] [--reps 10] [--warmup 2] \\
        [--input x.f32] [--dump logits.f32]

Loads MODEL with tools/safetensors_io.py into tests/ref/vit_ref.py's ViT (float32, eval,
torch.inference_mode) and prints one JSON line:
    {"size": 224, "height": 224, "width": 224, "ms_median": ..., "ms_min": ..., "reps": 10,
     "threads": torch.get_num_threads(), "omp_threads": ..., "openblas_threads": ...}
Set thread counts in the environment, outside python (see /work/shared/spec/perf-notes.md:
torch.set_num_threads does not reach OpenBLAS; 1 OpenMP + 2 OpenBLAS threads is best here).
The input is a random N(0,1) image unless --input gives a raw little-endian float32 file
(3 x H x W, channel-major, already normalised). --dump writes the logits as raw float32
(C values) for a parity check with the C engine. --reps 0 skips timing.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import safetensors_io as st  # noqa: E402
import vit_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description="PyTorch reference forward benchmark")
    ap.add_argument("model")
    ap.add_argument("--size", type=int, default=224, help="square input size (pixels)")
    ap.add_argument("--height", type=int, help="overrides --size for the height")
    ap.add_argument("--width", type=int, help="overrides --size for the width")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--input", help="raw float32 file, 3 x H x W")
    ap.add_argument("--dump", help="write the logits (or the latent if there is no head) as raw float32")
    ap.add_argument("--pos", choices=("dino", "timm"), default="dino", help="position-embedding resampling")
    a = ap.parse_args()
    H = a.height or a.size
    W = a.width or a.size

    state, meta = st.load(a.model)
    state = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
    model = vit_ref.vit_from_state(state, meta, dtype=torch.float32, pos_mode=a.pos)
    del state
    if H % model.patch or W % model.patch:
        ap.error(f"height and width must be multiples of the patch size {model.patch}")

    if a.input:
        x = np.fromfile(a.input, dtype="<f4")
        if x.size != 3 * H * W:
            ap.error(f"{a.input}: {x.size} floats, expected 3*{H}*{W} = {3 * H * W}")
        x = torch.from_numpy(x.reshape(1, 3, H, W).astype(np.float32))
    else:
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, H, W), dtype=np.float32))

    times = []
    with torch.inference_mode():
        out = model(x)
        if a.dump:
            key = "logits" if "logits" in out else "latent"
            out[key][0].numpy().astype("<f4").tofile(a.dump)
        if a.reps > 0:
            for _ in range(max(0, a.warmup - 1)):   # the forward above was the first warm-up
                model(x)
            for _ in range(a.reps):
                t0 = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - t0) * 1e3)

    res = {"size": H if H == W else f"{H}x{W}", "height": H, "width": W,
           "ms_median": round(statistics.median(times), 2) if times else None,
           "ms_min": round(min(times), 2) if times else None, "reps": len(times),
           "threads": torch.get_num_threads(),
           "omp_threads": os.environ.get("OMP_NUM_THREADS"),
           "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
           "torch": torch.__version__}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
