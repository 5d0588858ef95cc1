#!/usr/bin/python3
"""make_seeds.py - writes the seed corpora of the fuzz targets into tests/fuzz/corpus/.

    /usr/bin/python3 tests/fuzz/make_seeds.py      (from the repository root)

Needs numpy and Debian's python3-pil (tools/install-deps.sh --ref installs both). Every
seed is small (a few KB at most) and deterministic, so re-running rewrites the same
files. Only files named seed-* are written; crash-* files (inputs that once crashed or
hung, see README.md) are never touched.

    corpus/image/        every format and the known weak spots of stb_image / libwebp:
                         huge and overflowing dimensions, 16-bit and interlaced PNG, every
                         PNG colour type and bit depth, progressive JPEG with odd sampling
                         factors, CMYK JPEG, GIF with zero frames, BMP variants, animated
                         and VP8X WebP, plus every file of tests/data/images/
    corpus/safetensors/  micro ViT models (F32/F16/BF16/F64, Hugging Face names, linear
                         probe, no head, metadata) and malformed headers
    corpus/request/      mode byte + JSON bodies, form fields, base64, single fields
    corpus/multipart/    multipart/form-data bodies (boundary "cdamfuzzboundary")
    corpus/store/        concept files (first byte odd: a dim-4 store, even: dim 32; bits 1
                         to 3 set: through a data directory too, see fuzz_store.c)
"""
import base64
import io
import json
import os
import shutil
import struct
import sys
import zlib

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


rng = np.random.default_rng(1234)


# ---------------------------------------------------------------- images

def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png(w, h, ctype, depth, raw=None, interlace=0, extra=b"", idat=None, palette=None):
    """A PNG from scratch: any colour type / bit depth, optional Adam7 (raw rows filtered
    with type 0). raw: bytes of the packed scanlines (without filter bytes), per pass when
    interlaced; generated from the rng when None."""
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    bits = chans * depth

    def rows(pw, ph):
        stride = (pw * bits + 7) // 8
        data = b""
        for _ in range(ph):
            data += b"\0" + rng.integers(0, 256, stride, dtype=np.uint8).tobytes()
        return data

    if idat is None:
        if interlace:
            passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
            body = b""
            for x0, y0, dx, dy in passes:
                pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
                if pw > 0 and ph > 0:
                    body += rows(pw, ph)
        else:
            body = raw if raw is not None else rows(w, h)
        idat = zlib.compress(body, 9)
    s = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))
    if ctype == 3:
        n = 1 << depth if palette is None else palette
        s += png_chunk(b"PLTE", rng.integers(0, 256, 3 * n, dtype=np.uint8).tobytes())
    s += extra
    if idat is not False:
        s += png_chunk(b"IDAT", idat)
    return s + png_chunk(b"IEND", b"")


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def noise(w, h, mode="RGB"):
    c = {"RGB": 3, "RGBA": 4, "L": 1, "CMYK": 4}[mode]
    a = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    return Image.fromarray(a[:, :, 0] if c == 1 else a, mode)


def smooth(w, h):
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], -1)
    return Image.fromarray(a.astype(np.uint8), "RGB")


def jpeg_sof_sampling(data, factors):
    """Rewrites the sampling factors (one byte per component, 0xHV) of the first SOF."""
    b = bytearray(data)
    i = 2
    while i < len(b) - 4:
        assert b[i] == 0xFF
        m, L = b[i + 1], b[i + 2] << 8 | b[i + 3]
        if m in (0xC0, 0xC1, 0xC2):
            n = b[i + 9]
            for k in range(min(n, len(factors))):
                b[i + 10 + 3 * k + 1] = factors[k]
            return bytes(b)
        i += 2 + L
    raise ValueError("no SOF")


def jpeg_set_size(data, w, h):
    b = bytearray(data)
    i = 2
    while i < len(b) - 4:
        m, L = b[i + 1], b[i + 2] << 8 | b[i + 3]
        if m in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(b)
        i += 2 + L
    raise ValueError("no SOF")


