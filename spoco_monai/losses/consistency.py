"""Embedding consistency between a student f and an EMA teacher g on the unlabeled region."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from spoco_monai.losses.chunking import pixel_slices
from spoco_monai.losses.discriminative import per_object_mean
from spoco_monai.losses.kernel import dice_loss_from_sums, kernel_sigma_squared
from spoco_monai.losses.objects import per_pixel
from spoco_monai.losses.pairwise import (
    augmented_centres,
    augmented_chunks,
    cached_chunk_size,
    centre_of_valid_pixels,
    squared_distances,
)
from spoco_monai.losses.sampling import random_priorities
from spoco_monai.losses.inputs import flatten_loss_inputs
from spoco_monai.validation import check_int, check_positive_int, check_unit_interval

__all__ = ["EmbeddingConsistencyLoss"]

#: Candidate pixels per anchor examined at once when drawing anchors.
CANDIDATES_PER_ANCHOR = 16

#: Largest (B, A, N) soft mask that :class:`_MaskOverlapSums` keeps for its backward pass (64 MiB in float32).
KEPT_MASK_ELEMENTS = 2**24


class _MaskOverlapSums(torch.autograd.Function):
    """Per anchor sum(S_f S_g), sum(S_f^2), sum(S_g^2) over the valid pixels, chunk by chunk.

    The teacher side is a constant. With rate = 1 / (2 sigma^2) and s the student's squared distances,
    d/ds [g_I S_f S_g + g_P S_f^2] = -rate S_f (g_I S_g + 2 g_P S_f). The slopes G_ai of the squared distances
    then give the gradients by two matrix products per chunk (see :mod:`~spoco_monai.losses.pairwise`). The
    anchors are given as pixel indices: their gradient is added to the embeddings' gradient at those pixels, so
    that no second (B, E, N) gradient is created for them.

    The backward pass needs S_f and S_g at every (anchor, pixel). When the (B, A, N) masks hold at most
    ``KEPT_MASK_ELEMENTS`` elements each, the forward pass keeps its chunks of them (A is at most ``max_anchors``,
    so the two are a few times the size of the embeddings) and the backward pass reuses them; otherwise the backward
    pass recomputes them chunk by chunk (the same values), so that memory stays bounded for large patches.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, embeddings, teacher, pixels, valid, origins, rate, chunk_size
    ):
        student_origin, teacher_origin = origins
        centres = _augmented_anchors(embeddings, teacher, pixels, origins)
        sums = centres[0].new_zeros(*centres[0].shape[:2], 3)
        num_elements = centres[0].shape[0] * centres[0].shape[1] * embeddings.shape[-1]
        keep = ctx.needs_input_grad[0] and num_elements <= KEPT_MASK_ELEMENTS
        ctx.kept = [] if keep else None
        for part, _, student, teacher_masks in _masks(embeddings, teacher, origins, centres, rate, chunk_size):
            weights = valid[:, part].unsqueeze(-1)
            sums[..., 2] += torch.bmm(teacher_masks.square(), weights).squeeze(-1)
            sums[..., 1] += torch.bmm(student.square(), weights).squeeze(-1)
            sums[..., 0] += torch.bmm(student * teacher_masks, weights).squeeze(-1)
            if keep:
                ctx.kept.append((student, teacher_masks))
        ctx.save_for_backward(embeddings, teacher, pixels, valid, student_origin, teacher_origin)
        ctx.rate, ctx.chunk_size = rate, chunk_size
        return sums

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_sums):  # type: ignore[override]
        embeddings, teacher, pixels, valid, student_origin, teacher_origin = ctx.saved_tensors
        origins = (student_origin, teacher_origin)
        rate = ctx.rate
        channels = embeddings.shape[1]
        anchors = per_pixel(embeddings, pixels).mT
        centred = anchors - student_origin.unsqueeze(1)
        # doubled, so that one product gives the gradient's 2 sum_a G_ai e_a and 2 sum_a G_ai
        centre_columns = torch.cat([centred, torch.ones_like(centred[..., :1])], dim=-1).mul_(2.0).transpose(1, 2)
        grad_overlap, grad_student_sq = grad_sums[..., 0:1], grad_sums[..., 1:2]
        centre_sums = anchors.new_zeros(*anchors.shape[:2], channels + 1)
        grad_embeddings = torch.empty_like(embeddings)
        if ctx.kept is not None:
            chunks = augmented_chunks(embeddings, student_origin, ctx.chunk_size)
            masks = ((part, local, *kept) for (part, local), kept in zip(chunks, ctx.kept))
        else:
            centres = _augmented_anchors(embeddings, teacher, pixels, origins)
            masks = _masks(embeddings, teacher, origins, centres, rate, ctx.chunk_size)
        for part, local, student, teacher_masks in masks:
            slopes = teacher_masks.mul(grad_overlap).add_(student * (2.0 * grad_student_sq))
            slopes.mul_(student).mul_(valid[:, part].unsqueeze(1) * -rate)
            centre_sums += torch.bmm(slopes, local[:, : channels + 1].transpose(1, 2))
            point_sums = torch.bmm(centre_columns, slopes)
            point_grad = torch.mul(local[:, :channels], point_sums[:, channels:], out=grad_embeddings[..., part])
            point_grad.sub_(point_sums[:, :channels])
        grad_anchors = (centred * centre_sums[..., channels:] - centre_sums[..., :channels]).mul_(2.0)
        for sample_grad, sample_pixels, sample_anchors_grad in zip(grad_embeddings, pixels, grad_anchors):
            sample_grad.index_add_(1, sample_pixels, sample_anchors_grad.T)
        return grad_embeddings, None, None, None, None, None, None


