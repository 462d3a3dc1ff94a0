"""Optional affinity side term: the embeddings' affinities at random offsets against the labels' affinities."""

from __future__ import annotations

import torch
from torch import nn

from spoco_monai.clustering.affinities import distances_to_affinities, overlap_slices
from spoco_monai.validation import check_int, check_positive, check_positive_int

__all__ = ["AffinitySideLoss"]


class AffinitySideLoss(nn.Module):
    """Dice between the boundaries the embeddings imply and those of the labels, at random offsets.

    The clustering cuts objects where the affinity of two pixels' embeddings, ``[1 - ||e_i - e_j|| / (2 delta_d)]_+^2``
    (:func:`~spoco_monai.clustering.embeddings_to_affinities`), is low. This term trains that quantity directly:
    every call draws ``num_offsets`` offsets, each axis uniform in ``[-max_offset, max_offset]`` (never all zero),
    from the module's own CPU generator, and compares, over the pairs ``(i, i + o)`` inside the patch whose pixels
    are both labeled (id > 0; with dense labels the background is an object of its own), the boundary
    ``b = 1 - affinity`` with the labels' boundary ``g`` (1 for two ids, 0 for one):

        loss = 1 - 2 sum(b g) / (sum b^2 + sum g^2),

    one Dice pooled over the offsets and the batch (0 when no pair is labeled, or when neither map has a
    boundary). Pairs with an unlabeled (0) or ignored (-1) pixel take no part: in sparse labels their relation is
    unknown. Default-off in :class:`~spoco_monai.losses.SpocoLoss` (``affinity_weight`` 0).

    With ``unlabeled_is_other`` a pair of a labeled pixel and an unlabeled one (0) takes part too, as a boundary:
    where every annotated mask is a whole object, an unlabeled pixel belongs to none of the annotated ones. With a few
    annotated objects that rarely touch, these are the only boundaries the term sees. Not for labels whose objects'
    outer voxels were left unlabeled (``UnlabeledBorderd``): those belong to the object.

    Args:
        affinity_delta_dist: the width delta_d of the clustering's affinity kernel, > 0.
        max_offset: largest offset along an axis, >= 1.
        num_offsets: offsets drawn per call, >= 1.
        seed: seed of the module's generator.
        unlabeled_is_other: pairs of a labeled and an unlabeled pixel are boundaries (True) or unknown (False).
    """

    def __init__(
        self,
        affinity_delta_dist: float = 2.0,
        max_offset: int = 18,
        num_offsets: int = 4,
        seed: int = 0,
        unlabeled_is_other: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(unlabeled_is_other, bool):
            raise TypeError(f"unlabeled_is_other must be a bool, found {unlabeled_is_other!r}.")
        self.unlabeled_is_other = unlabeled_is_other
        self.affinity_delta_dist = check_positive("affinity_delta_dist", affinity_delta_dist)
        self.max_offset = check_positive_int("max_offset", max_offset)
        self.num_offsets = check_positive_int("num_offsets", num_offsets)
        self.generator = torch.Generator().manual_seed(check_int("seed", seed))

    def draw_offsets(self, spatial_dims: int) -> list[tuple[int, ...]]:
        """``num_offsets`` random non-zero offsets of ``spatial_dims`` axes."""
        offsets: list[tuple[int, ...]] = []
        while len(offsets) < self.num_offsets:
            values = torch.randint(-self.max_offset, self.max_offset + 1, (spatial_dims,), generator=self.generator)
            if bool(values.any()):
                offsets.append(tuple(int(v) for v in values))
        return offsets

    def forward(
        self, embeddings: torch.Tensor, target: torch.Tensor, offsets: list[tuple[int, ...]] | None = None
    ) -> torch.Tensor:
        """Compute the term.

        Args:
            embeddings: (B, E, *S) embeddings.
            target: (B, 1, *S) or (B, *S) integer labels: id > 0 object, 0 unlabeled, -1 ignore.
            offsets: the offsets to use instead of random ones (each of len(S) integers).

        Returns:
            Scalar loss in the embeddings' dtype (at least float32).
        """
        embeddings = embeddings if embeddings.dtype == torch.float64 else embeddings.float()
        spatial_shape = tuple(embeddings.shape[2:])
        target = target.reshape(target.shape[0], *spatial_shape)
        offsets = self.draw_offsets(len(spatial_shape)) if offsets is None else offsets
        overlap = embeddings.new_zeros(())
        predicted_sq = embeddings.new_zeros(())
        truth_sq = embeddings.new_zeros(())
        for offset in offsets:
            source, other = overlap_slices(offset, spatial_shape)
            first, second = target[(slice(None), *source)], target[(slice(None), *other)]
            labeled = (first > 0) & (second > 0)
            if self.unlabeled_is_other:
                labeled |= ((first > 0) & (second == 0)) | ((first == 0) & (second > 0))
            if not bool(labeled.any()):
                continue
            difference = embeddings[(slice(None), slice(None), *source)] - embeddings[(slice(None), slice(None), *other)]
            distance = torch.linalg.vector_norm(difference, dim=1)
            boundary = 1.0 - distances_to_affinities(distance, self.affinity_delta_dist)
            truth = (first != second).to(boundary.dtype)
            boundary, truth = boundary[labeled], truth[labeled]
            overlap = overlap + (boundary * truth).sum()
            predicted_sq = predicted_sq + boundary.square().sum()
            truth_sq = truth_sq + truth.sum()
        denominator = predicted_sq + truth_sq
        if bool(denominator == 0):
            return embeddings.sum() * 0.0
        return 1.0 - 2.0 * overlap / denominator
