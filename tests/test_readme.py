"""Every code block in README.md runs: Python blocks as they are, shell blocks line by line.

They run in a sandbox laid out like the `artifacts/` folder `make demo` leaves, at tiny scale: the fake
corpus, a `tiny` student checkpoint and bundles exported from it under the README's names. What
cannot run here as written (multi-GB teachers, 1,000 shards, 8 GPUs) goes through SUBSTITUTIONS.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from fixtures import build_fake_corpus, solid_image, write_tiny_tokenizer

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent  # the venv's bin: siglip2-sdk, torchrun

# (what the README says, what runs here instead), applied in this order to every shell command.
SUBSTITUTIONS = [
    # Real teachers and the B/32 init are multi-GB hub downloads: tiny HF-format checkpoints stand in.
    ("--teacher g16", "--teacher ./teacher"),
    ("google/siglip2-base-patch32-256", "./b32-init"),
    # A thousand shards of the user's pairs: two img2dataset-layout shards, still a brace pattern.
    ("{000000..000999}", "{000000..000001}"),
    # A GPU-scale run: a couple of small steps, enough to exercise selection, KD and the checkpoint.
    ("--batch-size 1024", "--batch-size 8"),
    ("--steps 20000", "--steps 2"),
    # Eight GPUs: two CPU processes under gloo, on a port no other test uses (test_train: 29531, 29533).
    ("--nproc_per_node 8", "--nproc_per_node 2 --master_port 29541"),
]
# Six lowerings take minutes even for a tiny model on 2 cores, so the default run exports the bundle
# the README's next line evaluates; test_export.py covers every target, and the slow test below runs
# the README's full matrix.
FAST_SUBSTITUTIONS = [("--to onnx,tflite,executorch --precision fp32,int8", "--to tflite --precision fp32")]
# Run elsewhere, so here only checked to be there: the Android core's JVM tests are a step of
# `make test` (Kotlin and JUnit would be installed on first use, minutes), see the Makefile.
CHECKED_NOT_RUN = {"android_demo/run-jvm-tests"}
# The README's one block without a language: the architecture picture, not code.
DIAGRAM_MARK = "HF checkpoint ─► distill"


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int  # 1-based line of the opening fence

    @property
    def name(self) -> str:
        return f"{self.language or 'diagram'}-line{self.line}"


def readme_blocks() -> list[Block]:
    tokens = MarkdownIt().parse(README.read_text(encoding="utf-8"))
    return [Block(t.info.strip(), t.content, t.map[0] + 1) for t in tokens if t.type == "fence"]


CODE_BLOCKS = [block for block in readme_blocks() if block.language]


def commands(code: str) -> list[str]:
    """A shell block's commands: continuations joined, comments and blank lines dropped."""
    joined = code.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if shlex.split(line, comments=True)]


def substituted(command: str, table: list[tuple[str, str]]) -> str:
    for readme, here in table:
        command = command.replace(readme, here)
    return command


def test_the_only_block_without_a_language_is_the_diagram():
    # A code block without a language would dodge the tests below, so none may exist.
    unlabelled = [block for block in readme_blocks() if not block.language]
    assert len(unlabelled) == 1 and DIAGRAM_MARK in unlabelled[0].code, [b.name for b in unlabelled]


def test_every_substitution_still_matches_the_readme():
    # A README edit that a substitution no longer matches would run at full scale (or test nothing).
    shell = [block for block in CODE_BLOCKS if block.language == "bash"]
    code = " ".join(command for block in shell for command in commands(block.code))
    stale = [readme for readme, _ in SUBSTITUTIONS + FAST_SUBSTITUTIONS if readme not in code]
    assert not stale, f"substitutions that match no README command: {stale}"


