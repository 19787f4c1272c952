"""The approximate nearest-neighbour (ANN) part of `PhotoIndex`: a faiss IVF-Flat index over the
catalog's vectors, persisted beside it as `ann.faiss`. A cache, never the source of truth: the catalog
can always rebuild it, so any doubt about the file means a rebuild. faiss comes with the `ann` extra;
without it every search is exact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ANN_FILE = "ann.faiss"
ANN_MAGIC = b"siglip2-sdk ann 1\n"


def faiss_available() -> bool:
    """Whether faiss can be imported (pip install 'siglip2-sdk[ann]')."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Coverage:
    """The catalog state an ANN index reflects; the ANN file's header, checked before every use."""

    catalog_id: str  # the index folder it was built for: a file copied from another index is refused
    model_id: str
    dim: int
    max_vector_id: int  # every vector up to this id ...
    deletion_seq: int  # ... and every deletion logged up to this one are in the index
    count: int
    trained_on: int  # vectors the k-means of its inverted lists saw


class AnnIndex:
    """An approximate nearest-neighbour index over the catalog's vectors: a cache, never the source of
    truth. The catalog can always rebuild it, so any doubt about the file means a rebuild.

    faiss IVF-Flat, chosen by measurement against usearch and faiss's HNSW (the figures:
    benchmarks/results/design_choices.md): it builds several times faster than an HNSW graph; adding a
    vector later is a centroid lookup instead of a graph insertion; removal is real (HNSW marks
    tombstones, faiss's HNSW cannot remove at all); and it keeps float32 vectors, so scores are the exact
    cosine similarities and recall@10 stayed at or above usearch's f16 HNSW at equal latency. The price is
    a 19 MB wheel and a file as large as the vectors; usearch's i8 HNSW, the small option, lost recall.
    Lists scale with the library (~2·sqrt(n)); a query scans `_probe_count` of them.
    """

    def __init__(self, index, coverage: Coverage):
        self.index, self.coverage = index, coverage

    @classmethod
    def build(cls, ids: np.ndarray, matrix: np.ndarray, coverage: Coverage) -> AnnIndex:
        import faiss  # only libraries above the threshold pay for the import

        lists = _list_count(len(ids))
        index = faiss.index_factory(coverage.dim, f"IVF{lists},Flat", faiss.METRIC_INNER_PRODUCT)
        index.train(matrix)
        index.add_with_ids(matrix, ids)
        return cls(index, replace(coverage, count=len(ids), trained_on=len(ids)))

    def update(self, removed: np.ndarray, added_ids: np.ndarray, added: np.ndarray, state: tuple[int, int]):
        if len(removed):
            self.index.remove_ids(removed)
        if len(added_ids):
            self.index.add_with_ids(added, added_ids)
        self.coverage = replace(
            self.coverage, max_vector_id=state[0], deletion_seq=state[1], count=self.index.ntotal
        )

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(vector ids, scores) of up to k nearest vectors, best first."""
        self.index.nprobe = _probe_count(self.index.nlist)
        scores, ids = self.index.search(vector[None, :], k)
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename): a kill leaves the old file or the new one."""
        import faiss

        _remove_stray_temp_files(path)
        payload = faiss.serialize_index(self.index)
        header = {**asdict(self.coverage), "payload_bytes": int(payload.nbytes), "crc32": zlib.crc32(payload)}
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(ANN_MAGIC + json.dumps(header).encode() + b"\n")
                f.write(memoryview(payload))
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    @classmethod
    def load(cls, path: Path, catalog_id: str, model_id: str, dim: int) -> AnnIndex | None:
        """The saved index, or None when it is missing, damaged, or another catalog's or model's."""
        try:
            with open(path, "rb") as f:
                if f.read(len(ANN_MAGIC)) != ANN_MAGIC:
                    return None
                header = json.loads(f.readline(1 << 16))
                coverage = Coverage(**{name: header[name] for name in Coverage.__dataclass_fields__})
                payload = np.fromfile(f, dtype=np.uint8)
        except (OSError, ValueError, KeyError, TypeError):  # unreadable, or a header that is not ours
            return None
        if (
            (coverage.catalog_id, coverage.model_id, coverage.dim) != (catalog_id, model_id, dim)
            or payload.nbytes != header.get("payload_bytes")
            or zlib.crc32(payload) != header.get("crc32")
        ):
            return None
        import faiss

        try:
            index = faiss.deserialize_index(payload)
        except RuntimeError:
            return None
        if not isinstance(index, faiss.IndexIVF) or (index.d, index.ntotal) != (dim, coverage.count):
            return None
        return cls(index, coverage)


