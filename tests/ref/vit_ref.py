"""vit_ref.py - an independent PyTorch reference of the DINO ViT (spec: method.md section 2).

Written from the spec, not from DINO or timm. The parameter names are the DINO/timm
state-dict names, so `model.load_state_dict` takes a DINO checkpoint as it is; HF
ViTModel names are mapped by `hf_to_dino`.

    state, meta = safetensors_io.load("tests/data/models/tiny.safetensors")
    model = vit_from_state(state, meta, dtype=torch.float64)   # config from shapes + metadata
    out = model(x)            # x (3, H, W) already normalised; H, W multiples of P
    out["logits"]             # (C); also embed, pos_embed, block.{i}, norm, latent

Config that shapes cannot tell comes from the metadata strings: num_heads (default
D/64), ln_eps (default 1e-6). The head kind follows head.weight's shape: (C, D) is a
head on the final-normed CLS row, (C, 4D) is DINO's linear probe on the final-normed
CLS rows of the last 4 blocks (blocks L-4..L-1 in that order, each through `norm`).
"""
import math
import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbed(nn.Module):
    """P x P stride-P convolution 3 -> D; tokens in row-major patch order (p = y*gw + x)."""

    def __init__(self, patch, dim):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch, bias=True)

    def forward(self, x):                                # (B, 3, H, W)
        return self.proj(x).flatten(2).transpose(1, 2)   # (B, n, D)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        assert dim % num_heads == 0, "D must be a multiple of num_heads"
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, t):                                # (B, N, D) layer-normed tokens
        B, N, D = t.shape
        H = self.num_heads
        Dh = D // H
        # qkv output channel = which*D + h*Dh + d, which in (q, k, v)
        qkv = self.qkv(t).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                 # (B, H, N, Dh)
        a = torch.softmax((q @ k.transpose(-1, -2)) * Dh ** -0.5, dim=-1)  # (B, H, N, N)
        o = (a @ v).transpose(1, 2).reshape(B, N, D)     # heads concatenated: h*Dh + d
        return self.proj(o), a


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))             # exact erf GELU (approximate='none')


