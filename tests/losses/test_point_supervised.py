"""PointSupervisedLoss: the embedding loss on the first channels plus the localisation loss on the last one."""

from __future__ import annotations

import pytest
import torch

from spoco_monai.losses import PointLocalizationLoss, PointSupervisedLoss, SpocoLoss


def batch():
    generator = torch.Generator().manual_seed(1)
    output = torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 1, 4, 5), generator=generator)
    points = torch.zeros(2, 1, 4, 5, dtype=torch.int64)
    points[0, 0, 1, 1], points[1, 0, 2, 3], points[1, 0, 0, 0] = 1, 2, -1
    return output, teacher, target, points


def test_total_is_the_sum_of_the_two_losses():
    output, teacher, target, points = batch()
    loss = PointSupervisedLoss(SpocoLoss(seed=2), localization_weight=0.5)
    total = loss(output, target, teacher, points=points)
    embedding = SpocoLoss(seed=2)(output[:, :2], target, teacher[:, :2])
    localization = PointLocalizationLoss()(output[:, 2:], points)
    assert total.item() == pytest.approx(embedding.item() + 0.5 * localization.item(), rel=1e-12)
    assert loss.last_terms["localization"] == pytest.approx(localization.item())
    assert {"pull", "consistency", "localization_split", "localization_false_positive"} <= set(loss.last_terms)


def test_gradient_matches_finite_differences():
    output, _, target, points = batch()
    loss = PointSupervisedLoss(SpocoLoss(seed=2, instance_weight=0.0, consistency_weight=0.0))
    assert torch.autograd.gradcheck(lambda x: loss(x, target, points=points), (output.requires_grad_(True),))


def test_missing_points_or_channel_raise():
    output, teacher, target, points = batch()
    with pytest.raises(ValueError, match="needs the point annotation"):
        PointSupervisedLoss(SpocoLoss())(output, target, teacher)
    with pytest.raises(ValueError, match="localisation channel"):
        PointSupervisedLoss(SpocoLoss())(output[:, :1], target, points=points)
    with pytest.raises(ValueError, match="localization_weight"):
        PointSupervisedLoss(SpocoLoss(), localization_weight=-1.0)


def test_a_network_without_the_localisation_channel_is_refused():
    loss = PointSupervisedLoss(SpocoLoss(seed=2), embedding_dim=3)
    embeddings = torch.zeros(1, 3, 4, 4)
    points = torch.zeros(1, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="3 embedding channels and a localisation channel, found 3 channels"):
        loss(embeddings, torch.zeros(1, 1, 4, 4, dtype=torch.int64), points=points)
