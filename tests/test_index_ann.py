"""PhotoIndex above its ANN threshold: approximate search agrees with exact search, and the persisted
ANN file is a cache of the catalog that is caught up, rebuilt or ignored, never trusted blindly."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siglip2_sdk import Encoder, PhotoIndex
from siglip2_sdk.ann import ANN_FILE, AnnIndex
from siglip2_sdk.core.errors import Siglip2Error

from fixtures import tiny_checkpoint

DIM = 32


@dataclass(frozen=True)
class SyntheticModel:
    """What the catalog needs of an Encoder when vectors are written directly (no photo decoded)."""

    model_id: str = "synthetic"
    dim: int = DIM
    source: str = "none"
    runtime: str = "none"
    weights_digest: str = "synthetic-weights"

    @property
    def model_identity(self) -> str:
        return self.weights_digest


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors in 20 loose clusters, like embeddings of a photo library."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).standard_normal((20, DIM))
    x = centres[rng.integers(0, 20, n)] + rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def put(index: PhotoIndex, vectors: np.ndarray, first: int) -> None:
    """Photos first.. with these vectors, committed as `add` commits a batch."""
    with index.db:
        for number, vector in enumerate(vectors, first):
            vector_id = index.db.execute(
                "INSERT INTO vectors (content_hash, vector) VALUES (?, ?) RETURNING id",
                (f"content-{number}", vector.tobytes()),
            ).fetchone()[0]
            index.db.execute(
                "INSERT INTO files VALUES (?, 0, 0, ?, 'ok', NULL, ?, 0)",
                (photo(number).encode(), f"content-{number}", vector_id),
            )
            Path(photo(number)).touch()  # search returns only files that exist


def remove(index: PhotoIndex, numbers) -> None:
    """Photos gone from disk, as `add` forgets them."""
    with index.db:
        index.db.executemany("DELETE FROM files WHERE path = ?", [(photo(n).encode(),) for n in numbers])
        index.db.execute("DELETE FROM vectors WHERE id NOT IN (SELECT vector_id FROM files)")


# The photos' files (empty: their vectors are written directly), shared by every test here.
PHOTOS = Path(tempfile.gettempdir()) / "siglip2-sdk-ann-test-photos"
PHOTOS.mkdir(exist_ok=True)


def photo(number: int) -> str:
    return f"{PHOTOS}/{number:05d}.jpg"


def refresh(index: PhotoIndex) -> None:
    """What the end of every `add` does."""
    index.add([])


def saved_coverage(folder: Path, model=SyntheticModel()):
    """What the ANN file in `folder` says it covers; None when the index would not trust it."""
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        catalog_id = db.execute("SELECT value FROM meta WHERE key = 'catalog_id'").fetchone()[0]
    ann = AnnIndex.load(folder / ANN_FILE, catalog_id, model.model_identity, model.dim)
    return None if ann is None else ann.coverage


@pytest.fixture
def ann_searches(monkeypatch):
    """Counts the searches answered by the ANN index (the rest were exact)."""
    calls = []
    real = AnnIndex.search
    monkeypatch.setattr(AnnIndex, "search", lambda self, v, k: calls.append(k) or real(self, v, k))
    return calls


def library(folder: Path, n: int = 600, threshold: int = 100) -> PhotoIndex:
    index = PhotoIndex.open(folder, SyntheticModel(), ann_threshold=threshold)
    put(index, clustered(n, seed=1), 0)
    refresh(index)
    return index


def same_as_exact(index: PhotoIndex, queries: np.ndarray, k: int = 10) -> float:
    """Mean recall@k of the default search against exact search."""
    found = [
        len(
            {h.path for h in index.search_by_vector(q, k)}
            & {h.path for h in index.search_by_vector(q, k, exact=True)}
        )
        for q in queries
    ]
    return sum(found) / (k * len(queries))


def test_small_library_is_searched_exactly_and_writes_no_ann_file(tmp_path, ann_searches):
    with library(tmp_path, n=90, threshold=100) as index:
        assert len(index.search_by_vector(clustered(1, seed=2)[0], 5)) == 5
    assert ann_searches == [] and not (tmp_path / ANN_FILE).exists()


def test_ann_search_matches_exact_search_on_a_few_hundred_vectors(tmp_path, ann_searches):
    """At this size each query scans every inverted list (15 lists, 32 probes), so the ANN answer is
    the exact one; the next test covers a library where it is not."""
    with library(tmp_path) as index:
        queries = clustered(20, seed=2)
        assert same_as_exact(index, queries) == 1.0
        hits, exact = (
            index.search_by_vector(queries[0], 10),
            index.search_by_vector(queries[0], 10, exact=True),
        )
        assert [h.path for h in hits] == [h.path for h in exact]  # same photos in the same order,
        assert [h.score for h in hits] == pytest.approx([h.score for h in exact], abs=1e-6)  # exact cosines
    assert len(ann_searches) == 21 and (tmp_path / ANN_FILE).is_file()


def test_recall_stays_high_when_a_query_scans_only_some_lists(tmp_path, ann_searches):
    with library(tmp_path, n=4000, threshold=1000) as index:
        assert index._caught_up_ann().index.nlist > 32  # so 32 probes leave lists unscanned
        assert same_as_exact(index, clustered(30, seed=2)) >= 0.9
    assert len(ann_searches) == 30


def test_the_ann_file_is_caught_up_after_adds_and_deletions(tmp_path, ann_searches):
    with library(tmp_path) as index:
        built = saved_coverage(tmp_path)
        new = clustered(50, seed=3)
        put(index, new, 600)
        remove(index, range(0, 600, 4))  # 150 photos gone
        hits = index.search_by_vector(new[7], 3)  # this process catches up in memory
        assert hits[0].path == photo(607) and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert all(hit.path != photo(0) for hit in index.search_by_vector(clustered(600, seed=1)[0], 10))
        assert saved_coverage(tmp_path) == built  # a search does not rewrite the file for a catch-up
        refresh(index)
    caught_up = saved_coverage(tmp_path)
    assert (caught_up.count, caught_up.trained_on) == (500, built.trained_on)  # incremental, not rebuilt
    with PhotoIndex.open(tmp_path, SyntheticModel(), ann_threshold=100) as reopened:
        assert same_as_exact(reopened, clustered(10, seed=4)) == 1.0
        assert len(reopened.db.execute("SELECT * FROM vector_deletions").fetchall()) == 0  # log pruned


def test_another_process_changes_are_seen_by_an_open_index(tmp_path):
    with (
        library(tmp_path) as reader,
        PhotoIndex.open(tmp_path, SyntheticModel(), ann_threshold=100) as writer,
    ):
        reader.search_by_vector(clustered(1, seed=2)[0])
        put(writer, clustered(5, seed=5), 600)
        remove(writer, [3])
        assert reader.search_by_vector(clustered(5, seed=5)[2], 1)[0].path == photo(602)
        assert photo(3) not in {h.path for h in reader.search_by_vector(clustered(600, seed=1)[3], 5)}


def test_a_reused_vector_id_gets_its_new_vector(tmp_path):
    """SQLite hands the highest id out again once its row is deleted; the deletion log catches that."""
    with library(tmp_path) as index:
        remove(index, [599])
        put(index, clustered(1, seed=6), 600)
        reused = index.db.execute("SELECT MAX(id) FROM vectors").fetchone()[0]
        assert reused == 600  # the id photo 599 had
        best = index.search_by_vector(clustered(1, seed=6)[0], 1)[0]
        assert best.path == photo(600) and best.score == pytest.approx(1.0, abs=1e-5)


def damage(path: Path, how: str) -> None:
    content = path.read_bytes()
    if how == "truncated":
        path.write_bytes(content[: len(content) // 2])
    elif how == "flipped-bytes":
        middle = len(content) // 2
        path.write_bytes(
            content[:middle] + bytes(b ^ 0xFF for b in content[middle : middle + 16]) + content[middle + 16 :]
        )
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "bad-header":
        path.write_bytes(content.replace(b'"count": ', b'"count": 1', 1))


@pytest.mark.parametrize("how", ["truncated", "flipped-bytes", "empty", "garbage", "bad-header"])
def test_a_damaged_ann_file_is_rebuilt_not_trusted(tmp_path, ann_searches, how):
    library(tmp_path).close()
    damage(tmp_path / ANN_FILE, how)
    assert saved_coverage(tmp_path) is None
    with PhotoIndex.open(tmp_path, SyntheticModel(), ann_threshold=100) as index:
        assert same_as_exact(index, clustered(10, seed=2)) == 1.0
    assert ann_searches and saved_coverage(tmp_path).count == 600  # rewritten whole


def test_a_save_killed_midway_leaves_the_previous_file_usable(tmp_path, monkeypatch):
    with library(tmp_path) as index:
        before = saved_coverage(tmp_path)
        put(index, clustered(20, seed=7), 600)

        def killed(fd):
            raise KeyboardInterrupt  # stands in for the process dying before the rename

        monkeypatch.setattr(os, "fsync", killed)
        with pytest.raises(KeyboardInterrupt):
            refresh(index)
        monkeypatch.undo()
    assert saved_coverage(tmp_path) == before
    assert list(tmp_path.glob(f"{ANN_FILE}.*")) == []  # the half-written temp file is gone
    with PhotoIndex.open(tmp_path, SyntheticModel(), ann_threshold=100) as index:
        assert index.search_by_vector(clustered(20, seed=7)[5], 1)[0].path == photo(605)


def test_stray_temp_files_of_killed_saves_are_ignored_and_later_cleaned(tmp_path):
    with library(tmp_path) as index:
        old, recent = tmp_path / f"{ANN_FILE}.killed.tmp", tmp_path / f"{ANN_FILE}.running.tmp"
        old.write_bytes((tmp_path / ANN_FILE).read_bytes()[:1000])  # what SIGKILL mid-write leaves
        recent.write_bytes(b"another process is writing this")
        an_hour_ago = time.time() - 2 * 3600
        os.utime(old, (an_hour_ago, an_hour_ago))
        put(index, clustered(20, seed=8), 600)
        assert index.search_by_vector(clustered(20, seed=8)[0], 1)[0].path == photo(600)
        refresh(index)
    assert not old.exists() and recent.exists()  # a recent one may belong to a save in progress
    assert saved_coverage(tmp_path).count == 620


def test_an_ann_file_from_another_index_or_model_is_not_trusted(tmp_path, ann_searches):
    library(tmp_path / "a").close()
    other_model = SyntheticModel(model_id="another-model", weights_digest="other-weights")
    for folder, model in [(tmp_path / "b", SyntheticModel()), (tmp_path / "c", other_model)]:
        with PhotoIndex.open(folder, model, ann_threshold=100) as index:
            put(index, clustered(600, seed=9), 0)
        shutil.copy(tmp_path / "a" / ANN_FILE, folder / ANN_FILE)  # same dim, other vectors
        with PhotoIndex.open(folder, model, ann_threshold=100) as index:
            assert same_as_exact(index, clustered(10, seed=2)) == 1.0
            assert index.search_by_vector(clustered(600, seed=9)[17], 1)[0].path == photo(17)
        assert saved_coverage(folder, model).count == 600
    with pytest.raises(Siglip2Error, match="holds vectors of another model"):
        PhotoIndex.open(tmp_path / "a", other_model)  # and the catalog itself still refuses
    assert ann_searches


def test_k_near_the_library_size_or_after_mass_deletions_search_is_exact(tmp_path, ann_searches):
    with library(tmp_path, threshold=50) as index:
        query = clustered(1, seed=2)[0]
        assert index.search_by_vector(query, 40) == index.search_by_vector(query, 40, exact=True)
        assert ann_searches == []  # k is a sizeable part of the library: exact is cheaper and complete
        remove(index, range(480))  # 120 of 600 left: the lists were cut for another library
        assert index.search_by_vector(query, 1) == index.search_by_vector(query, 1, exact=True)
        assert ann_searches == []
        refresh(index)  # the next add rebuilds for the library as it is now
        index.search_by_vector(query, 1)
        assert ann_searches == [1] and saved_coverage(tmp_path).trained_on == 120


@pytest.mark.parametrize("threshold", [0, -5, 2.5, "many"])
def test_a_bad_ann_threshold_is_a_clear_error(tmp_path, threshold):
    with pytest.raises(Siglip2Error, match="ann_threshold"):
        PhotoIndex.open(tmp_path, SyntheticModel(), ann_threshold=threshold)


def test_photos_added_with_a_model_are_found_through_the_ann_index(tmp_path, ann_searches):
    encoder = Encoder.load(tiny_checkpoint(tmp_path, seed=4))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8).repeat(8, axis=0).repeat(8, axis=1)
        Image.fromarray(blocks).save(photos / f"{i:02d}.png")
    with PhotoIndex.open(tmp_path / "index", encoder, ann_threshold=50) as index:
        index.add(photos)
        assert saved_coverage(tmp_path / "index", encoder).count == 60
        best = index.search(photos / "17.png", k=1)[0]
        assert best.path.endswith("17.png") and best.score == pytest.approx(1.0, abs=1e-4)
        for gone in ("03.png", "04.png"):
            (photos / gone).unlink()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(photos / "new.png")
        index.add(photos)
        coverage = saved_coverage(tmp_path / "index", encoder)
        assert (coverage.count, coverage.trained_on) == (59, 60)
        assert index.search(photos / "new.png", k=1)[0].path.endswith("new.png")
        assert len(index.search("a red square", k=5)) == 5  # k is a tenth of the library: exact
    assert len(ann_searches) == 2


# faiss is the `ann` extra: without it a large library is searched exactly, with one warning that
# says how to get approximate search.


@pytest.fixture
def no_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # what an absent package gives: ImportError


def test_a_large_library_without_faiss_is_searched_exactly_with_one_warning(tmp_path, no_faiss):
    vectors = clustered(300, seed=1)
    index = PhotoIndex.open(tmp_path, SyntheticModel(), ann_threshold=100)
    put(index, vectors, 0)
    with pytest.warns(UserWarning, match=r"faiss is not installed.*siglip2-sdk\[ann\]"):
        refresh(index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per index, not on every search
        hits = index.search_by_vector(vectors[7], k=5)
    exact = index.search_by_vector(vectors[7], k=5, exact=True)
    assert hits == exact and hits[0].path == photo(7)
    assert not (tmp_path / ANN_FILE).exists()
    index.close()


def test_a_small_library_never_asks_for_faiss(tmp_path, no_faiss):
    index = PhotoIndex.open(tmp_path, SyntheticModel(), ann_threshold=100)
    put(index, clustered(50, seed=2), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        refresh(index)
        assert len(index.search_by_vector(np.ones(32, np.float32) / np.sqrt(32), k=3)) == 3
    index.close()
