#!/usr/bin/python3
"""test_convert.py - offline test of tools/convert.py.

    /usr/bin/python3 tests/ref/test_convert.py        (from anywhere; needs python3-torch)

Builds small random ViTs (P=4, D=64, 2 heads, 4 blocks, g0=4) with torch, saves them as
fake checkpoints in the real container formats and key names, converts each, and checks
that tests/ref/vit_ref.py on the converted file gives the logits (or latent) of the
original PyTorch model:
  DINO backbone .pth (bare state dict); DINO training checkpoint (teacher/student with
  backbone. / module.backbone. prefixes, DINO projection head, argparse args);
  Lightning .ckpt (state_dict with model.* + linear.*, hyper_parameters as a plain dict
  and as an AttributeDict of a module that is not installed; a pickled os.system call
  must not run); DINO linear probe
  (module.linear.*, 4D inputs) with a backbone; Hugging Face pytorch_model.bin
  (ViTModel with pooler; ViTForImageClassification with vit. prefix and classifier) and
  model.safetensors; timm-style safetensors. Plus metadata, F16 output, and errors.
If build/cdam exists, `cdam predict` on converted models is compared with torch
(1e-4 relative, floor at the logits' rms). Without torch the test is skipped.
Last line: "test_convert: N passed, N failed"; exit status 1 on failure.
"""
import argparse
import contextlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import types
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))

try:
    import torch
except ImportError:
    print("test_convert: SKIP: torch is not importable (apt-get install python3-torch)")
    print("test_convert: 0 passed, 0 failed")
    sys.exit(0)

import numpy as np  # noqa: E402

import convert  # noqa: E402
import safetensors_io as st  # noqa: E402
from vit_ref import ViT, dino_to_hf, vit_from_state  # noqa: E402

P, D, HEADS, L, F, G0, C = 4, 64, 2, 4, 128, 4, 5
LABELS = ["cat", "dog", "fish", "bird", "zebra"]
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL test_convert: {what}", file=sys.stderr)


def random_model(seed, probe=False, eps=1e-6, classes=C):
    torch.manual_seed(seed)
    m = ViT(P, D, L, HEADS, F, G0, num_classes=classes, probe=probe, eps=eps).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif name in ("cls_token", "pos_embed"):
                p.copy_(0.5 * torch.randn_like(p))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) / fan_in ** 0.5)
                if "qkv" in name:
                    p[: 2 * D] *= 1.9                  # peaky attention
        # float32-representable, as a real checkpoint
        for p in m.parameters():
            p.copy_(p.float().double())
    return m.eval()


def f32_state(model, prefix=""):
    """A state dict as a real checkpoint holds it: float32 torch tensors."""
    return {prefix + k: v.detach().float().clone() for k, v in model.state_dict().items()}


def image(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(G0 * P, G0 * P, 3), dtype=np.uint8)


