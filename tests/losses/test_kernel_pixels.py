"""``kernel_pixels``: the opt-in estimate of the (objects x pixels) kernel sums on a random subset of pixels."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from loss_helpers import (
    LINE_IDS,
    LINE_POINTS,
    LINE_SQUARED_TO_ANCHOR_1,
    LINE_SQUARED_TO_ANCHOR_2,
    kernel_rate,
    line_image,
    line_target,
    seeded,
)

from spoco_monai.losses import SingleInstanceLoss, SpocoLoss
from spoco_monai.losses.objects import ObjectIndex, means_and_pull
from spoco_monai.losses.pairwise import GaussianKernel, centre_of_valid_pixels, kernel_sums
from spoco_monai.losses.single_instance import estimated_mask_squares


def chosen_objects(points, ids, dtype=torch.float64):
    embeddings = line_image(points, dtype).flatten(2)
    target = line_target(ids).flatten(1)
    objects = ObjectIndex.from_target(target)
    means, _ = means_and_pull(embeddings, objects, 0.5)
    return SingleInstanceLoss().choose(embeddings, objects, means, target >= 0, (1, len(ids)))


def squared_mask(squared: float) -> float:
    return math.exp(-2.0 * kernel_rate() * squared)


def test_own_pixels_are_exact_and_the_others_scaled_from_the_drawn_ones():
    estimate = estimated_mask_squares(chosen_objects(LINE_POINTS, LINE_IDS), torch.tensor([[2, 3]]))
    first = [squared_mask(s) for s in LINE_SQUARED_TO_ANCHOR_1]
    second = [squared_mask(s) for s in LINE_SQUARED_TO_ANCHOR_2]
    expected = [first[0] + first[1] + 2.0 * (first[2] + first[3]), second[2] + 2.0 * second[3]]
    torch.testing.assert_close(estimate, torch.tensor([expected], dtype=torch.float64))


def test_the_mean_over_every_subset_is_the_exact_sum():
    points = [(0.0, 0.0), (0.4, 0.1), (1.0, 0.3), (0.2, 0.9), (1.1, 1.0), (0.6, 0.5)]
    ids = [1, 1, 2, 0, -1, 2]
    chosen = chosen_objects(points, ids)
    origin = centre_of_valid_pixels(chosen.embeddings, chosen.valid)
    exact = kernel_sums(chosen.anchors, chosen.embeddings, chosen.valid, origin, GaussianKernel(2.0 * chosen.rate))
    subsets = list(itertools.combinations(range(len(ids)), 3))
    estimates = [estimated_mask_squares(chosen, torch.tensor([subset])) for subset in subsets]
    torch.testing.assert_close(torch.stack(estimates).mean(dim=0), exact)
    assert not all(torch.allclose(estimate, exact) for estimate in estimates)


def test_the_estimate_has_exact_gradients():
    embeddings = 1.5 * torch.randn(1, 2, 1, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = torch.tensor([1, 1, 2, 0, 2, 1]).reshape(1, 6)
    instance = SingleInstanceLoss()

    def estimate(values: torch.Tensor) -> torch.Tensor:
        flat = values.flatten(2)
        objects = ObjectIndex.from_target(target)
        means, _ = means_and_pull(flat, objects, 0.5)
        chosen = instance.choose(flat, objects, means, target >= 0, (1, 6))
        return estimated_mask_squares(chosen, torch.tensor([[0, 3, 4]]))

    assert torch.autograd.gradcheck(seeded(instance, estimate), (embeddings.requires_grad_(),))


def test_kernel_pixels_of_at_least_the_patch_change_nothing(random_batch):
    embeddings = random_batch["embeddings"].requires_grad_()
    values, gradients = [], []
    for kernel_pixels in (None, 12, 100):
        loss = SpocoLoss(kernel_pixels=kernel_pixels)(embeddings, random_batch["target"], random_batch["teacher"])
        values.append(loss.detach())
        gradients.append(torch.autograd.grad(loss, embeddings)[0])
    assert torch.equal(values[0], values[1]) and torch.equal(values[0], values[2])
    assert torch.equal(gradients[0], gradients[1]) and torch.equal(gradients[0], gradients[2])


def test_drawn_pixels_are_seeded_and_new_at_every_call():
    generator = torch.Generator().manual_seed(2)
    embeddings = torch.randn(2, 4, 16, 16, generator=generator)
    target = torch.randint(-1, 6, (2, 1, 16, 16), generator=generator)
    teacher = torch.randn(2, 4, 16, 16, generator=generator)
    first, second = SpocoLoss(kernel_pixels=64, seed=3), SpocoLoss(kernel_pixels=64, seed=3)
    calls = [[loss(embeddings, target, teacher).item() for _ in range(2)] for loss in (first, second)]
    assert calls[0] == calls[1] and calls[0][0] != calls[0][1]
    exact = SpocoLoss(seed=3)(embeddings, target, teacher).item()
    assert exact not in calls[0]


def test_the_estimated_loss_averages_to_near_the_exact_one():
    generator = torch.Generator().manual_seed(4)
    embeddings = torch.randn(1, 4, 32, 32, generator=generator)
    target = torch.randint(0, 9, (1, 1, 32, 32), generator=generator)
    teacher = embeddings + 0.1 * torch.randn(1, 4, 32, 32, generator=generator)
    exact = SpocoLoss(max_anchors=4)(embeddings, target, teacher)
    estimated = SpocoLoss(max_anchors=4, kernel_pixels=256)
    mean = torch.stack([estimated(embeddings, target, teacher) for _ in range(20)]).mean()
    assert mean.item() == pytest.approx(exact.item(), rel=0.02)


def test_only_the_dice_is_estimated():
    chosen = chosen_objects(LINE_POINTS, LINE_IDS)
    with pytest.raises(ValueError, match="a pixel subset estimates the Dice only, found loss='bce'"):
        SingleInstanceLoss(loss="bce").chosen_term(chosen, torch.tensor([[0, 1]]))


@pytest.mark.parametrize("kernel_pixels", [0, -5])
def test_kernel_pixels_must_be_positive(kernel_pixels):
    with pytest.raises(ValueError, match="kernel_pixels"):
        SpocoLoss(kernel_pixels=kernel_pixels)
