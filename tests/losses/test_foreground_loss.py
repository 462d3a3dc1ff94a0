"""ForegroundLoss by hand, unknown pixels, and the foreground channel of SpocoLoss."""

from __future__ import annotations

import math

import pytest
import torch

from spoco_monai.losses import ForegroundLoss, SpocoLoss


def test_value_by_hand():
    # p = sigmoid(0) = 0.5 on both known pixels: BCE = ln 2; Dice = 1 - 2 * 0.5 / (0.25 + 0.25 + 1) = 1/3
    logits = torch.tensor([[[0.0, 0.0, 5.0]]], dtype=torch.float64)
    target = torch.tensor([[[1.0, 0.0, -1.0]]], dtype=torch.float64)
    assert ForegroundLoss()(logits, target).item() == pytest.approx(math.log(2) + 1 / 3, rel=1e-12)
    assert ForegroundLoss(dice_weight=0.0)(logits, target).item() == pytest.approx(math.log(2), rel=1e-12)


def test_dice_is_a_mean_over_samples_with_known_pixels():
    # sample 0: perfect-ish prediction of a foreground pixel; sample 1: all unknown (no Dice, no BCE)
    logits = torch.tensor([[0.0], [3.0]], dtype=torch.float64)
    target = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    # one known pixel, p = 0.5, g = 1: BCE ln 2; Dice 1 - 2 * 0.5 / (0.25 + 1) = 0.2
    assert ForegroundLoss()(logits, target).item() == pytest.approx(math.log(2) + 0.2, rel=1e-12)


def test_all_unknown_gives_zero_with_a_gradient():
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    loss = ForegroundLoss()(logits, -torch.ones(2, 1, 4, 4))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_gradient_matches_finite_differences():
    logits = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    target = torch.randint(-1, 2, (2, 1, 3, 3)).double()
    target[:, :, 0, 0] = 1.0
    assert torch.autograd.gradcheck(lambda x: ForegroundLoss()(x, target), (logits,))


def test_shape_mismatch_and_bad_weight_raise():
    with pytest.raises(ValueError, match="one value per pixel"):
        ForegroundLoss()(torch.zeros(1, 4), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="dice_weight"):
        ForegroundLoss(dice_weight=-1.0)


def test_spoco_loss_splits_off_the_foreground_channel(random_batch):
    embeddings, target, teacher = random_batch["embeddings"], random_batch["target"], random_batch["teacher"]
    logit = torch.randn(embeddings.shape[0], 1, *embeddings.shape[2:], dtype=embeddings.dtype)
    foreground = (target > 0).to(embeddings.dtype)
    with_channel = SpocoLoss(foreground_weight=0.5, seed=3)
    total = with_channel(torch.cat([embeddings, logit], 1), target, torch.cat([teacher, logit], 1), foreground)
    without = SpocoLoss(seed=3)
    expected = without(embeddings, target, teacher) + 0.5 * ForegroundLoss()(logit, foreground)
    assert total.item() == pytest.approx(expected.item(), rel=1e-9)
    assert with_channel.last_terms["foreground"] == pytest.approx(ForegroundLoss()(logit, foreground).item())
    assert without.last_terms["foreground"] == 0.0


def test_spoco_loss_needs_the_foreground_target(random_batch):
    with pytest.raises(ValueError, match="foreground target"):
        SpocoLoss(foreground_weight=1.0)(random_batch["embeddings"], random_batch["target"])


def test_positive_unlabeled_risk_by_hand():
    # one labeled pixel and two unknown ones, all at logit 0 (every BCE is ln 2), prior 0.5 on the unknown pixels:
    # known BCE ln 2, Dice 0.2, PU risk 0.5 ln 2 + max(0, ln 2 - 0.5 ln 2) = ln 2
    logits = torch.zeros(1, 1, 3, dtype=torch.float64)
    target = torch.tensor([[[1.0, -1.0, -1.0], [0.5, 0.5, 0.5]]], dtype=torch.float64)
    assert ForegroundLoss()(logits, target).item() == pytest.approx(2 * math.log(2) + 0.2, rel=1e-12)


def test_positive_unlabeled_background_risk_never_goes_negative():
    # unknown pixels called background with confidence: mean_U BCE(., 0) = softplus(-10) < 0.5 ln 2, so the
    # background part is clipped at 0 and only pi * mean_P BCE(., 1) = 0.5 ln 2 remains
    logits = torch.tensor([[[0.0, -10.0, -10.0]]], dtype=torch.float64)
    target = torch.tensor([[[1.0, -1.0, -1.0], [0.5, 0.5, 0.5]]], dtype=torch.float64)
    expected = math.log(2) + 0.2 + 0.5 * math.log(2)
    assert ForegroundLoss()(logits, target).item() == pytest.approx(expected, rel=1e-12)


def test_positive_unlabeled_risk_skips_samples_without_labeled_foreground():
    # sample 1 has no labeled pixel: no PU risk and no known pixel; sample 0 as in the hand-worked case
    logits = torch.zeros(2, 1, 3, dtype=torch.float64)
    target = torch.tensor(
        [[[1.0, -1.0, -1.0], [0.5, 0.5, 0.5]], [[-1.0, -1.0, -1.0], [0.3, 0.3, 0.3]]], dtype=torch.float64
    )
    assert ForegroundLoss()(logits, target).item() == pytest.approx(2 * math.log(2) + 0.2, rel=1e-12)


def test_positive_unlabeled_gradient_matches_finite_differences():
    logits = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.full((2, 1, 3, 3), -1.0, dtype=torch.float64)
    labels[:, :, 0, :2] = 1.0
    target = torch.cat([labels, torch.tensor([0.2, 0.6], dtype=torch.float64).view(2, 1, 1, 1).expand(2, 1, 3, 3)], 1)
    assert torch.autograd.gradcheck(lambda x: ForegroundLoss()(x, target), (logits,))


def test_positive_unlabeled_learns_the_background_without_background_labels():
    # bright pixels are foreground: one of five bright pixels is labeled, the rest unknown (prior 4 / 15);
    # a logistic model trained on this alone must call the dim pixels background
    torch.manual_seed(0)
    intensity = torch.tensor([1.0] * 5 + [-1.0] * 15).view(1, 1, 20)
    labels = torch.full((1, 1, 20), -1.0)
    labels[..., 0] = 1.0
    target = torch.cat([labels, torch.full_like(labels, 4 / 15)], 1)
    scale, shift = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([scale, shift], lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        ForegroundLoss(dice_weight=0.0)(scale * intensity + shift, target).backward()
        optimizer.step()
    probabilities = torch.sigmoid(scale * intensity + shift).flatten()
    assert bool((probabilities[:5] > 0.5).all()) and bool((probabilities[5:] < 0.5).all())
