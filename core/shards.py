"""Reading WebDataset shards in the img2dataset layout (`KEY.jpg`/`.png` + `KEY.txt` and/or
`KEY.json`), torch-free.

The `webdataset` package imports torch, so readers that must run without it (evaluating a bundle on
a phone-class box, export calibration) read the tar layout here with `tarfile`; the training loader
in `distill/` uses `webdataset` itself.
"""

from __future__ import annotations

import glob
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from braceexpand import braceexpand

from .errors import Siglip2Error

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
# A label used as a caption (`label_captions_of`) takes the place of a language: "label:category".
LABEL_CAPTION = "label:"
# Label sets name their classes as identifiers ("signs_and_symbols", "hand-fingers-open"); a prompt
# reads them as words, as CLIP's evaluations rename classes. A hyphen between capitals or digits
# ("T-shirt", "K-9") is part of the word and stays.
_JOINERS = re.compile(r"_|(?<=[a-z])-(?=[a-z])")


@dataclass
class Example:
    """One sample of a shard: encoded image bytes and its captions/labels."""

    key: str
    image: bytes
    image_ext: str
    captions: dict[str, str]  # language tag -> caption
    labels: dict[str, str] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)  # the whole .json, when there is one


def expand_shards(spec: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Shard files from a folder (its *.tar), a glob, a brace pattern ("data/{000000..000099}.tar"),
    a single file, or a list of these. Raises Siglip2Error when nothing matches."""
    specs = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    shards: list[Path] = []
    for item in specs:
        for pattern in braceexpand(os.fspath(item)):
            path = Path(pattern).expanduser()
            if path.is_dir():
                shards.extend(sorted(path.glob("*.tar")))
            elif any(ch in pattern for ch in "*?["):
                shards.extend(Path(p) for p in sorted(glob.glob(os.path.expanduser(pattern))))
            else:
                shards.append(path)
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        raise Siglip2Error(
            f"shard file(s) not found: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        )
    if not shards:
        raise Siglip2Error(f"no .tar shards match {spec!r}")
    return shards


def split_shards(folder: str | os.PathLike, split: str) -> list[Path]:
    """The shards of one split of a corpus written by `siglip2-sdk data demo` (`{split}-*.tar`)."""
    shards = sorted(Path(folder).expanduser().glob(f"{split}-*.tar"))
    if not shards:
        raise Siglip2Error(f"'{folder}' has no shards for split '{split}' ({split}-*.tar)")
    return shards


def json_of(files: dict[str, bytes]) -> dict:
    """A sample's `.json` member, parsed ({} without one)."""
    return json.loads(files["json"].decode("utf-8")) if "json" in files else {}


def captions_of(files: dict[str, bytes]) -> dict[str, str]:
    """A sample's captions by language, from its `.json` and `.txt` members. The one reader the
    teacher cache and the trainer share, so both see the same string for an example: the JSON's
    `captions` (every language), else the `.txt` as English, else the JSON's `caption` (img2dataset
    writes both the `.txt` and the JSON `caption`, normally the same text)."""
    meta = json_of(files)
    if meta.get("captions"):
        return dict(meta["captions"])
    if "txt" in files:
        return {"en": files["txt"].decode("utf-8").strip()}
    if isinstance(meta.get("caption"), str):
        return {"en": meta["caption"]}
    return {}


def class_name(label: str) -> str:
    """The words a label reads as in a prompt or caption: separators between words become spaces."""
    return _JOINERS.sub(" ", label).strip()


def label_captions(labels: dict) -> dict[str, str]:
    """An example's labels ({"category": "food"}) as captions keyed like languages
    ({"label:category": "food"}): image-label data read as image-text pairs (UniCL). The teacher
    cache and the trainer both caption labels with this, as they share `captions_of`."""
    return {
        f"{LABEL_CAPTION}{name}": class_name(label)
        for name, label in sorted(labels.items())
        if isinstance(label, str) and class_name(label)
    }


def label_captions_of(files: dict[str, bytes]) -> dict[str, str]:
    """`label_captions` of a sample's `.json` `labels` (none without them)."""
    meta = json_of(files)
    return label_captions(meta["labels"]) if isinstance(meta.get("labels"), dict) else {}


def _example(key: str, files: dict[str, bytes]) -> Example | None:
    ext = next((e for e in IMAGE_EXTENSIONS if e in files), None)
    if ext is None:
        return None
    meta = json_of(files)
    return Example(key, files[ext], ext, captions_of(files), dict(meta.get("labels") or {}), meta)


def iter_shard(path: str | os.PathLike) -> Iterator[Example]:
    """Examples of one tar in file order; members are grouped by key (the name up to the first dot
    of the base name, as webdataset does). Samples without an image are skipped."""
    try:
        with tarfile.open(path, "r") as tar:
            key, files = None, {}
            for member in tar:
                if not member.isfile():
                    continue
                directory, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")
                member_key = f"{directory}/{stem}" if directory else stem
                if member_key != key:
                    if key is not None and (example := _example(key, files)):
                        yield example
                    key, files = member_key, {}
                files[ext.lower()] = tar.extractfile(member).read()
            if key is not None and (example := _example(key, files)):
                yield example
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise Siglip2Error(f"cannot read shard '{path}': {exc}") from None


def example_id(shard: str | os.PathLike, key: str) -> str:
    """A sample's identity across a whole dataset: img2dataset-style shards often restart their keys
    in every tar, so the key alone is not enough."""
    return f"{Path(shard).name}/{key}"


def iter_examples(shards: Iterable[str | os.PathLike]) -> Iterator[Example]:
    for shard in shards:
        yield from iter_shard(shard)
