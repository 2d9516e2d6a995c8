#!/usr/bin/env python3
"""Trims a reference-activation safetensors file (../shared/testdata/reference/forward)
to what qcal's tests compare, keeping tests/data under its size budget.

Kept: input ids, logits and hidden states of A and B; every linear's input and output
(of B only with --b-only-linears); the padded batch AB's ids and mask, and its logits at
valid positions only, as "AB.logits.valid" [n_valid, V] in (row, position) order.
Dropped: *_absmax (derivable from the kept inputs/outputs) and lm_head.output (equal to
the logits). Standard library only.
usage: trim_reference.py SRC DST [--b-only-linears]
"""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def main():
    src, dst = sys.argv[1], sys.argv[2]
    b_only = "--b-only-linears" in sys.argv[3:]
    header, data = read(src)
    meta = header.pop("__metadata__", {})
    out = []  # (name, dtype, shape, bytes)
    for name, t in header.items():
        lo, hi = t["data_offsets"]
        raw = data[lo:hi]
        if name.endswith("_absmax") or name.endswith(".linear.lm_head.output"):
            continue
        if b_only and name.startswith("A.linear."):
            continue
        if name == "AB.logits":
            continue
        out.append((name, t["dtype"], t["shape"], raw))
    # AB logits at valid positions.
    mask_t = header["AB.attention_mask"]
    lo, hi = mask_t["data_offsets"]
    mask = struct.unpack("<%dq" % ((hi - lo) // 8), data[lo:hi])
    lg = header["AB.logits"]
    b, t, v = lg["shape"]
    lo, _ = lg["data_offsets"]
    rows = []
    for i in range(b * t):
        if mask[i] == 1:
            rows.append(data[lo + i * v * 4: lo + (i + 1) * v * 4])
    out.append(("AB.logits.valid", "F32", [len(rows), v], b"".join(rows)))

    new_header = {"__metadata__": meta}
    off = 0
    for name, dt, shape, raw in out:
        new_header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    h = json.dumps(new_header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, raw in out:
            f.write(raw)


if __name__ == "__main__":
    main()
