"""`siglip2-sdk export`: a checkpoint -> one bundle per runtime x precision, each checked by the
parity gate on real data before it is marked usable."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from siglip2_sdk.core import embedding
from siglip2_sdk.core.bundle import Manifest, TextPreprocessing, describe_file, write_manifest
from siglip2_sdk.core.digest import weights_digest
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.fileio import slug
from siglip2_sdk.core.model import SiglipModel, numpy_runner
from siglip2_sdk.core.preprocess import ImageSource, preprocess
from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.core.version import __version__
from siglip2_sdk.core.vocabulary import KeptVocabulary
from siglip2_sdk.runtimes import open_backend

from . import executorch, litert, onnx
from .lowering import Calibration, ExportTowers, quiet_lowering
from .parity import Thresholds, failures, measure
from .vocab import PrunedTextEncoder

# --to name -> (runtime written in the manifest, the module that lowers to it)
TARGETS = {
    "onnx": ("onnxruntime", onnx),
    "tflite": ("litert", litert),
    "executorch": ("executorch", executorch),
}
PRECISIONS = {to: module.PRECISIONS for to, (_, module) in TARGETS.items()}


@dataclass
class ParityData:
    """Held-out real images and one caption each: what the gate compares on."""

    images: Sequence[ImageSource]
    texts: list[str]


@dataclass
class ExportResult:
    folder: Path
    manifest: Manifest
    problems: list[str]


def _embeddings(images, texts, spec, tokenizer, run_image, run_text, dim) -> tuple[np.ndarray, np.ndarray]:
    return (
        embedding.embed_images(images, spec, run_image, dim, 32),
        embedding.embed_texts(texts, tokenizer, run_text, dim, 64),
    )


def export_bundle(
    model: SiglipModel,
    model_id: str,
    to: str,
    precision: str,
    out_root: Path,
    parity_data: ParityData,
    thresholds: Thresholds | None = None,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    calibration: Calibration | None = None,
    vocabulary: KeptVocabulary | None = None,
    digest: str | None = None,
) -> ExportResult:
    """Write `out_root/<model>-<runtime>-<precision>/`, measure it against the float model and record
    the figures in its manifest (status "failed" when the gate refuses it). The folder appears whole.
    `calibration` feeds static quantization (int8-static); without it the parity images stand in,
    which only schemes that never read calibration (all but int8-static) or tests should rely on.
    `vocabulary` prunes the text tower's token table to the kept ids (bundle name suffix `-vocab-...`);
    without it, a model trained on a compact vocabulary is pruned to its own (exact, no suffix).
    `digest`: the checkpoint's `weights_digest`, recorded as the bundle's model identity (computed
    when not given). An older bundle of the same name is replaced in one step: readers see the old
    bundle or the new one, never none; staging folders of killed exports are removed."""
    thresholds = thresholds or Thresholds()
    if to not in TARGETS:
        raise Siglip2Error(
            f"export to {to!r} is not supported by this version (supported: {', '.join(TARGETS)})"
        )
    if precision not in PRECISIONS[to]:
        raise Siglip2Error(
            f"precision {precision!r} is not supported for {to} yet (supported: {', '.join(PRECISIONS[to])})"
        )
    tokenizer_file = Path(model.source_dir) / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise Siglip2Error(f"checkpoint '{model.source_dir}' has no tokenizer.json to put in the bundle")
    text = model.config.text
    tokenizer = Tokenizer.from_file(tokenizer_file, length=text.context_length, pad_id=text.pad_id)
    if reference is None:
        reference = float_embeddings(model, tokenizer, parity_data)
    if calibration is None:
        calibration = calibration_inputs(parity_data, model.image_preprocessing, tokenizer)

    if digest is None:
        digest = weights_digest(model.source_dir)

    runtime, lowering = TARGETS[to]
    out_root.mkdir(parents=True, exist_ok=True)
    suffix = vocabulary.suffix if vocabulary else ""
    vocabulary = vocabulary or model.vocabulary
    name = f"{slug(model_id, fallback='model')}-{runtime}-{precision}{suffix}"
    remove_stale_staging(out_root, name)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}.{os.getpid()}.", dir=out_root))
    try:
        text_tower = PrunedTextEncoder(model, vocabulary) if vocabulary else None
        with quiet_lowering():
            lowered = lowering.lower(ExportTowers.of(model, text=text_tower), precision, staging, calibration)
        shutil.copyfile(tokenizer_file, staging / "tokenizer.json")
        files = {**lowered.files, "tokenizer": "tokenizer.json"}
        manifest = Manifest(
            model_id=model_id,
            runtime=runtime,
            precision=lowered.precision or precision,
            quantization=lowered.quantization,
            embed_dim=model.config.embed_dim,
            image=model.image_preprocessing,
            text=TextPreprocessing(length=text.context_length, pad_id=text.pad_id, eos_id=tokenizer.eos_id),
            logit_scale=float(model.logit_scale.detach().exp()),
            logit_bias=float(model.logit_bias.detach()),
            files={role: describe_file(staging, file) for role, file in files.items()},
            batch_size=lowered.batch_size,
            max_batch=lowered.max_batch,
            delegate_partitions=lowered.delegate_partitions,
            vocabulary=vocabulary.manifest_entry() if vocabulary else {},
            created_by=f"siglip2-sdk {__version__}",
            weights_digest=digest,
        )
        figures = measure(reference, bundle_embeddings(staging, manifest, tokenizer, parity_data))
        problems = failures(figures, thresholds)
        manifest = replace(
            manifest,
            parity={**figures, "thresholds": vars(thresholds)},
            status="failed" if problems else "ok",
        )
        write_manifest(staging, manifest)
        staging.chmod(0o755)
        folder = out_root / name
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(folder, manifest, problems)


STAGING_PREFIX = ".staging-"
_RENAME_EXCHANGE = 2  # linux/fs.h


def replace_folder(new: Path, folder: Path) -> None:
    """Put `new` in place of `folder` in one step where the system allows it (Linux's renameat2
    RENAME_EXCHANGE swaps the two names atomically), then delete the old contents. Elsewhere the old
    folder is renamed aside first, so a reader may find no folder for that moment (never half of one)."""
    if not folder.exists():
        new.rename(folder)
        return
    if _exchange(new, folder):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old bundle
        return
    aside = new.with_name(new.name + ".old")
    folder.rename(aside)
    new.rename(folder)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE); False where that is not offered."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd = -100
    result = renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not offered by this kernel or file system
        return False
    raise OSError(code, os.strerror(code), str(b))


def remove_stale_staging(out_root: Path, name: str = "", older_than_s: float = 24 * 3600.0) -> list[Path]:
    """Delete staging folders that killed exports left in `out_root`: those whose process (its id is
    in the name) is gone on this machine, and any older than a day (another machine's). With `name`,
    also this bundle's `.NAME.*` folders, where earlier versions staged (no process id in their name),
    once an hour old. Returns them."""
    removed = []
    legacy = list(out_root.glob(f".{name}.*")) if name else []
    for staging in [*out_root.glob(f"{STAGING_PREFIX}*"), *legacy]:
        pid = _staging_pid(staging.name) if staging.name.startswith(STAGING_PREFIX) else None
        with contextlib.suppress(OSError):
            age = time.time() - staging.stat().st_mtime
            stale = age > (3600.0 if pid is None and staging in legacy else older_than_s)
            if not stale and pid is not None and pid != os.getpid():
                stale = not _alive(pid)
            if stale and staging.is_dir():
                shutil.rmtree(staging)
                removed.append(staging)
    return removed


def _staging_pid(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def float_embeddings(
    model: SiglipModel, tokenizer: Tokenizer, data: ParityData
) -> tuple[np.ndarray, np.ndarray]:
    """The float checkpoint's embeddings of the parity data: the reference every bundle is held to."""
    dim = model.config.embed_dim
    runs = numpy_runner(model.eval(), "image"), numpy_runner(model, "text")
    return _embeddings(data.images, data.texts, model.image_preprocessing, tokenizer, *runs, dim)


def bundle_embeddings(
    folder: Path, manifest: Manifest, tokenizer: Tokenizer, data: ParityData
) -> tuple[np.ndarray, np.ndarray]:
    """The bundle's embeddings of the parity data, run on its own runtime: what the gate compares
    with `float_embeddings`."""
    backend = open_backend(folder, manifest)
    return _embeddings(
        data.images, data.texts, manifest.image, tokenizer,
        backend.embed_pixels, backend.embed_tokens, manifest.embed_dim,
    )  # fmt: skip


def calibration_inputs(data: ParityData, spec, tokenizer: Tokenizer) -> Calibration:
    """Preprocessed images and tokenized captions, the inputs static quantizers observe."""
    return Calibration(pixels=preprocess(list(data.images), spec), input_ids=tokenizer(data.texts))


def parity_data_from_shards(shards: str, limit: int, languages: Sequence[str] = ()) -> ParityData:
    """The first `limit` examples with a caption (English when there is one) from held-out shards.
    With `languages` (a pruned vocabulary's), the first with a caption in one of them, the languages
    taking turns, so the gate checks the text the bundle keeps."""
    from itertools import islice

    from siglip2_sdk.core.shards import expand_shards, iter_examples

    examples = iter_examples(expand_shards(shards))
    if languages:
        pairs = list(islice(_captions_in(examples, languages), limit))
    else:
        pairs = [
            (e, e.captions.get("en") or next(iter(e.captions.values())))
            for e in islice(examples, limit)
            if e.captions
        ]
    if len(pairs) < 2:
        in_languages = f" in {','.join(languages)}" if languages else ""
        raise Siglip2Error(f"'{shards}' has fewer than 2 captioned examples{in_languages} to check parity on")
    return ParityData([e.image for e, _ in pairs], [text for _, text in pairs])


def _captions_in(examples, languages: Sequence[str]):
    """(example, caption) for the examples with a caption in one of `languages`, taken in turn."""
    wanted = [tag.lower() for tag in languages]
    turn = 0
    for example in examples:
        by_tag = {tag.lower(): text for tag, text in example.captions.items()}
        start = turn % len(wanted)
        text = next((by_tag[tag] for tag in wanted[start:] + wanted[:start] if tag in by_tag), None)
        if text is not None:
            turn += 1
            yield example, text
