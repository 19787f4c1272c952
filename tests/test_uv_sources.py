"""tools/uv_sources.py: `make setup` gives uv the package sources pip is configured with."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "tools" / "uv_sources.py"


def uv_options(tmp_path: Path, config: str, **env: str) -> list[str]:
    (tmp_path / "pip.conf").write_text(config)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    clean.update(PIP_CONFIG_FILE=str(tmp_path / "pip.conf"), **env)
    out = subprocess.run([sys.executable, str(SCRIPT)], env=clean, capture_output=True, text=True, check=True)
    return shlex.split(out.stdout)


def test_pip_conf_and_environment_become_uv_options(tmp_path):
    config = "[global]\nindex-url = https://mirror.example/simple\nextra-index-url = file:///a file:///b\n"
    options = uv_options(tmp_path, config, PIP_FIND_LINKS="/wheels /more-wheels")
    assert options[:2] == ["--index-strategy", "unsafe-best-match"]  # pip weighs every index alike
    pairs = list(zip(options[2::2], options[3::2], strict=True))
    assert ("--index-url", "https://mirror.example/simple") in pairs
    assert [v for k, v in pairs if k == "--extra-index-url"] == ["file:///a", "file:///b"]
    assert [v for k, v in pairs if k == "--find-links"] == ["/wheels", "/more-wheels"]


def test_the_environment_wins_over_pip_conf(tmp_path):
    options = uv_options(tmp_path, "[global]\nfind-links = /from-the-file\n", PIP_FIND_LINKS="/from-env")
    assert options == ["--index-strategy", "unsafe-best-match", "--find-links", "/from-env"]


def test_no_pip_configuration_leaves_uv_on_its_defaults(tmp_path):
    assert uv_options(tmp_path, "") == ["--index-strategy", "unsafe-best-match"]
