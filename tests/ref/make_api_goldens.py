#!/usr/bin/python3
"""make_api_goldens.py - goldens for the HTTP API tests (tests/api), deterministic.

    /usr/bin/python3 tests/ref/make_api_goldens.py

Writes tests/data/golden/api_tiny.safetensors (float32): what cdam-server must answer
for real image files, computed independently of the C engine. The image is decoded with
PIL, preprocessed exactly as core/image.c img_to_input does it (antialiased bilinear
resize, the arithmetic of torch F.interpolate(mode="bilinear", antialias=True,
align_corners=False) on a float tensor, only when the size differs; then /255 and the
model's mean/std), and the tiny model runs in float64 (tests/ref/vit_ref.py,
tests/ref/explain_ref.py) from its float32 stored weights.

Only lossless formats are used (PNG, BMP): PIL and stb_image decode them to the same
bytes, so the inputs are exact (a JPEG decoder may differ by a grey level).

Tensors (maps are (gh, gw) row-major over the patch grid, CLS dropped):
  input                 (3, 32, 32)  normalised rgb8.png at the native size (24x32 -> 32x32)
  logits, probabilities (7)          native size; probabilities = softmax(logits)
  classes               (2)          the CDAM targets: top-1 and the lowest-ranked class (float32)
  cdam                  (2, 4, 4)    CDAM for classes[0], classes[1]
  am_mean               (4, 4)       last block's CLS attention, mean over heads
  rp                    (4, 4)       relevance propagation for classes[0]
  input_40x24           (3, 40, 24)  rgb8.png resized to height 40, width 24 (request size [40, 24])
  logits_40x24, probabilities_40x24 (7)
  classes_40x24         (1)          top-1 at 40x24
  cdam_40x24            (1, 5, 3)    CDAM for classes_40x24[0]
  concept               (32)         mean latent z (final-normed CLS row) of rgb24.bmp and
                                     palette.png at the native size, rounded to float32
  cdam_concept          (4, 4)       CDAM of rgb8.png (native) for f = z . concept

Metadata: model, image, concept_images, classes (JSON), labels (JSON).
The script re-reads the file and checks names and shapes; it also checks that its
preprocessing equals tests/data/golden/resize.safetensors' convention (torch on float32).
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)
import explain_ref as er  # noqa: E402
import safetensors_io as st  # noqa: E402
import vit_ref  # noqa: E402

MODEL = os.path.join(ROOT, "tests", "data", "models", "tiny.safetensors")
IMAGES = os.path.join(ROOT, "tests", "data", "images")
OUT = os.path.join(ROOT, "tests", "data", "golden", "api_tiny.safetensors")
IMAGE = "rgb8.png"
CONCEPT_IMAGES = ["rgb24.bmp", "palette.png"]
# core/model.c defaults when the metadata has no mean/std (tiny has none)
DEFAULT_MEAN = [0.485, 0.456, 0.406]
DEFAULT_STD = [0.229, 0.224, 0.225]


def decode(name):
    """(h, w, 3) uint8 RGB, as stb_image gives it for a lossless file without alpha."""
    im = Image.open(os.path.join(IMAGES, name))
    assert im.mode in ("RGB", "P", "L"), (name, im.mode)
    if im.mode == "P":
        assert "transparency" not in im.info, name
    return np.array(im.convert("RGB"), dtype=np.uint8)


def to_input(px, H, W, mean, std):
    """img_to_input: resize (float32 arithmetic, only when the size differs), then
    (v / 255 - mean) / std, computed in float32 like the C engine. Returns float64 (3, H, W)."""
    h, w, _ = px.shape
    t = torch.from_numpy(px).permute(2, 0, 1)[None].float().contiguous()   # (1, 3, h, w) float32
    if (h, w) != (H, W):
        t = F.interpolate(t, size=(H, W), mode="bilinear", antialias=True, align_corners=False)
    x = t[0].numpy().astype(np.float32)
    m = np.asarray(mean, np.float32).reshape(3, 1, 1)
    s = np.asarray(std, np.float32).reshape(3, 1, 1)
    x = ((x / np.float32(255.0)) - m) / s
    return x.astype(np.float64)


def np64(t):
    return t.detach().numpy().astype(np.float64)


def softmax(v):
    v = np.asarray(v, np.float64)
    e = np.exp(v - v.max())
    return e / e.sum()


def main():
    torch.set_num_threads(1)
    state, meta = st.load(MODEL)
    state = {k: np.asarray(v, np.float32) for k, v in state.items()}
    model = vit_ref.vit_from_state(state, meta, dtype=torch.float64)
    mean = json.loads(meta["mean"]) if "mean" in meta else DEFAULT_MEAN
    std = json.loads(meta["std"]) if "std" in meta else DEFAULT_STD
    labels = json.loads(meta["labels"])
    P, g0 = model.patch, model.grid0
    H0 = W0 = P * g0

    px = decode(IMAGE)
    out = {}

    # native size
    x = to_input(px, H0, W0, mean, std)
    ex = er.Explainer(model, x)
    logits = np64(ex.logits)
    order = np.argsort(-logits, kind="stable")
    classes = [int(order[0]), int(order[-1])]
    out["input"] = x
    out["logits"] = logits
    out["probabilities"] = softmax(logits)
    out["classes"] = np.array(classes, np.float64)
    out["cdam"] = np.stack([np64(ex.cdam(("class", c))) for c in classes])
    out["am_mean"] = np64(ex.am())
    out["rp"] = np64(ex.rp(("class", classes[0])))

    # non-square request size [40, 24] (height 40, width 24)
    x2 = to_input(px, 40, 24, mean, std)
    ex2 = er.Explainer(model, x2)
    lg2 = np64(ex2.logits)
    c2 = int(np.argmax(lg2))
    out["input_40x24"] = x2
    out["logits_40x24"] = lg2
    out["probabilities_40x24"] = softmax(lg2)
    out["classes_40x24"] = np.array([c2], np.float64)
    out["cdam_40x24"] = np64(ex2.cdam(("class", c2)))[None]

    # concept: mean latent of the example images at the native size
    lats = [np64(er.latent(model, to_input(decode(n), H0, W0, mean, std))) for n in CONCEPT_IMAGES]
    cbar = np.mean(lats, axis=0).astype(np.float32).astype(np.float64)
    out["concept"] = cbar
    out["cdam_concept"] = np64(ex.cdam(("concept", cbar)))

    # the same cross-check as the forward goldens: the model logits at the native size
    with torch.no_grad():
        full = model(torch.as_tensor(x))
    assert np.allclose(np64(full["logits"]), logits, rtol=0, atol=1e-12)

    tensors = {k: np.asarray(v, np.float64).astype(np.float32) for k, v in out.items()}
    md = {"model": "tiny", "image": IMAGE, "concept_images": json.dumps(CONCEPT_IMAGES),
          "classes": json.dumps(classes), "classes_40x24": json.dumps([c2]),
          "labels": json.dumps(labels), "dtype_of_compute": "float64"}
    st.save(OUT, tensors, md)

    back, bmd = st.load(OUT)
    assert list(back) == list(tensors) and bmd == md
    for k in tensors:
        assert back[k].shape == tensors[k].shape and np.array_equal(back[k], tensors[k]), k
    print(f"make_api_goldens: wrote {os.path.relpath(OUT, ROOT)} ({os.path.getsize(OUT)} bytes)")
    print(f"  top-1 {classes[0]} ({labels[classes[0]]}) p={out['probabilities'][classes[0]]:.6f}, "
          f"lowest {classes[1]} ({labels[classes[1]]}); 40x24 top-1 {c2} ({labels[c2]})")


if __name__ == "__main__":
    main()
