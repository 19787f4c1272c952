"""The wheel holds every module of the source tree (the stage folders map onto siglip2_sdk.*)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder -> where its modules land in the wheel: every stage folder pyproject.toml maps.
FOLDERS = ("core", "data", "distill", "export", "runtimes", "bench", "cli")
STAGES = {"sdk": "siglip2_sdk", **{folder: f"siglip2_sdk/{folder}" for folder in FOLDERS}}


def test_wheel_contains_every_module(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp_path,
            ROOT,
        ],
        check=True,
        capture_output=True,
    )
    names = set(zipfile.ZipFile(next(tmp_path.glob("*.whl"))).namelist())
    expected = {
        f"{STAGES[folder]}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder in STAGES
        for path in (ROOT / folder).rglob("*.py")
    }
    assert expected <= names, sorted(expected - names)
