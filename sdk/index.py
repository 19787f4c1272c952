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

import contextlib
import errno
import functools
import hashlib
import operator
import os
import shutil
import sqlite3
import stat
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
from siglip2_sdk.core.preprocess import MAX_FILE_BYTES, load_image, read_image_file

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
# 2: tied to the model's weights digest (meta 'model'); 1 was tied to a name or path (meta 'model_id').
FORMAT = 2
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".heif",
}  # fmt: skip
# Encoded bytes held for one batch at most: a few huge files cannot add up past this.
BATCH_BYTES = MAX_FILE_BYTES
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


def _statements(script: str) -> list[str]:
    """A SQL script's statements, one by one (a trigger's body holds semicolons of its own)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def _short(model: str | None) -> str:
    return "weights " + model[:12] if model and len(model) == 64 else f"{model}"


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


class CatalogError(Siglip2Error):
    """The index's catalog cannot be used as it is (damaged, disk full, busy); the message says what
    to do."""


def _explain(folder: Path, exc: BaseException) -> str:
    """One line for a SQLite or file-system failure of the index in `folder`."""
    message = str(exc)
    rebuild = (
        f"rebuild it: move '{folder}' away (or pass another --index) and run `siglip2-sdk index` on "
        "your photos again"
    )
    if "full" in message or getattr(exc, "errno", None) == errno.ENOSPC or _disk_nearly_full(folder, message):
        return (
            f"the disk holding index '{folder}' is full: free some space and run the same add again "
            "(everything committed so far is kept)"
        )
    if any(sign in message for sign in ("malformed", "not a database", "no such table", "no such column")):
        return f"index '{folder}' is damaged ({message}): {rebuild}"
    if "locked" in message or "busy" in message:
        return f"index '{folder}' is busy: another process held it for over 30 s; try again when it is done"
    if "readonly" in message or "unable to open" in message:
        return f"index '{folder}' cannot be opened for writing ({message}): check the folder's permissions"
    return f"index '{folder}': {message}: {rebuild} if this persists"


def _disk_nearly_full(folder: Path, message: str) -> bool:
    """SQLite reports a write refused for lack of space in its shared-memory or WAL file as a plain
    "disk I/O error"; an almost full disk says which it was."""
    if "disk I/O error" not in message:
        return False
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _guarded(method):
    """SQLite and file-system failures of an index operation as one `CatalogError` line."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno != errno.ENOSPC:
                raise
            raise CatalogError(_explain(self.folder, exc)) from None

    return wrapper


def _count(k) -> int:
    """`k` as a positive int; 2.5, "5", None or True are a clear error, not a traceback later."""
    try:
        if isinstance(k, bool):
            raise TypeError
        k = operator.index(k)
    except TypeError:
        raise Siglip2Error(f"k must be a whole number of results, got {k!r}") from None
    if k < 1:
        raise Siglip2Error(f"k must be at least 1, got {k}")
    return k


