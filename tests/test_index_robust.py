"""PhotoIndex never answers wrong, never hangs, and says in one line what a user must do: model identity
from the weights, bounded reads, stale caches, dead paths, the WAL, and the faults a disk or a user can
cause (disk full, a damaged catalog or WAL, a directory where a file belongs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siglip2_sdk import Encoder, PhotoIndex
from siglip2_sdk.cli import main
from siglip2_sdk.core.checkpoint import save_checkpoint
from siglip2_sdk.core.config import preset
from siglip2_sdk.core.errors import Siglip2Error
from siglip2_sdk.core.model import build_model
from siglip2_sdk.index import CatalogError

from fixtures import solid_image, tiny_checkpoint

COLORS = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 230, 230), (230, 20, 230)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("robust"), seed=2)


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return Encoder.load(checkpoint)


def photos_in(folder: Path, count: int = 6, first: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        color = COLORS[i % len(COLORS)]
        solid_image(tuple((c + 7 * i) % 256 for c in color), (40 + 4 * i, 36)).save(folder / f"p{i:02d}.png")
    return folder


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the command line; it must exit 2 with exactly one line on stderr and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging the suite: what a FIFO did to `add`."""

    def expired(*_):
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --- 1. a long-lived index answers from the catalog as it is now ------------------------------------

WRITER = """
import os, sys
from pathlib import Path
from siglip2_sdk import Encoder, PhotoIndex
photos, index_dir = Path(sys.argv[2]), sys.argv[3]
with PhotoIndex.open(index_dir, Encoder.load(sys.argv[1])) as index:
    (photos / "b-rocket.png").unlink()
    index.add(photos)                                   # frees the rocket's vector id
    Path(sys.argv[4]).rename(photos / "c-new.png")
    index.add(photos)                                   # the new photo's vector takes that id again
"""


def test_an_open_index_sees_another_process_delete_and_add_reusing_a_vector_id(checkpoint, encoder, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    solid_image((200, 120, 40)).save(photos / "a-cat.png")
    solid_image((20, 40, 220)).save(photos / "b-rocket.png")
    solid_image((30, 220, 30)).save(tmp_path / "new.png")
    new = tmp_path / "new-copy.png"
    shutil.copy(tmp_path / "new.png", new)
    with PhotoIndex.open(tmp_path / "index", encoder) as reader:
        reader.add(photos)
        assert [Path(h.path).name for h in reader.search(photos / "a-cat.png", k=2)] == [
            "a-cat.png",
            "b-rocket.png",
        ]
        writer = [
            sys.executable,
            "-c",
            WRITER,
            str(checkpoint),
            str(photos),
            str(tmp_path / "index"),
            str(new),
        ]
        subprocess.run(writer, check=True, timeout=300)
        best = reader.search(tmp_path / "new.png", k=1)
        assert [Path(h.path).name for h in best] == ["c-new.png"]
        assert best[0].score == pytest.approx(1.0, abs=1e-5)
        assert sorted(Path(h.path).name for h in reader.search("a photo", k=10)) == ["a-cat.png", "c-new.png"]
        cat, green = encoder.embed_images([photos / "a-cat.png", tmp_path / "new.png"])
        hits = reader.search_by_vector(cat, k=2)
        assert [Path(h.path).name for h in hits] == ["a-cat.png", "c-new.png"]
        assert hits[1].score == pytest.approx(float(cat @ green), abs=1e-5)  # its true cosine


# --- 2. the model is its weights -----------------------------------------------------------------


def test_an_index_follows_the_weights_not_the_folder_name(checkpoint, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint, folder)
    with PhotoIndex.open(tmp_path / "index", Encoder.load(folder)) as index:
        index.add(photos_in(tmp_path / "photos", 2))
    # The same weights, named with a trailing slash: the same model.
    with PhotoIndex.open(tmp_path / "index", Encoder.load(f"{folder}/")) as index:
        assert len(index) == 2
    # Other weights saved into the same folder: another model, refused.
    save_checkpoint(build_model(preset("tiny"), seed=9), folder, tokenizer_file=checkpoint / "tokenizer.json")
    with pytest.raises(Siglip2Error, match="holds vectors of another model"):
        PhotoIndex.open(tmp_path / "index", Encoder.load(folder))


def test_an_index_from_before_weights_digests_says_how_to_rebuild(encoder, tmp_path):
    with PhotoIndex.open(tmp_path / "index", encoder):
        pass
    with sqlite3.connect(tmp_path / "index" / "catalog.sqlite") as db:  # as format 1 wrote it
        db.execute("UPDATE meta SET value = '1' WHERE key = 'format'")
        db.execute("DELETE FROM meta WHERE key = 'model'")
    with pytest.raises(CatalogError, match="earlier siglip2-sdk.*rebuild it"):
        PhotoIndex.open(tmp_path / "index", encoder)


# --- 3. files that are not photos never hang or fill memory ----------------------------------------


def test_fifos_devices_and_huge_sparse_files_are_skipped_with_a_reason(encoder, tmp_path):
    photos = photos_in(tmp_path / "photos", 2)
    os.mkfifo(photos / "x.jpg")
    (photos / "zero.jpg").symlink_to("/dev/zero")
    with open(photos / "big.jpg", "wb") as f:  # 2 GB that take no disk
        f.truncate(2 * 2**30)
    with deadline(60), PhotoIndex.open(tmp_path / "index", encoder) as index:
        report = index.add(photos)
        failed = {Path(path).name: reason for path, reason in report.failed}
        assert report.added == 2 and set(failed) == {"x.jpg", "zero.jpg", "big.jpg"}
        assert "not a regular file" in failed["x.jpg"] and "not a regular file" in failed["zero.jpg"]
        assert "too large" in failed["big.jpg"]
        for name in ("x.jpg", "zero.jpg"):  # and asked directly, the encoder refuses them too
            with pytest.raises(Siglip2Error, match="not a regular file"):
                encoder.embed_images([photos / name])


# --- 4. user-level problems are one line -----------------------------------------------------------


@pytest.mark.parametrize("k", [2.5, "5", None, True, 0])
def test_a_k_that_is_not_a_positive_whole_number_is_a_clear_error(encoder, tmp_path, k):
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos_in(tmp_path / "photos", 2))
        with pytest.raises(Siglip2Error, match="k must be"):
            index.search("red", k=k)
        with pytest.raises(Siglip2Error, match="k must be"):
            index.search_by_vector(np.ones(encoder.dim, np.float32), k=k)
        assert len(index.search("red", k=np.int64(1))) == 1  # numpy's integers are whole numbers