class Block(nn.Module):
    def __init__(self, dim, num_heads, hidden, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        t = self.norm1(x)
        o, a = self.attn(t)
        x = x + o
        x = x + self.mlp(self.norm2(x))
        return x, t, a


def bicubic_weights(t, a=-0.75):
    """The 4 cubic-convolution weights for fractional offset t in [0, 1) (taps -1, 0, 1, 2)."""
    def near(s):   # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s):    # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def resample_pos_explicit(grid, gh, gw, mode="dino"):
    """Plain-loop numpy (float64) bicubic resampling of a (g0, g0, D) grid to (gh, gw, D),
    written from the spec formula (a = -0.75, clamped edges, no antialiasing):
    src = (dst + 0.5) * g0 / (g + 0.1) - 0.5 (DINO) or (dst + 0.5) * g0 / g - 0.5 (timm).
    For checking `resample_pos` (F.interpolate) and as the model of the C code."""
    grid = np.asarray(grid, dtype=np.float64)
    g0 = grid.shape[0]
    extra = 0.1 if mode == "dino" else 0.0

    def taps(g_out):
        out = []
        for dst in range(g_out):
            src = (dst + 0.5) * g0 / (g_out + extra) - 0.5
            i0 = math.floor(src)
            w = bicubic_weights(src - i0)
            out.append([(min(max(i0 - 1 + k, 0), g0 - 1), w[k]) for k in range(4)])
        return out
    ty, tx = taps(gh), taps(gw)
    res = np.zeros((gh, gw, grid.shape[2]))
    for y in range(gh):
        for x in range(gw):
            for iy, wy in ty[y]:
                for ix, wx in tx[x]:
                    res[y, x] += wy * wx * grid[iy, ix]
    return res


def resample_pos(pos_embed, gh, gw, mode="dino"):
    """(1, 1 + g0*g0, D) position embedding -> (1 + gh*gw, D) for a gh x gw patch grid.

    Row 0 (CLS) is kept; the g0 x g0 grid is resampled bicubically only when
    (gh, gw) != (g0, g0). mode "dino": F.interpolate with scale_factor (g+0.1)/g0 as DINO
    does (align_corners False, so src = (dst+0.5)*g0/(g+0.1) - 0.5); "timm": size=(gh, gw)."""
    pe = pos_embed.reshape(pos_embed.shape[-2], pos_embed.shape[-1])
    g0 = math.isqrt(pe.shape[0] - 1)
    assert g0 * g0 == pe.shape[0] - 1, "pos_embed rows must be 1 + g0*g0"
    if (gh, gw) == (g0, g0):
        return pe
    D = pe.shape[1]
    img = pe[1:].reshape(1, g0, g0, D).permute(0, 3, 1, 2)   # (1, D, g0, g0)
    if mode == "dino":
        img = F.interpolate(img, scale_factor=((gh + 0.1) / g0, (gw + 0.1) / g0),
                            mode="bicubic", align_corners=False)
    elif mode == "timm":
        img = F.interpolate(img, size=(gh, gw), mode="bicubic", align_corners=False)
    else:
        raise ValueError(mode)
    assert tuple(img.shape[-2:]) == (gh, gw), f"resampled to {tuple(img.shape[-2:])}, want {(gh, gw)}"
    return torch.cat([pe[:1], img.permute(0, 2, 3, 1).reshape(gh * gw, D)], dim=0)


class ViT(nn.Module):
    def __init__(self, patch, dim, depth, num_heads, mlp_hidden, grid0, num_classes=0,
                 probe=False, eps=1e-6, pos_mode="dino"):
        super().__init__()
        self.patch, self.dim, self.depth, self.num_heads = patch, dim, depth, num_heads
        self.grid0, self.probe, self.eps, self.pos_mode = grid0, probe, eps, pos_mode
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid0 * grid0, dim))
        self.patch_embed = PatchEmbed(patch, dim)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_hidden, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(4 * dim if probe else dim, num_classes) if num_classes else None
        if probe:
            assert depth >= 4, "the linear probe needs at least 4 blocks"

    def forward(self, x, extras=False):
        """x (3, H, W) or (B, 3, H, W), normalised. Returns a dict of intermediates
        (batch dimension dropped for a single image): pos_embed (N, D), embed (N, D),
        block.{i} (N, D), norm (N, D), latent (D or 4D), logits (C) if there is a head.
        extras=True adds ln1.{i} (N, D) and attn.{i} (H, N, N) for every block."""
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        B, c, Hpx, Wpx = x.shape
        P = self.patch
        assert c == 3 and Hpx % P == 0 and Wpx % P == 0, f"input {tuple(x.shape)} not 3 x kP x kP"
        gh, gw = Hpx // P, Wpx // P
        out = {}
        pos = resample_pos(self.pos_embed, gh, gw, self.pos_mode)           # (N, D)
        tok = torch.cat([self.cls_token.expand(B, 1, self.dim), self.patch_embed(x)], dim=1)
        h = tok + pos
        out["pos_embed"], out["embed"] = pos, h
        cls_normed = []
        for i, blk in enumerate(self.blocks):
            h, t, a = blk(h)
            out[f"block.{i}"] = h
            if extras:
                out[f"ln1.{i}"], out[f"attn.{i}"] = t, a
            if self.probe and i >= self.depth - 4:
                cls_normed.append(self.norm(h[:, 0]))
        out["norm"] = self.norm(h)
        out["latent"] = torch.cat(cls_normed, dim=-1) if self.probe else out["norm"][:, 0]
        if self.head is not None:
            out["logits"] = self.head(out["latent"])
        if single:
            out = {k: (v if k == "pos_embed" else v[0]) for k, v in out.items()}
        return out


