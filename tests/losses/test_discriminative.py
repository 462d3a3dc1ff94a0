"""DiscriminativeLoss: exact values, invariances, gradients and degenerate inputs."""

from __future__ import annotations

import pytest
import torch
from loss_helpers import line_image, line_target

from spoco_monai.losses import DiscriminativeLoss

# Pixels (0,0), (2,0) form object 1 (mean (1,0)), (5,0) is object 2 (mean (5,0)), (9,9) is unlabeled.
POINTS = [(0.0, 0.0), (2.0, 0.0), (5.0, 0.0), (9.0, 9.0)]
IDS = [1, 1, 2, 0]
# pull: object 1 has both pixels at distance 1 -> (1 - 0.5)^2 = 0.25 each, mean 0.25; object 2: 0.
PULL = (0.25 + 0.0) / 2
# push with delta_d = 3: ||mu_1 - mu_2|| = 4 -> (6 - 4)^2 = 4 for each ordered pair, / (2 * 1).
PUSH = (4.0 + 4.0) / 2
# reg: (||(1,0)|| + ||(5,0)||) / 2.
REG = (1.0 + 5.0) / 2


@pytest.mark.parametrize(
    "weights, expected",
    [
        ((1.0, 0.0, 0.0), PULL),
        ((0.0, 1.0, 0.0), PUSH),
        ((0.0, 0.0, 1.0), REG),
        ((1.0, 1.0, 0.001), PULL + PUSH + 0.003),
    ],
)
def test_exact_terms_on_hand_made_line(weights, expected):
    alpha, beta, gamma = weights
    loss = DiscriminativeLoss(delta_var=0.5, delta_dist=3.0, alpha=alpha, beta=beta, gamma=gamma)
    value = loss(line_image(POINTS), line_target(IDS))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_push_is_zero_beyond_the_margin():
    # delta_d = 2: the means are 4 = 2 delta_d apart, so the hinge is inactive.
    loss = DiscriminativeLoss(delta_dist=2.0, alpha=0.0, beta=1.0, gamma=0.0)
    assert loss(line_image(POINTS), line_target(IDS)).item() == 0.0


def test_batch_mean_counts_a_sample_without_objects_as_zero():
    loss = DiscriminativeLoss(delta_var=0.5, delta_dist=3.0, gamma=1.0)
    embeddings = torch.cat([line_image(POINTS), line_image(POINTS)])
    target = torch.cat([line_target(IDS), line_target([0, 0, 0, -1])])
    assert loss(embeddings, target).item() == pytest.approx((PULL + PUSH + REG) / 2, rel=1e-6)


def test_ignored_pixels_take_no_part():
    loss = DiscriminativeLoss(delta_var=0.5, delta_dist=3.0, gamma=1.0)
    with_ignore = loss(line_image([*POINTS, (100.0, -7.0)]), line_target([*IDS, -1]))
    assert with_ignore.item() == pytest.approx(PULL + PUSH + REG, rel=1e-6)


def test_three_dimensional_input_equals_its_flattened_two_dimensional_version():
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(2, 4, 3, 4, 5, generator=generator)
    target = torch.randint(-1, 5, (2, 3, 4, 5), generator=generator)
    loss = DiscriminativeLoss()
    flat = loss(embeddings.reshape(2, 4, 3, 20), target.reshape(2, 1, 3, 20))
    torch.testing.assert_close(loss(embeddings, target), flat)


def test_invariant_to_permuting_ids():
    generator = torch.Generator().manual_seed(2)
    embeddings = torch.randn(2, 3, 6, 7, generator=generator)
    target = torch.randint(-1, 5, (2, 1, 6, 7), generator=generator)
    relabel = torch.tensor([-1, 0, 40, 7, 1000, 2])  # id -> new id, indexed by id + 1
    relabelled = relabel[target + 1]
    loss = DiscriminativeLoss()
    torch.testing.assert_close(loss(embeddings, relabelled), loss(embeddings, target))


def test_pull_and_push_invariant_to_translating_all_embeddings():
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(2, 3, 6, 7, generator=generator)
    target = torch.randint(-1, 5, (2, 1, 6, 7), generator=generator)
    loss = DiscriminativeLoss(gamma=0.0)
    shift = torch.tensor([30.0, -12.0, 5.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(loss(embeddings + shift, target), loss(embeddings, target), atol=1e-4, rtol=1e-5)


def test_gradcheck_float64(random_batch):
    embeddings = random_batch["embeddings"].requires_grad_()
    loss = DiscriminativeLoss(delta_var=0.5, delta_dist=1.5)
    assert torch.autograd.gradcheck(lambda e: loss(e, random_batch["target"]), (embeddings,))
    assert loss(embeddings, random_batch["target"]).dtype == torch.float64


@pytest.mark.parametrize(
    "ids, expected",
    [
        ([0, 0, 0, 0], 0.0),  # no labeled object
        ([-1, -1, -1, -1], 0.0),  # everything ignored
        ([3, 3, 3, 3], None),  # one object, nothing unlabeled: push is 0
    ],
)
def test_degenerate_inputs_are_finite(ids, expected):
    embeddings = line_image(POINTS).requires_grad_()
    loss = DiscriminativeLoss(alpha=0.0, beta=1.0, gamma=0.0)
    value = loss(embeddings, line_target(ids))
    value.backward()
    assert torch.isfinite(embeddings.grad).all()
    assert value.item() == 0.0
    full = DiscriminativeLoss()(embeddings, line_target(ids))
    assert torch.isfinite(full)
    if expected is not None:
        assert full.item() == expected


def test_single_pixel_objects_have_finite_gradients():
    embeddings = line_image([(1.0, 1.0), (1.0, 1.0), (3.0, 0.0), (3.0, 0.0)]).requires_grad_()
    DiscriminativeLoss()(embeddings, line_target([1, 2, 3, 3])).backward()
    assert torch.isfinite(embeddings.grad).all()
