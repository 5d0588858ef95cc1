#!/usr/bin/python3
"""eval_demo.py - measures the demo model on held-out Fashion-MNIST test scenes (PyTorch).

    /usr/bin/python3 tools/eval_demo.py [--model models/fashion-vit.safetensors]
        [--scenes 2000] [--pairs 1000] [--examples static/examples] [--export FILE]

Needs Debian's python3-torch and dataset-fashion-mnist. Scenes are built from TEST
items only, by the generator of tools/train_demo.py, from fixed seeds (so every run
measures the same scenes):

- recall@k: 2000 scenes of 1 to 3 items (seed 1000); for each scene the top-k
  logits, k = its number of items; per-item recall = items whose class is among them
  / all items.
- pointing game: 1000 scenes of exactly two items (seed 2000), so 2000 trials. For
  each item, the map for that item's class (12x12, patch tokens) is computed and its
  top-scoring patch taken; a hit if the patch's center lies inside the item's 28x28
  box: x <= 8*px + 4 < x + 28 and y <= 8*py + 4 < y + 28 (pixel i spans [i, i+1)).
  Methods, from the spec (method.md), by autograd on the model of tests/ref/vit_ref.py:
    CDAM  S_i = sum_j T^L_ij * d logit_c / d T^L_ij, T^L = LN1 output of the last block,
          patch tokens only (section 3);
    AM    mean over heads of the last block's CLS attention to the patches (section 6;
          the same map for every class);
    RP    Chefer et al.: R = I; per block in forward order R += mean_h max(0, dA*A) R;
          R[0, 1:] (section 7).
  The model runs in float64 from the stored (F16) weights, i.e. the very numbers the C
  engine loads.

--examples DIR writes the demo page's example scenes (DIR/scene-*.png), per-class item
images (DIR/items/<class>-N.png: one test item centred on a 96x96 black canvas, the
model's native input, so that a concept built from them sees items at the scale the
model was trained on) and DIR/index.json. --export FILE writes two-item test scenes with
their boxes, Python logits and CDAM / AM / RP maps as safetensors, for a C-side test.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
import safetensors_io as st  # noqa: E402
import train_demo as td  # noqa: E402

RECALL_SEED, POINT_SEED, EXAMPLE_SEED = 1000, 2000, 3000
STEP = 4   # item-position lattice of the evaluated model (set from its metadata)


def slug(label):
    return {"T-shirt/top": "tshirt", "Ankle boot": "ankle-boot"}.get(label, label.lower())


def load_model(path):
    import torch
    from vit_ref import vit_from_state
    state, meta = st.load(path)
    state = {k: v.astype(np.float32) for k, v in state.items()}   # F16/BF16 -> exact float32
    model = vit_from_state(state, meta, dtype=torch.float64)
    mean = json.loads(meta.get("mean", "[0.485, 0.456, 0.406]"))
    std = json.loads(meta.get("std", "[0.229, 0.224, 0.225]"))
    assert len(set(mean)) == 1 and len(set(std)) == 1, "expects a grey model (equal mean/std per channel)"
    return model, meta, mean[0], std[0]


def pos_step_of(meta):
    """The item-position lattice the model was trained on (metadata pos_step, or the
    --pos-step of its training command), which the evaluation scenes use too."""
    import re
    if "pos_step" in meta:
        return int(meta["pos_step"])
    m = re.search(r"--pos-step (\d+)", meta.get("training", ""))
    return int(m.group(1)) if m else td.POS_STEP


def forward_maps(model, x, classes):
    """x (B, 3, 96, 96) float64, classes (B,) target class per image ->
    logits (B, C), cdam (B, n), am (B, n), rp (B, n) as numpy float64."""
    import torch
    out = model(x, extras=True)
    L = model.depth
    logits = out["logits"]
    t = out[f"ln1.{L - 1}"]                                   # (B, N, D), T^L
    attn = [out[f"attn.{i}"] for i in range(L)]              # (B, H, N, N)
    idx = torch.as_tensor(classes, dtype=torch.long)
    f = logits.gather(1, idx[:, None]).sum()                 # images are independent
    grads = torch.autograd.grad(f, [t] + attn)
    gt, ga = grads[0], grads[1:]
    cdam = (t * gt).sum(-1)[:, 1:]
    am = attn[-1][:, :, 0, 1:].mean(1)
    B, _, N, _ = attn[0].shape
    R = torch.eye(N, dtype=x.dtype).expand(B, N, N)
    for a, g in zip(attn, ga):
        abar = (g * a).clamp(min=0).mean(1)
        R = R + abar @ R
    rp = R[:, 0, 1:]
    return (logits.detach().numpy(), cdam.detach().numpy(), am.detach().numpy(), rp.detach().numpy())


def hit(score_map, box, grid=12):
    """Top-scoring patch's center inside the box (x, y) of a 28x28 item."""
    p = int(np.argmax(score_map))
    py, px = divmod(p, grid)
    cx, cy = td.PATCH * px + td.PATCH / 2, td.PATCH * py + td.PATCH / 2
    x, y = box
    return x <= cx < x + td.ITEM and y <= cy < y + td.ITEM


