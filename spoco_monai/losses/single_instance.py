"""Single-instance term: a differentiable soft mask per labeled object, compared with its ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spoco_monai.losses.chunking import CHUNK_ELEMENTS, pixel_chunk_size, pixel_slices
from spoco_monai.losses.discriminative import per_object_mean
from spoco_monai.losses.kernel import dice_loss_from_sums, kernel_sigma_squared
from spoco_monai.losses.objects import ObjectIndex, labeled_batch, per_pixel
from spoco_monai.losses.pairwise import (
    LOG_CAP,
    GaussianKernel,
    NegativeLogComplementKernel,
    centre_of_valid_pixels,
    kernel_sums,
    kernel_values,
)
from spoco_monai.losses.sampling import pick_per_group, random_priorities, random_subset
from spoco_monai.validation import check_int, check_positive_int

__all__ = ["ChosenObjects", "SingleInstanceLoss", "INSTANCE_LOSSES", "estimated_mask_squares"]

#: Per-object losses between a soft mask and a ground-truth mask.
INSTANCE_LOSSES = ("dice", "bce")


class _OwnGaussianSums(torch.autograd.Function):
    """out[b, m] = sum over the pixels i with column[b, i] = m of exp(-rate ||e_i - a_m||^2), chunk by chunk.

    The intersection sum(S_c g_c) of the Dice. Written with autograd it would keep several (B, E, N) tensors
    (each a fresh allocation, costly for large patches); the backward pass here recomputes each chunk and
    allocates only the (B, E, N) gradient: with v_i the value at pixel i of member m = column_i and g_m the incoming
    gradient, grad e_i = -2 rate g_m v_i (e_i - a_m) and grad a_m = -sum_{i of m} grad e_i.
    """

    @staticmethod
    def forward(ctx, embeddings, anchors, column, rate):  # type: ignore[override]
        chunk_size = pixel_chunk_size(embeddings.shape[0], embeddings.shape[1], CHUNK_ELEMENTS // 8)
        sums = embeddings.new_zeros(anchors.shape[0], anchors.shape[2])
        for part in pixel_slices(embeddings.shape[-1], chunk_size):
            difference = embeddings[..., part] - per_pixel(anchors, column[:, part])
            sums.scatter_add_(1, column[:, part], difference.square_().sum(dim=1).mul_(-rate).exp_())
        ctx.save_for_backward(embeddings, anchors, column)
        ctx.rate, ctx.chunk_size = rate, chunk_size
        return sums

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_sums):  # type: ignore[override]
        embeddings, anchors, column = ctx.saved_tensors
        grad_embeddings = torch.empty_like(embeddings)
        grad_anchors = torch.zeros_like(anchors)
        for part in pixel_slices(embeddings.shape[-1], ctx.chunk_size):
            own_anchors = per_pixel(anchors, column[:, part])
            difference = torch.sub(embeddings[..., part], own_anchors, out=grad_embeddings[..., part])
            values = difference.square().sum(dim=1).mul_(-ctx.rate).exp_()
            values.mul_(grad_sums.gather(1, column[:, part])).mul_(-2.0 * ctx.rate)
            difference.mul_(values.unsqueeze(1))
            index = column[:, part].unsqueeze(1).expand_as(difference)
            grad_anchors.scatter_add_(2, index, difference)
        return grad_embeddings, grad_anchors.neg_(), None, None


@dataclass(frozen=True)
class ChosenObjects:
    """The objects whose soft masks the single-instance term compares with their ground truth, and their anchors.

    The soft mask of chosen object m of sample b is S(i) = exp(-rate ||e_i - anchors[b, m]||^2) on the valid pixels
    i (0 on ignored ones), its ground truth the pixels with ``objects.slots[b, i] == slots[b, m]``.

    Attributes:
        embeddings: (B, E, N) embeddings of the term (float32, or float64 for float64 inputs; without a
            foreground channel).
        spatial_shape: the spatial shape S of the patch, prod(S) = N.
        objects: object index of the batch.
        valid: (B, N) bool, non-ignored pixels.
        slots: (B, M) int64 object slot of each chosen object.
        present: (B, M) bool, whether the chosen slot holds an object (samples with fewer objects are padded).
        anchors: (B, M, E) anchor embeddings, differentiable with respect to ``embeddings``.
        rate: 1 / (2 sigma^2) of the kernel.
    """

    embeddings: torch.Tensor
    spatial_shape: tuple[int, ...]
    objects: ObjectIndex
    valid: torch.Tensor
    slots: torch.Tensor
    present: torch.Tensor
    anchors: torch.Tensor
    rate: float


class SingleInstanceLoss(nn.Module):
    """Single-instance term (method.md term 4): one soft mask per labeled object against its ground truth.

    For each labeled object c an anchor pixel a is drawn uniformly among the pixels of c whose embedding lies
    within delta_v of the object mean mu_c (the mean itself is the anchor when there is no such pixel). The
    soft mask S_c(i) = exp(-||e_i - e_a||^2 / (2 sigma^2)), sigma^2 = -delta_v^2 / (2 ln t), covers every
    non-ignored pixel of the patch and is compared with the object's mask g_c:

    - ``loss="dice"``: 1 - 2 sum(S_c g_c) / (sum S_c^2 + sum g_c^2), one Dice per object;
    - ``loss="bce"``: binary cross-entropy of S_c against g_c, mean over the non-ignored pixels (logarithms
      capped at -100 as in ``torch.nn.functional.binary_cross_entropy``).

    Per-object losses are averaged over the objects of a sample (not pooled), then over the batch; a sample
    without objects contributes 0. With ``max_instances`` a random subset of at most that many objects per
    sample is used. The (objects x pixels) sums are computed chunk by chunk with an analytic backward pass
    (:func:`~spoco_monai.losses.pairwise.kernel_sums`), so memory stays bounded. All random choices come from
    the module's own CPU ``torch.Generator`` (attribute ``generator``) seeded with ``seed``: modules built with
    the same seed give the same results call by call.

    Wolny et al., "Sparse Object-level Supervision for Instance Segmentation with Pixel Embeddings", CVPR 2022.

    Args:
        delta_var: distance delta_v > 0 at which the kernel equals ``kernel_threshold``.
        kernel_threshold: kernel value t in (0, 1) at distance delta_v.
        loss: ``"dice"`` or ``"bce"``.
        max_instances: None (all objects) or the largest number of objects per sample, >= 1.
        seed: seed of the module's generator.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option out of range or an unknown loss name.
    """

    def __init__(
        self,
        delta_var: float = 0.5,
        kernel_threshold: float = 0.9,
        loss: str = "dice",
        max_instances: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.sigma_sq = kernel_sigma_squared(delta_var, kernel_threshold)
        self.delta_var = float(delta_var)
        self.kernel_threshold = float(kernel_threshold)
        if loss not in INSTANCE_LOSSES:
            raise ValueError(f"loss must be one of {INSTANCE_LOSSES}, found {loss!r}.")
        self.loss = loss
        self.max_instances = None if max_instances is None else check_positive_int("max_instances", max_instances)
        self.generator = torch.Generator().manual_seed(check_int("seed", seed))

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The single-instance loss of ``embeddings`` against ``target`` (inputs as in
        :func:`~spoco_monai.losses.objects.labeled_batch`; pixels with id -1 take no part), a scalar in the
        embeddings' precision (at least float32).
        """
        with labeled_batch(embeddings, target, self.delta_var) as batch:
            valid = batch.target >= 0
            chosen = self.choose(batch.embeddings, batch.objects, batch.means, valid, tuple(embeddings.shape[2:]))
            return self.chosen_term(chosen)

    def anchors(self, embeddings: torch.Tensor, objects: ObjectIndex, means: torch.Tensor) -> torch.Tensor:
        """Anchor embedding of every object slot: a random pixel within delta_v of the mean, else the mean.

        Args:
            embeddings: (B, E, N).
            objects: object index of the batch.
            means: (B, K, E) object means.

        Returns:
            (B, K, E) anchors, differentiable with respect to the embeddings.
        """
        batch, channels, num_pixels = embeddings.shape
        num_slots = objects.num_slots
        with torch.no_grad():
            padded_means = nn.functional.pad(means.transpose(1, 2), (0, 1))
            near = torch.empty(batch, num_pixels, dtype=torch.bool, device=embeddings.device)
            for part in pixel_slices(num_pixels, pixel_chunk_size(batch, channels)):
                own_means = per_pixel(padded_means, objects.slots[:, part])
                near[:, part] = (embeddings[..., part] - own_means).square().sum(dim=1) < self.delta_var**2
            priorities = random_priorities(batch, num_pixels, self.generator, embeddings.device)
            pixels, found = pick_per_group(objects.slots, near, num_slots, priorities)
        picked = embeddings.gather(2, pixels.unsqueeze(1).expand(-1, channels, -1)).transpose(1, 2)
        return torch.where(found.unsqueeze(-1), picked, means)

    def choose(
        self,
        embeddings: torch.Tensor,
        objects: ObjectIndex,
        means: torch.Tensor,
        valid: torch.Tensor,
        spatial_shape: tuple[int, ...],
    ) -> ChosenObjects:
        """Draw the anchors and, with ``max_instances``, the subset of objects of the term.

        Args:
            embeddings: (B, E, N).
            objects: object index of the batch.
            means: (B, K, E) object means from :func:`~spoco_monai.losses.objects.means_and_pull`.
            valid: (B, N) bool non-ignored pixels.
            spatial_shape: spatial shape of the patch, prod = N.
        """
        anchors = self.anchors(embeddings, objects, means)
        batch, channels, _ = embeddings.shape
        num_slots = objects.num_slots
        if self.max_instances is None or self.max_instances >= num_slots:
            chosen = torch.arange(num_slots, device=anchors.device).expand(batch, -1)
            chosen_present = objects.present
        else:
            chosen, chosen_present = random_subset(objects.present, self.max_instances, self.generator)
        chosen_anchors = anchors.gather(1, chosen.unsqueeze(-1).expand(-1, -1, channels))
        return ChosenObjects(
            embeddings=embeddings,
            spatial_shape=tuple(spatial_shape),
            objects=objects,
            valid=valid,
            slots=chosen,
            present=chosen_present,
            anchors=chosen_anchors,
            rate=0.5 / self.sigma_sq,
        )

    def chosen_term(self, chosen: ChosenObjects, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """Single-instance loss of the objects drawn by :meth:`choose`, batch mean.

        Args:
            chosen: the objects and anchors of :meth:`choose`.
            pixels: None (exact), or (B, P) distinct pixels of each sample drawn uniformly at random: the Dice's
                sum of S_c^2 outside object c is then estimated on them (:func:`estimated_mask_squares`). Only
                ``"dice"`` supports it.

        Raises:
            ValueError: ``pixels`` with ``loss="bce"``.
        """
        if pixels is not None and self.loss != "dice":
            raise ValueError(f"a pixel subset estimates the Dice only, found loss={self.loss!r}.")
        embeddings, objects, valid, rate = chosen.embeddings, chosen.objects, chosen.valid, chosen.rate
        batch = embeddings.shape[0]
        num_chosen = chosen.slots.shape[1]

        column, padded_anchors = _own_columns(chosen)
        origin = centre_of_valid_pixels(embeddings, valid)

        def per_member_sum(values: torch.Tensor) -> torch.Tensor:
            return values.new_zeros(batch, num_chosen + 1).scatter_add(1, column, values)[:, :num_chosen]

        if self.loss == "dice":
            intersection = _OwnGaussianSums.apply(embeddings, padded_anchors, column, rate)[:, :num_chosen]
            if pixels is None:
                mask_sq = kernel_sums(chosen.anchors, embeddings, valid, origin, GaussianKernel(2.0 * rate))
            else:
                mask_sq = estimated_mask_squares(chosen, pixels)
            # Absent slots get size 1 instead of 0 so that their (discarded) Dice has no 0/0 in its gradient.
            sizes = objects.counts.gather(1, chosen.slots).clamp_min(1).to(embeddings.dtype)
            per_object = dice_loss_from_sums(intersection, mask_sq, sizes)
        else:
            own_squared = (embeddings - per_pixel(padded_anchors, column)).square().sum(dim=1)
            outside = NegativeLogComplementKernel(rate)
            # Inside the object the BCE is -log S = rate * s; the sum over all pixels of -log(1 - S) counted
            # the object's own pixels, which are taken back out.
            inside = (rate * own_squared).clamp_max(LOG_CAP) - kernel_values(own_squared, outside)
            everywhere = kernel_sums(chosen.anchors, embeddings, valid, origin, outside)
            per_object = (per_member_sum(inside) + everywhere) / valid.sum(dim=1, keepdim=True).clamp_min(1)
        return per_object_mean(per_object, chosen.present).mean()


def _own_columns(chosen: ChosenObjects) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) int64 the chosen object of each pixel (M: none), and (B, E, M + 1) the chosen anchors with a zero
    column for the pixels of no chosen object."""
    objects, batch, num_chosen = chosen.objects, chosen.slots.shape[0], chosen.slots.shape[1]
    device = chosen.slots.device
    column_of_slot = torch.full((batch, objects.num_slots + 1), num_chosen, dtype=torch.int64, device=device)
    column_of_slot.scatter_(1, chosen.slots, torch.arange(num_chosen, device=device).expand(batch, -1))
    return column_of_slot.gather(1, objects.slots), nn.functional.pad(chosen.anchors.transpose(1, 2), (0, 1))


def estimated_mask_squares(chosen: ChosenObjects, pixels: torch.Tensor) -> torch.Tensor:
    """sum_i S_m(i)^2 over the valid pixels for every chosen object m, its (objects x pixels) part estimated.

    The sum over object m's own pixels is exact (one pass over the pixels). The sum over every other valid pixel is
    estimated from the P pixels of ``pixels``, drawn uniformly without replacement among the N of each sample:
    N / P times their sum, an unbiased estimate. Its cost is that of P pixels instead of N.

    Args:
        chosen: the objects and anchors of :meth:`SingleInstanceLoss.choose` (embeddings (B, E, N)).
        pixels: (B, P) distinct pixels of each sample.

    Returns:
        (B, M) estimated sums, differentiable.
    """
    embeddings, valid, rate = chosen.embeddings, chosen.valid, chosen.rate
    num_chosen = chosen.slots.shape[1]
    column, padded_anchors = _own_columns(chosen)
    origin = centre_of_valid_pixels(embeddings, valid)
    own = _OwnGaussianSums.apply(embeddings, padded_anchors, column, 2.0 * rate)[:, :num_chosen]
    points = per_pixel(embeddings, pixels)
    drawn = kernel_sums(chosen.anchors, points, valid.gather(1, pixels), origin, GaussianKernel(2.0 * rate))
    drawn_own = _OwnGaussianSums.apply(points, padded_anchors, column.gather(1, pixels), 2.0 * rate)[:, :num_chosen]
    scale = embeddings.shape[-1] / pixels.shape[1]
    # in exact arithmetic drawn >= drawn_own; the clamp keeps float rounding from making the estimate negative
    return own + scale * (drawn - drawn_own).clamp_min(0.0)
