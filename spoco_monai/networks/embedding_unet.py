"""MONAI's UNet whose full-resolution layers may be narrower than its outputs, for cheaper training steps."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import torch
from monai.networks.layers import Conv
from monai.networks.nets import UNet

__all__ = ["EmbeddingUNet"]


class EmbeddingUNet(UNet):
    """MONAI ``UNet``, optionally with ``head_channels`` full-resolution channels and a 1x1 convolution to the outputs.

    MONAI's UNet strides in its first unit, so its only full-resolution layers are the top of the decoder: a
    transposed convolution to ``out_channels`` and a residual unit from ``out_channels`` to ``out_channels``. Their
    cost grows with the square of the outputs, and the CPU convolution kernels work on blocks of 8 channels: a
    2D network with 17 outputs (16 embedding dimensions and a foreground logit) spends about 40% of its multiply-adds
    there. With ``head_channels`` the top of the decoder has that many channels and a 1x1 convolution maps them to
    the outputs; with 8, a training step of the 2D network costs about what the 3-class U-Net's does.

    With ``head_channels`` None the module is MONAI's ``UNet`` (the same layers and state-dict entries), so weights
    saved from a ``UNet`` load unchanged. With it, the outputs are an affine map of ``head_channels`` features: the
    embeddings then span at most that many dimensions.

    Args:
        spatial_dims, in_channels, out_channels, channels, strides: as MONAI ``UNet``.
        head_channels: channels of the full-resolution layers, a positive int (a multiple of the norm's groups for
            GroupNorm); None for MONAI's UNet.
        kwargs: further MONAI ``UNet`` arguments (``num_res_units``, ``norm``, ...).

    Raises:
        ValueError: if ``head_channels`` is not None nor a positive int.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        strides: Sequence[int],
        head_channels: int | None = None,
        **kwargs: Any,
    ) -> None:
        if head_channels is not None and (
            isinstance(head_channels, bool) or not isinstance(head_channels, Integral) or head_channels < 1
        ):
            raise ValueError(f"head_channels must be a positive int or None, found {head_channels!r}.")
        top_channels = out_channels if head_channels is None else int(head_channels)
        super().__init__(spatial_dims, in_channels, top_channels, channels, strides, **kwargs)
        self.out_channels = out_channels
        self.head_channels = head_channels
        self.head = None if head_channels is None else Conv[Conv.CONV, spatial_dims](top_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, out_channels, *S) of images ``x`` (B, in_channels, *S)."""
        # the UNet's own forward is its model; TorchScript (MONAI's ckpt_export) cannot call super()
        features = self.model(x)
        if self.head is None:
            return features
        return self.head(features)
