"""Rewrites a GGUF file without some metadata keys (tests: a file as llama.cpp's converter writes
it, without llmkit.tokenizer.model). Usage: gguf_strip.py IN OUT KEY..."""
import struct, sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def skip_value(b, at, t):
    if t == 8:
        (n,) = struct.unpack_from("<Q", b, at)
        return at + 8 + n
    if t == 9:
        et, n = struct.unpack_from("<IQ", b, at)
        at += 12
        if et == 8:
            for _ in range(n):
                (m,) = struct.unpack_from("<Q", b, at)
                at += 8 + m
            return at
        return at + n * SIZES[et]
    return at + SIZES[t]


src, dst, drop = sys.argv[1], sys.argv[2], set(sys.argv[3:])
b = open(src, "rb").read()
magic, version, n_tensors, n_kv = struct.unpack_from("<IIQQ", b, 0)
at, kept = 24, []
for _ in range(n_kv):
    start = at
    (n,) = struct.unpack_from("<Q", b, at)
    key = b[at + 8:at + 8 + n].decode()
    at += 8 + n
    (t,) = struct.unpack_from("<I", b, at)
    at = skip_value(b, at + 4, t)
    if key not in drop:
        kept.append(b[start:at])
infos_start = at
for _ in range(n_tensors):
    (n,) = struct.unpack_from("<Q", b, at)
    at += 8 + n
    (nd,) = struct.unpack_from("<I", b, at)
    at += 4 + 8 * nd + 4 + 8
infos = b[infos_start:at]
data = b[(at + 31) // 32 * 32:]
head = struct.pack("<IIQQ", magic, version, n_tensors, len(kept)) + b"".join(kept) + infos
head += b"\0" * ((32 - len(head) % 32) % 32)
open(dst, "wb").write(head + data)
