#!/usr/bin/python3
"""make_goldens.py - writes the small test models and the PyTorch goldens (deterministic).

    /usr/bin/python3 tests/ref/make_goldens.py        (or `make test-ref`)

Models (tests/data/models/): tiny (DINO names), tiny_hf (Hugging Face names), tiny_f16,
tiny_bf16, tiny_backbone + tiny_head (split), probe (DINO linear probe on 4D).
Goldens (tests/data/golden/{case}.safetensors, float32): input (3,H,W), pos_embed (N,D),
embed (N,D), block.{i} (N,D), norm (N,D), latent (D or 4D), logits (C), computed in
float64 from the float32 (or f16/bf16-rounded) stored weights. See tests/ref/README.md.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import vit_ref  # noqa: E402

MODELS = os.path.join(ROOT, "tests", "data", "models")
GOLDEN = os.path.join(ROOT, "tests", "data", "golden")
TINY_LABELS = ["apple", "bicycle", "castle", "dolphin", "elephant", "forest", "guitar"]


def random_vit(seed, P, D, heads, L, Fh, g0, C, probe=False, qk_gain=1.9, head_gain=4.0):
    """Random weights with DINO names, float32, chosen so nothing is degenerate:
    peaky attention (q, k weights scaled up), LayerNorm weights 1 + 0.2 N, biases 0.1 N,
    cls/pos N(0, 0.5), linear weights N(0, 1/fan_in), logits O(1-10)."""
    rng = np.random.default_rng(seed)

    def n(*shape, std=1.0):
        return (rng.standard_normal(shape) * std).astype(np.float32)
    s = {}
    s["cls_token"] = n(1, 1, D, std=0.5)
    s["pos_embed"] = n(1, 1 + g0 * g0, D, std=0.5)
    # a smooth component too, so resampling the grid is a meaningful operation
    yy, xx = np.meshgrid(np.arange(g0), np.arange(g0), indexing="ij")
    freq = rng.uniform(0.3, 1.2, size=(2, D))
    phase = rng.uniform(0, 2 * np.pi, size=D)
    smooth = np.sin(yy[..., None] * freq[0] + xx[..., None] * freq[1] + phase)
    s["pos_embed"][0, 1:] += (0.8 * smooth.reshape(g0 * g0, D)).astype(np.float32)
    s["patch_embed.proj.weight"] = n(D, 3, P, P, std=(3 * P * P) ** -0.5)
    s["patch_embed.proj.bias"] = n(D, std=0.1)
    for i in range(L):
        b = f"blocks.{i}."
        s[b + "norm1.weight"] = 1 + n(D, std=0.2)
        s[b + "norm1.bias"] = n(D, std=0.1)
        w = n(3 * D, D, std=D ** -0.5)
        w[:2 * D] *= qk_gain                     # q and k rows: sharper softmax
        s[b + "attn.qkv.weight"] = w
        s[b + "attn.qkv.bias"] = n(3 * D, std=0.1)
        s[b + "attn.proj.weight"] = n(D, D, std=D ** -0.5)
        s[b + "attn.proj.bias"] = n(D, std=0.1)
        s[b + "norm2.weight"] = 1 + n(D, std=0.2)
        s[b + "norm2.bias"] = n(D, std=0.1)
        s[b + "mlp.fc1.weight"] = n(Fh, D, std=D ** -0.5)
        s[b + "mlp.fc1.bias"] = n(Fh, std=0.1)
        s[b + "mlp.fc2.weight"] = n(D, Fh, std=Fh ** -0.5)
        s[b + "mlp.fc2.bias"] = n(D, std=0.1)
    s["norm.weight"] = 1 + n(D, std=0.2)
    s["norm.bias"] = n(D, std=0.1)
    fan = 4 * D if probe else D
    s["head.weight"] = n(C, fan, std=head_gain * fan ** -0.5)
    s["head.bias"] = n(C, std=0.1)
    return s


def run(state, meta, x):
    """float64 forward of the reference; returns float64 numpy intermediates and attention."""
    model = vit_ref.vit_from_state(state, meta, dtype=torch.float64)
    with torch.no_grad():
        out = model(torch.as_tensor(x, dtype=torch.float64), extras=True)
    return {k: v.detach().numpy() for k, v in out.items()}


def check_interesting(name, out, L):
    """Guards against degenerate goldens (uniform attention, tiny or huge logits)."""
    logits = out["logits"]
    amax = [out[f"attn.{i}"].max(-1).mean() for i in range(L)]
    N = out["embed"].shape[0]
    stats = (f"{name}: |logits| max {np.abs(logits).max():.2f} std {logits.std():.2f}, "
             f"mean row-max attention {np.mean(amax):.2f} (uniform {1 / N:.2f}), "
             f"residual rms {np.sqrt((out[f'block.{L - 1}'] ** 2).mean()):.2f}")
    print(stats)
    assert 1.0 < np.abs(logits).max() < 30.0, stats
    assert min(amax) > 3.0 / N and max(amax) < 0.98, stats
    for k, v in out.items():
        assert np.isfinite(v).all(), f"{name}: {k} not finite"
    return stats


def write_golden(case, x, out, L):
    keys = ["input", "pos_embed", "embed"] + [f"block.{i}" for i in range(L)] + ["norm", "latent", "logits"]
    t = {"input": x.astype(np.float32)}
    t.update({k: out[k].astype(np.float32) for k in keys[1:]})
    t.update({f"ln1.{i}": out[f"ln1.{i}"].astype(np.float32) for i in range(L)})
    t["attn_cls"] = out[f"attn.{L - 1}"][:, 0, :].astype(np.float32)  # (H, N) last block, CLS query
    path = os.path.join(GOLDEN, f"{case}.safetensors")
    st.save(path, t, {"case": case, "dtype_of_compute": "float64", "pos_resample": "dino"})
    return path


# ---------------------------------------------------------------- self-checks

def numpy_forward(s, meta, x):
    """A second, plain numpy (float64) forward straight from the spec, to cross-check the
    torch model: explicit patch unfolding, per-head loops, erf GELU via math.erf."""
    import math
    s = {k: np.asarray(v, dtype=np.float64) for k, v in s.items()}
    cfg = vit_ref.config_from_state(s, meta)
    P, D, Hh, eps = cfg["patch"], cfg["dim"], cfg["num_heads"], cfg["eps"]
    Dh = D // Hh
    _, Hpx, Wpx = x.shape
    gh, gw = Hpx // P, Wpx // P
    patches = np.array([x[:, y * P:(y + 1) * P, c * P:(c + 1) * P].reshape(-1)
                        for y in range(gh) for c in range(gw)])                 # (n, 3PP)
    tok = patches @ s["patch_embed.proj.weight"].reshape(D, -1).T + s["patch_embed.proj.bias"]
    g0 = cfg["grid0"]
    pe = s["pos_embed"][0]
    if (gh, gw) != (g0, g0):
        grid = vit_ref.resample_pos_explicit(pe[1:].reshape(g0, g0, D), gh, gw)
        pe = np.concatenate([pe[:1], grid.reshape(gh * gw, D)])
    h = np.concatenate([s["cls_token"][0], tok]) + pe

    def ln(v, w, b):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + eps) * w + b
    erf = np.vectorize(math.erf)
    cls_rows = []
    for i in range(cfg["depth"]):
        b = f"blocks.{i}."
        t = ln(h, s[b + "norm1.weight"], s[b + "norm1.bias"])
        qkv = t @ s[b + "attn.qkv.weight"].T + s[b + "attn.qkv.bias"]
        o = np.zeros_like(h)
        for hd in range(Hh):
            q = qkv[:, 0 * D + hd * Dh:0 * D + (hd + 1) * Dh]
            k = qkv[:, 1 * D + hd * Dh:1 * D + (hd + 1) * Dh]
            v = qkv[:, 2 * D + hd * Dh:2 * D + (hd + 1) * Dh]
            logits = q @ k.T / math.sqrt(Dh)
            a = np.exp(logits - logits.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            o[:, hd * Dh:(hd + 1) * Dh] = a @ v
        h = h + o @ s[b + "attn.proj.weight"].T + s[b + "attn.proj.bias"]
        u = ln(h, s[b + "norm2.weight"], s[b + "norm2.bias"]) @ s[b + "mlp.fc1.weight"].T + s[b + "mlp.fc1.bias"]
        u = 0.5 * u * (1 + erf(u / math.sqrt(2)))
        h = h + u @ s[b + "mlp.fc2.weight"].T + s[b + "mlp.fc2.bias"]
        if cfg["depth"] - i <= 4:
            cls_rows.append(ln(h[0], s["norm.weight"], s["norm.bias"]))
    z = np.concatenate(cls_rows) if cfg["probe"] else ln(h, s["norm.weight"], s["norm.bias"])[0]
    return z @ s["head.weight"].T + s["head.bias"]


def rel_err(a, b):
    """max |a - b| / max |b|: the measure the C tests use (relative 1e-4)."""
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def verify(cases, L_of):
    """Re-reads everything written and cross-checks the reference several ways."""
    # 1. shapes and names of every golden
    dims = {"tiny": (8, 32, 7, 32), "probe": (4, 48, 5, 4 * 48)}
    for mname, H, W in cases:
        g, meta = st.load(os.path.join(GOLDEN, f"{mname}_{H}x{W}.safetensors"))
        P, D, C, Z = dims["probe" if mname == "probe" else "tiny"]
        N = 1 + (H // P) * (W // P)
        want = {"input": (3, H, W), "pos_embed": (N, D), "embed": (N, D), "norm": (N, D),
                "latent": (Z,), "logits": (C,)}
        want.update({f"block.{i}": (N, D) for i in range(L_of[mname])})
        want.update({f"ln1.{i}": (N, D) for i in range(L_of[mname])})
        want["attn_cls"] = (D // 16, N)  # tiny: 2 heads of 16, probe: 3 heads of 16
        got = {k: v.shape for k, v in g.items()}
        assert got == want and all(v.dtype == np.float32 for v in g.values()), (mname, got)

    tiny, tmeta = st.load(os.path.join(MODELS, "tiny.safetensors"))
    x = st.load(os.path.join(GOLDEN, "tiny_24x40.safetensors"))[0]["input"]
    ref = run(tiny, tmeta, x)["logits"]

    # 2. the HF-named model (mapped back) and the split backbone + head give the same logits
    hf, hmeta = st.load(os.path.join(MODELS, "tiny_hf.safetensors"))
    assert hmeta["num_heads"] == "2" and hmeta["ln_eps"] == "1e-6" and "embeddings.cls_token" in hf
    assert np.array_equal(run(hf, hmeta, x)["logits"], ref), "tiny_hf logits differ"
    bb, bmeta = st.load(os.path.join(MODELS, "tiny_backbone.safetensors"))
    hd, hdmeta = st.load(os.path.join(MODELS, "tiny_head.safetensors"))
    assert list(hd) == ["head.weight", "head.bias"] and "labels" in hdmeta and "labels" not in bmeta
    assert np.array_equal(run({**bb, **hd}, bmeta, x)["logits"], ref), "backbone + head logits differ"
    for name, dt in (("tiny_f16", "F16"), ("tiny_bf16", "BF16")):
        _, m, dts = st.load(os.path.join(MODELS, f"{name}.safetensors"), with_dtypes=True)
        assert set(dts.values()) == {dt} and m == tmeta

    # 3. position-embedding resampling: F.interpolate (the DINO call) == the spec's
    # explicit formula, and differs from timm's src formula as expected
    for mname in ("tiny", "probe"):
        s, _ = st.load(os.path.join(MODELS, f"{mname}.safetensors"))
        pe = torch.as_tensor(s["pos_embed"], dtype=torch.float64)
        g0 = math_isqrt(pe.shape[1] - 1)
        gap = None
        for gh, gw in ((g0 + 2, g0 + 2), (g0 - 1, g0 + 1), (2 * g0, g0), (g0, 3), (1, 1)):
            got = vit_ref.resample_pos(pe, gh, gw, "dino")[1:].numpy().reshape(gh, gw, -1)
            want = vit_ref.resample_pos_explicit(s["pos_embed"][0, 1:].reshape(g0, g0, -1), gh, gw, "dino")
            assert np.abs(got - want).max() < 1e-12, (mname, gh, gw, np.abs(got - want).max())
            # DINO's own call, verbatim in effect: note DINO's (w, h) are (H, W)
            img = pe[0, 1:].reshape(1, g0, g0, -1).permute(0, 3, 1, 2)
            direct = torch.nn.functional.interpolate(
                img, scale_factor=((gh + 0.1) / g0, (gw + 0.1) / g0), mode="bicubic")
            assert np.array_equal(direct[0].permute(1, 2, 0).numpy(), got)
            timm = vit_ref.resample_pos_explicit(s["pos_embed"][0, 1:].reshape(g0, g0, -1), gh, gw, "timm")
            tgot = vit_ref.resample_pos(pe, gh, gw, "timm")[1:].numpy().reshape(gh, gw, -1)
            assert np.abs(timm - tgot).max() < 1e-12
            gap = gap if gap is not None else (rel_err(timm, want), gh, gw)
        # float32 interpolation (what DINO does in practice) vs the float64 goldens
        g32 = vit_ref.resample_pos(pe.float(), g0 + 2, g0 - 1)[1:].double().numpy()
        g64 = vit_ref.resample_pos(pe, g0 + 2, g0 - 1)[1:].numpy()
        print(f"verify: {mname} pos resampling: F.interpolate == explicit formula; "
              f"float32 vs float64 rel {rel_err(g32, g64):.1e}; "
              "timm vs dino formula rel %.1e at %dx%d" % gap)

    # 4. an independent plain-numpy forward agrees with the torch reference
    numpy_worst = 0.0
    for mname, H, W in cases:
        s, m = st.load(os.path.join(MODELS, f"{mname}.safetensors"))
        s = {k: np.asarray(v, np.float32) for k, v in s.items()}
        g = st.load(os.path.join(GOLDEN, f"{mname}_{H}x{W}.safetensors"))[0]
        e = rel_err(numpy_forward(s, m, g["input"]), g["logits"])
        assert e < 1e-6, (mname, H, W, e)
        numpy_worst = max(numpy_worst, e)
    print(f"verify: plain numpy forward vs torch float64 goldens: worst logits rel {numpy_worst:.1e}")

    # 5. what a float32 engine achieves against these goldens (torch float32 forward)
    worst = 0.0
    for mname, H, W in cases:
        s, m = st.load(os.path.join(MODELS, f"{mname}.safetensors"))
        s = {k: np.asarray(v, np.float32) for k, v in s.items()}
        g = st.load(os.path.join(GOLDEN, f"{mname}_{H}x{W}.safetensors"))[0]
        model = vit_ref.vit_from_state(s, m, dtype=torch.float32)
        with torch.no_grad():
            out = model(torch.as_tensor(g["input"]), extras=True)
        L = sum(1 for k in g if k.startswith("block."))
        out["attn_cls"] = out[f"attn.{L - 1}"][:, 0, :]
        errs = {k: rel_err(out[k].detach().numpy(), g[k]) for k in g if k != "input"}
        k = max(errs, key=errs.get)
        worst = max(worst, errs[k])
        print(f"verify: {mname}_{H}x{W}: torch float32 vs golden, worst rel {errs[k]:.1e} ({k}), "
              f"logits {errs['logits']:.1e}")
    assert worst < 1e-4, worst
    print("verify: ok (shapes, HF names, split files, f16/bf16 dtypes, resampling, numpy cross-check)")


def math_isqrt(v):
    import math
    return math.isqrt(int(v))


def main():
    os.makedirs(MODELS, exist_ok=True)
    os.makedirs(GOLDEN, exist_ok=True)

    # ---- models
    tiny = random_vit(seed=1, P=8, D=32, heads=2, L=3, Fh=128, g0=4, C=7)
    tiny_meta = {"name": "tiny", "num_heads": "2", "labels": json.dumps(TINY_LABELS)}
    st.save(os.path.join(MODELS, "tiny.safetensors"), tiny, tiny_meta)

    hf_meta = {"name": "tiny-hf", "num_heads": "2", "ln_eps": "1e-6", "labels": json.dumps(TINY_LABELS)}
    st.save(os.path.join(MODELS, "tiny_hf.safetensors"), vit_ref.dino_to_hf(tiny), hf_meta)

    st.save(os.path.join(MODELS, "tiny_f16.safetensors"), tiny, tiny_meta, dtypes="F16")
    st.save(os.path.join(MODELS, "tiny_bf16.safetensors"), tiny, tiny_meta, dtypes="BF16")

    backbone = {k: v for k, v in tiny.items() if not k.startswith("head.")}
    head = {k: v for k, v in tiny.items() if k.startswith("head.")}
    st.save(os.path.join(MODELS, "tiny_backbone.safetensors"), backbone, {"name": "tiny", "num_heads": "2"})
    st.save(os.path.join(MODELS, "tiny_head.safetensors"), head, {"labels": json.dumps(TINY_LABELS)})

    probe = random_vit(seed=2, P=4, D=48, heads=3, L=4, Fh=192, g0=6, C=5, probe=True)
    probe_meta = {"name": "probe", "num_heads": "3", "mean": "[0.5, 0.5, 0.5]", "std": "[0.25, 0.25, 0.25]"}
    st.save(os.path.join(MODELS, "probe.safetensors"), probe, probe_meta)

    # ---- goldens: the weights are re-read from the written files, so the goldens are
    # exactly what a reader of those files sees (f16/bf16 rounding included)
    def model_file(name):
        s, m = st.load(os.path.join(MODELS, f"{name}.safetensors"))
        return {k: np.asarray(v, dtype=np.float32) for k, v in s.items()}, m

    cases = [("tiny", 32, 32), ("tiny", 48, 48), ("tiny", 24, 40), ("tiny", 64, 32),
             ("probe", 24, 24), ("probe", 32, 20), ("tiny_f16", 32, 32), ("tiny_bf16", 32, 32)]
    L_of = {"tiny": 3, "tiny_f16": 3, "tiny_bf16": 3, "probe": 4}
    for mname, H, W in cases:
        state, meta = model_file(mname)
        # one input per size, shared by tiny/tiny_f16/tiny_bf16 (seed from the size only)
        x = np.random.default_rng(1000 + 97 * H + W).standard_normal((3, H, W)).astype(np.float32)
        out = run(state, meta, x)
        case = f"{mname}_{H}x{W}"
        check_interesting(case, out, L_of[mname])
        write_golden(case, x, out, L_of[mname])

    verify(cases, L_of)

    total = 0
    for d in (MODELS, GOLDEN):
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                total += os.path.getsize(os.path.join(d, f))
    print(f"wrote {len(cases)} goldens; models + goldens {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
