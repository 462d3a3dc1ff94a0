from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_fakes import NUM_OBJECTS, OFFSETS_3D, LabelLookupNetwork
from monai.data import MetaTensor
from monai.engines import SupervisedEvaluator
from skimage.metrics import adapted_rand_error

from spoco_monai.inferers import SegmentationSettings, SpocoSlidingWindowInferer

SETTINGS = SegmentationSettings((16, 32, 32), overlap=0.5, offsets=OFFSETS_3D, block_shape=(16, 32, 32))


def test_inferer_outputs(image_3d, labels_3d):
    batch = torch.from_numpy(np.stack([image_3d, image_3d]))
    network = LabelLookupNetwork(NUM_OBJECTS)
    settings = SegmentationSettings((16, 32, 32), overlap=0.5, offsets=OFFSETS_3D, block_shape=(16, 32, 32))
    labels = SpocoSlidingWindowInferer(settings)(batch, network)
    assert labels.shape == (2, 1, *labels_3d.shape) and labels.dtype == torch.int64
    for sample in labels:
        assert adapted_rand_error(labels_3d, sample[0].numpy())[0] == 0.0
    affinities = SpocoSlidingWindowInferer(settings, output="affinities")(batch, network)
    assert affinities.shape == (2, len(OFFSETS_3D), *labels_3d.shape)
    embeddings = SpocoSlidingWindowInferer(settings, output="embeddings")(batch, network)
    assert embeddings.shape == (2, 8, *labels_3d.shape)


def test_inferer_in_supervised_evaluator(image_3d, labels_3d):
    data = [{"image": torch.from_numpy(image_3d)[None], "label": torch.from_numpy(labels_3d)[None, None]}]
    inferer = SpocoSlidingWindowInferer(SETTINGS)
    evaluator = SupervisedEvaluator(torch.device("cpu"), data, LabelLookupNetwork(NUM_OBJECTS), inferer=inferer)
    evaluator.run()
    prediction = evaluator.state.output[0]["pred"]
    assert prediction.shape == (1, *labels_3d.shape)
    assert adapted_rand_error(labels_3d, prediction[0].numpy())[0] == 0.0


def test_inferer_invalid_options():
    with pytest.raises(ValueError, match="output must be one of"):
        SpocoSlidingWindowInferer(SegmentationSettings((16, 16)), output="probabilities")
    with pytest.raises(TypeError, match="settings must be a SegmentationSettings"):
        SpocoSlidingWindowInferer((16, 16))
    with pytest.raises(ValueError, match="embeddings of mirrored passes cannot be averaged"):
        SpocoSlidingWindowInferer(SegmentationSettings((16, 16), test_time_flips=True), output="embeddings")
    with pytest.raises(ValueError, match="inputs must have shape"):
        SpocoSlidingWindowInferer(SegmentationSettings((16, 16)))(torch.zeros(1, 16, 16), LabelLookupNetwork(2))


def test_inferer_keeps_metatensor_metadata(image_3d):
    inputs = MetaTensor(torch.from_numpy(image_3d)[None], affine=torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0])))
    inferer = SpocoSlidingWindowInferer(SETTINGS)
    labels = inferer(inputs, LabelLookupNetwork(NUM_OBJECTS))
    assert isinstance(labels, MetaTensor) and labels.dtype == torch.int64
    torch.testing.assert_close(labels.affine, inputs.affine)
