"""Ignite handlers of the metrics inside a MONAI SupervisedEvaluator run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine

from spoco_monai.metrics import (
    AbsoluteCountDifference,
    AdaptedRandError,
    AveragePrecision,
    MeanAveragePrecision,
    SymmetricBestDice,
    VariationOfInformation,
    absolute_count_difference,
    adapted_rand_error,
    average_precision,
    mean_average_precision,
    symmetric_best_dice,
    variation_of_information,
)


class LabelsAsPrediction(torch.nn.Module):
    """Stands in for network + clustering: the "image" already holds the predicted labels."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image


def make_samples(n_samples: int = 5) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(n_samples):
        label = torch.randint(0, 4, (1, 4, 4), generator=generator).repeat_interleave(2, -1).repeat_interleave(2, -2)
        noise = torch.randint(0, 6, (1, 8, 8), generator=generator)
        prediction = torch.where(torch.rand(1, 8, 8, generator=generator) < 0.7, label, noise)
        samples.append({"image": prediction, "label": label})
    return samples


def test_handlers_in_supervised_evaluator():
    samples = make_samples()
    pred_and_label = from_engine(["pred", "label"])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(samples, batch_size=2),
        network=LabelsAsPrediction(),
        key_val_metric={"sbd": SymmetricBestDice(output_transform=pred_and_label)},
        additional_metrics={
            "dic": AbsoluteCountDifference(output_transform=pred_and_label),
            "arand": AdaptedRandError(output_transform=pred_and_label),
            "ap": AveragePrecision(iou_threshold=0.3, output_transform=pred_and_label),
            "map": MeanAveragePrecision(output_transform=pred_and_label),
            "voi": VariationOfInformation(output_transform=pred_and_label),
        },
    )
    evaluator.run()

    def mean_over_samples(function):
        return np.mean([function(s["image"][0], s["label"][0]) for s in samples], axis=0)

    metrics = evaluator.state.metrics
    assert metrics["sbd"] == pytest.approx(mean_over_samples(symmetric_best_dice), rel=1e-6)
    assert evaluator.state.best_metric == metrics["sbd"]
    assert metrics["dic"] == pytest.approx(mean_over_samples(absolute_count_difference), rel=1e-6)
    assert metrics["arand"] == pytest.approx(mean_over_samples(adapted_rand_error), rel=1e-6)
    assert metrics["ap"] == pytest.approx(
        mean_over_samples(lambda p, g: average_precision(p, g, iou_threshold=0.3)), rel=1e-6
    )
    assert metrics["map"] == pytest.approx(mean_over_samples(mean_average_precision), rel=1e-6)
    np.testing.assert_allclose(metrics["voi"].numpy(), mean_over_samples(variation_of_information), rtol=1e-6)
    assert evaluator.state.metric_details["sbd"].shape == (len(samples), 1)
