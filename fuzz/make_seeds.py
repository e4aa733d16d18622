#!/usr/bin/env python3
"""Writes the hand-made seeds of the `gguf` and `safetensors` fuzz targets into
corpus/<target>/ (a few KB each). Standard library only: the files are packed with
`struct`, so the seeds do not depend on llama.cpp or the safetensors package.

    python3 fuzz/make_seeds.py

The GGUF seeds are complete tiny Llamas that `patchrec::gguf::convert` accepts (hidden
8, one layer, 2 heads, 1 KV head, a byte-level BPE vocabulary with ChatML or Llama-3
control tokens), with tensors in F32, F16, Q8_0 and Q4_0, so that fuzzing starts from
inputs that reach the tensor and tokenizer code, not only the header.
"""
import json
import math
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# GGUF value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
# ggml tensor types.
T_F32, T_F16, T_Q4_0, T_Q8_0 = 0, 1, 2, 8


def gguf_string(s, version):
    b = s.encode()
    return struct.pack("<I" if version == 1 else "<Q", len(b)) + b


def gguf_value(kind, v, version):
    if kind == STRING:
        return gguf_string(v, version)
    if kind == ARRAY:
        inner, items = v
        out = struct.pack("<I", inner)
        out += struct.pack("<I" if version == 1 else "<Q", len(items))
        for x in items:
            out += gguf_value(inner, x, version)
        return out
    fmt = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i",
           F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}[kind]
    return struct.pack(fmt, v)


def values(n, seed):
    """Small deterministic weights in (-0.5, 0.5)."""
    return [math.sin(seed * 7.1 + i * 0.37) * 0.5 for i in range(n)]


def encode(ty, xs):
    if ty == T_F32:
        return struct.pack("<%df" % len(xs), *xs)
    if ty == T_F16:
        return struct.pack("<%de" % len(xs), *xs)
    blocks = b""
    for at in range(0, len(xs), 32):
        block = xs[at:at + 32]
        amax = max(abs(x) for x in block) or 1.0
        if ty == T_Q8_0:
            d = amax / 127
            q = [max(-127, min(127, round(x / d))) for x in block]
            blocks += struct.pack("<e32b", d, *q)
        else:  # Q4_0: 16 bytes of nibbles, low nibbles first, values q - 8.
            d = amax / 8
            q = [max(0, min(15, round(x / d) + 8)) for x in block]
            blocks += struct.pack("<e", d) + bytes(q[i] | q[i + 16] << 4 for i in range(16))
    return blocks


def gguf(version, chat, pre, quant, with_output, extra_kv=()):
    hidden, ff, heads, kv_heads = 8, 32, 2, 1
    hd = hidden // heads
    control = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] if chat == "chatml" else \
        ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    # Byte-level BPE symbols: printable ASCII, and the stand-ins for space and newline.
    chars = [chr(c) for c in range(33, 127)] + ["\u0120", "\u010a"]
    tokens = control + chars
    types = [3] * len(control) + [1] * len(chars)
    merges = ["\u0120 t", "h e", "i n"]
    tokens += ["\u0120t", "he", "in"]
    types += [1, 1, 1]
    vocab = len(tokens)
    kv = [
        ("general.architecture", STRING, "llama"),
        ("general.alignment", U32, 32),
        ("llama.context_length", U32, 64),
        ("llama.embedding_length", U32, hidden),
        ("llama.block_count", U32, 1),
        ("llama.feed_forward_length", U32, ff),
        ("llama.attention.head_count", U32, heads),
        ("llama.attention.head_count_kv", U32, kv_heads),
        ("llama.rope.dimension_count", U32, hd),
        ("llama.rope.freq_base", F32, 10000.0),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("tokenizer.ggml.model", STRING, "gpt2"),
        ("tokenizer.ggml.pre", STRING, pre),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
        ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
        ("tokenizer.ggml.merges", ARRAY, (STRING, merges)),
        ("tokenizer.ggml.bos_token_id", U32, 0),
        ("tokenizer.ggml.eos_token_id", U32, 1),
        ("tokenizer.chat_template", STRING, "{% for m in messages %}{{ m.content }}{% endfor %}"),
    ] + list(extra_kv)
    # (name, [rows, cols] as Hugging Face writes them, type); GGUF stores dims reversed.
    tensors = [
        ("token_embd.weight", [vocab, hidden], T_F16),
        ("output_norm.weight", [hidden], T_F32),
        ("blk.0.attn_norm.weight", [hidden], T_F32),
        ("blk.0.ffn_norm.weight", [hidden], T_F32),
        ("blk.0.attn_q.weight", [heads * hd, hidden], T_F16),
        ("blk.0.attn_k.weight", [kv_heads * hd, hidden], T_F32),
        ("blk.0.attn_v.weight", [kv_heads * hd, hidden], T_F16),
        ("blk.0.attn_output.weight", [hidden, heads * hd], T_F32),
        ("blk.0.ffn_gate.weight", [ff, hidden], T_F16),
        ("blk.0.ffn_up.weight", [ff, hidden], T_F32),
        ("blk.0.ffn_down.weight", [hidden, ff], quant),
    ]
    if with_output:
        tensors.append(("output.weight", [vocab, hidden], T_F16))
    out = b"GGUF" + struct.pack("<I", version)
    count = "<I" if version == 1 else "<Q"
    out += struct.pack(count, len(tensors)) + struct.pack(count, len(kv))
    for key, kind, v in kv:
        out += gguf_string(key, version) + struct.pack("<I", kind) + gguf_value(kind, v, version)
    data = b""
    infos = b""
    for i, (name, shape, ty) in enumerate(tensors):
        n = 1
        for s in shape:
            n *= s
        norm = name.endswith("norm.weight")
        blob = encode(ty, [1.0] * n if norm else values(n, i + 1))
        infos += gguf_string(name, version) + struct.pack("<I", len(shape))
        for s in reversed(shape):
            infos += struct.pack("<I" if version == 1 else "<Q", s)
        infos += struct.pack("<IQ", ty, len(data))
        data += blob + b"\0" * (-len(blob) % 32)
    out += infos
    out += b"\0" * (-len(out) % 32)
    return out + data


