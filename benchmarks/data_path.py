"""The distillation data path on CPU: how fast one core decodes and preprocesses training images
from WebDataset shards, and what the student's forward on a super-batch costs, so that the number of
loader workers a GPU needs can be worked out (README, "Distill a student": the estimate).

    python benchmarks/data_path.py [--images 256] [--out benchmarks/results]

The shards hold JPEGs cut from scikit-image's sample photos (real photographs, shipped with the
package) at two stored sizes: 256 px on the short side (img2dataset's `--image_size 256`) and 512 px
(a dataset kept at a larger size). Each image goes through the trainer's own decode path
(`distill.data.super_batches`: Pillow decode, resize to 256 x 256), timed in CPU seconds, so the
figures are per core whatever threads a library starts. `--jpeg-draft` (Pillow's JPEG draft mode:
libjpeg's DCT scaling decodes at 1/2, 1/4 or 1/8 size when the target is that much smaller) is
measured beside it, with its pixel difference. Writes results/data_path.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

RESULTS = Path(__file__).parent / "results"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
TARGET = 256  # B/32@256, the student the paper estimate is for


def photo_crops(count: int, short_side: int, seed: int = 0) -> list[bytes]:
    """`count` JPEGs (quality 95, img2dataset's default) of random crops of real photos."""
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(getattr(skimage.data, name)()) for name in PHOTOS]
    jpegs = []
    for i in range(count):
        photo = photos[i % len(photos)]
        scale = rng.uniform(0.6, 1.0)
        width, height = int(photo.width * scale), int(photo.height * scale)
        left, top = rng.integers(0, photo.width - width + 1), rng.integers(0, photo.height - height + 1)
        crop = photo.crop((left, top, left + width, top + height))
        ratio = short_side / min(crop.size)
        crop = crop.resize((round(crop.width * ratio), round(crop.height * ratio)), Image.BICUBIC)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=95)
        jpegs.append(buffer.getvalue())
    return jpegs


def write_shards(folder: Path, jpegs: list[bytes], per_shard: int = 64) -> str:
    """img2dataset layout: KEY.jpg + KEY.txt, keys restarting in every shard."""
    for start in range(0, len(jpegs), per_shard):
        with tarfile.open(folder / f"{start // per_shard:05d}.tar", "w") as tar:
            for i, jpeg in enumerate(jpegs[start : start + per_shard]):
                for ext, payload in (("jpg", jpeg), ("txt", f"a photograph, number {i}".encode())):
                    member = tarfile.TarInfo(f"{i:06d}.{ext}")
                    member.size = len(payload)
                    tar.addfile(member, io.BytesIO(payload))
    return str(folder / "*.tar")


def decode_rate(jpegs: list[bytes], draft: bool) -> tuple[float, list[np.ndarray]]:
    """Images per CPU-second through decode + resize to uint8, what the trainer's loader does per
    image (normalizing happens where the model runs: `distill.data.model_input`)."""
    from siglip2_sdk.core.preprocess import ImagePreprocessing, resized_rgb

    spec = ImagePreprocessing(size=(TARGET, TARGET))
    started = time.process_time()
    out = [resized_rgb(jpeg, spec, jpeg_draft=draft) for jpeg in jpegs]
    return len(jpegs) / (time.process_time() - started), out


def loader_rate(pattern: str, count: int, jpeg_draft: bool = False, decode: bool = True) -> float:
    """Images per CPU-second (all of the process's threads) through `super_batches` itself: tar
    reading, shuffle buffer, captions, tokenizing, decoding and resizing. `decode=False` times a
    second pass whose images are all kept decoded: what is left is the part that runs in the rank's
    one Python thread, whatever `--threads` is."""
    from siglip2_sdk.core.assets import fetch_gemma_tokenizer
    from siglip2_sdk.core.preprocess import ImagePreprocessing
    from siglip2_sdk.core.tokenizer import Tokenizer
    from siglip2_sdk.distill.data import DecodedImages, super_batches

    tokenizer = Tokenizer.from_file(fetch_gemma_tokenizer(), length=64)
    spec = ImagePreprocessing(size=(TARGET, TARGET))
    decoded = DecodedImages(spec, budget_mb=0 if decode else 2**14, jpeg_draft=jpeg_draft)

    def one_pass() -> int:
        batches = super_batches(
            pattern, size=64, image_preprocessing=spec, tokenizer=tokenizer, threads=1, decoded=decoded
        )
        return sum(len(batch.keys) for batch in batches)

    if not decode:
        one_pass()
    started = time.process_time()
    seen = one_pass()
    assert seen == count - count % 64, seen
    return seen / (time.process_time() - started)


def student_forward_ms(batch: int, threads: int) -> dict:
    """The B/32@256 student's no-grad forward (both towers) per example on this CPU: what scoring a
    super-batch costs per example, the price of selection."""
    import torch

    from siglip2_sdk.core.config import preset
    from siglip2_sdk.core.model import build_model

    torch.set_num_threads(threads)
    model = build_model(preset("b32"), seed=0).eval()
    pixels = torch.randn(batch, 3, TARGET, TARGET)
    ids = torch.randint(1, 1000, (batch, model.config.text.context_length))
    times = []
    with torch.no_grad():
        for _ in range(3):
            started = time.perf_counter()
            model.encode_image(pixels), model.encode_text(ids)
            times.append(time.perf_counter() - started)
    return {"batch": batch, "threads": threads, "ms_per_example": 1000 * statistics.median(times[1:]) / batch}


