"""The teacher's embeddings of a dataset, computed once and kept on disk (fp16).

The teacher never needs a backward pass, so distillation reads its embeddings from here instead of
running it. Layout: one `part-NNNNNN.safetensors` per input shard (image and caption embeddings, with
the keys in the file's metadata), written atomically, plus `manifest.json`. A killed run resumes at
the first missing part; under torchrun each rank embeds its own shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from siglip2_sdk.core import embedding
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.fileio import atomic_write_text
from siglip2_sdk.core.model import SiglipModel, numpy_runner
from siglip2_sdk.core.preprocess import ImagePreprocessing
from siglip2_sdk.core.shards import example_id, iter_shard, label_captions
from siglip2_sdk.core.tokenizer import Tokenizer

MANIFEST = "manifest.json"
# 2: examples are identified by `shard name/key`; 3: the teacher by its weights digest; 4: labels as
# captions ("label:category") are embedded too, for --label-captions
FORMAT = 4


def data_fingerprint(shards: Sequence[Path]) -> str:
    """Names and sizes of the shards, in order: cheap, and changes when the data does."""
    listing = "\n".join(f"{Path(s).name}:{Path(s).stat().st_size}" for s in shards)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


def _part_name(index: int) -> str:
    return f"part-{index:06d}.safetensors"


@dataclass(frozen=True)
class TeacherInfo:
    """What identifies a cache: the teacher (its name and its weights' digest), its scores' t and b,
    and the data it embedded."""

    teacher: str
    teacher_digest: str
    dim: int
    logit_scale: float  # t itself
    logit_bias: float
    fingerprint: str
    shards: list[str]

    def to_dict(self) -> dict:
        return {"format": FORMAT, "captions": "all", **self.__dict__}


def check_matches(folder: Path, info: dict, *, teacher_digest: str, fingerprint: str) -> None:
    """Refuse a cache made by other weights or from other data: its rows would be paired with the
    wrong examples or scored by another teacher."""
    if info.get("teacher_digest") != teacher_digest:
        raise Siglip2Error(
            f"teacher cache '{folder}' was made by other teacher weights (teacher {info.get('teacher')!r}); "
            "pass the cache of this teacher, or another folder to build one"
        )
    if info.get("fingerprint") != fingerprint:
        raise Siglip2Error(
            f"teacher cache '{folder}' was made from other shards (fingerprint {info.get('fingerprint')}, "
            f"these give {fingerprint}); pass the shards it was made from, or another folder to build one"
        )


def _check_manifest(out: Path, info: TeacherInfo) -> None:
    path = out / MANIFEST
    if not path.is_file():
        return
    found = json.loads(path.read_text())
    if found.get("format") != FORMAT:
        raise Siglip2Error(f"teacher cache '{out}' has format {found.get('format')}, not {FORMAT}: delete it")
    check_matches(out, found, teacher_digest=info.teacher_digest, fingerprint=info.fingerprint)


def embed_dataset(
    model: SiglipModel,
    tokenizer: Tokenizer,
    spec: ImagePreprocessing,
    shards: Sequence[Path],
    out: Path,
    *,
    teacher_id: str,
    teacher_digest: str,
    batch_size: int = 64,
    rank: int = 0,
    world_size: int = 1,
    progress: Callable[[Iterable, str], Iterable] = lambda it, _: it,
    log: Callable[[str], None] = lambda _: None,
) -> TeacherInfo:
    """Embed every image and every caption (all languages, and the labels as captions) of `shards`
    into `out`.

    Parts already on disk are kept (resume). Rank r embeds shards r, r + W, ...; the manifest is
    written by the caller once every rank is done (see `finish`)."""
    info = TeacherInfo(
        teacher=teacher_id,
        teacher_digest=teacher_digest,
        dim=model.config.embed_dim,
        logit_scale=float(model.logit_scale.detach().exp()),
        logit_bias=float(model.logit_bias.detach()),
        fingerprint=data_fingerprint(shards),
        shards=[Path(s).name for s in shards],
    )
    out.mkdir(parents=True, exist_ok=True)
    _check_manifest(out, info)
    run_image, run_text = numpy_runner(model, "image"), numpy_runner(model, "text")
    mine = [i for i in range(len(shards)) if i % world_size == rank and not (out / _part_name(i)).is_file()]
    for index in progress(mine, f"teacher embeddings (rank {rank})"):
        started = time.perf_counter()
        examples = list(iter_shard(shards[index]))
        ids = [example_id(shards[index], e.key) for e in examples]
        texts = [
            (i, lang, caption)
            for i, e in zip(ids, examples, strict=True)
            for lang, caption in sorted({**e.captions, **label_captions(e.labels)}.items())
        ]
        images = embedding.embed_images([e.image for e in examples], spec, run_image, info.dim, batch_size)
        captions = embedding.embed_texts(
            [c for *_, c in texts], tokenizer, run_text, info.dim, 4 * batch_size
        )
        tensors = {
            "image": torch.from_numpy(images).half(),
            "text": torch.from_numpy(captions).half(),
        }
        metadata = {
            "keys": json.dumps(ids),
            "texts": json.dumps([[key, lang] for key, lang, _ in texts]),
        }
        staged = out / f".{_part_name(index)}.{os.getpid()}"
        save_file(tensors, staged, metadata=metadata)
        staged.replace(out / _part_name(index))  # a part appears whole or not at all
        seconds = time.perf_counter() - started
        log(
            f"{Path(shards[index]).name}: {len(examples):,} images + {len(texts):,} captions in "
            f"{seconds:.1f} s ({len(examples) / seconds:.0f} images/s, {len(texts) / seconds:.0f} captions/s)"
        )
    return info


def finish(out: Path, info: TeacherInfo) -> None:
    """Mark the cache complete once every part exists."""
    missing = [s for i, s in enumerate(info.shards) if not (out / _part_name(i)).is_file()]
    if missing:
        raise Siglip2Error(
            f"teacher cache '{out}' is missing parts for {len(missing)} shard(s), e.g. {missing[0]}"
        )
    atomic_write_text(out / MANIFEST, json.dumps(info.to_dict(), indent=2) + "\n")


class TeacherCache:
    """Read side: the teacher's embeddings by example id (images) and (id, language) (captions);
    ids are `shard name/key` (see `core.shards.example_id`)."""

    @staticmethod
    def read_manifest(folder: Path) -> dict:
        """A complete cache's manifest, refused when absent or of another format."""
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise Siglip2Error(f"'{folder}' is not a complete teacher cache (no {MANIFEST})")
        try:
            manifest = json.loads(path.read_text())
        except (ValueError, OSError) as exc:
            raise Siglip2Error(f"teacher cache '{folder}': unreadable manifest ({exc}); delete it") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise Siglip2Error(
                f"teacher cache '{folder}' has format {found}, this version reads "
                f"{FORMAT}: delete it and run teacher-embed again"
            )
        return manifest

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        manifest = self.read_manifest(self.folder)
        self.info = TeacherInfo(**{k: manifest[k] for k in TeacherInfo.__dataclass_fields__})
        images, texts, self._image_row, self._text_row = [], [], {}, {}
        for index in range(len(self.info.shards)):
            with safe_open(self.folder / _part_name(index), framework="pt") as part:
                meta = part.metadata()
                for key in json.loads(meta["keys"]):
                    if key in self._image_row:
                        raise Siglip2Error(f"teacher cache '{self.folder}': key {key!r} appears twice")
                    self._image_row[key] = len(self._image_row)
                for key, lang in json.loads(meta["texts"]):
                    self._text_row[(key, lang)] = len(self._text_row)
                images.append(part.get_tensor("image"))
                texts.append(part.get_tensor("text"))
        self.image = torch.cat(images) if images else torch.empty(0, self.info.dim, dtype=torch.float16)
        self.text = torch.cat(texts) if texts else torch.empty(0, self.info.dim, dtype=torch.float16)

    def __len__(self) -> int:
        return len(self._image_row)

    def lookup(self, keys: Sequence[str], languages: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 image and caption embeddings of the given examples (re-normalized after fp16)."""
        try:
            image = self.image[[self._image_row[k] for k in keys]].float()
            text = self.text[
                [self._text_row[(k, lang)] for k, lang in zip(keys, languages, strict=True)]
            ].float()
        except KeyError as exc:
            raise Siglip2Error(
                f"teacher cache '{self.folder}' has no embedding for {exc.args[0]!r}: "
                "it was made for other data"
            ) from None
        return torch.nn.functional.normalize(image, dim=-1), torch.nn.functional.normalize(text, dim=-1)
