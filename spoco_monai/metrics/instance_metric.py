"""Base class of the per-sample instance-segmentation metrics as MONAI cumulative metrics."""

from __future__ import annotations

from abc import abstractmethod

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from spoco_monai.metrics.overlap import LabelOverlap, label_overlap


class InstanceSegmentationMetric(CumulativeIterationMetric):
    """Scores each sample of a batch of label images and aggregates the scores over all samples seen.

    ``y_pred`` and ``y`` are batch-first integer label tensors of shape (B, 1, *S) or (B, *S) (or lists of
    channel-first (1, *S) tensors); 0 is background, -1 in ``y`` marks ignored pixels. These metrics do not depend
    on the spatial layout, so every non-batch dimension belongs to the sample. Each call appends a (B, M) float64
    tensor (M scores per sample) to the buffer; :meth:`aggregate` reduces it with MONAI's ``do_metric_reduction``.

    Args:
        reduction: reduction of the (N, M) buffer, one of :py:class:`monai.utils.MetricReduction`
            ("mean" averages over samples, and over the M scores when M > 1; "mean_batch" keeps the M scores).
        get_not_nans: whether :meth:`aggregate` also returns the count of not-NaN values (always all of them,
            as every score is defined for every input).

    Raises:
        ValueError: when ``reduction`` is not a :py:class:`monai.utils.MetricReduction` option.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        options = [option.value for option in MetricReduction]
        if reduction not in options:
            raise ValueError(f"reduction must be one of {options}, got {reduction!r}.")
        self.reduction = MetricReduction(reduction)
        self.get_not_nans = get_not_nans

    @abstractmethod
    def _sample_scores(self, overlap: LabelOverlap) -> tuple[float, ...]:
        """The M scores of one sample, from its overlap table."""

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Score every sample of the batch.

        Args:
            y_pred: (B, 1, *S) or (B, *S) integer predicted labels.
            y: integer ground-truth labels of the same shape.

        Returns:
            (B, M) float64 tensor on ``y_pred``'s device.

        Raises:
            ValueError: when ``y`` is missing, has fewer than two dimensions or a different shape from ``y_pred``.
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} needs the ground truth y as a batch-first tensor or a list of channel-first "
                "tensors, got None."
            )
        if y_pred.ndim < 2:
            raise ValueError(f"y_pred must be batch-first, (B, 1, *S) or (B, *S), got shape {tuple(y_pred.shape)}.")
        if y_pred.shape != y.shape:
            raise ValueError(
                f"y_pred and y must have the same shape, got y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)}."
            )
        # one overlap table per sample; the loop runs over the batch, never over objects or pixels
        scores = [self._sample_scores(label_overlap(pred, gt)) for pred, gt in zip(y_pred, y)]
        return torch.tensor(scores, dtype=torch.float64, device=y_pred.device).reshape(len(scores), -1)

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the scores of all samples seen since the last :meth:`reset`.

        Args:
            reduction: overrides the reduction given at construction.

        Raises:
            ValueError: when nothing has been accumulated.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"{type(self).__name__} has no scores to aggregate; call it on a batch first.")
        scores, not_nans = do_metric_reduction(data.clone(), reduction or self.reduction)
        return (scores, not_nans) if self.get_not_nans else scores
