"""`siglip2-sdk demo`: the main job on its embedded default.

The corpus, distillation, export and photo-index commands are not yet chained into this demo, so it
runs the foundation end to end on real inputs and says plainly what is built, what to run by hand,
and what is still to come.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from siglip2_sdk.core.errors import Siglip2Error

CAPTIONS = [
    "A photo of a cat",
    "一只猫的照片",
    "صورة قطة",
    "एक बिल्ली की तस्वीर",
    "🐱 a cat on a 🚲",
]
BY_HAND = [
    "siglip2-sdk data demo  (offline multilingual corpus, ~4 min)",
    "siglip2-sdk distill --teacher demo --student demo-student --out artifacts/student  (ACID student)",
    "siglip2-sdk eval artifacts/student/final --data artifacts/data --split test",
    "siglip2-sdk export artifacts/student/final --to onnx,executorch --out artifacts/bundles",
    "siglip2-sdk index PHOTOS --bundle artifacts/bundles/student-onnxruntime-fp32 --index artifacts/index",
    'siglip2-sdk search "a red bicycle" --index artifacts/index',
]
NOT_BUILT_YET = [
    "export to TFLite / LiteRT, ExecuTorch int8, vocabulary pruning",
    "the Android demo app",
]


def _sample_photos():
    try:
        from skimage import data
    except ImportError:
        raise Siglip2Error(
            "the demo photos come from scikit-image: pip install scikit-image (or run `make demo`)"
        ) from None
    return {"astronaut": data.astronaut(), "chelsea (a cat)": data.chelsea(), "coffee": data.coffee()}


def run_demo(out_dir: Path, preset_name: str = "demo-student") -> None:
    # torch is needed here (the model); imported late so `siglip2-sdk --help` stays fast.
    import torch

    from siglip2_sdk.core.assets import fetch_gemma_tokenizer
    from siglip2_sdk.core.checkpoint import load_checkpoint, save_checkpoint
    from siglip2_sdk.core.config import parameter_count, preset
    from siglip2_sdk.core.model import build_model
    from siglip2_sdk.core.preprocess import ImagePreprocessing, preprocess
    from siglip2_sdk.core.tokenizer import Tokenizer

    console = Console()
    config = preset(preset_name)
    tokenizer = Tokenizer.from_file(fetch_gemma_tokenizer(), length=config.text.context_length)
    size = config.vision.image_size
    spec = ImagePreprocessing(size=(size, size))

    checkpoint = out_dir / f"{preset_name}-init"
    with console.status(f"building a randomly initialized {preset_name} and saving it as a HF checkpoint"):
        save_checkpoint(build_model(config, seed=0), checkpoint, tokenizer_file=tokenizer.path)
        model = load_checkpoint(checkpoint)

    photos = _sample_photos()
    ids = tokenizer(CAPTIONS)
    start = time.perf_counter()
    with torch.no_grad():
        image_emb = model.encode_image(torch.from_numpy(preprocess(list(photos.values()), spec)))
        text_emb = model.encode_text(torch.from_numpy(ids))
        cosines = image_emb @ text_emb.T
    elapsed = time.perf_counter() - start

    params = parameter_count(config)
    console.print(
        f"[bold]checkpoint[/] {checkpoint}  ({params['total'] / 1e6:.1f}M parameters, "
        f"embedding dim {config.embed_dim}, untrained)"
    )
    tokens = Table(title="Gemma 256k tokenizer, big_vision semantics (first ids, EOS = 1, pad = 0)")
    tokens.add_column("caption")
    tokens.add_column("token ids")
    for caption, row in zip(CAPTIONS, ids, strict=True):
        tokens.add_row(caption, " ".join(str(i) for i in row[:12]) + " ...")
    console.print(tokens)

    scores = Table(title=f"cosine <img, txt> of the untrained model ({elapsed * 1000:.0f} ms for all)")
    scores.add_column("image")
    for caption in CAPTIONS:
        scores.add_column(caption[:14])
    for name, row in zip(photos, cosines.tolist(), strict=True):
        scores.add_row(name, *(f"{c:+.3f}" for c in row))
    console.print(scores)
    console.print("[green]Built, not yet chained into this demo[/] (run them by hand):")
    for step in BY_HAND:
        console.print(f"  - {step}")
    console.print("[yellow]Not built yet[/]:")
    for step in NOT_BUILT_YET:
        console.print(f"  - {step}")
