#!/usr/bin/python3
"""make_explain_goldens.py - writes the explanation-method goldens (deterministic).

    /usr/bin/python3 tests/ref/make_explain_goldens.py

Needs the models and forward goldens of make_goldens.py (it reuses their inputs, so the
forward and explain goldens agree). Computes every method of method.md sections 3-9 with
torch autograd in float64 (tests/ref/explain_ref.py) and writes
tests/data/golden/explain_{model}_{H}x{W}.safetensors (float32). See tests/ref/README.md,
section "Explain goldens", for the tensors and the exact definitions.

Self-checks (printed): the closed form of section 3 equals autograd CDAM to 1e-10; a token
whose CLS attention is zero in every head gets exactly zero CDAM; DINO's threshold code
equals the "smallest set holding mass t" rule; batched TAM equals unbatched; Integrated
CDAM with many steps is complete; a float32 run of the same reference stays within the C
tests' tolerance; every written file re-reads with the expected names and shapes.
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
import explain_ref as er  # noqa: E402
import safetensors_io as st  # noqa: E402
import vit_ref  # noqa: E402

MODELS = os.path.join(ROOT, "tests", "data", "models")
GOLDEN = os.path.join(ROOT, "tests", "data", "golden")

CASES = [("tiny", 32, 32), ("tiny", 48, 48), ("tiny", 24, 40), ("probe", 24, 24), ("probe", 32, 20)]
MODEL_INDEX = {"tiny": 1, "probe": 2}
SMOOTH_K, SMOOTH_SIGMA = 4, 0.1
IG_STEPS, IG_STEPS_SMALL = 16, 4
THRESH = 0.6
TAG = "0.6"


def load_model(name, dtype):
    s, m = st.load(os.path.join(MODELS, f"{name}.safetensors"))
    s = {k: np.asarray(v, np.float32) for k, v in s.items()}
    return vit_ref.vit_from_state(s, m, dtype=dtype)


def np64(t):
    return t.detach().numpy().astype(np.float64)


def close_err(c, ref):
    """The C tests' measure (tests/check.h check_close): max |c - ref| / (|ref| + rms(ref));
    pass when <= 1e-4."""
    c = np.asarray(c, np.float64)
    ref = np.asarray(ref, np.float64)
    rms = np.sqrt((ref ** 2).mean())
    return float((np.abs(c - ref) / (np.abs(ref) + rms + 1e-300)).max())


def compute(model, x, classes, cbar, noise):
    """Every map of one case with `model` (float64 for the goldens, float32 for the check).
    Returns an ordered dict name -> float64 numpy array."""
    ex = er.Explainer(model, x)
    t = {}
    cls_t = [("class", c) for c in classes]
    con = ("concept", cbar)
    maps, grads = [], []
    for tg in cls_t:
        s, g = ex.cdam(tg, with_grad=True)
        maps.append(np64(s))
        grads.append(np64(g))
    t["cdam"] = np.stack(maps)
    s, g = ex.cdam(con, with_grad=True)
    t["cdam_concept"] = np64(s)
    t["T"] = np64(ex.T[0])
    t["grad_T"] = grads[0]
    t["grad_T_concept"] = np64(g)
    t["smooth_cdam"] = np64(ex.smooth_cdam(cls_t[0], noise))
    t["integrated_cdam"] = np64(ex.integrated_cdam(cls_t[0], IG_STEPS))
    t["integrated_cdam4"] = np64(ex.integrated_cdam(cls_t[0], IG_STEPS_SMALL))
    t["am_mean"] = np64(ex.am())
    for h in range(ex.H):
        t[f"am_head{h}"] = np64(ex.am(h))
    t[f"am_thresh{TAG}"] = np64(ex.am_threshold(THRESH))
    for h in range(ex.H):
        t[f"am_thresh{TAG}_head{h}"] = np64(ex.am_threshold(THRESH, h))
    t["rp"] = np.stack([np64(ex.rp(tg)) for tg in cls_t])
    t["rp_concept"] = np64(ex.rp(con))
    tams = [np64(m) for m in ex.tam(cls_t + [con])]
    t["tam"] = np.stack(tams[:-1])
    t["tam_concept"] = tams[-1]
    # statistics over the classes[0] maps (AM is class-independent: am_mean)
    m0 = {"cdam": t["cdam"][0], "rp": t["rp"][0], "tam": t["tam"][0], "am": t["am_mean"]}
    for a, b in (("cdam", "rp"), ("cdam", "tam"), ("rp", "tam"), ("cdam", "am"), ("rp", "am"), ("tam", "am")):
        t[f"pearson_{a}_{b}"] = np.array([er.pearson(m0[a], m0[b])])
    for k in ("cdam", "rp", "tam", "am"):
        t[f"sparsity_{k}"] = np.array([er.sparsity(m0[k])])
    return ex, t


def sparsity_margin(s):
    """How far the sparsity decisions are from flipping: min_i ||s_i| - 0.05 max s| / max |s|."""
    s = np.asarray(s, np.float64).ravel()
    return float(np.abs(np.abs(s) - 0.05 * s.max()).min() / np.abs(s).max())


def check_closed_form(ex, classes, cbar):
    """Closed form (section 3) vs autograd, every target; returns the worst relative error."""
    worst = 0.0
    for tg in [("class", c) for c in classes] + [("concept", cbar)]:
        auto = np64(ex.cdam(tg))
        cf, _ = ex.cdam_closed_form(tg)
        e = float(np.abs(np64(cf) - auto).max() / np.abs(auto).max())
        assert e < 1e-10, (tg[0], e)
        worst = max(worst, e)
    return worst


def check_zero_attention(ex, cls):
    """Push the CLS query's attention logit to token i (the one with the largest |CDAM|) down
    by M in every head: a_i -> 0 and S_i -> 0 with it (S_i / a_i stays bounded); at M = 1000
    a_i underflows to exactly 0 and S_i is exactly 0. The closed form holds throughout."""
    tg = ("class", cls)
    s0 = np64(ex.cdam(tg)).ravel()
    i = int(np.abs(s0).argmax())
    rows = []
    for M in (0.0, 5.0, 10.0, 20.0, 40.0, 1000.0):
        bias = torch.zeros(ex.H, ex.N, dtype=ex.dtype)
        bias[:, 1 + i] = -M
        s = np64(ex.cdam_with_bias(tg, bias)).ravel()
        cf, a = ex.cdam_closed_form(tg, bias)
        cf = np64(cf).ravel()
        amax = float(a[:, 1 + i].max())
        assert np.abs(cf - s).max() <= 1e-10 * np.abs(s).max(), M
        rows.append((M, amax, s[i]))
    assert rows[-1][1] == 0.0 and rows[-1][2] == 0.0, rows[-1]
    ratios = [abs(si) / a for _, a, si in rows[:-1]]
    assert max(ratios) < 100 * max(ratios[0], 1e-12), ratios
    return i, rows


def check_threshold_rule(ex, t):
    """DINO's sort/cumsum code == 'per head, the smallest set of the largest attentions
    holding at least a fraction t of the head's patch mass' (numpy, descending)."""
    masks, margin = ex.dino_threshold_masks(t)
    a = np64(ex.attn_last[:, 0, 1:])
    for h in range(a.shape[0]):
        order = np.argsort(-a[h], kind="stable")
        mass = np.cumsum(a[h][order]) / a[h].sum()
        k = int(np.argmax(mass >= t)) + 1            # smallest k with mass >= t
        want = np.zeros(a.shape[1], bool)
        want[order[:k]] = True
        assert np.array_equal(want, masks[h].numpy()), h
    return masks.sum(1).tolist(), margin


def check_integrated_completeness(ex, target, steps=400):
    """Midpoint rule with many steps: sum over ALL tokens of T * mean grad = f(T) - f(0)."""
    ex._target = target
    gsum = 0
    for k in range(steps):
        g, _ = ex.grad_at(ex.T * ((k + 0.5) / steps))
        gsum = gsum + g
    total = float((ex.T * gsum / steps).sum())
    _, o1 = ex.grad_at(ex.T)
    _, o0 = ex.grad_at(ex.T * 0)
    return total, float(o1["f"] - o0["f"])


def main():
    torch.set_num_threads(1)
    written, worst32 = [], {}
    for mname, H, W in CASES:
        case = f"{mname}_{H}x{W}"
        fwd, _ = st.load(os.path.join(GOLDEN, f"{case}.safetensors"))
        x = fwd["input"]
        m64 = load_model(mname, torch.float64)
        ex = er.Explainer(m64, x)
        L = m64.depth
        assert np.abs(np64(ex.logits) - fwd["logits"]).max() < 1e-5 * np.abs(fwd["logits"]).max()
        assert np.abs(np64(ex.T[0]) - fwd[f"ln1.{L - 1}"]).max() < 1e-5 * np.abs(fwd[f"ln1.{L - 1}"]).max()

        logits = np64(ex.logits)
        order = np.argsort(-logits, kind="stable")
        classes = [int(order[0]), int(order[1]), int(order[-1])]   # top-1, 2nd, lowest

        seed = [MODEL_INDEX[mname], H, W]
        mi = MODEL_INDEX[mname]
        cin = [np.random.default_rng([7, mi, H, W, j]).standard_normal((3, H, W)).astype(np.float32)
               for j in range(2)]
        zs = [np64(er.latent(m64, c)) for c in cin]
        cbar = ((zs[0] + zs[1]) / 2).astype(np.float32)          # stored; used rounded
        noise = ex.smooth_noise(SMOOTH_K, SMOOTH_SIGMA, np.random.default_rng([11] + seed))

        ex, t = compute(m64, x, classes, cbar.astype(np.float64), noise)

        # --- self-checks on this case
        cf = check_closed_form(ex, classes, cbar.astype(np.float64))
        zi, zrows = check_zero_attention(ex, classes[0])
        kept, margin = check_threshold_rule(ex, THRESH)
        assert margin > 1e-4, margin
        sp_margin = min(sparsity_margin(t[k][0] if t[k].ndim == 3 else t[k])
                        for k in ("cdam", "rp", "tam", "am_mean"))
        assert sp_margin > 1e-4, sp_margin
        for i in (0, ex.n // 2, ex.n - 1):
            assert abs(ex.tam_single(("class", classes[1]), i) - t["tam"][1].ravel()[i]) < 1e-12
        s_zero = np64(ex.smooth_cdam(("class", classes[0]), np.zeros((2, ex.N, ex.D))))
        ig_one = np64(ex.integrated_cdam(("class", classes[0]), 1))
        assert np.abs(s_zero - t["cdam"][0]).max() < 1e-12 and np.abs(ig_one - t["cdam"][0]).max() < 1e-12
        assert (t["rp"] >= 0).all() and (t["rp_concept"] >= 0).all()
        assert np.isclose(t["am_mean"].sum() + np64(ex.attn_last[:, 0, 0]).mean(), 1.0)
        tot, df = check_integrated_completeness(ex, ("class", classes[0]))
        print(f"{case}: classes {classes} (logits {logits[classes].round(3).tolist()})")
        print(f"  closed form vs autograd CDAM (3 classes + concept): worst rel {cf:.1e} (< 1e-10)")
        print(f"  zero attention, token {zi}: " + ", ".join(
            f"M={M:g}: a_i={a:.1e} S_i={s:.1e}" for M, a, s in zrows))
        print(f"  AM threshold {THRESH}: tokens kept per head {kept} of {ex.n}, "
              f"min |cumval - (1-t)| {margin:.1e}")
        print(f"  sparsity: min over maps/tokens of ||s_i| - 0.05 max s| / max|s| = {sp_margin:.1e}")
        print(f"  integrated completeness (400 midpoint steps, all tokens): {tot:.6f} vs f(T)-f(0) {df:.6f}")
        print("  " + ", ".join(f"{k} {t[k][0]:.3f}" for k in t if k.startswith(("pearson", "sparsity"))))
        print("  rms: " + ", ".join(f"{k} {np.sqrt((t[k] ** 2).mean()):.2e}" for k in
                                   ("cdam", "cdam_concept", "smooth_cdam", "integrated_cdam", "am_mean",
                                    "rp", "tam", "tam_concept")))

        # --- what a float32 engine achieves: the same reference in float32
        _, t32 = compute(load_model(mname, torch.float32), x, classes, cbar.astype(np.float64), noise)
        for k in t:
            if k.startswith(("pearson", "sparsity")):
                e = abs(t32[k][0] - t[k][0])
            else:
                e = close_err(t32[k], t[k])
            worst32[k] = max(worst32.get(k, 0.0), e)

        # --- write
        out = {"input": x.astype(np.float32), "classes": np.array(classes, np.float32)}
        out.update({k: v.astype(np.float32) for k, v in t.items() if k in ("cdam", "cdam_concept")})
        out["T"] = t["T"].astype(np.float32)
        out["grad_T"] = t["grad_T"].astype(np.float32)
        out["grad_T_concept"] = t["grad_T_concept"].astype(np.float32)
        out["concept"] = cbar
        out["concept_input.0"], out["concept_input.1"] = cin
        out["smooth_noise"] = noise
        for k, v in t.items():
            if k not in out:
                out[k] = v.astype(np.float32)
        meta = {"case": case, "model": mname, "classes": json.dumps(classes),
                "dtype_of_compute": "float64", "smooth_samples": str(SMOOTH_K),
                "smooth_sigma": str(SMOOTH_SIGMA), "integrated_steps": f"{IG_STEPS} (integrated_cdam), "
                f"{IG_STEPS_SMALL} (integrated_cdam4)", "am_threshold": str(THRESH),
                "stats_over": "classes[0] maps (am: am_mean)"}
        path = os.path.join(GOLDEN, f"explain_{case}.safetensors")
        st.save(path, out, meta)
        written.append((path, ex, out))

    # --- float32 reference vs the float64 goldens
    print("float32 reference vs goldens (check_close measure; stats: abs diff):")
    print("  " + ", ".join(f"{k} {v:.1e}" for k, v in worst32.items()))
    bad = {k: v for k, v in worst32.items() if not k.startswith(("pearson", "sparsity")) and v > 1e-4}
    assert not bad, bad

    # --- re-read every file: names, shapes, dtypes, metadata
    total = 0
    for path, ex, out in written:
        g, meta = st.load(path)
        assert list(g) == list(out) and all(v.dtype == np.float32 for v in g.values())
        gh, gw, N, D, Hh = ex.gh, ex.gw, ex.N, ex.D, ex.H
        _, Hpx, Wpx = out["input"].shape
        want = {"input": (3, Hpx, Wpx), "classes": (3,), "cdam": (3, gh, gw), "cdam_concept": (gh, gw),
                "T": (N, D), "grad_T": (N, D), "grad_T_concept": (N, D), "concept": (D,),
                "concept_input.0": (3, Hpx, Wpx), "concept_input.1": (3, Hpx, Wpx),
                "smooth_noise": (SMOOTH_K, N, D), "rp": (3, gh, gw), "tam": (3, gh, gw)}
        for k, v in g.items():
            if k in want:
                assert v.shape == want[k], (path, k, v.shape)
            elif k.startswith(("pearson", "sparsity")):
                assert v.shape == (1,), (path, k)
            else:
                assert v.shape == (gh, gw), (path, k, v.shape)
        assert sum(k.startswith("am_head") for k in g) == Hh
        assert json.loads(meta["classes"]) == [int(c) for c in g["classes"]]
        total += os.path.getsize(path)
    print(f"wrote {len(written)} explain goldens, {total / 1e6:.3f} MB; tensors of "
          f"{os.path.basename(written[0][0])}: {', '.join(written[0][2])}")


if __name__ == "__main__":
    main()