@pytest.fixture
def cli_index(checkpoint, tmp_path):
    photos = photos_in(tmp_path / "photos", 3)
    assert main(["index", str(photos), "--bundle", str(checkpoint), "--index", str(tmp_path / "i")]) == 0
    return tmp_path / "i"


def test_search_errors_a_user_makes_are_one_line(cli_index, tmp_path, capsys):
    capsys.readouterr()
    err = one_line_error(
        capsys, ["search", "red", "--index", str(cli_index), "--html", str(tmp_path / "no/x.html")]
    )
    assert "does not exist" in err
    err = one_line_error(capsys, ["search", os.fsdecode(b"caf\xe9"), "--index", str(cli_index)])
    assert "UTF-8" in err


@pytest.mark.parametrize("how", ["truncated", "garbage-header", "text-file", "empty-tables"])
def test_a_damaged_catalog_is_one_line_saying_how_to_rebuild(cli_index, checkpoint, tmp_path, capsys, how):
    catalog = cli_index / "catalog.sqlite"
    content = catalog.read_bytes()
    if how == "truncated":
        catalog.write_bytes(content[: len(content) // 3])
    elif how == "garbage-header":
        catalog.write_bytes(os.urandom(100) + content[100:])
    elif how == "text-file":
        catalog.write_text("these are my notes, not a database\n" * 50)
    else:
        catalog.unlink()
        sqlite3.connect(catalog).execute("CREATE TABLE other (x)").connection.commit()
    capsys.readouterr()
    err = one_line_error(capsys, ["search", "red", "--index", str(cli_index)])
    assert "rebuild" in err or "not a photo index" in err
    photos = str(tmp_path / "photos")
    err = one_line_error(capsys, ["index", photos, "--bundle", str(checkpoint), "--index", str(cli_index)])
    assert "rebuild" in err


# --- 5. a finished add lives in the main file --------------------------------------------------------


@pytest.mark.parametrize("wal", ["lost", "damaged"])
def test_a_finished_add_survives_losing_or_damaging_the_wal(encoder, tmp_path, wal):
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos_in(tmp_path / "photos", 6))
        # What a crash, a backup tool or a sync client leaves while the index is still open: the main
        # file, with the -wal file gone or garbled.
        copy = tmp_path / "copy"
        copy.mkdir()
        shutil.copy(tmp_path / "index" / "catalog.sqlite", copy / "catalog.sqlite")
        if wal == "damaged":
            (copy / "catalog.sqlite-wal").write_bytes(os.urandom(8192))
    with PhotoIndex.open(copy, encoder) as reopened:
        assert len(reopened) == 6
        assert reopened.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        best = reopened.search(tmp_path / "photos" / "p03.png", k=1)[0]
        assert Path(best.path).name == "p03.png"


# --- 6. no dead or duplicate hits --------------------------------------------------------------------


def test_a_renamed_folder_gives_each_photo_once_and_no_dead_paths(encoder, tmp_path, capsys, checkpoint):
    photos = photos_in(tmp_path / "photos", 6)
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos)
        photos.rename(tmp_path / "renamed")
        index.add(tmp_path / "renamed")
        hits = index.search("a photo", k=20)
        assert len(hits) == 6 and all(os.path.exists(h.path) for h in hits)
        assert all("renamed" in h.path for h in hits)
        assert len(index) == 12  # the old entries are still in the catalog, never answered ...
        assert index.forget_missing() == 6 and len(index) == 6  # ... until forgotten
        assert index.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 6
    (tmp_path / "renamed").rename(tmp_path / "again")
    argv = ["index", "--forget-missing", "--bundle", str(checkpoint), "--index", str(tmp_path / "index")]
    assert main(argv) == 0
    assert "6 removed" in capsys.readouterr().out