def _augmented_anchors(
    embeddings: torch.Tensor, teacher: torch.Tensor, pixels: torch.Tensor, origins: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A, E + 2) augmented centres (:func:`augmented_centres`) of the anchors' student and teacher embeddings,
    for (B, E, N) embeddings, (B, A) anchor pixels and the (B, E) student and teacher origins."""
    student_origin, teacher_origin = origins
    anchors, teacher_anchors = per_pixel(embeddings, pixels).mT, per_pixel(teacher, pixels).mT
    return (
        augmented_centres(anchors - student_origin.unsqueeze(1)),
        augmented_centres(teacher_anchors - teacher_origin.unsqueeze(1)),
    )


def _masks(
    embeddings: torch.Tensor,
    teacher: torch.Tensor,
    origins: tuple[torch.Tensor, torch.Tensor],
    centres: tuple[torch.Tensor, torch.Tensor],
    rate: float,
    chunk_size: int,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Chunk by chunk: the pixels' slice, the student's (B, E + 2, chunk) augmented points, and the (B, A, chunk)
    soft masks S_f and S_g around the anchors' augmented ``centres`` (student's, teacher's)."""
    student_origin, teacher_origin = origins
    student_centres, teacher_centres = centres
    chunks = zip(
        augmented_chunks(embeddings, student_origin, chunk_size),
        augmented_chunks(teacher, teacher_origin, chunk_size),
    )
    for (part, local), (_, teacher_local) in chunks:
        student = squared_distances(student_centres, local).mul_(-rate).exp_()
        teacher_masks = squared_distances(teacher_centres, teacher_local).mul_(-rate).exp_()
        yield part, local, student, teacher_masks


