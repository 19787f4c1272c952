"""`siglip2-sdk bench` on a tiny model: every figure reported, the tables and plots written, the FLOPs
formula against torch's counter, the peak formula, and clean errors."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from siglip2_sdk.bench import BASELINE_NAME, machine_info, per_cycle_rates
from siglip2_sdk.cli import main
from siglip2_sdk.core.bundle import write_manifest
from siglip2_sdk.core.checkpoint import load_checkpoint
from siglip2_sdk.core.config import ModelConfig, TextConfig, VisionConfig, preset, tower_flops
from siglip2_sdk.core.model import SiglipModel
from siglip2_sdk.export.parity import Thresholds
from siglip2_sdk.export.writer import ParityData, export_bundle

import fixtures
from fixtures import solid_image, tiny_checkpoint

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
SHAPES = ("circle", "square")
TINY_RUN = ["--runs", "3", "--batch-runs", "2", "--warmup", "1", "--batch-size", "4", "--index-images", "6"]


def write_shard(path, count: int = 12):
    """A WebDataset shard of distinct solid-colour images, one English caption and a label each."""

    def example(i):
        color, shape = list(COLORS)[i % 3], SHAPES[i % 2]
        r, g, b = COLORS[color]
        meta = {"captions": {"en": f"a {color} {shape}"}, "labels": {"color": color}, "source": "fake"}
        return solid_image((r, g, (b + 7 * i) % 256), size=(24 + i, 20)), meta

    return fixtures.write_shard(path, (example(i) for i in range(count)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny checkpoint, a test shard, and one int8 bundle twice: as the gate left it (failed, which
    the bench measures all the same) and accepted."""
    root = tmp_path_factory.mktemp("bench")
    checkpoint = tiny_checkpoint(root, seed=3)
    shard = write_shard(root / "test-000000.tar")
    parity = ParityData([solid_image((40 * i, 255 - 40 * i, 90)) for i in range(6)], ["a red circle"] * 6)
    impossible = Thresholds(cosine_min=1.0, agreement=1.0)
    failed = export_bundle(load_checkpoint(checkpoint), "tiny", "onnx", "int8", root, parity, impossible)
    accepted = shutil.copytree(failed.folder, root / "tiny-accepted")
    write_manifest(accepted, replace(failed.manifest, status="ok"))
    return root, checkpoint, shard, failed.folder, accepted


@pytest.fixture(scope="module")
def report(setup):
    root, checkpoint, shard, failed, accepted = setup
    code = main(["bench", str(accepted), str(failed), "--checkpoint", str(checkpoint), "--data", str(shard),
                 "--out", str(root / "report"), *TINY_RUN])  # fmt: skip
    assert code == 0
    return json.loads((root / "report" / "report.json").read_text()), root / "report"


def test_report_has_every_figure_for_every_model(report):
    report, _ = report
    names = [s["name"] for s in report["subjects"]]
    assert names == [BASELINE_NAME, "tiny-accepted", "tiny-onnxruntime-int8"]
    for subject in report["subjects"]:
        for tower in ("image", "text"):
            speed = subject["speed"][tower]
            assert speed["batch1_runs"] == 3 and speed["batch_runs"] == 2
            assert 0 < speed["batch1_median_ms"] <= speed["batch1_p90_ms"]
            assert speed["batch_per_s"] > 0
            assert 0 < subject["compute"][tower]["share_of_peak"] < 1
            assert subject["speedup_vs_baseline"][f"{tower}_batch1"] > 0
        probe = subject["probe"]
        assert probe["peak_rss_mb"] > probe["rss_before_load_mb"] > 0
        assert probe["first_load_s"] > 0 and subject["load_s"] > 0
        assert subject["size_mb"] > 0
        if subject["kind"] == "bundle":  # read from its files (weight-only int8: no int8 products)
            graphs = subject["graphs"]
            assert all(graphs[t]["gflop"] > 0 and graphs[t]["int8_share"] == 0 for t in ("image", "text"))
        else:
            assert subject["graphs"] is None
        index = subject["index"]
        assert index["images"] == 6 and index["failed"] == 0 and index["ratio"] > 0
        accuracy = subject["accuracy"]
        for name in ("zero_shot_top1", "t2i_R@1", "zero_shot_top1_delta_points", "t2i_R@1_delta_points"):
            assert accuracy[name] is not None
    assert report["model"]["flops_per_image"] == tower_flops(preset("tiny"))["image"]
    assert report["machine"]["peak_fp32_gflops"] > 0 and report["versions"]["onnxruntime"]
    assert report["settings"]["accuracy_examples"] == 12


