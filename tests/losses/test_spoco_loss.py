"""SpocoLoss: weighted sum of the terms, sparse and dense modes, teacher handling, autocast, degenerate inputs."""

from __future__ import annotations

import pytest
import torch
from loss_helpers import line_image, line_target, seeded

from spoco_monai.losses import (
    DiscriminativeLoss,
    EmbeddingConsistencyLoss,
    SingleInstanceLoss,
    SpocoLoss,
    UnlabeledPushLoss,
)

TERMS = ("pull", "push", "reg", "instance", "unlabeled", "consistency", "foreground", "affinity")


def test_total_is_the_weighted_sum_of_the_terms(random_batch):
    weights = {"alpha": 0.7, "beta": 1.3, "gamma": 0.01, "instance_weight": 2.0, "unlabeled_weight": 0.5,
               "consistency_weight": 3.0}
    loss = SpocoLoss(**weights)
    total = loss(random_batch["embeddings"], random_batch["target"], random_batch["teacher"])
    terms = loss.last_terms
    assert set(terms) == set(TERMS) and all(isinstance(v, float) for v in terms.values())
    expected = sum(w * terms[name] for w, name in zip(weights.values(), TERMS))
    assert total.item() == pytest.approx(expected, rel=1e-9)


def test_terms_equal_the_term_modules(random_batch):
    embeddings, target, teacher = random_batch["embeddings"], random_batch["target"], random_batch["teacher"]
    loss = SpocoLoss(seed=4)
    loss(embeddings, target, teacher)
    pull = DiscriminativeLoss(alpha=1.0, beta=0.0, gamma=0.0)(embeddings, target)
    push = DiscriminativeLoss(alpha=0.0, beta=1.0, gamma=0.0)(embeddings, target)
    assert loss.last_terms["pull"] == pytest.approx(pull.item())
    assert loss.last_terms["push"] == pytest.approx(push.item())
    assert loss.last_terms["instance"] == pytest.approx(SingleInstanceLoss(seed=4)(embeddings, target).item())
    assert loss.last_terms["unlabeled"] == pytest.approx(UnlabeledPushLoss()(embeddings, target).item())
    consistency = EmbeddingConsistencyLoss(seed=5)(embeddings, teacher, target)
    assert loss.last_terms["consistency"] == pytest.approx(consistency.item())


def test_dense_mode_has_no_unlabeled_push_and_consistency_over_the_whole_patch():
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(2, 3, 6, 6, generator=generator)
    teacher = torch.randn(2, 3, 6, 6, generator=generator)
    dense_target = torch.randint(1, 4, (2, 1, 6, 6), generator=generator)  # background has an id too
    dense = SpocoLoss(sparse=False)
    dense(embeddings, dense_target, teacher)
    assert dense.last_terms["unlabeled"] == 0.0
    assert dense.last_terms["consistency"] > 0.0
    # Without an unlabeled region, the sparse mode has nothing for the consistency term.
    sparse = SpocoLoss(sparse=True)
    sparse(embeddings, dense_target, teacher)
    assert sparse.last_terms["consistency"] == 0.0


def test_dense_mode_ignores_unlabeled_weight(random_batch):
    inputs = (random_batch["embeddings"], random_batch["target"], random_batch["teacher"])
    first = SpocoLoss(sparse=False, unlabeled_weight=1.0)(*inputs)
    second = SpocoLoss(sparse=False, unlabeled_weight=5.0)(*inputs)
    assert first.item() == second.item()


def test_without_teacher_the_consistency_term_is_skipped(random_batch):
    loss = SpocoLoss()
    with_teacher = loss(random_batch["embeddings"], random_batch["target"], random_batch["teacher"])
    consistency = loss.last_terms["consistency"]
    without = SpocoLoss()(random_batch["embeddings"], random_batch["target"])
    assert consistency > 0
    assert without.item() == pytest.approx(with_teacher.item() - consistency)


def test_teacher_gets_no_gradient(random_batch):
    embeddings = random_batch["embeddings"].requires_grad_()
    teacher = random_batch["teacher"].requires_grad_()
    SpocoLoss()(embeddings, random_batch["target"], teacher).backward()
    assert teacher.grad is None
    assert torch.isfinite(embeddings.grad).all()


def test_gradcheck_float64(random_batch):
    embeddings = random_batch["embeddings"].requires_grad_()
    loss = SpocoLoss(delta_dist=1.5)
    function = seeded(loss, lambda e: loss(e, random_batch["target"], random_batch["teacher"]))
    assert torch.autograd.gradcheck(function, (embeddings,))


def test_same_seed_same_results():
    generator = torch.Generator().manual_seed(2)
    embeddings = 0.5 * torch.randn(2, 4, 3, 5, 5, generator=generator)
    teacher = 0.5 * torch.randn(2, 4, 3, 5, 5, generator=generator)
    target = torch.randint(-1, 6, (2, 1, 3, 5, 5), generator=generator)
    first, second = SpocoLoss(seed=11, max_instances=3), SpocoLoss(seed=11, max_instances=3)
    for _ in range(3):
        assert first(embeddings, target, teacher).item() == second(embeddings, target, teacher).item()
        assert first.last_terms == second.last_terms


def test_autocast_bfloat16_on_cpu_returns_float32():
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(2, 1, 8, 8, generator=generator)
    network = torch.nn.Conv2d(1, 4, 3, padding=1)
    target = torch.randint(-1, 4, (2, 1, 8, 8), generator=generator)
    loss = SpocoLoss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = network(image)
        teacher = network(image + 0.1).detach()
        assert embeddings.dtype == torch.bfloat16
        value = loss(embeddings, target, teacher)
    assert value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(network.weight.grad).all()


@pytest.mark.parametrize(
    "ids, zero_terms",
    [
        ([0, 0, 0, 0, 0], {"pull", "push", "reg", "instance", "unlabeled"}),  # no labeled object, all unlabeled
        ([-1, -1, -1, -1, -1], set(TERMS)),  # everything ignored
        ([2, 2, 2, 2, 2], {"push", "unlabeled", "consistency"}),  # one object, nothing unlabeled
        ([1, 1, 2, 2, 3], {"unlabeled", "consistency"}),  # nothing unlabeled
        ([0, -1, 0, 1, 0], {"push"}),  # one object
    ],
)
def test_degenerate_inputs(ids, zero_terms):
    embeddings = line_image([(0.0, 0.0), (0.3, 0.1), (2.0, 2.0), (2.0, 2.0), (5.0, 1.0)]).requires_grad_()
    teacher = line_image([(0.1, 0.0), (0.3, 0.0), (2.0, 1.0), (2.5, 2.0), (5.0, 0.0)])
    loss = SpocoLoss()
    value = loss(embeddings, line_target(ids), teacher)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(embeddings.grad).all()
    for name in zero_terms:
        assert loss.last_terms[name] == 0.0, name


def test_channels_last_embeddings_give_the_values_and_gradients_of_contiguous_ones():
    generator = torch.Generator().manual_seed(3)
    embeddings = torch.randn(2, 5, 6, 7, generator=generator)
    teacher = embeddings + 0.2 * torch.randn(2, 5, 6, 7, generator=generator)
    target = torch.randint(-1, 4, (2, 1, 6, 7), generator=generator)
    results = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        student = embeddings.clone(memory_format=memory_format).requires_grad_()
        value = SpocoLoss(seed=1)(student, target, teacher.to(memory_format=memory_format))
        value.backward()
        results.append((value.detach(), student.grad.contiguous()))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
