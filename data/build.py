"""`siglip2-sdk data demo`: build the offline corpus from its sources.

Two steps, each skipped when its output is already there:
1. render: each source's pairs, images normalized (RGB on white, long side <= MAX_SIDE, PNG), into one
   cached tar per source, keyed by package version and reader version;
2. assemble: drop duplicate images, split by a hash of the pixels (so an image lands in the same
   split on every machine and never in two), write WebDataset shards and the data card.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from siglip2_sdk.core.errors import ImageLoadError
from siglip2_sdk.core.fileio import atomic_write_text
from siglip2_sdk.core.preprocess import load_image

from .card import write_card
from .debian import SourceUnavailable, locate_package
from .source import Pair, Source

MAX_SIDE = 256
SHARD_SIZE = 1000
ASSEMBLY_VERSION = 2  # bump when assembly changes what it writes (2: the pairs digest)
SPLITS = (("train", 0.8), ("val", 0.9), ("test", 1.0))  # cumulative fractions of the hash range


def default_sources() -> list[Source]:
    from . import fashion_mnist, noto_emoji, openclipart, tuxpaint

    return [tuxpaint.SOURCE, noto_emoji.SOURCE, openclipart.SOURCE, fashion_mnist.SOURCE]


@dataclass
class Record:
    """A normalized pair as stored: PNG bytes plus everything the shards' .json carries."""

    key: str  # hash of the pixels: the identity used for dedupe and split
    png: bytes
    meta: dict

    @property
    def split(self) -> str:
        position = int(self.key[:8], 16) / 2**32
        return next(name for name, upper in SPLITS if position < upper)


@dataclass
class BuildReport:
    out: Path
    rendered: list[str] = field(default_factory=list)  # sources rendered in this run
    cached: list[str] = field(default_factory=list)  # sources reused from an earlier run
    unavailable: dict[str, str] = field(default_factory=dict)  # source -> reason
    assembled: bool = False  # False: shards were already up to date
    stats: dict = field(default_factory=dict)


def normalize(pair: Pair, source: Source) -> Record:
    """RGB on white with a bounded size, PNG-encoded; the key hashes the pixels, not the encoding."""
    image = load_image(pair.image)
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode() + image.tobytes()).hexdigest()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    meta = {
        "source": source.name,
        "source_id": pair.source_id,
        "captions": pair.captions,
        "labels": pair.labels,
        "license": source.license,
        "width": image.width,
        "height": image.height,
    }
    return Record(digest[:32], buffer.getvalue(), meta)


def _write_tar(path: Path, records: Iterable[Record]) -> int:
    """Write records as `KEY.png` + `KEY.json` + `KEY.txt` (English caption, img2dataset layout).

    Plain tarfile: the layout is three members per sample, and the webdataset writer would pull torch
    into a step that needs none."""
    count = 0
    with tarfile.open(path, "w") as tar:
        for record in records:
            english = record.meta["captions"].get("en", "")
            members = {
                "png": record.png,
                "json": json.dumps({"key": record.key, **record.meta}, ensure_ascii=False).encode(),
                "txt": english.encode(),
            }
            for ext, payload in members.items():
                info = tarfile.TarInfo(f"{record.key}.{ext}")
                info.size, info.mtime, info.mode = len(payload), 0, 0o644  # mtime 0: reproducible bytes
                tar.addfile(info, io.BytesIO(payload))
            count += 1
    return count


def _read_tar(path: Path) -> Iterator[Record]:
    from siglip2_sdk.core.shards import iter_shard

    for example in iter_shard(path):
        meta = {k: v for k, v in example.meta.items() if k != "key"}
        yield Record(example.key, example.image, meta)


def render_source(
    source: Source, cache: Path, progress: Callable[[Iterable, str], Iterable], notes: dict[str, str]
) -> tuple[Path, str, bool]:
    """The source's cached tar, rendering it first if needed. Returns (path, versions, rendered_now).

    A missing extra package (e.g. emoji groups) is noted and the source is read without it."""
    package = locate_package(source.debian_package)
    extra_roots, versions = [], [package.version]
    for name in source.extra_packages:
        try:
            extra = locate_package(name)
        except SourceUnavailable as exc:
            notes[f"{source.name} ({name})"] = str(exc)
            extra_roots.append(None)
            versions.append(f"{name} none")
        else:
            extra_roots.append(extra.root)
            versions.append(f"{name} {extra.version}")
    version_text = "; ".join(versions)
    tag = hashlib.sha256(version_text.encode()).hexdigest()[:12]
    path = cache / f"{source.name}-{tag}-r{source.reader_version}.tar"
    if path.is_file():
        return path, version_text, False
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(f"{source.name}-*.tar"):
        stale.unlink()

    def records() -> Iterator[Record]:
        for pair in progress(source.read(package.root, *extra_roots), f"rendering {source.name}"):
            try:
                yield normalize(pair, source)
            except ImageLoadError:
                continue  # a reader that yields an undecodable image: drop the pair, keep the source

    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=cache)
    os.close(fd)
    try:
        _write_tar(Path(staged), records())
        Path(staged).replace(path)  # a killed render leaves no half tar behind under the final name
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return path, version_text, True


