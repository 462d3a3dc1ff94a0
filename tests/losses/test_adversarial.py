"""The adversarial mask term: critic, WGAN-GP objectives and the object boxes of the soft masks."""

from __future__ import annotations

import math

import pytest
import torch
from loss_helpers import kernel_rate
from torch import nn

from spoco_monai.losses import MaskCritic, SpocoLoss, WassersteinMaskLoss, object_box_masks


class _LinearCritic(nn.Module):
    """D(x) = sum(w x) + b on (n, 1, 2, 2) masks."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[1.0, 2.0], [2.0, 0.0]], dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, masks):
        return (masks[:, 0] * self.weight).sum(dim=(1, 2)) + self.bias


class _HalfSquaredNorm(nn.Module):
    """D(x) = ||x||^2 / 2, whose gradient is x itself."""

    def forward(self, masks):
        return 0.5 * masks.flatten(1).square().sum(dim=1)


def _masks(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(-1, 1, 2, 2)


def test_gradient_penalty_of_a_linear_critic_is_exact():
    # grad_x D = w everywhere, ||w|| = sqrt(1 + 4 + 4) = 3, so every interpolate has (3 - 1)^2 = 4
    loss = WassersteinMaskLoss((2, 2))
    real, fake = _masks([[1, 1, 1, 1], [1, 0, 0, 1]]), _masks([[0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]])
    assert loss.gradient_penalty(_LinearCritic(), real, fake).item() == pytest.approx(4.0, abs=1e-12)
    # D(real) = 5.5 and 1.5, D(fake) = 0.5 and 3: 1.75 - 3.5 + 10 * 4
    assert loss.critic_loss(_LinearCritic(), real, fake).item() == pytest.approx(38.25, abs=1e-12)
    assert loss.last_terms == pytest.approx({"critic": 38.25, "wasserstein": 1.75, "gradient_penalty": 4.0})
    assert WassersteinMaskLoss.generator_loss(_LinearCritic(), fake).item() == pytest.approx(-1.75, abs=1e-12)


def test_gradient_penalty_uses_seeded_interpolates():
    # x = a real + (1 - a) fake = 3a e_1 with fake = 0, and grad_x D = x: the penalty is mean((3a - 1)^2)
    real, fake = _masks([[3, 0, 0, 0], [3, 0, 0, 0], [3, 0, 0, 0]]), torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    weights = torch.rand(3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected = ((3 * weights - 1) ** 2).mean().item()
    assert WassersteinMaskLoss((2, 2), seed=7).gradient_penalty(_HalfSquaredNorm(), real, fake).item() == pytest.approx(
        expected, abs=1e-12
    )
    # equal real and fake masks: the penalty no longer depends on a, (||x|| - 1)^2 = (5 - 1)^2 and (2 - 1)^2
    same = _masks([[3, 4, 0, 0], [0, 0, 0, 2]])
    assert WassersteinMaskLoss((2, 2)).gradient_penalty(_HalfSquaredNorm(), same, same).item() == pytest.approx(8.5)


def test_critic_loss_sends_no_gradient_to_the_masks_and_generator_loss_does():
    embeddings = torch.randn(1, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    embeddings.requires_grad_(True)
    target = torch.zeros(1, 1, 6, 6, dtype=torch.int64)
    target[..., :3, :3], target[..., 3:, 2:] = 1, 2
    spoco = SpocoLoss()
    spoco(embeddings, target)
    loss = WassersteinMaskLoss((4, 4))
    fake, real = loss.masks(spoco.last_chosen)
    critic = MaskCritic(2, (2, 4)).double()
    assert torch.autograd.grad(loss.critic_loss(critic, real, fake), embeddings, allow_unused=True) == (None,)
    (gradient,) = torch.autograd.grad(loss.generator_loss(critic, fake), embeddings)
    assert gradient.abs().sum() > 0


def test_critic_learns_to_separate_clearly_different_masks():
    generator = torch.Generator().manual_seed(0)
    real = torch.zeros(8, 1, 16, 16)
    for index, (top, left) in enumerate(torch.randint(0, 8, (8, 2), generator=generator).tolist()):
        real[index, 0, top : top + 8, left : left + 8] = 1.0
    fake = 0.3 + 0.4 * torch.rand(8, 1, 16, 16, generator=generator)
    torch.manual_seed(0)
    critic = MaskCritic(2, (8, 16))
    optimizer = torch.optim.Adam(critic.parameters(), lr=1e-2, betas=(0.5, 0.9))
    loss = WassersteinMaskLoss((16, 16))
    with torch.no_grad():
        assert abs(float(critic(real).mean() - critic(fake).mean())) < 0.1
    for _ in range(20):
        optimizer.zero_grad()
        loss.critic_loss(critic, real, fake).backward()
        optimizer.step()
    with torch.no_grad():
        real_scores, fake_scores = critic(real), critic(fake)
    # every ground-truth mask now scores above every noisy one, by a wide margin
    assert real_scores.min() - fake_scores.max() > 1.0
    assert loss.last_terms["wasserstein"] > 3.0


def test_object_boxes_are_placed_clipped_and_padded():
    # a 3 x 5 patch, E = 1: object 1 (embedding 0) in the top-left 2 x 2, object 2 (embedding 1) at the right,
    # one ignored pixel (-1) inside object 2's box
    target = torch.tensor([[1, 1, 0, 2, -1], [1, 1, 0, 2, 2], [0, 0, 0, 0, 0]]).view(1, 1, 3, 5)
    values = torch.tensor([[0.0, 0.0, 0.5, 1.0, 3.0], [0.0, 0.0, 2.0, 1.0, 1.0], [1.0, 0.5, 0.0, 1.5, 1.0]])
    spoco = SpocoLoss()
    spoco(values.view(1, 1, 3, 5).double(), target)
    rate = kernel_rate()

    def soft(anchor: float, rows: list[list[float]]) -> torch.Tensor:
        return torch.exp(-rate * (torch.tensor(rows, dtype=torch.float64) - anchor) ** 2)

    fake, real = object_box_masks(spoco.last_chosen, (2, 3))
    assert fake.shape == real.shape == (2, 1, 2, 3)
    # object 1: box at (0, 0), centred on its 2 x 2 bounding box as far as the patch border allows
    torch.testing.assert_close(fake[0, 0], soft(0.0, [[0, 0, 0.5], [0, 0, 2]]), rtol=0, atol=1e-12)
    assert real[0, 0].tolist() == [[1, 1, 0], [1, 1, 0]]
    # object 2: its centred box would leave the patch and is shifted to columns 2-4; the ignored pixel is 0
    expected = soft(1.0, [[0.5, 1, 3], [2, 1, 1]])
    expected[0, 2] = 0.0
    torch.testing.assert_close(fake[1, 0], expected, rtol=0, atol=1e-12)
    assert real[1, 0].tolist() == [[0, 1, 0], [0, 1, 1]]
    # a box taller than the patch: the patch is padded below with pixels that are 0 in both masks
    fake, real = object_box_masks(spoco.last_chosen, (4, 3))
    torch.testing.assert_close(fake[0, 0, :3], soft(0.0, [[0, 0, 0.5], [0, 0, 2], [1, 0.5, 0]]), rtol=0, atol=1e-12)
    assert fake[:, 0, 3].abs().sum() == 0 and real[:, 0, 3].abs().sum() == 0


def test_an_object_longer_than_the_box_keeps_its_central_part():
    target = torch.tensor([0, 1, 1, 1, 1, 1, 0]).view(1, 1, 1, 7)
    embeddings = torch.arange(7, dtype=torch.float64).view(1, 1, 1, 7) * 0.01
    spoco = SpocoLoss()
    spoco(embeddings, target)
    fake, real = object_box_masks(spoco.last_chosen, (1, 3))
    assert real.flatten().tolist() == [1, 1, 1]
    # columns 2, 3, 4: the anchor is one of the object's pixels, all within delta_v of the mean
    anchor = spoco.last_chosen.anchors[0, 0, 0].item()
    expected = torch.exp(-kernel_rate() * (torch.tensor([0.02, 0.03, 0.04], dtype=torch.float64) - anchor) ** 2)
    torch.testing.assert_close(fake.flatten(), expected, rtol=0, atol=1e-12)


def test_whole_patch_boxes_hold_the_single_instance_soft_masks(random_batch):
    spoco = SpocoLoss(max_instances=2)
    spoco(random_batch["embeddings"], random_batch["target"])
    chosen = spoco.last_chosen
    fake, real = object_box_masks(chosen, chosen.spatial_shape)
    target = random_batch["target"].flatten(1)
    distances = (chosen.embeddings.unsqueeze(1) - chosen.anchors.unsqueeze(-1)).square().sum(dim=2)
    expected = torch.exp(-chosen.rate * distances) * (target >= 0).unsqueeze(1)
    torch.testing.assert_close(fake.flatten(1), expected[chosen.present], rtol=0, atol=1e-12)
    own = chosen.objects.slots.unsqueeze(1) == chosen.slots.unsqueeze(-1)
    assert torch.equal(real.flatten(1), own[chosen.present].double())
    assert fake.shape[0] == int(chosen.present.sum()) and fake.shape[2:] == (3, 4)


def test_no_objects_no_masks_and_no_chosen_objects_without_the_instance_term():
    embeddings = torch.randn(1, 2, 4, 4)
    spoco = SpocoLoss()
    spoco(embeddings, torch.zeros(1, 1, 4, 4, dtype=torch.int64))
    fake, real = object_box_masks(spoco.last_chosen, (2, 2))
    assert fake.shape == real.shape == (0, 1, 2, 2)
    without = SpocoLoss(instance_weight=0.0)
    without(embeddings, torch.ones(1, 1, 4, 4, dtype=torch.int64))
    assert without.last_chosen is None


def test_mask_critic_2d_and_3d_scores_one_value_per_mask():
    assert MaskCritic(2, (4, 8, 8))(torch.rand(3, 1, 4, 6)).shape == (3,)
    critic = MaskCritic(3, (2, 4, 4, 4))
    assert critic.min_size == 8
    assert critic(torch.rand(2, 1, 8, 8, 9)).shape == (2,)
    assert MaskCritic().score.in_features == 512


@pytest.mark.parametrize(
    "masks, message",
    [(torch.rand(2, 1, 4, 8), r"at least 8, found \(2, 1, 4, 8\)"), (torch.rand(2, 1, 8, 8, 8), "2 box axes")],
)
def test_mask_critic_rejects_masks_it_cannot_take(masks, message):
    with pytest.raises(ValueError, match=message):
        MaskCritic(2, (2, 2, 2, 2))(masks)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"spatial_dims": 1}, ValueError, "spatial_dims must be 2 or 3, found 1"),
        ({"channels": []}, ValueError, "non-empty sequence of widths"),
        ({"channels": [8, 0]}, ValueError, "channels must be >= 1, found 0"),
        ({"channels": [8, 2.5]}, TypeError, "channels must be an int"),
        ({"seed": 0.5}, TypeError, "seed must be an int"),
    ],
)
def test_mask_critic_invalid_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        MaskCritic(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"box_size": (8,)}, ValueError, r"2 or 3 sizes\), found \(8,\)"),
        ({"box_size": (8, 0)}, ValueError, "box_size must be >= 1, found 0"),
        ({"box_size": (8, 8), "gradient_penalty_weight": -1.0}, ValueError, "gradient_penalty_weight must be >= 0"),
        ({"box_size": (8, 8), "seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_wasserstein_loss_invalid_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        WassersteinMaskLoss(**kwargs)


def test_empty_or_mismatched_masks_are_rejected():
    loss = WassersteinMaskLoss((2, 2))
    with pytest.raises(ValueError, match="n >= 1"):
        loss.critic_loss(_LinearCritic(), torch.zeros(0, 1, 2, 2), torch.zeros(0, 1, 2, 2))
    with pytest.raises(ValueError, match=r"found \(1, 1, 2, 2\) and \(2, 1, 2, 2\)"):
        loss.gradient_penalty(_LinearCritic(), torch.zeros(1, 1, 2, 2), torch.zeros(2, 1, 2, 2))


def test_box_of_another_dimensionality_is_rejected(random_batch):
    spoco = SpocoLoss()
    spoco(random_batch["embeddings"], random_batch["target"])
    with pytest.raises(ValueError, match=r"box_size \(2, 2, 2\) must have one size per spatial axis"):
        WassersteinMaskLoss((2, 2, 2)).masks(spoco.last_chosen)
    assert math.prod(spoco.last_chosen.spatial_shape) == spoco.last_chosen.embeddings.shape[-1]


def test_seeded_critic_leaves_the_global_generator_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = MaskCritic(2, (2, 4), seed=1)
    assert torch.equal(torch.rand(3), expected)
    second = MaskCritic(2, (2, 4), seed=1)
    assert all(torch.equal(value, second.state_dict()[name]) for name, value in first.state_dict().items())
    assert not torch.equal(MaskCritic(2, (2, 4), seed=2).score.weight, first.score.weight)