def test_accuracy_is_measured_against_the_float_checkpoint(report):
    report, _ = report
    subjects = {s["name"]: s for s in report["subjects"]}
    baseline = subjects[BASELINE_NAME]["accuracy"]  # transformers runs the same float model
    assert baseline["image_cosine_min"] > 0.9999 and baseline["text_cosine_min"] > 0.9999
    assert baseline["t2i_R@1_delta_points"] == 0 and baseline["zero_shot_top1_delta_points"] == 0
    for name, status in (("tiny-accepted", "ok"), ("tiny-onnxruntime-int8", "failed")):
        subject = subjects[name]
        assert subject["status"] == status and subject["compute"]["peak"] == "int8"
        assert 0.5 < subject["accuracy"]["image_cosine_min"] < 1  # quantized: close, not equal


def test_several_processes_measure_the_same_accuracy_and_memory(setup, report):
    report, _ = report
    root, checkpoint, shard, failed, accepted = setup
    code = main(["bench", str(accepted), str(failed), "--checkpoint", str(checkpoint), "--data", str(shard),
                 "--out", str(root / "report-2"), *TINY_RUN, "--processes", "2"])  # fmt: skip
    assert code == 0
    apart = {s["name"]: s for s in json.loads((root / "report-2" / "report.json").read_text())["subjects"]}
    for subject in report["subjects"]:
        other = apart[subject["name"]]
        for name in ("zero_shot_top1", "t2i_R@1", "i2t_R@1"):
            assert other["accuracy"][name] == subject["accuracy"][name]
        for name in ("image_cosine_min", "text_cosine_mean"):  # one thread against several: rounding
            assert other["accuracy"][name] == pytest.approx(subject["accuracy"][name], abs=1e-5)
        assert other["probe"]["peak_rss_mb"] > other["probe"]["rss_before_load_mb"] > 0


def test_markdown_tables_and_png_plots_are_written(report):
    report, out = report
    text = (out / "report.md").read_text()
    for heading in ("## Speed", "## Compute", "## Size", "## Accuracy", "## End to end"):
        assert heading in text
    assert text.count("tiny-accepted") >= 5 and report["machine"]["cpu"] in text
    for name in ("latency_vs_accuracy.png", "size.png"):
        with Image.open(out / name) as plot:
            assert plot.format == "PNG" and plot.width > 300


