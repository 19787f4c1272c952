"""Sigmoid and KD losses against hand-computed values; selection picks what it should."""

from __future__ import annotations

import math

import pytest
import torch

from siglip2_sdk.distill.losses import kd_loss, pair_logits, pair_losses, same_texts, sigmoid_loss
from siglip2_sdk.distill.selection import example_scores, jest_sample, micro_batches, select


def log1p_exp(x: float) -> float:  # -log sigmoid(-x)
    return math.log1p(math.exp(x))


def test_sigmoid_loss_matches_hand_computation():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    t, b = torch.tensor(10.0), torch.tensor(-10.0)
    # z = 10 * <img_i, txt_j> - 10: [[0, -4], [-10, -2]]
    z = [[0.0, -4.0], [-10.0, -2.0]]
    expected = (
        log1p_exp(-z[0][0]) + log1p_exp(z[0][1]) + log1p_exp(z[1][0]) + log1p_exp(-z[1][1])
    ) / 2  # positives on the diagonal pay -log sigmoid(z), negatives -log sigmoid(-z)
    assert sigmoid_loss(image, text, t, b).item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(pair_logits(image, text, t, b), torch.tensor(z))


def test_kd_loss_matches_hand_computation_and_is_minimal_at_the_teacher():
    teacher = torch.tensor([[2.0, -3.0], [-1.0, 0.5]])
    student = torch.tensor([[0.0, -1.0], [-2.0, 1.0]])
    p = torch.sigmoid(teacher)
    expected = (
        -(p * torch.log(torch.sigmoid(student)) + (1 - p) * torch.log(1 - torch.sigmoid(student))).sum() / 2
    )
    assert kd_loss(student, teacher).item() == pytest.approx(expected.item(), rel=1e-6)
    at_teacher = teacher.clone().requires_grad_(True)
    kd_loss(at_teacher, teacher).backward()
    assert at_teacher.grad.abs().max().item() < 1e-7


