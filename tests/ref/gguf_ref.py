"""gguf_ref.py - minimal, independent GGUF v2/v3 reader for the mica test oracle.

Written from the format description in docs/FORMATS.md (section 1: container,
section 2.3: block layouts), not from mica's C code, so that a misreading of
the format in one place is not silently repeated in the other.

What it does:
  * parses the header, every metadata value type (arrays included, nested
    arrays too), the tensor infos, the alignment and the data offset;
  * dequantises F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4,
    Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS tensors to float32
    numpy arrays, whole-array (vectorised) per block field, so a 600 MB model
    dequantises in seconds rather than minutes.

Conventions: a tensor with GGUF dims ne = [ne0, ne1, ...] (ne0 contiguous) is
returned as a numpy array of shape (..., ne1, ne0), i.e. a weight matrix
{in, out} comes back as the [out, in] matrix W of y = W x.

Checks are the ones that matter for a trusted test input (magic, version,
bounds of every tensor); this is not a hardened parser.
Python >= 3.8 with numpy; Debian's /usr/bin/python3 has it.
"""

import mmap
import os
import struct

import numpy as np

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
QK_K = 256

# metadata value types (FORMATS.md 1.2)
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, \
    T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)

_SCALAR_FMT = {
    T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h",
    T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<B",
    T_UINT64: "<Q", T_INT64: "<q", T_FLOAT64: "<d",
}
_SCALAR_NP = {
    T_UINT8: "<u1", T_INT8: "<i1", T_UINT16: "<u2", T_INT16: "<i2",
    T_UINT32: "<u4", T_INT32: "<i4", T_FLOAT32: "<f4", T_BOOL: "<u1",
    T_UINT64: "<u8", T_INT64: "<i8", T_FLOAT64: "<f8",
}

# ggml tensor types: id -> (name, elements per block, bytes per block)
# (FORMATS.md 2.1); only the ones this reader can dequantise plus a few
# common ones so that size computation of other tensors still works.
GGML_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    20: ("IQ4_NL", 32, 18),
    23: ("IQ4_XS", 256, 136),
    39: ("MXFP4", 32, 17),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    30: ("BF16", 1, 2),
}
TYPE_ID = {v[0]: k for k, v in GGML_TYPES.items()}


class GGUFError(Exception):
    pass


