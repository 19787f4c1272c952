"""The parity gate: a bundle, run on its own runtime, against the float checkpoint on real data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    cosine_min: float = 0.99  # every embedding, image and text
    agreement: float = 0.98  # top-1 retrieval answers that stay the same, both directions


def measure(
    reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray]
) -> dict[str, float | int]:
    """Per-embedding cosine (min, mean) and top-1 retrieval agreement of candidate vs reference.
    Each pair is (image embeddings, text embeddings), row i of both coming from example i."""
    (ref_image, ref_text), (cand_image, cand_text) = reference, candidate
    image_cos = np.sum(ref_image * cand_image, axis=1)
    text_cos = np.sum(ref_text * cand_text, axis=1)
    ref_scores, cand_scores = ref_text @ ref_image.T, cand_text @ cand_image.T
    return {
        "examples": len(ref_image),
        "image_cosine_min": float(image_cos.min()),
        "image_cosine_mean": float(image_cos.mean()),
        "text_cosine_min": float(text_cos.min()),
        "text_cosine_mean": float(text_cos.mean()),
        "t2i_top1_agreement": top1_agreement(ref_scores, cand_scores),
        "i2t_top1_agreement": top1_agreement(ref_scores.T, cand_scores.T),
    }


def top1_agreement(reference: np.ndarray, candidate: np.ndarray, tie: float = 1e-4) -> float:
    """Fraction of query rows whose top-1 under the candidate is also a top-1 under the reference.
    Items the reference scores within `tie` of its best count as top-1 too: between near-duplicates
    the argmax flips on float noise, and that is not a change of answer."""
    picked = reference[np.arange(len(reference)), candidate.argmax(axis=1)]
    return float(np.mean(picked >= reference.max(axis=1) - tie))


def failures(figures: dict, thresholds: Thresholds) -> list[str]:
    """What falls below the thresholds, in words; empty when the bundle passes."""
    problems = []
    for name in ("image_cosine_min", "text_cosine_min"):
        if figures[name] < thresholds.cosine_min:
            problems.append(f"{name} {figures[name]:.4f} < {thresholds.cosine_min}")
    for name in ("t2i_top1_agreement", "i2t_top1_agreement"):
        if figures[name] < thresholds.agreement:
            problems.append(f"{name} {figures[name]:.3f} < {thresholds.agreement}")
    return problems
