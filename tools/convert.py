#!/usr/bin/python3
"""convert.py - converts DINO ViT checkpoints into the safetensors layout the engine loads.

    /usr/bin/python3 tools/convert.py INPUT... -o OUT.safetensors [options]

Each INPUT is one of (the kind is told by the file's contents, not its name):
  - a DINO backbone `.pth` (`dino_deitsmall8_pretrain.pth`: a bare state dict with DINO
    names), or a DINO training checkpoint (`{"teacher": ..., "student": ...}` with
    `backbone.` / `module.backbone.` prefixes; the teacher is taken unless
    --checkpoint-key says otherwise; DINO's projection head `head.*` is dropped);
  - a PyTorch Lightning `.ckpt` like the CDAM authors' ImageNet head
    (`state_dict` with `model.<DINO names>` and `linear.{weight,bias}`, the head);
  - DINO's linear-probe weights (`state_dict` with `module.linear.{weight,bias}`,
    weight (C, 4D): the final-normed CLS rows of the last 4 blocks); a head only, so
    give a backbone too (as a second INPUT), or write a head-only file;
  - a Hugging Face ViTModel / ViTForImageClassification checkpoint (`pytorch_model.bin`
    or `model.safetensors`; q, k, v are joined into qkv, `vit.` prefixes removed, the
    unused `pooler.*` dropped, `classifier.*` is the head; metadata ln_eps 1e-12);
  - a safetensors file with DINO / timm names (timm's `vit_small_patch8_224.dino`),
    re-written with metadata.
Several INPUTs are merged by name (a name in two of them is an error), e.g. a backbone
and a head. The output has DINO names in a fixed order and metadata: name, num_heads
(--num-heads, default D/64), labels (--labels FILE, one name a line), ln_eps, and mean /
std if given. The result is checked as strictly as the C loader does.

Options:
  --head-only / --backbone-only   keep only head.* / only the backbone
  --checkpoint-key KEY            the sub-dictionary of a training checkpoint (teacher)
  --dtype F32|F16|BF16            storage type (default F32)
  --compare FILE                  print the largest difference from FILE's backbone
torch is needed only for .pth / .ckpt / .bin inputs (Debian's python3-torch). Those are
pickles: they are read with a restricted unpickler that resolves only what rebuilding
tensors needs; any other object in the file (hyper-parameters, argparse namespaces,
optimizer state classes) becomes an inert placeholder, so no code named by the file runs.
"""
import argparse
import json
import os
import pickle
import re
import sys
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402


class ConvertError(Exception):
    pass


# ------------------------------------------------------------------ reading files

class _Stub(dict):
    """Stands in for every class or function of a checkpoint that is not needed to
    rebuild tensors (pytorch_lightning's AttributeDict, argparse.Namespace, numpy
    scalars, ...): it takes any arguments and state and does nothing, so no code
    named by the file runs."""

    def __init__(self, *args, **kwargs):
        dict.__init__(self)

    def __setstate__(self, state):
        self.__dict__["_state"] = state


_TORCH_REBUILD = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
                  "_rebuild_parameter_with_state", "_rebuild_from_type_v2"}
