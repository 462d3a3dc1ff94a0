"""The ``"points"`` clustering through the settings, whole-image inference, the block path and ``Clusterd``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from spoco_monai.inferers import SegmentationSettings, SpocoSlidingWindowInferer, segment_volume
from spoco_monai.transforms import Clusterd

SHAPE = (40, 56)
CENTRES = ((12, 14), (26, 38))
OPTIONS = {"threshold": 0.5, "min_distance": 3, "embedding_radius": 0.5}


class PointwiseNetwork(nn.Module):
    """Embeddings = channel 0 times a fixed vector, localisation logit = channel 1 (no receptive field).

    A window's output at a pixel does not depend on the window, so windows, blocks and the whole image must agree.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("direction", torch.tensor([1.0, 2.0, 2.0])[None, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1] * self.direction, x[:, 1:]], dim=1)


def two_discs_and_their_clicks() -> tuple[np.ndarray, np.ndarray]:
    """(2, *SHAPE) image: discs of intensity 1 and 2 on 0, and a localisation logit peaking at their centres."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    truth = np.zeros(SHAPE, dtype=np.int64)
    logit = np.full(SHAPE, -8.0, dtype=np.float32)
    for index, (y, x) in enumerate(CENTRES, start=1):
        distance = np.hypot(yy - y, xx - x)
        truth[distance < 8.5] = index
        logit = np.maximum(logit, 6.0 - distance)
    return np.stack([truth.astype(np.float32), logit]), truth


def settings(**changes) -> SegmentationSettings:
    values = {"roi_size": (16, 16), "blend": "embeddings", "clustering": "points", "clustering_kwargs": OPTIONS}
    return SegmentationSettings(**{**values, **changes})


def test_two_discs_are_two_objects_and_the_background_none():
    image, truth = two_discs_and_their_clicks()
    labels = segment_volume(image, PointwiseNetwork(), settings(roi_size=SHAPE), progress=False)
    np.testing.assert_array_equal(labels, truth)


def test_blocks_give_the_labels_of_whole_image_inference():
    image, truth = two_discs_and_their_clicks()
    whole = segment_volume(image, PointwiseNetwork(), settings(roi_size=SHAPE), progress=False)
    # 16 x 16 windows in blocks of about 16 x 16 with a halo wider than a disc: both discs cross blocks
    blocked = settings(overlap=0.25, block_shape=(16, 16), halo=18)
    labels = segment_volume(image, PointwiseNetwork(), blocked, progress=False)
    np.testing.assert_array_equal(labels, whole)
    inferred = SpocoSlidingWindowInferer(blocked)(torch.from_numpy(image)[None], PointwiseNetwork())
    np.testing.assert_array_equal(inferred[0, 0].numpy(), whole)


def test_clusterd_gives_the_labels_of_whole_image_inference():
    image, truth = two_discs_and_their_clicks()
    output = PointwiseNetwork()(torch.from_numpy(image)[None])[0]
    labels = Clusterd("pred", settings(roi_size=SHAPE))({"pred": output})["pred"]
    assert labels.shape == (1, *SHAPE) and labels.dtype == torch.int64
    np.testing.assert_array_equal(labels[0].numpy(), truth)


def test_seeds_below_the_threshold_give_no_object():
    image, _ = two_discs_and_their_clicks()
    image[1] = np.minimum(image[1], -0.1)  # every localisation probability below 0.5
    labels = segment_volume(image, PointwiseNetwork(), settings(roi_size=SHAPE), progress=False)
    assert not labels.any()


def test_an_intensity_foreground_masks_the_objects_and_the_localisation_stays_second_to_last():
    image, truth = two_discs_and_their_clicks()
    image[0][truth == 0] = 0.5  # a background embedding near disc 1's: only the mask keeps disc 1 from taking it
    output = PointwiseNetwork()(torch.from_numpy(image)[None])[0]
    masked = settings(roi_size=SHAPE, foreground="intensity", clustering_kwargs={"min_distance": 3})
    bright = torch.from_numpy((truth > 0).astype(np.float32))[None]
    labels = Clusterd("pred", masked, image_key="image")({"pred": output, "image": bright})["pred"]
    np.testing.assert_array_equal(labels[0].numpy(), truth)
    unmasked = settings(roi_size=SHAPE, clustering_kwargs={"min_distance": 3, "embedding_radius": 2.0})
    assert (Clusterd("pred", unmasked)({"pred": output})["pred"][0].numpy()[truth == 0] > 0).any()


def test_the_clustering_and_its_options_are_part_of_the_fingerprint():
    base = settings()
    assert base.fingerprint()["clustering"] == "points"
    higher = dataclasses.replace(base, clustering_kwargs={**OPTIONS, "threshold": 0.6})
    hdbscan = dataclasses.replace(base, clustering="hdbscan", clustering_kwargs={"min_size": 5})
    assert base.fingerprint() != higher.fingerprint() and base.fingerprint() != hdbscan.fingerprint()
    # the command line gives the seed distance as a float; the peak search takes whole pixels
    assert settings(clustering_kwargs={**OPTIONS, "min_distance": 4.0}).clustering_kwargs["min_distance"] == 4
    assert base.logit_channel and not hdbscan.logit_channel


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"blend": "affinities"}, "blend 'affinities' clusters with one of"),
        ({"foreground": "network"}, "reads the network's last channel as its localisation map"),
        ({"clustering_kwargs": {"min_distance": 3}}, r"without a foreground needs .*\['embedding_radius'\]"),
        ({"clustering_kwargs": {**OPTIONS, "threshold": 1.0}}, r"threshold'\] must lie in the open interval"),
        ({"clustering_kwargs": {**OPTIONS, "embedding_radius": 0}}, r"embedding_radius'\] must be > 0"),
        ({"clustering_kwargs": {**OPTIONS, "min_distance": 2.5}}, r"min_distance'\] must be a whole number >= 1"),
        ({"clustering_kwargs": {**OPTIONS, "min_distance": 0}}, r"min_distance'\] must be a whole number >= 1"),
        ({"clustering_kwargs": {**OPTIONS, "boundary_threshold": 0.3}}, "not options of clustering 'points'"),
    ],
)
def test_invalid_point_settings_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        settings(**changes)


def test_other_clusterings_leave_the_localisation_channel_out():
    image, truth = two_discs_and_their_clicks()
    watershed = {"clustering": "watershed", "clustering_kwargs": {"min_distance": 4}, "foreground": "intensity"}
    with_channel = segment_volume(
        image, PointwiseNetwork(), settings(roi_size=SHAPE, localization=True, **watershed), progress=False
    )

    def embeddings_only(x: torch.Tensor) -> torch.Tensor:
        return PointwiseNetwork()(x)[:, :-1]

    without = segment_volume(image, embeddings_only, settings(roi_size=SHAPE, **watershed), progress=False)
    np.testing.assert_array_equal(with_channel, without)
    assert len(np.unique(with_channel[truth > 0])) == 2


def test_a_localisation_channel_is_not_a_foreground():
    with pytest.raises(ValueError, match="which foreground 'network' would read as a foreground"):
        settings(clustering="mws", clustering_kwargs={}, localization=True, foreground="network")
