"""Unlabeled push: labeled object means are pushed away from the unlabeled pixels."""

from __future__ import annotations

import torch
from torch import nn

from spoco_monai.losses.discriminative import per_object_mean
from spoco_monai.losses.objects import ObjectIndex, labeled_batch, per_pixel
from spoco_monai.losses.pairwise import HingeKernel, centre_of_valid_pixels, kernel_sums
from spoco_monai.validation import check_positive

__all__ = ["UnlabeledPushLoss"]


class UnlabeledPushLoss(nn.Module):
    """Unlabeled push (method.md term 5), batch mean.

    Per sample, with C the labeled objects, mu_c their means and U the unlabeled pixels (target == 0):
    L_U = 1/|C| sum_c 1/|U| sum_{i in U} [delta_d - ||mu_c - e_i||]_+^2, 0 when C or U is empty.
    The (objects x pixels) distances are computed chunk by chunk, with an analytic backward pass.

    Args:
        delta_dist: hinge delta_d > 0.

    Raises:
        TypeError: a non-numeric option.
        ValueError: delta_dist <= 0.
    """

    def __init__(self, delta_dist: float = 2.0) -> None:
        super().__init__()
        self.delta_dist = check_positive("delta_dist", delta_dist)

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unlabeled push of ``embeddings`` against ``target`` (inputs as in
        :func:`~spoco_monai.losses.objects.labeled_batch`; its pixels with id 0 are the unlabeled ones), a scalar in
        the embeddings' precision (at least float32).
        """
        with labeled_batch(embeddings, target, 0.0) as batch:
            return self.term(batch.embeddings, batch.objects, batch.means, batch.target == 0)

    def term(
        self, embeddings: torch.Tensor, objects: ObjectIndex, means: torch.Tensor, unlabeled: torch.Tensor
    ) -> torch.Tensor:
        """Unlabeled push, batch mean.

        Args:
            embeddings: (B, E, N).
            objects: object index of the batch.
            means: (B, K, E) object means from :func:`~spoco_monai.losses.objects.means_and_pull`.
            unlabeled: (B, N) bool unlabeled pixels.
        """
        # Only unlabeled pixels contribute: gather them first (padded to the largest count of a sample) so that
        # the (objects x pixels) work scales with the unlabeled area, not with the patch. nonzero lists them in pixel
        # order without sorting the patch (a loop over the samples of the batch).
        num_unlabeled = unlabeled.sum(dim=1)
        width = int(num_unlabeled.max())
        pixels = torch.zeros(unlabeled.shape[0], width, dtype=torch.int64, device=embeddings.device)
        for sample_pixels, sample_unlabeled in zip(pixels, unlabeled):
            found = sample_unlabeled.nonzero().squeeze(1)
            sample_pixels[: found.numel()] = found
        points = per_pixel(embeddings, pixels)
        weights = torch.arange(width, device=embeddings.device) < num_unlabeled.unsqueeze(1)
        origin = centre_of_valid_pixels(embeddings, unlabeled)
        sums = kernel_sums(means, points, weights, origin, HingeKernel(self.delta_dist))
        per_object = sums / num_unlabeled.unsqueeze(1).clamp_min(1)
        return per_object_mean(per_object, objects.present).mean()
