"""SpocoLoss against a plain-autograd restatement of method.md: every term and the gradient.

The reference loops over samples and objects, keeps every (objects x pixels) tensor and lets autograd
differentiate; it draws its random anchors from generators seeded like the loss's, so both must make the same
random choices. The fast paths of the package (chunks, blocks, sparse evaluation of bounded kernels, batched
anchor drawing, the id table of the object index) are forced onto these small inputs by shrinking their sizes.
"""

from __future__ import annotations

import math

import pytest
import torch

import spoco_monai.losses.consistency as consistency_module
import spoco_monai.losses.pairwise as pairwise_module
from spoco_monai.losses import SpocoLoss

TERMS = ("pull", "push", "reg", "instance", "unlabeled", "consistency")


def _dice(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 1 - 2 * (prediction * target).sum() / (prediction.square().sum() + target.square().sum())


def _mean(values: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.stack(values).mean() if values else like.new_zeros(())


def reference_terms(
    embeddings: torch.Tensor,
    target: torch.Tensor,
    teacher: torch.Tensor,
    sparse: bool,
    seed: int,
    delta_var: float = 0.5,
    delta_dist: float = 2.0,
    threshold: float = 0.9,
    max_anchors: int = 20,
    min_fraction: float = 0.05,
) -> dict[str, torch.Tensor]:
    """The six SPOCO terms, each a batch mean, for (B, E, *S) embeddings and a (B, 1, *S) target."""
    batch, channels = embeddings.shape[:2]
    flat, ids, flat_teacher = embeddings.flatten(2), target.flatten(1), teacher.flatten(2)
    num_pixels = flat.shape[-1]
    sigma_sq = -(delta_var**2) / (2 * math.log(threshold))
    instance_generator = torch.Generator().manual_seed(seed)
    consistency_generator = torch.Generator().manual_seed(seed + 1)
    instance_priorities = [torch.randperm(num_pixels, generator=instance_generator) for _ in range(batch)]
    consistency_priorities = [torch.randperm(num_pixels, generator=consistency_generator) for _ in range(batch)]
    terms: dict[str, list[torch.Tensor]] = {name: [] for name in TERMS}
    for b in range(batch):
        e, t, g = flat[b], ids[b], flat_teacher[b]
        valid = t >= 0
        objects = sorted(set(t[t > 0].tolist()))
        means = [e[:, t == c].mean(dim=1) for c in objects]
        pulls, regs, instances, unlabeled = [], [], [], []
        for c, mean in zip(objects, means):
            members = t == c
            distances = torch.linalg.vector_norm(e[:, members] - mean.unsqueeze(1), dim=0)
            pulls.append((distances - delta_var).clamp_min(0).square().mean())
            regs.append(torch.linalg.vector_norm(mean))
            with torch.no_grad():
                near = members & ((e - mean.unsqueeze(1)).square().sum(dim=0) < delta_var**2)
            if near.any():
                pixel = torch.where(near, instance_priorities[b], -1).argmax()
                anchor = e[:, pixel]
            else:
                anchor = mean
            mask = torch.exp(-(e[:, valid] - anchor.unsqueeze(1)).square().sum(dim=0) / (2 * sigma_sq))
            instances.append(_dice(mask, members[valid].to(e.dtype)))
            if (t == 0).any():
                hinge = delta_dist - torch.linalg.vector_norm(e[:, t == 0] - mean.unsqueeze(1), dim=0)
                unlabeled.append(hinge.clamp_min(0).square().mean())
        pushes = [
            (2 * delta_dist - torch.linalg.vector_norm(means[i] - means[j])).clamp_min(0).square()
            for i in range(len(means))
            for j in range(len(means))
            if i != j
        ]
        region = (t == 0) if sparse else valid
        consistencies = []
        if region.sum() >= min_fraction * num_pixels:
            remaining = region.clone()
            for _ in range(max_anchors):
                if not remaining.any():
                    break
                pixel = torch.where(remaining, consistency_priorities[b], -1).argmax()
                with torch.no_grad():
                    remaining &= (e - e[:, pixel].unsqueeze(1)).square().sum(dim=0) >= delta_var**2
                remaining[pixel] = False
                student = torch.exp(-(e[:, valid] - e[:, pixel].unsqueeze(1)).square().sum(dim=0) / (2 * sigma_sq))
                teacher_mask = torch.exp(
                    -(g[:, valid] - g[:, pixel].unsqueeze(1)).square().sum(dim=0) / (2 * sigma_sq)
                )
                consistencies.append(_dice(student, teacher_mask))
        per_sample = {
            "pull": pulls,
            "push": pushes,
            "reg": regs,
            "instance": instances,
            "unlabeled": unlabeled if sparse else [],
            "consistency": consistencies,
        }
        for name in TERMS:
            terms[name].append(_mean(per_sample[name], flat))
    return {name: torch.stack(values).mean() for name, values in terms.items()}


def random_case(shape: tuple[int, ...], num_ids: int, scale: float, seed: int, id_step: int = 1):
    generator = torch.Generator().manual_seed(seed)
    embeddings = scale * torch.randn(2, 3, *shape, generator=generator, dtype=torch.float64)
    teacher = embeddings + 0.3 * torch.randn(embeddings.shape, generator=generator, dtype=torch.float64)
    ids = torch.randint(-1, num_ids + 1, (2, 1, *shape), generator=generator)
    return embeddings, torch.where(ids > 0, ids * id_step, ids), teacher


@pytest.fixture(params=["default sizes", "small chunks, sparse kernels, few candidates"])
def sizes(request, monkeypatch):
    if request.param != "default sizes":
        monkeypatch.setattr(pairwise_module, "CACHE_ELEMENTS", 64)
        monkeypatch.setattr(pairwise_module, "MIN_CHUNK", 7)
        monkeypatch.setattr(pairwise_module, "BLOCK_PIXELS", 20)
        monkeypatch.setattr(pairwise_module, "SPARSE_FRACTION", 1.0)
        monkeypatch.setattr(consistency_module, "CANDIDATES_PER_ANCHOR", 1)
    return request.param


@pytest.mark.parametrize(
    "shape, num_ids, scale, sparse, id_step",
    [
        ((9, 11), 6, 0.6, True, 1),  # coverage radius spans several pixels: consistency anchors interact
        ((9, 11), 6, 2.0, True, 10**6),  # ids too large for the id table
        ((3, 5, 6), 4, 1.0, False, 1),  # dense mode, 3D
        ((12, 12), 25, 0.3, True, 1),  # many objects, embeddings close together: hinge terms everywhere
    ],
)
def test_matches_plain_autograd_reference(sizes, shape, num_ids, scale, sparse, id_step):
    embeddings, target, teacher = random_case(shape, num_ids, scale, seed=num_ids, id_step=id_step)
    loss = SpocoLoss(sparse=sparse, seed=3, max_anchors=8)
    actual_input = embeddings.clone().requires_grad_()
    loss(actual_input, target, teacher).backward()
    reference_input = embeddings.clone().requires_grad_()
    expected = reference_terms(reference_input, target, teacher, sparse, seed=3, max_anchors=8)
    for name in TERMS:
        assert loss.last_terms[name] == pytest.approx(expected[name].item(), rel=1e-9, abs=1e-12), name
    weights = {name: 1.0 for name in TERMS} | {"reg": 0.001, "unlabeled": 1.0 if sparse else 0.0}
    sum(weights[name] * expected[name] for name in TERMS).backward()
    torch.testing.assert_close(actual_input.grad, reference_input.grad, rtol=1e-7, atol=1e-10)


def test_float32_matches_float64_reference(sizes):
    embeddings, target, teacher = random_case((10, 12), 5, 0.8, seed=7)
    loss = SpocoLoss(seed=1)
    actual_input = embeddings.float().requires_grad_()
    loss(actual_input, target, teacher.float()).backward()
    reference_input = embeddings.clone().requires_grad_()
    expected = reference_terms(reference_input, target, teacher, True, seed=1)
    for name in TERMS:
        assert loss.last_terms[name] == pytest.approx(expected[name].item(), rel=1e-5, abs=1e-6), name
    (sum(expected[name] for name in TERMS if name != "reg") + 0.001 * expected["reg"]).backward()
    torch.testing.assert_close(actual_input.grad.double(), reference_input.grad, rtol=1e-4, atol=1e-6)
