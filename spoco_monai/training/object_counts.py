"""Count the objects a fine-tune's starting and trained weights find in the user's own images, so that a fine-tune
that merges objects shows.

A few annotated objects leave most of a volume unlabeled, and nothing in the sparse loss keeps two neighbouring
objects apart when nobody annotated either of them: the unlabeled push only moves unlabeled voxels away from the
annotated objects. So a sparse fine-tune fails by merging. Without dense labels there is no error to compute, but
the merges change how many objects the network finds in the user's image. Of the 42 fine-tunes of
``bench/own_volume.py`` (EM, nuclei, membranes), 17 found more than a fifth fewer objects than their starting
weights in the annotated part of the volume: 16 of them were worse than the shipped model, one was 0.004 better in
adapted Rand error. Five bad fine-tunes went uncaught: they found at most a fifth fewer objects, or more
(``bench/RESULTS.md``, "A fine-tune that merges finds fewer objects"). The count is reported after every fine-tune,
and a drop of more than :data:`MERGE_WARNING_DROP` is warned about. A drop is not always wrong: a model that split
the user's objects should find fewer once it is fine-tuned (on nuclei twice as large as the model knows, a fine-tune
that nearly halved the error found 12% fewer), so the weights are kept and the user is told how to compare the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from spoco_monai.data.volume_io import open_volume
from spoco_monai.inferers.segment_volume import segment_volume
from spoco_monai.inferers.settings import SegmentationSettings
from spoco_monai.training.annotations import AnnotatedVolume

__all__ = ["BLOCK_VOXELS", "MERGE_WARNING_DROP", "central_block", "count_objects", "merge_warning"]

# the most voxels of each image that are segmented per network (a 128^3 block, or the whole of a smaller image)
BLOCK_VOXELS = 128**3
# a trained network finding more than this fraction fewer objects than its starting weights is warned about; the
# eight fine-tunes of the EM selection split measured when it was set were all worse and found 23% to 72% fewer
MERGE_WARNING_DROP = 0.2


def central_block(shape: Sequence[int], voxels: int = BLOCK_VOXELS) -> tuple[slice, ...]:
    """The whole of ``shape`` if it holds at most ``voxels`` elements, else its central block with sides of
    ``voxels ** (1 / len(shape))`` (shorter along the axes shorter than that)."""
    if math.prod(shape) <= voxels:
        return tuple(slice(0, int(length)) for length in shape)
    side = round(voxels ** (1 / len(shape)))
    starts = [max(0, (int(length) - side) // 2) for length in shape]
    return tuple(slice(start, min(int(length), start + side)) for start, length in zip(starts, shape))


def count_objects(
    volumes: Sequence[AnnotatedVolume],
    networks: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    settings: SegmentationSettings,
    block_voxels: int = BLOCK_VOXELS,
) -> dict[str, int]:
    """Per network, the objects (distinct ids > 0) it finds in the central block of at most ``block_voxels``
    voxels of every volume's image (:func:`central_block`), summed over the volumes.

    Args:
        volumes: the annotated volumes; their images are read (only the central block of a large one).
        networks: the networks by name, in eval mode.
        settings: the segmentation settings every network is segmented with.
        block_voxels: the most voxels of an image that are segmented.
    """
    counts = dict.fromkeys(networks, 0)
    for volume in volumes:
        with open_volume(volume.image) as image:
            channel_axes = (slice(None),) * (len(image.shape) - len(volume.shape))
            values = np.asarray(image[channel_axes + central_block(volume.shape, block_voxels)])
        for name, network in networks.items():
            labels = segment_volume(values, network, settings, progress=False, in_channels=volume.channels)
            counts[name] += int(np.count_nonzero(np.unique(labels) > 0))
    return counts


def merge_warning(starting: int, trained: int, starting_name: str, image: str) -> str | None:
    """A warning when the trained network finds more than :data:`MERGE_WARNING_DROP` fewer objects than the starting
    weights of ``starting_name`` did, with the commands that segment ``image`` (a training image) with both; None
    otherwise."""
    if starting == 0 or trained >= (1.0 - MERGE_WARNING_DROP) * starting:
        return None
    return (
        f"warning: the fine-tuned network finds {1.0 - trained / starting:.0%} fewer objects in your images than "
        f"{starting_name} ({trained} against {starting}). A fine-tune on a few annotated objects fails by merging the "
        "objects nobody annotated (bench/RESULTS.md), unless the starting model split your objects. Compare both in "
        f"napari: spoco-monai segment {image} starting.tif --model {starting_name}, and the same with this model "
        "folder into trained.tif. A densely labeled crop given with --val-images/--val-labels lets the command keep "
        "the better weights"
    )