def evaluate_recall(model, mean, std, images, labels, n, batch=250):
    import torch
    xs, _, items = td.SceneMaker(images, labels, RECALL_SEED, step=STEP).batch(n)
    with torch.no_grad():
        logits = np.concatenate([
            model(td.to_input(xs[i:i + batch], mean, std).double())["logits"].numpy()
            for i in range(0, n, batch)])
    res = {"all": td.recall_at_k(logits, items)}
    for k in (1, 2, 3):
        sel = [i for i in range(n) if len(items[i]) == k]
        res[f"k={k}"] = (td.recall_at_k(logits[sel], [items[i] for i in sel]), len(sel))
    # per-class recall (an item of class c counted as found)
    per = np.zeros((len(td.LABELS), 2))
    for row, its in zip(logits, items):
        top = set(np.argsort(-row)[:len(its)].tolist())
        for c, _, _, _ in its:
            per[c] += (c in top, 1)
    res["per_class"] = {td.LABELS[c]: per[c, 0] / per[c, 1] for c in range(len(td.LABELS))}
    return res


def evaluate_pointing(model, mean, std, images, labels, n, batch=100):
    xs, _, items = td.SceneMaker(images, labels, POINT_SEED, step=STEP).batch(n, k=2)
    hits = {"CDAM": 0, "AM": 0, "RP": 0}
    per_class = np.zeros((len(td.LABELS), 2))
    total = 0
    for i in range(0, n, batch):
        x = td.to_input(xs[i:i + batch], mean, std).double()
        for j in range(2):                                   # first item, then second
            cls = [items[b][j][0] for b in range(i, min(i + batch, n))]
            _, cdam, am, rp = forward_maps(model, x, cls)
            for b in range(len(cls)):
                c, _, bx, by = items[i + b][j]
                h = hit(cdam[b], (bx, by))
                hits["CDAM"] += h
                hits["AM"] += hit(am[b], (bx, by))
                hits["RP"] += hit(rp[b], (bx, by))
                per_class[c] += (h, 1)
                total += 1
    res = {m: v / total for m, v in hits.items()}
    res["trials"] = total
    res["CDAM_per_class"] = {td.LABELS[c]: per_class[c, 0] / per_class[c, 1] for c in range(len(td.LABELS))}
    return res


def save_png(path, canvas):
    from PIL import Image
    Image.fromarray(canvas, mode="L").convert("RGB").save(path, optimize=True)


EXAMPLES = [("Sneaker", "Bag"), ("Trouser", "Dress"), ("Sandal", "Sneaker", "Ankle boot"),
            ("T-shirt/top", "Shirt"), ("Pullover", "Trouser", "Bag"), ("Coat", "Ankle boot")]


def write_examples(model, mean, std, images, labels, out_dir, per_class=3):
    """Example scenes where the model names every item and CDAM points at each one,
    and per-class item images (test items the model names with confidence)."""
    import torch
    rng = np.random.default_rng(EXAMPLE_SEED)
    maker = td.SceneMaker(images, labels, EXAMPLE_SEED, step=STEP)
    os.makedirs(os.path.join(out_dir, "items"), exist_ok=True)
    index = {"model": "models/fashion-vit.safetensors",
             "box": "x, y, width, height in pixels of the 96x96 image",
             "scenes": [], "items": []}
    for names in EXAMPLES:
        want = [td.LABELS.index(nm) for nm in names]
        for _ in range(200):
            xy = maker.layout(len(want))
            canvas = np.zeros((td.CANVAS, td.CANVAS), np.uint8)
            its = []
            for c, (x, y) in zip(want, xy):
                idx = int(rng.choice(maker.by_class[c]))
                canvas[y:y + td.ITEM, x:x + td.ITEM] = images[idx]
                its.append((c, idx, int(x), int(y)))
            x = td.to_input(canvas[None], mean, std).double()
            ok = True
            for c, _, bx, by in its:
                logits, cdam, _, _ = forward_maps(model, x, [c])
                top = set(np.argsort(-logits[0])[:len(its)].tolist())
                ok &= c in top and bool(hit(cdam[0], (bx, by)))
            if ok:
                break
        else:
            raise RuntimeError(f"no good example scene for {names}")
        fname = "scene-" + "-".join(slug(nm) for nm in names) + ".png"
        save_png(os.path.join(out_dir, fname), canvas)
        index["scenes"].append({"file": fname, "items": [
            {"class": td.LABELS[c], "index": c, "test_item": idx, "box": [bx, by, td.ITEM, td.ITEM]}
            for c, idx, bx, by in its]})
    off = (td.CANVAS - td.ITEM) // 2
    for c, label in enumerate(td.LABELS):
        cand = rng.permutation(maker.by_class[c])[:64]
        canv = np.zeros((len(cand), td.CANVAS, td.CANVAS), np.uint8)
        canv[:, off:off + td.ITEM, off:off + td.ITEM] = images[cand]
        with torch.no_grad():
            logits = model(td.to_input(canv, mean, std).double())["logits"].numpy()
        good = [i for i in range(len(cand)) if np.argmax(logits[i]) == c and logits[i, c] > 2.0]
        if len(good) < per_class:
            raise RuntimeError(f"only {len(good)} confident items for {label}")
        for n, i in enumerate(good[:per_class], 1):
            fname = f"items/{slug(label)}-{n}.png"
            save_png(os.path.join(out_dir, fname), canv[i])
            index["items"].append({"file": fname, "class": label, "index": c, "test_item": int(cand[i]),
                                   "box": [off, off, td.ITEM, td.ITEM]})
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print(f"wrote {len(index['scenes'])} scenes and {len(index['items'])} item images to {out_dir}")