def gif(w, h, frames, gct=True, trailer=True, interlace=False, lct=False, ext=b""):
    s = b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF1 if gct else 0x00, 0, 0)
    if gct:
        s += rng.integers(0, 256, 12, dtype=np.uint8).tobytes()  # 4 colours
    s += ext
    for fw, fh in frames:
        s += b"\x21\xF9\x04\x00\x0A\x00\x00\x00"  # graphic control: 0.1 s
        s += b"\x2C" + struct.pack("<HHHHB", 0, 0, fw, fh, (0x40 if interlace else 0) | (0x81 if lct else 0))
        if lct:
            s += rng.integers(0, 256, 12, dtype=np.uint8).tobytes()
        # LZW, code size 2: clear (4), pixels as literal codes (3 bits), end (5); a clear
        # code every few pixels keeps the code width at 3 bits
        bits, nbits, outb = 0, 0, bytearray()
        codes = [4]
        for k in range(fw * fh):
            codes.append(int(rng.integers(0, 4)))
            if k % 2 == 1:
                codes.append(4)
        codes.append(5)
        for c in codes:
            bits |= c << nbits
            nbits += 3
            while nbits >= 8:
                outb.append(bits & 255)
                bits >>= 8
                nbits -= 8
        if nbits:
            outb.append(bits & 255)
        s += b"\x02"
        for k in range(0, len(outb), 255):
            blk = bytes(outb[k:k + 255])
            s += bytes([len(blk)]) + blk
        s += b"\x00"
    return s + (b"\x3B" if trailer else b"")


def bmp_header(w, h, bpp, comp=0, dib=40, off=None, size_field=0):
    ncol = (1 << bpp) if bpp <= 8 else 0
    off = off if off is not None else 14 + dib + 4 * ncol
    hdr = b"BM" + struct.pack("<IHHI", 0, 0, 0, off)
    if dib == 12:
        return hdr + struct.pack("<IHHHH", 12, w & 0xFFFF, h & 0xFFFF, 1, bpp)
    info = struct.pack("<IiiHHIIiiII", dib, w, h, 1, bpp, comp, size_field, 2835, 2835, ncol, 0)
    if dib > 40:
        info += struct.pack("<IIII", 0xF800, 0x07E0, 0x001F, 0) + b"\0" * (dib - 56)
    return hdr + info + b"\0" * (4 * ncol)