class TensorInfo:
    __slots__ = ("name", "ne", "type_id", "offset", "nbytes", "n_elements")

    def __init__(self, name, ne, type_id, offset):
        self.name = name
        self.ne = ne
        self.type_id = type_id
        self.offset = offset
        if type_id not in GGML_TYPES:
            raise GGUFError("tensor %s: unsupported ggml type %d" % (name, type_id))
        _, blck, ts = GGML_TYPES[type_id]
        if ne[0] % blck != 0:
            raise GGUFError("tensor %s: ne0 %d not a multiple of block %d" % (name, ne[0], blck))
        n = 1
        for d in ne:
            n *= d
        self.n_elements = n
        rows = n // ne[0] if ne[0] else 0
        self.nbytes = (ne[0] // blck) * ts * rows

    @property
    def type_name(self):
        return GGML_TYPES[self.type_id][0]

    @property
    def shape(self):
        """numpy shape: reversed ne (outermost first)."""
        return tuple(reversed(self.ne))

    def __repr__(self):
        return "TensorInfo(%s, %s, ne=%s, off=%d)" % (self.name, self.type_name, self.ne, self.offset)


class _Cursor:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise GGUFError("truncated file at offset %d (need %d bytes)" % (self.pos, n))
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def scalar(self, t):
        fmt = _SCALAR_FMT[t]
        v = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return bool(v) if t == T_BOOL else v

    def string(self):
        n = self.scalar(T_UINT64)
        return bytes(self.take(n)).decode("utf-8", errors="surrogateescape")

    def value(self, t, depth=0):
        if t in _SCALAR_FMT:
            return self.scalar(t)
        if t == T_STRING:
            return self.string()
        if t == T_ARRAY:
            if depth > 8:
                raise GGUFError("arrays nested too deeply")
            et = self.scalar(T_UINT32)
            count = self.scalar(T_UINT64)
            if et in _SCALAR_NP:
                size = np.dtype(_SCALAR_NP[et]).itemsize
                raw = self.take(count * size)
                arr = np.frombuffer(raw, dtype=_SCALAR_NP[et]).copy()
                return arr.astype(bool) if et == T_BOOL else arr
            if et == T_STRING:
                return [self.string() for _ in range(count)]
            if et == T_ARRAY:
                return [self.value(T_ARRAY, depth + 1) for _ in range(count)]
            raise GGUFError("bad array element type %d" % et)
        raise GGUFError("bad metadata value type %d at offset %d" % (t, self.pos))


class GGUFFile:
    """A parsed GGUF file. Attributes: version, kv (dict key -> value),
    kv_types (key -> value type id), tensors (dict name -> TensorInfo, in file
    order), alignment, data_offset, path."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        buf = memoryview(self._mm)
        c = _Cursor(buf)
        if bytes(c.take(4)) != GGUF_MAGIC:
            raise GGUFError("%s: bad magic" % path)
        self.version = c.scalar(T_UINT32)
        if self.version not in (2, 3):
            raise GGUFError("%s: unsupported GGUF version %d" % (path, self.version))
        n_tensors = c.scalar(T_INT64)
        n_kv = c.scalar(T_INT64)
        if n_tensors < 0 or n_kv < 0:
            raise GGUFError("negative counts")
        self.kv = {}
        self.kv_types = {}
        for _ in range(n_kv):
            key = c.string()
            t = c.scalar(T_UINT32)
            if key in self.kv:
                raise GGUFError("duplicate key %s" % key)
            self.kv[key] = c.value(t)
            self.kv_types[key] = t
        self.tensors = {}
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.scalar(T_UINT32)
            if n_dims > 4:
                raise GGUFError("tensor %s: n_dims %d > 4" % (name, n_dims))
            ne = [c.scalar(T_INT64) for _ in range(n_dims)]
            if any(d < 0 for d in ne):
                raise GGUFError("tensor %s: negative dim" % name)
            type_id = c.scalar(T_UINT32)
            offset = c.scalar(T_UINT64)
            if name in self.tensors:
                raise GGUFError("duplicate tensor %s" % name)
            self.tensors[name] = TensorInfo(name, ne, type_id, offset)
        align = self.kv.get("general.alignment", DEFAULT_ALIGNMENT)
        if "general.alignment" in self.kv and self.kv_types["general.alignment"] != T_UINT32:
            raise GGUFError("general.alignment must be UINT32")
        if align == 0 or (align & (align - 1)) != 0:
            raise GGUFError("alignment %d not a power of two" % align)
        self.alignment = align
        pos = c.pos
        if n_tensors > 0:
            pos = (pos + align - 1) // align * align
        self.data_offset = pos
        fsize = len(self._mm)
        for ti in self.tensors.values():
            if ti.offset % align != 0:
                raise GGUFError("tensor %s: offset %d not aligned" % (ti.name, ti.offset))
            if self.data_offset + ti.offset + ti.nbytes > fsize:
                raise GGUFError("tensor %s: data beyond end of file" % ti.name)

    # -- metadata helpers --
    def arch(self):
        return self.kv.get("general.architecture")

    def get(self, key, default=None):
        return self.kv.get(key, default)

    # -- tensor data --
    def raw(self, name):
        """Raw bytes of a tensor as a uint8 numpy array (zero-copy view)."""
        ti = self.tensors[name]
        start = self.data_offset + ti.offset
        return np.frombuffer(self._mm, dtype=np.uint8, count=ti.nbytes, offset=start)

    def raw_rows(self, name, r0, r1):
        """Raw bytes of rows [r0, r1) of a tensor viewed as (rows, ne0)."""
        ti = self.tensors[name]
        _, blck, ts = GGML_TYPES[ti.type_id]
        row_bytes = ti.ne[0] // blck * ts
        start = self.data_offset + ti.offset + r0 * row_bytes
        return np.frombuffer(self._mm, dtype=np.uint8, count=(r1 - r0) * row_bytes, offset=start)

    def tensor(self, name):
        """Dequantised float32 array of shape reversed(ne)."""
        ti = self.tensors[name]
        flat = dequantize(self.raw(name), ti.type_id, ti.n_elements)
        return flat.reshape(ti.shape)

    def rows(self, name, r0, r1):
        """Dequantised rows [r0, r1) of a tensor viewed as a (rows, ne0) matrix."""
        ti = self.tensors[name]
        flat = dequantize(self.raw_rows(name, r0, r1), ti.type_id, (r1 - r0) * ti.ne[0])
        return flat.reshape(r1 - r0, ti.ne[0])

    def n_rows(self, name):
        ti = self.tensors[name]
        return ti.n_elements // ti.ne[0] if ti.ne[0] else 0

    def close(self):
        self._mm.close()


# ---------------------------------------------------------------- dequantisation
# Each function takes the raw bytes of whole blocks (uint8 array) and returns a
# float32 array with the blocks' elements in order. Formulas: FORMATS.md 2.3.

def _blocks(raw, dt):
    dt = np.dtype(dt)
    if raw.size % dt.itemsize != 0:
        raise GGUFError("byte count %d not a multiple of block size %d" % (raw.size, dt.itemsize))
    return np.frombuffer(raw, dtype=dt)


_Q8_0 = [("d", "<f2"), ("qs", "i1", 32)]
_Q4_0 = [("d", "<f2"), ("qs", "u1", 16)]
_Q4_K = [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qs", "u1", 128)]
_Q6_K = [("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<f2")]
_Q4_1 = [("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)]
_Q5_0 = [("d", "<f2"), ("qh", "<u4"), ("qs", "u1", 16)]
_Q5_1 = [("d", "<f2"), ("m", "<f2"), ("qh", "<u4"), ("qs", "u1", 16)]
_IQ4_NL = [("d", "<f2"), ("qs", "u1", 16)]
_MXFP4 = [("e", "u1"), ("qs", "u1", 16)]
_Q2_K = [("scales", "u1", 16), ("qs", "u1", 64), ("d", "<f2"), ("dmin", "<f2")]
_Q3_K = [("hmask", "u1", 32), ("qs", "u1", 64), ("scales", "u1", 12), ("d", "<f2")]
_Q5_K = [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qh", "u1", 32), ("qs", "u1", 128)]
_IQ4_XS = [("d", "<f2"), ("scales_h", "<u2"), ("scales_l", "u1", 4), ("qs", "u1", 128)]

# FORMATS.md 2.3 codebooks
KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                         dtype=np.float32)
KVALUES_FP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.float32)


def deq_f32(raw):
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def deq_f16(raw):
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


def deq_bf16(raw):
    u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return u.view(np.float32)


def deq_q8_0(raw):
    b = _blocks(raw, _Q8_0)
    d = b["d"].astype(np.float32)[:, None]
    return (b["qs"].astype(np.float32) * d).reshape(-1)


def deq_q4_0(raw):
    b = _blocks(raw, _Q4_0)
    d = b["d"].astype(np.float32)[:, None]
    qs = b["qs"]
    lo = (qs & 0x0F).astype(np.int8) - 8  # elements 0..15
    hi = (qs >> 4).astype(np.int8) - 8    # elements 16..31
    q = np.concatenate([lo, hi], axis=1).astype(np.float32)
    return (q * d).reshape(-1)


def _q4k_scale_min(scales):
    """scales: (nb, 12) uint8 -> (sc, mn) each (nb, 8) as float32 (FORMATS.md 2.3 Q4_K)."""
    q = scales.astype(np.uint8)
    sc = np.empty((q.shape[0], 8), dtype=np.uint8)
    mn = np.empty((q.shape[0], 8), dtype=np.uint8)
    sc[:, 0:4] = q[:, 0:4] & 63
    mn[:, 0:4] = q[:, 4:8] & 63
    sc[:, 4:8] = (q[:, 8:12] & 0x0F) | ((q[:, 0:4] >> 6) << 4)
    mn[:, 4:8] = (q[:, 8:12] >> 4) | ((q[:, 4:8] >> 6) << 4)
    return sc.astype(np.float32), mn.astype(np.float32)


def deq_q4_k(raw):
    b = _blocks(raw, _Q4_K)
    nb = b.shape[0]
    d = b["d"].astype(np.float32)[:, None]
    dmin = b["dmin"].astype(np.float32)[:, None]
    sc, mn = _q4k_scale_min(b["scales"])
    # element i: chunk c = i/64, r = i%64, byte = qs[32c + r%32],
    # nibble low for r<32 else high; sub-block j = i/32 = 2c + (r>=32)
    qs = b["qs"].reshape(nb, 4, 32)
    lo = qs & 0x0F
    hi = qs >> 4
    q = np.stack([lo, hi], axis=2).reshape(nb, 8, 32).astype(np.float32)  # (nb, sub-block, 32)
    out = (d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]
    return out.reshape(-1).astype(np.float32)


def deq_q6_k(raw):
    b = _blocks(raw, _Q6_K)
    nb = b.shape[0]
    d = b["d"].astype(np.float32)[:, None]
    ql = b["ql"].reshape(nb, 2, 64)       # [h][64]
    qh = b["qh"].reshape(nb, 2, 32)       # [h][32]
    # element i: h = i/128, r = i%128, g = r/32, l = r%32
    # lb = ql[64h + l + (g odd ? 32 : 0)], low4 = g<2 ? lo(lb) : hi(lb)
    # high2 = (qh[32h + l] >> 2g) & 3, q = (low4 | high2 << 4) - 32
    q = np.empty((nb, 2, 4, 32), dtype=np.int16)
    for g in range(4):
        lb = ql[:, :, 32:64] if (g & 1) else ql[:, :, 0:32]
        low4 = (lb & 0x0F) if g < 2 else (lb >> 4)
        high2 = (qh >> (2 * g)) & 3
        q[:, :, g, :] = (low4.astype(np.int16) | (high2.astype(np.int16) << 4)) - 32
    q = q.reshape(nb, 16, 16).astype(np.float32)  # 16 groups of 16 (i/16)
    sc = b["scales"].astype(np.float32)           # (nb, 16)
    out = (d * sc)[:, :, None] * q
    return out.reshape(-1).astype(np.float32)


def _split_nibbles(qs):
    """(nb, 16) bytes -> (nb, 32) values: low nibbles are elements 0..15, high 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _fifth_bits(qh):
    """(nb,) little-endian u32 -> (nb, 32) 0/16: bit k is the fifth bit of element k."""
    return (((qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1) << 4).astype(np.int32)


def deq_q4_1(raw):
    b = _blocks(raw, _Q4_1)
    d = b["d"].astype(np.float32)[:, None]
    m = b["m"].astype(np.float32)[:, None]
    q = _split_nibbles(b["qs"]).astype(np.float32)
    return (q * d + m).reshape(-1).astype(np.float32)


def deq_q5_0(raw):
    b = _blocks(raw, _Q5_0)
    d = b["d"].astype(np.float32)[:, None]
    q = (_split_nibbles(b["qs"]).astype(np.int32) | _fifth_bits(b["qh"])) - 16
    return (q.astype(np.float32) * d).reshape(-1)


def deq_q5_1(raw):
    b = _blocks(raw, _Q5_1)
    d = b["d"].astype(np.float32)[:, None]
    m = b["m"].astype(np.float32)[:, None]
    q = _split_nibbles(b["qs"]).astype(np.int32) | _fifth_bits(b["qh"])
    return (q.astype(np.float32) * d + m).reshape(-1).astype(np.float32)


def deq_iq4_nl(raw):
    b = _blocks(raw, _IQ4_NL)
    d = b["d"].astype(np.float32)[:, None]
    return (d * KVALUES_IQ4NL[_split_nibbles(b["qs"])]).reshape(-1)


def e8m0_half(e):
    """FORMATS.md 2.2 "half" E8M0: 2^(e - 128) as float32 (exact, e = 0, 1 subnormal)."""
    return np.ldexp(np.float32(1.0), e.astype(np.int32) - 128).astype(np.float32)


def deq_mxfp4(raw):
    b = _blocks(raw, _MXFP4)
    h = e8m0_half(b["e"])[:, None]
    with np.errstate(over="ignore"):  # e = 255 with |code| >= 8 is infinite (as in C)
        return (KVALUES_FP4[_split_nibbles(b["qs"])] * h).reshape(-1).astype(np.float32)


def _two_bit_planes(qs):
    """(nb, 64) bytes -> (nb, 256) values: element 128h + 32j + l = bits 2j of qs[32h + l]."""
    nb = qs.shape[0]
    q = qs.reshape(nb, 2, 1, 32) >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)
    return (q & 3).reshape(nb, 256)


def deq_q2_k(raw):
    b = _blocks(raw, _Q2_K)
    nb = b.shape[0]
    d = b["d"].astype(np.float32)[:, None]
    dmin = b["dmin"].astype(np.float32)[:, None]
    sc = (b["scales"] & 0x0F).astype(np.float32)    # (nb, 16), one per 16 elements
    mn = (b["scales"] >> 4).astype(np.float32)
    q = _two_bit_planes(b["qs"]).reshape(nb, 16, 16).astype(np.float32)
    out = (d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]
    return out.reshape(-1).astype(np.float32)


def _q3k_scales(scales):
    """(nb, 12) -> (nb, 16) signed scales: low4 of j from byte j (j<8, low nibble) or
    byte j-8 (high nibble); high2 from bits 2(j/4) of byte 8 + j%4; minus 32."""
    q = scales.astype(np.int32)
    j = np.arange(16)
    low4 = np.where(j < 8, q[:, j % 8] & 0x0F, q[:, j % 8] >> 4)
    high2 = (q[:, 8 + j % 4] >> (2 * (j // 4))) & 3
    return (low4 | (high2 << 4)) - 32


def deq_q3_k(raw):
    b = _blocks(raw, _Q3_K)
    nb = b.shape[0]
    d = b["d"].astype(np.float32)[:, None]
    sc = _q3k_scales(b["scales"]).astype(np.float32)
    low2 = _two_bit_planes(b["qs"]).astype(np.int32)
    # high bit of element 128h + 32j + l: bit 4h + j of hmask[l]; cleared subtracts 4
    hb = (b["hmask"][:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1   # (nb, 8, 32)
    q = low2 - 4 * (1 - hb.reshape(nb, 256).astype(np.int32))
    out = (d * sc)[:, :, None] * q.reshape(nb, 16, 16).astype(np.float32)
    return out.reshape(-1).astype(np.float32)


def deq_q5_k(raw):
    b = _blocks(raw, _Q5_K)
    nb = b.shape[0]
    d = b["d"].astype(np.float32)[:, None]
    dmin = b["dmin"].astype(np.float32)[:, None]
    sc, mn = _q4k_scale_min(b["scales"])
    qs = b["qs"].reshape(nb, 4, 32)
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(nb, 8, 32).astype(np.int32)
    # fifth bit of element i: bit i/32 of qh[i % 32]
    hb = (b["qh"][:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1   # (nb, 8, 32)
    q = (q | (hb.astype(np.int32) << 4)).astype(np.float32)
    out = (d * sc)[:, :, None] * q - (dmin * mn)[:, :, None]
    return out.reshape(-1).astype(np.float32)


def deq_iq4_xs(raw):
    b = _blocks(raw, _IQ4_XS)
    nb = b.shape[0]
    d = b["d"].astype(np.float32)[:, None]
    sb = np.arange(8)
    ls = ((b["scales_l"][:, sb // 2].astype(np.int32) >> (4 * (sb % 2))) & 0x0F) | \
        (((b["scales_h"][:, None].astype(np.int32) >> (2 * sb)) & 3) << 4)        # (nb, 8)
    dl = d * (ls - 32).astype(np.float32)
    qs = b["qs"].reshape(nb * 8, 16)
    k = KVALUES_IQ4NL[_split_nibbles(qs)].reshape(nb, 8, 32)
    return (dl[:, :, None] * k).reshape(-1).astype(np.float32)


DEQUANT = {
    0: deq_f32,
    1: deq_f16,
    30: deq_bf16,
    8: deq_q8_0,
    2: deq_q4_0,
    12: deq_q4_k,
    14: deq_q6_k,
    3: deq_q4_1,
    6: deq_q5_0,
    7: deq_q5_1,
    20: deq_iq4_nl,
    39: deq_mxfp4,
    10: deq_q2_k,
    11: deq_q3_k,
    13: deq_q5_k,
    23: deq_iq4_xs,
}


def dequantize(raw, type_id, n_elements=None):
    if type_id not in DEQUANT:
        raise GGUFError("no dequantiser for ggml type %d (%s)" % (
            type_id, GGML_TYPES.get(type_id, ("?",))[0]))
    out = DEQUANT[type_id](raw)
    if n_elements is not None and out.size != n_elements:
        raise GGUFError("dequantised %d elements, expected %d" % (out.size, n_elements))
    return out


# ---------------------------------------------------------------- self-test
# Scalar, element-by-element transcriptions of the FORMATS.md 2.3 formulas,
# deliberately written differently from the vectorised code above, used only to
# cross-check it on random blocks (run: gguf_ref.py --selftest).

def _f16(b, o):
    return float(np.frombuffer(bytes(b[o:o + 2]), dtype="<f2")[0])


def _scalar_block(tname, b):
    lo = lambda x: x & 0x0F  # noqa: E731
    hi = lambda x: x >> 4    # noqa: E731
    out = []
    if tname == "Q8_0":
        d = _f16(b, 0)
        for i in range(32):
            q = b[2 + i] - 256 if b[2 + i] > 127 else b[2 + i]
            out.append(np.float32(np.float32(q) * np.float32(d)))
    elif tname == "Q4_0":
        d = _f16(b, 0)
        qs = b[2:18]
        vals = [0.0] * 32
        for j in range(16):
            vals[j] = np.float32(lo(qs[j]) - 8) * np.float32(d)
            vals[j + 16] = np.float32(hi(qs[j]) - 8) * np.float32(d)
        out = vals
    elif tname == "Q4_K":
        d = np.float32(_f16(b, 0))
        dmin = np.float32(_f16(b, 2))
        q = b[4:16]
        qs = b[16:144]
        for i in range(256):
            j = i // 32
            if j < 4:
                sc, mn = q[j] & 63, q[j + 4] & 63
            else:
                sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)
                mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4)
            c, r = i // 64, i % 64
            byte = qs[32 * c + r % 32]
            nib = lo(byte) if r < 32 else hi(byte)
            out.append(np.float32(d * np.float32(sc)) * np.float32(nib) - np.float32(dmin * np.float32(mn)))
    elif tname == "Q6_K":
        ql, qh = b[0:128], b[128:192]
        scales = [s - 256 if s > 127 else s for s in b[192:208]]
        d = np.float32(_f16(b, 208))
        for i in range(256):
            h, r = i // 128, i % 128
            g, l_ = r // 32, r % 32
            lb = ql[64 * h + l_ + (32 if g % 2 else 0)]
            low4 = lo(lb) if g < 2 else hi(lb)
            high2 = (qh[32 * h + l_] >> (2 * g)) & 3
            qv = (low4 | (high2 << 4)) - 32
            out.append(np.float32(d * np.float32(scales[i // 16])) * np.float32(qv))
    elif tname in ("Q4_1", "Q5_0", "Q5_1"):
        # FORMATS 2.3: d [, m] [, qh u32 LE], qs[16]; element j / j+16 from lo / hi of qs[j]
        d = np.float32(_f16(b, 0))
        m = np.float32(_f16(b, 2)) if tname != "Q5_0" else None
        o = 2 if tname == "Q5_0" else 4
        qh = 0
        if tname != "Q4_1":
            qh = b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)
            o += 4
        qs = b[o:o + 16]
        vals = [0.0] * 32
        for k in range(32):
            nib = lo(qs[k]) if k < 16 else hi(qs[k - 16])
            if tname != "Q4_1":
                nib |= ((qh >> k) & 1) << 4
            if tname == "Q5_0":
                vals[k] = np.float32(nib - 16) * d
            else:
                vals[k] = np.float32(np.float32(nib) * d) + m
        out = vals
    elif tname in ("IQ4_NL", "MXFP4"):
        if tname == "IQ4_NL":
            scale, book, qs = np.float32(_f16(b, 0)), KVALUES_IQ4NL, b[2:18]
        else:  # 2^(e-128) written as a power of two in float64, exact
            scale, book, qs = np.float32(2.0 ** (b[0] - 128)), KVALUES_FP4, b[1:17]
        with np.errstate(over="ignore"):
            out = [np.float32(scale * np.float32(book[lo(qs[k]) if k < 16 else hi(qs[k - 16])]))
                   for k in range(32)]
    elif tname in ("Q2_K", "Q3_K"):
        if tname == "Q2_K":
            scales, qs = b[0:16], b[16:80]
            d, dmin = np.float32(_f16(b, 80)), np.float32(_f16(b, 82))
        else:
            hmask, qs, sc12 = b[0:32], b[32:96], b[96:108]
            d = np.float32(_f16(b, 108))
        for i in range(256):
            h, r = i // 128, i % 128
            j, l_ = r // 32, r % 32
            q2 = (qs[32 * h + l_] >> (2 * j)) & 3
            g = i // 16
            if tname == "Q2_K":
                out.append(np.float32(np.float32(d * np.float32(lo(scales[g]))) * np.float32(q2))
                           - np.float32(dmin * np.float32(hi(scales[g]))))
            else:
                low4 = lo(sc12[g]) if g < 8 else hi(sc12[g - 8])
                high2 = (sc12[8 + g % 4] >> (2 * (g // 4))) & 3
                sj = (low4 | (high2 << 4)) - 32
                qv = q2 - (0 if (hmask[l_] >> (4 * h + j)) & 1 else 4)
                out.append(np.float32(d * np.float32(sj)) * np.float32(qv))
    elif tname == "Q5_K":
        d, dmin = np.float32(_f16(b, 0)), np.float32(_f16(b, 2))
        q, qh, qs = b[4:16], b[16:48], b[48:176]
        for i in range(256):
            j = i // 32
            if j < 4:
                sc, mn = q[j] & 63, q[j + 4] & 63
            else:
                sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)
                mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4)
            c, r = i // 64, i % 64
            byte = qs[32 * c + r % 32]
            nib = (lo(byte) if r < 32 else hi(byte)) + (16 if (qh[i % 32] >> j) & 1 else 0)
            out.append(np.float32(d * np.float32(sc)) * np.float32(nib) - np.float32(dmin * np.float32(mn)))
    elif tname == "IQ4_XS":
        d = np.float32(_f16(b, 0))
        sh = b[2] | (b[3] << 8)
        sl, qs = b[4:8], b[8:136]
        for i in range(256):
            sb, t = i // 32, i % 32
            ls = ((sl[sb // 2] >> (4 * (sb % 2))) & 0xF) | (((sh >> (2 * sb)) & 3) << 4)
            byte = qs[16 * sb + t % 16]
            k = KVALUES_IQ4NL[lo(byte) if t < 16 else hi(byte)]
            out.append(np.float32(d * np.float32(ls - 32)) * np.float32(k))
    else:
        raise ValueError(tname)
    return np.array(out, dtype=np.float32)


def _random_blocks(tname, nb, rng):
    _, _, ts = GGML_TYPES[TYPE_ID[tname]]
    raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
    # put finite, moderately sized fp16 values in the scale fields
    def put_f16(col):
        v = (rng.standard_normal(nb) * 0.05).astype("<f2").view(np.uint8).reshape(nb, 2)
        raw[:, col:col + 2] = v
    if tname in ("Q8_0", "Q4_0", "Q4_K", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "Q5_K", "IQ4_XS"):
        put_f16(0)
    if tname in ("Q4_K", "Q4_1", "Q5_1", "Q5_K"):
        put_f16(2)
    if tname == "Q6_K":
        put_f16(208)
    if tname == "Q2_K":
        put_f16(80)
        put_f16(82)
    if tname == "Q3_K":
        put_f16(108)
    # MXFP4: every exponent byte 0..255 is a valid, finite scale
    return raw


def _write_test_gguf(path, version):
    """A small GGUF with every metadata type and a few tensors (for the parser test)."""
    rng = np.random.default_rng(7)
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    kvs = [
        ("u8", T_UINT8, struct.pack("<B", 200)), ("i8", T_INT8, struct.pack("<b", -5)),
        ("u16", T_UINT16, struct.pack("<H", 60000)), ("i16", T_INT16, struct.pack("<h", -300)),
        ("u32", T_UINT32, struct.pack("<I", 4000000000)), ("i32", T_INT32, struct.pack("<i", -7)),
        ("f32", T_FLOAT32, struct.pack("<f", 1.5)), ("b", T_BOOL, struct.pack("<B", 1)),
        ("str", T_STRING, s("h\u00e9llo")), ("u64", T_UINT64, struct.pack("<Q", 2 ** 63 + 1)),
        ("i64", T_INT64, struct.pack("<q", -2 ** 40)), ("f64", T_FLOAT64, struct.pack("<d", 0.1)),
        ("arr_i32", T_ARRAY, struct.pack("<IQ", T_INT32, 3) + struct.pack("<3i", 1, -2, 3)),
        ("arr_str", T_ARRAY, struct.pack("<IQ", T_STRING, 2) + s("a") + s("bc")),
        ("arr_arr", T_ARRAY, struct.pack("<IQ", T_ARRAY, 2) + struct.pack("<IQ", T_UINT8, 1) + b"\x09"
         + struct.pack("<IQ", T_FLOAT32, 1) + struct.pack("<f", 2.0)),
        ("general.alignment", T_UINT32, struct.pack("<I", 64)),
    ]
    tens = [("a", [32, 2], 8), ("b", [256, 1], 12), ("c", [5], 0), ("d", [3, 2], 30)]
    blobs = []
    for name, ne, tid in tens:
        _, blck, ts = GGML_TYPES[tid]
        nrows = int(np.prod(ne)) // ne[0]
        if tid in (8, 12):
            raw = _random_blocks(GGML_TYPES[tid][0], ne[0] // blck * nrows, rng).tobytes()
        else:
            raw = rng.integers(0, 256, size=ne[0] * nrows * ts, dtype=np.uint8).tobytes()
            if tid == 0:
                raw = np.arange(5, dtype="<f4").tobytes()
            if tid == 30:
                raw = np.array([0x3F80, 0xC000, 0x4040, 0, 0x8000, 0x3E80], dtype="<u2").tobytes()
        blobs.append(raw)
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tens), len(kvs)))
    for k, t, v in kvs:
        out += s(k) + struct.pack("<I", t) + v
    off = 0
    offs = []
    for (name, ne, tid), raw in zip(tens, blobs):
        out += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", tid, off)
        offs.append(off)
        off = (off + len(raw) + 63) // 64 * 64
    while len(out) % 64:
        out += b"\0"
    data_offset = len(out)
    for raw, o in zip(blobs, offs):
        while len(out) < data_offset + o:
            out += b"\0"
        out += raw
    with open(path, "wb") as f:
        f.write(out)
    return data_offset, blobs


def selftest():
    import tempfile
    rng = np.random.default_rng(1234)
    fails = 0
    for tname in ("Q8_0", "Q4_0", "Q4_K", "Q6_K", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "MXFP4",
                  "Q2_K", "Q3_K", "Q5_K", "IQ4_XS"):
        nb = 300
        raw = _random_blocks(tname, nb, rng)
        vec = dequantize(raw.reshape(-1), TYPE_ID[tname])
        ref = np.concatenate([_scalar_block(tname, list(raw[i])) for i in range(nb)])
        ok = vec.shape == ref.shape and np.array_equal(vec, ref)
        fails += not ok
        print("%s dequant %s vs scalar transcription (%d blocks)" % ("ok" if ok else "FAIL", tname, nb))
    # scalar types
    v = np.array([1.0, -2.5, 65504.0, 6.1e-5, 0.0], dtype=np.float32)
    ok = np.array_equal(deq_f16(v.astype("<f2").view(np.uint8)), v.astype(np.float16).astype(np.float32))
    bf = np.array([0x3F80, 0xC020, 0x7F7F], dtype="<u2")
    ok &= np.array_equal(deq_bf16(bf.view(np.uint8)), np.array([1.0, -2.5, 3.3895314e38], dtype=np.float32))
    fails += not ok
    print("%s dequant F16/BF16 known values" % ("ok" if ok else "FAIL"))
    for version in (2, 3):
        with tempfile.TemporaryDirectory() as td:
            p = os.path.join(td, "t.gguf")
            data_offset, blobs = _write_test_gguf(p, version)
            g = GGUFFile(p)
            kv = g.kv
            ok = (g.version == version and len(g.kv) == 16 and len(g.tensors) == 4
                  and g.data_offset == data_offset and g.alignment == 64
                  and kv["u8"] == 200 and kv["i8"] == -5 and kv["u16"] == 60000 and kv["i16"] == -300
                  and kv["u32"] == 4000000000 and kv["i32"] == -7 and kv["f32"] == 1.5 and kv["b"] is True
                  and kv["str"] == "h\u00e9llo" and kv["u64"] == 2 ** 63 + 1 and kv["i64"] == -2 ** 40
                  and kv["f64"] == 0.1 and list(kv["arr_i32"]) == [1, -2, 3] and kv["arr_str"] == ["a", "bc"]
                  and list(kv["arr_arr"][0]) == [9] and list(kv["arr_arr"][1]) == [2.0]
                  and g.tensor("a").shape == (2, 32) and g.tensor("b").shape == (1, 256)
                  and list(g.tensor("c")) == [0, 1, 2, 3, 4]
                  and list(g.tensor("d").reshape(-1)) == [1.0, -2.0, 3.0, 0.0, -0.0, 0.25]
                  and np.array_equal(g.tensor("a").reshape(-1), deq_q8_0(np.frombuffer(blobs[0], np.uint8)))
                  and np.array_equal(g.rows("a", 1, 2)[0], g.tensor("a")[1]))
            g.close()
            fails += not ok
            print("%s parse synthetic GGUF v%d (all metadata types, nested array, alignment 64)" % (
                "ok" if ok else "FAIL", version))
    print("gguf_ref selftest: %d failed" % fails)
    return 1 if fails else 0


def _main(argv):
    import sys
    if len(argv) < 2:
        print("usage: gguf_ref.py FILE.gguf | --selftest", file=sys.stderr)
        return 2
    if argv[1] == "--selftest":
        return selftest()
    g = GGUFFile(argv[1])
    print("version %d, %d kv, %d tensors, alignment %d, data offset %d" % (
        g.version, len(g.kv), len(g.tensors), g.alignment, g.data_offset))
    for k, v in g.kv.items():
        if isinstance(v, (list, np.ndarray)) and len(v) > 8:
            s = "[%d items] %s ..." % (len(v), list(v[:4]))
        else:
            s = repr(v)
        print("  %-45s %s" % (k, s))
    for ti in g.tensors.values():
        print("  %-32s %-5s ne=%s off=%d" % (ti.name, ti.type_name, ti.ne, ti.offset))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(_main(sys.argv))
