"""safetensors_io.py - a small numpy-only reader/writer of the safetensors format.

The official `safetensors` package is not needed (nor available here). The format:
an 8-byte little-endian u64 header length n, n bytes of JSON

    {"__metadata__": {"key": "string", ...},
     "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}

padded with spaces to a multiple of 8 bytes, then the byte buffer; offsets are relative
to the start of the buffer. Tensors are written contiguously, in the order given,
little-endian, C order. core/safetensors.h is the strict C reader of the same contract.

    save(path, {"w": np.zeros((2, 3), np.float32)}, {"name": "x"}, dtypes={"w": "BF16"})
    tensors, metadata = load(path)            # BF16 comes back as float32
    tensors, metadata, dtypes = load(path, with_dtypes=True)

dtypes: None (each array's own dtype), a dtype name applied to every floating tensor
("F16", "BF16", "F32", ...), or a dict name -> dtype name for some tensors. F16 rounds
with numpy's cast (round to nearest even); BF16 rounds the float32 value to nearest
even on its top 16 bits (NaN stays NaN, overflow goes to infinity like any RNE).
"""
import json
import struct

import numpy as np

# safetensors dtype name -> numpy dtype used for the bytes on disk (little-endian)
_NP = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_FROM_NP = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16",
    np.dtype("int8"): "I8", np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL",
}
_FLOAT = ("F64", "F32", "F16", "BF16")


def f32_to_bf16_bits(x):
    """float32 array -> uint16 bfloat16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    quiet = ((u >> 16) | 0x0040) & 0xFFFF  # keep the sign, force a quiet NaN
    return np.where(nan, quiet, rounded).astype(np.uint16)


def bf16_bits_to_f32(b):
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_bf16(x):
    """float32 values rounded to the nearest bfloat16, returned as float32."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x)).reshape(np.shape(x))


def round_f16(x):
    """float32 values rounded to the nearest float16, returned as float32."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def _encode(arr, dt):
    """(array, safetensors dtype) -> little-endian bytes of that dtype."""
    if dt == "BF16":
        return f32_to_bf16_bits(np.asarray(arr, dtype=np.float32)).astype("<u2").tobytes()
    if dt not in _NP:
        raise ValueError(f"unknown dtype {dt}")
    if dt in _FLOAT and arr.dtype.kind not in "fiu":
        raise ValueError(f"cannot store {arr.dtype} as {dt}")
    return np.ascontiguousarray(arr, dtype=_NP[dt]).tobytes()


def save(path, tensors, metadata=None, dtypes=None):
    """Writes tensors (dict name -> np.ndarray, in order) with metadata (dict str -> str)."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata {k!r}: keys and values must be str")
        header["__metadata__"] = dict(metadata)
    for name, arr in tensors.items():
        if name == "__metadata__":
            raise ValueError("__metadata__ is not a tensor name")
        arr = np.asarray(arr)
        if isinstance(dtypes, dict) and name in dtypes:
            dt = dtypes[name]
        elif isinstance(dtypes, str) and arr.dtype.kind == "f":
            dt = dtypes
        else:
            dt = _FROM_NP.get(arr.dtype)
            if dt is None:
                raise ValueError(f"{name}: no safetensors dtype for {arr.dtype}")
        data = _encode(arr, dt)
        header[name] = {"dtype": dt, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    js = json.dumps(header, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for b in blobs:
            f.write(b)


def load(path, with_dtypes=False):
    """Reads a safetensors file -> (tensors, metadata) or (tensors, metadata, dtypes).

    Arrays are native numpy (BF16 decoded to float32), in header (file) order.
    Raises ValueError on a malformed file (the checks of core/safetensors.h)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} beyond the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not an object")
    buf = memoryview(raw)[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    tensors, dtypes, spans = {}, {}, []
    for name, info in header.items():
        dt, shape, (b, e) = info["dtype"], info["shape"], info["data_offsets"]
        if dt not in _NP:
            raise ValueError(f"{path}: {name}: unknown dtype {dt}")
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= b <= e <= len(buf)) or count * _NP[dt].itemsize != e - b:
            raise ValueError(f"{path}: {name}: bad data_offsets {b},{e} for {dt}{shape}")
        spans.append((b, e, name))
        a = np.frombuffer(buf[b:e], dtype=_NP[dt]).reshape(shape)
        a = bf16_bits_to_f32(a).reshape(shape) if dt == "BF16" else a.astype(_NP[dt].newbyteorder("="))
        tensors[name], dtypes[name] = a, dt
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            raise ValueError(f"{path}: {name}: gap or overlap at byte {b} (expected {pos})")
        pos = e
    if pos != len(buf):
        raise ValueError(f"{path}: {len(buf) - pos} unused bytes at the end of the buffer")
    return (tensors, metadata, dtypes) if with_dtypes else (tensors, metadata)


def _selftest():
    import os
    import tempfile
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    t = {"a": x, "b": x, "c": x, "u": np.arange(7, dtype=np.uint8),
         "i": np.arange(-3, 3, dtype=np.int64), "s": np.float32(2.5).reshape(()),
         "e": np.zeros((0, 4), np.float32)}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "t.safetensors")
        save(p, t, {"k": "v"}, dtypes={"b": "F16", "c": "BF16"})
        r, m, dts = load(p, with_dtypes=True)
        assert m == {"k": "v"} and list(r) == list(t)
        assert dts == {"a": "F32", "b": "F16", "c": "BF16", "u": "U8", "i": "I64",
                       "s": "F32", "e": "F32"}
        assert np.array_equal(r["a"], x)
        assert np.array_equal(r["b"].astype(np.float32), round_f16(x))
        assert np.array_equal(r["c"], round_bf16(x))
        assert np.abs(r["c"] - x).max() <= np.abs(x).max() * 2.0 ** -8
        assert np.array_equal(r["u"], t["u"]) and np.array_equal(r["i"], t["i"])
        assert r["s"].shape == () and r["e"].shape == (0, 4)
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
        assert n % 8 == 0
    # round to nearest even on exact ties, and special values
    bits = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0xFF800000, 0x80000000],
                    dtype=np.uint32).view(np.float32)
    assert f32_to_bf16_bits(bits).tolist() == [0x3F80, 0x3F82, 0x3F81, 0x7F80, 0xFF80, 0x8000]
    assert np.isnan(bf16_bits_to_f32(f32_to_bf16_bits(np.array([np.nan], np.float32)))).all()
    print("safetensors_io: self-test ok")


if __name__ == "__main__":
    _selftest()
