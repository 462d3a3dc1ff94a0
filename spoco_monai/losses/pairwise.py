"""Sums over pixels of a function of the squared distance to each of M centres, in bounded memory.

Terms such as sum_i S_c(i)^2 (single-instance Dice) or sum_i [delta_d - ||mu_c - e_i||]_+^2 (unlabeled push)
relate every centre to every pixel. Written with autograd they would keep several (B, M, N) tensors for the
backward pass. ``kernel_sums`` instead works on pixel chunks, keeps only its inputs, and recomputes each chunk
in an analytic backward pass: for out_m = sum_i w_i phi(s_mi), s_mi = ||c_m - x_i||^2 and
G_mi = grad_m w_i phi'(s_mi),

    d out / d c_m = 2 (c_m sum_i G_mi - sum_i G_mi x_i),   d out / d x_i = 2 (x_i sum_m G_mi - sum_m G_mi c_m),

two batched matrix products per chunk. Chunks are sized to stay in cache (``CACHE_ELEMENTS``), and the norms are
folded into the matrix products (augmented coordinates), so that each chunk costs one matrix product and the
kernel's own elementwise passes in the forward pass, and three matrix products in the backward pass. A kernel
with a bounded support (the hinge: value and derivative exactly 0 beyond the margin) is evaluated only on the
pairs inside it when they are few (``SPARSE_FRACTION`` of a chunk), which skips the backward products.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from spoco_monai.losses.chunking import CACHE_ELEMENTS, pixel_chunk_size, pixel_slices

__all__ = [
    "LOG_CAP",
    "GaussianKernel",
    "HingeKernel",
    "NegativeLogComplementKernel",
    "augmented_centres",
    "augmented_chunks",
    "augmented_points",
    "cached_chunk_size",
    "centre_of_valid_pixels",
    "kernel_sums",
    "kernel_values",
    "squared_distances",
]


#: Fewest pixels per chunk: narrower matrix products lose their efficiency.
MIN_CHUNK = 256


def cached_chunk_size(batch: int, width: int, device: torch.device) -> int:
    """Pixels per chunk of a (batch, width, chunk) tensor: sized to stay in a CPU core's cache (at least
    ``MIN_CHUNK``); on an accelerator, where each operation has a launch cost and no such cache to fit, sized by
    ``CHUNK_ELEMENTS``."""
    if device.type != "cpu":
        return pixel_chunk_size(batch, width)
    return max(MIN_CHUNK, pixel_chunk_size(batch, width, CACHE_ELEMENTS))


def augmented_centres(centers: torch.Tensor) -> torch.Tensor:
    """(B, M, E) centres c to (B, M, E + 2) rows [-2 c, ||c||^2, 1], see :func:`squared_distances`."""
    ones = torch.ones_like(centers[..., :1])
    return torch.cat([-2.0 * centers, centers.square().sum(-1, keepdim=True), ones], dim=-1)


def augmented_points(points: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """(B, E, P) points x, centred on the (B, E) origin o, to (B, E + 2, P) columns [x - o, 1, ||x - o||^2], see
    :func:`squared_distances`."""
    channels = points.shape[1]
    augmented = points.new_empty(points.shape[0], channels + 2, points.shape[2])
    centred = torch.sub(points, origin.unsqueeze(-1), out=augmented[:, :channels])
    augmented[:, channels] = 1.0
    torch.sum(centred.square(), dim=1, out=augmented[:, channels + 1])
    return augmented


#: Pixels for which the centred, augmented points are prepared at once: wider than a cache-sized chunk, so that
#: this preparation is a few operations per block instead of per chunk.
BLOCK_PIXELS = 2**15


def augmented_chunks(
    points: torch.Tensor, origin: torch.Tensor, chunk_size: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """Augmented points centred on ``origin``, chunk by chunk.

    Args:
        points: (B, E, N).
        origin: (B, E).
        chunk_size: pixels per chunk.

    Yields:
        The chunk's slice of pixels and its (B, E + 2, chunk) points from :func:`augmented_points`.
    """
    block = max(chunk_size, BLOCK_PIXELS // chunk_size * chunk_size)
    for outer in pixel_slices(points.shape[-1], block):
        local = augmented_points(points[..., outer], origin)
        for inner in pixel_slices(local.shape[-1], chunk_size):
            yield slice(outer.start + inner.start, outer.start + inner.stop), local[..., inner]


def squared_distances(centers: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between centres and points, batched.

    Uses ||c||^2 + ||p||^2 - 2 c.p, written as one matrix product of augmented coordinates, so that the
    (B, M, P) result is the only tensor of that size (a difference tensor would be E times larger) and is written
    once. Callers centre both inputs on a common origin, which keeps the cancellation error of the expansion
    small.

    Args:
        centers: (B, M, E + 2) from :func:`augmented_centres`.
        points: (B, E + 2, P) from :func:`augmented_points`.

    Returns:
        (B, M, P) non-negative squared distances.
    """
    return torch.bmm(centers, points).clamp_min_(0.0)


