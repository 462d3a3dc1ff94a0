"""Sums over pixels of a function of the squared distance to each of M centres, in bounded memory.

Terms such as sum_i S_c(i)^2 (single-instance Dice) or sum_i [delta_d - ||mu_c - e_i||]_+^2 (unlabeled push)
relate every centre to every pixel. Written with autograd they would keep several (B, M, N) tensors for the
backward pass. ``kernel_sums`` instead works on pixel chunks, keeps only its inputs, and recomputes each chunk
in an analytic backward pass: for out_m = sum_i w_i phi(s_mi), s_mi = ||c_m - x_i||^2 and
G_mi = grad_m w_i phi'(s_mi),

    d out / d c_m = 2 (c_m sum_i G_mi - sum_i G_mi x_i),   d out / d x_i = 2 (x_i sum_m G_mi - sum_m G_mi c_m),

two batched matrix products per chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from spoco_monai.losses.chunking import pixel_chunk_size, pixel_slices

__all__ = [
    "LOG_CAP",
    "GaussianKernel",
    "HingeKernel",
    "NegativeLogComplementKernel",
    "centre_of_valid_pixels",
    "distance_gradients",
    "kernel_sums",
    "kernel_values",
    "squared_distances",
]


def squared_distances(centers: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances between centres and points, batched.

    Uses ||c||^2 + ||p||^2 - 2 c.p so that the (B, M, P) result is the only tensor of that size (a difference
    tensor would be E times larger). Callers centre both inputs on a common origin, which keeps the
    cancellation error of the expansion small.

    Args:
        centers: (B, M, E).
        points: (B, E, P).

    Returns:
        (B, M, P) non-negative squared distances.
    """
    point_norms = points.square().sum(1, keepdim=True)
    squared = torch.baddbmm(point_norms, centers, points, alpha=-2.0)
    return squared.add_(centers.square().sum(-1, keepdim=True)).clamp_min_(0.0)


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

    def value_(self, squared: torch.Tensor) -> torch.Tensor:
        return squared.mul_(-self.rate).expm1_().neg_().log_().neg_().clamp_max_(LOG_CAP)

    def derivative_(self, squared: torch.Tensor) -> torch.Tensor:
        cutoff = max(_cutoff(squared, 1.0 / self.rate), math.exp(-LOG_CAP) / self.rate)
        too_close = squared < cutoff
        return squared.mul_(self.rate).expm1_().reciprocal_().mul_(-self.rate).masked_fill_(too_close, 0.0)


Kernel = GaussianKernel | HingeKernel | NegativeLogComplementKernel


def distance_gradients(
    slopes: torch.Tensor, centers: torch.Tensor, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of sum_{m,i} f(||c_m - x_i||^2) given the slopes G_mi = f'(s_mi), by two matrix products.

    Args:
        slopes: (B, M, P).
        centers: (B, M, E).
        points: (B, E, P).

    Returns:
        (B, M, E) gradient for the centres and (B, E, P) for the points.
    """
    centers_grad = 2.0 * (centers * slopes.sum(-1, keepdim=True) - torch.bmm(slopes, points.transpose(1, 2)))
    points_grad = 2.0 * (points * slopes.sum(1, keepdim=True) - torch.bmm(centers.transpose(1, 2), slopes))
    return centers_grad, points_grad


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


class _KernelSums(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centers, points, weights, origin, kernel, chunk_size):  # type: ignore[override]
        centred = centers - origin.unsqueeze(1)
        total = centers.new_zeros(centers.shape[:2])
        for part in pixel_slices(points.shape[-1], chunk_size):
            values = kernel.value_(squared_distances(centred, points[..., part] - origin.unsqueeze(-1)))
            total += torch.bmm(values, weights[:, part].unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(centers, points, weights, origin)
        ctx.kernel, ctx.chunk_size = kernel, chunk_size
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total):  # type: ignore[override]
        centers, points, weights, origin = ctx.saved_tensors
        centred = centers - origin.unsqueeze(1)
        grad_centers = torch.zeros_like(centers) if ctx.needs_input_grad[0] else None
        grad_points = torch.empty_like(points) if ctx.needs_input_grad[1] else None
        for part in pixel_slices(points.shape[-1], ctx.chunk_size):
            local = points[..., part] - origin.unsqueeze(-1)
            slopes = ctx.kernel.derivative_(squared_distances(centred, local))
            slopes.mul_(weights[:, part].unsqueeze(1)).mul_(grad_total.unsqueeze(-1))
            centers_part, points_part = distance_gradients(slopes, centred, local)
            if grad_centers is not None:
                grad_centers += centers_part
            if grad_points is not None:
                grad_points[..., part] = points_part
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
    chunk_size = pixel_chunk_size(points.shape[0], centers.shape[1])
    return _KernelSums.apply(centers, points, weights.to(points.dtype), origin.detach(), kernel, chunk_size)
