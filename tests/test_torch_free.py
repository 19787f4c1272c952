"""`pip install siglip2-sdk[onnx]` without torch: load an ONNX bundle, index photos and search."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from siglip2_sdk.core.checkpoint import load_checkpoint, save_checkpoint
from siglip2_sdk.core.config import preset
from siglip2_sdk.core.model import build_model
from siglip2_sdk.export.writer import ParityData, export_bundle

from fixtures import solid_image, write_tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from pathlib import Path
import siglip2_sdk as s2
encoder = s2.Encoder.load(sys.argv[1])
with s2.PhotoIndex.open(sys.argv[2], encoder) as index:
    report = index.add(sys.argv[3])
    hits = index.search("a red circle", k=2)
assert report.added == 3 and len(hits) == 2, (report, hits)
assert "torch" not in sys.modules
print("ok")
"""


@pytest.mark.slow
def test_onnx_extra_without_torch_indexes_and_searches(tmp_path):
    tokenizer = write_tiny_tokenizer(tmp_path / "tokenizer.json")
    checkpoint = save_checkpoint(build_model(preset("tiny")), tmp_path / "ckpt", tokenizer_file=tokenizer)
    data = ParityData(
        [solid_image((60 * i, 0, 255 - 60 * i)) for i in range(4)], ["red", "blue", "a circle", "a"]
    )
    bundle = export_bundle(load_checkpoint(checkpoint), "tiny", "onnx", "fp32", tmp_path / "b", data).folder
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        solid_image((80 * i, 200, 40)).save(photos / f"{i}.png")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    python = venv / "bin" / "python"
    install = [python, "-m", "pip", "install", "--quiet", "-c", ROOT / "constraints.txt", f"{ROOT}[onnx]"]
    subprocess.run(install, check=True, capture_output=True)
    has_torch = subprocess.run([python, "-c", "import torch"], capture_output=True)
    assert has_torch.returncode != 0, "the onnx extra must not pull torch"
    result = subprocess.run(
        [python, "-c", SCRIPT, bundle, tmp_path / "index", photos], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
