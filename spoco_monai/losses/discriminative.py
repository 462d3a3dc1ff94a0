"""Discriminative loss (pull, push, regulariser) of De Brabandere et al. 2017, vectorised over objects."""

from __future__ import annotations

import torch
from torch import nn

from spoco_monai.losses.objects import ObjectIndex, labeled_batch
from spoco_monai.validation import check_non_negative, check_positive

__all__ = ["DiscriminativeLoss", "per_object_mean"]


def per_object_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of (B, K) per-object values over the present objects of each sample, 0 for a sample without any.

    Returns:
        (B,) per-sample means.
    """
    total = torch.where(present, values, torch.zeros_like(values)).sum(dim=1)
    return total / present.sum(dim=1).clamp_min(1)


class DiscriminativeLoss(nn.Module):
    """Pull, push and regulariser terms of the discriminative loss (method.md terms 1-3), batch mean.

    Per sample, with C the labeled objects (ids > 0), mu_c their mean embeddings and N_c their sizes:

    - pull: 1/|C| sum_c 1/N_c sum_{i in c} [||mu_c - e_i|| - delta_v]_+^2
    - push: 1/(|C|(|C|-1)) sum_{c != c'} [2 delta_d - ||mu_c - mu_c'||]_+^2 (0 if |C| < 2)
    - reg: 1/|C| sum_c ||mu_c||

    Unlabeled (0) and ignored (-1) pixels take no part. Each term is 0 for a sample without objects, and the
    loss is the mean over the samples of the batch. Means and pull are segment sums (scatter_add over compact
    object slots); no (objects x pixels) matrix is formed. Computed in float32 (float64 for float64 input),
    also under autocast.

    De Brabandere, Neven, Van Gool, "Semantic Instance Segmentation with a Discriminative Loss Function",
    CVPR workshops 2017.

    Args:
        delta_var: pull margin delta_v > 0.
        delta_dist: push margin delta_d > 0 (means are pushed 2 delta_d apart).
        alpha: weight of the pull term, >= 0.
        beta: weight of the push term, >= 0.
        gamma: weight of the regulariser, >= 0.

    Raises:
        TypeError: a non-numeric option.
        ValueError: non-positive margins or negative weights.
    """

    def __init__(
        self,
        delta_var: float = 0.5,
        delta_dist: float = 2.0,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.001,
    ) -> None:
        super().__init__()
        self.delta_var = check_positive("delta_var", delta_var)
        self.delta_dist = check_positive("delta_dist", delta_dist)
        self.alpha = check_non_negative("alpha", alpha)
        self.beta = check_non_negative("beta", beta)
        self.gamma = check_non_negative("gamma", gamma)

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """alpha * pull + beta * push + gamma * reg of ``embeddings`` against ``target`` (inputs as in
        :func:`~spoco_monai.losses.objects.labeled_batch`), a scalar in the embeddings' precision (at least float32).
        """
        with labeled_batch(embeddings, target, self.delta_var) as batch:
            pull, push, reg = self.terms(batch.objects, batch.means, batch.pull_sums)
            return self.alpha * pull + self.beta * push + self.gamma * reg

    def terms(
        self, objects: ObjectIndex, means: torch.Tensor, pull_sums: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pull, push and regulariser, each a scalar batch mean.

        Args:
            objects: object index of the batch.
            means: (B, K, E) object means and
            pull_sums: (B, K) per-object pull sums, both from
                :func:`~spoco_monai.losses.objects.means_and_pull` with this ``delta_var``.
        """
        present = objects.present
        num_objects = objects.num_objects
        pull = per_object_mean(pull_sums / objects.counts.clamp_min(1), present)

        # Centring on the mean of the object means keeps cdist's distance expansion precise under translation.
        centre = (means * present.unsqueeze(-1)).sum(dim=1, keepdim=True) / num_objects.clamp_min(1).view(-1, 1, 1)
        distances = torch.cdist(means - centre.detach(), means - centre.detach())
        pairs = present.unsqueeze(2) & present.unsqueeze(1)
        pairs &= ~torch.eye(objects.num_slots, dtype=torch.bool, device=pairs.device)
        hinge = (2.0 * self.delta_dist - distances).clamp_min(0.0).square()
        push_sums = torch.where(pairs, hinge, torch.zeros_like(hinge)).sum(dim=(1, 2))
        push = push_sums / (num_objects * (num_objects - 1)).clamp_min(1)

        reg = per_object_mean(torch.linalg.vector_norm(means, dim=-1), present)
        return pull.mean(), push.mean(), reg.mean()