def centre_of_valid_pixels(embeddings: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean embedding of the valid pixels of each sample (origin for the distance expansion), detached.

    Args:
        embeddings: (B, E, N).
        valid: (B, N) bool.

    Returns:
        (B, E); zero for a sample without valid pixels.
    """
    weights = valid.to(embeddings.dtype).unsqueeze(-1)
    total = torch.bmm(embeddings.detach(), weights).squeeze(-1)
    return total / weights.sum(dim=1).clamp_min(1)


def _cutoff(squared: torch.Tensor, scale: float) -> float:
    """Squared distance below which the expansion has no relative precision left (gradient taken as 0)."""
    return torch.finfo(squared.dtype).eps * scale


@dataclass(frozen=True)
class GaussianKernel:
    """phi(s) = exp(-rate s); with rate = 1 / sigma^2 this is S^2 for the soft mask S = exp(-s / (2 sigma^2))."""

    rate: float

    #: Squared distance from which value and derivative are 0 (None: nowhere).
    support = None

    def value_(self, squared: torch.Tensor) -> torch.Tensor:
        return squared.mul_(-self.rate).exp_()

    def derivative_(self, squared: torch.Tensor) -> torch.Tensor:
        return squared.mul_(-self.rate).exp_().mul_(-self.rate)


@dataclass(frozen=True)
class HingeKernel:
    """phi(s) = [margin - sqrt(s)]_+^2, the squared hinge on a distance.

    Its gradient direction is undefined at distance 0; it is taken as 0 below a distance of sqrt(eps) * margin.
    """

    margin: float

    @property
    def support(self) -> float:
        """Squared distance from which value and derivative are 0."""
        return self.margin**2

    def value_(self, squared: torch.Tensor) -> torch.Tensor:
        return squared.sqrt_().neg_().add_(self.margin).clamp_min_(0.0).square_()

    def derivative_(self, squared: torch.Tensor) -> torch.Tensor:
        too_close = squared < _cutoff(squared, self.margin**2)
        distance = squared.sqrt_()
        slope = (self.margin - distance).clamp_min_(0.0)
        return slope.div_(distance.clamp_min_(torch.finfo(distance.dtype).tiny)).neg_().masked_fill_(too_close, 0.0)


#: -log values are capped like torch.nn.functional.binary_cross_entropy caps log at -100.
LOG_CAP = 100.0


@dataclass(frozen=True)
class NegativeLogComplementKernel:
    """phi(s) = -log(1 - exp(-rate s)), capped at 100: the BCE of a soft mask at a pixel outside the object.

    With rate = 1 / (2 sigma^2) this is -log(1 - S). Its gradient, -rate / expm1(rate s), diverges at s = 0;
    it is taken as 0 where the value is capped or the expansion has no precision left.
    """

    rate: float

    support = None

    def value_(self, squared: torch.Tensor) -> torch.Tensor:
        return squared.mul_(-self.rate).expm1_().neg_().log_().neg_().clamp_max_(LOG_CAP)

    def derivative_(self, squared: torch.Tensor) -> torch.Tensor:
        cutoff = max(_cutoff(squared, 1.0 / self.rate), math.exp(-LOG_CAP) / self.rate)
        too_close = squared < cutoff
        return squared.mul_(self.rate).expm1_().reciprocal_().mul_(-self.rate).masked_fill_(too_close, 0.0)


Kernel = GaussianKernel | HingeKernel | NegativeLogComplementKernel


class _KernelValues(torch.autograd.Function):
    @staticmethod
    def forward(ctx, squared, kernel):  # type: ignore[override]
        ctx.save_for_backward(squared)
        ctx.kernel = kernel
        return kernel.value_(squared.clone())

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_values):  # type: ignore[override]
        (squared,) = ctx.saved_tensors
        return grad_values * ctx.kernel.derivative_(squared.clone()), None


def kernel_values(squared: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """phi(squared) elementwise, differentiable with the kernel's own (finite) derivative."""
    return _KernelValues.apply(squared, kernel)


#: A kernel with a bounded support is evaluated on the (centre, pixel) pairs inside it only when they are at
#: most this fraction of a chunk; gathering and scattering single pairs costs more than a dense pass per pair.
SPARSE_FRACTION = 1 / 64


def _pairs_in_support(squared: torch.Tensor, kernel: Kernel) -> tuple[torch.Tensor, ...] | None:
    """(sample, centre, pixel) indices of the pairs of a chunk inside the kernel's support, or None when the
    kernel has no bounded support or the pairs are too many for the sparse evaluation."""
    if kernel.support is None:
        return None
    pairs = (squared < kernel.support).nonzero(as_tuple=True)
    return pairs if pairs[0].numel() <= SPARSE_FRACTION * squared.numel() else None


class _KernelSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centers, points, weights, origin, kernel, chunk_size):  # type: ignore[override]
        augmented = augmented_centres(centers - origin.unsqueeze(1))
        total = centers.new_zeros(centers.shape[:2])
        for part, local in augmented_chunks(points, origin, chunk_size):
            squared = torch.bmm(augmented, local)
            pairs = _pairs_in_support(squared, kernel)
            if pairs is None:
                values = kernel.value_(squared.clamp_min_(0.0))
                total += torch.bmm(values, weights[:, part].unsqueeze(-1)).squeeze(-1)
            else:
                sample, centre, pixel = pairs
                values = kernel.value_(squared[pairs].clamp_min_(0.0)) * weights[:, part][sample, pixel]
                total.index_put_((sample, centre), values, accumulate=True)
        ctx.save_for_backward(centers, points, weights, origin)
        ctx.kernel, ctx.chunk_size = kernel, chunk_size
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total):  # type: ignore[override]
        centers, points, weights, origin = ctx.saved_tensors
        channels = centers.shape[-1]
        centred = centers - origin.unsqueeze(1)
        augmented = augmented_centres(centred)
        # With G_mi = grad_m w_i phi'(s_mi), on a dense chunk: rows 2 [grad_m c_m, grad_m] give 2 sum_m G_mi c_m and
        # 2 sum_m G_mi in one product, columns [x_i, 1] give sum_i G_mi x_i and sum_i G_mi (up to grad_m) in another
        # (module docstring). The pixel weights go into the (M, chunk) slopes, not into the (E, chunk) points or
        # gradients: fewer passes over chunk-sized tensors, the same products for 0/1 weights (masks, as here).
        scaled_centres = torch.cat([centred, torch.ones_like(centred[..., :1])], dim=-1).mul_(grad_total.unsqueeze(-1))
        scaled_centres = scaled_centres.mul_(2.0).transpose(1, 2)
        grad_centers = torch.zeros_like(centers)
        grad_points = torch.empty_like(points) if ctx.needs_input_grad[1] else None
        for part, local in augmented_chunks(points, origin, ctx.chunk_size):
            squared = torch.bmm(augmented, local)
            chunk_weights = weights[:, part].unsqueeze(1)
            pairs = _pairs_in_support(squared, ctx.kernel)
            if pairs is not None:
                # Few pairs: their differences directly, G_mi 2 (x_i - c_m), scattered to both sides.
                sample, centre, pixel = pairs
                slopes = ctx.kernel.derivative_(squared[pairs].clamp_min_(0.0))
                slopes *= chunk_weights[sample, 0, pixel] * grad_total[sample, centre]
                differences = local[sample, :channels, pixel] - centred[sample, centre]
                differences.mul_(2.0 * slopes.unsqueeze(1))
                grad_centers.index_put_((sample, centre), differences.neg(), accumulate=True)
                if grad_points is not None:
                    chunk_grad = grad_points[..., part].zero_().transpose(1, 2)
                    chunk_grad.index_put_((sample, pixel), differences, accumulate=True)
                continue
            slopes = ctx.kernel.derivative_(squared.clamp_min_(0.0)).mul_(chunk_weights)
            centre_sums = torch.bmm(slopes, local[:, : channels + 1].transpose(1, 2))
            centre_grad = centred * centre_sums[..., channels:] - centre_sums[..., :channels]
            grad_centers += centre_grad.mul_(2.0 * grad_total.unsqueeze(-1))
            if grad_points is not None:
                point_sums = torch.bmm(scaled_centres, slopes)
                chunk_grad = torch.mul(local[:, :channels], point_sums[:, channels:], out=grad_points[..., part])
                chunk_grad.sub_(point_sums[:, :channels])
        return grad_centers, grad_points, None, None, None, None


def kernel_sums(
    centers: torch.Tensor, points: torch.Tensor, weights: torch.Tensor, origin: torch.Tensor, kernel: Kernel
) -> torch.Tensor:
    """out[b, m] = sum_i weights[b, i] * phi(||centers[b, m] - points[b, :, i]||^2), differentiable.

    Args:
        centers: (B, M, E) float.
        points: (B, E, N) float.
        weights: (B, N) float pixel weights (e.g. a mask); not differentiated.
        origin: (B, E) common origin both are centred on (e.g. the mean embedding); not differentiated.
        kernel: phi, one of the kernels of this module.

    Returns:
        (B, M) sums.
    """
    chunk_size = cached_chunk_size(points.shape[0], centers.shape[1], points.device)
    return _KernelSums.apply(centers, points, weights.to(points.dtype), origin.detach(), kernel, chunk_size)
