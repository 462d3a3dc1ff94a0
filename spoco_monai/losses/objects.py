"""Labeled objects of a batch: compact per-sample object slots, pixel counts and mean embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from spoco_monai.losses.chunking import CHUNK_ELEMENTS, pixel_chunk_size, pixel_slices
from spoco_monai.losses.inputs import flatten_loss_inputs

__all__ = ["LabeledBatch", "ObjectIndex", "labeled_batch", "means_and_pull", "per_pixel"]


def per_pixel(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Look up a column of a small per-sample table for every pixel, differentiably.

    Same as ``table.gather(2, index.unsqueeze(1).expand(-1, C, -1))``; ``index_select`` per sample copies each
    looked-up column at once and is several times faster on CPU than ``gather`` with an expanded index (a Python
    loop bounded by the batch size).

    Args:
        table: (B, C, T).
        index: (B, P) int64 in [0, T).

    Returns:
        (B, C, P) with out[b, :, p] = table[b, :, index[b, p]].
    """
    if torch.is_grad_enabled() and table.requires_grad:
        return torch.stack([rows.index_select(1, columns) for rows, columns in zip(table, index)])
    # Without autograd, each sample's columns are written in place (no stacking copy).
    looked_up = table.new_empty(table.shape[0], table.shape[1], index.shape[1])
    for rows, columns, out in zip(table, index, looked_up):
        torch.index_select(rows, 1, columns, out=out)
    return looked_up


@dataclass(frozen=True)
class ObjectIndex:
    """Objects (ids > 0) of each sample renumbered to slots 0..K-1, K the largest object count of a sample.

    Attributes:
        slots: (B, N) int64, the slot of each pixel's object; K for pixels outside every object (0 and -1).
        counts: (B, K) int64 pixel count per slot; 0 for slots beyond the sample's own object count.
    """

    slots: torch.Tensor
    counts: torch.Tensor

    @property
    def num_slots(self) -> int:
        """K, the number of object slots per sample."""
        return self.counts.shape[1]

    @property
    def present(self) -> torch.Tensor:
        """(B, K) bool, slots that hold an object."""
        return self.counts > 0

    @property
    def num_objects(self) -> torch.Tensor:
        """(B,) int64 number of objects per sample."""
        return self.present.sum(dim=1)

    @classmethod
    def from_target(cls, target: torch.Tensor) -> ObjectIndex:
        """Index the objects of a flattened target.

        Slots follow the order of the ids in each sample. Ids up to about the number of pixels are compacted
        with a (B, largest id + 1) count table; larger ids with ``torch.unique`` (first over the ids, then over
        (sample, id) pairs), so ids of any size are handled without a per-object loop.

        Args:
            target: (B, N) int64, id > 0 object, 0 unlabeled, -1 ignore.
        """
        batch, num_pixels = target.shape
        labeled = target > 0
        largest_id = max(int(target.max()), 0) if target.numel() else 0
        if batch * (largest_id + 1) > max(target.numel(), 2**16):
            return cls._from_sparse_ids(target, labeled)
        # Ids small enough for a (B, largest id + 1) table: counts and slots by bincount and cumsum (no sort).
        width = largest_id + 1
        keys = target.clamp_min(0) + width * torch.arange(batch, device=target.device).unsqueeze(1)
        id_counts = torch.bincount(keys.flatten(), minlength=batch * width).view(batch, width)
        id_counts[:, 0] = 0
        present = id_counts > 0
        slot_of_id = torch.cumsum(present, dim=1) - 1
        num_slots = int(present.sum(dim=1).max())
        slots = torch.where(labeled, slot_of_id.flatten()[keys], num_slots)
        counts = torch.zeros(batch, num_slots + 1, dtype=torch.int64, device=target.device)
        counts.scatter_(1, torch.where(present, slot_of_id, num_slots), id_counts)
        return cls(slots=slots, counts=counts[:, :num_slots].contiguous())

    @classmethod
    def _from_sparse_ids(cls, target: torch.Tensor, labeled: torch.Tensor) -> ObjectIndex:
        """:meth:`from_target` for ids too large for a table: ids compacted by ``torch.unique``."""
        batch, num_pixels = target.shape
        ids = target[labeled]
        sample = torch.arange(batch, device=target.device).repeat_interleave(labeled.sum(dim=1))
        distinct_ids, id_rank = torch.unique(ids, return_inverse=True)
        num_ranks = max(distinct_ids.numel(), 1)
        keys, segment = torch.unique(sample * num_ranks + id_rank, return_inverse=True)
        segment_sample = keys // num_ranks
        per_sample = torch.bincount(segment_sample, minlength=batch)
        first_segment = torch.cumsum(per_sample, dim=0) - per_sample
        segment_slot = torch.arange(keys.numel(), device=target.device) - first_segment[segment_sample]
        num_slots = int(per_sample.max())
        slots = torch.full((batch, num_pixels), num_slots, dtype=torch.int64, device=target.device)
        slots[labeled] = segment_slot[segment]
        counts = torch.zeros(batch, num_slots, dtype=torch.int64, device=target.device)
        counts[segment_sample, segment_slot] = torch.bincount(segment, minlength=keys.numel())
        return cls(slots=slots, counts=counts)


