"""`PhotoIndex`: an offline, incremental, crash-safe photo search index.

A SQLite catalog (WAL) holds every file seen (path, size, mtime, content hash, status, error) and one
vector per distinct content. Each batch is committed in one transaction, so a crash loses at most the
batch in flight; files are matched by size + mtime and confirmed by content hash, so unchanged
photos are skipped and duplicates share a vector. The index is tied to one model: vectors of another
model are never mixed in. Search is exact (numpy) over the vectors of a small library; from
`ann_threshold` vectors on it goes through an approximate (ANN) index, a cache derived from the
catalog and persisted beside it (see `_AnnIndex`).

Paths are stored as bytes (`os.fsencode`): file names that are not valid UTF-8 are common on real
disks and SQLite text must be UTF-8.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from siglip2_sdk.core.embedding import DECODE_WORKERS
from siglip2_sdk.core.errors import ImageLoadError, Siglip2Error
from siglip2_sdk.core.preprocess import load_image

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
ANN_FILE = "ann.faiss"
ANN_MAGIC = b"siglip2-sdk ann 1\n"
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


def _stack(rows: Sequence[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 matrix) from catalog rows of (id, vector blob)."""
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), dim)
    return ids, matrix


@dataclass(frozen=True)
class _Coverage:
    """The catalog state an ANN index reflects; the ANN file's header, checked before every use."""

    catalog_id: str  # the index folder it was built for: a file copied from another index is refused
    model_id: str
    dim: int
    max_vector_id: int  # every vector up to this id ...
    deletion_seq: int  # ... and every deletion logged up to this one are in the index
    count: int
    trained_on: int  # vectors the k-means of its inverted lists saw


