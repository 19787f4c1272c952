"""File helpers every stage needs: content hashes and writes that a crash cannot leave half done."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` so that readers see the old file or the new one, never a torn one."""
    return _atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy `src` to `dest` atomically (the same guarantee as `atomic_write_text`)."""
    with open(src, "rb") as source:
        return _atomic_write(Path(dest), lambda f: shutil.copyfileobj(source, f))


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    # Staged in the destination folder: os.replace is atomic only within one filesystem.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(staged, 0o644)  # mkstemp makes it owner-only; these are ordinary shared files
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return path


def slug(text: str, fallback: str = "") -> str:
    """A file-name-safe form of a model or teacher name (its last 60 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[-60:] or fallback
