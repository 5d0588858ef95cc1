#!/usr/bin/python3
"""torch_cdam.py - CDAM in PyTorch on the same machine, two ways (for bench/run.sh).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/torch_cdam.py MODEL [--size 224] [--reps 5]

(a) "notebook": the way the CDAM paper's notebook computes it: a forward hook keeps the
    output of the last block's norm1 (retain_grad), the whole model runs with autograd
    on (parameters require grad, as loaded), and logit[c].backward() goes through
    everything; one class per forward + backward.
(b) "last-block": the best PyTorch can do: a no-grad forward through the first L-1 blocks,
    then the last block from T^L (a leaf that requires grad; parameters frozen), and
    torch.autograd.grad per class (retain_graph) — 1 class and 5 classes.
Prints one JSON line with the median ms of each. Default allocator unless the caller
sets MALLOC_* variables.
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


def median_ms(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(t), 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    state, meta = st.load(a.model)
    state = {k: np.asarray(v, dtype=np.float32) for k, v in state.items()}
    model = vit_ref.vit_from_state(state, meta, dtype=torch.float32).eval()
    del state
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, a.size, a.size), dtype=np.float32))
    classes = [3, 17, 99, 386, 340]

    # (a) the notebook's way
    for p in model.parameters():
        p.requires_grad_(True)
    kept = {}

    def hook(_m, _i, out):
        out.retain_grad()
        kept["T"] = out

    handle = model.blocks[-1].norm1.register_forward_hook(hook)

    def notebook():
        model.zero_grad(set_to_none=True)
        out = model(x)
        out["logits"][0, classes[0]].backward()
        T = kept["T"]
        return (T * T.grad).sum(-1)[0, 1:]

    nb = median_ms(notebook, a.reps)
    handle.remove()

    # (b) gradient through the last block only
    for p in model.parameters():
        p.requires_grad_(False)
    blk = model.blocks[-1]

    def last_block(nclasses):
        with torch.no_grad():
            pos = vit_ref.resample_pos(model.pos_embed, a.size // model.patch, a.size // model.patch)
            h = torch.cat([model.cls_token, model.patch_embed(x)], dim=1) + pos
            for b in model.blocks[:-1]:
                h, _, _ = b(h)
            T0 = blk.norm1(h)
        T = T0.clone().requires_grad_(True)
        B, N, D = T.shape
        H = model.num_heads
        Dh = D // H
        qkv = blk.attn.qkv(T).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = torch.softmax((q[:, :, :1] @ k.transpose(-1, -2)) * Dh ** -0.5, dim=-1)   # CLS row only
        o = (att @ v).transpose(1, 2).reshape(B, 1, D)
        hc = h[:, :1] + blk.attn.proj(o)
        hc = hc + blk.mlp(blk.norm2(hc))
        logits = model.head(model.norm(hc[:, 0]))
        maps = []
        for i, c in enumerate(classes[:nclasses]):
            (g,) = torch.autograd.grad(logits[0, c], T, retain_graph=i + 1 < nclasses)
            maps.append((T * g).sum(-1)[0, 1:])
        return maps

    lb1 = median_ms(lambda: last_block(1), a.reps)
    lb5 = median_ms(lambda: last_block(5), a.reps)
    with torch.inference_mode():
        fwd = median_ms(lambda: model(x), a.reps)
    print(json.dumps({"size": a.size, "forward_ms": fwd, "notebook_1class_ms": nb, "last_block_1class_ms": lb1,
                      "last_block_5class_ms": lb5, "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                      "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
