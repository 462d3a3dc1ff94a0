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
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.data import MetaTensor

from spoco_monai.transforms.label_tensor import label_tensor

__all__ = [
    "BACKGROUND_ANNOTATION",
    "annotator_generator",
    "check_label_ids",
    "chosen_count",
    "choose_objects",
    "label_identity",
    "label_ids",
]

#: Value of a background click or stroke in an annotation image.
BACKGROUND_ANNOTATION = -1


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