def normalise(img, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    x = img.astype(np.float64) / 255.0
    x = (x - np.array(mean)) / np.array(std)
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


def run_ref(path, x):
    state, meta = st.load(path)
    model = vit_from_state({k: v.astype(np.float32) for k, v in state.items()}, meta, dtype=torch.float64)
    with torch.no_grad():
        return model(x), meta


def close(a, b, tol=1e-9):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    scale = np.sqrt(np.mean(b ** 2)) + 1e-30
    return bool(np.all(np.abs(a - b) <= tol * (np.abs(b) + scale)))


def run_convert(argv):
    """tools/convert.py main() in-process -> (exit code, stdout + stderr)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = convert.main(argv)
    return rc, out.getvalue()


def write_png(path, rgb):
    """A minimal 8-bit RGB PNG writer (no PIL needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(t, data):
        c = struct.pack(">I", len(data)) + t + data
        return c + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@contextlib.contextmanager
def fake_module(name, **attrs):
    """Registers a module (e.g. pytorch_lightning.utilities.parsing) only while saving,
    so that loading meets a class from a module that is not installed."""
    parts = name.split(".")
    added = []
    for i in range(1, len(parts) + 1):
        mod = ".".join(parts[:i])
        if mod not in sys.modules:
            sys.modules[mod] = types.ModuleType(mod)
            added.append(mod)
    for k, v in attrs.items():
        v.__module__ = name
        setattr(sys.modules[name], k, v)
    try:
        yield
    finally:
        for mod in added:
            del sys.modules[mod]


class AttributeDict(dict):
    """Like pytorch_lightning.utilities.parsing.AttributeDict."""

    def __getattr__(self, key):
        return self[key]


class Evil:
    """Unpickles as a call of os.system: an unrestricted torch.load would run it."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def main():
    ap = argparse.ArgumentParser(description="offline test of tools/convert.py")
    ap.add_argument("--cdam", default=os.path.join(ROOT, "build", "cdam"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="test_convert.")
    T = lambda n: os.path.join(tmp, n)  # noqa: E731
    img = image(1)
    x = normalise(img)
    png = T("img.png")
    write_png(png, img)
    with open(T("labels.txt"), "w") as f:
        f.write("\n".join(LABELS) + "\n")

    base = random_model(1)                       # backbone + CDAM head (C, D)
    with torch.no_grad():
        ref = base(x)
    c_cases = []                                  # (converted file, torch logits) for build/cdam

    # 1. DINO backbone .pth: a bare state dict, no head
    bb = {k: v for k, v in f32_state(base).items() if not k.startswith("head.")}
    torch.save(bb, T("dino_backbone.pth"))
    rc, out = run_convert([T("dino_backbone.pth"), "-o", T("bb.safetensors"), "--num-heads", "2"])
    check(rc == 0, f"dino .pth: exit {rc}: {out}")
    if rc == 0:
        got, meta = run_ref(T("bb.safetensors"), x)
        check(close(got["latent"], ref["latent"]), "dino .pth: latent differs")
        check("logits" not in got, "dino .pth: a head appeared")
        check(meta.get("num_heads") == "2" and meta.get("name") == "bb", f"dino .pth: metadata {meta}")
        t, _ = st.load(T("bb.safetensors"))
        check(list(t)[:4] == ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
              and list(t)[-2:] == ["norm.weight", "norm.bias"], f"dino .pth: order {list(t)[:4]}")
    # default num_heads is D/64 = 1: a different model, so different latents
    rc, out = run_convert([T("dino_backbone.pth"), "-o", T("bb1.safetensors")])
    if rc == 0:
        got, meta = run_ref(T("bb1.safetensors"), x)
        check(meta.get("num_heads") == "1", f"default num_heads: {meta.get('num_heads')}")
    check(rc == 0, f"dino .pth default heads: exit {rc}: {out}")

    # 2. DINO training checkpoint: teacher (backbone.*) and student (module.backbone.*)
    student = random_model(2)
    dino_head = {"head.mlp.0.weight": torch.randn(32, D), "head.mlp.0.bias": torch.randn(32),
                 "head.last_layer.weight_g": torch.ones(100, 1), "head.last_layer.weight_v": torch.randn(100, 32)}
    ck = {"teacher": {**{"backbone." + k: v for k, v in bb.items()}, **dino_head},
          "student": {**{"module.backbone." + k: v for k, v in f32_state(student).items()
                         if not k.startswith("head.")}, **{"module." + k: v for k, v in dino_head.items()}},
          "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 800,
          "args": argparse.Namespace(arch="vit_small", patch_size=P), "dino_loss": {"center": torch.zeros(1, 100)}}
    torch.save(ck, T("dino_full_checkpoint.pth"))
    rc, out = run_convert([T("dino_full_checkpoint.pth"), "-o", T("full.safetensors"), "--num-heads", "2"])
    check(rc == 0, f"dino checkpoint: exit {rc}: {out}")
    if rc == 0:
        got, _ = run_ref(T("full.safetensors"), x)
        check(close(got["latent"], ref["latent"]), "dino checkpoint: teacher latent differs")
    rc, out = run_convert([T("dino_full_checkpoint.pth"), "-o", T("student.safetensors"), "--num-heads", "2",
                           "--checkpoint-key", "student"])
    check(rc == 0, f"dino checkpoint student: exit {rc}: {out}")
    if rc == 0:
        got, _ = run_ref(T("student.safetensors"), x)
        with torch.no_grad():
            check(close(got["latent"], student(x)["latent"]), "dino checkpoint: student latent differs")

    # 3. Lightning .ckpt (the CDAM authors' head): model.* + linear.*
    sd = {("linear." + k[5:] if k.startswith("head.") else "model." + k): v for k, v in f32_state(base).items()}
    lit = {"epoch": 9, "global_step": 100090, "pytorch-lightning_version": "2.0.1",
           "state_dict": sd, "loops": {"fit_loop": {"state_dict": {}}},
           "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.91)}},
           "optimizer_states": [{"state": {}, "param_groups": [{"lr": 3e-4}]}], "lr_schedulers": [],
           "hparams_name": "kwargs", "hyper_parameters": {"num_classes": C}}
    torch.save(lit, T("plain.ckpt"))
    rc, out = run_convert([T("plain.ckpt"), "-o", T("lit.safetensors"), "--num-heads", "2",
                           "--labels", T("labels.txt"), "--name", "lit-test"])
    check(rc == 0, f"lightning ckpt: exit {rc}: {out}")
    if rc == 0:
        got, meta = run_ref(T("lit.safetensors"), x)
        check(close(got["logits"], ref["logits"]), "lightning ckpt: logits differ")
        check(json.loads(meta.get("labels", "[]")) == LABELS and meta.get("name") == "lit-test",
              f"lightning ckpt: metadata {meta}")
        c_cases.append(("lightning", T("lit.safetensors"), ref["logits"]))
    # hyper_parameters as an AttributeDict of a module that is not installed
    with fake_module("pytorch_lightning.utilities.parsing", AttributeDict=AttributeDict):
        lit2 = dict(lit, hyper_parameters=AttributeDict(num_classes=C))
        torch.save(lit2, T("attrdict.ckpt"))
    rc, out = run_convert([T("attrdict.ckpt"), "-o", T("lit2.safetensors"), "--num-heads", "2"])
    check(rc == 0, f"lightning AttributeDict: exit {rc}: {out}")
    if rc == 0:
        got, _ = run_ref(T("lit2.safetensors"), x)
        check(close(got["logits"], ref["logits"]), "lightning AttributeDict: logits differ")
    # a checkpoint that names a function to call (os.system) runs nothing
    flag = T("pwned")
    torch.save(dict(lit, hyper_parameters=Evil(f"touch {flag}")), T("evil.ckpt"))
    rc, out = run_convert([T("evil.ckpt"), "-o", T("evil.safetensors"), "--num-heads", "2"])
    check(rc == 0 and not os.path.exists(flag), f"a pickled os.system call ran or failed: {rc}: {out}")
    # head only, then merged with the backbone (as tools/fetch-dino.sh does)
    rc, out = run_convert([T("plain.ckpt"), "-o", T("head.safetensors"), "--head-only",
                           "--labels", T("labels.txt"), "--compare", T("bb.safetensors")])
    check(rc == 0, f"lightning --head-only: exit {rc}: {out}")
    if rc == 0:
        h, hmeta = st.load(T("head.safetensors"))
        check(sorted(h) == ["head.bias", "head.weight"], f"--head-only wrote {sorted(h)}")
        check("num_heads" not in hmeta, "--head-only wrote num_heads")
        b, bmeta = st.load(T("bb.safetensors"))
        model = vit_from_state({**b, **h}, bmeta, dtype=torch.float64)
        with torch.no_grad():
            check(close(model(x)["logits"], ref["logits"]), "backbone + head files: logits differ")
        check("largest difference 0" in out, f"--compare: {out}")

    # 4. DINO linear probe: module.linear.* (C, 4D) with a backbone .pth
    probe = random_model(3, probe=True)
    with torch.no_grad():
        probe_ref = probe(x)
    pst = f32_state(probe)
    torch.save({k: v for k, v in pst.items() if not k.startswith("head.")}, T("probe_backbone.pth"))
    torch.save({"epoch": 100, "best_acc": 79.7,
                "state_dict": {"module.linear.weight": pst["head.weight"], "module.linear.bias": pst["head.bias"]},
                "optimizer": {"state": {}, "param_groups": []}, "scheduler": {"last_epoch": 100}},
               T("dino_linearweights.pth"))
    rc, out = run_convert([T("probe_backbone.pth"), T("dino_linearweights.pth"), "-o", T("probe.safetensors"),
                           "--num-heads", "2"])
    check(rc == 0, f"linear probe: exit {rc}: {out}")
    if rc == 0:
        got, _ = run_ref(T("probe.safetensors"), x)
        t, _ = st.load(T("probe.safetensors"))
        check(t["head.weight"].shape == (C, 4 * D), f"linear probe: head {t['head.weight'].shape}")
        check(close(got["logits"], probe_ref["logits"]), "linear probe: logits differ")
        c_cases.append(("linear probe", T("probe.safetensors"), probe_ref["logits"]))
    rc, out = run_convert([T("dino_linearweights.pth"), "-o", T("probe_head.safetensors")])
    check(rc == 0, f"linear probe head only: exit {rc}: {out}")

    # 5. Hugging Face: ViTModel (with pooler) and ViTForImageClassification (vit. prefix)
    hfm = random_model(4, eps=1e-12)
    with torch.no_grad():
        hf_ref = hfm(x)
    hst = f32_state(hfm)
    hf = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
          dino_to_hf({k: v.numpy() for k, v in hst.items()}).items()}
    vitmodel = {k: v for k, v in hf.items() if not k.startswith("classifier.")}
    vitmodel["pooler.dense.weight"], vitmodel["pooler.dense.bias"] = torch.randn(D, D), torch.randn(D)
    torch.save(vitmodel, T("pytorch_model.bin"))
    rc, out = run_convert([T("pytorch_model.bin"), "-o", T("hf.safetensors"), "--num-heads", "2"])
    check(rc == 0, f"hf ViTModel: exit {rc}: {out}")
    if rc == 0:
        got, meta = run_ref(T("hf.safetensors"), x)
        check(meta.get("ln_eps") == "1e-12", f"hf: ln_eps {meta.get('ln_eps')}")
        check(close(got["latent"], hf_ref["latent"]), "hf ViTModel: latent differs")
    cls = {("vit." + k if not k.startswith("classifier.") else k): v for k, v in hf.items()}
    torch.save(cls, T("hf_classifier.bin"))
    rc, out = run_convert([T("hf_classifier.bin"), "-o", T("hfc.safetensors"), "--num-heads", "2"])
    check(rc == 0, f"hf classifier: exit {rc}: {out}")
    if rc == 0:
        got, _ = run_ref(T("hfc.safetensors"), x)
        check(close(got["logits"], hf_ref["logits"]), "hf classifier: logits differ")
        c_cases.append(("hugging face", T("hfc.safetensors"), hf_ref["logits"]))
    st.save(T("model.safetensors"), {k: v.numpy() for k, v in cls.items()}, {"format": "pt"})
    rc, out = run_convert([T("model.safetensors"), "-o", T("hfs.safetensors"), "--num-heads", "2"])
    check(rc == 0, f"hf safetensors: exit {rc}: {out}")
    if rc == 0:
        got, _ = run_ref(T("hfs.safetensors"), x)
        check(close(got["logits"], hf_ref["logits"]), "hf safetensors: logits differ")

    # 6. timm-style safetensors (DINO names, no metadata), stored F16 on the way out
    st.save(T("timm.safetensors"), {k: v.numpy() for k, v in bb.items()})
    rc, out = run_convert([T("timm.safetensors"), "-o", T("timm_f16.safetensors"), "--num-heads", "2",
                           "--dtype", "F16", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"])
    check(rc == 0, f"timm safetensors: exit {rc}: {out}")
    if rc == 0:
        t, meta, dts = st.load(T("timm_f16.safetensors"), with_dtypes=True)
        check(set(dts.values()) == {"F16"}, f"--dtype F16: {set(dts.values())}")
        check(json.loads(meta["mean"]) == [0.5] * 3 and json.loads(meta["std"]) == [0.25] * 3, f"mean/std {meta}")
        r16 = {k: torch.from_numpy(st.round_f16(v.numpy())).double() for k, v in bb.items()}
        m16 = random_model(1)
        m16.head = None
        m16.load_state_dict(r16)
        got, _ = run_ref(T("timm_f16.safetensors"), x)
        with torch.no_grad():
            check(close(got["latent"], m16(x)["latent"]), "F16 output: latent differs from rounded weights")

    # 7. errors
    bad = dict(bb)
    bad["blocks.0.attn.extra"] = torch.zeros(3)
    torch.save(bad, T("bad_extra.pth"))
    rc, out = run_convert([T("bad_extra.pth"), "-o", T("x.safetensors")])
    check(rc == 1 and "unexpected tensor blocks.0.attn.extra" in out, f"extra tensor: {rc}: {out}")
    bad = {k: v for k, v in bb.items() if k != "blocks.2.mlp.fc2.bias"}
    torch.save(bad, T("bad_missing.pth"))
    rc, out = run_convert([T("bad_missing.pth"), "-o", T("x.safetensors")])
    check(rc == 1 and "missing tensor blocks.2.mlp.fc2.bias" in out, f"missing tensor: {rc}: {out}")
    bad = dict(sd, **{"linear.weight": torch.zeros(C, 3 * D)})
    torch.save({"state_dict": bad}, T("bad_head.ckpt"))
    rc, out = run_convert([T("bad_head.ckpt"), "-o", T("x.safetensors"), "--num-heads", "2"])
    check(rc == 1 and "192 inputs" in out, f"bad head fan-in: {rc}: {out}")
    rc, out = run_convert([T("plain.ckpt"), "-o", T("x.safetensors"), "--num-heads", "3"])
    check(rc == 1 and "does not divide" in out, f"bad num_heads: {rc}: {out}")
    with open(T("labels3.txt"), "w") as f:
        f.write("a\nb\nc\n")
    rc, out = run_convert([T("plain.ckpt"), "-o", T("x.safetensors"), "--labels", T("labels3.txt")])
    check(rc == 1 and "3 labels for 5 classes" in out, f"label count: {rc}: {out}")
    rc, out = run_convert([T("dino_backbone.pth"), T("dino_backbone.pth"), "-o", T("x.safetensors")])
    check(rc == 1 and "also in an earlier input" in out, f"duplicate tensor: {rc}: {out}")
    nan = dict(bb)
    nan["norm.bias"] = torch.full((D,), float("nan"))
    torch.save(nan, T("bad_nan.pth"))
    rc, out = run_convert([T("bad_nan.pth"), "-o", T("x.safetensors")])
    check(rc == 1 and "non-finite" in out, f"NaN weight: {rc}: {out}")
    rc, out = run_convert([T("missing.pth"), "-o", T("x.safetensors")])
    check(rc == 1 and "No such file" in out, f"missing file: {rc}: {out}")

    # 8. the command line itself
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert.py"), T("plain.ckpt"),
                        "-o", T("cli.safetensors"), "--num-heads", "2"], capture_output=True, text=True)
    check(p.returncode == 0 and "C=5" in p.stdout, f"convert.py CLI: {p.returncode}: {p.stdout}{p.stderr}")

    # 9. the C engine on converted models
    if os.access(a.cdam, os.X_OK):
        for what, path, logits in c_cases:
            p = subprocess.run([a.cdam, "predict", "--model", path, "--top", str(C), png],
                               capture_output=True, text=True)
            try:
                preds = json.loads(p.stdout)["predictions"]
                got = np.zeros(C)
                for q in preds:
                    got[q["index"]] = q["logit"]
                ok = p.returncode == 0 and len(preds) == C and close(got, logits.numpy(), 1e-4)
            except (ValueError, KeyError) as e:
                ok, got = False, str(e)
            check(ok, f"cdam predict on the {what} model: {got} vs torch {logits.numpy()} ({p.stderr.strip()})")
        print(f"test_convert: {a.cdam} predict compared with torch on {len(c_cases)} converted models")
    else:
        print(f"test_convert: {a.cdam} not built: C engine comparison skipped")

    for n in os.listdir(tmp):
        os.remove(os.path.join(tmp, n))
    os.rmdir(tmp)
    print(f"test_convert: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