def _list_count(vectors: int) -> int:
    """Inverted lists: ~2·sqrt(n), and at least 39 training vectors each (below that faiss's k-means
    warns that the centroids are poor)."""
    return max(1, min(round(2 * math.sqrt(vectors)), vectors // 39))


def _probe_count(lists: int) -> int:
    """Lists a query scans: 1/8 of them, at least 32. Text queries sit apart from all photos (SigLIP's
    modality gap), so their neighbours spread over more lists than a photo's and need more probes to
    be found (how many: benchmarks/results/design_choices.md)."""
    return min(lists, max(32, lists // 8))


def _remove_stray_temp_files(path: Path, older_than_s: float = 3600.0) -> None:
    """Temp files of saves that were killed midway; recent ones may belong to a save in progress."""
    for stray in path.parent.glob(f"{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stray.stat().st_mtime > older_than_s:
                stray.unlink()


# --- following the catalog ------------------------------------------------------------------------


def vectors_of(rows: Sequence[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 matrix) from catalog rows of (id, vector blob)."""
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dim)
    return ids, matrix


@contextlib.contextmanager
def snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: the queries inside see one state of the catalog, whatever other
    processes commit meanwhile (WAL)."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.commit()


def catalog_state(db: sqlite3.Connection) -> tuple[int, int]:
    """(highest vector id, last logged deletion): every insert or delete of a vector moves one."""
    return db.execute(
        "SELECT COALESCE((SELECT MAX(id) FROM vectors), 0), "
        "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'vector_deletions'), 0)"
    ).fetchone()


def catch_up(ann: AnnIndex, db: sqlite3.Connection) -> bool:
    """Apply the vectors added and deleted since the index's coverage; False when it cannot be
    trusted (the deletion log it needs was pruned, or its count disagrees with the catalog)."""
    coverage = ann.coverage
    with snapshot(db):
        state = catalog_state(db)
        if state == (coverage.max_vector_id, coverage.deletion_seq):
            return True
        pruned = db.execute("SELECT value FROM meta WHERE key = 'vector_deletions_pruned'").fetchone()
        if coverage.deletion_seq < int(pruned[0] if pruned else 0):
            return False
        since = (coverage.deletion_seq,)
        removed = db.execute(
            "SELECT DISTINCT vector_id FROM vector_deletions WHERE seq > ?", since
        ).fetchall()
        # A deleted id can come back for new content (SQLite reuses the highest rowid).
        added = db.execute(
            "SELECT id, vector FROM vectors WHERE id > ? OR id IN "
            "(SELECT vector_id FROM vector_deletions WHERE seq > ?) ORDER BY id",
            (coverage.max_vector_id, *since),
        ).fetchall()
        count = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    ann.update(np.array([row[0] for row in removed], dtype=np.int64), *vectors_of(added, coverage.dim), state)
    return ann.coverage.count == count


def build_from_catalog(db: sqlite3.Connection, catalog_id: str, model_id: str, dim: int) -> AnnIndex:
    """A fresh index of every vector in the catalog, its lists trained on them."""
    with snapshot(db):
        state = catalog_state(db)
        ids, matrix = vectors_of(db.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall(), dim)
    return AnnIndex.build(ids, matrix, Coverage(catalog_id, model_id, dim, *state, len(ids), len(ids)))


def prune_deletion_log(db: sqlite3.Connection, saved_up_to: int) -> None:
    """After a save: drop the deletions the file already reflects. The high-water mark only rises, so
    an older file below it is never trusted again."""
    with db:
        db.execute(
            "INSERT INTO meta VALUES ('vector_deletions_pruned', ?) ON CONFLICT(key) DO UPDATE SET "
            "value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            (str(saved_up_to),),
        )
        db.execute("DELETE FROM vector_deletions WHERE seq <= ?", (saved_up_to,))
