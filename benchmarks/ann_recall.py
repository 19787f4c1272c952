"""PhotoIndex search above the ANN threshold against exact search: recall@10, query latency, and what
building, reopening and catching up the persisted ANN index costs. No model runs: the catalog is
filled with synthetic unit vectors (clustered like real embeddings, or uniform as the worst case).

    python benchmarks/ann_recall.py [--sizes 20000,50000] [--dims 256,768] [--data clustered,uniform]

Writes benchmarks/results/ann_recall.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from siglip2_sdk import PhotoIndex
from siglip2_sdk.ann import ANN_FILE
from siglip2_sdk.bench import machine_summary

RESULTS = Path(__file__).parent / "results"
K = 10


@dataclass(frozen=True)
class SyntheticModel:
    """Stands in for an Encoder: the catalog only needs the model's name and dimension."""

    dim: int
    model_id: str = "synthetic"
    source: str = "none"
    runtime: str = "none"


def unit_vectors(n: int, dim: int, data: str, rng: np.random.Generator) -> np.ndarray:
    """`clustered`: like a photo library's embeddings, a shared direction, 200 themes, and within a
    theme a continuous 16-d variation plus per-photo noise, so similarity is graded (a query's 10th
    neighbour ~0.6, its 1000th ~0.2); `uniform`: no structure at all, the worst case for any ANN index."""
    if data == "uniform":
        x = rng.standard_normal((n, dim), dtype=np.float32)
    else:
        fixed = np.random.default_rng(1)  # the same themes for the library and the queries
        themes = fixed.standard_normal((200, dim), dtype=np.float32)
        variations = fixed.standard_normal((200, 16, dim), dtype=np.float32) * 0.25
        shared = fixed.standard_normal(dim, dtype=np.float32) * 0.4
        theme = rng.integers(0, len(themes), n)
        within = np.einsum("nj,njd->nd", rng.standard_normal((n, 16), dtype=np.float32), variations[theme])
        x = shared + themes[theme] + within + rng.standard_normal((n, dim), dtype=np.float32) * 0.5
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def queries(n: int, dim: int, data: str, rng: np.random.Generator) -> np.ndarray:
    """`text`: text queries against photo embeddings sit apart from all of them (SigLIP's modality gap:
    a common offset, best cosines ~0.2-0.3); otherwise queries are drawn like the library."""
    if data != "text":
        return unit_vectors(n, dim, data, rng)
    gap = np.random.default_rng(3).standard_normal(dim, dtype=np.float32)
    x = 0.35 * unit_vectors(n, dim, "clustered", rng) + gap / np.linalg.norm(gap)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fill_catalog(index: PhotoIndex, vectors: np.ndarray, start: int) -> None:
    """Write vectors and their files as `add` would, without decoding or embedding a photo."""
    with index.db:
        for i, vector in enumerate(vectors, start):
            content_hash = f"synthetic-{i}"
            vector_id = index.db.execute(
                "INSERT INTO vectors (content_hash, vector) VALUES (?, ?) RETURNING id",
                (content_hash, vector.tobytes()),
            ).fetchone()[0]
            index.db.execute(
                "INSERT INTO files VALUES (?, 0, 0, ?, 'ok', NULL, ?, 0)",
                (f"/photos/{i}.jpg".encode(), content_hash, vector_id),
            )


def delete_photos(index: PhotoIndex, numbers: range) -> None:
    with index.db:
        index.db.executemany(
            "DELETE FROM files WHERE path = ?", [(f"/photos/{i}.jpg".encode(),) for i in numbers]
        )
        index.db.execute("DELETE FROM vectors WHERE id NOT IN (SELECT vector_id FROM files)")


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def first_search_s(folder: Path, model: SyntheticModel, query: np.ndarray, threshold: int) -> float:
    """A fresh process's first search: open, load the ANN file, catch it up (or rebuild), search."""
    with PhotoIndex.open(folder, model, ann_threshold=threshold) as index:
        return timed(lambda: index.search_by_vector(query, K))[0]


