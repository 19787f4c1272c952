"""`PhotoIndex`: an offline, incremental, crash-safe photo search index. One concern, the catalog and
search over it; the approximate-search cache it keeps is sdk/ann.py.

A SQLite catalog (WAL) holds every file seen (path, size, mtime, content hash, status, error) and one
vector per distinct content. Each batch is committed in one transaction, so a crash loses at most the
batch in flight; files are matched by size + mtime and confirmed by content hash, so unchanged
photos are skipped and duplicates share a vector. The index is tied to one model: vectors of another
model are never mixed in. Search is exact (numpy) over the vectors of a small library; from
`ann_threshold` vectors on it goes through an approximate (ANN) index, a cache derived from the
catalog and persisted beside it (sdk/ann.py; without faiss, search stays exact and says so once).

Paths are stored as bytes (`os.fsencode`): file names that are not valid UTF-8 are common on real
disks and SQLite text must be UTF-8.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from siglip2_sdk.core.embedding import DECODE_WORKERS
from siglip2_sdk.core.errors import ImageLoadError, Siglip2Error
from siglip2_sdk.core.preprocess import load_image

from .ann import (
    ANN_FILE,
    AnnIndex,
    Coverage,
    build_from_catalog,
    catalog_state,
    catch_up,
    faiss_available,
    prune_deletion_log,
    snapshot,
    vectors_of,
)
from .encoder import Encoder

CATALOG = "catalog.sqlite"
FORMAT = 1
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY, content_hash TEXT UNIQUE NOT NULL, vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, content_hash TEXT,
    status TEXT NOT NULL, error TEXT, vector_id INTEGER REFERENCES vectors(id), indexed_at REAL
);
CREATE INDEX IF NOT EXISTS files_by_hash ON files(content_hash);
CREATE INDEX IF NOT EXISTS files_by_vector ON files(vector_id);
-- Which vectors were deleted, in order: the ANN cache catches up from it (ids can be reused).
CREATE TABLE IF NOT EXISTS vector_deletions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, vector_id INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS log_vector_deletion AFTER DELETE ON vectors
BEGIN INSERT INTO vector_deletions (vector_id) VALUES (old.id); END;
"""
DEFAULT_ANN_THRESHOLD = 20_000


@dataclass(frozen=True)
class Hit:
    path: str
    score: float  # cosine similarity of the query and the photo


@dataclass
class AddReport:
    added: int = 0
    skipped: int = 0  # unchanged since the last add
    removed: int = 0  # gone from disk since the last add
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _decode_or_error(content: bytes):
    try:
        return load_image(content)
    except ImageLoadError as exc:
        return exc


def _display(path: bytes) -> str:
    return os.fsdecode(path)


def walk_images(root: Path) -> Iterator[Path]:
    """Image files under `root` (or `root` itself), sorted; directory links are not followed, so a
    link loop cannot trap the walk."""
    if not root.is_dir():
        yield root
        return
    for folder, subfolders, names in os.walk(root, followlinks=False):
        subfolders.sort()
        for name in sorted(names):
            if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                yield Path(folder) / name


