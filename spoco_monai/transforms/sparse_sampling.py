"""Simulated sparse object annotation (SPOCO@p): keep a fixed, seeded subset of each image's objects."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged, MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from spoco_monai.transforms.label_tensor import label_tensor
from spoco_monai.transforms.simulated_annotator import (
    check_annotator_settings,
    check_label_ids,
    choose_objects,
    chosen_count,
    label_identity,
)
from spoco_monai.transforms.sparse_manifest import SparseAnnotationManifest

__all__ = ["SparseInstanceSampling", "SparseInstanceSamplingd", "KEPT_IDS_META_KEY", "IDENTITY_META_KEY"]

KEPT_IDS_META_KEY = "spoco_kept_ids"
IDENTITY_META_KEY = "spoco_identity"


class SparseInstanceSampling(Transform):
    """Turn dense instance labels into sparse positive-unlabeled labels, as an annotator of a fraction p would.

    For every label image with K objects (ids > 0 other than ``background_id``) it keeps ``round(p * K)``
    of them, rounded half up and at least one when K > 0. Kept objects keep their ids; the other objects
    and the background become 0 (unlabeled); -1 (ignore) stays -1. This is the SPOCO@p setting of Wolny
    et al., "Sparse Object-level Supervision for Instance Segmentation with Pixel Embeddings", CVPR 2022.

    The subset is a pure function of ``(seed, identity, set of ids)``: every object ``c`` gets the key
    ``blake2b(f"{seed}\\0{identity}\\0{c}")`` and the ``round(p * K)`` objects with the smallest keys are kept.
    Hence the subset is the same in every epoch, data-loader worker, process and distributed rank, does not
    depend on NumPy/PyTorch random streams, and grows monotonically with ``fraction`` (the objects kept at
    p = 0.1 are among those kept at p = 0.4). The transform is deliberately not ``Randomizable``: it never
    consumes the pipeline's random state and may be cached (e.g. by ``CacheDataset``).

    The identity of an image is the ``identity`` given with it, otherwise the file name (``os.path.basename``,
    without folders) of the label MetaTensor's ``meta["filename_or_obj"]``, so that the subset does not change
    when the data set moves. Two files with the same name in different folders then share an identity; give
    them unique identities (the manifest refuses conflicting entries).

    Results are recorded:
        - in the meta data of a MetaTensor label: ``meta["spoco_kept_ids"]`` is the JSON string of the
          ascending kept ids (a string, so that batches of images with different counts still collate;
          ``json.loads`` gives the list) and ``meta["spoco_identity"]`` the identity;
        - with ``manifest_path``, in the JSON manifest ``{identity: [kept ids], ...}`` (see
          :class:`SparseAnnotationManifest`: locked, merged and replaced atomically, safe for parallel workers).

    Dense supervision (SPOCO without @p): ``fraction=1.0, keep_background=True`` keeps every object and
    makes the background an object of its own. A ``background_id`` of 0 gets the new id ``max id + 1``;
    a positive ``background_id`` is already an id of its own and is kept as it is. The new id is part of
    the recorded kept ids. ``keep_background`` with ``fraction < 1`` is rejected, because in the sparse
    setting the background is unlabeled by definition.

    Label arrays (numpy, torch or MetaTensor, any shape such as (1, *S), on any device) keep their type,
    dtype and device; floating labels (as ``LoadImaged`` gives by default) must hold integral values.

    Args:
        fraction: p, the fraction of objects to keep, in (0, 1].
        seed: selects the simulated annotation; the same seed always gives the same subsets.
        keep_background: with ``fraction=1.0``, label the background as an object of its own (dense mode).
        background_id: id of the background in the dense labels, >= 0; never counted among the objects.
        manifest_path: optional JSON file recording the kept ids of every image.

    Raises:
        TypeError: if ``fraction``, ``seed`` or ``background_id`` have the wrong type, or a label is boolean.
        ValueError: if ``fraction`` is outside (0, 1], ``background_id`` is negative, ``keep_background`` is
            used with ``fraction < 1``, a label holds non-integral values or ids below -1, or an image has no
            identity when one is needed (``fraction < 1`` or a manifest).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        fraction: float,
        seed: int = 0,
        keep_background: bool = False,
        background_id: int = 0,
        manifest_path: str | os.PathLike | None = None,
    ) -> None:
        check_annotator_settings(fraction, seed, background_id)
        if keep_background and fraction != 1.0:
            raise ValueError(
                f"keep_background=True means dense supervision and requires fraction=1.0, found fraction={fraction}."
            )
        self.fraction = float(fraction)
        self.seed = seed
        self.keep_background = keep_background
        self.background_id = background_id
        self.manifest = SparseAnnotationManifest(manifest_path) if manifest_path is not None else None

    def describe(self) -> str:
        """One line for the user: whether the labels are used as annotated or an annotator is simulated."""
        if self.fraction == 1.0:
            dense = " (dense: the background is an object of its own)" if self.keep_background else ""
            return f"labels used as annotated: every object (id > 0) of every label image is trained on{dense}"
        return (
            f"simulated annotator: {self.fraction:g} of each label image's objects are kept (seed {self.seed}), the "
            "others become unlabeled; this is for experiments on dense labels: set sparse_fraction 1.0 to train on "
            "real sparse annotations"
        )

    def kept_count(self, num_objects: int) -> int:
        """Number of objects kept out of ``num_objects``: p * K rounded half up, at least 1 when K > 0."""
        return chosen_count(self.fraction, num_objects)

    def __call__(self, label: NdarrayOrTensor, identity: str | None = None) -> NdarrayOrTensor:
        """Sparsify one label image (any shape) and record its kept ids; returns the same type as ``label``.

        Args:
            label: the dense instance label.
            identity: the image's identity; None takes the file name of a MetaTensor label.
        """
        identity = self._identity(label) if identity is None else identity
        values = label_tensor(label)
        check_label_ids(values)
        ids = torch.unique(values)
        object_ids = [int(i) for i in ids[(ids > 0) & (ids != self.background_id)].tolist()]
        kept = choose_objects(object_ids, self.fraction, self.seed, identity)
        kept_mask = torch.isin(values, torch.as_tensor(kept, dtype=values.dtype, device=values.device))
        sparse = torch.where(kept_mask | (values == -1), values, 0)
        if self.keep_background and bool((values == self.background_id).any()):
            background = self.background_id if self.background_id > 0 else max(int(ids.max()), 0) + 1
            sparse = torch.where(values == self.background_id, background, sparse)
            kept = sorted(kept + [background])
        out = convert_to_dst_type(sparse, label)[0]
        if isinstance(out, MetaTensor):
            out.meta[KEPT_IDS_META_KEY] = json.dumps(kept)
            if identity is not None:
                out.meta[IDENTITY_META_KEY] = identity
        if self.manifest is not None and identity is not None:
            self.manifest.record(identity, kept)
        return out

    def _identity(self, label: NdarrayOrTensor) -> str | None:
        """The file name of ``label``, or None where it has none and none is needed."""
        return label_identity(label, required=self.fraction < 1.0 or self.manifest is not None)


