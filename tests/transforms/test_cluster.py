from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from spoco_monai.clustering import make_synthetic_embeddings
from spoco_monai.inferers import SegmentationSettings, segment_volume
from spoco_monai.inferers.settings import CLUSTERINGS
from spoco_monai.transforms import Cluster, Clusterd

BUNDLE_CONFIGS = Path(__file__).parents[2] / "bundle" / "configs"
SHAPE = (32, 32)
# one setting per clustering of the settings' registry
SETTINGS = {
    "mws": SegmentationSettings(SHAPE, clustering="mws", clustering_kwargs={"min_size": 5}),
    "watershed": SegmentationSettings(SHAPE, clustering="watershed", clustering_kwargs={"min_distance": 4, "boundary_threshold": 0.3}),
    "hdbscan": SegmentationSettings(SHAPE, blend="embeddings", clustering="hdbscan", clustering_kwargs={"min_size": 50}),
    "points": SegmentationSettings(
        SHAPE, blend="embeddings", clustering="points", clustering_kwargs={"min_distance": 3, "embedding_radius": 1.0}
    ),
}


def network_output(clustering: str, embeddings: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The embeddings, and for ``"points"`` a last localisation logit with one peak at every object's centre."""
    if clustering != "points":
        return embeddings
    logit = np.full((1, *truth.shape), -10.0, dtype=np.float32)
    ids = np.unique(truth)
    centres = np.rint(ndimage.center_of_mass(np.ones_like(truth), truth, ids)).astype(int)
    logit[(0, *centres.T)] = 10.0
    return np.concatenate([embeddings, logit])


@pytest.fixture
def sample() -> tuple[np.ndarray, np.ndarray]:
    return make_synthetic_embeddings(SHAPE, 4, noise_std=0.1, seed=0)


def test_every_clustering_of_the_settings_is_covered():
    assert sorted(SETTINGS) == sorted(CLUSTERINGS)


@pytest.mark.parametrize("clustering", sorted(SETTINGS))
def test_labels_are_those_of_whole_image_inference(sample, clustering):
    embeddings, truth = sample
    settings = SETTINGS[clustering]
    output = network_output(clustering, embeddings, truth)

    def network(windows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(output)[None].expand(len(windows), -1, -1, -1)

    # the window is the whole image: the network's output is the embeddings
    inferred = segment_volume(np.zeros((1, *SHAPE), np.float32), network, settings, progress=False)
    labels = Cluster(settings)(output)
    assert labels.shape == (1, *SHAPE) and labels.dtype == np.int64
    assert adapted_rand_error(inferred, labels[0])[0] == 0.0
    assert adapted_rand_error(truth, labels[0])[0] < 0.01


def test_clusterd_runs_the_bundles_own_clustering_and_keeps_metadata():
    parser = ConfigParser()
    parser.read_config(str(BUNDLE_CONFIGS / "common.json"))
    settings = parser.get_parsed_content("segmentation")
    assert settings.clustering == "watershed"
    embeddings, truth = make_synthetic_embeddings((16, 40, 40), 4, noise_std=0.1, seed=1)
    affine = torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0]))
    data = {"pred": MetaTensor(torch.from_numpy(embeddings), affine=affine), "image": "untouched"}
    out = Clusterd("pred", settings, output_key="instances")(data)
    labels = out["instances"]
    assert isinstance(labels, MetaTensor) and labels.dtype == torch.int64 and labels.shape == (1, 16, 40, 40)
    assert torch.equal(labels.affine, affine)
    assert adapted_rand_error(truth, labels[0].numpy())[0] < 0.05
    assert out["pred"] is data["pred"] and out["image"] == "untouched"


def test_foreground_from_the_network_or_the_image_masks_the_clustering(sample):
    embeddings, truth = sample
    inside = truth != 1
    logit = np.where(inside, 10.0, -10.0).astype(np.float32)[None]
    network = dataclasses.replace(SETTINGS["mws"], foreground="network")
    labels = Clusterd("pred", network)({"pred": np.concatenate([embeddings, logit])})["pred"]
    assert (labels[0][~inside] == 0).all() and (labels[0][inside] > 0).all()
    intensity = dataclasses.replace(SETTINGS["mws"], foreground="intensity")
    image = torch.from_numpy(inside[None].astype(np.float32))
    labels = Clusterd("pred", intensity, image_key="image")({"pred": torch.from_numpy(embeddings), "image": image})
    assert (labels["pred"][0][~torch.from_numpy(inside)] == 0).all()
    with pytest.raises(ValueError, match="foreground 'intensity' needs the image"):
        Clusterd("pred", intensity)({"pred": embeddings})


def test_missing_keys_allowed(sample):
    out = Clusterd(["pred", "other"], SETTINGS["mws"], allow_missing_keys=True)({"pred": sample[0]})
    assert "other" not in out and out["pred"].shape == (1, *SHAPE)


def test_invalid_input_is_refused(sample):
    with pytest.raises(TypeError, match="settings must be a SegmentationSettings, got dict"):
        Cluster({"clustering": "mws"})
    with pytest.raises(ValueError, match=r"output must be \(E, \*S\) with 2 spatial axes .* got shape \(16, 32\)"):
        Cluster(SETTINGS["mws"])(sample[0][:, 0])