def losses_where_learnable(n: int, learnable: list[int]):
    """Student finds `learnable` examples hard while the teacher finds them easy; the rest are
    equally easy for both (nothing to learn) or hard for both (noise)."""
    student = torch.full((n, n), 0.1)
    teacher = torch.full((n, n), 0.1)
    for i in learnable:
        student[i, i] = 5.0
        teacher[i, i] = 0.1
    noisy = [i for i in range(n) if i not in learnable][: n // 4]
    for i in noisy:
        student[i, i] = teacher[i, i] = 5.0
    return student, teacher


def test_topk_takes_the_learnable_examples_first():
    student, teacher = losses_where_learnable(32, learnable=[3, 7, 11, 20])
    picked = select("topk", student, teacher, 4, generator=torch.Generator().manual_seed(0))
    assert sorted(picked.tolist()) == [3, 7, 11, 20]


def test_easy_reference_takes_what_the_teacher_finds_easiest():
    student, teacher = losses_where_learnable(8, learnable=[])
    teacher[5, 5] = 0.0
    picked = select("topk", student, teacher, 1, score="easy-reference", generator=torch.Generator())
    assert picked.tolist() == [5]


def test_acid_prefers_learnable_examples():
    student, teacher = losses_where_learnable(64, learnable=list(range(8)))
    counts = torch.zeros(64)
    for seed in range(50):
        picked = select("acid", student, teacher, 8, chunks=4, generator=torch.Generator().manual_seed(seed))
        assert len(set(picked.tolist())) == 8
        counts[picked] += 1
    assert counts[:8].sum() > 0.8 * counts.sum()  # uniform sampling would give 8/64 = 12.5%


def asymmetric_scores() -> torch.Tensor:
    """A learnability matrix on which every shortcut of JEST's joint sampling picks differently.

    Example 0 is certain to be drawn first. Given it, the joint conditional score of i is
    A_ii + A_i0 + A_0i: 1 scores 180, 4 scores 120, 2 and 3 score 30. Conditioning on the row only
    (A_i0) would pick 2, on the column only (A_0i) 3; top-k by per-example score, or independent
    draws, would pick 4 (its row holds a large A_45 that has nothing to do with example 0)."""
    scores = torch.zeros(8, 8)
    scores[0, 0] = 1000.0
    scores[1, 0] = scores[0, 1] = 90.0
    scores[2, 0], scores[0, 2] = 150.0, -120.0
    scores[3, 0], scores[0, 3] = -120.0, 150.0
    scores[4, 4] = 120.0
    scores[4, 5] = 200.0
    return scores


def conditioned_pick(scores: torch.Tensor, first: int, cross: torch.Tensor) -> int:
    """The best second pick given `first` under a conditioning rule `cross` (N,)."""
    conditional = scores.diagonal() + cross
    conditional[first] = float("-inf")
    return int(conditional.argmax())


def test_the_asymmetric_matrix_tells_the_shortcuts_apart():
    scores = asymmetric_scores()
    assert conditioned_pick(scores, 0, scores[:, 0] + scores[0, :]) == 1  # joint
    assert conditioned_pick(scores, 0, scores[:, 0]) == 2  # row only
    assert conditioned_pick(scores, 0, scores[0, :]) == 3  # column only
    assert sorted(torch.topk(example_scores(scores), 2).indices.tolist()) == [0, 4]  # top-k
    assert sorted(torch.topk(scores.diagonal(), 2).indices.tolist()) == [0, 4]  # independent


def test_joint_sampling_conditions_on_rows_and_columns_of_what_is_chosen():
    scores = asymmetric_scores()
    for seed in range(20):
        picked = jest_sample(scores, size=2, chunks=2, generator=torch.Generator().manual_seed(seed))
        assert picked.tolist() == [0, 1], f"seed {seed}: {picked.tolist()}"


def test_acid_selection_keeps_jest_order_and_topk_does_not_pair():
    student, teacher = asymmetric_scores(), torch.zeros(8, 8)
    generator = torch.Generator().manual_seed(0)
    assert select("acid", student, teacher, 2, chunks=2, generator=generator).tolist() == [0, 1]
    assert sorted(select("topk", student, teacher, 2, generator=generator).tolist()) == [0, 4]


def test_micro_batches_follow_the_chunks():
    chosen = torch.arange(100, 112)  # 12 examples drawn in 4 chunks of 3
    parts = micro_batches(chosen, accumulate=2, chunks=4)
    assert [p.tolist() for p in parts] == [list(range(100, 106)), list(range(106, 112))]
    # 3 micro-batches over 4 chunks: every cut still falls on a chunk boundary (multiples of 3).
    cuts = [len(p) for p in micro_batches(chosen, accumulate=3, chunks=4)]
    assert sum(cuts) == 12 and all(c % 3 == 0 for c in cuts), cuts
    assert [len(p) for p in micro_batches(chosen, accumulate=12, chunks=4)] == [1] * 12


def test_none_is_uniform():
    counts = torch.zeros(10)
    generator = torch.Generator().manual_seed(0)
    student, teacher = losses_where_learnable(10, learnable=[0])
    for _ in range(2000):
        counts[select("none", student, teacher, 3, generator=generator)] += 1
    frequencies = counts / counts.sum()
    assert (frequencies - 0.1).abs().max() < 0.02


def test_pair_losses_put_positives_on_the_diagonal():
    logits = torch.tensor([[3.0, 3.0], [3.0, 3.0]])
    losses = pair_losses(logits)
    assert losses[0, 0] < losses[0, 1]  # a high logit is good for a positive, bad for a negative


def test_identical_captions_can_be_left_out_of_the_negatives():
    # Examples 0 and 2 share a caption: with `same_texts` ignored, image 0 against caption 2 (and 2
    # against 0) adds nothing, whatever its logit; every other pair keeps its term.
    input_ids = torch.tensor([[5, 6, 1], [7, 1, 0], [5, 6, 1]])
    ignored = same_texts(input_ids)
    assert ignored.nonzero().tolist() == [[0, 2], [2, 0]]
    logits = torch.randn(3, 3)
    kept, dropped = pair_losses(logits), pair_losses(logits, ignored)
    assert dropped[0, 2] == 0 and dropped[2, 0] == 0
    assert torch.equal(dropped[~ignored], kept[~ignored])
    raised = logits.clone()
    raised[0, 2] = 20.0  # a confident "match" between twins costs nothing once ignored
    assert pair_losses(raised, ignored).sum() == pytest.approx(dropped.sum().item())
