"""AffinitySideLoss by hand, its offsets and gradient, and its place in SpocoLoss."""

from __future__ import annotations

import pytest
import torch

from spoco_monai.losses import AffinitySideLoss, SpocoLoss


def _row(values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype).view(1, 1, 1, -1)


def test_value_by_hand():
    # delta_d 1: pixels 0-1 and 1-2 are 1 apart, affinity (1 - 1/2)^2 = 0.25, boundary 0.75; only the pair 1-2
    # crosses two ids: Dice = 1 - 2 * 0.75 / (2 * 0.75^2 + 1) = 1 - 1.5 / 2.125
    side = AffinitySideLoss(affinity_delta_dist=1.0)
    loss = side(_row([0.0, 1.0, 2.0]), torch.tensor([[[[1, 1, 2]]]]), offsets=[(0, 1)])
    assert loss.item() == pytest.approx(1 - 1.5 / 2.125, rel=1e-12)


def test_perfect_embeddings_give_zero():
    # same embedding inside an object, 2 * 2 delta_d apart across: affinities 1 and 0, exactly the labels'
    loss = AffinitySideLoss(affinity_delta_dist=1.0)(_row([0.0, 0.0, 4.0]), torch.tensor([[[[1, 1, 2]]]]), offsets=[(0, 1), (0, 2)])
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_pairs_with_unlabeled_or_ignored_pixels_take_no_part():
    embeddings = _row([0.0, 1.0, 2.0])
    side = AffinitySideLoss(affinity_delta_dist=1.0)
    assert side(embeddings, torch.tensor([[[[1, 0, 2]]]]), offsets=[(0, 1)]).item() == 0.0
    # the ignored middle pixel leaves only the pair 0-2 at offset 2: distance 2, affinity 0, boundary 1, truth 1
    assert side(embeddings, torch.tensor([[[[1, -1, 2]]]]), offsets=[(0, 1), (0, 2)]).item() == pytest.approx(0.0)


def test_offsets_are_reproducible_nonzero_and_bounded():
    first, second = AffinitySideLoss(max_offset=3, num_offsets=50, seed=5), AffinitySideLoss(max_offset=3, num_offsets=50, seed=5)
    offsets = first.draw_offsets(3)
    assert offsets == second.draw_offsets(3) and len(offsets) == 50
    assert all(any(offset) and max(abs(v) for v in offset) <= 3 for offset in offsets)


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    embeddings = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    target = torch.randint(1, 4, (2, 1, 5, 6))
    side = AffinitySideLoss(affinity_delta_dist=1.5)
    assert torch.autograd.gradcheck(lambda e: side(e, target, offsets=[(1, 0), (0, 2), (-2, 1)]), (embeddings,))


def test_spoco_loss_adds_the_weighted_side_term(random_batch):
    embeddings, target, teacher = random_batch["embeddings"], random_batch["target"], random_batch["teacher"]
    with_side = SpocoLoss(seed=3, affinity_weight=0.5, affinity_delta_dist=4.0, affinity_max_offset=2)
    total = with_side(embeddings, target, teacher)
    expected = SpocoLoss(seed=3)(embeddings, target, teacher) + 0.5 * AffinitySideLoss(4.0, max_offset=2, seed=5)(embeddings, target)
    assert total.item() == pytest.approx(expected.item(), rel=1e-9)
    assert with_side.last_terms["affinity"] > 0.0


def test_unlabeled_is_other_counts_labeled_unlabeled_pairs_as_boundaries():
    # a 1 x 3 line: object 1, an unlabeled pixel, object 1 again; offset (0, 1) pairs (1, 0) and (0, 1)
    embeddings = _row([0.0, 3.0, 0.0])
    target = torch.tensor([1, 0, 1]).view(1, 1, 1, 3)
    boundary = 1.0 - max(0.0, 1.0 - 3.0 / (2 * 2.0)) ** 2  # both pairs are 3 apart, delta_d 2
    expected = 1.0 - 2.0 * (2 * boundary) / (2 * boundary**2 + 2)
    term = AffinitySideLoss(2.0, unlabeled_is_other=True)(embeddings, target, offsets=[(0, 1)])
    assert term.item() == pytest.approx(expected, rel=1e-6)
    assert AffinitySideLoss(2.0)(embeddings, target, offsets=[(0, 1)]).item() == 0.0


def test_unlabeled_is_other_must_be_a_bool():
    with pytest.raises(TypeError, match="unlabeled_is_other must be a bool, found 1"):
        AffinitySideLoss(unlabeled_is_other=1)