class EmbeddingConsistencyLoss(nn.Module):
    """Embedding consistency (method.md term 6), batch mean.

    Per sample whose region (target == 0) covers at least ``min_unlabeled_fraction`` of the patch, anchors are
    drawn one after the other, uniformly from the part of the region not yet covered. Around each anchor a,
    soft masks are built from the student's embeddings around e_a^f and from the teacher's around e_a^g,
    S(i) = exp(-||e_i - e_a||^2 / (2 sigma^2)) with sigma^2 = -delta_v^2 / (2 ln t), over every non-ignored
    pixel. The pixels within delta_v of e_a^f (student embedding) are then removed from the region; the
    drawing stops when the region is covered or after ``max_anchors`` anchors. The sample's loss is the mean
    over its anchors of Dice(S_f, S_g) = 1 - 2 sum(S_f S_g) / (sum S_f^2 + sum S_g^2); samples where the term
    does not apply contribute 0 to the batch mean. The teacher is detached: no gradient ever reaches it.

    Random choices come from the module's own CPU ``torch.Generator`` (attribute ``generator``) seeded with
    ``seed``.

    Wolny et al., "Sparse Object-level Supervision for Instance Segmentation with Pixel Embeddings", CVPR 2022.

    Args:
        delta_var: distance delta_v > 0 at which the kernel equals ``kernel_threshold``; also the coverage radius.
        kernel_threshold: kernel value t in (0, 1) at distance delta_v.
        max_anchors: largest number of anchors per sample, >= 1.
        min_unlabeled_fraction: smallest fraction of the patch, in [0, 1], the region must cover.
        seed: seed of the module's generator.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option out of range.
    """

    def __init__(
        self,
        delta_var: float = 0.5,
        kernel_threshold: float = 0.9,
        max_anchors: int = 20,
        min_unlabeled_fraction: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.sigma_sq = kernel_sigma_squared(delta_var, kernel_threshold)
        self.delta_var = float(delta_var)
        self.kernel_threshold = float(kernel_threshold)
        self.max_anchors = check_positive_int("max_anchors", max_anchors)
        self.min_unlabeled_fraction = check_unit_interval("min_unlabeled_fraction", min_unlabeled_fraction)
        self.generator = torch.Generator().manual_seed(check_int("seed", seed))

    def forward(self, embeddings: torch.Tensor, teacher_embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the consistency loss on the unlabeled region (target == 0).

        Args:
            embeddings: (B, E, H, W) or (B, E, D, H, W) student embeddings.
            teacher_embeddings: teacher embeddings of the same shape (of a second view of the same patch).
            target: (B, 1, *S) or (B, *S) integer tensor; id > 0 object, 0 unlabeled, -1 ignore.

        Returns:
            Scalar float32 (float64 for float64 embeddings) loss.
        """
        if teacher_embeddings is None:
            raise TypeError("teacher_embeddings must be a torch.Tensor of the student's shape, found None.")
        flat_embeddings, flat_target, teacher = flatten_loss_inputs(embeddings, target, teacher_embeddings)
        with torch.autocast(device_type=flat_embeddings.device.type, enabled=False):
            return self.term(flat_embeddings, teacher, flat_target == 0, flat_target >= 0)

    @torch.no_grad()
    def choose_anchors(self, embeddings: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw anchors that cover the region, for all samples at once.

        Args:
            embeddings: (B, E, N) student embeddings.
            region: (B, N) bool pixels to cover.

        Returns:
            (B, A) int64 anchor pixels and (B, A) bool, whether the anchor exists, A <= max_anchors.
        """
        batch, _, num_pixels = embeddings.shape
        device = embeddings.device
        applies = region.sum(dim=1) >= self.min_unlabeled_fraction * num_pixels
        remaining = region & applies.unsqueeze(1)
        priorities = random_priorities(batch, num_pixels, self.generator, device)
        # The coverage test only compares with delta_v^2, so the plain distance expansion is precise enough.
        squared_norms = embeddings.square().sum(dim=1)
        pixels = torch.zeros(batch, self.max_anchors, dtype=torch.int64, device=device)
        found = torch.zeros(batch, dtype=torch.int64, device=device)
        rows = torch.arange(batch, device=device)
        num_candidates = min(num_pixels, CANDIDATES_PER_ANCHOR * self.max_anchors)
        # Anchor k is the pixel of highest priority not covered by anchors 1..k-1. Among the pixels of highest
        # priority still uncovered (the candidates), that sequence only needs the (candidates x candidates)
        # coverage; the whole region is updated only when the candidates run out before max_anchors anchors.
        # Both loops are bounded by max_anchors and vectorised over the batch.
        while True:
            open_samples = remaining.any(dim=1) & (found < self.max_anchors)
            if not bool(open_samples.any()):
                break
            keys, candidates = torch.where(remaining, priorities, -1).topk(num_candidates, dim=1)
            free = (keys >= 0) & open_samples.unsqueeze(1)
            near = self._covered(embeddings, squared_norms, candidates, candidates)
            chosen, taken = [], []
            while True:
                take = free.any(dim=1) & (found < self.max_anchors)
                if not bool(take.any()):
                    break
                first = free.to(torch.uint8).argmax(dim=1)
                pixel = candidates[rows, first]
                pixels[rows[take], found[take]] = pixel[take]
                free &= ~near[rows, first]
                free[rows, first] = False
                found += take
                chosen.append(pixel)
                taken.append(take)
            if bool((found < self.max_anchors).any()):
                chosen_pixels, chosen_taken = torch.stack(chosen, dim=1), torch.stack(taken, dim=1)
                for part in pixel_slices(num_pixels, cached_chunk_size(batch, chosen_pixels.shape[1], device)):
                    covered = self._covered(embeddings, squared_norms, chosen_pixels, part) & chosen_taken.unsqueeze(-1)
                    remaining[:, part] &= ~covered.any(dim=1)
                remaining[rows.unsqueeze(1).expand_as(chosen_pixels)[chosen_taken], chosen_pixels[chosen_taken]] = False
        num_anchors = int(found.max())
        active = torch.arange(num_anchors, device=device) < found.unsqueeze(1)
        return pixels[:, :num_anchors], active

    def _covered(
        self, embeddings: torch.Tensor, squared_norms: torch.Tensor, anchors: torch.Tensor, pixels: torch.Tensor | slice
    ) -> torch.Tensor:
        """(B, A, P) bool: whether pixel p lies within delta_v of anchor a, for (B, A) anchor pixel indices and
        (B, P) pixel indices or a slice of pixels."""
        if isinstance(pixels, slice):
            points, point_norms = embeddings[..., pixels], squared_norms[:, pixels]
        else:
            points, point_norms = per_pixel(embeddings, pixels), squared_norms.gather(1, pixels)
        products = torch.bmm(per_pixel(embeddings, anchors).transpose(1, 2), points)
        squared = point_norms.unsqueeze(1) + squared_norms.gather(1, anchors).unsqueeze(2) - 2.0 * products
        return squared < self.delta_var**2

    def term(
        self, embeddings: torch.Tensor, teacher: torch.Tensor, region: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Consistency loss, batch mean.

        Args:
            embeddings: (B, E, N) student embeddings.
            teacher: (B, E, N) teacher embeddings; detached here whatever the caller passes.
            region: (B, N) bool region in which anchors are drawn.
            valid: (B, N) bool non-ignored pixels, over which the soft masks are compared.
        """
        teacher = teacher.detach()
        pixels, active = self.choose_anchors(embeddings.detach(), region)
        origins = (centre_of_valid_pixels(embeddings, valid), centre_of_valid_pixels(teacher, valid))
        chunk_size = cached_chunk_size(embeddings.shape[0], pixels.shape[1], embeddings.device)
        rate = 0.5 / self.sigma_sq
        weights = valid.to(embeddings.dtype)
        sums = _MaskOverlapSums.apply(embeddings, teacher, pixels, weights, origins, rate, chunk_size)
        # Unused anchor slots get a denominator of at least 1 so their (discarded) Dice has no 0/0 in its gradient.
        teacher_sq = torch.where(active, sums[..., 2], torch.ones_like(sums[..., 2]))
        per_anchor = dice_loss_from_sums(sums[..., 0], sums[..., 1], teacher_sq)
        return per_object_mean(per_anchor, active).mean()
