"""Training from clicks: an embedding loss on masks grown from the clicks, a localisation loss on an extra channel."""

from __future__ import annotations

import torch
from torch import nn

from spoco_monai.losses.point_localization import PointLocalizationLoss
from spoco_monai.validation import check_non_negative

__all__ = ["PointSupervisedLoss"]


class PointSupervisedLoss(nn.Module):
    """An embedding loss on the first E channels plus :class:`PointLocalizationLoss` on the last channel.

    The network outputs E + 1 channels: E embedding channels, trained by ``embedding_loss`` (e.g. a ``SpocoLoss``
    in sparse mode) against labels grown from the clicks (:class:`~spoco_monai.transforms.GrowFromPointsd`), and a
    localisation logit, trained from the clicks themselves. At inference the localisation map's peaks seed the
    objects (:func:`~spoco_monai.clustering.localization_seeds`,
    :func:`~spoco_monai.clustering.point_seeded_watershed`).

    total = embedding_loss + localization_weight * localization.

    After each forward, :attr:`last_terms` holds the embedding loss's terms (its ``last_terms``), the localisation
    loss's terms under ``localization_<term>`` and the unweighted localisation loss under ``localization``.

    Args:
        embedding_loss: ``loss(embeddings, target, teacher_embeddings, foreground=None) -> scalar``.
        localization_loss: the localisation loss; default :class:`PointLocalizationLoss` with its defaults.
        localization_weight: weight of the localisation loss, >= 0.
        embedding_dim: E, when known: the output must then have exactly E + 1 channels (a network built without the
            extra channel is refused instead of training E - 1 embedding channels).

    Raises:
        ValueError: a negative ``localization_weight``.
    """

    def __init__(
        self,
        embedding_loss: nn.Module,
        localization_loss: PointLocalizationLoss | None = None,
        localization_weight: float = 1.0,
        embedding_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding_loss = embedding_loss
        self.localization_loss = PointLocalizationLoss() if localization_loss is None else localization_loss
        self.localization_weight = check_non_negative("localization_weight", localization_weight)
        self.embedding_dim = embedding_dim
        self.last_terms: dict[str, float] = {}

    def forward(
        self,
        embeddings: torch.Tensor,
        target: torch.Tensor,
        teacher_embeddings: torch.Tensor | None = None,
        foreground: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            embeddings: (B, E + 1, *S) network output, the last channel the localisation logit.
            target: (B, 1, *S) integer labels for the embedding loss (e.g. grown from the clicks).
            teacher_embeddings: None or the teacher's output, same shape as ``embeddings``.
            foreground: optional foreground target, passed on to the embedding loss.
            points: (B, 1, *S) point annotation (> 0 object click, -1 background click, 0 none).

        Returns:
            Scalar loss.

        Raises:
            ValueError: no ``points``, or embeddings without the localisation channel.
        """
        if points is None:
            raise ValueError("PointSupervisedLoss needs the point annotation (a 'points' key made by SimulatePointsd).")
        if embeddings.ndim < 4 or embeddings.shape[1] < 2:
            raise ValueError(
                "expected embeddings plus a localisation channel (B, E + 1, *S), "
                f"found shape {tuple(embeddings.shape)}."
            )
        if self.embedding_dim is not None and embeddings.shape[1] != self.embedding_dim + 1:
            raise ValueError(
                f"expected {self.embedding_dim} embedding channels and a localisation channel, found "
                f"{embeddings.shape[1]} channels: the network needs one more output channel (foreground_head)."
            )
        teacher = None if teacher_embeddings is None else teacher_embeddings[:, :-1]
        extra = {} if foreground is None else {"foreground": foreground}
        embedding_term = self.embedding_loss(embeddings[:, :-1], target, teacher, **extra)
        localization = self.localization_loss(embeddings[:, -1:], points)
        self.last_terms = dict(getattr(self.embedding_loss, "last_terms", {}))
        self.last_terms.update({f"localization_{k}": v for k, v in self.localization_loss.last_terms.items()})
        self.last_terms["localization"] = float(localization.detach())
        return embedding_term + self.localization_weight * localization.to(embedding_term.dtype)
