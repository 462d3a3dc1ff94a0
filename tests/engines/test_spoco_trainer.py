from __future__ import annotations

import copy

import pytest
import torch
from ignite.handlers import ProgressBar
from monai.engines import SupervisedEvaluator
from monai.handlers import StatsHandler, ValidationHandler
from torch import nn

from spoco_monai.engines import LOSS_TERMS, TEACHER_PRED, AtomicCheckpointSaver, SpocoTrainer, loss_and_terms
from spoco_monai.engines.trainer import NonFiniteLossError


class _TwoViewSquaredDistance(nn.Module):
    """Stand-in for SpocoLoss with the same call signature and a ``last_terms`` attribute."""

    def forward(self, embeddings, target, teacher_embeddings):
        assert not teacher_embeddings.requires_grad
        self.last_terms = {"consistency": 0.5, "pull": 0.25}
        return ((embeddings - teacher_embeddings) ** 2).mean() + 0.0 * target.float().mean()


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.BatchNorm3d(3), nn.ReLU(), nn.Conv3d(3, 4, 1))


def _batches(count: int = 2) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        {
            "image": torch.rand(2, 1, 4, 5, 6, generator=generator),
            "image_view2": torch.rand(2, 1, 4, 5, 6, generator=generator),
            "label": torch.randint(0, 3, (2, 1, 4, 5, 6), generator=generator),
        }
        for _ in range(count)
    ]


def _trainer(network, data, momentum=0.9, **kwargs) -> SpocoTrainer:
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    return SpocoTrainer(
        device="cpu", max_epochs=1, train_data_loader=data, network=network, optimizer=optimizer,
        loss_function=_TwoViewSquaredDistance(), ema_momentum=momentum, **kwargs,
    )


def test_teacher_is_exact_moving_average_after_one_step():
    network = _network()
    trainer = _trainer(network, _batches(1), momentum=0.9)
    teacher_before = copy.deepcopy(trainer.teacher.state_dict())
    student_before = copy.deepcopy(network.state_dict())
    for name, value in teacher_before.items():
        assert torch.equal(value, student_before[name])
    trainer.run()
    student_after = network.state_dict()
    assert not torch.equal(student_after["0.weight"], student_before["0.weight"])
    for name, value in trainer.teacher.state_dict().items():
        if value.is_floating_point():
            expected = 0.9 * teacher_before[name] + 0.1 * student_after[name]
            torch.testing.assert_close(value, expected, rtol=0, atol=1e-6)
        else:
            assert torch.equal(value, student_after[name])
    # the BatchNorm statistics moved in the student (train mode) and followed it into the teacher by EMA only
    assert not torch.equal(student_after["1.running_mean"], student_before["1.running_mean"])


def test_teacher_given_is_synchronised_and_frozen():
    network = _network()
    teacher = nn.Sequential(nn.Conv3d(1, 3, 3, padding=1), nn.BatchNorm3d(3), nn.ReLU(), nn.Conv3d(3, 4, 1))
    trainer = _trainer(network, _batches(1), teacher_network=teacher)
    assert trainer.teacher is teacher
    assert not teacher.training
    assert all(not parameter.requires_grad for parameter in teacher.parameters())
    assert torch.equal(teacher[0].weight, network[0].weight)


def test_output_dict_and_logging_handlers(caplog):
    network = _network()
    stats = StatsHandler(name="spoco_test_stats", output_transform=loss_and_terms, iteration_log=True)
    trainer = _trainer(network, _batches(2), train_handlers=[stats])
    ProgressBar(persist=False).attach(trainer, output_transform=loss_and_terms)
    trainer.run()
    output = trainer.state.output
    assert output["pred"].shape == output[TEACHER_PRED].shape == (2, 4, 4, 5, 6)
    assert output["pred"].requires_grad and not output[TEACHER_PRED].requires_grad
    assert output[LOSS_TERMS] == {"consistency": 0.5, "pull": 0.25}
    values = loss_and_terms(output)
    assert set(values) == {"loss", "loss_consistency", "loss_pull"}
    assert values["loss"] == pytest.approx(float(output["loss"].detach()))
    assert trainer.state.iteration == 2


def test_evaluation_does_not_move_the_teacher():
    network = _network()
    evaluator = SupervisedEvaluator(device="cpu", val_data_loader=_batches(2), network=network)
    trainer = _trainer(network, _batches(1), train_handlers=[ValidationHandler(interval=1, validator=evaluator)])
    trainer.run()
    teacher_after_training = copy.deepcopy(trainer.teacher.state_dict())
    evaluator.run()
    for name, value in trainer.teacher.state_dict().items():
        assert torch.equal(value, teacher_after_training[name])


def test_missing_second_view_is_a_clear_error():
    batch = _batches(1)[0]
    del batch["image_view2"]
    trainer = _trainer(_network(), [batch])
    with pytest.raises(ValueError, match="image_view2"):
        trainer.run()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"ema_momentum": 1.5}, "ema_momentum"), ({"accumulation_steps": 2}, "accumulation_steps"),
     ({"teacher_network": nn.Linear(2, 2)}, "architecture")],
)
def test_invalid_arguments(kwargs, message):
    network = _network()
    momentum = kwargs.pop("ema_momentum", 0.9)
    with pytest.raises(ValueError, match=message):
        _trainer(network, _batches(1), momentum=momentum, **kwargs)


def test_loss_and_terms_rejects_other_outputs():
    with pytest.raises(TypeError, match="loss"):
        loss_and_terms([{"loss": 1.0}])


def test_non_finite_loss_stops_before_the_step_and_saves_nothing(tmp_path):
    network = _network()
    before = copy.deepcopy(network.state_dict())
    batches = _batches(2)
    batches[1]["image"][0, 0, 0, 0, 0] = float("nan")
    batches[1]["image_file"] = ["a.tif", "b.tif"]
    trainer = _trainer(network, batches)
    AtomicCheckpointSaver(
        str(tmp_path), {"network": network, "trainer": trainer}, save_final=True, save_interval=1, epoch_level=False
    ).attach(trainer)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at iteration 2 \(batch files: \['a.tif', 'b.tif'\]\)"):
        trainer.run()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint_iteration=1.pt"]
    saved = torch.load(tmp_path / "checkpoint_iteration=1.pt", weights_only=True)["network"]
    # the step was not taken (BatchNorm's running statistics did see the NaN in the forward pass)
    assert all(torch.equal(saved[name], value) for name, value in network.named_parameters())
    assert not torch.equal(network.state_dict()["0.weight"], before["0.weight"])


def test_points_key_passes_the_point_annotation_to_the_loss():
    received = []

    class _PointsLoss(_TwoViewSquaredDistance):
        def forward(self, embeddings, target, teacher_embeddings, points=None):
            received.append(points)
            return super().forward(embeddings, target, teacher_embeddings)

    data = _batches(1)
    data[0]["points"] = torch.zeros(2, 1, 4, 5, 6, dtype=torch.int64)
    data[0]["points"][0, 0, 1, 2, 3] = 1
    network = _network()
    trainer = SpocoTrainer(
        device="cpu", max_epochs=1, train_data_loader=data, network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1), loss_function=_PointsLoss(), points_key="points",
    )
    trainer.run()
    assert torch.equal(received[0], data[0]["points"])
    # without the key in the batch (or without points_key), the loss is called as before
    plain = _trainer(_network(), _batches(1), points_key="points")
    plain.run()
    assert plain.state.iteration == 1