def measure(n: int, dim: int, data: str, query_count: int, grow: int, threshold: int) -> dict:
    rng = np.random.default_rng(0)
    vectors = unit_vectors(n + grow, dim, "uniform" if data == "uniform" else "clustered", rng)
    query_vectors = queries(query_count, dim, data, rng)
    model = SyntheticModel(dim)
    with tempfile.TemporaryDirectory(prefix="ann-recall-") as scratch:
        folder = Path(scratch)
        with PhotoIndex.open(folder, model, ann_threshold=threshold) as index:
            fill_catalog(index, vectors[:n], 0)
        build_s = first_search_s(folder, model, query_vectors[0], threshold)  # no file yet: a rebuild
        file_mb = (folder / ANN_FILE).stat().st_size / 1e6
        reopen_s = first_search_s(folder, model, query_vectors[0], threshold)
        with PhotoIndex.open(folder, model, ann_threshold=threshold) as index:
            fill_catalog(index, vectors[n:], n)
            delete_photos(index, range(0, grow // 2))
        catch_up_s = first_search_s(folder, model, query_vectors[0], threshold)
        with PhotoIndex.open(folder, model, ann_threshold=threshold) as index:
            recalls, ann_ms, exact_ms = [], [], []
            for query in query_vectors:
                seconds, approximate = timed(lambda q=query: index.search_by_vector(q, K))
                ann_ms.append(seconds * 1e3)
                seconds, exact = timed(lambda q=query: index.search_by_vector(q, K, exact=True))
                exact_ms.append(seconds * 1e3)
                recalls.append(len({hit.path for hit in approximate} & {hit.path for hit in exact}) / K)
            lists = index._ann.index.nlist
    return {
        "vectors": n,
        "dim": dim,
        "data": data,
        "lists": lists,
        "recall@10": round(statistics.mean(recalls), 4),
        "recall@10_min": min(recalls),
        "ann_ms_median": round(statistics.median(ann_ms), 3),
        "ann_ms_p90": round(float(np.percentile(ann_ms, 90)), 3),
        "exact_ms_median": round(statistics.median(exact_ms), 3),
        "exact_ms_p90": round(float(np.percentile(exact_ms, 90)), 3),
        "build_s": round(build_s, 2),
        "reopen_first_search_s": round(reopen_s, 3),
        "catch_up_vectors": f"+{grow} -{grow // 2}",
        "catch_up_first_search_s": round(catch_up_s, 3),
        "ann_file_mb": round(file_mb, 1),
        "load_average": round(os.getloadavg()[0], 1),  # other work on the machine slows every timing
    }


COLUMNS = {
    "vectors": "vectors",
    "dim": "dim",
    "data": "data",
    "lists": "IVF lists",
    "recall@10": "recall@10",
    "recall@10_min": "worst query",
    "ann_ms_median": "ANN ms (median)",
    "ann_ms_p90": "ANN ms (p90)",
    "exact_ms_median": "exact ms (median)",
    "exact_ms_p90": "exact ms (p90)",
    "build_s": "build s",
    "reopen_first_search_s": "reopen + 1st search s",
    "catch_up_vectors": "catch-up",
    "catch_up_first_search_s": "catch-up + 1st search s",
    "ann_file_mb": "file MB",
    "load_average": "load avg",
}


def markdown(report: dict) -> str:
    columns = [key for key in COLUMNS if all(key in row for row in report["rows"])]
    lines = [
        "# ANN search vs exact (PhotoIndex)",
        "",
        f"Machine: {report['machine']}. Packages: "
        + ", ".join(f"{name} {v}" for name, v in report["packages"].items())
        + f". {report['queries']} queries per row, k = {K}; latency is one query at a time through "
        "`PhotoIndex.search_by_vector` (catalog lookups of the paths included). Build: the first search "
        "with no ANN file (k-means, add, save). Catch-up: the first search in a new process after the "
        "listed vectors were added and deleted behind the file's back. Data: synthetic unit vectors "
        "clustered like a photo library's embeddings; `clustered` queries are drawn like photos, `text` "
        "queries sit apart from every photo (SigLIP's modality gap), `uniform` has no structure at all "
        "(the worst case for any ANN index). Recall is against exact search over the same catalog.",
        "",
        "| " + " | ".join(COLUMNS[key] for key in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(str(row[key]) for key in columns) + " |" for row in report["rows"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="20000,50000", help="library sizes (vectors), comma-separated")
    parser.add_argument("--dims", default="256,768", help="embedding dimensions, comma-separated")
    parser.add_argument(
        "--data",
        default="clustered,text",
        help="clustered (photo queries), text (text queries, modality gap), uniform; comma-separated",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--grow", type=int, default=2000, help="vectors added after the build (half as many deleted)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = {
        "machine": machine_summary(),
        "packages": {
            "python": platform.python_version(),
            **{name: version(name) for name in ("numpy", "faiss-cpu", "siglip2-sdk")},
        },
        "queries": args.queries,
        "rows": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for data in args.data.split(","):
        for dim in map(int, args.dims.split(",")):
            for n in map(int, args.sizes.split(",")):
                report["rows"].append(
                    measure(n, dim, data, args.queries, args.grow, threshold=min(n, 20_000))
                )
                print(json.dumps(report["rows"][-1]), file=sys.stderr, flush=True)
                (args.out / "ann_recall.json").write_text(json.dumps(report, indent=2) + "\n")  # as it goes
                (args.out / "ann_recall.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
