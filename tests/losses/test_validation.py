"""Invalid inputs and options raise errors that name the problem."""

from __future__ import annotations

import pytest
import torch

from spoco_monai.losses import (
    DiscriminativeLoss,
    EmbeddingConsistencyLoss,
    SingleInstanceLoss,
    SpocoLoss,
    UnlabeledPushLoss,
    kernel_sigma_squared,
)

EMBEDDINGS = torch.zeros(2, 3, 4, 5)
TARGET = torch.zeros(2, 1, 4, 5, dtype=torch.int64)


@pytest.mark.parametrize(
    "embeddings, target, error, message",
    [
        (EMBEDDINGS, TARGET.float(), TypeError, "integer dtype"),
        (EMBEDDINGS, TARGET.bool(), TypeError, "integer dtype"),
        (EMBEDDINGS, TARGET - 2, ValueError, ">= -1"),
        (EMBEDDINGS.long(), TARGET, TypeError, "floating point"),
        (torch.zeros(2, 3, 5), TARGET[..., 0, :], ValueError, "4 or 5 dimensions"),
        (torch.zeros(2, 3, 2, 2, 2, 2), TARGET, ValueError, "4 or 5 dimensions"),
        (EMBEDDINGS, torch.zeros(2, 2, 4, 5, dtype=torch.int64), ValueError, r"\(B, 1, \*S\) or \(B, \*S\)"),
        (EMBEDDINGS, torch.zeros(2, 5, dtype=torch.int64), ValueError, r"\(B, 1, \*S\) or \(B, \*S\)"),
        (EMBEDDINGS, TARGET[:1], ValueError, "batch size mismatch"),
        (EMBEDDINGS, TARGET[..., :3], ValueError, "spatial shape mismatch"),
        (EMBEDDINGS, TARGET[:, 0, :, :4], ValueError, "spatial shape mismatch"),
        (EMBEDDINGS.numpy(), TARGET, TypeError, "torch.Tensor"),
        (EMBEDDINGS, TARGET.numpy(), TypeError, "torch.Tensor"),
        (torch.zeros(2, 3, 0, 5), torch.zeros(2, 0, 5, dtype=torch.int64), ValueError, "non-empty"),
    ],
)
@pytest.mark.parametrize("loss", [DiscriminativeLoss(), SingleInstanceLoss(), UnlabeledPushLoss(), SpocoLoss()])
def test_invalid_inputs(loss, embeddings, target, error, message):
    with pytest.raises(error, match=message):
        loss(embeddings, target)


@pytest.mark.parametrize("teacher", [torch.zeros(2, 3, 4, 4), torch.zeros(2, 2, 4, 5), torch.zeros(1, 3, 4, 5)])
def test_teacher_shape_must_match(teacher):
    with pytest.raises(ValueError, match="student's shape"):
        SpocoLoss()(EMBEDDINGS, TARGET, teacher)
    with pytest.raises(ValueError, match="student's shape"):
        EmbeddingConsistencyLoss()(EMBEDDINGS, teacher, TARGET)


def test_accepted_target_layouts_agree():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 3, 4, 5, generator=generator)
    target = torch.randint(-1, 4, (2, 1, 4, 5), generator=generator)
    loss = DiscriminativeLoss()
    expected = loss(embeddings, target)
    for layout in (target[:, 0], target.to(torch.int32), target.to(torch.int8)):
        torch.testing.assert_close(loss(embeddings, layout), expected)


@pytest.mark.parametrize(
    "factory, error, message",
    [
        (lambda: DiscriminativeLoss(delta_var=0.0), ValueError, "delta_var"),
        (lambda: DiscriminativeLoss(delta_dist=-1.0), ValueError, "delta_dist"),
        (lambda: DiscriminativeLoss(alpha=-0.1), ValueError, "alpha"),
        (lambda: DiscriminativeLoss(beta=-1), ValueError, "beta"),
        (lambda: DiscriminativeLoss(gamma="0.1"), TypeError, "gamma"),
        (lambda: SingleInstanceLoss(kernel_threshold=1.0), ValueError, "kernel_threshold"),
        (lambda: SingleInstanceLoss(kernel_threshold=0.0), ValueError, "kernel_threshold"),
        (lambda: SingleInstanceLoss(loss="focal"), ValueError, "loss"),
        (lambda: SingleInstanceLoss(max_instances=0), ValueError, "max_instances"),
        (lambda: SingleInstanceLoss(max_instances=2.5), TypeError, "max_instances"),
        (lambda: SingleInstanceLoss(seed=1.5), TypeError, "seed"),
        (lambda: UnlabeledPushLoss(delta_dist=0.0), ValueError, "delta_dist"),
        (lambda: EmbeddingConsistencyLoss(max_anchors=0), ValueError, "max_anchors"),
        (lambda: EmbeddingConsistencyLoss(min_unlabeled_fraction=1.5), ValueError, "min_unlabeled_fraction"),
        (lambda: EmbeddingConsistencyLoss(delta_var=-0.5), ValueError, "delta_var"),
        (lambda: SpocoLoss(instance_weight=-1.0), ValueError, "instance_weight"),
        (lambda: SpocoLoss(unlabeled_weight=-1.0), ValueError, "unlabeled_weight"),
        (lambda: SpocoLoss(consistency_weight=-1.0), ValueError, "consistency_weight"),
        (lambda: SpocoLoss(sparse="yes"), TypeError, "sparse"),
        (lambda: SpocoLoss(max_anchors=-3), ValueError, "max_anchors"),
        (lambda: SpocoLoss(kernel_threshold=2.0), ValueError, "kernel_threshold"),
        (lambda: SpocoLoss(delta_var=True), TypeError, "delta_var"),
        (lambda: kernel_sigma_squared(0.5, 1.5), ValueError, "kernel_threshold"),
    ],
)
def test_invalid_options(factory, error, message):
    with pytest.raises(error, match=message):
        factory()
