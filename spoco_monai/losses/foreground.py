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
            target: same number of elements as ``logits``; 1 foreground, 0 background, negative unknown.

        Returns:
            Scalar loss in the dtype of ``logits`` (float32 under autocast).

        Raises:
            ValueError: if the shapes do not match.
        """
        logits = logits.reshape(logits.shape[0], -1)
        logits = logits if logits.dtype == torch.float64 else logits.float()
        if target.numel() != logits.numel():
            raise ValueError(
                f"the foreground target must have one value per pixel of the logits {tuple(logits.shape)}, "
                f"found shape {tuple(target.shape)}."
            )
        target = target.reshape(logits.shape).to(logits)
        known = target >= 0
        if not bool(known.any()):
            return logits.sum() * 0.0
        truth = torch.where(known, target, torch.zeros_like(target))
        bce = F.binary_cross_entropy_with_logits(logits[known], truth[known])
        probabilities = torch.sigmoid(logits) * known
        intersection = (probabilities * truth).sum(dim=1)
        denominator = probabilities.square().sum(dim=1) + truth.square().sum(dim=1)
        has_pixels = known.any(dim=1)
        dice = 1.0 - 2.0 * intersection[has_pixels] / denominator[has_pixels].clamp(min=1e-6)
        return bce + self.dice_weight * dice.mean()
