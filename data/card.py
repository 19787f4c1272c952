"""The data card: `stats.json` and a `README.md` generated from what was actually written."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

from siglip2_sdk.core.fileio import atomic_write_text
from siglip2_sdk.core.version import __version__

from .source import Source


def _image_sizes(records: list) -> dict:
    if not records:
        return {}
    widths = [r.meta["width"] for r in records]
    heights = [r.meta["height"] for r in records]
    return {
        "min": [min(widths), min(heights)],
        "max": [max(widths), max(heights)],
        "mean": [round(sum(widths) / len(widths), 1), round(sum(heights) / len(heights), 1)],
    }


def pairs_digest(splits: dict[str, list]) -> str:
    """sha256 over every pair as written (split, pixel key, captions): two builds that agree on it
    made the same corpus, whatever machine they ran on."""
    digest = hashlib.sha256()
    for split, records in splits.items():
        for record in records:
            digest.update(json.dumps([split, record.key, record.meta["captions"]], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def compute_stats(
    splits: dict[str, list],
    sources: list[Source],
    versions: dict[str, str],
    unavailable: dict[str, str],
    duplicates: dict[str, int],
    repeats: dict[str, int],
    shards: list[str],
    fingerprint: str,
) -> dict:
    per_source: dict[str, list] = defaultdict(list)
    languages: dict[str, Counter] = defaultdict(Counter)
    label_sets: dict[str, set] = defaultdict(set)
    for split, records in splits.items():
        for record in records:
            per_source[record.meta["source"]].append((split, record))
            for language in record.meta["captions"]:
                languages[language][split] += 1
            for label_set, label in record.meta["labels"].items():
                label_sets[f"{record.meta['source']}/{label_set}"].add(label)
    return {
        "created_by": f"siglip2-sdk {__version__}",
        "fingerprint": fingerprint,
        "pairs": sum(len(records) for records in splits.values()),
        "pairs_digest": pairs_digest(splits),
        "splits": {split: len(records) for split, records in splits.items()},
        "sources": {
            source.name: {
                "package": source.debian_package,
                "version": versions[source.name],
                "license": source.license,
                "pairs": dict(Counter(split for split, _ in per_source[source.name])),
                "duplicates_dropped": duplicates.get(source.name, 0),
                "caption_repeats_dropped": repeats.get(source.name, 0),
                "max_per_caption": source.max_per_caption,
                "image_size": _image_sizes([record for _, record in per_source[source.name]]),
            }
            for source in sources
        },
        "languages": {
            language: dict(counts)
            for language, counts in sorted(languages.items(), key=lambda kv: -sum(kv[1].values()))
        },
        "label_sets": {name: len(labels) for name, labels in sorted(label_sets.items())},
        "unavailable": unavailable,
        "shards": shards,
    }


def render_readme(stats: dict) -> str:
    split_names = list(stats["splits"])
    lines = [
        "# siglip2-sdk demo corpus",
        "",
        "Real multilingual image-text pairs built offline from packages (`siglip2-sdk data demo`). "
        "This card is generated from the shards; do not edit it by hand.",
        "",
        f"- pairs: {stats['pairs']:,} ({', '.join(f'{k} {v:,}' for k, v in stats['splits'].items())})",
        f"- languages: {len(stats['languages'])}",
        f"- pairs digest: `{stats['pairs_digest']}` (sha256 over split, pixel key and captions of every "
        "pair: two builds with the same digest made the same corpus)",
        "- layout: WebDataset shards `{split}-NNNNNN.tar`, each sample `KEY.png` + `KEY.json` (captions per "
        "language, labels, source, license) + `KEY.txt` (English caption); KEY is a hash of the pixels",
        "- split: by that hash (80 / 10 / 10), so no image is in two splits; exact duplicate images "
        "are dropped",
        f"- built by {stats['created_by']}",
        "",
        "## Sources",
        "",
        "| source | package | version | license | "
        + " | ".join(split_names)
        + " | dropped: duplicate image / repeated caption | image size (min / max) |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in split_names) + " | --- | --- |",
    ]
    for name, source in stats["sources"].items():
        size = source["image_size"]
        size_text = f"{size['min'][0]}x{size['min'][1]} / {size['max'][0]}x{size['max'][1]}" if size else "-"
        counts = " | ".join(f"{source['pairs'].get(s, 0):,}" for s in split_names)
        lines.append(
            f"| {name} | `{source['package']}` | {source['version']} | {source['license']} | {counts} | "
            f"{source['duplicates_dropped']} / {source['caption_repeats_dropped']} | {size_text} |"
        )
    for name, reason in stats["unavailable"].items():
        lines.append(f"| {name} | – | – | – | unavailable: {reason} |")
    lines += ["", "## Captions per language", "", "| language | " + " | ".join(split_names) + " |"]
    lines.append("| --- | " + " | ".join("---" for _ in split_names) + " |")
    for language, counts in stats["languages"].items():
        lines.append(f"| {language} | " + " | ".join(f"{counts.get(s, 0):,}" for s in split_names) + " |")
    lines += [
        "",
        "## Label sets (for zero-shot classification)",
        "",
        "| label set | classes |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {count} |" for name, count in stats["label_sets"].items()]
    return "\n".join(lines) + "\n"


def write_card(out: Path, **inputs) -> dict:
    """Write README.md and return the stats (the caller writes stats.json last, as the done-marker)."""
    stats = compute_stats(**inputs)
    atomic_write_text(out / "README.md", render_readme(stats))
    return stats
