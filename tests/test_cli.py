"""The command line: help, version, `info`, and one clear line (exit 2) for user errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from siglip2_sdk import __version__
from siglip2_sdk.cli import main
from siglip2_sdk.cli.common import native_output_to
from siglip2_sdk.cli.search import captions_beside, contact_sheet
from siglip2_sdk.core.checkpoint import save_checkpoint
from siglip2_sdk.core.config import preset
from siglip2_sdk.core.model import build_model
from siglip2_sdk.index import Hit

from fixtures import build_fake_corpus, make_bundle, write_tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_checkpoint(build_model(preset("tiny")), tmp_path_factory.mktemp("cli") / "ckpt")


def test_console_script_prints_version():
    script = Path(sys.executable).with_name("siglip2-sdk")  # installed beside the interpreter running us
    result = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"siglip2-sdk {__version__}"


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "info" in capsys.readouterr().out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_info_describes_a_checkpoint(tiny_checkpoint, capsys):
    assert main(["info", str(tiny_checkpoint), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["kind"] == "checkpoint"
    assert facts["embedding dim"] == 32
    assert facts["image preprocessing"]["size"] == [32, 32]


def test_info_table_is_readable(tiny_checkpoint, capsys):
    assert main(["info", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "32px, patch 8" in out


def test_info_describes_a_bundle_and_its_integrity(tmp_path, capsys):
    make_bundle(tmp_path)
    (tmp_path / "text.onnx").write_bytes(b"damaged!!!")
    assert main(["info", str(tmp_path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["kind"] == "bundle" and facts["runtime"] == "onnxruntime"
    assert "does not match the manifest" in facts["integrity"]


def test_user_error_is_one_line_and_exit_2(tmp_path):
    # A real process, so a traceback anywhere on the way would show in stderr.
    result = subprocess.run(
        [sys.executable, "-m", "siglip2_sdk", "info", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": ""},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "no checkpoint folder" in result.stderr


def test_unknown_alias_offline_says_how_to_provide_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    assert main(["info", "g16"]) == 2
    err = capsys.readouterr().err
    assert "google/siglip2-giant-opt-patch16-256" in err and "hf download" in err


def test_bad_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["info"])
    assert exit_.value.code == 2


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-corpus")
    build_fake_corpus(root)
    return root / "corpus"


def test_eval_measures_a_checkpoint_on_a_split(small_corpus, tmp_path, capsys):
    tokenizer = write_tiny_tokenizer(tmp_path / "tokenizer.json")
    checkpoint = save_checkpoint(build_model(preset("tiny")), tmp_path / "ckpt", tokenizer_file=tokenizer)
    out = tmp_path / "eval.json"
    assert (
        main(["eval", str(checkpoint), "--data", str(small_corpus), "--split", "train", "--json", str(out)])
        == 0
    )
    results = json.loads(out.read_text())
    assert results["runtime"] == "torch" and results["split"] == "train"
    assert set(results["retrieval"]) == {"all", "en", "de"}
    assert 0.0 <= results["retrieval"]["all"]["text_to_image"]["R@1"] <= 1.0
    assert "shapes/kind" in results["zero_shot"]
    assert "retrieval" in capsys.readouterr().out


def test_eval_on_a_missing_split_is_a_user_error(small_corpus, tmp_path, capsys):
    tokenizer = write_tiny_tokenizer(tmp_path / "tokenizer.json")
    checkpoint = save_checkpoint(build_model(preset("tiny")), tmp_path / "ckpt", tokenizer_file=tokenizer)
    assert main(["eval", str(checkpoint), "--data", str(tmp_path), "--split", "test"]) == 2
    assert "has no shards for split 'test'" in capsys.readouterr().err


def test_contact_sheet_shows_the_captions_beside_the_photos_escaped(tmp_path):
    (tmp_path / "captions.json").write_text(
        json.dumps(
            {"apple.png": {"de": "ein Apfel", "en": "a <red> apple & co"}, "pear.png": {"fr": "une poire"}}
        )
    )
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "captions.json").write_text("not json")  # not the demo's: its photos go by file name
    hits = [Hit(str(tmp_path / name), 0.5) for name in ("apple.png", "pear.png", "plum.png")]
    hits.append(Hit(str(other / "fig <1>.png"), 0.25))
    captions = captions_beside(hit.path for hit in hits)
    assert captions == {hits[0].path: "a <red> apple & co", hits[1].path: "une poire"}
    page = contact_sheet("what's <this>?", [("fruit & more", hits)], captions)
    assert "<title>what&#x27;s &lt;this&gt;?</title>" in page and "<h2>fruit &amp; more</h2>" in page
    figcaptions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert figcaptions == [
        "0.500 a &lt;red&gt; apple &amp; co",
        "0.500 une poire",
        "0.500 plum.png",
        "0.250 fig &lt;1&gt;.png",
    ]
    assert "<red>" not in page


def test_library_warnings_go_to_the_log_file_not_the_terminal(tmp_path, capsys):
    import logging

    from siglip2_sdk.cli.common import library_logs_to

    pytree = logging.getLogger("torch.utils._pytree")
    handlers = pytree.handlers[:]
    with library_logs_to(tmp_path / "out" / "libraries.log"):
        logging.getLogger("torchao").warning("Failed to load _C_mxfp8.so")
        pytree.warning("KernelPreference is an Enum subclass")
        logging.getLogger("siglip2_sdk").warning("ours stays")
    assert "Failed to load" not in capsys.readouterr().err
    log = (tmp_path / "out" / "libraries.log").read_text()
    assert "Failed to load _C_mxfp8.so" in log and "KernelPreference" in log and "ours" not in log
    assert pytree.handlers == handlers and pytree.propagate
    (tmp_path / "a-file").write_text("")  # where the folder would go: the command reports that itself
    with library_logs_to(tmp_path / "a-file" / "libraries.log"):
        logging.getLogger("torchao").warning("dropped")
    assert (tmp_path / "a-file").read_text() == "" and "dropped" not in capsys.readouterr().err


def test_native_output_goes_to_the_log_and_python_output_to_the_terminal(tmp_path, capfd):
    log = tmp_path / "logs" / "demo.log"
    with native_output_to(log):
        os.write(1, b"from a native library\n")
        os.write(2, b"and its warnings\n")
        print("a progress line")
        print("a message", file=sys.stderr)
    os.write(1, b"the demo's own line\n")
    assert log.read_text().split("\n")[:2] == ["from a native library", "and its warnings"]
    captured = capfd.readouterr()
    assert "a progress line" in captured.out and "a message" in captured.err
    assert "the demo's own line" in captured.out and "native" not in captured.out + captured.err