def export(model, mean, std, images, labels, path, n):
    """The first n two-item pointing-game scenes with boxes, logits and maps (float32)."""
    xs, _, items = td.SceneMaker(images, labels, POINT_SEED, step=STEP).batch(n, k=2)
    x = td.to_input(xs, mean, std).double()
    maps = {"cdam": [], "am": [], "rp": []}
    for j in range(2):
        logits, cdam, am, rp = forward_maps(model, x, [its[j][0] for its in items])
        for k, v in zip(("cdam", "am", "rp"), (cdam, am, rp)):
            maps[k].append(v.reshape(n, 12, 12))
    t = {"images": xs,                                              # (n, 96, 96) uint8 grey
         "items": np.array([[[c, bx, by] for c, _, bx, by in its] for its in items], np.int32),
         "logits": logits.astype(np.float32)}
    for k, v in maps.items():
        t[k] = np.stack(v, axis=1).astype(np.float32)            # (n, 2, 12, 12)
    st.save(path, t, {"what": "two-item Fashion-MNIST test scenes (seed 2000) for the pointing game",
                      "items": "(n, 2, 3): class, box x, box y; boxes are 28x28",
                      "maps": "cdam/am/rp (n, item, 12, 12) for that item's class; float64 reference",
                      "hit": "argmax patch center (8px+4, 8py+4) inside [x, x+28) x [y, y+28)"})
    print(f"wrote {n} scenes to {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "fashion-vit.safetensors"))
    ap.add_argument("--scenes", type=int, default=2000, help="recall@k scenes (1-3 items)")
    ap.add_argument("--pairs", type=int, default=1000, help="two-item scenes for the pointing game")
    ap.add_argument("--examples", metavar="DIR", help="write example PNGs and index.json to DIR")
    ap.add_argument("--export", metavar="FILE", help="write two-item scenes + maps for a C test")
    ap.add_argument("--export-n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    t0 = time.time()
    model, meta, mean, std = load_model(a.model)
    global STEP
    STEP = pos_step_of(meta)
    images, labels = td.load_fashion("t10k")
    print(f"model {a.model}: {meta.get('name')}, D={model.dim} L={model.depth} H={model.num_heads}, "
          f"mean {mean} std {std}")
    if a.scenes:
        r = evaluate_recall(model, mean, std, images, labels, a.scenes)
        print(f"recall@k on {a.scenes} test scenes (1-3 items): {100 * r['all']:.2f}%")
        for k in (1, 2, 3):
            v, cnt = r[f"k={k}"]
            print(f"  k={k}: {100 * v:.2f}% ({cnt} scenes)")
        print("  per class: " + ", ".join(f"{lab} {100 * v:.1f}" for lab, v in r["per_class"].items()))
    if a.pairs:
        p = evaluate_pointing(model, mean, std, images, labels, a.pairs)
        print(f"pointing game on {a.pairs} two-item test scenes ({p['trials']} trials): "
              f"CDAM {100 * p['CDAM']:.2f}%, AM {100 * p['AM']:.2f}%, RP {100 * p['RP']:.2f}%")
        print("  CDAM per class: " + ", ".join(f"{lab} {100 * v:.1f}" for lab, v in p["CDAM_per_class"].items()))
    if a.examples:
        write_examples(model, mean, std, images, labels, a.examples)
    if a.export:
        export(model, mean, std, images, labels, a.export, a.export_n)
    print(f"eval_demo: {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
