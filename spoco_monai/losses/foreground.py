"""Auxiliary foreground term: a per-pixel foreground logit trained next to the embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spoco_monai.validation import check_non_negative

__all__ = ["ForegroundLoss"]


class ForegroundLoss(nn.Module):
    """Binary cross-entropy plus soft Dice between a foreground logit and a foreground target.

    The embedding loss never says where the background is in sparse training and only implicitly (as one more
    object) in dense training, so the clustering needs a foreground mask from elsewhere. A network with one
    extra output channel can learn it from the same labels: this term trains that channel. Pixels whose target
    is negative (-1: unknown, e.g. unlabeled pixels of sparse labels, padding) take no part.

    loss = mean over known pixels of BCE(logit, target) + mean over samples of (1 - 2 sum(p g) / (sum p^2 + sum g^2)),
    with ``p = sigmoid(logit)`` and ``g`` the target, both restricted to the sample's known pixels. A sample
    without known pixels contributes no Dice; a batch without known pixels gives 0 (with a zero gradient).

    Positive-unlabeled labels (sparse training) know no background pixel, so the terms above alone would teach
    "everything is foreground". A target with a second channel, the foreground prior of the sample's unknown
    pixels (see :class:`~spoco_monai.transforms.ForegroundTarget`'s ``annotated_fraction``), adds the
    non-negative positive-unlabeled risk of Kiryo et al. (NeurIPS 2017) over the unknown pixels U of every sample
    that also has labeled foreground pixels P:

        pi * mean_P BCE(logit, 1) + max(0, mean_U BCE(logit, 0) - pi * mean_P BCE(logit, 0)),

    averaged over those samples. The second part estimates the background's risk from the unknown pixels with
    the labeled objects' share taken out; the ``max`` keeps the estimate from going negative, which would let
    the network overfit the few labeled objects.

    Args:
        dice_weight: weight of the Dice part (the BCE part has weight 1), >= 0.
    """

    def __init__(self, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.dice_weight = check_non_negative("dice_weight", dice_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the term.

        Args:
            logits: (B, *S) or (B, 1, *S) foreground logits.
            target: (B, *S) or (B, 1, *S) with 1 foreground, 0 background, negative unknown; or (B, 2, *S),
                that target plus the foreground prior of the unknown pixels, for positive-unlabeled labels.

        Returns:
            Scalar loss in the dtype of ``logits`` (float32 under autocast).

        Raises:
            ValueError: if the shapes do not match.
        """
        logits = logits.reshape(logits.shape[0], -1)
        logits = logits if logits.dtype == torch.float64 else logits.float()
        with_prior = target.numel() == 2 * logits.numel() and target.ndim > 2 and target.shape[1] == 2
        if target.numel() != logits.numel() and not with_prior:
            raise ValueError(
                f"the foreground target must have one value per pixel of the logits {tuple(logits.shape)} "
                f"(or two channels: target and prior), found shape {tuple(target.shape)}."
            )
        prior = target[:, 1].reshape(logits.shape).to(logits) if with_prior else None
        target = (target[:, 0] if with_prior else target).reshape(logits.shape).to(logits)
        known = target >= 0
        if not bool(known.any()):
            return logits.sum() * 0.0
        positive_unlabeled = 0.0 if prior is None else self._positive_unlabeled_risk(logits, target, prior)
        truth = torch.where(known, target, torch.zeros_like(target))
        bce = F.binary_cross_entropy_with_logits(logits[known], truth[known])
        probabilities = torch.sigmoid(logits) * known
        intersection = (probabilities * truth).sum(dim=1)
        denominator = probabilities.square().sum(dim=1) + truth.square().sum(dim=1)
        has_pixels = known.any(dim=1)
        dice = 1.0 - 2.0 * intersection[has_pixels] / denominator[has_pixels].clamp(min=1e-6)
        return bce + self.dice_weight * dice.mean() + positive_unlabeled

    @staticmethod
    def _positive_unlabeled_risk(logits: torch.Tensor, target: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """The non-negative PU risk, averaged over the samples (rows) with labeled foreground and unknown pixels."""
        positive, unknown = target == 1, target < 0
        usable = positive.any(dim=1) & unknown.any(dim=1)
        if not bool(usable.any()):
            return logits.sum() * 0.0
        logits, positive, unknown, prior = logits[usable], positive[usable], unknown[usable], prior[usable]
        positive_count = positive.sum(dim=1)
        unknown_count = unknown.sum(dim=1)
        as_foreground = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
        as_background = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
        foreground_risk = (as_foreground * positive).sum(dim=1) / positive_count
        positives_as_background = (as_background * positive).sum(dim=1) / positive_count
        unknown_as_background = (as_background * unknown).sum(dim=1) / unknown_count
        pi = (prior * unknown).sum(dim=1) / unknown_count
        background_risk = (unknown_as_background - pi * positives_as_background).clamp(min=0.0)
        return (pi * foreground_risk + background_risk).mean()