def test_every_block_is_python_or_bash():
    assert {block.language for block in CODE_BLOCKS} <= {"python", "bash"}
    assert CODE_BLOCKS, "README.md has no code blocks"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """The folders `make demo` leaves, at tiny scale, plus the stand-ins SUBSTITUTIONS name."""
    from siglip2_sdk.core.checkpoint import load_checkpoint, save_checkpoint
    from siglip2_sdk.core.config import preset
    from siglip2_sdk.core.model import build_model
    from siglip2_sdk.export.writer import export_bundle, parity_data_from_shards

    root = tmp_path_factory.mktemp("readme")
    artifacts = root / "artifacts"
    artifacts.mkdir()
    data = build_fake_corpus(root).rename(artifacts / "data")
    (root / "shards").mkdir()
    for number, split in enumerate(("train", "val")):
        shutil.copy(data / f"{split}-000000.tar", root / "shards" / f"{number:06d}.tar")

    tokenizer = write_tiny_tokenizer(root / "tokenizer.json")
    checkpoints = {"teacher": 7, "b32-init": 1, "artifacts/student/final": 3}
    for folder, seed in checkpoints.items():
        save_checkpoint(build_model(preset("tiny"), seed=seed), root / folder, tokenizer_file=tokenizer)

    student = load_checkpoint(root / "artifacts/student/final")
    parity = parity_data_from_shards(str(data / "test-*.tar"), 256)
    # Under the demo's model id (the five-line example) and the `export` command's (index, bench); the
    # LiteRT bundle the README evaluates comes from its own export line, run just before.
    for model_id in ("siglip2-demo-student", "student"):
        result = export_bundle(student, model_id, "onnx", "fp32", artifacts / "bundles", parity)
        assert result.manifest.status == "ok", result.problems

    (artifacts / "photos").mkdir()
    for number, color in enumerate([(220, 30, 30), (30, 200, 40), (40, 60, 230), (240, 240, 20)]):
        solid_image(color, (48, 36)).save(artifacts / "photos" / f"photo-{number}.jpg")
    return root


def environment(sandbox: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "SIGLIP2_SDK_CACHE": str(sandbox / "cache"),  # teacher caches stay in the sandbox
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def run_shell_command(command: str, sandbox: Path, table: list[tuple[str, str]]) -> None:
    argv = shlex.split(command, comments=True)
    if argv[0] == "make":
        # A dry run in the repository: the targets exist and would run. The real runs are CI
        # (`make test`) and tests/test_demo.py (the pipeline `make demo` runs).
        result = run(["make", "-n", *argv[1:]], REPO, environment(sandbox))
    elif argv[0] in CHECKED_NOT_RUN:
        script = REPO / argv[0]
        assert script.is_file() and os.access(script, os.X_OK), f"{argv[0]} is missing or not executable"
        return
    else:
        result = run(shlex.split(substituted(command, table), comments=True), sandbox, environment(sandbox))
    assert result.returncode == 0, f"`{command}` exited {result.returncode}:\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("block", CODE_BLOCKS, ids=[block.name for block in CODE_BLOCKS])
def test_readme_block_runs(block, sandbox):
    if block.language == "python":
        result = run([sys.executable, "-c", block.code], sandbox, environment(sandbox))
        assert result.returncode == 0, f"block at line {block.line} failed:\n{result.stderr[-3000:]}"
        return
    for command in commands(block.code):
        run_shell_command(command, sandbox, SUBSTITUTIONS + FAST_SUBSTITUTIONS)


def full_matrix_block() -> Block:
    fast = [readme for readme, _ in FAST_SUBSTITUTIONS]
    return next(
        block for block in CODE_BLOCKS if any(text in block.code.replace("\\\n", " ") for text in fast)
    )


@pytest.mark.slow
def test_readme_export_block_with_every_target_and_precision(sandbox):
    from siglip2_sdk.core.bundle import read_manifest

    export, *rest = commands(full_matrix_block().code)
    result = run(shlex.split(export), sandbox, environment(sandbox))
    # A random 32-px model may lose more than the gate allows under int8 (exit 1 by contract); every
    # fp32 bundle must pass.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    bundles = [read_manifest(folder) for folder in (sandbox / "artifacts/bundles").glob("student-*")]
    assert {(m.runtime, m.precision) for m in bundles} >= {
        ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("litert", "fp32"), ("litert", "int8"),
        ("executorch", "fp32"),
    }  # fmt: skip
    assert all(m.status == "ok" for m in bundles if m.precision == "fp32")
    assert (result.returncode == 0) == all(m.status == "ok" for m in bundles)
    for command in rest:
        run_shell_command(command, sandbox, SUBSTITUTIONS)
