"""MONAI cumulative metric classes: per-sample scores, accumulation over batches, reduction, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from spoco_monai.metrics import (
    AbsoluteCountDifferenceMetric,
    AdaptedRandErrorMetric,
    AveragePrecisionMetric,
    MeanAveragePrecisionMetric,
    SymmetricBestDiceMetric,
    VariationOfInformationMetric,
    absolute_count_difference,
    adapted_rand_error,
    average_precision,
    mean_average_precision,
    symmetric_best_dice,
    variation_of_information,
)

# metric class instance and the function giving one sample's score(s)
CLASSES_AND_FUNCTIONS = {
    "sbd": (SymmetricBestDiceMetric, symmetric_best_dice),
    "dic": (AbsoluteCountDifferenceMetric, absolute_count_difference),
    "arand": (AdaptedRandErrorMetric, adapted_rand_error),
    "ap@0.3": (lambda **kw: AveragePrecisionMetric(iou_threshold=0.3, **kw),
               lambda p, g: average_precision(p, g, iou_threshold=0.3)),
    "map": (MeanAveragePrecisionMetric, mean_average_precision),
    "voi": (VariationOfInformationMetric, variation_of_information),
}


def random_batch(seed: int, batch_size: int = 2, shape: tuple[int, ...] = (8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, *shape) integer label batches: a prediction that keeps the ground truth's 2x2 blocks half the time."""
    generator = torch.Generator().manual_seed(seed)
    coarse = (batch_size, 1) + tuple(s // 2 for s in shape)
    gt = torch.randint(0, 5, coarse, generator=generator).repeat_interleave(2, -1).repeat_interleave(2, -2)
    noise = torch.randint(0, 7, coarse, generator=generator).repeat_interleave(2, -1).repeat_interleave(2, -2)
    keep = torch.rand(gt.shape, generator=generator) < 0.5
    return torch.where(keep, gt, noise), gt


def per_sample_scores(function, y_pred: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return np.array([np.atleast_1d(function(p[0], g[0])) for p, g in zip(y_pred, y)], dtype=float)


@pytest.mark.parametrize("name", CLASSES_AND_FUNCTIONS)
def test_accumulates_two_batches_and_aggregates_to_the_mean(name):
    metric_class, function = CLASSES_AND_FUNCTIONS[name]
    metric = metric_class(reduction="mean_batch")
    batches = [random_batch(0, batch_size=2), random_batch(1, batch_size=3)]
    for y_pred, y in batches:
        returned = metric(y_pred=y_pred, y=y)
        np.testing.assert_allclose(returned.numpy(), per_sample_scores(function, y_pred, y), rtol=1e-12)
    expected = np.concatenate([per_sample_scores(function, *batch) for batch in batches])
    np.testing.assert_allclose(metric.get_buffer().numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(metric.aggregate().numpy(), expected.mean(axis=0), rtol=1e-6)
    metric.reset()
    metric(*batches[0])
    np.testing.assert_allclose(metric.aggregate().numpy(), per_sample_scores(function, *batches[0]).mean(axis=0),
                               rtol=1e-6)


def test_default_reduction_is_a_scalar_mean():
    y_pred, y = random_batch(2, batch_size=4)
    metric = SymmetricBestDiceMetric()
    metric(y_pred, y)
    expected = per_sample_scores(symmetric_best_dice, y_pred, y).mean()
    assert metric.aggregate().item() == pytest.approx(expected, rel=1e-6)
    assert metric.aggregate(reduction="sum").item() == pytest.approx(4 * expected, rel=1e-6)
    assert metric.aggregate(reduction="none").shape == (4, 1)


def test_get_not_nans_counts_every_sample():
    metric = AdaptedRandErrorMetric(get_not_nans=True)
    metric(*random_batch(3, batch_size=3))
    _, not_nans = metric.aggregate()
    assert not_nans.item() == 3


def test_variation_of_information_keeps_split_and_merge():
    y_pred, y = random_batch(4, batch_size=2)
    metric = VariationOfInformationMetric(ignore_background=True)
    metric(y_pred, y)
    expected = [variation_of_information(p[0], g[0], ignore_background=True) for p, g in zip(y_pred, y)]
    np.testing.assert_allclose(metric.aggregate().numpy(), np.mean(expected, axis=0), rtol=1e-6)


def test_channel_first_lists_and_unbatched_channel_layout():
    y_pred, y = random_batch(5, batch_size=2)
    from_batch = AveragePrecisionMetric()(y_pred, y)
    from_list = AveragePrecisionMetric()(list(y_pred), list(y))
    without_channel = AveragePrecisionMetric()(y_pred[:, 0], y[:, 0])
    np.testing.assert_array_equal(from_batch.numpy(), from_list.numpy())
    np.testing.assert_array_equal(from_batch.numpy(), without_channel.numpy())


def test_meta_tensors_are_accepted():
    y_pred, y = random_batch(7, batch_size=2)
    np.testing.assert_array_equal(
        SymmetricBestDiceMetric()(MetaTensor(y_pred), MetaTensor(y)).numpy(),
        SymmetricBestDiceMetric()(y_pred, y).numpy(),
    )


def test_empty_samples_in_a_batch():
    y = torch.zeros(2, 1, 4, 4, dtype=torch.int64)
    y[1, 0, :2] = 3
    y_pred = torch.zeros_like(y)
    np.testing.assert_array_equal(SymmetricBestDiceMetric()(y_pred, y).numpy(), [[1.0], [0.0]])
    np.testing.assert_array_equal(MeanAveragePrecisionMetric()(y_pred, y).numpy(), [[1.0], [0.0]])


def test_invalid_inputs():
    metric = SymmetricBestDiceMetric()
    y = torch.zeros(2, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"y_pred \(2, 1, 4, 4\) and y \(2, 1, 4, 3\)"):
        metric(y, y[..., :3])
    with pytest.raises(TypeError, match="integer"):
        metric(y.float(), y)
    with pytest.raises(ValueError, match="needs the ground truth"):
        metric(y)
    with pytest.raises(ValueError, match="batch-first"):
        metric(torch.zeros(4, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="no scores to aggregate"):
        SymmetricBestDiceMetric().aggregate()
    with pytest.raises(ValueError, match="iou_threshold"):
        AveragePrecisionMetric(iou_threshold=1.0)
    with pytest.raises(ValueError, match="reduction"):
        SymmetricBestDiceMetric(reduction="median")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_give_the_same_scores():
    y_pred, y = random_batch(6, batch_size=2)
    on_cpu = MeanAveragePrecisionMetric()(y_pred, y)
    on_cuda = MeanAveragePrecisionMetric()(y_pred.cuda(), y.cuda())
    assert on_cuda.device.type == "cuda"
    np.testing.assert_array_equal(on_cuda.cpu().numpy(), on_cpu.numpy())
