"""PhotoIndex: incremental, crash-safe, model-tied offline photo search."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from siglip2_sdk import Encoder, PhotoIndex
from siglip2_sdk import index as index_module
from siglip2_sdk.cli import main
from siglip2_sdk.core.checkpoint import save_checkpoint
from siglip2_sdk.core.config import preset
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.model import build_model

from fixtures import solid_image, tiny_checkpoint

COLORS = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 230, 230), (230, 20, 230)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("index"), seed=2)


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return Encoder.load(checkpoint)


def photo_folder(root: Path) -> Path:
    photos = root / "photos"
    (photos / "trip").mkdir(parents=True)
    for i, color in enumerate(COLORS):
        solid_image(color, (48 + 8 * i, 40)).save(photos / ("trip" if i % 2 else ".") / f"p{i}.png")
    (photos / "copy-of-p0.png").write_bytes((photos / "p0.png").read_bytes())
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (photos / "notes.jpg").write_text("not a picture")
    (photos / "empty.png").write_bytes(b"")
    return photos


def test_add_records_good_and_bad_files_and_shares_duplicate_vectors(encoder, tmp_path):
    photos = photo_folder(tmp_path)
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        report = index.add(photos, batch_size=2)
        assert report.added == 7 and len(index) == 7
        assert sorted(Path(p).name for p, _ in report.failed) == ["broken.jpg", "empty.png", "notes.jpg"]
        assert all(reason for _, reason in report.failed)
        assert index.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 6


def test_second_add_skips_unchanged_and_sees_changes_and_deletions(encoder, tmp_path):
    photos = photo_folder(tmp_path)
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos)
        again = index.add(photos)
        assert (again.added, again.removed, again.failed) == (0, 0, []) and again.skipped == 10
        solid_image((1, 2, 3), (30, 30)).save(photos / "p0.png")
        os.utime(photos / "p0.png", ns=(1, 1))  # a different mtime for sure
        (photos / "trip" / "p1.png").unlink()
        changed = index.add(photos)
        assert (changed.added, changed.removed) == (1, 1)
        assert len(index) == 6


def test_search_by_text_and_by_image(encoder, tmp_path):
    photos = photo_folder(tmp_path)
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos)
        hits = index.search("a red circle", k=3)
        assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score
        best = index.search(photos / "trip" / "p3.png", k=1)[0]
        assert best.path.endswith("p3.png") and best.score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(Siglip2Error, match="empty"):
            index.search("   ")
        assert index.search("x" * 100_000, k=1)  # an absurdly long query is just a query


def test_an_index_refuses_another_models_vectors(encoder, checkpoint, tmp_path):
    with PhotoIndex.open(tmp_path / "index", encoder):
        pass
    other = tmp_path / "other"
    save_checkpoint(build_model(preset("tiny"), seed=9), other, tokenizer_file=checkpoint / "tokenizer.json")
    with pytest.raises(Siglip2Error, match="holds vectors of another model"):
        PhotoIndex.open(tmp_path / "index", Encoder.load(other))


def test_odd_names_and_link_loops(encoder, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    solid_image((200, 100, 0)).save(os.fsdecode(os.fsencode(photos) + b"/caf\xe9.png"))
    (photos / "loop").symlink_to(photos, target_is_directory=True)
    (photos / "dangling.png").symlink_to(photos / "nowhere.png")
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        report = index.add(photos)
        assert report.added == 1 and [Path(p).name for p, _ in report.failed] == ["dangling.png"]
        assert index.search("red", k=1)[0].path.endswith(".png")


KILLABLE = """
import sys, time
from siglip2_sdk import Encoder, PhotoIndex
encoder = Encoder.load(sys.argv[1])
slow = encoder.embed_images
def embed_slowly(images, batch_size=32):
    time.sleep(0.3)  # stands in for a large model, so the kill lands mid-run
    return slow(images, batch_size)
encoder.embed_images = embed_slowly
PhotoIndex.open(sys.argv[2], encoder).add(sys.argv[3], batch_size=2)
"""


def test_sigkill_mid_run_loses_at_most_a_batch_and_never_corrupts(checkpoint, encoder, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(30):
        solid_image((8 * i, 255 - 8 * i, (37 * i) % 256)).save(photos / f"{i:02d}.png")
    index_dir = tmp_path / "index"
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, str(checkpoint), str(index_dir), str(photos)])
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and done < 6:
        time.sleep(0.2)
        if (index_dir / "catalog.sqlite").exists():
            try:
                with sqlite3.connect(index_dir / "catalog.sqlite") as db:
                    done = db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0]
            except sqlite3.OperationalError:  # the schema is still being created
                pass
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 6 <= done < 30, "the kill should land mid-run"
    with PhotoIndex.open(index_dir, encoder) as index:
        assert index.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        committed = len(index)
        assert committed % 2 == 0  # whole batches only
        report = index.add(photos, batch_size=8)
        assert report.added == 30 - committed and report.skipped == committed
        rows = index.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT path), COUNT(vector_id) FROM files"
        ).fetchone()
        assert rows == (30, 30, 30)


def test_index_and_search_commands(checkpoint, tmp_path, capsys):
    photos = photo_folder(tmp_path)
    assert main(["index", str(photos), "--bundle", str(checkpoint), "--index", str(tmp_path / "i")]) == 0
    out = capsys.readouterr()
    assert "7 added" in out.out and "3 failed" in out.out and "broken.jpg" in out.err
    assert main(["search", "a red circle", "--index", str(tmp_path / "i"), "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and {"path", "score"} <= set(hits[0])
    assert main(["search", "", "--index", str(tmp_path / "i")]) == 2
    assert main(["search", "red", "--index", str(tmp_path / "missing")]) == 2


def test_a_file_that_changes_while_read_is_recorded_and_retried(encoder, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    solid_image((10, 200, 10)).save(photos / "busy.png")
    real_read = index_module.read_image_file

    def read_while_camera_writes(path):
        content = real_read(path)
        os.utime(path, ns=(5, 5))  # the file is rewritten while we read it
        return content

    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        monkeypatch.setattr(index_module, "read_image_file", read_while_camera_writes)
        report = index.add(photos)
        assert report.added == 0 and report.failed[0][1].startswith("changed while being read")
        monkeypatch.setattr(index_module, "read_image_file", real_read)
        assert index.add(photos).added == 1  # the next add picks it up


def test_zero_shot_tags_come_from_the_stored_vector(encoder, tmp_path):
    photos = photo_folder(tmp_path)
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos)
        tags = index.tags(photos / "p0.png", ["red", "green", "blue"])
        assert [label for label, _ in tags] != [] and all(0.0 < p < 1.0 for _, p in tags)
        assert tags == sorted(tags, key=lambda pair: -pair[1])
        expected = encoder.zero_shot([photos / "p0.png"], [label for label, _ in tags])[0]
        assert [p for _, p in tags] == pytest.approx(list(expected), rel=1e-4)
        with pytest.raises(Siglip2Error, match="not in the index"):
            index.tags(photos / "broken.jpg", ["red"])


def test_search_writes_a_contact_sheet(checkpoint, tmp_path, capsys):
    photos = photo_folder(tmp_path)
    assert main(["index", str(photos), "--bundle", str(checkpoint), "--index", str(tmp_path / "i")]) == 0
    sheet = tmp_path / "hits.html"
    assert (
        main(["search", "a <red> circle", "--index", str(tmp_path / "i"), "-k", "3", "--html", str(sheet)])
        == 0
    )
    page = sheet.read_text()
    assert page.count("<figure>") == 3 and "a &lt;red&gt; circle" in page and "file://" in page
