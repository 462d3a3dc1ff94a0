"""WISE's embedding loss: the pixels of an object's (pseudo-)mask similar to its anchor, dissimilar to the others'.

After Laradji et al., "Proposal-Based Instance Segmentation With Point Supervision" (WISE-Net, ICIP 2020), whose
embedding branch learns from pseudo-masks with the pairwise similarity of Fathi et al. (2017),

    s(p, q) = 2 / (1 + exp(||e_p - e_q||^2)),

1 for equal embeddings and towards 0 far apart. Here the masks are those of the target (e.g. grown from the clicks,
:class:`~spoco_monai.transforms.GrowFromPointsd`). In every sample each object k (an id > 0) gets an anchor pixel
``a_k`` drawn uniformly at random inside it, and every labeled pixel ``i`` of object ``o(i)`` is compared with
every anchor of its sample:

    loss = mean over pairs (i, k) with o(i) = k of -log s(e_i, e_a_k)
         + mean over pairs (i, k) with o(i) != k of -log(1 - s(e_i, e_a_k)),

each mean over the pairs of the whole batch (the second term is 0 without a sample holding two objects). With
d = ||e_i - e_a||^2 the two logarithms are ``log 2 - softplus(d)`` and ``log tanh(d / 2)``; the latter is
taken of ``max(tanh(d / 2), eps)`` so that two equal embeddings of different objects give a finite loss. Pixels at 0
(unlabeled) and -1 (ignored) take no part, so unlike SPOCO's terms this loss says nothing about the pixels between
the masks.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from spoco_monai.losses.inputs import flatten_loss_inputs
from spoco_monai.losses.sampling import pick_per_group, random_priorities
from spoco_monai.validation import check_int, check_positive

__all__ = ["AnchorSimilarityLoss"]


class AnchorSimilarityLoss(nn.Module):
    """The anchor similarity loss of the module docstring.

    Called as the embedding losses are, ``loss(embeddings, target, teacher_embeddings=None, foreground=None)``, so
    it can stand in for ``SpocoLoss`` in :class:`~spoco_monai.losses.PointSupervisedLoss`; the teacher's
    embeddings and the foreground are not used. After each forward, :attr:`last_terms` holds ``similar`` and
    ``dissimilar`` (the two means).

    Args:
        eps: floor of ``1 - s`` inside the logarithm, > 0.
        seed: seed of the anchor draws (the module owns the generator, so a resumed training draws the same anchors).

    Raises:
        ValueError: a non-positive ``eps`` or a non-integer ``seed``.
    """

    def __init__(self, eps: float = 1e-6, seed: int = 0) -> None:
        super().__init__()
        self.eps = check_positive("eps", eps)
        self.generator = torch.Generator().manual_seed(check_int("seed", seed))
        self.last_terms: dict[str, float] = {}

    def forward(
        self,
        embeddings: torch.Tensor,
        target: torch.Tensor,
        teacher_embeddings: torch.Tensor | None = None,
        foreground: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            embeddings: (B, E, *S) embeddings, S with 2 or 3 spatial axes.
            target: (B, 1, *S) or (B, *S) integer labels: id > 0 object, 0 unlabeled, -1 ignored.
            teacher_embeddings: not used.
            foreground: not used.

        Returns:
            Scalar loss; 0 (still connected to ``embeddings``) when no sample holds an object.

        Raises:
            TypeError, ValueError: inputs that :func:`~spoco_monai.losses.inputs.flatten_loss_inputs` refuses (e.g. a
                target whose shape is not the embeddings' spatial shape).
        """
        flat, labels, _ = flatten_loss_inputs(embeddings, target)
        batch = flat.shape[0]
        # objects of each sample numbered 0..K-1 in the order of their ids; K marks pixels of no object
        ids = torch.unique(labels[labels > 0])
        count = len(ids)
        groups = torch.where(labels > 0, torch.searchsorted(ids, labels.clamp_min(0)), torch.full_like(labels, count))
        priorities = random_priorities(batch, labels.shape[1], self.generator, labels.device)
        anchors, present = pick_per_group(groups, labels > 0, count, priorities)
        similar, dissimilar = [], []
        for sample in range(batch):
            pixels = torch.nonzero(groups[sample] < count).squeeze(1)
            objects = torch.nonzero(present[sample]).squeeze(1)
            if objects.numel() == 0:
                continue
            points = flat[sample, :, pixels].T
            centres = flat[sample, :, anchors[sample, objects]].T
            # (pixels, anchors) squared distances, without a (pixels, anchors, E) difference tensor
            squared = (points.square().sum(1, keepdim=True) - 2 * points @ centres.T + centres.square().sum(1))
            squared = squared.clamp_min(0)
            own = groups[sample, pixels].unsqueeze(1) == objects.unsqueeze(0)
            similar.append(math.log(2.0) - nn.functional.softplus(squared[own]))
            dissimilar.append(torch.log(torch.tanh(squared[~own] / 2).clamp_min(self.eps)))
        if not similar:
            self.last_terms = {"similar": 0.0, "dissimilar": 0.0}
            return flat.sum() * 0.0
        similar_term = -torch.cat(similar).mean()
        negatives = torch.cat(dissimilar)
        dissimilar_term = -negatives.mean() if negatives.numel() else flat.sum() * 0.0
        self.last_terms = {"similar": float(similar_term.detach()), "dissimilar": float(dissimilar_term.detach())}
        return similar_term + dissimilar_term