class _AnnIndex:
    """An approximate nearest-neighbour index over the catalog's vectors: a cache, never the source of
    truth. The catalog can always rebuild it, so any doubt about the file means a rebuild.

    faiss IVF-Flat, chosen by measurement against usearch 2.26 and faiss's HNSW (50k clustered unit
    vectors of 256 and 768 dims, 2 cores; faiss's own figures: benchmarks/results/ann_recall.md): k-means
    plus adding 50k vectors takes ~10-20 s where usearch's HNSW took 30-90 s to build; adding a vector later
    is a centroid lookup (~0.1 ms) instead of a graph insertion (~1-2 ms); removal is real (HNSW marks
    tombstones, faiss's HNSW cannot remove at all); and it keeps float32 vectors, so scores are the exact
    cosine similarities and recall@10 stayed at or above usearch's f16 HNSW at equal latency. The price is
    a 19 MB wheel and a file as large as the vectors; usearch's i8 HNSW, the small option, lost >10 points
    of recall. Lists scale with the library (~2·sqrt(n)); a query scans `_probe_count` of them.
    """

    def __init__(self, index, coverage: _Coverage):
        self.index, self.coverage = index, coverage

    @classmethod
    def build(cls, ids: np.ndarray, matrix: np.ndarray, coverage: _Coverage) -> _AnnIndex:
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
    def load(cls, path: Path, catalog_id: str, model_id: str, dim: int) -> _AnnIndex | None:
        """The saved index, or None when it is missing, damaged, or another catalog's or model's."""
        try:
            with open(path, "rb") as f:
                if f.read(len(ANN_MAGIC)) != ANN_MAGIC:
                    return None
                header = json.loads(f.readline(1 << 16))
                coverage = _Coverage(**{name: header[name] for name in _Coverage.__dataclass_fields__})
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
    modality gap), so their neighbours spread over more lists than a photo's: 16 probes gave recall@10
    0.97 for them at 20k vectors, 32 gave 0.995 (benchmarks/ann_recall.py)."""
    return min(lists, max(32, lists // 8))


def _remove_stray_temp_files(path: Path, older_than_s: float = 3600.0) -> None:
    """Temp files of saves that were killed midway; recent ones may belong to a save in progress."""
    for stray in path.parent.glob(f"{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stray.stat().st_mtime > older_than_s:
                stray.unlink()


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
        self._ann: _AnnIndex | None = None
        self._ann_on_disk: _Coverage | None = None  # what the ANN file holds, when this process knows
        self._counted: tuple[tuple[int, int], int] | None = None  # (catalog state, vectors)

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
            self._vector_ids, self._matrix = _stack(rows, self.encoder.dim)
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
        index (~15 ms at 100k vectors, more than an ANN query)."""
        with self._snapshot():
            state = self._catalog_state()
            if self._counted is None or self._counted[0] != state:
                self._counted = (state, self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
        return self._counted[1]

    def _ann_applies(self, vectors: int, k: int = 1) -> bool:
        # A k that is a sizeable part of the library is cheaper, and complete, done exactly.
        return self.ann_threshold is not None and vectors >= self.ann_threshold and k * 50 <= vectors

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: the queries inside see one state of the catalog, whatever other
        processes commit meanwhile (WAL)."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.commit()

    def _catalog_state(self) -> tuple[int, int]:
        """(highest vector id, last logged deletion): every insert or delete of a vector moves one."""
        return self.db.execute(
            "SELECT COALESCE((SELECT MAX(id) FROM vectors), 0), "
            "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'vector_deletions'), 0)"
        ).fetchone()

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _caught_up_ann(self) -> _AnnIndex:
        """The ANN index as of the catalog now: loaded from its file and caught up, or rebuilt (and
        saved, since a rebuild is the expensive part) when the file is missing or cannot be trusted."""
        if self._ann is None:
            self._ann = _AnnIndex.load(
                self.folder / ANN_FILE, self._meta("catalog_id"), self.encoder.model_id, self.encoder.dim
            )
            self._ann_on_disk = self._ann.coverage if self._ann is not None else None
        if self._ann is not None and self._catch_up(self._ann):
            return self._ann
        return self._rebuild_ann()

    def _catch_up(self, ann: _AnnIndex) -> bool:
        """Apply the vectors added and deleted since the index's coverage; False when it cannot be
        trusted (the deletion log it needs was pruned, or its count disagrees with the catalog)."""
        coverage = ann.coverage
        with self._snapshot():
            state = self._catalog_state()
            if state == (coverage.max_vector_id, coverage.deletion_seq):
                return True
            if coverage.deletion_seq < int(self._meta("vector_deletions_pruned") or 0):
                return False
            since = (coverage.deletion_seq,)
            removed = self.db.execute(
                "SELECT DISTINCT vector_id FROM vector_deletions WHERE seq > ?", since
            ).fetchall()
            # A deleted id can come back for new content (SQLite reuses the highest rowid).
            added = self.db.execute(
                "SELECT id, vector FROM vectors WHERE id > ? OR id IN "
                "(SELECT vector_id FROM vector_deletions WHERE seq > ?) ORDER BY id",
                (coverage.max_vector_id, *since),
            ).fetchall()
            count = self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        ann.update(np.array([row[0] for row in removed], dtype=np.int64), *_stack(added, coverage.dim), state)
        return ann.coverage.count == count

    def _rebuild_ann(self) -> _AnnIndex:
        with self._snapshot():
            state = self._catalog_state()
            ids, matrix = _stack(
                self.db.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall(), self.encoder.dim
            )
        coverage = _Coverage(
            self._meta("catalog_id"), self.encoder.model_id, self.encoder.dim, *state, len(ids), len(ids)
        )
        self._ann = _AnnIndex.build(ids, matrix, coverage)
        self._save_ann()
        return self._ann

    def _save_ann(self) -> None:
        """Persist the ANN index, then prune the deletion log it no longer needs."""
        coverage = self._ann.coverage
        self._ann.save(self.folder / ANN_FILE)
        self._ann_on_disk = coverage
        with self.db:  # the high-water mark only rises: an older file below it is never trusted again
            self.db.execute(
                "INSERT INTO meta VALUES ('vector_deletions_pruned', ?) ON CONFLICT(key) DO UPDATE SET "
                "value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (str(coverage.deletion_seq),),
            )
            self.db.execute("DELETE FROM vector_deletions WHERE seq <= ?", (coverage.deletion_seq,))

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
