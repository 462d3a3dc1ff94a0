"""Adversarial mask term: a critic tells the single-instance term's soft masks from ground-truth masks (WGAN-GP).

SPOCO's appendix A.1 adds a Wasserstein GAN objective with gradient penalty (Gulrajani et al., "Improved Training of
Wasserstein GANs", NeurIPS 2017) to the single-instance term: the embedding network plays the generator, whose
samples ("fake" masks) are the differentiable soft masks S_c of the chosen objects, and a convolutional critic D
learns to tell them from the objects' ground-truth masks ("real"). Both are cut to a box of fixed size around each
object (:func:`object_box_masks`), so that the critic sees one object at a fixed scale whatever the patch size.

- critic loss: E[D(fake)] - E[D(real)] + lambda E[(||grad_x D(x)||_2 - 1)^2], x = a real + (1 - a) fake with
  a ~ U(0, 1) per mask pair; minimised over the critic only (the fake masks are detached);
- generator term: -E[D(fake)], added to the SPOCO loss of the network with a weight.

The training schedule (critic optimiser, critic steps per network step, warm-up) is
:class:`~spoco_monai.engines.adversarial.AdversarialSpocoTrainer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

from spoco_monai.losses.single_instance import ChosenObjects
from spoco_monai.validation import check_int, check_non_negative, check_positive_int

__all__ = ["MaskCritic", "WassersteinMaskLoss", "object_box_masks"]


class MaskCritic(nn.Module):
    """Convolutional critic of single-object masks, 2D or 3D: one score per mask (higher: more like ground truth).

    One block per width: a 3x3(x3) convolution (zero padding) and a LeakyReLU (slope 0.2), followed by 2x max
    pooling after every block but the last; then global average pooling and a dense layer to one score. The default
    widths 64, 128, 256, 512 follow the critic of the SPOCO paper (table 9); smaller widths make CPU runs affordable.
    There is no normalisation layer: the gradient penalty is taken per mask, which batch statistics would couple
    (Gulrajani et al. 2017, section 4).

    With a ``seed``, the initial weights are drawn from it inside a fork of torch's global generator, which is left
    as it was: adding a critic to a training then changes no other random draw (network initialisation, data order).

    Args:
        spatial_dims: 2 or 3.
        channels: widths of the convolution blocks, each >= 1.
        in_channels: channels of the input masks.
        seed: None (draw from torch's global generator) or the seed of the initial weights.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: ``spatial_dims`` not 2 or 3, or no or non-positive widths.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        channels: Sequence[int] = (64, 128, 256, 512),
        in_channels: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if check_int("spatial_dims", spatial_dims) not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, found {spatial_dims}.")
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) == 0:
            raise ValueError(f"channels must be a non-empty sequence of widths, found {channels!r}.")
        widths = [check_positive_int("channels", width) for width in channels]
        self.spatial_dims = spatial_dims
        #: smallest input size along every axis: the input is halved len(channels) - 1 times
        self.min_size = 2 ** (len(widths) - 1)
        layers: list[nn.Module] = []
        previous = check_positive_int("in_channels", in_channels)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(check_int("seed", seed))
            for index, width in enumerate(widths):
                layers += [Conv[Conv.CONV, spatial_dims](previous, width, 3, padding=1), nn.LeakyReLU(0.2)]
                if index < len(widths) - 1:
                    layers.append(Pool[Pool.MAX, spatial_dims](2))
                previous = width
            score = nn.Linear(previous, 1)
        self.features = nn.Sequential(*layers)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.score = score

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """Score masks.

        Args:
            masks: (n, in_channels, *box) float tensor, every box axis >= :attr:`min_size`.

        Returns:
            (n,) scores.

        Raises:
            ValueError: masks of another dimensionality or smaller than :attr:`min_size`.
        """
        if masks.ndim != self.spatial_dims + 2 or min(masks.shape[2:]) < self.min_size:
            raise ValueError(
                f"MaskCritic({self.spatial_dims}D) expects masks of shape (n, C, *box) with {self.spatial_dims} box "
                f"axes of at least {self.min_size}, found {tuple(masks.shape)}."
            )
        return self.score(self.pool(self.features(masks)).flatten(1)).squeeze(1)