# ---------------------------------------------------------------- loading weights

def config_from_state(state, metadata=None):
    """Model config from DINO-named shapes (anything with .shape) plus metadata strings."""
    metadata = metadata or {}
    D, c, P, P2 = state["patch_embed.proj.weight"].shape
    assert c == 3 and P == P2
    n0 = state["pos_embed"].shape[-2] - 1
    g0 = math.isqrt(n0)
    assert g0 * g0 == n0
    depth = 0
    while f"blocks.{depth}.norm1.weight" in state:
        depth += 1
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    heads = int(metadata.get("num_heads", max(1, D // 64)))
    eps = float(metadata.get("ln_eps", "1e-6"))
    classes, probe = 0, False
    if "head.weight" in state:
        classes, fan_in = state["head.weight"].shape
        assert fan_in in (D, 4 * D), f"head.weight fan-in {fan_in} is neither D nor 4D"
        probe = fan_in == 4 * D
    return dict(patch=P, dim=D, depth=depth, num_heads=heads, mlp_hidden=hidden,
                grid0=g0, num_classes=classes, probe=probe, eps=eps)


def vit_from_state(state, metadata=None, dtype=torch.float32, pos_mode="dino"):
    """Builds a ViT in eval mode from a dict name -> array (DINO/timm names, or HF ViTModel
    names which are mapped), with metadata (dict of strings) for num_heads and ln_eps."""
    if "embeddings.cls_token" in state:
        state = hf_to_dino(state)
    model = ViT(**config_from_state(state, metadata), pos_mode=pos_mode)
    tens = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in state.items()}
    model.load_state_dict(tens, strict=True)
    return model.to(dtype).eval()


def hf_to_dino(state):
    """Hugging Face ViTModel names -> DINO names (q, k, v rows concatenated into qkv;
    classifier.* -> head.*). Arrays are numpy."""
    out = {}
    top = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
           "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
           "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
           "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
           "classifier.weight": "head.weight", "classifier.bias": "head.bias"}
    per = {"attention.output.dense": "attn.proj", "layernorm_before": "norm1",
           "layernorm_after": "norm2", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
    qkv = {}
    for name, v in state.items():
        if name in top:
            out[top[name]] = v
            continue
        m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)", name)
        if not m:
            raise KeyError(f"unknown HF name {name}")
        i, mod, kind = m.groups()
        a = re.fullmatch(r"attention\.attention\.(query|key|value)", mod)
        if a:
            qkv[(i, kind, a.group(1))] = v
        elif mod in per:
            out[f"blocks.{i}.{per[mod]}.{kind}"] = v
        else:
            raise KeyError(f"unknown HF name {name}")
    for (i, kind, which) in list(qkv):
        if which == "query":
            out[f"blocks.{i}.attn.qkv.{kind}"] = np.concatenate(
                [qkv[(i, kind, w)] for w in ("query", "key", "value")], axis=0)
    return out


def dino_to_hf(state):
    """DINO names -> Hugging Face ViTModel names (the inverse of hf_to_dino)."""
    inv_top = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
               "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
               "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
               "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias",
               "head.weight": "classifier.weight", "head.bias": "classifier.bias"}
    per = {"attn.proj": "attention.output.dense", "norm1": "layernorm_before",
           "norm2": "layernorm_after", "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
    out = {}
    for name, v in state.items():
        if name in inv_top:
            out[inv_top[name]] = v
            continue
        i, mod, kind = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias)", name).groups()
        if mod == "attn.qkv":
            D = v.shape[0] // 3
            for j, w in enumerate(("query", "key", "value")):
                out[f"encoder.layer.{i}.attention.attention.{w}.{kind}"] = v[j * D:(j + 1) * D]
        else:
            out[f"encoder.layer.{i}.{per[mod]}.{kind}"] = v
    return out