class _MeansAndPull(torch.autograd.Function):
    """Object means and per-object pull sums, with a backward pass that allocates one gradient tensor.

    Written with autograd, the pull term would keep (B, E, N) differences for the backward pass and create
    several (B, E, N) gradients (through the pixels and through the means). Here the backward pass fills a
    single (B, E, N) buffer chunk by chunk: with u_i = 2 [d_i - delta_v]_+ (e_i - mu_c) / d_i for pixel i of
    object c (d_i = ||e_i - mu_c||), g_pull and g_mu the incoming gradients,
    grad e_i = g_pull_c u_i + (g_mu_c - g_pull_c sum_{j in c} u_j) / N_c.
    """

    @staticmethod
    def forward(ctx, embeddings, slots, counts, delta_var, chunk_size):  # type: ignore[override]
        batch, channels, num_pixels = embeddings.shape
        num_slots = counts.shape[1]
        sizes = counts.clamp_min(1).to(embeddings.dtype)
        index = slots.unsqueeze(1).expand(-1, channels, -1)
        # Slot K collects the pixels outside every object; its mean is set to 0 and never used.
        means = embeddings.new_zeros(batch, channels, num_slots + 1).scatter_add_(2, index, embeddings)
        means[..., :num_slots] /= sizes.unsqueeze(1)
        means[..., num_slots] = 0.0
        hinge = embeddings.new_empty(batch, num_pixels)
        for part in pixel_slices(num_pixels, chunk_size):
            own_mean = per_pixel(means, slots[:, part])
            distance = (embeddings[..., part] - own_mean).square_().sum(dim=1).sqrt_()
            hinge[:, part] = (distance - delta_var).clamp_min_(0.0).square_()
        pull_sums = embeddings.new_zeros(batch, num_slots + 1).scatter_add_(1, slots, hinge)[:, :num_slots]
        ctx.save_for_backward(embeddings, slots, means, sizes)
        ctx.delta_var, ctx.chunk_size = delta_var, chunk_size
        return means[..., :num_slots].transpose(1, 2), pull_sums

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_means, grad_pull):  # type: ignore[override]
        embeddings, slots, means, sizes = ctx.saved_tensors
        batch, channels, num_pixels = embeddings.shape
        num_slots = sizes.shape[1]
        index = slots.unsqueeze(1).expand(-1, channels, -1)
        grad_pull = torch.zeros_like(sizes) if grad_pull is None else grad_pull
        grad_means = embeddings.new_zeros(batch, num_slots, channels) if grad_means is None else grad_means
        grad = torch.empty_like(embeddings)
        for part in pixel_slices(num_pixels, ctx.chunk_size):
            difference = torch.sub(embeddings[..., part], per_pixel(means, slots[:, part]), out=grad[..., part])
            distance = difference.square().sum(dim=1, keepdim=True).sqrt_()
            distance_floor = distance.clamp_min(torch.finfo(distance.dtype).tiny)
            slope = (distance - ctx.delta_var).clamp_min_(0.0).div_(distance_floor)
            difference.mul_(slope.mul_(2.0))
        pull_means = embeddings.new_zeros(batch, channels, num_slots + 1).scatter_add_(2, index, grad)
        padded_pull = torch.nn.functional.pad(grad_pull, (0, 1))
        through_means = grad_means.transpose(1, 2) - grad_pull.unsqueeze(1) * pull_means[..., :num_slots]
        through_means = through_means / sizes.unsqueeze(1)
        through_means = torch.nn.functional.pad(through_means, (0, 1))
        for part in pixel_slices(num_pixels, ctx.chunk_size):
            own_pull = padded_pull.gather(1, slots[:, part]).unsqueeze(1)
            grad[..., part].mul_(own_pull).add_(per_pixel(through_means, slots[:, part]))
        return grad, None, None, None, None


