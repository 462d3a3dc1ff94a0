from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from spoco_monai.networks import EmbeddingUNet

ARGUMENTS = {"spatial_dims": 2, "in_channels": 1, "channels": (8, 16), "strides": (2,), "num_res_units": 1}


def test_without_a_head_it_is_monai_unet_and_loads_its_weights():
    torch.manual_seed(0)
    unet = UNet(out_channels=5, **ARGUMENTS).eval()
    network = EmbeddingUNet(out_channels=5, **ARGUMENTS).eval()
    assert list(network.state_dict()) == list(unet.state_dict())
    network.load_state_dict(unet.state_dict())
    image = torch.randn(2, 1, 16, 16)
    assert torch.equal(network(image), unet(image))
    assert network.head is None


def test_a_head_maps_narrow_full_resolution_features_to_the_outputs():
    torch.manual_seed(0)
    network = EmbeddingUNet(out_channels=17, head_channels=8, **ARGUMENTS).eval()
    trunk = UNet(out_channels=8, **ARGUMENTS).eval()
    trunk.load_state_dict({name: value for name, value in network.state_dict().items() if not name.startswith("head.")})
    image = torch.randn(2, 1, 16, 16)
    expected = torch.nn.functional.conv2d(trunk(image), network.head.weight, network.head.bias)
    embeddings = network(image)
    assert embeddings.shape == (2, 17, 16, 16)
    torch.testing.assert_close(embeddings, expected)
    assert network.head.weight.shape == (17, 8, 1, 1)
    assert network.out_channels == 17


def test_a_3d_head_with_group_norm():
    network = EmbeddingUNet(
        spatial_dims=3, in_channels=1, out_channels=16, channels=(8, 16), strides=(2,), num_res_units=1,
        norm=("group", {"num_groups": 8}), head_channels=8,
    )
    assert network(torch.randn(1, 1, 8, 8, 8)).shape == (1, 16, 8, 8, 8)
    assert network.head.weight.shape == (16, 8, 1, 1, 1)


@pytest.mark.parametrize("head_channels", [0, -8, True, 2.5, "8"])
def test_invalid_head_channels_are_refused(head_channels):
    with pytest.raises(ValueError, match=f"head_channels must be a positive int or None, found {head_channels!r}"):
        EmbeddingUNet(out_channels=17, head_channels=head_channels, **ARGUMENTS)


@pytest.mark.parametrize("head_channels", [None, 8])
def test_torchscript_gives_the_same_embeddings(head_channels):
    network = EmbeddingUNet(out_channels=17, head_channels=head_channels, **ARGUMENTS).eval()
    image = torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(torch.jit.script(network)(image), network(image))
