"""Pixel-to-segment contrast over low-level segments, for the pixels no annotation covers.

After Ke et al., "Universal Weakly Supervised Segmentation by Pixel-to-Segment Contrastive Learning" (ICLR 2021):
low-level segments of the image (superpixels, :class:`~spoco_monai.transforms.LowLevelSegmentsd`) are small enough to
lie inside one object, so each unlabeled pixel should sit nearer to its own segment's mean embedding than to the
other segments' means. SPOCO's terms keep training on the object masks (e.g. grown from scribbles); this term gives
the unlabeled pixels a grouping signal of their own.

For one sample with segment means ``mu_k`` (over all the segment's pixels in the patch) and a region ``R`` of
pixels (the unlabeled ones), each pixel ``i`` in ``R`` with segment ``s(i)`` contributes the cross-entropy

    l_i = -log( exp(-||e_i - mu_s(i)||^2 / tau) / sum_k exp(-||e_i - mu_k||^2 / tau) )

and the term is the mean of ``l_i`` over ``R``, averaged over the samples with a region pixel and two segments or
more. The paper compares unit-normalised embeddings by their dot product; SPOCO's embeddings live in a Euclidean
space whose scale the hinge margins set, so the squared distance over a temperature ``tau`` stands in for it:
with the default ``tau`` of 0.25 (``delta_v^2``) two segments of one object are pushed about one unit apart, well
within the ``2 delta_d`` that separates objects, while segments of different objects are already far apart.
"""

from __future__ import annotations

import torch
from torch import nn

from spoco_monai.validation import check_non_negative, check_positive

__all__ = ["PixelToSegmentLoss"]


class PixelToSegmentLoss(nn.Module):
    """An embedding loss (e.g. ``SpocoLoss`` on masks grown from strokes) plus the pixel-to-segment contrast on the
    unlabeled pixels (see the module docstring).

    total = embedding_loss + weight * contrast, where the contrast covers the pixels whose target is 0. After each
    forward, :attr:`last_terms` holds the embedding loss's terms and the unweighted contrast under
    ``pixel_to_segment``.

    Args:
        embedding_loss: ``loss(embeddings, target, teacher_embeddings, foreground=None) -> scalar``.
        weight: weight of the contrast, >= 0; 0 leaves the embedding loss alone (no segments needed).
        temperature: ``tau`` > 0.
        embedding_dim: the embedding channels the contrast compares (the first ones); None: all channels (set it
            when the network has a foreground channel after the embeddings).
        max_pixels: None compares every region pixel with every segment (a 128x128 patch cut into 50-pixel segments:
            16384 x 330 distances per sample, twice the rest of a DSB training step); a number keeps every k-th
            region pixel of a sample in raster order, k the smallest step leaving at most that many (no random
            draw, so a resumed training repeats it). The segment means still use every pixel.

    Raises:
        ValueError: a negative ``weight``, a non-positive ``temperature`` or ``max_pixels``.
    """

    def __init__(
        self,
        embedding_loss: nn.Module,
        weight: float = 1.0,
        temperature: float = 0.25,
        embedding_dim: int | None = None,
        max_pixels: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding_loss = embedding_loss
        self.weight = check_non_negative("weight", weight)
        self.temperature = check_positive("temperature", temperature)
        self.embedding_dim = embedding_dim
        self.max_pixels = None if max_pixels is None else int(check_positive("max_pixels", max_pixels))
        self.last_terms: dict[str, float] = {}

    def forward(
        self,
        embeddings: torch.Tensor,
        target: torch.Tensor,
        teacher_embeddings: torch.Tensor | None = None,
        foreground: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            embeddings: (B, C, *S) network output, its first ``embedding_dim`` channels the embeddings.
            target: (B, 1, *S) integer labels: id > 0 object, 0 unlabeled, -1 ignore.
            teacher_embeddings: None or the teacher's output, passed on to the embedding loss.
            foreground: optional foreground target, passed on to the embedding loss.
            segments: (B, 1, *S) low-level segment ids (0: no segment); needed when ``weight > 0``.

        Returns:
            Scalar loss.

        Raises:
            ValueError: ``weight > 0`` without ``segments``.
        """
        extra = {} if foreground is None else {"foreground": foreground}
        total = self.embedding_loss(embeddings, target, teacher_embeddings, **extra)
        self.last_terms = dict(getattr(self.embedding_loss, "last_terms", {}))
        if self.weight == 0:
            self.last_terms["pixel_to_segment"] = 0.0
            return total
        if segments is None:
            raise ValueError("the pixel-to-segment term needs low-level segments (a 'segments' key, LowLevelSegmentsd).")
        channels = embeddings.shape[1] if self.embedding_dim is None else self.embedding_dim
        unlabeled = target.reshape(target.shape[0], -1) == 0
        contrast = self.contrast(embeddings[:, :channels], segments, unlabeled)
        self.last_terms["pixel_to_segment"] = float(contrast.detach())
        return total + self.weight * contrast.to(total.dtype)

    def contrast(self, embeddings: torch.Tensor, segments: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """The pixel-to-segment contrast alone.

        Args:
            embeddings: (B, E, *S) embeddings.
            segments: (B, 1, *S) or (B, *S) integer segment ids, 0 for none.
            region: (B, *S) or (B, N) bool, the pixels that contribute.

        Returns:
            Scalar: the mean over the samples with a region pixel in a segment and two segments or more of the
            mean cross-entropy of those pixels; 0 (still connected to ``embeddings``) when no sample has any.

        Raises:
            ValueError: shapes that do not match.
        """
        batch = embeddings.shape[0]
        flat = embeddings.reshape(batch, embeddings.shape[1], -1)
        ids = segments.reshape(batch, -1)
        pixels = region.reshape(batch, -1)
        if ids.shape != flat.shape[::2] or pixels.shape != ids.shape:
            raise ValueError(
                f"expected segments and region of the embeddings' spatial shape {tuple(embeddings.shape[2:])}, found "
                f"{tuple(segments.shape)} and {tuple(region.shape)}."
            )
        losses = []
        for sample in range(batch):
            labels, own = torch.unique(ids[sample], return_inverse=True)
            inside = labels != 0
            if int(inside.sum()) < 2:
                continue
            # segment k of `labels` -> its mean; segment 0 (no segment) gets a row that is dropped below
            points = flat[sample].T
            sums = points.new_zeros(len(labels), points.shape[1]).index_add(0, own, points)
            counts = torch.bincount(own, minlength=len(labels)).to(points.dtype)
            means = (sums / counts.unsqueeze(1))[inside]
            chosen = torch.nonzero(pixels[sample] & (ids[sample] != 0)).squeeze(1)
            if chosen.numel() == 0:
                continue
            if self.max_pixels is not None and chosen.numel() > self.max_pixels:
                chosen = chosen[:: -(-chosen.numel() // self.max_pixels)]
            # the position of each chosen pixel's segment among the kept (nonzero) segments
            position = torch.cumsum(inside.long(), 0) - 1
            anchors = points[chosen]
            squared = anchors.square().sum(1, keepdim=True) - 2.0 * anchors @ means.T + means.square().sum(1)
            logits = -squared / self.temperature
            losses.append(nn.functional.cross_entropy(logits, position[own[chosen]]))
        if not losses:
            return flat.sum() * 0.0
        return torch.stack(losses).mean()
