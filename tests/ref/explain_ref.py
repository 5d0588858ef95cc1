"""explain_ref.py - an independent PyTorch autograd reference of the explanation methods
(method.md sections 3-9): CDAM (class and concept), Smooth and Integrated CDAM, attention
maps (AM, with DINO's mass threshold), relevance propagation (RP), token ablation maps
(TAM), Pearson correlation and sparsity.

Every gradient here comes from torch autograd (no hand-written backward), so it checks
the C engine's backward independently. The one hand-derived formula, the closed form of
section 3 (`cdam_closed_form`), is itself checked against autograd by
make_explain_goldens.py.

    model = vit_ref.vit_from_state(state, meta, dtype=torch.float64)
    ex = Explainer(model, x)                  # x (3, H, W) normalised; one forward
    ex.cdam(("class", 3))                     # (gh, gw) numpy float64
    ex.cdam(("concept", cbar))                # cbar (D)
    ex.rp(("class", 3)); ex.tam(("class", 3)); ex.am(); ex.am_threshold(0.6)

A target is ("class", c): f = logit c, or ("concept", cbar): f = z . cbar with z the
final-normed CLS row of the LAST block (D), also for the probe model.
"""
import math

import numpy as np
import torch


def _t(a, dtype):
    return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(dtype)


class Explainer:
    """One image on one model. Splits the forward at the last block's LN1, so T^L is a leaf."""

    def __init__(self, model, x):
        self.m = model
        for p in model.parameters():                            # activation gradients only
            p.requires_grad_(False)
        self.dtype = model.pos_embed.dtype
        self.x = _t(x, self.dtype)
        P = model.patch
        self.gh, self.gw = self.x.shape[1] // P, self.x.shape[2] // P
        self.n = self.gh * self.gw
        self.N = self.n + 1
        self.L = model.depth
        self.H = model.num_heads
        self.D = model.dim
        self.Dh = self.D // self.H
        with torch.no_grad():
            self.h0 = self.embed()                              # (1, N, D) tokens + pos
            h = self.h0
            self.prefix_cls = []                                # probe: normed CLS of blocks L-4..L-2
            for i in range(self.L - 1):
                h, _, _ = model.blocks[i](h)
                if model.probe and i >= self.L - 4:
                    self.prefix_cls.append(model.norm(h[:, 0]))
            self.x_prev = h                                     # x_{L-1}, input of the last block
            self.T = model.blocks[-1].norm1(h)                  # T^L (1, N, D)
            out = self.last_block(self.T)
            self.logits = out["logits"][0]
            self.z = out["z"][0]
            self.attn_last = out["attn"][0]                     # (H, N, N)

    # ------------------------------------------------------------------ forward pieces

    def embed(self):
        from vit_ref import resample_pos
        m = self.m
        pos = resample_pos(m.pos_embed, self.gh, self.gw, m.pos_mode)
        tok = torch.cat([m.cls_token.expand(1, 1, self.D), m.patch_embed(self.x.unsqueeze(0))], dim=1)
        return tok + pos

    def head_of(self, cls_rows_normed):
        """cls_rows_normed: list of the normed CLS rows the head reads (probe: 4 of them)."""
        m = self.m
        lat = torch.cat(cls_rows_normed, dim=-1) if m.probe else cls_rows_normed[-1]
        return m.head(lat)

    def last_block(self, T, attn_logit_bias=None):
        """The last block from T (B, N, D) (LN1 output) with the residual x_{L-1} fixed,
        then the final norm and head. attn_logit_bias (H, N) is added to the CLS query's
        attention logits (only for the zero-attention property check)."""
        m = self.m
        blk = m.blocks[-1]
        B, N, D = T.shape
        H, Dh = self.H, self.Dh
        qkv = blk.attn.qkv(T).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                        # (B, H, N, Dh)
        logit = (q @ k.transpose(-1, -2)) * Dh ** -0.5
        if attn_logit_bias is not None:
            bias = torch.zeros_like(logit)
            bias[:, :, 0, :] = attn_logit_bias
            logit = logit + bias
        a = torch.softmax(logit, dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, N, D)            # heads concatenated
        if o.requires_grad:
            o.retain_grad()
        h = self.x_prev + blk.attn.proj(o)
        h = h + blk.mlp(blk.norm2(h))
        z = m.norm(h[:, 0])                                     # (B, D)
        rows = [r.expand(B, -1) for r in self.prefix_cls] + [z]
        return {"logits": self.head_of(rows), "z": z, "attn": a, "o": o, "q": q, "k": k, "v": v}

    @staticmethod
    def f_of(out, target, dtype):
        kind, val = target
        if kind == "class":
            return out["logits"][:, int(val)]
        if kind == "concept":
            return out["z"] @ _t(val, dtype)
        raise ValueError(kind)

    # ------------------------------------------------------------------ CDAM family

    def grad_at(self, at, attn_logit_bias=None, keep=False):
        """df/dT evaluated at T = at (1, N, D); returns (grad (1, N, D), out dict)."""
        T = at.detach().clone().requires_grad_(True)
        out = self.last_block(T, attn_logit_bias)
        f = self.f_of(out, self._target, self.dtype).sum()
        f.backward()
        out["f"] = f.detach()
        out["T"] = T
        return T.grad.detach(), out

    def _scores(self, mult, grad):
        return (mult * grad).sum(-1)[0, 1:].reshape(self.gh, self.gw)

    def cdam(self, target, with_grad=False):
        """Section 3/4: S_i = sum_j T_ij df/dT_ij, patches only, (gh, gw)."""
        self._target = target
        g, _ = self.grad_at(self.T)
        s = self._scores(self.T, g)
        return (s, g[0]) if with_grad else s

    def cdam_at(self, target, at, alpha=1.0):
        """explain_cdam_at: S_i = sum_j (at_ij / alpha) df/dT_ij evaluated at `at`."""
        self._target = target
        g, _ = self.grad_at(at)
        return self._scores(at / alpha, g)

    def smooth_noise(self, k, sigma, rng):
        """k noise tensors (k, N, D): N(0, 1) * sigma * (max(T) - min(T)), rounded to float32
        (the stored noise is exactly the noise used)."""
        scale = float((self.T.max() - self.T.min()).item())
        z = rng.standard_normal((k, self.N, self.D)) * sigma * scale
        return z.astype(np.float32)

    def smooth_cdam(self, target, noise):
        """Section 5: mean over samples of CDAM at T + noise_k (multiplier T + noise_k)."""
        acc = 0
        for nk in noise:
            acc = acc + self.cdam_at(target, self.T + _t(nk, self.dtype).unsqueeze(0), 1.0)
        return acc / len(noise)

    def integrated_cdam(self, target, steps):
        """Section 5: S_i = sum_j T_ij * mean_k df/dT(alpha_k T), alpha_k = k/steps, k = 1..steps."""
        self._target = target
        gsum = 0
        for k in range(1, steps + 1):
            g, _ = self.grad_at(self.T * (k / steps))
            gsum = gsum + g
        return self._scores(self.T, gsum / steps)

    def cdam_closed_form(self, target, attn_logit_bias=None):
        """Section 3's closed form, from autograd's g_o (df/d(CLS row of the concatenated
        attention output)) and the forward's q, k, v, A:
        S_i = sum_h a_i [ (v_i - bv).g_o + (ga_i - gbar)(k_i - bk).q_0 / sqrt(Dh) ]."""
        self._target = target
        _, out = self.grad_at(self.T, attn_logit_bias)
        H, Dh, D = self.H, self.Dh, self.D
        bias = self.m.blocks[-1].attn.qkv.bias.detach()
        bk = bias[D:2 * D].reshape(H, Dh)
        bv = bias[2 * D:].reshape(H, Dh)
        go = out["o"].grad[0, 0].reshape(H, Dh)                # (H, Dh)
        q0 = out["q"][0, :, 0].detach()                         # (H, Dh)
        k = out["k"][0].detach()                                # (H, N, Dh)
        v = out["v"][0].detach()
        a = out["attn"][0, :, 0].detach()                       # (H, N) CLS query row
        ga = (v * go[:, None, :]).sum(-1)                       # (H, N)
        gbar = (a * ga).sum(-1, keepdim=True)                   # (H, 1)
        term_v = ((v - bv[:, None]) * go[:, None, :]).sum(-1)
        term_k = (ga - gbar) * ((k - bk[:, None]) * q0[:, None, :]).sum(-1) / math.sqrt(Dh)
        S = (a * (term_v + term_k)).sum(0)                      # (N)
        return S[1:].reshape(self.gh, self.gw), a

    def cdam_with_bias(self, target, attn_logit_bias):
        """Autograd CDAM with a bias added to the CLS query's attention logits."""
        self._target = target
        g, _ = self.grad_at(self.T, attn_logit_bias)
        return self._scores(self.T, g)

    # ------------------------------------------------------------------ AM

    def am(self, head=None):
        """Section 6: the last block's CLS attention to the patches, mean over heads or one head."""
        a = self.attn_last[:, 0, 1:]                            # (H, n)
        a = a.mean(0) if head is None else a[head]
        return a.reshape(self.gh, self.gw)

    def dino_threshold_masks(self, t):
        """DINO visualize_attention.py verbatim in effect: per head, sort the patch attention
        ascending, normalise by its sum, cumsum, keep where cumval > 1 - t, unsort.
        Returns (masks (H, n) bool, margin = min over heads/tokens of |cumval - (1 - t)|)."""
        attentions = self.attn_last[:, 0, 1:].clone()           # (nh, n)
        nh = attentions.shape[0]
        val, idx = torch.sort(attentions)
        val /= torch.sum(val, dim=1, keepdim=True)
        cumval = torch.cumsum(val, dim=1)
        th_attn = cumval > (1 - t)
        idx2 = torch.argsort(idx)
        for head in range(nh):
            th_attn[head] = th_attn[head][idx2[head]]
        margin = float((cumval - (1 - t)).abs().min().item())
        return th_attn, margin

    def am_threshold(self, t, head=None):
        """The thresholded AM: per head, the attention A_h[0, 1+i] where DINO's mask is on and
        0 elsewhere; then the mean over heads (head=None) or that head."""
        masks, _ = self.dino_threshold_masks(t)
        a = self.attn_last[:, 0, 1:] * masks.to(self.dtype)
        a = a.mean(0) if head is None else a[head]
        return a.reshape(self.gh, self.gw)

    # ------------------------------------------------------------------ RP

    def rp(self, target):
        """Section 7 (Chefer et al. 2021): full forward keeping every A^l, backward of f
        through the whole network, R = I; R += mean_h relu(dA^l * A^l) @ R in forward order."""
        m = self.m
        h = self.embed().detach().requires_grad_(True)
        attns, cls_rows = [], []
        for i, blk in enumerate(m.blocks):
            h, _, a = blk(h)
            a.retain_grad()
            attns.append(a)
            if m.probe and i >= self.L - 4:
                cls_rows.append(m.norm(h[:, 0]))
        z = m.norm(h[:, 0])
        if not m.probe:
            cls_rows = [z]
        out = {"logits": self.head_of(cls_rows), "z": z}
        f = self.f_of(out, target, self.dtype).sum()
        f.backward()
        R = torch.eye(self.N, dtype=self.dtype)
        for a in attns:
            abar = (a.grad[0] * a.detach()[0]).clamp(min=0).mean(0)   # (N, N)
            R = R + abar @ R
        return R[0, 1:].reshape(self.gh, self.gw)

    # ------------------------------------------------------------------ TAM

    def forward_tokens(self, h):
        """Every block, the final norm and the head on embedded tokens h (B, N', D)."""
        m = self.m
        cls_rows = []
        for i, blk in enumerate(m.blocks):
            h, _, _ = blk(h)
            if m.probe and i >= self.L - 4:
                cls_rows.append(m.norm(h[:, 0]))
        z = m.norm(h[:, 0])
        if not m.probe:
            cls_rows = [z]
        return {"logits": self.head_of(cls_rows), "z": z}

    def tam(self, targets):
        """Section 8: f(full) - f(patch token i deleted after adding position embeddings),
        for each target; returns a list of (gh, gw) maps. All n ablations in one batch."""
        with torch.no_grad():
            h0 = self.h0[0]
            keep = [[j for j in range(self.N) if j != 1 + i] for i in range(self.n)]
            batch = torch.stack([h0[kk] for kk in keep])        # (n, N-1, D)
            ab = self.forward_tokens(batch)
            full = self.forward_tokens(self.h0)
            res = []
            for tg in targets:
                f_full = self.f_of(full, tg, self.dtype)        # (1)
                f_ab = self.f_of(ab, tg, self.dtype)            # (n)
                res.append((f_full - f_ab).reshape(self.gh, self.gw))
        return res

    def tam_single(self, target, i):
        """One ablation, unbatched (cross-check of `tam`)."""
        with torch.no_grad():
            h0 = self.h0[0]
            kk = [j for j in range(self.N) if j != 1 + i]
            ab = self.forward_tokens(h0[kk].unsqueeze(0))
            full = self.forward_tokens(self.h0)
            return float((self.f_of(full, target, self.dtype) - self.f_of(ab, target, self.dtype)).item())


# ---------------------------------------------------------------------- statistics

def pearson(a, b):
    """Pearson correlation over all values (float64); NaN if either is constant."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def sparsity(s):
    """Fraction of |s_i| < 0.05 * max_i s_i (the signed max, as in section 9)."""
    s = np.asarray(s, np.float64).ravel()
    return float((np.abs(s) < 0.05 * s.max()).mean())


def latent(model, x):
    """z: the final-normed CLS row of the last block (D), also for the probe model."""
    with torch.no_grad():
        return model(_t(x, model.pos_embed.dtype))["norm"][0]
