"""Post-transforms turning one image's network output into instance labels, as whole-volume inference does.

The clusterings and their options are those of :class:`~spoco_monai.inferers.SegmentationSettings`
(``spoco_monai.inferers.settings.CLUSTERINGS``), and the labels are computed by the same steps as
:func:`~spoco_monai.inferers.segment_volume` on an image the network sees in one window: the output's affinities
(with ``blend="affinities"``) or embeddings, the foreground, then the clustering of one block. So the transforms
run every clustering a bundle's ``segmentation`` entry names, with its options.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, ensure_tuple_rep

from spoco_monai.inferers.block_clustering import cluster_block
from spoco_monai.inferers.block_prediction import intensity_threshold
from spoco_monai.inferers.settings import SegmentationSettings
from spoco_monai.inferers.window_blending import window_predictions


class Cluster(Transform):
    """Cluster one image's network output ``(E, *S)`` into ``(1, *S)`` int64 instance labels.

    Args:
        settings: the clustering (``"mws"``, ``"watershed"``, ``"hdbscan"`` or ``"points"``) and its options, the
            offsets, the affinity kernel and the foreground, as for whole-volume inference; the window, block and
            device settings play no part.

    Raises:
        TypeError: ``settings`` is not a :class:`~spoco_monai.inferers.SegmentationSettings`.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, settings: SegmentationSettings) -> None:
        if not isinstance(settings, SegmentationSettings):
            raise TypeError(f"settings must be a SegmentationSettings, got {type(settings).__name__}.")
        self.settings = settings

    def __call__(
        self, output: np.ndarray | torch.Tensor, image: np.ndarray | torch.Tensor | None = None
    ) -> np.ndarray | torch.Tensor:
        """Labels ``(1, *S)`` int64, of the output's type and device (MetaTensor metadata kept).

        Args:
            output: ``(E, *S)`` embeddings; ``(E + 1, *S)`` with ``foreground="network"`` or
                ``clustering="points"``, the last channel a foreground or localisation logit.
            image: ``(C, *S)`` image, needed by ``foreground="intensity"`` (above its Otsu threshold).

        Raises:
            ValueError: ``output`` has not ``settings.spatial_dims`` spatial axes, or the intensity foreground has
                no image.
        """
        settings = self.settings
        values = convert_to_tensor(output, track_meta=False).detach().cpu().float()
        if values.ndim != settings.spatial_dims + 1:
            raise ValueError(
                f"output must be (E, *S) with {settings.spatial_dims} spatial axes (the settings' roi_size), got "
                f"shape {tuple(values.shape)}."
            )
        prediction = window_predictions(
            values[None], settings.blend, settings.offsets, settings.affinity_delta_dist, None,
            foreground_channel=settings.logit_channel,
        )[0]
        if settings.foreground == "intensity":
            if image is None:
                raise ValueError("foreground 'intensity' needs the image: give it (image_key for Clusterd).")
            image = convert_to_tensor(image, track_meta=False).detach().cpu().float()
            bright = image.mean(dim=0, keepdim=True) > intensity_threshold(image, has_channels=True)
            prediction = torch.cat([prediction, bright.to(prediction)])
        labels = np.maximum(cluster_block(prediction, settings), 0).astype(np.int64)
        return convert_to_dst_type(labels[None], dst=output, dtype=torch.int64)[0]


class Clusterd(MapTransform):
    """Dictionary version of :class:`Cluster`: ``data[key]`` ``(E, *S)`` network output -> ``(1, *S)`` labels.

    Args:
        keys: keys of the network outputs to cluster.
        settings: see :class:`Cluster`.
        output_key: key(s) to write the labels to, one per key; None replaces the network output.
        image_key: key of the image, for ``foreground="intensity"``.
        allow_missing_keys: skip keys that are absent.
    """

    backend = Cluster.backend

    def __init__(
        self,
        keys: KeysCollection,
        settings: SegmentationSettings,
        output_key: str | Sequence[str] | None = None,
        image_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.cluster = Cluster(settings)
        self.image_key = image_key
        self.output_keys = ensure_tuple_rep(output_key, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = None if self.image_key is None else d[self.image_key]
        for key, output_key in self.key_iterator(d, self.output_keys):
            d[key if output_key is None else output_key] = self.cluster(d[key], image)
        return d
