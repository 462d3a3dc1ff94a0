"""AdversarialSpocoTrainer: gradients stay on their side, warm-up, critic steps, bad settings."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events
from monai.engines.utils import IterationEvents
from torch import nn

from spoco_monai.engines import ADVERSARIAL_TERMS, LOSS_TERMS, AdversarialSpocoTrainer
from spoco_monai.losses import MaskCritic, SpocoLoss, WassersteinMaskLoss


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 4, 1))


def _batches(count: int, with_objects: bool = True) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    label = torch.zeros(2, 1, 6, 8, 8, dtype=torch.int64)
    if with_objects:
        label[:, :, :3, :4, :4], label[:, :, 3:, 4:, :] = 1, 2
        label[1, :, :, :2, 5:] = 3
    return [
        {
            "image": torch.rand(2, 1, 6, 8, 8, generator=generator),
            "image_view2": torch.rand(2, 1, 6, 8, 8, generator=generator),
            "label": label,
        }
        for _ in range(count)
    ]


def _trainer(batches, network=None, **kwargs) -> AdversarialSpocoTrainer:
    network = _network() if network is None else network
    critic = MaskCritic(3, (2, 4))
    settings = {
        "loss_function": SpocoLoss(),
        "critic_optimizer": torch.optim.Adam(critic.parameters(), lr=1e-3, betas=(0.5, 0.9)),
        "adversarial_loss": WassersteinMaskLoss((4, 4, 4)),
        **kwargs,
    }
    return AdversarialSpocoTrainer(
        device="cpu", max_epochs=1, train_data_loader=batches, network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1), critic=critic, **settings,
    )


def test_no_gradient_crosses_between_network_and_critic():
    trainer = _trainer(_batches(2), n_critic=2)
    network_grads, checks = {}, []

    @trainer.on(IterationEvents.BACKWARD_COMPLETED)
    def _after_network_backward(engine):
        # the generator term reached the network, and nothing reached the (frozen) critic
        checks.append(all(p.grad is not None for p in engine.network.parameters()))
        checks.append(all(p.grad is None for p in engine.critic.parameters()))

    @trainer.on(IterationEvents.MODEL_COMPLETED)
    def _before_critic_steps(engine):
        network_grads.update({name: p.grad.clone() for name, p in engine.network.named_parameters()})
        network_grads["critic"] = copy.deepcopy(engine.critic.state_dict())

    @trainer.on(Events.ITERATION_COMPLETED)
    def _after_critic_steps(engine):
        # the critic steps moved the critic and left the network's gradients as the network's step made them
        for name, parameter in engine.network.named_parameters():
            checks.append(torch.equal(parameter.grad, network_grads[name]))
        before = network_grads["critic"]
        checks.append(any(not torch.equal(value, before[name]) for name, value in engine.critic.state_dict().items()))
        checks.append(all(p.grad is None for p in engine.critic.parameters()))

    trainer.run()
    assert len(checks) == 2 * (2 + 4 + 2) and all(checks)
    terms = trainer.state.output[LOSS_TERMS]
    assert set(ADVERSARIAL_TERMS) <= set(terms) and terms["adversarial"] != 0.0 and terms["gradient_penalty"] > 0.0


def test_generator_term_enters_after_the_warm_up_and_the_critic_steps_n_critic_times():
    trainer = _trainer(_batches(3), n_critic=3, warmup_iterations=2, adversarial_weight=0.5)
    recorded = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        output = engine.state.output
        spoco_total = sum(
            weight * output[LOSS_TERMS][name]
            for name, weight in {"pull": 1.0, "push": 1.0, "reg": 0.001, "instance": 1.0, "unlabeled": 1.0,
                                 "consistency": 1.0}.items()
        )
        recorded.append((output[LOSS_TERMS]["adversarial"], float(output["loss"].detach()) - spoco_total))

    trainer.run()
    assert [adversarial for adversarial, _ in recorded][:2] == [0.0, 0.0] and recorded[2][0] != 0.0
    for adversarial, extra in recorded:
        assert extra == pytest.approx(0.5 * adversarial, abs=1e-5)
    steps = {int(state["step"]) for state in trainer.critic_optimizer.state.values()}
    assert steps == {3 * 3}


def test_batch_without_objects_leaves_the_critic_alone():
    trainer = _trainer(_batches(1, with_objects=False))
    before = copy.deepcopy(trainer.critic.state_dict())
    trainer.run()
    assert all(torch.equal(value, before[name]) for name, value in trainer.critic.state_dict().items())
    assert all(trainer.state.output[LOSS_TERMS][name] == 0.0 for name in ADVERSARIAL_TERMS)


def test_adversarial_generator_is_part_of_the_random_state():
    trainer = _trainer(_batches(1))
    assert trainer.adversarial_loss.generator in trainer._generators()


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"n_critic": 0}, ValueError, "n_critic must be >= 1, found 0"),
        ({"warmup_iterations": -1}, ValueError, "warmup_iterations must be >= 0, found -1"),
        ({"adversarial_weight": -0.1}, ValueError, "adversarial_weight must be >= 0"),
        ({"n_critic": 1.5}, TypeError, "n_critic must be an int"),
        ({"loss_function": SpocoLoss(instance_weight=0.0)}, ValueError, "instance_weight > 0"),
        ({"critic_optimizer": "network"}, ValueError, "exactly the critic's parameters"),
        ({"adversarial_loss": WassersteinMaskLoss((4, 4, 1))}, ValueError, r"sizes >= 2, found box_size \(4, 4, 1\)"),
        ({"adversarial_loss": WassersteinMaskLoss((4, 4))}, ValueError, "3D critic takes boxes of 3 sizes"),
    ],
)
def test_invalid_settings(kwargs, error, message):
    network = _network()
    if kwargs.get("critic_optimizer") == "network":
        kwargs["critic_optimizer"] = torch.optim.Adam(network.parameters())
    with pytest.raises(error, match=message):
        _trainer(_batches(1), network=network, **kwargs)
