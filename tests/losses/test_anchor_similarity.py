from __future__ import annotations

import math

import pytest
import torch

from spoco_monai.engines.random_state import find_generators
from spoco_monai.losses import AnchorSimilarityLoss, PointSupervisedLoss


def _similar(d):  # -log s with s = 2 / (1 + exp(d))
    return math.log((1 + math.exp(d)) / 2)


def _dissimilar(d):  # -log(1 - s) = -log tanh(d / 2)
    return -math.log(math.tanh(d / 2))


def test_exact_values_for_either_anchor_of_a_two_pixel_object():
    # one sample, E = 1, a 1x5 image (0, 1, 3, 7, 9); object 1 = pixels 0 and 1, object 2 = pixel 2, then unlabeled,
    # ignored
    embeddings = torch.tensor([[[[0.0, 1.0, 3.0, 7.0, 9.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[1, 1, 2, 0, -1]]]])
    # anchor of object 1 at pixel 0 (value 0) or pixel 1 (value 1); object 2's anchor is its one pixel (value 3)
    expected = {
        0: (_similar(0) + _similar(1) + _similar(0)) / 3 + (_dissimilar(9) + _dissimilar(4) + _dissimilar(9)) / 3,
        1: (_similar(1) + _similar(0) + _similar(0)) / 3 + (_dissimilar(9) + _dissimilar(4) + _dissimilar(4)) / 3,
    }
    seen = set()
    for seed in range(12):
        value = float(AnchorSimilarityLoss(seed=seed)(embeddings, target))
        anchor = min(expected, key=lambda a: abs(expected[a] - value))
        assert value == pytest.approx(expected[anchor], rel=1e-12)
        seen.add(anchor)
    assert seen == {0, 1}  # both pixels of object 1 serve as its anchor for some seed


def test_terms_are_reported_and_a_batch_averages_over_all_its_pairs():
    loss = AnchorSimilarityLoss(seed=0)
    embeddings = torch.tensor([[[[0.0, 2.0]]], [[[5.0, 5.0]]]], dtype=torch.float64)
    target = torch.tensor([[[[1, 2]]], [[[4, 0]]]])
    value = loss(embeddings, target)
    # pairs: sample 0 has two own pairs (d = 0) and two others (d = 4); sample 1 one own pair (d = 0)
    assert loss.last_terms["similar"] == pytest.approx(0.0, abs=1e-12)
    assert loss.last_terms["dissimilar"] == pytest.approx(_dissimilar(4), rel=1e-12)
    assert float(value) == pytest.approx(_dissimilar(4), rel=1e-12)


def test_gradients_match_finite_differences():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 3, 4, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    target = torch.randint(-1, 4, (2, 1, 4, 5), generator=generator)
    # a fresh loss per call draws the same anchors, so the function is deterministic for gradcheck
    assert torch.autograd.gradcheck(lambda e: AnchorSimilarityLoss(seed=5)(e, target), (embeddings,))


def test_unlabeled_and_ignored_pixels_take_no_part():
    embeddings = torch.randn(1, 2, 1, 6, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[[1, 1, 2, 0, -1, 2]]]])
    value = AnchorSimilarityLoss(seed=1)(embeddings, target)
    value.backward()
    assert torch.all(embeddings.grad[0, :, 0, 3:5] == 0)
    moved = embeddings.detach().clone()
    moved[0, :, 0, 3:5] += 10
    assert float(AnchorSimilarityLoss(seed=1)(moved, target)) == pytest.approx(float(value.detach()), rel=1e-12)


def test_equal_embeddings_of_two_objects_give_a_finite_loss_and_gradient():
    embeddings = torch.zeros(1, 2, 1, 3, dtype=torch.float64, requires_grad=True)
    value = AnchorSimilarityLoss(eps=1e-6)(embeddings, torch.tensor([[[[1, 2, 2]]]]))
    value.backward()
    assert float(value.detach()) == pytest.approx(-math.log(1e-6), rel=1e-9)
    assert torch.isfinite(embeddings.grad).all()


def test_no_object_gives_zero_still_connected():
    embeddings = torch.randn(2, 3, 1, 4, requires_grad=True)
    value = AnchorSimilarityLoss()(embeddings, torch.zeros(2, 1, 1, 4, dtype=torch.long))
    assert float(value.detach()) == 0.0
    value.backward()
    assert torch.all(embeddings.grad == 0)


def test_draws_are_seeded_and_the_generator_is_found_for_checkpoints():
    embeddings = torch.randn(1, 2, 5, 8, dtype=torch.float64)
    target = torch.randint(1, 4, (1, 1, 5, 8))
    first, second = AnchorSimilarityLoss(seed=7), AnchorSimilarityLoss(seed=7)
    assert [float(first(embeddings, target)) for _ in range(3)] == [float(second(embeddings, target)) for _ in range(3)]
    assert find_generators(first) == [first.generator]


def test_stands_in_for_the_embedding_loss_of_point_supervision():
    embeddings = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, 2], [0, 0, 2, 2], [0, 0, 0, 0]]]).unsqueeze(1)
    points = torch.zeros_like(target)
    points[0, 0, 0, 0], points[0, 0, 2, 3] = 1, 2
    loss = PointSupervisedLoss(AnchorSimilarityLoss(seed=0), embedding_dim=2)
    loss(embeddings, target, embeddings.detach(), points=points).backward()
    assert {"similar", "dissimilar", "localization"} <= set(loss.last_terms)
    assert torch.isfinite(embeddings.grad).all()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="eps"):
        AnchorSimilarityLoss(eps=0)
    with pytest.raises(ValueError, match="spatial shape"):
        AnchorSimilarityLoss()(torch.zeros(1, 2, 1, 4), torch.zeros(1, 1, 1, 5, dtype=torch.long))
