"""A MONAI ``Inferer`` that turns a batch of images into instance labels by sliding-window SPOCO inference."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type
from torch import nn

from ..clustering import default_offsets
from .block_grid import scan_interval, window_starts
from .segment_volume import resolve_device, segment_volume, whole_image_window
from .window_blending import blend_windows

INFERER_OUTPUTS = ("labels", "affinities", "embeddings")


class SpocoSlidingWindowInferer(Inferer):
    """Sliding-window inference whose output is instance labels (or blended affinities / embeddings).

    Usable wherever MONAI expects an ``Inferer`` (``SupervisedEvaluator``, bundle configs). Labels come
    from :func:`~spoco_monai.inferers.segment_volume` applied to every image of the batch, so a large
    image is processed block by block with bounded memory and stitched across blocks.

    Args:
        roi_size: sliding-window size per spatial axis.
        sw_batch_size: windows per forward pass.
        overlap: overlap of neighbouring windows, in [0, 1).
        mode: ``"affinities"`` (blend per-window affinities, Mutex Watershed) or ``"labels"`` (blend
            embeddings, cluster per block); see :mod:`spoco_monai.inferers.segment_volume`.
        output: ``"labels"`` -> ``(B, 1, *S)`` int64; ``"affinities"`` -> ``(B, len(offsets), *S)`` float32
            blended per-window affinities; ``"embeddings"`` -> ``(B, E, *S)`` float32 blended embeddings.
        offsets: Mutex Watershed offsets (default :func:`~spoco_monai.clustering.default_offsets`).
        delta_dist: ``delta_d`` of the affinity formula.
        clustering: ``"mws"`` or ``"hdbscan"`` (``"labels"`` mode only).
        clustering_kwargs: extra keyword arguments of the clustering function.
        block_shape: approximate block core size for labels (``None``: about 2^21 voxels per block).
        halo: minimum block halo in voxels.
        iou_threshold: IoU above which labels of neighbouring blocks are merged, in [0.5, 1).
        sigma_scale: Gaussian sigma of the window importance map relative to the window size.
        device: device for the network input and blending (``None``: the network's device).
        progress: show a progress bar per image.
        foreground: ``None``, ``"network"`` (the network's last channel is a foreground logit) or
            ``"intensity"`` (Otsu threshold of the image); the clustering labels only foreground voxels. See
            :func:`~spoco_monai.inferers.segment_volume`. With ``"network"``, the ``"affinities"`` and
            ``"embeddings"`` outputs get the blended foreground probability as one more, last channel.
        whole_image_max_voxels: images up to this size (rounded up to a multiple of 32 per axis) go through
            the network as one window; ``None`` always uses ``roi_size`` windows.

    Raises:
        ValueError: for an unknown ``output`` (other options are checked by :func:`segment_volume`).
    """

    def __init__(
        self,
        roi_size: Sequence[int],
        sw_batch_size: int = 1,
        overlap: float = 0.5,
        mode: str = "affinities",
        output: str = "labels",
        offsets: Sequence[Sequence[int]] | None = None,
        delta_dist: float = 2.0,
        clustering: str = "mws",
        clustering_kwargs: dict[str, Any] | None = None,
        block_shape: Sequence[int] | int | None = None,
        halo: Sequence[int] | int | None = None,
        iou_threshold: float = 0.5,
        sigma_scale: float = 0.125,
        device: str | torch.device | None = None,
        progress: bool = False,
        foreground: str | None = None,
        whole_image_max_voxels: int | None = None,
    ) -> None:
        if output not in INFERER_OUTPUTS:
            raise ValueError(f"output must be one of {INFERER_OUTPUTS}, got {output!r}.")
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}.")
        self.roi_size = tuple(int(r) for r in roi_size)
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.mode = mode
        self.output = output
        self.offsets = offsets
        self.delta_dist = delta_dist
        self.clustering = clustering
        self.clustering_kwargs = clustering_kwargs
        self.block_shape = block_shape
        self.halo = halo
        self.iou_threshold = iou_threshold
        self.sigma_scale = sigma_scale
        self.device = device
        self.progress = progress
        self.foreground = foreground
        self.whole_image_max_voxels = whole_image_max_voxels

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
        if inputs.ndim != len(self.roi_size) + 2:
            raise ValueError(
                f"inputs must have shape (B, C, *S) with {len(self.roi_size)} spatial axes, got {tuple(inputs.shape)}."
            )
        predictor = functools.partial(network, *args, **kwargs) if args or kwargs else network
        outputs = torch.stack([self._infer_one(torch.as_tensor(image), predictor) for image in inputs])
        # like MONAI's sliding-window inferer: a MetaTensor input gives a MetaTensor output with its metadata
        return convert_to_dst_type(outputs, inputs, dtype=outputs.dtype)[0]

    def _infer_one(self, image: torch.Tensor, network: Any) -> torch.Tensor:
        if self.output == "labels":
            labels = segment_volume(
                image, network, self.roi_size, overlap=self.overlap, block_shape=self.block_shape, mode=self.mode,
                device=self.device, halo=self.halo, sw_batch_size=self.sw_batch_size, offsets=self.offsets,
                delta_dist=self.delta_dist, clustering=self.clustering, clustering_kwargs=self.clustering_kwargs,
                iou_threshold=self.iou_threshold, sigma_scale=self.sigma_scale, progress=self.progress,
                foreground=self.foreground, whole_image_max_voxels=self.whole_image_max_voxels,
            )
            return torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(image.device)[None]
        device = resolve_device(network, self.device)
        roi_size = whole_image_window(image.shape[1:], self.roi_size, self.whole_image_max_voxels)
        steps = scan_interval(roi_size, self.overlap)
        starts = [window_starts(s, r, t) for s, r, t in zip(image.shape[1:], roi_size, steps)]
        offsets = default_offsets(len(self.roi_size)) if self.offsets is None else self.offsets
        with torch.no_grad():
            blended = blend_windows(
                image.to(device=device, dtype=torch.float32), network, roi_size, starts, output=self.output,
                offsets=offsets, delta_dist=self.delta_dist, sw_batch_size=self.sw_batch_size,
                sigma_scale=self.sigma_scale, foreground_channel=self.foreground == "network",
            )
        return blended.to(image.device)
