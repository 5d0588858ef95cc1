#!/usr/bin/python3
"""Generates the image-module test data (deterministic; run from anywhere):

  tests/data/images/*                  small synthetic images in every accepted format,
                                       plus broken / hostile ones
  tests/data/golden/images.safetensors expected decoded pixels, U8 (h, w, 3), one tensor
                                       per image file name (lossy files: the ideal pattern)
  tests/data/golden/resize.safetensors "src" U8 (37, 53, 3) and "out_{oh}x{ow}" F32
                                       (oh, ow, 3) from torch F.interpolate(bilinear,
                                       antialias=True, align_corners=False); "input_{oh}x{ow}"
                                       F32 (3, oh, ow) = (out/255 - mean)/std, ImageNet stats

Needs Debian's python3-pil, python3-numpy, python3-torch: /usr/bin/python3 make_images.py.
The pattern (32x24: four coloured quadrants split at x=16, y=16, plus gradients) is
asymmetric, so any flip or rotation is visible in the quadrant colours.
"""
import io
import json
import os
import struct
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMG = os.path.join(ROOT, "tests", "data", "images")
GOLD = os.path.join(ROOT, "tests", "data", "golden")
W, H = 32, 24
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pattern():
    y, x = np.mgrid[0:H, 0:W]
    q = (x >= 16).astype(int) + 2 * (y >= 16)
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])[q]
    grad = np.stack([x, y, (x + y) // 2], -1)
    return (base + grad).astype(np.uint8)


def grey(rgb):
    return ((rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114 + 500) // 1000).astype(np.uint8)


def composite(rgb, a):  # on black, rounded: rgb*a/255
    return ((rgb.astype(np.int64) * a[..., None].astype(np.int64) + 127) // 255).astype(np.uint8)


def alpha():
    y, x = np.mgrid[0:H, 0:W]
    return ((x * 8 + y * 5) % 256).astype(np.uint8)  # includes 0 and 255-ish values


def palette_image():
    """16-colour palette image, 32x24, indices asymmetric; returns (P image, rgb array)."""
    pal = np.array([[(i * 53) % 256, (i * 97 + 30) % 256, (i * 151 + 60) % 256] for i in range(16)], np.uint8)
    y, x = np.mgrid[0:H, 0:W]
    idx = ((x // 4) + 3 * (y // 6) + (x >= 16) * 5) % 16
    im = Image.fromarray(idx.astype(np.uint8), "P")
    im.putpalette(pal.flatten().tolist())
    return im, pal[idx], idx


def png_chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)


def png_raw(w, h, depth, ctype, rows):
    """Minimal PNG writer: rows is bytes of h filtered-with-0 scanlines."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows, 9))
            + png_chunk(b"IEND", b""))


def sixteen(v8, rng):
    """8-bit values -> 16-bit v*257 + noise in [-100, 100] (rounding back gives v exactly;
    truncation (v16 >> 8) would not)."""
    v = v8.astype(np.int64) * 257 + rng.integers(-100, 101, v8.shape)
    return np.clip(v, 0, 65535).astype(">u2")


def jpeg(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", quality=95, subsampling=0, **kw)
    return b.getvalue()


def save(name, data):
    with open(os.path.join(IMG, name), "wb") as f:
        f.write(data)


def pil_bytes(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


# PIL transpose that displays a stored image with EXIF orientation o (as exif_transpose).
SHOW = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM, 5: Image.TRANSPOSE,
        6: Image.ROTATE_270, 7: Image.TRANSVERSE, 8: Image.ROTATE_90}
UNDO = {**SHOW, 6: Image.ROTATE_90, 8: Image.ROTATE_270}  # inverse of SHOW[o]


def exif_le_app1(o):
    """A little-endian ("II") Exif APP1 segment holding only IFD0 with the orientation
    (PIL writes big-endian "MM" Exif, so this covers the other byte order)."""
    tiff = b"II\x2a\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, o, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = {np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32"}[a.dtype]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def images():
    os.makedirs(IMG, exist_ok=True)
    rng = np.random.default_rng(1234)
    p = pattern()
    g = grey(p)
    a = alpha()
    rgb = Image.fromarray(p, "RGB")
    exp = {}  # file name -> expected (h, w, 3) uint8

    def add(name, data, expected):
        save(name, data)
        exp[name] = expected

    add("rgb8.png", pil_bytes(rgb, "PNG"), p)
    add("grey8.png", pil_bytes(Image.fromarray(g, "L"), "PNG"), np.repeat(g[..., None], 3, -1))
    add("greya8.png", pil_bytes(Image.fromarray(np.stack([g, a], -1), "LA"), "PNG"),
        np.repeat(composite(g[..., None], a), 3, -1))
    add("rgba8.png", pil_bytes(Image.fromarray(np.dstack([p, a]), "RGBA"), "PNG"), composite(p, a))
    rows16 = b"".join(b"\x00" + sixteen(p[y], rng).tobytes() for y in range(H))
    add("rgb16.png", png_raw(W, H, 16, 2, rows16), p)
    rowsg16 = b"".join(b"\x00" + sixteen(g[y], rng).tobytes() for y in range(H))
    add("grey16.png", png_raw(W, H, 16, 0, rowsg16), np.repeat(g[..., None], 3, -1))
    pim, prgb, pidx = palette_image()
    add("palette.png", pil_bytes(pim, "PNG"), prgb)
    trns = bytes((i * 17) % 256 for i in range(16))  # alpha per palette index
    add("palette_trns.png", pil_bytes(pim, "PNG", transparency=trns),
        composite(prgb, np.frombuffer(trns, np.uint8)[pidx]))
    add("rgb24.bmp", pil_bytes(rgb, "BMP"), p)
    # GIF, two frames: the first is the palette image, the second its negative.
    f2 = Image.fromarray((15 - pidx).astype(np.uint8), "P")
    f2.putpalette(pim.getpalette())
    add("anim2.gif", pil_bytes(pim, "GIF", save_all=True, append_images=[f2], duration=100, loop=0,
                               optimize=False), prgb)
    add("baseline.jpg", jpeg(rgb), p)
    add("progressive.jpg", jpeg(rgb, progressive=True), p)
    add("grey.jpg", jpeg(Image.fromarray(g, "L")), np.repeat(g[..., None], 3, -1))
    for o in range(1, 9):
        stored = rgb if o == 1 else rgb.transpose(UNDO[o])
        ex = Image.Exif()
        ex[0x0112] = o
        add(f"exif{o}.jpg", jpeg(stored, exif=ex.tobytes()), p)
    raw6 = jpeg(rgb.transpose(UNDO[6]))
    add("exif6_le.jpg", raw6[:2] + exif_le_app1(6) + raw6[2:], p)
    add("lossless.webp", pil_bytes(rgb, "WEBP", lossless=True), p)
    add("lossy.webp", pil_bytes(rgb, "WEBP", quality=95), p)
    add("rgba_lossless.webp", pil_bytes(Image.fromarray(np.dstack([p, a]), "RGBA"), "WEBP", lossless=True, exact=True),
        composite(p, a))
    save("anim2.webp", pil_bytes(rgb, "WEBP", save_all=True, append_images=[rgb.transpose(Image.ROTATE_180)],
                                 duration=100, lossless=True))
    save("not_an_image.txt", b"This is a text file, not an image.\n")
    full_png = pil_bytes(rgb, "PNG")
    save("truncated.png", full_png[: len(full_png) * 2 // 3])
    full_jpg = jpeg(rgb)
    save("truncated.jpg", full_jpg[: len(full_jpg) - 100])  # inside the entropy-coded data
    # Header declares 30000x20000 (600 Mpx); the IDAT is a few bytes and then the file ends.
    ihdr = struct.pack(">IIBBBBB", 30000, 20000, 8, 2, 0, 0, 0)
    save("huge.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    # A real small JPEG whose SOF0 is patched to 20000 high, 30000 wide, then cut.
    j = bytearray(full_jpg)
    sof = j.index(b"\xff\xc0")
    j[sof + 5:sof + 9] = struct.pack(">HH", 20000, 30000)
    save("huge.jpg", bytes(j[: sof + 200]))
    # VP8L header: 0x2f, then 14 bits width-1, 14 bits height-1, alpha bit, 3 version bits.
    bits = (16383 - 1) | (16383 - 1) << 14
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\0" * 16
    save("huge.webp", b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8l)) + b"WEBP" + b"VP8L"
         + struct.pack("<I", len(vp8l)) + vp8l)

    # Self-check with PIL: lossless files decode to exactly the expectation, lossy ones
    # within the tolerance the C test uses, EXIF files after exif_transpose.
    for name, e in exp.items():
        im = Image.open(os.path.join(IMG, name))
        im.seek(0)
        if name.startswith("exif"):
            im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            got = composite(np.asarray(im)[..., :3], np.asarray(im)[..., 3])
        elif im.mode == "I;16" or im.mode == "I":
            got = np.repeat(((np.asarray(im).astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)[..., None], 3, -1)
        else:
            got = np.asarray(im.convert("RGB"))
        assert got.shape == e.shape, (name, got.shape, e.shape)
        d = np.abs(got.astype(int) - e.astype(int))
        # Same tolerances as tests/test_image.c: JPEG (4:4:4, q95) mean < 3, max < 40;
        # lossy WebP (always 4:2:0, so colour edges bleed on this tiny image) mean < 8, max < 128.
        tol = (3, 40) if name.endswith(".jpg") else (8, 128) if name == "lossy.webp" else (1e-9, 1)
        if name != "rgb16.png":  # PIL reduces 16-bit RGB by truncation, not rounding
            assert d.mean() < tol[0] and d.max() < tol[1], (name, d.mean(), d.max())
    write_safetensors(os.path.join(GOLD, "images.safetensors"), exp)
    return exp


def resize():
    rng = np.random.default_rng(5)
    h, w = 37, 53
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    smooth = np.stack([128 + 100 * np.sin(x / 5 + c) * np.cos(y / 7 - c) for c in range(3)], -1)
    src = np.clip(smooth + rng.normal(0, 12, (h, w, 3)), 0, 255).round().astype(np.uint8)
    t = torch.from_numpy(src).permute(2, 0, 1)[None].float().contiguous()
    out = {"src": src}
    for oh, ow in [(16, 24), (8, 8), (30, 20), (48, 60), (20, 70), (37, 26), (50, 53), (1, 1)]:
        r = F.interpolate(t, size=(oh, ow), mode="bilinear", antialias=True, align_corners=False)
        out[f"out_{oh}x{ow}"] = r[0].permute(1, 2, 0).contiguous().numpy()
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    for oh, ow in [(16, 24), (37, 53)]:
        r = t[0] if (oh, ow) == (h, w) else F.interpolate(t, size=(oh, ow), mode="bilinear", antialias=True,
                                                          align_corners=False)[0]
        out[f"input_{oh}x{ow}"] = ((r / 255 - mean) / std).contiguous().numpy()
    write_safetensors(os.path.join(GOLD, "resize.safetensors"), out)


if __name__ == "__main__":
    images()
    resize()
    total = sum(os.path.getsize(os.path.join(IMG, f)) for f in os.listdir(IMG))
    print(f"make_images: {len(os.listdir(IMG))} files in tests/data/images ({total} bytes); goldens written")
