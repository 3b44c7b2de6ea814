#!/usr/bin/env python3
"""make_corpus.py - writes the seed corpus of tests/fuzz/fuzz_gguf.c.

Builds a few small valid GGUF files (each < 4 KiB) byte by byte with the
struct module, independently of mica's writer, following FORMATS.md section 1:
  minimal.gguf          header only (v3, no kv, no tensors)
  kv-all-types.gguf     every metadata type, string arrays, nested arrays
  tensors-align64.gguf  general.alignment = 64, F32/Q8_0/Q4_K/zero-size tensors
  vocab-v2.gguf         a GGUF v2 vocabulary-style file (tokens, scores, types)
Usage: tests/fuzz/make_corpus.py [OUTDIR]   (default: tests/fuzz/corpus)
"""
import os
import struct
import sys

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
SCALAR = {T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
          T_F32: "<f", T_BOOL: "<B", T_U64: "<Q", T_I64: "<q", T_F64: "<d"}
# ggml type id -> (block size, bytes per block)
DTYPE = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144)}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    """Serialised value of type t (without the type field)."""
    if t == T_STR:
        return gstr(v)
    if t == T_ARR:
        elem, items = v
        out = struct.pack("<IQ", elem, len(items))
        return out + b"".join(value(elem, x) for x in items)
    return struct.pack(SCALAR[t], v)


def gguf(kvs, tensors=(), version=3, align=32):
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gstr(key) + struct.pack("<I", t) + value(t, v)
    offs, cur = [], 0
    for name, ne, dtype, data in tensors:
        cur = (cur + align - 1) // align * align
        offs.append(cur)
        cur += len(data)
    for (name, ne, dtype, data), off in zip(tensors, offs):
        out += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", dtype, off)
    if tensors:
        out += b"\0" * (-len(out) % align)
        base = len(out)
        for (name, ne, dtype, data), off in zip(tensors, offs):
            out += b"\0" * (base + off - len(out)) + data
    return out


def tensor(name, ne, dtype, seed):
    blck, size = DTYPE[dtype]
    n = 1
    for x in ne:
        n *= x
    nbytes = n // blck * size
    return (name, ne, dtype, bytes((seed + 7 * i) & 0xFF for i in range(nbytes)))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(outdir, exist_ok=True)
    seeds = {
        "minimal.gguf": gguf([]),
        "kv-all-types.gguf": gguf([
            ("general.architecture", T_STR, "llama"),
            ("u8", T_U8, 200), ("i8", T_I8, -3), ("u16", T_U16, 60000), ("i16", T_I16, -300),
            ("u32", T_U32, 4000000000), ("i32", T_I32, -5), ("f32", T_F32, 1.5), ("bool", T_BOOL, 1),
            ("u64", T_U64, 2**63 + 1), ("i64", T_I64, -2**40), ("f64", T_F64, 3.25),
            ("strs", T_ARR, (T_STR, ["<s>", "", "h\u00e9llo", "x"])),
            ("f32s", T_ARR, (T_F32, [0.5, -1.0, 2.0])),
            ("empty", T_ARR, (T_U32, [])),
            ("nested", T_ARR, (T_ARR, [(T_U32, [7, 9]), (T_STR, ["a", "bc"]),
                                       (T_ARR, [(T_I16, [1, -1])])])),
        ]),
        "tensors-align64.gguf": gguf([
            ("general.architecture", T_STR, "llama"),
            ("general.alignment", T_U32, 64),
        ], [
            tensor("w.f32", [4, 2], 0, 1),
            tensor("w.q8_0", [32], 8, 2),
            tensor("w.q4_k", [256, 1], 12, 3),
            tensor("w.empty", [0, 3], 1, 4),
        ], align=64),
        "vocab-v2.gguf": gguf([
            ("tokenizer.ggml.model", T_STR, "llama"),
            ("tokenizer.ggml.tokens", T_ARR, (T_STR, ["<unk>", "<s>", "</s>"] + [chr(97 + i) for i in range(17)])),
            ("tokenizer.ggml.scores", T_ARR, (T_F32, [float(-i) for i in range(20)])),
            ("tokenizer.ggml.token_type", T_ARR, (T_I32, [2, 3, 3] + [1] * 17)),
            ("tokenizer.ggml.bos_token_id", T_U32, 1),
        ], [tensor("token_embd.weight", [8, 20], 1, 5)], version=2),
    }
    for name, data in seeds.items():
        assert len(data) < 4096, name
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
