#!/usr/bin/python3
"""train_demo.py - trains the bundled demo model models/fashion-vit.safetensors.

A small DINO-architecture ViT (patch 8, 96x96 input, so a 12x12 grid) learns to name
every Fashion-MNIST item in a scene: a 96x96 black canvas holding 1 to 3 items (28x28
each, as in the dataset, grey replicated to RGB) of distinct classes at random,
non-overlapping positions on a lattice (x, y = 2 + multiples of 8 pixels, so each item
is centred on a 4x4 block of patches; --pos-step). The head (10 classes) is trained
multi-label (binary cross-entropy, an item present = positive), so that every item has
its own high logit and CDAM can tell the items apart.

    apt-get install dataset-fashion-mnist python3-torch     # Debian 12
    /usr/bin/python3 tools/train_demo.py [--out models/fashion-vit.safetensors]

Data: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/*.gz).
Training scenes use training items only (the last 5000 training items are held out
for the validation printed in the log); evaluation scenes (tools/eval_demo.py) use
test items only. Scenes are generated on the fly from fixed seeds: a run is
deterministic up to the floating-point summation order of the BLAS.

The model: P=8, D=128, L=4 blocks, 4 heads (Dh=32), MLP 512, g0=12 (pos_embed
1 + 144 rows, initialised with 2-D sine-cosine values), LayerNorm eps 1e-6, exact GELU,
DINO/timm names, head (10, D) on the final-normed CLS token (tests/ref/vit_ref.py is
the model). Stored as F16 (the C loader converts to float32); metadata name,
num_heads, labels, mean, std.

Training: each step takes 48 full scenes of 1 to 3 items plus 160 single-item windows
(a 4x4-patch window of the canvas, 32x32 pixels, one item on the same lattice, run with
the position-embedding rows of a random place in the 12x12 grid: 17 tokens instead of
145, so the slow part, telling shirts from T-shirts and coats, is learnt about 8x cheaper
per item, while the full scenes teach finding several items among the black background).
Multi-label BCE over both, plus the head applied to every final-normed patch token against
the class of the item under it (--token-loss); AdamW (lr 1e-3, weight decay 0.05 on
matrices), 200 warmup steps then cosine to zero, gradient clipping 1.0, 7000 steps;
float32 weights with bfloat16 autocast (about 5x faster on a CPU with AVX512-BF16;
--no-bf16 turns it off). Optional augmentations (off by default, so the committed
model's recorded command reproduces it): --flip 1 mirrors items left-right, --shift S
moves an item's content by up to S pixels inside its box, --drop-path p is stochastic
depth (forward_window). The file's metadata
"training" records the command.

This module also provides the scene generator used by tools/eval_demo.py.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import safetensors_io as st  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
          "Sneaker", "Bag", "Ankle boot"]
CANVAS, ITEM, PATCH = 96, 28, 8
N_VAL_HELD_OUT = 5000
POS_STEP = 8          # item positions: 2 + multiples of 8 pixels (see pos_offset)


def pos_offset(step):
    """First position of the item lattice: items sit centred in step-wide cells, so with
    step 8 an item (28 px) covers a 4x4 block of patches exactly, 2 px in from its edges
    (every patch whose centre lies in the item's box is mostly covered by the item)."""
    return ((-ITEM) % step) // 2


def read_idx(path):
    """A gzip'd idx file (the MNIST format) -> numpy uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes")
    shape = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion(split, data_dir=DATA_DIR):
    """split 'train' or 't10k' -> (images (n, 28, 28) uint8, labels (n,) int64)."""
    try:
        x = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    except FileNotFoundError as e:
        sys.exit(f"{e}\nneeds Debian's dataset-fashion-mnist: apt-get install dataset-fashion-mnist")
    return x, y.astype(np.int64)


class SceneMaker:
    """Builds scenes from a pool of items (images (n, 28, 28) uint8, labels (n,))."""

    def __init__(self, images, labels, seed, step=POS_STEP, flip=False, shift=0):
        """flip: mirror each item left-right with probability 1/2; shift: move each item's
        content by up to shift pixels inside its box (see shift_item). Training only."""
        self.images, self.labels, self.step, self.flip, self.shift = images, labels, step, flip, shift
        self.by_class = [np.flatnonzero(labels == c) for c in range(len(LABELS))]
        self.rng = np.random.default_rng(seed)

    def layout(self, k):
        """k non-overlapping 28x28 boxes (x, y) on the canvas, uniform by rejection."""
        off = pos_offset(self.step)
        rng, hi = self.rng, (CANVAS - ITEM - off) // self.step + 1
        while True:
            xy = off + rng.integers(0, hi, size=(k, 2)) * self.step
            ok = True
            for i in range(k):
                for j in range(i):
                    if abs(xy[i, 0] - xy[j, 0]) < ITEM and abs(xy[i, 1] - xy[j, 1]) < ITEM:
                        ok = False
            if ok:
                return xy

    def scene(self, k=None):
        """-> (canvas (96, 96) uint8, items [(class, item index, x, y), ...]).
        k items (1 to 3 at random if None) of distinct classes."""
        rng = self.rng
        if k is None:
            k = int(rng.integers(1, 4))
        classes = rng.choice(len(LABELS), size=k, replace=False)
        xy = self.layout(k)
        canvas = np.zeros((CANVAS, CANVAS), np.uint8)
        items = []
        for c, (x, y) in zip(classes, xy):
            idx = int(rng.choice(self.by_class[c]))
            img = self.images[idx]
            if self.flip and rng.random() < 0.5:
                img = img[:, ::-1]
            if self.shift:
                img = shift_item(img, *rng.integers(-self.shift, self.shift + 1, size=2))
            canvas[y:y + ITEM, x:x + ITEM] = img
            items.append((int(c), idx, int(x), int(y)))
        return canvas, items

    def batch(self, n, k=None):
        """-> (canvases (n, 96, 96) uint8, multi-hot targets (n, 10) float32, items lists)."""
        xs = np.zeros((n, CANVAS, CANVAS), np.uint8)
        ys = np.zeros((n, len(LABELS)), np.float32)
        all_items = []
        for i in range(n):
            xs[i], items = self.scene(k)
            for c, _, _, _ in items:
                ys[i, c] = 1
            all_items.append(items)
        return xs, ys, all_items


def to_input(canvases, mean, std):
    """uint8 (n, 96, 96) grey canvases -> normalised float32 torch tensor (n, 3, 96, 96),
    exactly the engine's preprocessing of a grey PNG: x = (pixel/255 - mean) / std."""
    import torch
    x = torch.from_numpy(canvases.astype(np.float32) / np.float32(255.0))
    x = (x - float(mean)) / float(std)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def scene_mean_std(images, labels, seed=123, n=4000):
    """Pixel mean and std (pixel/255) over n training scenes, rounded to 4 decimals."""
    xs, _, _ = SceneMaker(images, labels, seed, step=1).batch(n)   # step 4 gives 0.0477, 0.1795
    v = xs.astype(np.float64) / 255.0
    return round(float(v.mean()), 4), round(float(v.std()), 4)


def build_model(dim, depth, heads):
    import torch
    from vit_ref import ViT
    torch.manual_seed(0)
    m = ViT(PATCH, dim, depth, heads, 4 * dim, CANVAS // PATCH, num_classes=len(LABELS))
    for name, p in m.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif "norm" in name:
            torch.nn.init.ones_(p)
        else:
            torch.nn.init.trunc_normal_(p, std=0.02)
    with torch.no_grad():
        m.pos_embed.copy_(torch.from_numpy(sincos_2d(CANVAS // PATCH, dim))[None])
    return m


def sincos_2d(g, dim):
    """(1 + g*g, dim) 2-D sine-cosine position values (row 0, the CLS, zero):
    the first half of the channels encode the row, the second the column."""
    q = dim // 4
    omega = 1.0 / 10000 ** (np.arange(q) / q)
    yy, xx = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    parts = []
    for c in (yy.reshape(-1), xx.reshape(-1)):
        a = c[:, None] * omega[None]
        parts += [np.sin(a), np.cos(a)]
    return np.concatenate([np.zeros((1, dim)), np.concatenate(parts, 1)], 0).astype(np.float32)


def forward_window(model, x, wy, wx, drop_path=0.0):
    """Logits of the model on x (B, 3, h*P, w*P), a window of the canvas whose top-left
    patch is (wy[b], wx[b]) in the native grid: each patch gets its own row of the
    position embedding. The full grid (wy = wx = 0, h = w = g0) is the model's forward.
    drop_path > 0 (training only): stochastic depth, each residual branch (attention, MLP)
    of each block dropped for a whole sample with that probability and the kept ones
    scaled by 1 / (1 - drop_path).
    Returns (logits (B, C), final-normed patch tokens (B, h*w, D))."""
    import torch
    B, _, Hpx, Wpx = x.shape
    gh, gw, g0 = Hpx // PATCH, Wpx // PATCH, model.grid0
    ys = wy[:, None] + torch.arange(gh)[None]
    xs = wx[:, None] + torch.arange(gw)[None]
    idx = (ys[:, :, None] * g0 + xs[:, None, :]).reshape(B, gh * gw)
    pe = model.pos_embed[0]
    tok = model.patch_embed(x) + pe[1:][idx]
    cls = (model.cls_token[0] + pe[:1]).expand(B, 1, model.dim)
    h = torch.cat([cls, tok], 1)
    for blk in model.blocks:
        if drop_path > 0:
            keep = [(torch.rand(B, 1, 1) >= drop_path).to(h.dtype) / (1 - drop_path) for _ in range(2)]
            h = h + keep[0] * blk.attn(blk.norm1(h))[0]
            h = h + keep[1] * blk.mlp(blk.norm2(h))
        else:
            h, _, _ = blk(h)
    h = model.norm(h)
    return model.head(h[:, 0]), h[:, 1:]


def shift_item(img, dx, dy):
    """The 28x28 item's content moved by (dx, dy) pixels inside its own box, black filling
    the vacated edge and what leaves the box cropped (the usual pad-and-crop augmentation of
    Fashion-MNIST). The box stays where it is, so the scene's lattice, the items' boxes and
    the per-patch targets are unchanged."""
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def item_windows(images, labels, rng, n, win, step=1, flip=False, shift=0):
    """n windows of win x win patches, each one item at a random position (a multiple
    of step) on black, mirrored left-right with probability 1/2 if flip, its content
    moved by up to shift pixels inside its box if shift (shift_item):
    (canvases (n, 8win, 8win) uint8, targets (n, 10), top-left
    patch wy, wx of the window in the native grid)."""
    side = win * PATCH
    xs = np.zeros((n, side, side), np.uint8)
    ys = np.zeros((n, len(LABELS)), np.float32)
    pick = rng.integers(0, len(images), size=n)
    o = pos_offset(step)
    off = o + rng.integers(0, (side - ITEM - o) // step + 1, size=(n, 2)) * step
    tok = np.zeros((n, win * win, len(LABELS)), np.float32)
    mirror = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    moves = rng.integers(-shift, shift + 1, size=(n, 2)) if shift else None
    for i in range(n):
        img = images[pick[i]][:, ::-1] if mirror[i] else images[pick[i]]
        if shift:
            img = shift_item(img, *moves[i])
        xs[i, off[i, 1]:off[i, 1] + ITEM, off[i, 0]:off[i, 0] + ITEM] = img
        ys[i, labels[pick[i]]] = 1
        tok[i, patches_in_box(off[i, 0], off[i, 1], win), labels[pick[i]]] = 1
    g = CANVAS // PATCH - win + 1
    return xs, ys, tok, rng.integers(0, g, size=n), rng.integers(0, g, size=n)


def patches_in_box(x, y, grid=CANVAS // PATCH):
    """Indices (row-major) of the patches whose center lies in the 28x28 box at (x, y)."""
    c = PATCH * np.arange(grid) + PATCH // 2
    inx, iny = (x <= c) & (c < x + ITEM), (y <= c) & (c < y + ITEM)
    return np.flatnonzero(iny[:, None] & inx[None, :])


def token_targets(item_lists):
    """(B, 144, 10) multi-hot class of the item under each patch center (0: background)."""
    g = CANVAS // PATCH
    t = np.zeros((len(item_lists), g * g, len(LABELS)), np.float32)
    for b, items in enumerate(item_lists):
        for c, _, x, y in items:
            t[b, patches_in_box(x, y), c] = 1
    return t


def state_for_file(model):
    """The model's weights as float32 numpy arrays (DINO names), in a stable order."""
    return {k: v.detach().float().cpu().numpy().copy() for k, v in model.state_dict().items()}


def save_model(path, state, heads, mean, std, extra=None, dtype="F16", pos_step=POS_STEP):
    meta = {"name": "fashion-vit", "num_heads": str(heads), "labels": json.dumps(LABELS),
            "mean": json.dumps([mean] * 3), "std": json.dumps([std] * 3), "pos_step": str(pos_step)}
    meta.update(extra or {})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    st.save(path, state, meta, dtypes=dtype)


def recall_at_k(logits, item_lists):
    """Per-item recall at top-k, k = number of items in the scene."""
    hit = tot = 0
    for row, items in zip(logits, item_lists):
        k = len(items)
        top = set(np.argsort(-row)[:k].tolist())
        hit += sum(c in top for c, _, _, _ in items)
        tot += k
    return hit / tot


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "fashion-vit.safetensors"))
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--steps", type=int, default=7000)
    ap.add_argument("--batch", type=int, default=48, help="full scenes per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--windows", type=int, default=160, help="single-item windows per step beside the scenes")
    ap.add_argument("--window", type=int, default=4, help="window side in patches")
    ap.add_argument("--token-loss", type=float, default=1.0,
                    help="weight of the per-patch loss (the head on each final-normed patch token)")
    ap.add_argument("--pos-step", type=int, default=POS_STEP, help="item positions are multiples of this")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--no-bf16", action="store_true", help="train in float32 (slower)")
    ap.add_argument("--flip", type=int, default=0,
                    help="1: mirror training items left-right at random (a label-preserving augmentation)")
    ap.add_argument("--shift", type=int, default=0,
                    help="move each training item's content by up to this many pixels inside its box "
                         "(a label-preserving augmentation; boxes stay on the lattice)")
    ap.add_argument("--drop-path", type=float, default=0.0,
                    help="stochastic depth: probability of dropping each residual branch for a sample")
    ap.add_argument("--init", metavar="FILE", help="start from the weights of a model file (fine-tuning)")
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()

    images, labels = load_fashion("train")
    tr_x, tr_y = images[:-N_VAL_HELD_OUT], labels[:-N_VAL_HELD_OUT]
    va_x, va_y = images[-N_VAL_HELD_OUT:], labels[-N_VAL_HELD_OUT:]
    mean, std = scene_mean_std(tr_x, tr_y)
    print(f"scene pixel mean {mean} std {std}", flush=True)

    train = SceneMaker(tr_x, tr_y, seed=a.seed + 1, step=a.pos_step, flip=bool(a.flip), shift=a.shift)
    val_x, _, val_items = SceneMaker(va_x, va_y, seed=a.seed + 2, step=a.pos_step).batch(500)
    val_in = to_input(val_x, mean, std)

    model = build_model(a.dim, a.depth, a.heads)
    if a.init:
        state, _ = st.load(a.init)
        model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()})
        print(f"initialised from {a.init}", flush=True)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"model: P={PATCH} D={a.dim} L={a.depth} H={a.heads} F={4 * a.dim} g0={CANVAS // PATCH} "
          f"C={len(LABELS)}: {nparam} parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n not in ("cls_token", "pos_embed")]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and n not in ("cls_token", "pos_embed"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.999))

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        t = (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr * 0.5 * (1 + math.cos(math.pi * t))

    def validate():     # in float32, as the model will be used
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(val_in[i:i + 250])["logits"] for i in range(0, len(val_in), 250)])
        model.train()
        return recall_at_k(logits.numpy(), val_items)

    wrng = np.random.default_rng(a.seed + 4)
    model.train()
    run_loss = None
    for step in range(a.steps):
        xs, ys, items = train.batch(a.batch)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not a.no_bf16):
            zero = torch.zeros(len(xs), dtype=torch.long)   # the full grid: the model's forward
            logits, stok = forward_window(model, to_input(xs, mean, std), zero, zero, a.drop_path)
            logits = logits.float()
            tok_logits = [model.head(stok).float().flatten(0, 1)]
            tok_y = [token_targets(items).reshape(-1, len(LABELS))]
            if a.windows:
                wxs, wys, wtok, wy, wx = item_windows(tr_x, tr_y, wrng, a.windows, a.window, a.pos_step,
                                                           flip=bool(a.flip), shift=a.shift)
                wl, wt = forward_window(model, to_input(wxs, mean, std), torch.from_numpy(wy), torch.from_numpy(wx),
                                        a.drop_path)
                logits = torch.cat([logits, wl.float()])
                ys = np.concatenate([ys, wys])
                tok_logits.append(model.head(wt).float().flatten(0, 1))
                tok_y.append(wtok.reshape(-1, len(LABELS)))
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(ys))
        if a.token_loss:
            loss = loss + a.token_loss * F.binary_cross_entropy_with_logits(
                torch.cat(tok_logits), torch.from_numpy(np.concatenate(tok_y)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss = loss.item() if run_loss is None else 0.95 * run_loss + 0.05 * loss.item()
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}/{a.steps} loss {run_loss:.4f} lr {lr_at(step):.2e} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
            print(f"  val recall@k {validate():.4f} (500 scenes of held-out training items)", flush=True)
            save_model(a.out, state_for_file(model), a.heads, mean, std, pos_step=a.pos_step)

    wall = time.time() - t0
    extra = {"training": f"tools/train_demo.py --dim {a.dim} --depth {a.depth} --heads {a.heads} --steps {a.steps} --batch {a.batch} --windows {a.windows} "
                         f"--window {a.window} --pos-step {a.pos_step} --token-loss {a.token_loss} --lr {a.lr} --seed {a.seed}"
                         f" --flip {a.flip} --shift {a.shift} --drop-path {a.drop_path}"
                         + (f" --warmup {a.warmup} --init {a.init}" if a.init else "")
                         + (" --no-bf16" if a.no_bf16 else "")}
    save_model(a.out, state_for_file(model), a.heads, mean, std, extra, pos_step=a.pos_step)
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes); wall time {wall:.0f}s ({wall / 60:.1f} min)",
          flush=True)


if __name__ == "__main__":
    main()
