#!/usr/bin/python3
"""make_random_model.py - writes a random full-size DINO ViT (ViT-S/8 by default) for benchmarks.

    python3 tools/make_random_model.py OUT.safetensors [--depth 12 --dim 384 --heads 6
        --patch 8 --grid 28 --classes 1000 --seed 0]

numpy only (no torch). DINO/timm tensor names, float32, realistic scales: linear weights
N(0, 0.02), LayerNorm weights about 1, small biases, cls/pos N(0, 0.02). Metadata: name,
num_heads, labels (JSON array "class 0".."class C-1"). ViT-S/8 is 21,670,272 backbone
parameters plus 385,000 for the head: about 87 MB.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402


def random_state(depth, dim, patch, grid, classes, seed=0, mlp_ratio=4):
    rng = np.random.default_rng(seed)
    D, Fh = dim, mlp_ratio * dim

    def n(*shape, std=0.02):
        a = rng.standard_normal(shape, dtype=np.float32)
        a *= np.float32(std)
        return a

    s = {"cls_token": n(1, 1, D), "pos_embed": n(1, 1 + grid * grid, D),
         "patch_embed.proj.weight": n(D, 3, patch, patch), "patch_embed.proj.bias": n(D)}
    for i in range(depth):
        b = f"blocks.{i}."
        s[b + "norm1.weight"] = 1 + n(D, std=0.1)
        s[b + "norm1.bias"] = n(D)
        s[b + "attn.qkv.weight"] = n(3 * D, D)
        s[b + "attn.qkv.bias"] = n(3 * D)
        s[b + "attn.proj.weight"] = n(D, D)
        s[b + "attn.proj.bias"] = n(D)
        s[b + "norm2.weight"] = 1 + n(D, std=0.1)
        s[b + "norm2.bias"] = n(D)
        s[b + "mlp.fc1.weight"] = n(Fh, D)
        s[b + "mlp.fc1.bias"] = n(Fh)
        s[b + "mlp.fc2.weight"] = n(D, Fh)
        s[b + "mlp.fc2.bias"] = n(D)
    s["norm.weight"] = 1 + n(D, std=0.1)
    s["norm.bias"] = n(D)
    if classes:
        s["head.weight"] = n(classes, D)
        s["head.bias"] = n(classes)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--grid", type=int, default=28, help="g0: pos_embed has 1 + g0*g0 rows")
    ap.add_argument("--classes", type=int, default=1000, help="0 for a backbone only")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.dim % a.heads:
        ap.error("--dim must be a multiple of --heads")
    s = random_state(a.depth, a.dim, a.patch, a.grid, a.classes, a.seed)
    meta = {"name": f"random-vit-d{a.dim}-p{a.patch}-l{a.depth}", "num_heads": str(a.heads)}
    if a.classes:
        meta["labels"] = json.dumps([f"class {i}" for i in range(a.classes)])
    st.save(a.out, s, meta)
    nb = sum(v.size for k, v in s.items() if not k.startswith("head."))
    print(f"{a.out}: {nb} backbone parameters, {os.path.getsize(a.out) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