def webp_vp8x(w, h, flags):
    body = struct.pack("<B3x", flags) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def images():
    src = os.path.join(REPO, "tests", "data", "images")
    for n in sorted(os.listdir(src)):
        with open(os.path.join(src, n), "rb") as f:
            out("image", "data-" + n, f.read())
    # PNG: every colour type and bit depth, interlaced too
    for ctype, depths in ((0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))):
        for d in depths:
            out("image", "png-c%d-d%d.png" % (ctype, d), png(5, 3, ctype, d))
            if d in (8, 16) or ctype == 3:
                out("image", "png-c%d-d%d-adam7.png" % (ctype, d), png(9, 7, ctype, d, interlace=1))
    out("image", "png-rgb16-alpha-trns.png", png(4, 4, 2, 16, extra=png_chunk(b"tRNS", b"\0\1\0\2\0\3")))
    out("image", "png-grey16-trns.png", png(4, 4, 0, 16, extra=png_chunk(b"tRNS", b"\0\7")))
    out("image", "png-palette-short-plte.png", png(4, 4, 3, 8, palette=2))
    out("image", "png-cgbi.png", png(2, 2, 6, 8)[:8] + png_chunk(b"CgBI", b"\x50\x00\x20\x02") + png(2, 2, 6, 8)[8:])
    # huge and overflowing dimensions: refused before decoding, or decoded at the limit
    out("image", "png-huge-65536.png", png(65536, 65536, 2, 8, idat=zlib.compress(b"\0" * 64)))
    out("image", "png-huge-2g.png", png(0x7FFFFFFF, 1, 0, 1, idat=zlib.compress(b"\0" * 64)))
    out("image", "png-6000x6000-truncated.png", png(6000, 6000, 0, 8, idat=zlib.compress(b"\0" * 6001)))
    out("image", "png-40mp-edge.png", png(40000, 1000, 0, 1, idat=zlib.compress(b"\0" * 64)))
    out("image", "png-1bit-2000x2000.png", png(2000, 2000, 0, 1, raw=b"".join(b"\0" + b"\x55" * 250 for _ in range(2000))))
    out("image", "png-16bit-wide.png", png(4000, 1, 6, 16, raw=b"\0" + b"\x12\x34" * 16000))
    out("image", "png-zero-width.png", png(0, 5, 2, 8, idat=zlib.compress(b"")))
    out("image", "png-no-idat.png", png(3, 3, 2, 8, idat=False))
    # JPEG: baseline / progressive, every PIL subsampling, odd sizes, odd sampling factors
    for prog in (0, 1):
        for sub in (0, 1, 2):
            out("image", "jpeg-p%d-s%d-17x9.jpg" % (prog, sub), pil_bytes(smooth(17, 9), "JPEG", quality=70, progressive=bool(prog), subsampling=sub))
    prog = pil_bytes(smooth(21, 13), "JPEG", quality=60, progressive=True, subsampling=2)
    for name, f in (("13-11-11", (0x13, 0x11, 0x11)), ("41-11-11", (0x41, 0x11, 0x11)), ("22-21-12", (0x22, 0x21, 0x12)),
                    ("11-22-11", (0x11, 0x22, 0x11)), ("44-11-11", (0x44, 0x11, 0x11)), ("32-11-11", (0x32, 0x11, 0x11)),
                    ("00-11-11", (0x00, 0x11, 0x11)), ("ff-11-11", (0xFF, 0x11, 0x11))):
        out("image", "jpeg-progressive-sampling-%s.jpg" % name, jpeg_sof_sampling(prog, f))
        out("image", "jpeg-baseline-sampling-%s.jpg" % name,
            jpeg_sof_sampling(pil_bytes(smooth(21, 13), "JPEG", quality=60, subsampling=2), f))
    out("image", "jpeg-progressive-grey.jpg", pil_bytes(smooth(16, 16).convert("L"), "JPEG", progressive=True))
    out("image", "jpeg-cmyk.jpg", pil_bytes(noise(8, 8, "CMYK"), "JPEG", quality=50))
    out("image", "jpeg-restart.jpg", pil_bytes(smooth(33, 17), "JPEG", quality=50, restart_marker_blocks=1))
    out("image", "jpeg-huge-65535.jpg", jpeg_set_size(prog, 65535, 65535))
    out("image", "jpeg-8000x6000.jpg", jpeg_set_size(prog, 8000, 6000))
    out("image", "jpeg-zero-height.jpg", jpeg_set_size(prog, 16, 0))
    out("image", "jpeg-no-eoi.jpg", prog[:-2])
    # GIF: zero frames, extensions only, interlaced, local colour table, huge screen
    out("image", "gif-zero-frames.gif", gif(4, 4, []))
    out("image", "gif-zero-frames-no-trailer.gif", gif(4, 4, [], trailer=False))
    out("image", "gif-ext-only.gif", gif(4, 4, [], ext=b"\x21\xFE\x03abc\x00"))
    out("image", "gif-one.gif", gif(5, 3, [(5, 3)]))
    out("image", "gif-interlaced.gif", gif(5, 9, [(5, 9)], interlace=True))
    out("image", "gif-lct-no-gct.gif", gif(3, 3, [(3, 3)], gct=False, lct=True))
    out("image", "gif-frame-larger-than-screen.gif", gif(2, 2, [(6, 6)]))
    out("image", "gif-huge-screen.gif", gif(65535, 65535, [(1, 1)]))
    out("image", "gif-three-frames.gif", gif(4, 4, [(4, 4), (2, 2), (4, 4)]))
    out("image", "gif-pil.gif", pil_bytes(noise(7, 5).convert("P"), "GIF"))
    # BMP: PIL's, core header, top-down, bitfields, RLE (refused), huge, truncated
    for mode in ("1", "L", "P", "RGB"):
        out("image", "bmp-pil-%s.bmp" % mode, pil_bytes(noise(5, 3).convert(mode), "BMP"))
    out("image", "bmp-core-24.bmp", bmp_header(3, 2, 24, dib=12) + bytes(range(24)))
    out("image", "bmp-topdown-24.bmp", bmp_header(3, -2, 24) + bytes(range(24)))
    out("image", "bmp-32-bitfields.bmp", bmp_header(2, 2, 32, comp=3, dib=56) + bytes(range(16)))
    out("image", "bmp-16-bitfields.bmp", bmp_header(3, 2, 16, comp=3, dib=108) + bytes(range(16)))
    out("image", "bmp-rle8.bmp", bmp_header(4, 2, 8, comp=1) + b"\x04\x01\x00\x00\x04\x02\x00\x01")
    out("image", "bmp-huge.bmp", bmp_header(60000, 60000, 24) + b"\0" * 64)
    out("image", "bmp-height-min.bmp", bmp_header(1, -2147483648, 24) + b"\0" * 64)
    out("image", "bmp-truncated.bmp", bmp_header(16, 16, 24) + b"\0" * 100)
    out("image", "bmp-4bit.bmp", bmp_header(5, 2, 4) + b"\x12\x34\x50\x00" * 2)
    # WebP: lossy, lossless, alpha, animation (refused), VP8X with huge canvas
    out("image", "webp-lossy.webp", pil_bytes(smooth(9, 7), "WEBP", quality=50))
    out("image", "webp-lossless-alpha.webp", pil_bytes(noise(6, 5, "RGBA"), "WEBP", lossless=True))
    out("image", "webp-lossy-alpha.webp", pil_bytes(noise(6, 5, "RGBA"), "WEBP", quality=30))
    out("image", "webp-anim.webp", pil_bytes(smooth(6, 4), "WEBP", save_all=True,
                                             append_images=[noise(6, 4), smooth(6, 4)], duration=50, quality=20))
    out("image", "webp-anim-lossless.webp", pil_bytes(noise(4, 4), "WEBP", save_all=True, append_images=[noise(4, 4)],
                                                      duration=20, lossless=True))
    out("image", "webp-vp8x-huge.webp", webp_vp8x(16384, 16384, 0x10))
    out("image", "webp-vp8x-anim-no-frames.webp", webp_vp8x(16, 16, 0x02) + b"ANIM" + struct.pack("<I", 6) + b"\0" * 6)
    lossy = pil_bytes(smooth(9, 7), "WEBP", quality=50)
    out("image", "webp-truncated.webp", lossy[:len(lossy) // 2])


# ---------------------------------------------------------------- safetensors

def safetensors(tensors, meta=None, dtypes=None, raw_header=None):
    """tensors: list of (name, array); dtypes: name -> "F16" etc."""
    hdr, blobs, off = {}, [], 0
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, a in tensors:
        dt = (dtypes or {}).get(name, {np.float32: "F32", np.int32: "I32", np.uint8: "U8"}.get(a.dtype.type, "F32"))
        if dt == "F16":
            b = a.astype("<f2").tobytes()
        elif dt == "BF16":
            b = (a.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
        elif dt == "F64":
            b = a.astype("<f8").tobytes()
        else:
            b = a.tobytes()
        hdr[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = raw_header if raw_header is not None else json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def micro_vit(D=4, P=1, g0=1, L=1, F=4, C=2, hf=False, probe=False):
    r = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)
    t = [("cls_token", r(1, 1, D)), ("pos_embed", r(1, 1 + g0 * g0, D)), ("patch_embed.proj.weight", r(D, 3, P, P)),
         ("patch_embed.proj.bias", r(D))]
    for i in range(L):
        b = "blocks.%d." % i
        t += [(b + "norm1.weight", r(D)), (b + "norm1.bias", r(D)), (b + "attn.qkv.weight", r(3 * D, D)),
              (b + "attn.qkv.bias", r(3 * D)), (b + "attn.proj.weight", r(D, D)), (b + "attn.proj.bias", r(D)),
              (b + "norm2.weight", r(D)), (b + "norm2.bias", r(D)), (b + "mlp.fc1.weight", r(F, D)),
              (b + "mlp.fc1.bias", r(F)), (b + "mlp.fc2.weight", r(D, F)), (b + "mlp.fc2.bias", r(D))]
    t += [("norm.weight", r(D)), ("norm.bias", r(D))]
    if C:
        t += [("head.weight", r(C, 4 * D if probe else D)), ("head.bias", r(C))]
    if not hf:
        return t
    names = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
             "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
             "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias", "norm.weight": "layernorm.weight",
             "norm.bias": "layernorm.bias", "head.weight": "classifier.weight", "head.bias": "classifier.bias"}
    leaf = {"norm1.": "layernorm_before.", "norm2.": "layernorm_after.", "attn.proj.": "attention.output.dense.",
            "mlp.fc1.": "intermediate.dense.", "mlp.fc2.": "output.dense."}
    o = []
    for n, a in t:
        if n in names:
            o.append(("vit." + names[n] if not n.startswith("head") else names[n], a))
            continue
        _, i, rest = n.split(".", 2)
        pre = "vit.encoder.layer.%s." % i
        if rest.startswith("attn.qkv."):
            kind = rest.split(".")[-1]
            for k, part in enumerate(("query", "key", "value")):
                o.append((pre + "attention.attention.%s.%s" % (part, kind), a[k * D:(k + 1) * D]))
            continue
        for a_, b_ in leaf.items():
            if rest.startswith(a_):
                o.append((pre + b_ + rest[len(a_):], a))
    o.append(("vit.pooler.dense.weight", r(D, D)))
    o.append(("vit.pooler.dense.bias", r(D)))
    return o


def safetensors_seeds():
    meta = {"num_heads": "1", "name": "micro", "labels": json.dumps(["cat", "dog"]), "mean": "[0.5, 0.5, 0.5]",
            "std": "[0.25, 0.25, 0.25]", "ln_eps": "1e-5"}
    m = micro_vit()
    out("safetensors", "micro-f32.safetensors", safetensors(m, meta))
    out("safetensors", "micro-f16.safetensors", safetensors(m, {"num_heads": "2"}, {n: "F16" for n, _ in m}))
    out("safetensors", "micro-bf16.safetensors", safetensors(m, None, {n: "BF16" for n, _ in m}))
    out("safetensors", "micro-f64.safetensors", safetensors(m, None, {n: "F64" for n, _ in m}))
    out("safetensors", "micro-mixed.safetensors", safetensors(m, meta, {n: ("F16", "BF16", "F64", "F32")[i % 4] for i, (n, _) in enumerate(m)}))
    out("safetensors", "micro-hf.safetensors", safetensors(micro_vit(hf=True), {"labels": "[\"a\", \"b\"]"}))
    out("safetensors", "micro-probe.safetensors", safetensors(micro_vit(L=4, probe=True, C=1), {"num_heads": "4"}))
    out("safetensors", "micro-nohead.safetensors", safetensors(micro_vit(C=0, D=2, F=2)))
    out("safetensors", "micro-grid2-p2.safetensors", safetensors(micro_vit(P=2, g0=2, D=2, F=2, C=1)))
    bad = list(m)
    bad[0] = ("cls_token", np.array([[[np.inf, 0, 0, 0]]], np.float32))
    out("safetensors", "micro-inf.safetensors", safetensors(bad))
    out("safetensors", "micro-extra-tensor.safetensors", safetensors(m + [("blocks.7.norm1.weight", np.zeros(4, np.float32))]))
    out("safetensors", "micro-missing.safetensors", safetensors([x for x in m if x[0] != "blocks.0.attn.qkv.bias"]))
    out("safetensors", "micro-labels-bad.safetensors", safetensors(m, {"labels": "[\"only one\"]", "num_heads": "3"}))
    # the reader alone: every dtype, metadata, malformed headers
    ints = [("i8", np.arange(4, dtype=np.int8)), ("u8", np.arange(3, dtype=np.uint8)),
            ("i16", np.arange(2, dtype=np.int16)), ("i32", np.arange(2, dtype=np.int32)),
            ("i64", np.arange(1, dtype=np.int64)), ("b", np.array([True, False]))]
    hdr, blobs, off = {"__metadata__": {"k": "v"}}, b"", 0
    for n, a in ints:
        dt = {"i8": "I8", "u8": "U8", "i16": "I16", "i32": "I32", "i64": "I64", "b": "BOOL"}[n]
        hdr[n] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs += a.tobytes()
        off += a.nbytes
    h = json.dumps(hdr).encode()
    out("safetensors", "dtypes.safetensors", struct.pack("<Q", len(h)) + h + blobs)
    for name, h, tail in (
            ("empty-header", b"{}", b""), ("metadata-only", b'{"__metadata__":{"a":"b"}}', b""),
            ("scalar", b'{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', b"\0\0\x80\x3f"),
            ("zero-size", b'{"z":{"dtype":"F16","shape":[0,5],"data_offsets":[0,0]}}', b""),
            ("overlap", b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', b"abc"),
            ("gap", b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"ab"),
            ("reversed", b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[2,1]}}', b"ab"),
            ("huge-shape", b'{"a":{"dtype":"F64","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}', b"\0" * 8),
            ("neg-shape", b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', b"\0" * 4),
            ("unknown-dtype", b'{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', b"\0"),
            ("nine-dims", b'{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}', b"\0"),
            ("unicode-name", b'{"\\u00e9\\ud83d\\ude00":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\0"),
            ("dup-key", b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"\0"),
            ("deep", b"[" * 40 + b"]" * 40, b""),
            ("big-number", b'{"a":{"dtype":"U8","shape":[1e400],"data_offsets":[0,1]}}', b"\0"),
            ("float-offset", b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1.0]}}', b"\0"),
            ("meta-not-string", b'{"__metadata__":{"a":1}}', b"")):
        out("safetensors", name + ".safetensors", struct.pack("<Q", len(h)) + h + tail)
    out("safetensors", "header-len-huge.safetensors", struct.pack("<Q", 1 << 62) + b"{}")
    out("safetensors", "short.safetensors", b"\x02\0\0")


# ---------------------------------------------------------------- requests

def tiny_png():
    return png(3, 2, 2, 8)


def request_seeds():
    b64 = base64.b64encode(tiny_png()).decode()
    emb = [round(float(x), 4) for x in rng.standard_normal(32)]
    bodies = {
        "explain-min": {"image": b64},
        "explain-all": {"image": b64, "methods": ["cdam", "smooth_cdam", "integrated_cdam", "am", "rp", "tam"],
                        "classes": [0, "apple", "BICYCLE", "3"], "size": [32, 48], "top_k": 3, "head": 1,
                        "samples": 4, "sigma": 0.5, "seed": 42, "threshold": 0.9, "format": "png", "async": True},
        "explain-embedding": {"image": b64, "concept_embedding": emb, "classes": []},
        "explain-concept": {"image": b64, "concept": "0123456789abcdef0123456789abcdef", "methods": "am"},
        "explain-bad": {"methods": [], "classes": [7, -1, 1.5, None], "size": [33, 1e300], "top_k": 0},
        "concept": {"name": "stripes", "images": [b64, "data:image/png;base64," + b64]},
        "concept-one": {"name": "x" * 128, "image": b64},
    }
    for k, v in bodies.items():
        out("request", "json-" + k, "0" + json.dumps(v))
    out("request", "json-deep", "0" + "[" * 2000 + "]" * 2000)
    out("request", "json-unicode", '0{"classes":["\\u0000", "\\ud800"], "methods":"\\u00e9"}')
    out("request", "form-all", "1methods=cdam, am ,rp\nclasses=0,apple\nclasses=2\nsize=32x64\ntop_k=3\nhead=0\n"
                               "samples=8\nsigma=1e-3\nseed=7\nthreshold=0.5\nasync=yes\nformat=json\n")
    out("request", "form-json-arrays", '1methods=["cdam","tam"]\nclasses=[1,"dog"]\nsize=[40, 40]\n'
                                       "concept_embedding=" + json.dumps(emb) + "\n")
    out("request", "form-bad", "1size=8 x\nclasses=,,,\nmethods=\ntop_k=1e999\nasync=maybe\nsize= 16 , 16 \n")
    out("request", "base64-plain", "2" + b64)
    out("request", "base64-url", "2" + base64.urlsafe_b64encode(bytes(range(250, 256)) * 3).decode().rstrip("="))
    out("request", "base64-data-url", "2data:image/png;base64," + b64)
    out("request", "base64-spaces", "2" + " \n".join(b64[i:i + 7] for i in range(0, len(b64), 7)))
    out("request", "base64-bad", "2QUJD=RA==")
    for i, (k, v) in enumerate((("size", "24,40"), ("classes", "apple,1"), ("methods", "cdam,tam"), ("async", "off"),
                                ("top_k", " 2 "), ("head", "1"), ("samples", "256"), ("seed", "9007199254740991"),
                                ("sigma", "100"), ("threshold", "1"), ("concept_embedding", json.dumps(emb)),
                                ("concept", "abc"), ("format", "png"))):
        out("request", "field-" + k, "3" + chr(i) + v)


def multipart(parts, boundary="cdamfuzzboundary", end=True):
    s = b""
    for name, value, fname, ctype in parts:
        s += b"--" + boundary.encode() + b"\r\n"
        s += b'Content-Disposition: form-data; name="' + name.encode() + b'"'
        if fname is not None:
            s += b'; filename="' + fname.encode() + b'"'
        s += b"\r\n"
        if ctype:
            s += b"Content-Type: " + ctype.encode() + b"\r\n"
        s += b"\r\n" + (value if isinstance(value, bytes) else value.encode()) + b"\r\n"
    if end:
        s += b"--" + boundary.encode() + b"--\r\n"
    return s


def multipart_seeds():
    img = tiny_png()
    out("multipart", "explain", multipart([("image", img, "a.png", "image/png"), ("methods", "cdam,am", None, None),
                                           ("classes", "0", None, None), ("classes", "apple", None, None),
                                           ("size", "32x32", None, None), ("top_k", "2", None, None)]))
    out("multipart", "explain-async", multipart([("image", img, "a.png", "image/png"), ("async", "true", None, None),
                                                 ("methods", "tam", None, None), ("format", "json", None, None)]))
    out("multipart", "explain-bad-fields", multipart([("image", img, "a.png", None), ("size", "9x9", None, None),
                                                      ("classes", "banana", None, None)]))
    out("multipart", "concept", multipart([("name", "stripes", None, None), ("images", img, "1.png", "image/png"),
                                           ("images", img, "2.png", "image/png"), ("image[]", img, "3.png", None)]))
    out("multipart", "concept-long-name", multipart([("name", "n" * 129, None, None), ("image", img, "1.png", None)]))
    out("multipart", "too-many-images", multipart([("images", b"x", "%d.png" % i, None) for i in range(33)]))
    out("multipart", "empty-image", multipart([("image", b"", "e.png", "image/png"), ("name", "e", None, None)]))
    out("multipart", "no-parts", b"--cdamfuzzboundary--\r\n")
    out("multipart", "wrong-boundary", multipart([("name", "x", None, None)], boundary="other"))
    out("multipart", "truncated", multipart([("image", img, "a.png", "image/png")], end=False)[:-20])
    out("multipart", "base64-part", multipart([("image", base64.b64encode(img).decode(), None, None),
                                               ("methods", '["cdam"]', None, None)]))
    out("multipart", "transfer-encoding", b"--cdamfuzzboundary\r\nContent-Disposition: form-data; name=\"name\"\r\n"
                                          b"Content-Transfer-Encoding: quoted-printable\r\n\r\na=3Db\r\n--cdamfuzzboundary--\r\n")
    out("multipart", "nested-mixed", b"--cdamfuzzboundary\r\nContent-Disposition: form-data; name=\"images\"\r\n"
                                     b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\n"
                                     b"Content-Disposition: file; filename=\"a.png\"\r\n\r\n" + img +
                                     b"\r\n--inner--\r\n--cdamfuzzboundary--\r\n")
    out("multipart", "embedding-field", multipart([("concept_embedding", json.dumps([0.5] * 32), None, None),
                                                   ("classes", "[]", None, None), ("image", img, "a.png", None)]))
    # a body starting with '{' is sent as application/json
    b64 = base64.b64encode(img).decode()
    out("multipart", "json-explain", json.dumps({"image": b64, "methods": ["cdam", "am"], "classes": [1], "size": [32, 32]}))
    out("multipart", "json-explain-async", json.dumps({"image": "data:image/png;base64," + b64, "async": True}))
    out("multipart", "json-concept", json.dumps({"name": "stripes", "images": [b64, b64]}))
    out("multipart", "json-concept-one", json.dumps({"name": "one", "image": b64}))
    out("multipart", "json-bad", json.dumps({"image": 7, "images": "x", "name": ""}))


def store_seeds():
    ID = "0123456789abcdef0123456789abcdef"

    def concept(d, **over):
        c = {"id": ID, "name": "stripes", "images": 3, "created": 1764000000.123456, "dim": d,
             "embedding": [float(np.float32(x)) for x in rng.standard_normal(d)]}
        c.update(over)
        return json.dumps(c)

    # first byte odd ('{' = 0x7b): a dim-4 store; even (' ' = 0x20): dim 32
    out("store", "valid-dim4.json", concept(4))
    out("store", "valid-dim32.json", " " + concept(32) + "\n")
    out("store", "name-unicode.json", concept(4, name="\u00e9\U0001F600 \"q\" \n\t"))
    out("store", "name-long.json", concept(4, name="n" * 129))
    out("store", "name-bad-utf8.json", concept(4).replace('"stripes"', '"\\udc80"'))
    out("store", "id-other.json", concept(4, id="f" * 32))
    out("store", "dim-wrong.json", concept(4, dim=5))
    out("store", "embedding-short.json", concept(4, embedding=[1, 2, 3]))
    out("store", "embedding-overflow.json", concept(4).replace('"embedding": [', '"embedding": [1e39, '))
    out("store", "embedding-strings.json", concept(4, embedding=["1", "2", "3", "4"]))
    out("store", "images-neg.json", concept(4, images=-1))
    out("store", "images-frac.json", concept(4, images=1.5))
    out("store", "created-neg.json", concept(4, created=-1))
    out("store", "not-object.json", "[1, 2, 3]")
    out("store", "nul-byte.json", concept(4)[:20] + "\0" + concept(4)[20:])
    out("store", "truncated.json", concept(4)[:-10])
    out("store", "dup-keys.json", concept(4)[:-1] + ', "name": 7}')
    out("store", "empty.json", "")
    # first byte with bits 1, 2 and 3 set: also loaded from a data directory (cJSON skips
    # bytes <= 32 as whitespace); bit 4: with a leftover temporary file
    out("store", "dir-dim4.json", "\x0f" + concept(4))
    out("store", "dir-dim32-leftover.json", "\x1e" + concept(32))
    out("store", "dir-bad.json", "\x0f" + concept(4, dim=3))


def main():
    # only seeds are regenerated; crash-* reproducers stay
    if os.path.isdir(ROOT):
        for t in os.listdir(ROOT):
            for n in os.listdir(os.path.join(ROOT, t)):
                if n.startswith("seed-"):
                    os.remove(os.path.join(ROOT, t, n))
    images()
    safetensors_seeds()
    request_seeds()
    multipart_seeds()
    store_seeds()
    total = 0
    for dp, _, fs in os.walk(ROOT):
        for f in fs:
            total += os.path.getsize(os.path.join(dp, f))
    print("make_seeds: %s, %d bytes in total" % (ROOT, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