def test_a_photo_deleted_after_its_add_is_never_an_answer(encoder, tmp_path):
    photos = photos_in(tmp_path / "photos", 6)
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        index.add(photos)
        (photos / "p02.png").unlink()
        hits = index.search(photos / "p03.png", k=6)
        assert len(hits) == 5 and "p02.png" not in {Path(h.path).name for h in hits}
        assert index.search(solid_image((1, 2, 3)), k=5)  # k results still, from those that exist


# --- 9. the formats phones and browsers write ---------------------------------------------------


def test_heic_and_avif_photos_are_indexed(encoder, tmp_path):
    pytest.importorskip("pillow_heif", reason="HEIC comes with the heic extra (pillow-heif)")
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF")
    photos = tmp_path / "photos"
    photos.mkdir()
    from siglip2_sdk.core import preprocess

    preprocess._register_heif()  # to write one; reading registers it by itself
    solid_image((220, 30, 30), (64, 48)).save(photos / "phone.heic", format="HEIF")
    solid_image((30, 30, 220), (64, 48)).save(photos / "browser.avif", format="AVIF")
    with PhotoIndex.open(tmp_path / "index", encoder) as index:
        report = index.add(photos)
        assert (report.added, report.failed) == (2, [])
        best = index.search(solid_image((30, 30, 220), (64, 48)), k=1)[0]
        assert Path(best.path).name == "browser.avif"


def test_a_heic_photo_without_its_plugin_says_which_extra_reads_it(tmp_path):
    pytest.importorskip("pillow_heif")
    from siglip2_sdk.core import preprocess

    preprocess._register_heif()
    photo = tmp_path / "phone.heic"
    solid_image((220, 30, 30), (64, 48)).save(photo, format="HEIF")
    without_plugin = (
        "import sys; sys.modules['pillow_heif'] = None\n"  # as if the heic extra were not installed
        "from siglip2_sdk.core.preprocess import load_image\n"
        "from siglip2_sdk.core.errors import ImageLoadError\n"
        "try: load_image(sys.argv[1])\n"
        "except ImageLoadError as exc: print(exc.reason)\n"
    )
    done = subprocess.run([sys.executable, "-c", without_plugin, str(photo)], capture_output=True, text=True)
    assert "pip install 'siglip2-sdk[heic]'" in done.stdout, done.stderr


# --- faults: disk full, a directory where the ANN file goes ------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs: what a full disk looks like to SQLite."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_during_add_is_one_line_and_loses_nothing_committed(
    checkpoint, encoder, small_disk, tmp_path, capsys
):
    index_dir = small_disk / "index"
    photos = photos_in(tmp_path / "photos", 4)
    with PhotoIndex.open(index_dir, encoder) as index:
        index.add(photos)
    filler = small_disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as f:  # fill the disk to the last byte
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    photos_in(photos, 40, first=4)
    capsys.readouterr()
    argv = ["index", str(photos), "--bundle", str(checkpoint), "--index", str(index_dir), "--batch-size", "4"]
    err = one_line_error(capsys, argv)
    assert "full" in err and "free some space" in err
    filler.unlink()
    with PhotoIndex.open(index_dir, encoder) as index:
        assert index.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert len(index) >= 4  # the first add is all there
        report = index.add(photos)
        assert len(index) == 44 and report.failed == []
        assert Path(index.search(photos / "p17.png", k=1)[0].path).name == "p17.png"


def test_a_directory_named_like_the_ann_file_is_one_line(tmp_path):
    from test_index_ann import SyntheticModel, clustered, put

    (tmp_path / "ann.faiss").mkdir()
    with PhotoIndex.open(tmp_path, SyntheticModel(), ann_threshold=100) as index:
        put(index, clustered(600, seed=1), 0)
        with pytest.raises(CatalogError, match="search cache.*safe to delete"):
            index.add([])
        (tmp_path / "ann.faiss").rmdir()
        index.add([])
        assert (tmp_path / "ann.faiss").is_file()