_BUILTINS = {"set", "frozenset", "slice", "complex", "bytearray", "range"}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only what rebuilding tensors needs (torch's rebuild functions, dtypes,
    torch.Size, Parameter, Tensor, OrderedDict and a few builtins); everything else
    becomes an inert _Stub. (torch.load(weights_only=True) of torch 1.13 refuses
    plain floats, which every Lightning checkpoint holds.)"""

    def find_class(self, module, name):
        import torch
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        if module == "builtins" and name in _BUILTINS:
            return super().find_class(module, name)
        if module in ("torch._utils", "torch._tensor") and name in _TORCH_REBUILD:
            return super().find_class(module, name)
        if (module, name) in (("torch", "Size"), ("torch.nn.parameter", "Parameter"),
                              ("torch._tensor", "Tensor"), ("torch", "Tensor"), ("torch", "device")):
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        return type(name, (_Stub,), {"__module__": "stub." + module})


_restricted_pickle = types.ModuleType("convert_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler
_restricted_pickle.load = pickle.load          # torch's legacy format: magic number etc.
_restricted_pickle.__name__ = "convert_restricted_pickle"


def _torch_load(path):
    try:
        import torch
    except ImportError:
        raise ConvertError(f"{path}: reading PyTorch files needs torch (apt-get install python3-torch)")
    # torch.load itself is not used: Debian's torch 1.13 ignores its pickle_module
    # argument (and would run whatever the file names); its two readers are called
    # directly with the restricted unpickler (same signatures in torch 1.13 and 2.x).
    ser = torch.serialization
    try:
        with open(path, "rb") as f:
            if ser._is_zipfile(f):
                with ser._open_zipfile_reader(f) as z:
                    return ser._load(z, "cpu", _restricted_pickle, encoding="utf-8")
            return ser._legacy_load(f, "cpu", _restricted_pickle, encoding="utf-8")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as e:
        raise ConvertError(f"{path}: not a PyTorch checkpoint: {str(e).splitlines()[0][:200]}")


def _is_tensor(v):
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, (str, bytes))


def _to_numpy(v):
    if isinstance(v, np.ndarray):
        return v.astype(np.float32)
    return v.detach().cpu().float().numpy()


def read_checkpoint(path, checkpoint_key=None):
    """A file -> flat dict name -> float32 numpy array (names as in the file, after
    choosing the sub-dictionary of a training checkpoint)."""
    if not os.path.exists(path):
        raise ConvertError(f"{path}: No such file")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.endswith(".safetensors") or (len(head) >= 9 and head[8:9] == b"{"):
        try:
            tensors, _ = st.load(path)
        except (ValueError, KeyError, UnicodeDecodeError) as e:
            raise ConvertError(f"{path}: not a valid safetensors file: {e}")
        return {k: v.astype(np.float32) for k, v in tensors.items()}
    obj = _torch_load(path)
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    if checkpoint_key is not None:
        if checkpoint_key not in obj:
            raise ConvertError(f"{path}: no '{checkpoint_key}' in the checkpoint (keys: {', '.join(map(str, obj))})")
        obj = obj[checkpoint_key]
    elif not all(_is_tensor(v) for v in obj.values()):
        for key in ("state_dict", "teacher", "model", "module"):   # Lightning / DINO probe, DINO, others
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        else:
            raise ConvertError(f"{path}: no state dict found (keys: {', '.join(map(str, obj))}); "
                               "name it with --checkpoint-key")
    out = {str(k): _to_numpy(v) for k, v in obj.items() if _is_tensor(v)}
    if not out:
        raise ConvertError(f"{path}: no tensors in the state dict")
    return out


# ------------------------------------------------------------------ names

HF_TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
          "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
          "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
          "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias",
          "classifier.weight": "head.weight", "classifier.bias": "head.bias"}
HF_BLOCK = {"attention.output.dense": "attn.proj", "layernorm_before": "norm1",
            "layernorm_after": "norm2", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}


def _strip(names, prefix):
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in names.items()}


def hf_to_dino(state, path):
    out, qkv = {}, {}
    for name, v in state.items():
        if name in HF_TOP:
            out[HF_TOP[name]] = v
            continue
        if name.startswith("pooler."):
            continue                               # ViTModel's pooler: not used by DINO
        m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)", name)
        if not m:
            raise ConvertError(f"{path}: unknown Hugging Face tensor '{name}'")
        i, mod, kind = m.groups()
        a = re.fullmatch(r"attention\.attention\.(query|key|value)", mod)
        if a:
            qkv.setdefault((int(i), kind), {})[a.group(1)] = v
        elif mod in HF_BLOCK:
            out[f"blocks.{i}.{HF_BLOCK[mod]}.{kind}"] = v
        else:
            raise ConvertError(f"{path}: unknown Hugging Face tensor '{name}'")
    for (i, kind), parts in qkv.items():
        missing = [w for w in ("query", "key", "value") if w not in parts]
        if missing:
            raise ConvertError(f"{path}: block {i} lacks attention {'/'.join(missing)}.{kind}")
        out[f"blocks.{i}.attn.qkv.{kind}"] = np.concatenate([parts["query"], parts["key"], parts["value"]], 0)
    return out


def to_dino_names(state, path):
    """Any supported naming -> (DINO-named dict, kind, extra metadata)."""
    s = dict(state)
    for p in ("_forward_module.", "module."):                  # DDP / DeepSpeed wrappers
        s = _strip(s, p)
    s = _strip(s, "module.")
    meta = {}
    if any(k.startswith("backbone.") for k in s):              # DINO training checkpoint
        other = [k for k in s if not k.startswith(("backbone.", "head."))]
        if other:
            raise ConvertError(f"{path}: unexpected tensor '{other[0]}' beside backbone.*")
        s = {k[len("backbone."):]: v for k, v in s.items() if k.startswith("backbone.")}
        kind = "dino-checkpoint"
    elif any(k.startswith("model.") for k in s):               # Lightning (CDAM head)
        out = {}
        for k, v in s.items():
            if k.startswith("model."):
                out[k[len("model."):]] = v
            elif k in ("linear.weight", "linear.bias"):
                out["head." + k.split(".")[1]] = v
            else:
                raise ConvertError(f"{path}: unexpected tensor '{k}' in a Lightning checkpoint "
                                   "(expected model.* and linear.*)")
        s, kind = out, "lightning"
    elif set(s) and set(s) <= {"linear.weight", "linear.bias"}:   # DINO linear probe
        s, kind = {"head." + k.split(".")[1]: v for k, v in s.items()}, "linear-probe"
    elif any(k.startswith(("vit.embeddings.", "embeddings.", "vit.encoder.", "encoder.layer.")) for k in s):
        s, kind = hf_to_dino(_strip(s, "vit."), path), "huggingface"
        meta["ln_eps"] = "1e-12"
    else:
        kind = "dino"
    if kind != "huggingface" and "head.weight" in s and s["head.weight"].ndim != 2:
        raise ConvertError(f"{path}: head.weight has shape {list(s['head.weight'].shape)}, want (C, D)")
    return s, kind, meta


# ------------------------------------------------------------------ checking

def expected_shapes(D, L, F, P, g0):
    s = {"cls_token": (1, 1, D), "pos_embed": (1, 1 + g0 * g0, D),
         "patch_embed.proj.weight": (D, 3, P, P), "patch_embed.proj.bias": (D,)}
    for i in range(L):
        b = f"blocks.{i}."
        s.update({b + "norm1.weight": (D,), b + "norm1.bias": (D,),
                  b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                  b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                  b + "norm2.weight": (D,), b + "norm2.bias": (D,),
                  b + "mlp.fc1.weight": (F, D), b + "mlp.fc1.bias": (F,),
                  b + "mlp.fc2.weight": (D, F), b + "mlp.fc2.bias": (D,)})
    s.update({"norm.weight": (D,), "norm.bias": (D,)})
    return s


def check_and_order(s):
    """Checks names and shapes (as strictly as core/model.c), reshapes the few tensors
    some checkpoints store flatter ((N0, D) pos_embed, (D,) cls_token), and returns
    (ordered dict, config)."""
    names = set(s)
    head = {k for k in names if k.startswith("head.")}
    if head and head != {"head.weight", "head.bias"}:
        raise ConvertError(f"head tensors {sorted(head)}: want head.weight and head.bias")
    cfg = {}
    out = {}
    if names - head:
        if "patch_embed.proj.weight" not in s:
            raise ConvertError("no patch_embed.proj.weight: not a ViT backbone "
                               f"(tensors: {', '.join(sorted(names)[:6])}...)")
        D, c, P, P2 = s["patch_embed.proj.weight"].shape
        if c != 3 or P != P2:
            raise ConvertError(f"patch_embed.proj.weight has shape {list(s['patch_embed.proj.weight'].shape)}")
        L = 0
        while f"blocks.{L}.norm1.weight" in s:
            L += 1
        if "blocks.0.mlp.fc1.weight" not in s:
            raise ConvertError("no blocks.0.mlp.fc1.weight")
        F = s["blocks.0.mlp.fc1.weight"].shape[0]
        pe = s.get("pos_embed")
        if pe is None:
            raise ConvertError("no pos_embed")
        n0 = pe.shape[-2] if pe.ndim >= 2 else 0
        g0 = int(round((n0 - 1) ** 0.5)) if n0 > 1 else 0
        if g0 * g0 != n0 - 1 or pe.shape[-1] != D or pe.size != n0 * D:
            raise ConvertError(f"pos_embed has shape {list(pe.shape)}: want (1, 1 + g*g, {D})")
        want = expected_shapes(D, L, F, P, g0)
        for k, shape in want.items():
            if k not in s:
                raise ConvertError(f"missing tensor {k}")
            v = s[k]
            if k in ("cls_token", "pos_embed") and v.size == int(np.prod(shape)):
                v = v.reshape(shape)
            if tuple(v.shape) != shape:
                raise ConvertError(f"{k} has shape {list(v.shape)}, want {list(shape)}")
            out[k] = v
        extra = sorted(names - set(want) - head)
        if extra:
            raise ConvertError(f"unexpected tensor {extra[0]}" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        cfg = dict(D=D, L=L, F=F, P=P, g0=g0)
    if head:
        w, b = s["head.weight"], s["head.bias"]
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ConvertError(f"head.weight {list(w.shape)} / head.bias {list(b.shape)}: want (C, D) / (C)")
        if cfg and w.shape[1] not in (cfg["D"], 4 * cfg["D"]):
            raise ConvertError(f"head.weight has {w.shape[1]} inputs: want D = {cfg['D']} "
                               f"(CDAM head) or 4D = {4 * cfg['D']} (DINO linear probe)")
        out["head.weight"], out["head.bias"] = w, b
        cfg["C"], cfg["head_in"] = w.shape
    for k, v in out.items():
        if not np.isfinite(v).all():
            raise ConvertError(f"{k} has non-finite values")
    return out, cfg


# ------------------------------------------------------------------ main

def convert(inputs, out, num_heads=None, labels=None, name=None, head_only=False, backbone_only=False,
            checkpoint_key=None, dtype="F32", mean=None, std=None, ln_eps=None,
            compare=None, log=print):
    merged, meta, kinds = {}, {}, []
    for path in inputs:
        raw = read_checkpoint(path, checkpoint_key)
        s, kind, m = to_dino_names(raw, path)
        kinds.append(f"{os.path.basename(path)} ({kind})")
        for k, v in s.items():
            if k in merged:
                raise ConvertError(f"{path}: tensor {k} is also in an earlier input")
            merged[k] = v
        meta.update(m)
    if compare:
        other, _ = st.load(compare)
        diffs = [float(np.abs(other[k].astype(np.float32).reshape(v.shape) - v).max())
                 for k, v in merged.items() if not k.startswith("head.") and k in other
                 and other[k].size == v.size]
        n_shared = len(diffs)
        log(f"compare with {compare}: {n_shared} shared backbone tensors, "
            f"largest difference {max(diffs) if diffs else float('nan'):.3g}")
    if head_only:
        merged = {k: v for k, v in merged.items() if k.startswith("head.")}
        if not merged:
            raise ConvertError("--head-only: the inputs have no head")
    if backbone_only:
        merged = {k: v for k, v in merged.items() if not k.startswith("head.")}
    tensors, cfg = check_and_order(merged)
    if "D" in cfg:
        heads = num_heads if num_heads is not None else cfg["D"] // 64
        if heads < 1 or cfg["D"] % heads:
            raise ConvertError(f"num_heads {heads} does not divide D = {cfg['D']}: give --num-heads")
        meta["num_heads"] = str(heads)
    elif num_heads is not None:
        meta["num_heads"] = str(num_heads)
    if ln_eps is not None:
        meta["ln_eps"] = repr(float(ln_eps))
    if labels is not None:
        with open(labels, encoding="utf-8") as f:
            names = [ln.rstrip("\r\n") for ln in f if ln.strip()]
        if "C" in cfg and len(names) != cfg["C"]:
            raise ConvertError(f"{labels}: {len(names)} labels for {cfg['C']} classes")
        meta["labels"] = json.dumps(names, ensure_ascii=False)
    if mean is not None:
        meta["mean"] = json.dumps(list(mean))
    if std is not None:
        meta["std"] = json.dumps(list(std))
    meta["name"] = name or os.path.splitext(os.path.basename(out))[0]
    meta["source"] = "; ".join(kinds)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    st.save(out, tensors, meta, dtypes=dtype)
    desc = ", ".join(f"{k}={v}" for k, v in cfg.items())
    log(f"{out}: {len(tensors)} tensors ({desc}), {os.path.getsize(out) / 1e6:.1f} MB, from {'; '.join(kinds)}")
    return tensors, meta


def _floats3(s):
    v = [float(x) for x in s.split(",")]
    if len(v) != 3:
        raise argparse.ArgumentTypeError("want 3 numbers, e.g. 0.485,0.456,0.406")
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("inputs", nargs="+", metavar="INPUT")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--num-heads", type=int)
    ap.add_argument("--labels", metavar="FILE")
    ap.add_argument("--name")
    ap.add_argument("--head-only", action="store_true")
    ap.add_argument("--backbone-only", action="store_true")
    ap.add_argument("--checkpoint-key")
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--mean", type=_floats3)
    ap.add_argument("--std", type=_floats3)
    ap.add_argument("--ln-eps", type=float)
    ap.add_argument("--compare", metavar="FILE")
    a = ap.parse_args(argv)
    if a.head_only and a.backbone_only:
        ap.error("--head-only and --backbone-only exclude each other")
    try:
        convert(a.inputs, a.out, a.num_heads, a.labels, a.name, a.head_only, a.backbone_only,
                a.checkpoint_key, a.dtype, a.mean, a.std, a.ln_eps, a.compare)
    except ConvertError as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