def gpu_estimate(batch: int = 1024, filter_ratio: float = 0.75) -> dict:
    """On paper: one H100 step of B/32@256 ACID at `batch` / `filter_ratio`, and the images per second
    it consumes. Assumptions are in the returned dict, so the figure can be redone with others."""
    from siglip2_sdk.core.config import preset, tower_flops

    flops = tower_flops(preset("b32"))
    per_example = flops["image"] + flops["text"]
    super_batch = round(batch / (1 - filter_ratio))
    step_flops = super_batch * per_example + 3 * batch * per_example  # score all, train the kept
    peak, utilization = 989e12, 0.40  # H100 SXM dense bf16; a utilization typical of ViT-B training
    step_s = step_flops / (peak * utilization)
    needed = super_batch / step_s
    return {
        "batch": batch,
        "filter_ratio": filter_ratio,
        "super_batch": super_batch,
        "gflops_per_example_forward": per_example / 1e9,
        "step_tflops": step_flops / 1e12,
        "assumed_peak_tflops": peak / 1e12,
        "assumed_utilization": utilization,
        "step_s": step_s,
        "images_per_s_needed": needed,
    }


def markdown(report: dict) -> str:
    forward, gpu = report["student_forward"], report["gpu_estimate"]
    lines = [
        "# Distillation data path (benchmarks/data_path.py)",
        "",
        f"{report['machine']}",
        "",
        "Images per CPU-second at 256 x 256 (uint8; normalizing runs on the device), JPEG quality 95",
        "from real photos; the loader is `distill.data.super_batches` whole (tar reading, shuffle,",
        "captions, tokenizing, decoding, resizing). Loader cores per H100: the estimate below.",
        "",
        "| stored size | decode + resize | `--jpeg-draft` | draft's mean abs pixel difference "
        "| loader | loader, `--jpeg-draft` | loader cores per H100 (plain / draft) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["decode"]:
        lines.append(
            f"| {row['short_side']} px | {row['images_per_s']:.0f} | {row['draft_images_per_s']:.0f} "
            f"| {row['draft_mean_abs_diff']:.2f} / 255 | {row['loader_images_per_s']:.0f} "
            f"| {row['loader_draft_images_per_s']:.0f} "
            f"| {gpu['images_per_s_needed'] / row['loader_images_per_s']:.0f} / "
            f"{gpu['images_per_s_needed'] / row['loader_draft_images_per_s']:.0f} |"
        )
    serial = report["serial_images_per_s"]
    lines += [
        "",
        f"The part of the loader that runs in the rank's one Python thread (reading the global stream, "
        f"shuffling, captions, tokenizing; measured as a pass whose images are all kept decoded): "
        f"{serial:,.0f} samples per second, whatever `--threads` adds for decoding.",
        "",
        f"B/32@256 student forward, no grad, both towers, batch {forward['batch']}, "
        f"{forward['threads']} threads: {forward['ms_per_example']:.1f} ms per example.",
        "",
        f"On paper, one H100 at batch {gpu['batch']} / filter {gpu['filter_ratio']} "
        f"(super-batch {gpu['super_batch']}): {gpu['gflops_per_example_forward']:.1f} GFLOP per example "
        f"forward, {gpu['step_tflops']:.0f} TFLOP per step (the super-batch scored, the kept quarter "
        f"trained at 3x), {gpu['step_s'] * 1000:.0f} ms at {gpu['assumed_utilization']:.0%} of "
        f"{gpu['assumed_peak_tflops']:.0f} TFLOP/s (dense bf16): {gpu['images_per_s_needed']:,.0f} "
        "images/s to decode.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="images per measurement (default: 256)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    args = parser.parse_args()
    from siglip2_sdk.bench import machine_summary

    report: dict = {"machine": machine_summary(), "decode": []}
    with tempfile.TemporaryDirectory() as tmp:
        for short_side in (256, 512):
            jpegs = photo_crops(args.images, short_side)
            decode_rate(jpegs[:16], draft=False)  # warm-up
            rate, plain = decode_rate(jpegs, draft=False)
            draft_rate, drafted = decode_rate(jpegs, draft=True)
            diff = statistics.mean(
                float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
                for a, b in zip(plain, drafted, strict=True)
            )
            folder = Path(tmp) / str(short_side)
            folder.mkdir()
            shards = write_shards(folder, jpegs)
            report["decode"].append(
                {
                    "short_side": short_side,
                    "mean_jpeg_kb": statistics.mean(len(j) for j in jpegs) / 1024,
                    "images_per_s": rate,
                    "draft_images_per_s": draft_rate,
                    "draft_mean_abs_diff": diff,
                    "loader_images_per_s": loader_rate(shards, len(jpegs), jpeg_draft=False),
                    "loader_draft_images_per_s": loader_rate(shards, len(jpegs), jpeg_draft=True),
                }
            )
            if short_side == 256:
                report["serial_images_per_s"] = loader_rate(shards, len(jpegs), decode=False)
    report["student_forward"] = student_forward_ms(batch=32, threads=os.cpu_count() or 1)
    report["gpu_estimate"] = gpu_estimate()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_path.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "data_path.md").write_text(markdown(report))
    sys.stdout.write(markdown(report))


if __name__ == "__main__":
    main()
