"""Which sub-batch of a super-batch to train on: ACID (JEST joint sampling), top-k, or uniform.

Scores come from per-pair sigmoid losses on the super-batch (see `losses.pair_losses`):
- learnability = student loss - reference (teacher) loss: examples the teacher finds easy but the
  student does not yet, which is how ACID distills implicitly;
- easy-reference = - reference loss.
"""

from __future__ import annotations

import itertools

import torch

METHODS = ("acid", "topk", "none")
SCORES = ("learnability", "easy-reference")


def score_matrix(
    student_pair_losses: torch.Tensor, teacher_pair_losses: torch.Tensor, score: str
) -> torch.Tensor:
    """Per-pair scores A_ij over the super-batch; an example's score sums its row and column."""
    if score == "learnability":
        return student_pair_losses - teacher_pair_losses
    if score == "easy-reference":
        return -teacher_pair_losses
    raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORES)}")


def example_scores(pair_scores: torch.Tensor) -> torch.Tensor:
    """Each example's score in the super-batch: its image row plus its text column (diagonal once)."""
    return pair_scores.sum(dim=1) + pair_scores.sum(dim=0) - pair_scores.diagonal()


def _gumbel_top_k(logits: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k draws without replacement from softmax(logits) (the Gumbel-top-k trick)."""
    uniform = torch.rand(logits.shape, generator=generator, dtype=torch.float64).clamp_(1e-20, 1.0)
    gumbel = -torch.log(-torch.log(uniform))
    return torch.topk(logits.double() + gumbel, k).indices


def chunk_bounds(size: int, chunks: int) -> list[int]:
    """Where JEST's chunks start and end in a sub-batch of `size` drawn in `chunks` chunks."""
    return torch.linspace(0, size, chunks + 1).round().long().tolist()


def micro_batches(chosen: torch.Tensor, accumulate: int, chunks: int) -> list[torch.Tensor]:
    """Cut the selected examples (in the order `select` drew them) into `accumulate` micro-batches
    along JEST's chunk boundaries, so examples drawn together are trained on together.

    Accumulation keeps JEST's selection whole: it is made on the full super-batch. What it loses is
    the sigmoid loss's negatives across micro-batches, as any accumulated contrastive loss does; the
    cross terms that made a chunk's examples worth picking together stay within one micro-batch
    whenever `accumulate` <= `chunks`."""
    chunks = max(1, min(chunks, len(chosen)))
    edges = chunk_bounds(len(chosen), chunks)
    if accumulate <= chunks:
        edges = [edges[round(k * chunks / accumulate)] for k in range(accumulate + 1)]
    else:  # finer than a chunk: no boundary to respect
        edges = chunk_bounds(len(chosen), accumulate)
    return [chosen[start:end] for start, end in itertools.pairwise(edges)]


def jest_sample(
    pair_scores: torch.Tensor, size: int, chunks: int, generator: torch.Generator
) -> torch.Tensor:
    """JEST's blocked sampling: draw the sub-batch in `chunks` chunks, each from a softmax over the
    candidates' scores conditioned on what is already chosen, so examples that are hard *together*
    (high cross terms A_ij + A_ji) get picked together.

    The conditional score of candidate i given the chosen set S is A_ii + sum_{j in S} (A_ij + A_ji);
    for the first chunk S is empty.
    """
    n = pair_scores.shape[0]
    symmetric = pair_scores + pair_scores.T
    conditional = pair_scores.diagonal().clone()
    available = torch.ones(n, dtype=torch.bool)
    chosen: list[torch.Tensor] = []
    for start, end in itertools.pairwise(chunk_bounds(size, chunks)):
        if end == start:
            continue
        logits = conditional.masked_fill(~available, float("-inf"))
        picked = _gumbel_top_k(logits, end - start, generator)
        chosen.append(picked)
        available[picked] = False
        conditional = conditional + symmetric[:, picked].sum(dim=1)
    return torch.cat(chosen)


def select(
    method: str,
    student_pair_losses: torch.Tensor | None,
    teacher_pair_losses: torch.Tensor | None,
    size: int,
    *,
    score: str = "learnability",
    chunks: int = 16,
    generator: torch.Generator,
) -> torch.Tensor:
    """Indices (into the super-batch) of the `size` examples to train on, in the order drawn (for
    ACID, chunk by chunk; see `micro_batches`)."""
    if method == "none":
        n = (student_pair_losses if student_pair_losses is not None else teacher_pair_losses).shape[0]
        return torch.randperm(n, generator=generator)[:size]
    pair_scores = score_matrix(student_pair_losses, teacher_pair_losses, score).detach().float().cpu()
    if method == "topk":
        return torch.topk(example_scores(pair_scores), size).indices
    if method == "acid":
        return jest_sample(pair_scores, size, min(chunks, size), generator)
    raise ValueError(f"unknown selection {method!r}; choose one of {', '.join(METHODS)}")
