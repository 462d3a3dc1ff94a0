from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from spoco_monai.engines import ResumeCheckpointLoader, TrainingSettings
from spoco_monai.engines.training_settings import MISSING, SETTINGS_KEY

SETTINGS = {"seed": 0, "learning_rate": 0.0002, "loss_weights": {"pull": 1.0, "push": 1.0}, "region": (slice(0, 8),)}


def _save(path, settings: TrainingSettings | None) -> str:
    content = {"network": nn.Linear(1, 1).state_dict()}
    if settings is not None:
        content[SETTINGS_KEY] = settings.state_dict()
    torch.save(content, path)
    return str(path)


def test_a_fresh_start_and_a_resume_with_the_same_settings_go_on(tmp_path):
    settings = TrainingSettings(SETTINGS)
    assert settings.check(None) == {}
    assert settings.check(_save(tmp_path / "c.pt", TrainingSettings(dict(SETTINGS)))) == {}
    assert not settings.changed


def test_changed_settings_are_refused_by_name_with_both_values(tmp_path):
    checkpoint = _save(tmp_path / "c.pt", TrainingSettings(SETTINGS))
    changed = {**SETTINGS, "learning_rate": 0.001, "loss_weights": {"pull": 2.0, "push": 1.0}, "amp": True}
    with pytest.raises(ValueError) as raised:
        TrainingSettings(changed).check(checkpoint)
    assert str(raised.value) == (
        f"the training in {checkpoint} was saved with other settings: amp (none) -> true, learning_rate 0.0002 -> "
        "0.001, loss_weights#pull 1.0 -> 2.0. Resume with the saved ones, set resume_with_new_settings to true to go "
        "on with the new ones from the saved state, or choose another output_dir to start afresh."
    )


def test_a_setting_added_after_the_checkpoint_at_none_or_false_is_no_change(tmp_path):
    checkpoint = _save(tmp_path / "c.pt", TrainingSettings(SETTINGS))
    assert TrainingSettings({**SETTINGS, "head_channels": None, "side": False}).check(checkpoint) == {}
    with pytest.raises(ValueError, match=r"side \(none\) -> true"):
        TrainingSettings({**SETTINGS, "side": True}).check(checkpoint)
    with pytest.raises(ValueError, match=r"head_channels \(none\) -> 8"):
        TrainingSettings({**SETTINGS, "head_channels": 8}).check(checkpoint)
    with_it = _save(tmp_path / "d.pt", TrainingSettings({**SETTINGS, "head_channels": 8}))
    with pytest.raises(ValueError, match="head_channels 8 -> null"):
        TrainingSettings({**SETTINGS, "head_channels": None}).check(with_it)


def test_accepted_changes_are_returned_and_told(tmp_path, caplog):
    checkpoint = _save(tmp_path / "c.pt", TrainingSettings(SETTINGS))
    settings = TrainingSettings({**SETTINGS, "learning_rate": 0.001}, accept_changes=True)
    with caplog.at_level(logging.WARNING):
        assert settings.check(checkpoint) == {"learning_rate": (0.0002, 0.001)}
    assert settings.changed
    assert caplog.messages == [f"resuming {checkpoint} with new settings: learning_rate 0.0002 -> 0.001."]


def test_fixed_settings_are_refused_even_when_changes_are_accepted(tmp_path):
    checkpoint = _save(tmp_path / "c.pt", TrainingSettings(SETTINGS))
    settings = TrainingSettings({**SETTINGS, "seed": 1}, accept_changes=True, fixed=["seed"])
    with pytest.raises(ValueError) as raised:
        settings.check(checkpoint)
    assert str(raised.value) == (
        f"the training in {checkpoint} was saved with other settings that a resumed training cannot change: seed 0 "
        "-> 1. Resume with the saved ones, or choose another output_dir to start afresh."
    )


def test_a_checkpoint_without_settings_resumes_only_when_changes_are_accepted(tmp_path):
    checkpoint = _save(tmp_path / "c.pt", None)
    with pytest.raises(ValueError, match="holds no training settings to compare with this run's"):
        TrainingSettings(SETTINGS).check(checkpoint)
    settings = TrainingSettings({"seed": 0}, accept_changes=True)
    assert settings.check(checkpoint) == {"seed": (MISSING, 0)} and settings.changed


def test_settings_are_described_as_json_data():
    network = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    values = TrainingSettings(
        {"region": (slice(0, 8), None), "device": torch.device("cpu"), "optimizer": optimizer, "schedule": schedule}
    ).values
    assert values["region"] == ["slice(0, 8, None)", None] and values["device"] == "device(type='cpu')"
    assert values["optimizer"]["type"] == "SGD" and values["optimizer"]["lr"] == 0.1
    assert {key: values["schedule"][key] for key in ("type", "step_size", "gamma", "base_lrs")} == {
        "type": "StepLR", "step_size": 3, "gamma": 0.5, "base_lrs": [0.1]
    }
    assert "last_epoch" not in values["schedule"]
    with pytest.raises(TypeError, match="the training setting 'loss#0' is a object, which has no stable description"):
        TrainingSettings({"loss": [object()]})


def _training(lr: float, epochs: int) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """A network, Adam and a cosine schedule after ``epochs`` epochs of one step."""
    torch.manual_seed(0)
    network = nn.Linear(2, 1)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4, eta_min=lr / 100)
    for _ in range(epochs):
        network(torch.ones(1, 2)).sum().backward()
        optimizer.step()
        schedule.step()
    return network, optimizer, schedule


@pytest.mark.parametrize("accept", [False, True])
def test_loader_goes_on_with_the_new_optimizer_settings_only_when_they_are_accepted(tmp_path, accept):
    _, saved_optimizer, saved_schedule = _training(0.01, epochs=2)
    checkpoint = tmp_path / "c.pt"
    torch.save({"optimizer": saved_optimizer.state_dict(), "lr_scheduler": saved_schedule.state_dict()}, checkpoint)
    network, optimizer, schedule = _training(0.5, epochs=0)
    settings = TrainingSettings({"optimizer": optimizer}, accept_changes=accept)
    if accept:
        settings.check(_save(tmp_path / "settings.pt", TrainingSettings({"optimizer": saved_optimizer})))
    objects = {"optimizer": optimizer, "lr_scheduler": schedule, SETTINGS_KEY: settings}
    engine = Engine(lambda engine, batch: None)
    engine.state.max_epochs = 4
    ResumeCheckpointLoader(str(checkpoint), objects, settings=settings)(engine)
    # the moments always come from the checkpoint
    moments = [o.state_dict()["state"][0]["exp_avg"] for o in (optimizer, saved_optimizer)]
    assert torch.equal(*moments)
    _, _, new_schedule = _training(0.5, epochs=2)
    expected = new_schedule if accept else saved_schedule
    assert optimizer.param_groups[0]["lr"] == expected.get_last_lr()[0]
    assert schedule.state_dict() == expected.state_dict()