DTYPES = {"F32": ("f", 4), "F16": ("e", 2), "I64": ("q", 8), "U8": ("B", 1), "I32": ("i", 4)}


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, values or raw bytes)]; BF16 is written from the
    f32's top half."""
    header, blobs, at = {}, b"", 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, xs in tensors:
        if isinstance(xs, bytes):
            blob = xs
        elif dtype == "BF16":
            blob = b"".join(struct.pack("<f", x)[2:] for x in xs)
        else:
            fmt, _ = DTYPES[dtype]
            blob = struct.pack("<%d%s" % (len(xs), fmt), *xs)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(blob)]}
        blobs += blob
        at += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blobs


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    assert len(data) <= 16 * 1024, (name, len(data))
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
    print("%s/%s: %d bytes" % (target, name, len(data)))


write("gguf", "chatml-v3.gguf", gguf(3, "chatml", "smollm", T_Q8_0, False))
write("gguf", "llama3-v2.gguf", gguf(2, "llama3", "llama-bpe", T_Q4_0, True))
write("gguf", "chatml-v1.gguf", gguf(1, "chatml", "default", T_Q8_0, False,
                                     [("llama.vocab_size", U64, 102)]))
write("safetensors", "two-f32.safetensors", safetensors([
    ("model.embed_tokens.weight", "F32", [4, 8], values(32, 1)),
    ("model.norm.weight", "F32", [8], [1.0] * 8),
], {"format": "pt"}))
write("safetensors", "mixed-dtypes.safetensors", safetensors([
    ("a.f16", "F16", [2, 3], values(6, 2)),
    ("b.bf16", "BF16", [3, 2], values(6, 3)),
    ("c.i64", "I64", [2], [7, -1]),
    ("d.u8", "U8", [4], [0, 1, 2, 255]),
    ("e.scalar", "F32", [], [0.5]),
    ("f.empty", "F32", [0, 4], []),
]))
write("safetensors", "other-dtypes.safetensors", safetensors([
    ("a.f64", "F64", [2], bytes(struct.pack("<2d", 0.25, -2.0))),
    ("b.f8_e4m3", "F8_E4M3", [4], bytes([0x38, 0xb8, 0x00, 0x7e])),
    ("c.f8_e5m2", "F8_E5M2", [2], bytes([0x3c, 0x00])),
    ("d.f8_e8m0", "F8_E8M0", [2], bytes([0x7f, 0x80])),
    ("e.f4", "F4", [4], bytes([0x12, 0x34])),
    ("f.f6_e2m3", "F6_E2M3", [4], bytes([1, 2, 3])),
    ("g.f6_e3m2", "F6_E3M2", [4], bytes([4, 5, 6])),
    ("h.u16", "U16", [2], bytes(struct.pack("<2H", 1, 65535))),
    ("i.u32", "U32", [1], bytes(struct.pack("<I", 7))),
    ("j.i16", "I16", [2], bytes(struct.pack("<2h", -3, 3))),
    ("k.i8", "I8", [2], bytes([0x80, 0x7f])),
    ("l.bool", "BOOL", [2], bytes([0, 1])),
    ("m.u64", "U64", [1], bytes(struct.pack("<Q", 9))),
]))