def _fingerprint(source_tars: list[Path], caps: dict[str, int]) -> str:
    parts = [
        f"assembly={ASSEMBLY_VERSION}",
        f"max_side={MAX_SIDE}",
        f"shard_size={SHARD_SIZE}",
        f"caps={caps}",
    ]
    parts += [f"{p.name}:{p.stat().st_size}" for p in sorted(source_tars)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _up_to_date(out: Path, fingerprint: str) -> bool:
    stats_file = out / "stats.json"
    if not stats_file.is_file():
        return False
    try:
        stats = json.loads(stats_file.read_text())
    except ValueError:
        return False
    shards = stats.get("shards", [])
    return (
        stats.get("fingerprint") == fingerprint and bool(shards) and all((out / s).is_file() for s in shards)
    )


def _unique(source_tars: list[Path], caps: dict[str, int]) -> tuple[list[Record], Counter, Counter]:
    """Records without duplicate images, and at most caps[source] images per repeated caption
    (the first ones by key, so the choice is the same on every machine)."""
    records, seen, duplicates = [], set(), Counter()
    for tar in source_tars:
        for record in _read_tar(tar):
            if record.key in seen:
                duplicates[record.meta["source"]] += 1
            else:
                seen.add(record.key)
                records.append(record)
    kept, per_caption, repeats = [], Counter(), Counter()
    for record in sorted(records, key=lambda r: r.key):
        source = record.meta["source"]
        caption = (source, record.meta["captions"].get("en"))
        per_caption[caption] += 1
        if source in caps and per_caption[caption] > caps[source]:
            repeats[source] += 1
        else:
            kept.append(record)
    return kept, duplicates, repeats


def assemble(out: Path, source_tars: list[Path], caps: dict[str, int]) -> dict:
    """Dedupe, split, write shards and the data card; old shards are replaced only at the end."""
    records, duplicates, repeats = _unique(source_tars, caps)
    by_split: dict[str, list[Record]] = {name: [] for name, _ in SPLITS}
    for record in records:
        by_split[record.split].append(record)

    staging = Path(tempfile.mkdtemp(prefix=".shards.", dir=out))
    try:
        shard_names = []
        for split, split_records in by_split.items():  # in key order: the same on every machine
            for start in range(0, len(split_records), SHARD_SIZE):
                name = f"{split}-{start // SHARD_SIZE:06d}.tar"
                _write_tar(staging / name, split_records[start : start + SHARD_SIZE])
                shard_names.append(name)
        # stats.json marks a complete corpus: drop it before the swap, so a kill in the middle leaves
        # a folder that the next run rebuilds instead of one that vouches for a mix of shards.
        (out / "stats.json").unlink(missing_ok=True)
        for old in out.glob("*.tar"):
            old.unlink()
        for name in shard_names:
            (staging / name).replace(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"by_split": by_split, "duplicates": duplicates, "repeats": repeats, "shards": shard_names}


def build_corpus(
    out: Path,
    sources: list[Source] | None = None,
    *,
    progress: Callable[[Iterable, str], Iterable] = lambda it, _: it,
) -> BuildReport:
    """Build (or bring up to date) the corpus in `out`; see the module docstring."""
    sources = default_sources() if sources is None else sources
    out.mkdir(parents=True, exist_ok=True)
    report = BuildReport(out)
    cache = out / ".sources"
    source_tars, versions, available = [], {}, []
    for source in sources:
        try:
            tar, versions[source.name], rendered = render_source(source, cache, progress, report.unavailable)
        except SourceUnavailable as exc:
            report.unavailable[source.name] = str(exc)
            continue
        (report.rendered if rendered else report.cached).append(source.name)
        source_tars.append(tar)
        available.append(source)

    caps = {source.name: source.max_per_caption for source in available if source.max_per_caption}
    fingerprint = _fingerprint(source_tars, caps)
    if _up_to_date(out, fingerprint):
        report.stats = json.loads((out / "stats.json").read_text())
        return report
    written = assemble(out, source_tars, caps)
    report.stats = write_card(
        out,
        splits=written["by_split"],
        sources=available,
        versions=versions,
        unavailable=report.unavailable,
        duplicates=written["duplicates"],
        repeats=written["repeats"],
        shards=written["shards"],
        fingerprint=fingerprint,
    )
    report.assembled = True
    atomic_write_text(out / "stats.json", json.dumps(report.stats, indent=2, ensure_ascii=False) + "\n")
    return report