# The released B/32 shape, the unit-test one, and an odd one: patches that do not tile the image, text
# wider than the embedding, a short context.
SHAPES_TO_COUNT = {
    **{name: preset(name) for name in ("tiny", "b32")},
    "odd": ModelConfig(
        vision=VisionConfig(image_size=50, patch_size=14, width=48, depth=2, heads=3, mlp_dim=80),
        text=TextConfig(
            vocab_size=300, width=40, depth=3, heads=5, mlp_dim=72, embed_dim=48, context_length=7
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPES_TO_COUNT))
def test_flops_formula_agrees_with_torch_flop_counter(name):
    config = SHAPES_TO_COUNT[name]
    size, length = config.vision.image_size, config.text.context_length
    with torch.device("meta"):  # shapes only: counting needs no weights and no arithmetic
        model = SiglipModel(config)
        inputs = {"image": torch.zeros(1, 3, size, size), "text": torch.zeros(1, length, dtype=torch.long)}
    encoders = {"image": model.encode_image, "text": model.encode_text}
    counted = {}
    for tower, encode in encoders.items():
        # The math kernel spells attention out as matmuls, which the counter sees (the fused CPU one not).
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            encode(inputs[tower])
        counted[tower] = counter.get_total_flops()
    for tower, flops in tower_flops(config).items():
        assert flops == pytest.approx(counted[tower], rel=0.01)


def test_peak_rates_follow_the_instruction_sets():
    avx2 = per_cycle_rates({"avx", "avx2", "fma"})
    assert (avx2["vector_bits"], avx2["fp32"], avx2["int8"]) == (256, 32, 64)  # 8 lanes x FMA x 2 units
    vnni = per_cycle_rates({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"})
    assert (vnni["fp32"], vnni["int8"]) == (64, 256)
    assert per_cycle_rates({"avx", "avx2", "fma", "avx_vnni"})["int8"] == 2 * avx2["int8"]
    assert per_cycle_rates({"avx512f", "amx_int8"})["int8"] == 2048


def test_machine_peak_is_cores_times_clock_times_rate():
    machine = machine_info()
    if machine["clock_mhz"] is None:
        pytest.skip("this machine reports no clock")
    rate = machine["per_cycle_per_core"]["fp32"]
    expected = rate * machine["physical_cores"] * machine["clock_mhz"] / 1000
    assert machine["peak_fp32_gflops"] == pytest.approx(expected)
    assert machine["peak_int8_gops"] >= machine["peak_fp32_gflops"]


def test_measured_peaks_are_rates_the_compute_figures_use():
    from siglip2_sdk.bench.machine import measured_peaks
    from siglip2_sdk.bench.timing import compute_figures

    measured = measured_peaks(threads=1, sizes=(128, 256), runs=2)
    assert measured["fp32_gflops"] > 0.1 and measured["int8_gops"] > 0.1
    machine = {**machine_info(), "measured_peak": measured}
    speed = {tower: {"batch_per_s": 10.0} for tower in ("image", "text")}
    figures = compute_figures(speed, {"image": 10**9, "text": 10**9}, "int8", machine, threads=1)
    assert figures["peak_source"] == "measured" and figures["peak_gops"] == measured["int8_gops"]
    assert figures["image"]["share_of_peak"] == pytest.approx(10 / measured["int8_gops"])
    mixed = compute_figures(
        speed, {"image": 10**9, "text": 10**9}, "int8", machine, threads=1, int8_shares={"image": 0.75}
    )
    seconds_at_peaks = 0.75 / measured["int8_gops"] + 0.25 / measured["fp32_gflops"]  # per GFLOP
    assert mixed["image"]["share_of_mix_peak"] == pytest.approx(10 * seconds_at_peaks)
    assert "share_of_mix_peak" not in mixed["text"]  # no share in int8 known: no mix to speak of
    flags_only = compute_figures(speed, {"image": 10**9, "text": 10**9}, "fp32", machine_info(), threads=1)
    assert flags_only["peak_source"] == "flags"


def test_user_errors_are_one_clean_line(setup, tmp_path, capsys):
    _, checkpoint, _, _, bundle = setup
    other = tiny_checkpoint(tmp_path)
    config = json.loads((other / "config.json").read_text())
    config["vision_config"]["image_size"] = 64
    (other / "config.json").write_text(json.dumps(config))
    cases = {
        "is not a bundle": [str(tmp_path), "--checkpoint", str(checkpoint)],
        "--runs must be at least 1": [str(bundle), "--checkpoint", str(checkpoint), "--runs", "0"],
        "nothing to measure": ["--checkpoint", str(checkpoint), "--baseline", "none"],
        "was not exported from": [str(bundle), "--checkpoint", str(other)],
        "shard file(s) not found": [
            str(bundle),
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(tmp_path / "x.tar"),
        ],
    }
    for message, argv in cases.items():
        assert main(["bench", *argv, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