def _set_wal(db: sqlite3.Connection, timeout_s: float = 30.0) -> None:
    """WAL mode; switching needs a moment alone with the file, which a second process creating the same
    index at once may hold (SQLite's busy handler does not cover it), so wait for it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock at once: what it reads stays true until it commits."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


class PhotoIndex:
    def __init__(
        self,
        folder: Path,
        encoder: Encoder,
        db: sqlite3.Connection,
        ann_threshold: int | None = DEFAULT_ANN_THRESHOLD,
        model: str = "",
    ):
        self.folder, self.encoder, self.db = folder, encoder, db
        self.ann_threshold = ann_threshold
        self.model = model  # the identity of the model the vectors come from (Encoder.model_identity)
        # The vectors for exact search, and the catalog state they were read at: another process's
        # commit moves the state, so a long-lived index never answers from an old copy.
        self._matrix: np.ndarray | None = None
        self._vector_ids: np.ndarray | None = None
        self._matrix_state: tuple[int, int] | None = None
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
        """Create the index, or reopen it; refuses an index built with another model (told apart by
        its weights, `Encoder.model_identity`). From `ann_threshold` vectors on (None: never) search
        goes through an approximate index."""
        if ann_threshold is not None and (
            isinstance(ann_threshold, bool) or not isinstance(ann_threshold, int) or ann_threshold < 1
        ):
            raise Siglip2Error(
                f"ann_threshold must be a positive number of vectors or None, got {ann_threshold!r}"
            )
        folder = Path(index_dir).expanduser()
        if folder.exists() and not folder.is_dir():
            raise Siglip2Error(f"index path '{folder}' is a file, not a folder")
        model = encoder.model_identity
        try:
            folder.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(folder / CATALOG, timeout=30)
        except (sqlite3.Error, OSError) as exc:
            raise CatalogError(_explain(folder, exc)) from None
        try:
            meta = cls._create_or_read(db, encoder, model)
            cls._check_model(folder, meta, encoder, model)
            model = meta.get("model", model)
            with db:  # where the model is, so that `search` can reopen it (it may move; the id check stays)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('encoder_path', ?)", (str(encoder.source),))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('runtime', ?)", (encoder.runtime,))
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.Error):
                raise CatalogError(_explain(folder, exc)) from None
            raise
        return cls(folder, encoder, db, ann_threshold, model)

    @staticmethod
    def _create_or_read(db: sqlite3.Connection, encoder: Encoder, model: str) -> dict[str, str]:
        """The catalog's meta, written first when the catalog is new. Safe when several processes
        create the same index at once: the first one's schema and meta win, the others read them."""
        _set_wal(db)
        # With WAL: a crash cannot corrupt, at most lose the last commit.
        db.execute("PRAGMA synchronous=NORMAL")
        with _immediate(db):
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:  # a database, but not one of ours, or its heart is gone
                raise sqlite3.DatabaseError("no such table: meta")
            for statement in _statements(SCHEMA):
                db.execute(statement)
            meta = dict(db.execute("SELECT key, value FROM meta"))
            if not meta:
                meta = {
                    "format": str(FORMAT),
                    "model": model,
                    "model_id": encoder.model_id,
                    "dim": str(encoder.dim),
                    "catalog_id": uuid.uuid4().hex,
                }
                db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        return meta

    @staticmethod
    def _check_model(folder: Path, meta: dict[str, str], encoder: Encoder, model: str) -> None:
        legacy = encoder.weights_digest is None and meta.get("model_id") == encoder.model_id
        if meta.get("format") == "1" and legacy:
            return  # both from before weights digests: told apart by name, as they were made (warned)
        if meta.get("format") in (None, "1"):
            raise CatalogError(
                f"index '{folder}' was made by an earlier siglip2-sdk, which told models apart by their "
                f"path ({meta.get('model_id')!r}), not their weights: rebuild it: move the folder away (or "
                "pass another --index) and run `siglip2-sdk index` on your photos again"
            )
        if meta.get("format") != str(FORMAT):
            raise CatalogError(
                f"index '{folder}' has format {meta.get('format')!r}, newer than this siglip2-sdk reads "
                f"({FORMAT}): upgrade siglip2-sdk, or rebuild the index with this version"
            )
        if meta.get("model") != model or meta.get("dim") != str(encoder.dim):
            raise Siglip2Error(
                f"index '{folder}' holds vectors of another model ({meta.get('model_id')!r}, "
                f"{meta.get('dim')}-d, {_short(meta.get('model'))}); this encoder is {encoder.model_id!r} "
                f"({encoder.dim}-d, {_short(model)}): use that model or another index folder"
            )

    @staticmethod
    def encoder_location(index_dir: str | os.PathLike) -> tuple[str, str]:
        """(model path, runtime) an existing index was last opened with."""
        folder = Path(index_dir).expanduser()
        path = folder / CATALOG
        if not path.is_file():
            raise Siglip2Error(
                f"'{index_dir}' is not a photo index (no {CATALOG}); create it with `siglip2-sdk index`"
            )
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
                meta = dict(db.execute("SELECT key, value FROM meta"))
        except sqlite3.Error as exc:
            raise CatalogError(_explain(folder, exc)) from None
        if "encoder_path" not in meta or "runtime" not in meta:
            raise CatalogError(_explain(folder, sqlite3.DatabaseError("no model recorded: malformed")))
        return meta["encoder_path"], meta["runtime"]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PhotoIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_guarded
    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM files WHERE status = 'ok'").fetchone()[0]

    # --- adding ---------------------------------------------------------------------------------

    @_guarded
    def add(
        self,
        folders_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        batch_size: int = 32,
        progress: Callable[[Iterable], Iterable] = lambda it: it,
    ) -> AddReport:
        """Index new and changed images, forget the catalog's entries under the given folders whose
        files are gone; bad files are recorded with a reason. A finished add is in the catalog's main
        file (the WAL is checkpointed), so nothing it committed depends on the -wal file."""
        roots = [folders_or_paths] if isinstance(folders_or_paths, str | os.PathLike) else folders_or_paths
        batch_size = _count(batch_size)
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
                if len(pending) >= batch_size or sum(len(item[3]) for item in pending) >= BATCH_BYTES:
                    self._embed_and_commit(pending, report)
                    pending = []
            report.removed += self._forget_missing(root, seen)
        if pending:
            self._embed_and_commit(pending, report)
        self._finish()
        return report

    @_guarded
    def forget_missing(self) -> int:
        """Forget every catalog entry whose file no longer exists, wherever it was (a folder renamed or
        removed since it was added); returns how many. `add` of a folder does this under that folder."""
        rows = self.db.execute("SELECT path FROM files").fetchall()
        gone = [path for (path,) in rows if not os.path.lexists(path)]
        with self.db:
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
        self._finish()
        return len(gone)

    def _finish(self) -> None:
        """The end of every change: unused vectors dropped, the ANN file caught up, the WAL moved into
        the main file."""
        self._drop_unused_vectors()
        self._refresh_ann()
        # TRUNCATE: the -wal file is emptied, so losing or damaging it later loses nothing committed.
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

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
        if not stat.S_ISREG(before.st_mode):  # a FIFO would hang the read, /dev/zero never end
            self._record_failure(key, None, "not a regular file (a FIFO, device or socket); skipped", report)
            return None
        try:
            content = read_image_file(path)
            after = path.stat()
        except ImageLoadError as exc:
            self._record_failure(key, before, exc.reason, report)
            return None
        except OSError as exc:
            self._record_failure(key, before, f"cannot read: {exc.strerror}", report)
            return None
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            self._record_failure(key, None, "changed while being read; run add again", report)
            return None
        content_hash = hashlib.sha256(content).hexdigest()
        # Looked up and linked in one write transaction: another process's add cannot drop the vector
        # between the two (it would leave this file pointing at nothing).
        with _immediate(self.db):
            vector = self.db.execute(
                "SELECT id FROM vectors WHERE content_hash = ?", (content_hash,)
            ).fetchone()
            if vector is not None:  # a duplicate of content already indexed: share its vector
                self._upsert_file(key, after, content_hash, "ok", None, vector[0])
        if vector is not None:
            report.added += 1
            return None
        return key, after, content_hash, content

    def _embed_and_commit(self, pending: list, report: AddReport) -> None:
        decoded, good = [], []
        with ThreadPoolExecutor(DECODE_WORKERS) as pool:  # Pillow decodes with the GIL released
            images = list(pool.map(_decode_or_error, [content for *_, content in pending]))
        for (key, stat_, content_hash, _), image in zip(pending, images, strict=True):
            if isinstance(image, ImageLoadError):
                self._record_failure(key, stat_, image.reason, report)
            else:
                decoded.append(image)
                good.append((key, stat_, content_hash))
        vectors = self.encoder.embed_images(decoded) if decoded else []
        with self.db:  # one transaction per batch: a crash loses this batch, never half of it
            for (key, stat_, content_hash), vector in zip(good, vectors, strict=True):
                self.db.execute(
                    "INSERT OR IGNORE INTO vectors (content_hash, vector) VALUES (?, ?)",
                    (content_hash, np.asarray(vector, dtype=np.float32).tobytes()),
                )
                vector_id = self.db.execute(
                    "SELECT id FROM vectors WHERE content_hash = ?", (content_hash,)
                ).fetchone()[0]
                self._upsert_file(key, stat_, content_hash, "ok", None, vector_id)
                report.added += 1

    def _upsert_file(self, key, stat_, content_hash, status, error, vector_id) -> None:
        size, mtime = (stat_.st_size, stat_.st_mtime_ns) if stat_ is not None else (None, None)
        self.db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, size, mtime, content_hash, status, error, vector_id, time.time()),
        )

    def _record_failure(self, key: bytes, stat_, reason: str, report: AddReport) -> None:
        with self.db:
            self._upsert_file(key, stat_, None, "failed", reason, None)
        report.failed.append((_display(key), reason))

    def _forget_missing(self, root: Path, seen: set[bytes]) -> int:
        """Drop catalog rows under `root` whose file was not seen now and is not there (another
        process may have added a file the walk did not meet)."""
        prefix = os.fsencode(root.absolute())
        rows = self.db.execute("SELECT path FROM files").fetchall()
        gone = [
            path
            for (path,) in rows
            if path not in seen
            and (path == prefix or path.startswith(prefix.rstrip(b"/") + b"/"))
            and not os.path.lexists(path)
        ]
        with self.db:
            self.db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
        return len(gone)

    def _drop_unused_vectors(self) -> None:
        """Vectors no file points to any more: of deleted files, and of files whose content changed
        (those are re-embedded after the walk, so this runs last)."""
        with self.db:
            self.db.execute(
                "DELETE FROM vectors WHERE id NOT IN "
                "(SELECT vector_id FROM files WHERE vector_id IS NOT NULL)"
            )

    # --- searching -------------------------------------------------------------------------------

    @_guarded
    def failures(self) -> list[tuple[str, str]]:
        rows = self.db.execute("SELECT path, error FROM files WHERE status = 'failed' ORDER BY path")
        return [(_display(path), error) for path, error in rows]

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every vector, as of the catalog now: read again whenever any process changed them."""
        with snapshot(self.db):
            state = catalog_state(self.db)
            if self._matrix is None or self._matrix_state != state:
                rows = self.db.execute("SELECT id, vector FROM vectors ORDER BY id").fetchall()
                self._vector_ids, self._matrix = vectors_of(rows, self.encoder.dim)
                self._matrix_state = state
        return self._vector_ids, self._matrix

    @_guarded
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

    @_guarded
    def search(self, query, k: int = 10) -> list[Hit]:
        """The k photos closest to a text query (a str), or to an image (a pathlib.Path, PIL image,
        uint8 array or encoded bytes). Only files that exist now are returned."""
        k = _count(k)
        if isinstance(query, str):
            if not query.strip():
                raise Siglip2Error("the search query is empty")
            query_vector = self.encoder.embed_texts([query])[0]
        else:
            query_vector = self.encoder.embed_images([query])[0]
        return self.search_by_vector(query_vector, k)

    @_guarded
    def search_by_vector(self, vector: np.ndarray, k: int = 10, *, exact: bool = False) -> list[Hit]:
        """The k photos closest to an embedding of this index's model (L2-normalized, as the encoder
        gives them), best first; files gone from disk are passed over. Large libraries go through the
        ANN index unless `exact`."""
        k = _count(k)
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
                hits = self._hits(ids, scores, k)
                if len(hits) == k:  # fewer: the scanned lists held fewer, or some files are gone
                    return hits
        ids, matrix = self._vectors()
        scores = matrix @ vector
        wanted = k
        while True:  # more candidates only when some of the best point at files gone from disk
            top = np.arange(len(scores))
            if wanted < len(scores):
                top = np.argpartition(-scores, wanted - 1)[:wanted]
            top = top[np.lexsort((top, -scores[top]))]  # best first; ties in catalog order
            hits = self._hits(ids[top], scores[top], k)
            if len(hits) == k or wanted >= len(scores):
                return hits
            wanted = min(len(scores), wanted * 4)

    def _hits(self, vector_ids: np.ndarray, scores: np.ndarray, k: int) -> list[Hit]:
        hits = []
        for vector_id, score in zip(vector_ids, scores, strict=True):
            paths = self.db.execute(
                "SELECT path FROM files WHERE vector_id = ? AND status = 'ok' ORDER BY path",
                (int(vector_id),),
            ).fetchall()
            # A file removed or renamed since its add is never an answer (`forget_missing` drops it).
            hits.extend(Hit(_display(path), float(score)) for (path,) in paths if os.path.exists(path))
            if len(hits) >= k:
                break
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
                self.folder / ANN_FILE, self._meta("catalog_id"), self.model, self.encoder.dim
            )
            self._ann_on_disk = self._ann.coverage if self._ann is not None else None
        if self._ann is not None and catch_up(self._ann, self.db):
            return self._ann
        return self._rebuild_ann()

    def _rebuild_ann(self) -> AnnIndex:
        self._ann = build_from_catalog(self.db, self._meta("catalog_id"), self.model, self.encoder.dim)
        self._save_ann()
        return self._ann

    def _save_ann(self) -> None:
        """Persist the ANN index, then prune the deletion log it no longer needs."""
        coverage = self._ann.coverage
        try:
            self._ann.save(self.folder / ANN_FILE)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            raise CatalogError(
                f"cannot write the search cache '{self.folder / ANN_FILE}' ({exc.strerror}): it is only a "
                "cache, always safe to delete: remove whatever is there and search again"
            ) from None
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
