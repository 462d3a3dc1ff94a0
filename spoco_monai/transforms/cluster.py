"""Post-transforms turning embeddings into instance labels with the methods of ``spoco_monai.clustering``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, ensure_tuple_rep

from spoco_monai.clustering import (
    consistency_clustering,
    hdbscan_clustering,
    mean_shift_clustering,
    mutex_watershed,
)

CLUSTERING_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "mws": mutex_watershed,
    "hdbscan": hdbscan_clustering,
    "mean_shift": mean_shift_clustering,
    "consistency": consistency_clustering,
}
# methods that also need the teacher network's embeddings of a second view
TWO_VIEW_METHODS = ("consistency",)


class Cluster(Transform):
    """Cluster ``(E, *S)`` embeddings into ``(1, *S)`` int64 instance labels.

    Args:
        method: ``"mws"`` (:func:`~spoco_monai.clustering.mutex_watershed`), ``"hdbscan"``,
            ``"mean_shift"`` or ``"consistency"`` (needs ``teacher_embeddings`` at call time).
        **options: keyword options of the chosen clustering function (e.g. ``min_size``, ``bandwidth``,
            ``strides``, ``mask``), checked against its signature here.

    Raises:
        ValueError: for an unknown method.
        TypeError: for options the method does not take.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, method: str = "mws", **options: Any) -> None:
        if method not in CLUSTERING_METHODS:
            raise ValueError(f"method must be one of {sorted(CLUSTERING_METHODS)}, got {method!r}.")
        function = CLUSTERING_METHODS[method]
        n_inputs = 2 if method in TWO_VIEW_METHODS else 1
        try:
            inspect.signature(function).bind(*([None] * n_inputs), **options)
        except TypeError as error:
            raise TypeError(f"options {sorted(options)} do not fit method {method!r}: {error}.") from error
        self.method = method
        self.function = function
        self.options = options

    def __call__(
        self,
        embeddings: np.ndarray | torch.Tensor,
        teacher_embeddings: np.ndarray | torch.Tensor | None = None,
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Labels ``(1, *S)`` int64, of the input's type and device (MetaTensor metadata kept).

        Args:
            embeddings: ``(E, *S)`` embeddings.
            teacher_embeddings: ``(E, *S)`` embeddings of the second view, only for ``"consistency"``.
            mask: optional ``S`` foreground mask for this call, overriding a ``mask`` option.
        """
        two_view = self.method in TWO_VIEW_METHODS
        if two_view != (teacher_embeddings is not None):
            raise ValueError(
                f"method {self.method!r} {'needs' if two_view else 'takes no'} teacher embeddings, "
                f"got {'none' if teacher_embeddings is None else 'some'}."
            )
        inputs = (embeddings, teacher_embeddings) if two_view else (embeddings,)
        options = self.options if mask is None else {**self.options, "mask": mask}
        labels = self.function(*inputs, **options)
        return convert_to_dst_type(labels[None], dst=embeddings, dtype=torch.int64)[0]


class Clusterd(MapTransform):
    """Dictionary version of :class:`Cluster`: ``data[key]`` ``(E, *S)`` embeddings -> ``(1, *S)`` labels.

    Args:
        keys: keys of the embeddings to cluster.
        method: clustering method, see :class:`Cluster`.
        output_key: key(s) to write the labels to, one per key; None overwrites the embeddings.
        teacher_key: key(s) of the teacher embeddings of a second view, one per key; required by
            ``"consistency"`` and not accepted by the other methods.
        mask_key: key of a per-sample foreground mask, ``S`` or ``(1, *S)``, passed as ``mask``.
        allow_missing_keys: skip keys that are absent.
        **options: options of the clustering function, see :class:`Cluster`.

    Raises:
        ValueError: for an unknown method or a teacher key that the method does not match.
    """

    backend = Cluster.backend

    def __init__(
        self,
        keys: KeysCollection,
        method: str = "mws",
        output_key: str | Sequence[str] | None = None,
        teacher_key: str | Sequence[str] | None = None,
        mask_key: str | None = None,
        allow_missing_keys: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if mask_key is not None and "mask" in options:
            raise ValueError("give either mask_key or a fixed mask option, not both.")
        self.cluster = Cluster(method, **options)
        self.mask_key = mask_key
        if (method in TWO_VIEW_METHODS) != (teacher_key is not None):
            raise ValueError(
                f"method {method!r} {'needs' if method in TWO_VIEW_METHODS else 'takes no'} teacher_key, "
                f"got {teacher_key!r}."
            )
        self.output_keys = ensure_tuple_rep(output_key, len(self.keys))
        self.teacher_keys = ensure_tuple_rep(teacher_key, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, output_key, teacher_key in self.key_iterator(d, self.output_keys, self.teacher_keys):
            teacher = None if teacher_key is None else d[teacher_key]
            mask = None if self.mask_key is None else _spatial_mask(d[self.mask_key], d[key].shape[1:])
            d[key if output_key is None else output_key] = self.cluster(d[key], teacher, mask=mask)
        return d


def _spatial_mask(mask: np.ndarray | torch.Tensor, spatial_shape: Sequence[int]) -> np.ndarray | torch.Tensor:
    """Drop a leading channel of size 1 from a ``(1, *S)`` mask."""
    if mask.ndim == len(spatial_shape) + 1 and mask.shape[0] == 1:
        return mask[0]
    return mask
