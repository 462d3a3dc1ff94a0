"""What the simulated annotators share: the image identity, the seeded choice of objects and the annotation images.

A simulated annotation must be a pure function of ``(seed, identity, label)``: the same in every epoch, data-loader
worker, process and distributed rank, and independent of NumPy/PyTorch global random streams (see
:class:`~spoco_monai.transforms.SparseInstanceSampling`). The helpers here give every annotator that property:
objects are ranked by a short hash of ``(seed, identity, id)``, and the random choices inside an object (where to
click, where a stroke goes) come from a NumPy generator seeded by a hash of ``(seed, identity, purpose, id)``.

Annotation images (points and scribbles) use one convention, which differs from the label convention only in
what -1 means:

- ``k > 0``: a click or stroke on object ``k``;
- ``0``: nothing annotated here;
- ``-1`` (:data:`BACKGROUND_ANNOTATION`): a click or stroke on the background.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from spoco_monai.transforms.annotation_manifest import AnnotationManifest
from spoco_monai.transforms.label_tensor import label_tensor

__all__ = [
    "ANNOTATION_META_KEY",
    "BACKGROUND_ANNOTATION",
    "SimulatedAnnotator",
    "SimulatedAnnotatord",
    "annotator_generator",
    "check_annotator_settings",
    "check_label_ids",
    "chosen_count",
    "choose_objects",
    "label_identity",
    "label_ids",
    "spatial_ids",
]

#: Value of a background click or stroke in an annotation image.
BACKGROUND_ANNOTATION = -1
#: MetaTensor meta key of an annotation's record (a JSON string, so that batches of images still collate)
ANNOTATION_META_KEY = "spoco_annotation"


def chosen_count(fraction: float, num_objects: int) -> int:
    """Number of objects an annotator of ``fraction`` marks out of ``num_objects``: rounded half up, >= 1 when K > 0."""
    if num_objects == 0:
        return 0
    # Rounding p * K to 9 decimals first removes float error such as 0.29 * 50 = 14.499999999999998.
    return max(1, math.floor(round(fraction * num_objects, 9) + 0.5))


def _key(seed: int, identity: str | None, *parts: object) -> bytes:
    text = "\0".join([str(seed), str(identity), *(str(part) for part in parts)])
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def choose_objects(object_ids: Sequence[int], fraction: float, seed: int, identity: str | None) -> list[int]:
    """The ascending ids an annotator of ``fraction`` marks: those with the smallest ``blake2b(seed, identity, id)``.

    The choice is nested across fractions (the objects chosen at 0.1 are among those chosen at 0.4) and
    independent of any library's random stream. All objects are chosen when the count says so, without hashing.
    """
    count = chosen_count(fraction, len(object_ids))
    if count == len(object_ids):
        return sorted(object_ids)
    # no purpose part in the key: every annotator of one seed marks the same objects as the sparse annotation
    ranked = sorted(object_ids, key=lambda i: _key(seed, identity, i))
    return sorted(ranked[:count])


def annotator_generator(seed: int, identity: str | None, purpose: str, object_id: int) -> np.random.Generator:
    """A NumPy generator for one random choice of one annotator about one object (or the background, id 0)."""
    return np.random.default_rng(int.from_bytes(_key(seed, identity, purpose, object_id), "little"))


def label_identity(label: NdarrayOrTensor, required: bool, what: str = "the label") -> str | None:
    """The file name (without folders) of a MetaTensor label, so that an annotation survives moving the data set.

    Args:
        label: the label image.
        required: raise when there is no file name (otherwise return None).
        what: how the error names the transform's identity argument.

    Raises:
        ValueError: ``required`` and the label has no file name.
    """
    filename = label.meta.get("filename_or_obj") if isinstance(label, MetaTensor) else None
    if filename not in (None, ""):
        return os.path.basename(str(filename))
    if required:
        raise ValueError(
            f"{what} has no identity: expected a MetaTensor with meta['filename_or_obj'] (e.g. from "
            f"LoadImaged) or an identity (`id_key` of the dictionary transform), found {type(label).__name__} "
            "without a file name."
        )
    return None


def check_annotator_settings(fraction: float, seed: int, background_id: int) -> None:
    """Check the settings every simulated annotator shares.

    Raises:
        TypeError: ``fraction`` not a real number, ``seed`` or ``background_id`` not an int.
        ValueError: ``fraction`` outside (0, 1], ``background_id`` negative.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, Real):
        raise TypeError(f"fraction must be a real number in (0, 1], found {type(fraction).__name__}.")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], found {fraction}.")
    for name, value in (("seed", seed), ("background_id", background_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, found {type(value).__name__}.")
    if background_id < 0:
        raise ValueError(f"background_id must be >= 0 (-1 means ignore), found {background_id}.")


def check_label_ids(values: torch.Tensor) -> None:
    """Check that a label tensor holds integer ids >= -1.

    Raises:
        TypeError: a boolean label.
        ValueError: non-integral floating values or ids below -1.
    """
    if values.dtype == torch.bool:
        raise TypeError("label must hold integer ids (>= -1), found a boolean array.")
    if values.is_floating_point() and not bool(torch.equal(values, values.round())):
        raise ValueError("label must hold integer ids (>= -1), found non-integral floating values.")
    if values.numel() and int(values.min()) < -1:
        raise ValueError(f"label ids must be >= -1 (-1 = ignore), found {int(values.min())}.")


def label_ids(label: NdarrayOrTensor) -> np.ndarray:
    """The checked ids of a label image (any shape) as an int64 numpy array (see :func:`check_label_ids`)."""
    values = label_tensor(label)
    check_label_ids(values)
    return values.detach().cpu().numpy().astype(np.int64)


def spatial_ids(label: NdarrayOrTensor) -> np.ndarray:
    """The checked ids of a channel-first label ``(1, *S)`` as an int64 ``S`` numpy array.

    Raises:
        ValueError: a label that is not ``(1, *S)`` with 2 or 3 spatial axes; see also :func:`check_label_ids`.
    """
    ids = label_ids(label)
    if ids.ndim not in (3, 4) or ids.shape[0] != 1:
        raise ValueError(
            f"expected a channel-first label (1, H, W) or (1, D, H, W), found shape {tuple(ids.shape)}."
        )
    return ids[0]


class SimulatedAnnotator(Transform):
    """Base of the annotators that mark a seeded subset of a dense label's objects (points, scribbles, boxes).

    For every label image with K objects (ids > 0 other than ``background_id``) the annotator marks
    ``round(fraction * K)`` of them (at least one when K > 0), chosen by :func:`choose_objects` (the same objects
    as :class:`~spoco_monai.transforms.SparseInstanceSampling` with the same seed and fraction). What it marks
    depends only on ``(seed, identity, label)``. The identity is the one given with the label, otherwise the
    label's file name (:func:`label_identity`); it is needed when ``fraction < 1``, when the annotation draws
    random numbers, or with a manifest.

    Results are recorded in the MetaTensor meta data of the output under ``"spoco_annotation"`` (a JSON string)
    and, with ``manifest_path``, in an :class:`~spoco_monai.transforms.AnnotationManifest`.

    Subclasses implement :meth:`annotate` and say with :attr:`draws_random_numbers` whether it uses its generators.

    Args:
        fraction: fraction of the objects to mark, in (0, 1].
        seed: selects the simulated annotation; the same seed always gives the same annotation.
        background_id: id of the background in the dense labels, >= 0; never counted among the objects.
        manifest_path: optional JSON file recording the annotation of every image.

    Raises:
        TypeError: ``fraction``, ``seed`` or ``background_id`` of the wrong type.
        ValueError: ``fraction`` outside (0, 1] or a negative ``background_id``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]
    #: whether :meth:`annotate` draws random numbers (then every image needs an identity)
    draws_random_numbers = False
    #: whether :meth:`annotate` gives an image of the label's spatial shape (returned like the label, ``(1, *S)``)
    output_is_image = True

    def __init__(
        self,
        fraction: float = 1.0,
        seed: int = 0,
        background_id: int = 0,
        manifest_path: str | os.PathLike | None = None,
    ) -> None:
        check_annotator_settings(fraction, seed, background_id)
        self.fraction = float(fraction)
        self.seed = seed
        self.background_id = background_id
        self.manifest = AnnotationManifest(manifest_path) if manifest_path is not None else None

    def annotate(self, ids: np.ndarray, chosen: list[int], identity: str | None) -> tuple[np.ndarray, Any]:
        """Mark the ``chosen`` objects of the ``S`` id array; return the output array and its JSON manifest entry."""
        raise NotImplementedError

    def generator(self, identity: str | None, purpose: str, object_id: int) -> np.random.Generator:
        """The generator of one random choice (``purpose``) about one object (id 0: the background)."""
        return annotator_generator(self.seed, identity, purpose, object_id)

    def __call__(self, label: NdarrayOrTensor, identity: str | None = None) -> Any:
        """Annotate one channel-first label ``(1, *S)``; see the subclass for the output.

        Args:
            label: the dense instance label.
            identity: the image's identity; None takes the file name of a MetaTensor label.
        """
        needs_identity = self.fraction < 1.0 or self.draws_random_numbers or self.manifest is not None
        identity = label_identity(label, needs_identity) if identity is None else identity
        ids = spatial_ids(label)
        present = np.unique(ids)
        object_ids = [int(i) for i in present[(present > 0) & (present != self.background_id)]]
        chosen = choose_objects(object_ids, self.fraction, self.seed, identity)
        annotation, entry = self.annotate(ids, chosen, identity)
        if self.manifest is not None and identity is not None:
            self.manifest.record(identity, entry)
        if not self.output_is_image:
            return annotation
        dtype = torch.int64 if isinstance(label, torch.Tensor) else np.int64
        out = convert_to_dst_type(annotation[None], label, dtype=dtype)[0]
        if isinstance(out, MetaTensor):
            out.meta[ANNOTATION_META_KEY] = json.dumps(entry)
        return out


class SimulatedAnnotatord(MapTransform):
    """Dictionary version of a :class:`SimulatedAnnotator`: annotate ``data[label_key]`` into ``data[output_key]``.

    The identity of an image is ``str(data[id_key])`` when ``id_key`` is given, otherwise the label's file name.

    Args:
        annotator: the array annotator.
        label_key: key of the dense label.
        output_key: key the annotation is written to (the label is left as it is).
        id_key: optional key of ``data`` holding each image's identity (e.g. a case name).
        allow_missing_keys: don't raise if ``label_key`` is missing.

    Raises:
        ValueError: ``id_key`` missing from the data.
    """

    def __init__(
        self,
        annotator: SimulatedAnnotator,
        label_key: Hashable = "label",
        output_key: Hashable = "points",
        id_key: Hashable | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(label_key, allow_missing_keys)
        self.annotator = annotator
        self.output_key = output_key
        self.id_key = id_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            identity = None
            if self.id_key is not None:
                if self.id_key not in d:
                    raise ValueError(f"id_key {self.id_key!r} is missing from the data, found keys {list(d)}.")
                identity = str(d[self.id_key])
            d[self.output_key] = self.annotator(d[key], identity)
        return d
