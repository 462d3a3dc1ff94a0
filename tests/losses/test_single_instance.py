"""SingleInstanceLoss: exact Dice and BCE values, anchors, subsets, reproducibility, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from loss_helpers import (
    LINE_IDS as IDS,
    LINE_POINTS as POINTS,
    LINE_SQUARED_TO_ANCHOR_1 as SQUARED_TO_ANCHOR_1,
    LINE_SQUARED_TO_ANCHOR_2 as SQUARED_TO_ANCHOR_2,
    kernel_rate,
    line_image,
    line_target,
    seeded,
)

from spoco_monai.losses import SingleInstanceLoss, kernel_sigma_squared
from spoco_monai.losses.objects import ObjectIndex, means_and_pull



def soft_mask(squared: list[float]) -> list[float]:
    return [math.exp(-kernel_rate() * s) for s in squared]


def test_kernel_sigma_squared_gives_threshold_at_delta_var():
    sigma_sq = kernel_sigma_squared(0.5, 0.9)
    assert sigma_sq == pytest.approx(-0.25 / (2 * math.log(0.9)))
    assert math.exp(-(0.5**2) / (2 * sigma_sq)) == pytest.approx(0.9)


def test_exact_dice_on_hand_made_line():
    mask_1, mask_2 = soft_mask(SQUARED_TO_ANCHOR_1), soft_mask(SQUARED_TO_ANCHOR_2)
    dice_1 = 1 - 2 * (mask_1[0] + mask_1[1]) / (sum(m * m for m in mask_1) + 2)
    dice_2 = 1 - 2 * mask_2[2] / (sum(m * m for m in mask_2) + 1)
    value = SingleInstanceLoss()(line_image(POINTS), line_target(IDS))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx((dice_1 + dice_2) / 2, rel=1e-6)


def test_exact_bce_on_hand_made_line():
    rate = kernel_rate()
    mask_1, mask_2 = soft_mask(SQUARED_TO_ANCHOR_1), soft_mask(SQUARED_TO_ANCHOR_2)
    # Inside the object -log S = rate * squared distance; outside -log(1 - S); mean over the 4 pixels.
    bce_1 = (rate * 1.0 + rate * 1.0 - math.log(1 - mask_1[2]) - math.log(1 - mask_1[3])) / 4
    bce_2 = (-math.log(1 - mask_2[0]) - math.log(1 - mask_2[1]) + 0.0 - math.log(1 - mask_2[3])) / 4
    value = SingleInstanceLoss(loss="bce")(line_image(POINTS), line_target(IDS))
    assert value.item() == pytest.approx((bce_1 + bce_2) / 2, rel=1e-5)


def test_bce_matches_torch_binary_cross_entropy():
    generator = torch.Generator().manual_seed(4)
    embeddings = torch.randn(1, 2, 1, 6, generator=generator, dtype=torch.float64)
    target = line_target([1, 1, 1, 2, 0, -1])
    loss = SingleInstanceLoss(loss="bce")
    value = seeded(loss, lambda e: loss(e, target))(embeddings)
    # Same anchors, drawn again with the same seed.
    flat = embeddings.flatten(2)
    objects = ObjectIndex.from_target(target.flatten(1))
    loss.generator.manual_seed(0)
    anchors = loss.anchors(flat, objects, means_and_pull(flat, objects, 0.5)[0])[0]
    pixels = flat[0, :, :5].T
    masks = torch.exp(-torch.cdist(anchors, pixels).square() * kernel_rate())
    truth = torch.stack([target.flatten()[:5] == 1, target.flatten()[:5] == 2]).to(masks.dtype)
    expected = torch.nn.functional.binary_cross_entropy(masks, truth, reduction="none").mean(dim=1).mean()
    torch.testing.assert_close(value, expected)


def test_anchor_is_a_random_pixel_near_the_mean():
    # Mean 0.45: pixels 0, 0.1 and 0.2 lie within 0.5 of it, pixel 1.5 does not.
    embeddings = line_image([(0.0, 0.0), (0.1, 0.0), (0.2, 0.0), (1.5, 0.0)]).flatten(2)
    objects = ObjectIndex.from_target(torch.ones(1, 4, dtype=torch.int64))
    means, _ = means_and_pull(embeddings, objects, 0.5)
    chosen = set()
    for seed in range(30):
        anchor = SingleInstanceLoss(seed=seed).anchors(embeddings, objects, means)
        chosen.add(round(anchor[0, 0, 0].item(), 3))
    assert chosen == {0.0, 0.1, 0.2}


def test_max_instances_uses_a_random_subset():
    # Three single-pixel objects: the Dice of each depends on how close the others are.
    points = [(0.0, 0.0), (0.6, 0.0), (3.0, 0.0)]
    squared = [[0.0, 0.36, 9.0], [0.36, 0.0, 5.76], [9.0, 5.76, 0.0]]
    dice = [1 - 2 / (sum(m * m for m in soft_mask(row)) + 1) for row in squared]
    values = set()
    for seed in range(12):
        value = SingleInstanceLoss(max_instances=1, seed=seed)(line_image(points), line_target([1, 2, 3]))
        assert min(abs(value.item() - d) for d in dice) < 1e-6
        values.add(round(value.item(), 6))
    assert len(values) > 1
    full = SingleInstanceLoss(max_instances=3)(line_image(points), line_target([1, 2, 3]))
    assert full.item() == pytest.approx(sum(dice) / 3, rel=1e-6)


def test_same_seed_same_results():
    generator = torch.Generator().manual_seed(5)
    embeddings = 0.3 * torch.randn(2, 3, 8, 8, generator=generator)
    target = torch.randint(-1, 6, (2, 8, 8), generator=generator)
    first, second = SingleInstanceLoss(max_instances=2, seed=7), SingleInstanceLoss(max_instances=2, seed=7)
    for _ in range(3):
        assert first(embeddings, target).item() == second(embeddings, target).item()


@pytest.mark.parametrize("options", [{"loss": "dice"}, {"loss": "bce"}, {"max_instances": 2}])
def test_gradcheck_float64(random_batch, options):
    embeddings = random_batch["embeddings"].requires_grad_()
    loss = SingleInstanceLoss(**options)
    assert torch.autograd.gradcheck(seeded(loss, lambda e: loss(e, random_batch["target"])), (embeddings,))


@pytest.mark.parametrize("ids", [[0, 0, 0, 0], [-1, -1, -1, -1], [0, -1, 0, -1]])
def test_no_object_gives_zero(ids):
    embeddings = line_image(POINTS).requires_grad_()
    value = SingleInstanceLoss()(embeddings, line_target(ids))
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize("loss_name", ["dice", "bce"])
def test_one_object_and_coincident_embeddings_are_finite(loss_name):
    embeddings = torch.zeros(1, 2, 2, 3, requires_grad=True)
    value = SingleInstanceLoss(loss=loss_name)(embeddings, torch.ones(1, 1, 2, 3, dtype=torch.int64))
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(embeddings.grad).all()
