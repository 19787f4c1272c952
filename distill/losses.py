"""SigLIP's sigmoid loss, its per-pair terms (what ACID scores), and the ACED distillation term.

All take L2-normalized embeddings and the temperature t (= exp(t'), already exponentiated) and bias b.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_logits(
    image_emb: torch.Tensor, text_emb: torch.Tensor, t: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """z_ij = t * <img_i, txt_j> + b, (N_img, N_txt)."""
    return image_emb @ text_emb.T * t + b


def same_texts(input_ids: torch.Tensor) -> torch.Tensor:
    """(N, N) bool: pairs (i, j), i != j, whose captions tokenize identically."""
    caption = torch.unique(input_ids, dim=0, return_inverse=True)[1]  # one number per distinct caption
    same = caption[:, None] == caption[None, :]
    return same & ~torch.eye(len(input_ids), dtype=torch.bool, device=input_ids.device)


def pair_losses(logits: torch.Tensor, ignored: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair binary losses -log sigmoid(y_ij * z_ij), y = +1 on the diagonal, -1 elsewhere; pairs
    in `ignored` (e.g. `same_texts`) count 0: an image is not a negative of its own caption's twin."""
    labels = 2 * torch.eye(logits.shape[0], device=logits.device, dtype=logits.dtype) - 1
    losses = -F.logsigmoid(labels * logits)
    return losses if ignored is None else losses.masked_fill(ignored, 0.0)


def sigmoid_loss(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    t: torch.Tensor,
    b: torch.Tensor,
    ignored: torch.Tensor | None = None,
) -> torch.Tensor:
    """SigLIP's loss: every pair a binary problem, summed over the row, averaged over the batch."""
    return pair_losses(pair_logits(image_emb, text_emb, t, b), ignored).sum() / image_emb.shape[0]


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """ACED's explicit distillation: cross-entropy between the teacher's and the student's pairwise
    probability matrices (sigmoid per pair, as SigLIP models them), summed over pairs, averaged over
    the batch like the sigmoid loss."""
    target = torch.sigmoid(teacher_logits)
    return (
        F.binary_cross_entropy_with_logits(student_logits, target, reduction="sum") / student_logits.shape[0]
    )