class PhotoIndex:
    def __init__(
        self,
        folder: Path,
        encoder: Encoder,
        db: sqlite3.Connection,
        ann_threshold: int | None = DEFAULT_ANN_THRESHOLD,
    ):
        self.folder, self.encoder, self.db = folder, encoder, db
        self.ann_threshold = ann_threshold
        self._matrix: np.ndarray | None = None  # vectors cached for exact search, dropped on every change
        self._vector_ids: np.ndarray | None = None
        self._ann: AnnIndex | None = None
        self._ann_on_disk: Coverage | None = None  # what the ANN file holds, when this process knows
        self._counted: tuple[tuple[int, int], int] | None = None  # (catalog state, vectors)
        self._faiss: bool | None = None  # whether faiss imports, once the library is large enough to ask

    @classmethod
    def open(
        cls,
        index_dir: str | os.PathLike,
        encoder: Encoder,
        *,
        ann_threshold: int | None = DEFAULT_ANN_THRESHOLD,
    ) -> PhotoIndex:
        """Create the index, or reopen it; refuses an index built with another model. From
        `ann_threshold` vectors on (None: never) search goes through an approximate index."""
        if ann_threshold is not None and (not isinstance(ann_threshold, int) or ann_threshold < 1):
            raise Siglip2Error(
                f"ann_threshold must be a positive number of vectors or None, got {ann_threshold!r}"
            )
        folder = Path(index_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise Siglip2Error(f"index path '{folder}' is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(folder / CATALOG, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "PRAGMA synchronous=NORMAL"
        )  # with WAL: a crash cannot corrupt, at most lose the last commit
        db.executescript(SCHEMA)
        meta = dict(db.execute("SELECT key, value FROM meta"))
        expected = {"format": str(FORMAT), "model_id": encoder.model_id, "dim": str(encoder.dim)}
        if not meta:
            with db:
                db.executemany("INSERT INTO meta VALUES (?, ?)", expected.items())
        elif meta.get("model_id") != encoder.model_id or meta.get("dim") != str(encoder.dim):
            db.close()
            raise Siglip2Error(
                f"index '{folder}' holds vectors of model {meta.get('model_id')!r} ({meta.get('dim')}-d); "
                f"this encoder is {encoder.model_id!r}: use that model or another index folder"
            )
        with db:  # where the model is, so that `search` can reopen it (it may move; the id check stays)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('encoder_path', ?)", (str(encoder.source),))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('runtime', ?)", (encoder.runtime,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('catalog_id', ?)", (uuid.uuid4().hex,))
        return cls(folder, encoder, db, ann_threshold)

    @staticmethod
    def encoder_location(index_dir: str | os.PathLike) -> tuple[str, str]:
        """(model path, runtime) an existing index was last opened with."""
        path = Path(index_dir).expanduser() / CATALOG
        if not path.is_file():
            raise Siglip2Error(
                f"'{index_dir}' is not a photo index (no {CATALOG}); create it with `siglip2-sdk index`"
            )
        with sqlite3.connect(path) as db:
            meta = dict(db.execute("SELECT key, value FROM meta"))
        return meta["encoder_path"], meta["runtime"]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PhotoIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0]

    # --- adding ---------------------------------------------------------------------------------

    def add(
        self,
        folders_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        batch_size: int = 32,
        progress: Callable[[Iterable], Iterable] = lambda it: it,
    ) -> AddReport:
        """Index new and changed images, forget deleted ones; bad files are recorded with a reason."""
        roots = [folders_or_paths] if isinstance(folders_or_paths, str | os.PathLike) else folders_or_paths
        report = AddReport()
        seen: set[bytes] = set()
        pending: list[tuple[bytes, os.stat_result, str, bytes]] = []  # path, stat, hash, content
        for root in map(Path, roots):
            if not root.exists():
                raise Siglip2Error(f"'{root}' does not exist")
            for path in progress(walk_images(root)):
                key = os.fsencode(path.absolute())
                seen.add(key)
                item = self._examine(key, path, report)
                if item is not None:
                    pending.append(item)
                if len(pending) >= batch_size:
                    self._embed_and_commit(pending, report)
                    pending = []
            report.removed += self._forget_missing(root, seen)
        if pending:
            self._embed_and_commit(pending, report)
        self._drop_unused_vectors()
        self._refresh_ann()
        return report

    def _examine(self, key: bytes, path: Path, report: AddReport):
        """(path, stat, hash, bytes) of a file that needs a vector; None when skipped or linked."""
        try:
            before = path.stat()
        except OSError as exc:  # a broken link, or gone since the walk
            self._record_failure(key, None, f"cannot stat: {exc.strerror}", report)
            return None
        row = self.db.execute("SELECT size, mtime_ns, status FROM files WHERE path = ?", (key,)).fetchone()
        if row is not None and row[:2] == (before.st_size, before.st_mtime_ns):
            report.skipped += 1
            return None
        try:
            content = path.read_bytes()
            after = path.stat()
        except OSError as exc:
            self._record_failure(key, before, f"cannot read: {exc.strerror}", report)
            return None
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            self._record_failure(key, None, "changed while being read; run add again", report)
            return None
        content_hash = hashlib.sha256(content).hexdigest()
        vector = self.db.execute("SELECT id FROM vectors WHERE content_hash = ?", (content_hash,)).fetchone()
        if vector is not None:  # a duplicate of content already indexed: share its vector
            with self.db:
                self._upsert_file(key, after, content_hash, "ok", None, vector[0])
            report.added += 1
            self._matrix = None
            return None
        return key, after, content_hash, content

    def _embed_and_commit(self, pending: list, report: AddReport) -> None:
        decoded, good = [], []
        with ThreadPoolExecutor(DECODE_WORKERS) as pool:  # Pillow decodes with the GIL released
            images = list(pool.map(_decode_or_error, [content for *_, content in pending]))
        for (key, stat, content_hash, _), image in zip(pending, images, strict=True):
            if isinstance(image, ImageLoadError):
                self._record_failure(key, stat, image.reason, report)
            else:
                decoded.append(image)
                good.append((key, stat, content_hash))
        vectors = self.encoder.embed_images(decoded) if decoded else []
        with self.db:  # one transaction per batch: a crash loses this batch, never half of it
            for (key, stat, content_hash), vector in zip(good, vectors, strict=True):
                self.db.execute(
                    "INSERT OR IGNORE INTO vectors (content_hash, vector) VALUES (?, ?)",
                    (content_hash, np.asarray(vector, dtype=np.float32).tobytes()),
                )
                vector_id = self.db.execute(
                    "SELECT id FROM vectors WHERE content_hash = ?", (content_hash,)
                ).fetchone()[0]
                self._upsert_file(key, stat, content_hash, "ok", None, vector_id)
                report.added += 1
        self._matrix = None

    def _upsert_file(self, key, stat, content_hash, status, error, vector_id) -> None:
        size, mtime = (stat.st_size, stat.st_mtime_ns) if stat is not None else (None, None)
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, size, mtime, content_hash, status, error, vector_id, time.time()),
        )

    def _record_failure(self, key: bytes, stat, reason: str, report: AddReport) -> None:
        with self.db:
            self._upsert_file(key, stat, None, "failed", reason, None)
        report.failed.append((_display(key), reason))

    def _forget_missing(self, root: Path, seen: set[bytes]) -> int:
        """Drop catalog rows under `root` whose file was not seen now."""
        prefix = os.fsencode(root.absolute())
        rows = self.db.execute("SELECT path FROM files").fetchall()
        gone = [
            path
            for (path,) in rows
            if path not in seen and (path == prefix or path.startswith(prefix.rstrip(b"/") + b"/"))
        ]
        with self.db:
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
        return len(gone)

    def _drop_unused_vectors(self) -> None:
        """Vectors no file points to any more: of deleted files, and of files whose content changed
        (those are re-embedded after the walk, so this runs last)."""
        with self.db:
            dropped = self.db.execute(
                "DELETE FROM vectors WHERE id NOT IN "
                "(SELECT vector_id FROM files WHERE vector_id IS NOT NULL)"
            ).rowcount
        if dropped:
            self._matrix = None

    # --- searching -------------------------------------------------------------------------------

    def failures(self) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT path, error FROM files WHERE status = 'failed' ORDER BY path")
        return [(_display(path), error) for path, error in rows]

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self._matrix is None:
            rows = self.db.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall()
            self._vector_ids, self._matrix = vectors_of(rows, self.encoder.dim)
        return self._vector_ids, self._matrix

    def tags(self, path: str | os.PathLike, labels: Sequence[str]) -> list[tuple[str, float]]:
        """Zero-shot tags of an indexed photo from its stored vector (no decoding): each label's sigmoid
        probability with the model's own t and b, most likely first."""
        if not labels:
            raise Siglip2Error("give at least one label")
        key = os.fsencode(Path(path).absolute())
        row = self.db.execute(
            "SELECT v.vector FROM files f JOIN vectors v ON v.id = f.vector_id "
            "WHERE f.path = ? AND f.status = 'ok'",
            (key,),
        ).fetchone()
        if row is None:
            raise Siglip2Error(f"'{path}' is not in the index (run add first)")
        vector = np.frombuffer(row[0], dtype=np.float32)
        logits = (
            self.encoder.embed_texts(list(labels)) @ vector * self.encoder.logit_scale
            + self.encoder.logit_bias
        )
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        return sorted(zip(labels, map(float, probabilities), strict=True), key=lambda pair: -pair[1])

    def search(self, query, k: int = 10) -> list[Hit]:
        """The k photos closest to a text query (a str), or to an image (a pathlib.Path, PIL image,
        uint8 array or encoded bytes)."""
        if k < 1:
            raise Siglip2Error(f"k must be at least 1, got {k}")
        if isinstance(query, str):
            if not query.strip():
                raise Siglip2Error("the search query is empty")
            query_vector = self.encoder.embed_texts([query])[0]
        else:
            query_vector = self.encoder.embed_images([query])[0]
        return self.search_by_vector(query_vector, k)

    def search_by_vector(self, vector: np.ndarray, k: int = 10, *, exact: bool = False) -> list[Hit]:
        """The k photos closest to an embedding of this index's model (L2-normalized, as the encoder
        gives them). Large libraries go through the ANN index unless `exact`."""
        if k < 1:
            raise Siglip2Error(f"k must be at least 1, got {k}")
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.encoder.dim,):
            raise Siglip2Error(
                f"the query vector has {vector.size} values; this index holds {self.encoder.dim}-d"
            )
        if not exact and self._ann_applies(self._vector_count(), k):
            ann = self._caught_up_ann()
            # IVF removal is real, but once most vectors are gone the lists were cut for another library:
            # exact until the next add rebuilds it.
            if ann.coverage.count * 4 >= ann.coverage.trained_on:
                ids, scores = ann.search(vector, k)
                if len(ids) == k:  # fewer: the scanned lists held fewer than k vectors
                    return self._hits(ids, scores, k)
        ids, matrix = self._vectors()
        scores = matrix @ vector
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]  # best first; ties in catalog order
        return self._hits(ids[top], scores[top], k)

    def _hits(self, vector_ids: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
        hits = []
        for vector_id, score in zip(vector_ids, scores, strict=True):
            paths = self.db.execute(
                "SELECT path FROM files WHERE vector_id = ? AND status = 'ok' ORDER BY path",
                (int(vector_id),),
            ).fetchall()
            hits.extend(Hit(_display(path), float(score)) for (path,) in paths)
        return hits[:k]

    # --- the ANN cache -----------------------------------------------------------------------------

    def _vector_count(self) -> int:
        """Vectors in the catalog, counted again only when its state moved: COUNT(*) reads a whole
        index, more than an ANN query costs on a large library (benchmarks/results/design_choices.md)."""
        with snapshot(self.db):
            state = catalog_state(self.db)
            if self._counted is None or self._counted[0] != state:
                self._counted = (state, self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
        return self._counted[1]

    def _ann_applies(self, vectors: int, k: int = 1) -> bool:
        # A k that is a sizeable part of the library is cheaper, and complete, done exactly.
        wanted = self.ann_threshold is not None and vectors >= self.ann_threshold and k * 50 <= vectors
        return wanted and self._faiss_available(vectors)

    def _faiss_available(self, vectors: int) -> bool:
        """Whether faiss is there for the ANN index; the first time it is not, say so once."""
        if self._faiss is None:
            self._faiss = faiss_available()
            if not self._faiss:
                warnings.warn(
                    f"index '{self.folder}' holds {vectors:,} vectors, at or above ann_threshold "
                    f"{self.ann_threshold:,}, but faiss is not installed: searching exactly (slower on a "
                    "large library); pip install 'siglip2-sdk[ann]' for approximate search",
                    stacklevel=4,
                )
        return self._faiss

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _caught_up_ann(self) -> AnnIndex:
        """The ANN index as of the catalog now: loaded from its file and caught up, or rebuilt (and
        saved, since a rebuild is the expensive part) when the file is missing or cannot be trusted."""
        if self._ann is None:
            self._ann = AnnIndex.load(
                self.folder / ANN_FILE, self._meta("catalog_id"), self.encoder.model_id, self.encoder.dim
            )
            self._ann_on_disk = self._ann.coverage if self._ann is not None else None
        if self._ann is not None and catch_up(self._ann, self.db):
            return self._ann
        return self._rebuild_ann()

    def _rebuild_ann(self) -> AnnIndex:
        model = self.encoder
        self._ann = build_from_catalog(self.db, self._meta("catalog_id"), model.model_id, model.dim)
        self._save_ann()
        return self._ann

    def _save_ann(self) -> None:
        """Persist the ANN index, then prune the deletion log it no longer needs."""
        coverage = self._ann.coverage
        self._ann.save(self.folder / ANN_FILE)
        self._ann_on_disk = coverage
        prune_deletion_log(self.db, coverage.deletion_seq)

    def _refresh_ann(self) -> None:
        """After an add: bring the ANN file up to date, rebuilt when the library has grown or shrunk
        fourfold since its lists were trained."""
        if not self._ann_applies(self._vector_count()):
            return
        ann = self._caught_up_ann()
        if not ann.coverage.trained_on / 4 <= ann.coverage.count <= ann.coverage.trained_on * 4:
            ann = self._rebuild_ann()
        if ann.coverage != self._ann_on_disk:
            self._save_ann()
