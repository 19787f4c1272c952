"""A model's identity from its weights: a digest of the tensors in its safetensors files, torch-free.

Two folders holding the same weights get the same digest (whatever their path, file metadata or the
order of tensors in the file); retrained or replaced weights get another. The teacher cache is keyed
by it, and so is everything that must not mix two models' embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

from .errors import Siglip2Error

_READ = 1 << 22  # bytes per read: bounded memory whatever the tensor's size


def _tensor_table(path: Path) -> tuple[int, dict]:
    """Where a safetensors file's data starts, and its header: {name: {dtype, shape, data_offsets}}."""
    with open(path, "rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        if length > 100 * 2**20:
            raise Siglip2Error(f"'{path}' is not a safetensors file (header of {length} bytes)")
        header = json.loads(file.read(length))
    header.pop("__metadata__", None)
    return 8 + length, header


def weights_digest(checkpoint: str | os.PathLike) -> str:
    """sha256 (hex) over every tensor of a checkpoint folder's *.safetensors: name, dtype, shape, bytes.

    Hand-written over the file format (an 8-byte header length, a JSON header, raw data) because
    safetensors' own readers either load whole tensors or need torch, and this must run on phone-class
    boxes and on teachers of several GB."""
    files = sorted(Path(checkpoint).glob("*.safetensors"))
    if not files:
        raise Siglip2Error(f"'{checkpoint}' has no .safetensors weights to identify the model by")
    tables = {}
    for path in files:
        start, header = _tensor_table(path)
        for name, entry in header.items():
            if name in tables:
                raise Siglip2Error(f"'{checkpoint}': tensor {name!r} appears in two weight files")
            tables[name] = (path, start, entry)
    digest = hashlib.sha256()
    for name in sorted(tables):
        path, start, entry = tables[name]
        begin, end = entry["data_offsets"]
        digest.update(json.dumps([name, entry["dtype"], entry["shape"]]).encode() + b"\0")
        with open(path, "rb") as file:
            file.seek(start + begin)
            left = end - begin
            while left:
                chunk = file.read(min(_READ, left))
                if not chunk:
                    raise Siglip2Error(f"'{path}' is truncated: tensor {name!r} is cut short")
                digest.update(chunk)
                left -= len(chunk)
    return digest.hexdigest()
