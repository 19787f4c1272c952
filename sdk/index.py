"""`PhotoIndex`: an offline, incremental, crash-safe photo search index.

A SQLite catalog (WAL) holds every file seen (path, size, mtime, content hash, status, error) and one
vector per distinct content. Each batch is committed in one transaction, so a crash loses at most the
batch in flight; files are matched by size + mtime and confirmed by content hash, so unchanged
photos are skipped and duplicates share a vector. The index is tied to one model: vectors of another
model are never mixed in. Search is exact (numpy) over the vectors.

Paths are stored as bytes (`os.fsencode`): file names that are not valid UTF-8 are common on real
disks and SQLite text must be UTF-8.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
"""


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
    def __init__(self, folder: Path, encoder: Encoder, db: sqlite3.Connection):
        self.folder, self.encoder, self.db = folder, encoder, db
        self._matrix: np.ndarray | None = None  # vectors cached for search, dropped on every change
        self._vector_ids: np.ndarray | None = None

    @classmethod
    def open(cls, index_dir: str | os.PathLike, encoder: Encoder) -> PhotoIndex:
        """Create the index, or reopen it; refuses an index built with another model."""
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
        return cls(folder, encoder, db)

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
        """Drop catalog rows under `root` whose file was not seen now, and vectors nobody uses."""
        prefix = os.fsencode(root.absolute())
        rows = self.db.execute("SELECT path FROM files").fetchall()
        gone = [
            path
            for (path,) in rows
            if path not in seen and (path == prefix or path.startswith(prefix.rstrip(b"/") + b"/"))
        ]
        with self.db:
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
            self.db.execute(
                "DELETE FROM vectors WHERE id NOT IN "
                "(SELECT vector_id FROM files WHERE vector_id IS NOT NULL)"
            )
        if gone:
            self._matrix = None
        return len(gone)

    # --- searching -------------------------------------------------------------------------------

    def failures(self) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT path, error FROM files WHERE status = 'failed' ORDER BY path")
        return [(_display(path), error) for path, error in rows]

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self._matrix is None:
            rows = self.db.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall()
            self._vector_ids = np.array([row[0] for row in rows], dtype=np.int64)
            self._matrix = (
                np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), -1)
                if rows
                else np.empty((0, self.encoder.dim), dtype=np.float32)
            )
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
        ids, matrix = self._vectors()
        if not len(ids):
            return []
        scores = matrix @ query_vector
        top = np.argsort(-scores, kind="stable")[:k]
        hits = []
        for position in top:
            paths = self.db.execute(
                "SELECT path FROM files WHERE vector_id = ? AND status = 'ok' ORDER BY path",
                (int(ids[position]),),
            ).fetchall()
            hits.extend(Hit(_display(path), float(scores[position])) for (path,) in paths)
        return hits[:k]
