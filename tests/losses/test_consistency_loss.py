"""EmbeddingConsistencyLoss: exact value, anchor coverage, teacher without gradient, degenerate inputs."""

from __future__ import annotations

import math

import pytest
import torch
from loss_helpers import kernel_rate, line_image, line_target, seeded

import spoco_monai.losses.consistency as consistency_module
from spoco_monai.losses import EmbeddingConsistencyLoss

# The region (target 0) is the single pixel 3, so it is the only anchor. Pixel 4 is ignored.
STUDENT = [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (0.0, 1.0), (50.0, 50.0)]
TEACHER = [(0.0, 0.0), (0.0, 1.0), (2.0, 0.0), (0.0, 0.5), (-3.0, 0.0)]
IDS = [1, 1, 1, 0, -1]
STUDENT_SQUARED = [1.0, 2.0, 5.0, 0.0]  # to the student's anchor (0, 1)
TEACHER_SQUARED = [0.25, 0.25, 4.25, 0.0]  # to the teacher's anchor (0, 0.5)


def expected_dice() -> float:
    student = [math.exp(-kernel_rate() * s) for s in STUDENT_SQUARED]
    teacher = [math.exp(-kernel_rate() * s) for s in TEACHER_SQUARED]
    overlap = sum(f * g for f, g in zip(student, teacher))
    return 1 - 2 * overlap / (sum(f * f for f in student) + sum(g * g for g in teacher))


def test_exact_value_with_one_anchor():
    value = EmbeddingConsistencyLoss()(line_image(STUDENT), line_image(TEACHER), line_target(IDS))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected_dice(), abs=1e-6)


def test_identical_student_and_teacher_give_zero():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 3, 6, 6, generator=generator)
    target = torch.randint(-1, 3, (2, 6, 6), generator=generator)
    assert EmbeddingConsistencyLoss()(embeddings, embeddings.clone(), target).item() == pytest.approx(0.0, abs=1e-6)


def test_region_below_minimum_fraction_is_skipped():
    loss = EmbeddingConsistencyLoss(min_unlabeled_fraction=0.3)  # region: 1 of 5 pixels
    embeddings = line_image(STUDENT).requires_grad_()
    value = loss(embeddings, line_image(TEACHER), line_target(IDS))
    value.backward()
    assert value.item() == 0.0
    assert (embeddings.grad == 0).all()


def test_batch_mean_over_samples():
    embeddings = torch.cat([line_image(STUDENT), line_image(STUDENT)])
    teacher = torch.cat([line_image(TEACHER), line_image(TEACHER)])
    target = torch.cat([line_target(IDS), line_target([1, 1, 1, 1, -1])])
    value = EmbeddingConsistencyLoss()(embeddings, teacher, target)
    assert value.item() == pytest.approx(expected_dice() / 2, abs=1e-6)


@pytest.mark.parametrize("max_anchors, expected", [(20, 5), (3, 3)])
def test_anchors_cover_the_region_or_stop_at_max_anchors(max_anchors, expected):
    # Five region pixels 1 apart (> delta_v): one anchor each. A cluster within delta_v: one anchor.
    spread = line_image([(float(x), 0.0) for x in range(5)]).flatten(2)
    cluster = line_image([(0.0, 0.0), (0.1, 0.0), (0.2, 0.0), (0.0, 0.2), (0.1, 0.1)]).flatten(2)
    region = torch.ones(2, 5, dtype=torch.bool)
    loss = EmbeddingConsistencyLoss(max_anchors=max_anchors)
    pixels, active = loss.choose_anchors(torch.cat([spread, cluster]), region)
    assert active.sum(dim=1).tolist() == [expected, 1]
    assert len(set(pixels[0, active[0]].tolist())) == expected


def test_teacher_never_gets_a_gradient():
    embeddings = line_image(STUDENT).requires_grad_()
    teacher = line_image(TEACHER).requires_grad_()
    EmbeddingConsistencyLoss()(embeddings, teacher, line_target(IDS)).backward()
    assert teacher.grad is None
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_same_seed_same_results(random_batch):
    first, second = EmbeddingConsistencyLoss(seed=3), EmbeddingConsistencyLoss(seed=3)
    inputs = (random_batch["embeddings"], random_batch["teacher"], random_batch["target"])
    for _ in range(3):
        assert first(*inputs).item() == second(*inputs).item()


def test_gradcheck_float64(random_batch):
    embeddings = random_batch["embeddings"].requires_grad_()
    loss = EmbeddingConsistencyLoss(min_unlabeled_fraction=0.0)
    function = seeded(loss, lambda e: loss(e, random_batch["teacher"], random_batch["target"]))
    assert torch.autograd.gradcheck(function, (embeddings,))


@pytest.mark.parametrize("kept_elements", [0, 2**24])
def test_gradcheck_float64_with_masks_recomputed_or_kept(random_batch, monkeypatch, kept_elements):
    monkeypatch.setattr(consistency_module, "KEPT_MASK_ELEMENTS", kept_elements)
    embeddings = random_batch["embeddings"].requires_grad_()
    loss = EmbeddingConsistencyLoss(min_unlabeled_fraction=0.0)
    function = seeded(loss, lambda e: loss(e, random_batch["teacher"], random_batch["target"]))
    assert torch.autograd.gradcheck(function, (embeddings,))


def test_kept_masks_give_the_gradient_of_recomputed_ones(monkeypatch):
    generator = torch.Generator().manual_seed(4)
    embeddings = torch.randn(2, 4, 16, 20, generator=generator)
    teacher = embeddings + 0.3 * torch.randn(2, 4, 16, 20, generator=generator)
    target = torch.randint(-1, 3, (2, 16, 20), generator=generator)
    gradients = []
    for kept_elements in (0, 2**24):
        monkeypatch.setattr(consistency_module, "KEPT_MASK_ELEMENTS", kept_elements)
        student = embeddings.clone().requires_grad_()
        EmbeddingConsistencyLoss(seed=2)(student, teacher, target).backward()
        gradients.append(student.grad)
    assert torch.equal(gradients[0], gradients[1])


@pytest.mark.parametrize("ids", [[1, 1, 2, 2, 1], [-1] * 5, [0, 0, 0, 0, 0]])
def test_degenerate_regions_are_finite(ids):
    embeddings = line_image(STUDENT).requires_grad_()
    value = EmbeddingConsistencyLoss()(embeddings, line_image(TEACHER), line_target(ids))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(embeddings.grad).all()
    if 0 not in ids:
        assert value.item() == 0.0


def test_teacher_is_required():
    with pytest.raises(TypeError, match="teacher_embeddings"):
        EmbeddingConsistencyLoss()(line_image(STUDENT), None, line_target(IDS))