class SparseInstanceSamplingd(MapTransform):
    """Dictionary version of :class:`SparseInstanceSampling`.

    The identity of ``data[key]`` is ``str(data[id_key])`` when ``id_key`` is given, otherwise the label's
    file name (see :class:`SparseInstanceSampling`).

    Args:
        keys: keys of the label images to sparsify.
        fraction: p, the fraction of objects to keep, in (0, 1].
        seed: selects the simulated annotation; the same seed always gives the same subsets.
        keep_background: with ``fraction=1.0``, label the background as an object of its own (dense mode).
        background_id: id of the background in the dense labels, >= 0; never counted among the objects.
        manifest_path: optional JSON file recording the kept ids of every image.
        id_key: optional key of ``data`` holding each image's identity (e.g. a case name).
        allow_missing_keys: don't raise if a key in ``keys`` is missing.

    Raises:
        TypeError, ValueError: as :class:`SparseInstanceSampling`; ValueError also when ``id_key`` is missing
            from the data.
    """

    backend = SparseInstanceSampling.backend

    def __init__(
        self,
        keys: KeysCollection,
        fraction: float,
        seed: int = 0,
        keep_background: bool = False,
        background_id: int = 0,
        manifest_path: str | os.PathLike | None = None,
        id_key: Hashable | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.sampling = SparseInstanceSampling(fraction, seed, keep_background, background_id, manifest_path)
        self.id_key = id_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.sampling(d[key], self._identity(d))
        return d

    def _identity(self, data: Mapping[Hashable, Any]) -> str | None:
        """``str(data[id_key])``, or None without ``id_key`` (the label's file name is then used)."""
        if self.id_key is None:
            return None
        if self.id_key not in data:
            raise ValueError(f"id_key {self.id_key!r} is missing from the data, found keys {list(data)}.")
        return str(data[self.id_key])

    def check_manifest(
        self, items: Sequence[Mapping], reader: Any = None, prepare: Sequence[Callable] | None = None
    ) -> Sequence[Mapping]:
        """Say how the labels are used, and sparsify now the items the manifest already records, so that a mismatch
        stops a run at start-up.

        A manifest written with other settings (an output folder reused with another seed or fraction) is then
        reported by the bundle's start-up checks, before any data loader, thread or network exists, instead of
        inside the data pipeline. Only the items whose identity (``id_key`` or file name) the manifest holds are read.

        Args:
            items: datalist items with the label paths under ``keys``.
            reader: the reader ``LoadImaged`` uses for the labels (as in the training pipeline), when ``prepare`` is
                None.
            prepare: the training pipeline's transforms before this sampling (loading, and an annotation such as
                masks grown from clicks), so that the labels checked are those the sampling sees in training; None
                loads the labels alone.

        Returns:
            ``items``, unchanged.

        Raises:
            ValueError: the manifest records other kept ids for one of the items (see
                :class:`SparseAnnotationManifest`).
        """
        logging.getLogger(__name__).info(self.sampling.describe())
        if self.sampling.manifest is None:
            return items
        recorded = self.sampling.manifest.read()
        if not recorded:
            return items
        if prepare is None:
            prepare = [LoadImaged(keys=self.keys, reader=reader, image_only=True, allow_missing_keys=True)]
        pipeline = Compose(list(prepare))
        for item in items:
            if self.id_key is not None and self.id_key in item:
                identities = {str(item[self.id_key])}
            else:
                identities = {os.path.basename(str(item[key])) for key in self.keys if key in item}
            if identities & recorded.keys():
                self(pipeline(dict(item)))
        return items
