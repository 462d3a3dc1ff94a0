"""UnlabeledPushLoss: exact values, gradients and degenerate inputs."""

from __future__ import annotations

import pytest
import torch
from loss_helpers import line_image, line_target

from spoco_monai.losses import UnlabeledPushLoss

# Object 1: (0,0), (2,0), mean (1,0). Object 2: (1,2.5). Unlabeled: (1,1) and (4,0). Ignored: (1,0.9).
POINTS = [(0.0, 0.0), (2.0, 0.0), (1.0, 1.0), (4.0, 0.0), (1.0, 2.5), (1.0, 0.9)]
IDS = [1, 1, 0, 0, 2, -1]
# delta_d = 2. Object 1: distances 1 and 3 -> (2 - 1)^2 = 1 and 0, mean over |U| = 2: 0.5.
# Object 2: distances 1.5 and sqrt(9 + 6.25) > 2 -> 0.25 and 0, mean 0.125.
EXPECTED = (0.5 + 0.125) / 2


def test_exact_value_on_hand_made_line():
    value = UnlabeledPushLoss(delta_dist=2.0)(line_image(POINTS), line_target(IDS))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(EXPECTED, rel=1e-6)


def test_three_dimensional_input():
    embeddings = line_image(POINTS).reshape(1, 2, 1, 2, 3)
    target = line_target(IDS).reshape(1, 1, 2, 3)
    assert UnlabeledPushLoss()(embeddings, target).item() == pytest.approx(EXPECTED, rel=1e-6)


def test_batch_mean():
    embeddings = torch.cat([line_image(POINTS), line_image(POINTS)])
    target = torch.cat([line_target(IDS), line_target([1, 1, 2, 2, 3, -1])])  # nothing unlabeled: 0
    assert UnlabeledPushLoss()(embeddings, target).item() == pytest.approx(EXPECTED / 2, rel=1e-6)


def test_gradcheck_float64(random_batch):
    embeddings = random_batch["embeddings"].requires_grad_()
    loss = UnlabeledPushLoss(delta_dist=2.5)
    assert torch.autograd.gradcheck(lambda e: loss(e, random_batch["target"]), (embeddings,))


@pytest.mark.parametrize("ids", [[0, 0, 0, 0, 0, 0], [1, 1, 2, 2, 2, 1], [-1] * 6, [0, -1, 0, 0, -1, 0]])
def test_nothing_to_act_on_gives_zero(ids):
    embeddings = line_image(POINTS).requires_grad_()
    value = UnlabeledPushLoss()(embeddings, line_target(ids))
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(embeddings.grad).all()


def test_unlabeled_pixel_on_a_mean_has_finite_gradient():
    embeddings = line_image([(1.0, 0.0), (1.0, 0.0), (1.0, 0.0)]).requires_grad_()
    value = UnlabeledPushLoss(delta_dist=2.0)(embeddings, line_target([1, 1, 0]))
    value.backward()
    assert value.item() == pytest.approx(4.0)
    assert torch.isfinite(embeddings.grad).all()