def object_box_masks(chosen: ChosenObjects, box_size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft and ground-truth masks of the chosen objects, each cut to a box of fixed size around its object.

    Box placement, per object and axis: the box is centred on the object's bounding box in the patch (an object
    longer than the box keeps its central part), then shifted to lie inside the patch. Along an axis where the
    patch is shorter than the box, the patch is padded at its end with ignored pixels. Ignored pixels (label -1 or
    padding) are 0 in both masks, as the soft mask of the single-instance term covers only non-ignored pixels.

    Args:
        chosen: the single-instance term's objects (``SpocoLoss.last_chosen``).
        box_size: box shape, one size >= 1 per spatial axis of the patch.

    Returns:
        fake (n, 1, *box_size): S_c(i) = exp(-rate ||e_i - a_c||^2), differentiable with respect to the embeddings;
        real (n, 1, *box_size): 1 on the object, 0 elsewhere. n counts the present chosen objects of the batch,
        sample by sample in slot order.

    Raises:
        ValueError: ``box_size`` with another number of axes than the patch.
    """
    box = tuple(box_size)
    spatial = chosen.spatial_shape
    if len(box) != len(spatial):
        raise ValueError(f"box_size {box} must have one size per spatial axis of the patch {spatial}.")
    embeddings, anchors = chosen.embeddings, chosen.anchors
    batch, num_chosen = chosen.slots.shape
    device = embeddings.device
    # Squared distances of every pixel to every chosen anchor, (B, M, N), by one batched product, then cut to the
    # boxes: computing inside the boxes only would gather (B, E, M, P) embeddings, E P / N times as many values
    # (2 for E = 16 and a 3D box of half the patch).
    squared = anchors.square().sum(dim=2, keepdim=True) + embeddings.square().sum(dim=1).unsqueeze(1)
    squared = (squared - 2.0 * torch.bmm(anchors, embeddings)).clamp_min(0.0)

    # Bounding box of every object slot, per axis; slot K gathers the pixels outside every object.
    num_slots = chosen.objects.num_slots
    pixel_slots = chosen.objects.slots
    starts = []
    pixel = torch.arange(embeddings.shape[-1], device=device)
    for size, box_length, step in zip(spatial, box, _row_major_strides(spatial)):
        coordinate = (pixel // step % size).expand(batch, -1)
        low = torch.full((batch, num_slots + 1), size, dtype=torch.int64, device=device)
        low = low.scatter_reduce(1, pixel_slots, coordinate, reduce="amin").gather(1, chosen.slots)
        high = torch.zeros(batch, num_slots + 1, dtype=torch.int64, device=device)
        high = high.scatter_reduce(1, pixel_slots, coordinate, reduce="amax").gather(1, chosen.slots)
        start = low - torch.div(box_length - (high - low + 1), 2, rounding_mode="floor")
        starts.append(start.clamp(0, max(size - box_length, 0)))

    padded = tuple(max(size, box_length) for size, box_length in zip(spatial, box))
    padding = [amount for size, length in zip(spatial[::-1], box[::-1]) for amount in (0, max(length - size, 0))]

    def padded_flat(values: torch.Tensor, fill: float) -> torch.Tensor:
        # (..., N) values of the patch -> (..., N') values of the padded patch
        return nn.functional.pad(values.unflatten(-1, spatial), padding, value=fill).flatten(-len(spatial))

    # Flat index of every box pixel in the padded patch: (B, M, P), P = prod(box).
    index = torch.zeros(batch, num_chosen, 1, dtype=torch.int64, device=device)
    offsets = torch.zeros((), dtype=torch.int64, device=device)
    for axis, (start, box_length, step) in enumerate(zip(starts, box, _row_major_strides(padded))):
        index = index + (start * step).unsqueeze(-1)
        shape = [1] * len(box)
        shape[axis] = box_length
        offsets = offsets + torch.arange(box_length, device=device).view(shape) * step
    index = index + offsets.flatten()
    box_pixels = index.flatten(1)

    distances = padded_flat(squared, 0.0).gather(2, index)
    valid = padded_flat(chosen.valid.to(embeddings.dtype), 0.0).gather(1, box_pixels).view_as(distances)
    slots = padded_flat(pixel_slots, -1).gather(1, box_pixels).view_as(index)
    fake = torch.exp(-chosen.rate * distances) * valid
    real = (slots == chosen.slots.unsqueeze(-1)).to(embeddings.dtype)
    present = chosen.present
    return fake[present].view(-1, 1, *box), real[present].view(-1, 1, *box)


class WassersteinMaskLoss(nn.Module):
    """WGAN-GP objectives of the adversarial mask term (see the module docstring).

    The interpolation weights of the gradient penalty come from the module's own CPU ``torch.Generator``
    (attribute ``generator``) seeded with ``seed``, so that a resumed training draws the same ones.

    Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017; Wolny et al., "Sparse Object-level
    Supervision for Instance Segmentation with Pixel Embeddings", CVPR 2022 (appendix A.1).

    Args:
        box_size: box around each object, one size per spatial axis (see :func:`object_box_masks`).
        gradient_penalty_weight: lambda >= 0; 10 in Gulrajani et al. and in the SPOCO reference code.
        seed: seed of the module's generator.

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an empty box, a box size < 1 or a negative weight.
    """

    def __init__(self, box_size: Sequence[int], gradient_penalty_weight: float = 10.0, seed: int = 0) -> None:
        super().__init__()
        if isinstance(box_size, (str, bytes)) or not isinstance(box_size, Sequence) or len(box_size) not in (2, 3):
            raise ValueError(f"box_size must give a size per spatial axis (2 or 3 sizes), found {box_size!r}.")
        self.box_size = tuple(check_positive_int("box_size", size) for size in box_size)
        self.gradient_penalty_weight = check_non_negative("gradient_penalty_weight", gradient_penalty_weight)
        self.generator = torch.Generator().manual_seed(check_int("seed", seed))
        self.last_terms: dict[str, float] = {}

    def masks(self, chosen: ChosenObjects) -> tuple[torch.Tensor, torch.Tensor]:
        """Fake and real masks of the chosen objects in boxes of ``box_size`` (:func:`object_box_masks`)."""
        return object_box_masks(chosen, self.box_size)

    def gradient_penalty(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """E[(||grad_x D(x)||_2 - 1)^2] on x = a real + (1 - a) fake, one a ~ U(0, 1) per mask pair.

        Differentiable with respect to the critic's parameters only (the masks are detached).

        Args:
            critic: maps (n, 1, *box) masks to (n,) scores, each score depending on its own mask only.
            real: (n, 1, *box) ground-truth masks, n >= 1.
            fake: (n, 1, *box) soft masks.
        """
        _check_masks(real, fake)
        weights = torch.rand(real.shape[0], generator=self.generator, dtype=real.dtype).to(real.device)
        weights = weights.view(-1, *([1] * (real.ndim - 1)))
        interpolates = (weights * real.detach() + (1.0 - weights) * fake.detach()).requires_grad_(True)
        (gradients,) = torch.autograd.grad(critic(interpolates).sum(), interpolates, create_graph=True)
        return (gradients.flatten(1).norm(dim=1) - 1.0).square().mean()

    def critic_loss(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """E[D(fake)] - E[D(real)] + lambda * gradient penalty, with the masks detached.

        Afterwards :attr:`last_terms` holds ``critic`` (this loss), ``wasserstein`` (E[D(real)] - E[D(fake)], the
        critic's estimate of the Wasserstein distance) and ``gradient_penalty``, as floats.

        Args:
            critic: the critic D.
            real: (n, 1, *box) ground-truth masks, n >= 1.
            fake: (n, 1, *box) soft masks.
        """
        _check_masks(real, fake)
        wasserstein = critic(real.detach()).mean() - critic(fake.detach()).mean()
        penalty = self.gradient_penalty(critic, real, fake)
        loss = self.gradient_penalty_weight * penalty - wasserstein
        values = torch.stack([loss, wasserstein, penalty]).detach().tolist()
        self.last_terms = dict(zip(("critic", "wasserstein", "gradient_penalty"), values))
        return loss

    @staticmethod
    def generator_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
        """-E[D(fake)], differentiable with respect to the soft masks (and the critic unless it is frozen).

        Args:
            critic: the critic D.
            fake: (n, 1, *box) soft masks, n >= 1.
        """
        _check_masks(fake, fake)
        return -critic(fake).mean()


def _row_major_strides(shape: Sequence[int]) -> list[int]:
    return [math.prod(shape[axis + 1 :]) for axis in range(len(shape))]


def _check_masks(real: torch.Tensor, fake: torch.Tensor) -> None:
    if real.shape != fake.shape or real.ndim < 3 or real.shape[0] == 0:
        raise ValueError(
            "real and fake masks must have the same shape (n, 1, *box) with n >= 1, found "
            f"{tuple(real.shape)} and {tuple(fake.shape)}."
        )
