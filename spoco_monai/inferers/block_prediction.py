"""Prediction of one block: read its extent, normalise it, run its windows through the network and blend them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from skimage.filters import threshold_otsu
from torch import nn

from ..data.volume_io import volume_mean_std
from .block_grid import Block
from .settings import SegmentationSettings
from .window_blending import BlendingWorkspace, blend_windows

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class BlockPredictor:
    """Blended affinities or embeddings of a block's extent, as :class:`~.settings.SegmentationSettings` ask.

    Attributes:
        network: maps ``(B, C, *window)`` to ``(B, E, *window)`` embeddings (plus a last foreground or localisation
            logit with ``settings.logit_channel``).
        settings: the segmentation settings.
        window: the window actually used (``settings.roi_size``, or the whole image, see
            :func:`~.block_grid.whole_image_window`).
        has_channels: whether the volume has a leading channel axis.
        device: where the network's input and the blending buffers live.
        statistics: ``(mean, std)`` of the whole volume when the settings normalise, else ``None``.
        intensity_threshold: the volume's Otsu threshold with ``foreground="intensity"``, else ``None``.
        workspace: the memory the blocks are blended in, reused from block to block: a prediction is valid until
            the next call.
    """

    network: Callable[[torch.Tensor], torch.Tensor]
    settings: SegmentationSettings
    window: tuple[int, ...]
    has_channels: bool
    device: torch.device
    statistics: tuple[float, float] | None = None
    intensity_threshold: float | None = None
    workspace: BlendingWorkspace = field(default_factory=BlendingWorkspace, compare=False, repr=False)

    def __call__(
        self,
        region: np.ndarray | torch.Tensor,
        block: Block,
        on_windows: Callable[[int], None],
        timings: dict[str, float],
    ) -> torch.Tensor:
        """``(K, *extent)`` blended affinities or ``(E, *extent)`` embeddings of the block's extent.

        Args:
            region: ``(C, *extent)`` image values of the block's extent (see :class:`~.block_reading.BlockReader`).
            block: the block.
            on_windows: called with the number of windows finished after every forward pass.
            timings: ``timings["affinities"]`` is increased by the seconds spent turning embeddings into affinities.

        With ``settings.logit_channel``, one more channel holds the blended probability of the network's last
        channel; with a foreground setting, one more, last channel holds the foreground probability (0 or 1 for
        the intensity rule).
        """
        if not isinstance(region, torch.Tensor):
            # a read-only block (e.g. of a memory-mapped file) is copied: torch warns on arrays it cannot write
            region = torch.from_numpy(np.require(region, dtype=np.float32, requirements=["C", "W"]))
        region = region.to(device=self.device, dtype=torch.float32)
        foreground = self.settings.foreground
        bright = region.mean(dim=0, keepdim=True) > self.intensity_threshold if foreground == "intensity" else None
        prediction = blend_windows(
            normalised(region, self.statistics), self.network, self.window, block.window_starts,
            output=self.settings.blend, offsets=self.settings.offsets,
            affinity_delta_dist=self.settings.affinity_delta_dist,
            sw_batch_size=self.settings.sw_batch_size, sigma_scale=self.settings.sigma_scale,
            on_windows=on_windows, timings=timings, foreground_channel=self.settings.logit_channel,
            workspace=self.workspace, test_time_flips=self.settings.test_time_flips,
        )
        return prediction if bright is None else torch.cat([prediction, bright.to(prediction)])

    def fingerprint(self) -> dict[str, Any]:
        """JSON-serialisable description of everything that decides the predictions, the network's weights included."""
        return {
            **self.settings.fingerprint(),
            "window": list(self.window),
            "has_channels": self.has_channels,
            "statistics": self.statistics,
            "intensity_threshold": self.intensity_threshold,
            "network": _network_fingerprint(self.network),
        }


def normalised(region: torch.Tensor, statistics: tuple[float, float] | None) -> torch.Tensor:
    """``(region - mean) / std``, out of place (the region may share memory with the caller's image)."""
    return region if statistics is None else (region - statistics[0]) / statistics[1]


def image_statistics(volume: Any, name: str = "the image") -> tuple[float, float]:
    """Mean and standard deviation of all values of a volume, array or tensor, reading it whole once.

    Reading everything once before any work also stops a run on a damaged file or non-finite values early.

    Args:
        volume: a :class:`~spoco_monai.data.volume_io.LazyVolume`, array or tensor (on any device).
        name: what the message calls the volume, e.g. its path.

    Returns:
        ``(mean, std)`` (float64 sums, population standard deviation), as MONAI's ``NormalizeIntensity`` uses.

    Raises:
        UnreadableVolumeError: a file cannot be read to the end (truncated or corrupt).
        ValueError: the volume holds NaN or infinite values.
    """
    statistics = volume_mean_std(volume.detach().cpu() if isinstance(volume, torch.Tensor) else volume)
    if not all(np.isfinite(value) for value in statistics):
        raise ValueError(f"{name} holds NaN or infinite values; expected finite intensities (fix or mask them first).")
    return statistics


def intensity_threshold(volume: Any, has_channels: bool, max_samples: int = 2**22) -> float:
    """Otsu threshold of the image's intensity (mean over channels), from at most ``max_samples`` voxels.

    A large volume is read on a regular grid of every k-th voxel along each axis, so the threshold costs a
    fraction of one pass over the data.
    """
    spatial = tuple(volume.shape[1:] if has_channels else volume.shape)
    step = max(1, int(np.ceil((np.prod(spatial) / max_samples) ** (1 / len(spatial)))))
    grid = tuple(slice(None, None, step) for _ in spatial)
    sample = volume[(slice(None), *grid)] if has_channels else volume[grid][None]
    sample = sample.detach().cpu().numpy() if isinstance(sample, torch.Tensor) else np.asarray(sample)
    values = sample.astype(np.float32).mean(axis=0)
    return float(threshold_otsu(values)) if values.min() < values.max() else float(values.min())


def resolve_device(network: Callable[[torch.Tensor], torch.Tensor], device: torch.device | None) -> torch.device:
    """``device``, or else the device of the network's parameters (CPU for a network without any)."""
    if device is not None:
        return device
    parameters = network.parameters() if isinstance(network, nn.Module) else iter(())
    return next((p.device for p in parameters), torch.device("cpu"))


def check_network(
    network: Callable[[torch.Tensor], torch.Tensor], channels: int, dims: int, in_channels: int | None
) -> None:
    """Raise if the network's first convolution has another dimensionality, or it expects other channels.

    Args:
        network: the network; modules without convolutions (and plain callables) are not checked.
        channels: the image's channels.
        dims: the image's spatial dimensions.
        in_channels: expected channels; ``None`` to read them from the first convolution.

    Raises:
        ValueError: naming both dimensionalities or channel counts.
    """
    modules = network.modules() if isinstance(network, nn.Module) else iter(())
    first = next((m for m in modules if isinstance(m, _CONVOLUTIONS)), None)
    if first is not None and len(first.kernel_size) != dims:
        raise ValueError(
            f"the network's first convolution is {len(first.kernel_size)}D but roi_size has {dims} axes."
        )
    expected = in_channels if in_channels is not None else (first.in_channels if first is not None else None)
    if expected is not None and expected != channels:
        raise ValueError(f"the network expects {expected} input channels, the image has {channels}.")


def _network_fingerprint(network: Callable[[torch.Tensor], torch.Tensor]) -> str:
    if not isinstance(network, nn.Module):
        return type(network).__name__
    digest = hashlib.sha1()
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
