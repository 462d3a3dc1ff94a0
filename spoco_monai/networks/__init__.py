"""networks: the embedding network, MONAI's UNet with an optional narrow full-resolution head."""

from __future__ import annotations

from spoco_monai.networks.embedding_unet import EmbeddingUNet

__all__ = ["EmbeddingUNet"]