def means_and_pull(
    embeddings: torch.Tensor, objects: ObjectIndex, delta_var: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean embedding and pull sum of every object slot, by segment sums (no one-hot matrix).

    Args:
        embeddings: (B, E, N) float.
        objects: the object index of the same batch.
        delta_var: pull margin delta_v.

    Returns:
        (B, K, E) means (0 for empty slots) and (B, K) sums over each object's pixels of
        [||mu_c - e_i|| - delta_v]_+^2 (0 for empty slots).
    """
    # (B, E, chunk) temporaries of 2 MiB: these passes are memory-bound, so small chunks cost little time and
    # keep the peak memory of the step close to the (B, E, N) gradient itself.
    chunk_size = pixel_chunk_size(embeddings.shape[0], embeddings.shape[1], elements=CHUNK_ELEMENTS // 8)
    return _MeansAndPull.apply(embeddings, objects.slots, objects.counts, float(delta_var), chunk_size)


@dataclass(frozen=True)
class LabeledBatch:
    """A checked, flattened loss input with its objects: what every single-term loss module starts from.

    Attributes:
        embeddings: (B, E, N) float32 (float64 for float64 input).
        target: (B, N) int64; id > 0 object, 0 unlabeled, -1 ignore.
        objects: the object index of the target.
        means: (B, K, E) object means.
        pull_sums: (B, K) pull sums of :func:`means_and_pull`.
    """

    embeddings: torch.Tensor
    target: torch.Tensor
    objects: ObjectIndex
    means: torch.Tensor
    pull_sums: torch.Tensor


@contextmanager
def labeled_batch(embeddings: torch.Tensor, target: torch.Tensor, delta_var: float) -> Iterator[LabeledBatch]:
    """Check and flatten a loss input, index its objects and compute their means, in full precision.

    The body of the ``with`` block runs with autocast disabled, like the statistics, so a term computed there
    never drops to half precision.

    Args:
        embeddings: (B, E, H, W) or (B, E, D, H, W) float tensor.
        target: (B, 1, *S) or (B, *S) integer tensor; id > 0 object, 0 unlabeled, -1 ignore.
        delta_var: pull margin delta_v of the pull sums.

    Yields:
        the :class:`LabeledBatch`.
    """
    flat_embeddings, flat_target, _ = flatten_loss_inputs(embeddings, target)
    with torch.autocast(device_type=flat_embeddings.device.type, enabled=False):
        objects = ObjectIndex.from_target(flat_target)
        means, pull_sums = means_and_pull(flat_embeddings, objects, delta_var)
        yield LabeledBatch(flat_embeddings, flat_target, objects, means, pull_sums)
