"""A safetensors reader written only from the format's specification (no safetensors library): 8-byte
little-endian header length N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets}, "__metadata__":
{str: str}}, then the byte buffer; offsets are relative to the buffer, contiguous, without holes or
overlaps, little-endian row-major data. Returns (tensors as torch tensors, metadata)."""
import json
import struct

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def read(path):
    raw = open(path, "rb").read()
    assert len(raw) >= 8, "shorter than the header length"
    (n,) = struct.unpack("<Q", raw[:8])
    assert 8 + n <= len(raw), "header runs past the end of the file"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    buf = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()), "metadata must map str -> str"
    tensors, end = {}, 0
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = t["data_offsets"]
        assert b == end, f"{name}: hole or overlap at {b} (expected {end})"
        numel = 1
        for d in t["shape"]:
            numel *= d
        assert e - b == numel * SIZES[t["dtype"]], f"{name}: {e - b} bytes for shape {t['shape']} {t['dtype']}"
        tensors[name] = torch.frombuffer(bytearray(buf[b:e]), dtype=DTYPES[t["dtype"]]).reshape(t["shape"]) \
            if numel else torch.empty(t["shape"], dtype=DTYPES[t["dtype"]])
        end = e
    assert end == len(buf), f"{len(buf) - end} bytes after the last tensor"
    return tensors, meta
