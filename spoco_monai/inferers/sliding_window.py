"""A MONAI ``Inferer`` that turns a batch of images into instance labels by sliding-window SPOCO inference."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type
from torch import nn

from .block_grid import scan_interval, whole_image_window, window_starts
from .block_prediction import image_statistics, normalised, resolve_device
from .segment_volume import segment_volume
from .settings import SegmentationSettings
from .window_blending import blend_windows

INFERER_OUTPUTS = ("labels", "affinities", "embeddings")


class SpocoSlidingWindowInferer(Inferer):
    """Sliding-window inference whose output is instance labels (or blended affinities / embeddings).

    Usable wherever MONAI expects an ``Inferer`` (``SupervisedEvaluator``, bundle configs). Labels come
    from :func:`~spoco_monai.inferers.segment_volume` applied to every image of the batch with ``settings``,
    so a large image is processed block by block with bounded memory and stitched across blocks, and an image
    gives the labels it gives through :func:`~spoco_monai.inferers.segment_volume` and the command line.

    Args:
        settings: the segmentation settings (window, overlap, blocks, blending, clustering, foreground,
            normalisation, device).
        output: ``"labels"`` -> ``(B, 1, *S)`` int64; ``"affinities"`` -> ``(B, len(offsets), *S)`` float32
            blended per-window affinities; ``"embeddings"`` -> ``(B, E, *S)`` float32 blended embeddings. With
            ``settings.logit_channel`` (a foreground or localisation channel), affinities and embeddings get its
            blended probability as one more, last channel.
        progress: show progress bars per image.

    Raises:
        ValueError: for an unknown ``output``, or ``"embeddings"`` with ``settings.test_time_flips``.
        TypeError: if ``settings`` is not a :class:`~spoco_monai.inferers.SegmentationSettings`.
    """

    def __init__(self, settings: SegmentationSettings, output: str = "labels", progress: bool = False) -> None:
        if not isinstance(settings, SegmentationSettings):
            raise TypeError(f"settings must be a SegmentationSettings, got {type(settings).__name__}.")
        if output not in INFERER_OUTPUTS:
            raise ValueError(f"output must be one of {INFERER_OUTPUTS}, got {output!r}.")
        if output == "embeddings" and settings.test_time_flips:
            raise ValueError(
                "output 'embeddings' with test_time_flips: the embeddings of mirrored passes cannot be averaged; "
                "use output 'affinities' or settings with test_time_flips False."
            )
        self.settings = settings
        self.output = output
        self.progress = progress

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Infer a batch.

        Args:
            inputs: ``(B, C, *S)`` images.
            network: maps ``(B, C, *roi_size)`` windows to ``(B, E, *roi_size)`` embeddings; extra ``args`` and
                ``kwargs`` are passed on to it.

        Returns:
            ``(B, 1, *S)`` int64 labels, or ``(B, K, *S)`` affinities / ``(B, E, *S)`` embeddings (float32),
            on ``inputs``' device (a ``MetaTensor`` with ``inputs``' metadata when ``inputs`` is one).

        Raises:
            ValueError: if ``inputs`` is not ``(B, C, *S)`` with ``len(roi_size)`` spatial axes.
        """
        dims = self.settings.spatial_dims
        if inputs.ndim != dims + 2:
            raise ValueError(f"inputs must have shape (B, C, *S) with {dims} spatial axes, got {tuple(inputs.shape)}.")
        predictor = functools.partial(network, *args, **kwargs) if args or kwargs else network
        outputs = torch.stack([self._infer_one(torch.as_tensor(image), predictor) for image in inputs])
        # like MONAI's sliding-window inferer: a MetaTensor input gives a MetaTensor output with its metadata
        return convert_to_dst_type(outputs, inputs, dtype=outputs.dtype)[0]

    def _infer_one(self, image: torch.Tensor, network: Any) -> torch.Tensor:
        settings = self.settings
        if self.output == "labels":
            labels = segment_volume(image, network, settings, progress=self.progress)
            return torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(image.device)[None]
        device = resolve_device(network, settings.device)
        roi_size = whole_image_window(image.shape[1:], settings.roi_size, settings.whole_image_max_voxels)
        steps = scan_interval(roi_size, settings.overlap)
        starts = [window_starts(s, r, t) for s, r, t in zip(image.shape[1:], roi_size, steps)]
        statistics = image_statistics(image) if settings.normalize else None
        with torch.no_grad():
            blended = blend_windows(
                normalised(image.to(device=device, dtype=torch.float32), statistics), network, roi_size, starts,
                output=self.output, offsets=settings.offsets, affinity_delta_dist=settings.affinity_delta_dist,
                sw_batch_size=settings.sw_batch_size, sigma_scale=settings.sigma_scale,
                foreground_channel=settings.logit_channel, test_time_flips=settings.test_time_flips,
            )
        return blended.to(image.device)
