"""A training killed and resumed is the run it continues: same losses, weights, best model and checkpoints; it resumes
only with the settings it was saved with (or new ones the user accepts), and one training at a time writes a folder."""

from __future__ import annotations

import fcntl
import os

import pytest
import torch
from bundle_workflow import TINY, config, run_recorded, workflow
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from spoco_monai.engines import latest_checkpoint
from spoco_monai.inferers import WorkDirectoryLockedError

pytestmark = pytest.mark.slow

# two training volumes (a data-loader pass of two batches, shuffled), validation and a checkpoint every 3 iterations:
# the checkpoint at iteration 3 lies inside a data-loader pass and after a validation
SETTINGS = {
    "num_iterations": 6, "val_interval": 3, "checkpoint_interval": 3, "checkpoints_kept": 1,
    "train#datalist": "$@datalist['training'] + @datalist['validation']",
}


def _run(dataset, output, kill_at=None):
    flow, losses = run_recorded(("train",), kill_at, dataset_dir=str(dataset), output_dir=str(output), **SETTINGS)
    return losses, flow.parser.get_parsed_content("train#trainer"), flow.parser.get_parsed_content("validate#evaluator")


def test_killed_and_resumed_training_is_bit_identical(tiny_dataset, tmp_path, capsys):
    expected_losses, expected, _ = _run(tiny_dataset, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_dataset, tmp_path / "killed", kill_at=5)
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["checkpoint_iteration=3.pt", "model.pt"]
    capsys.readouterr()
    losses, resumed, _ = _run(tiny_dataset, tmp_path / "killed")
    assert "Engine run resuming from iteration 3," in capsys.readouterr().out
    assert losses == expected_losses[3:]
    for name, value in expected.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[name], value), name
    for name, value in expected.teacher.state_dict().items():
        assert torch.equal(resumed.teacher.state_dict()[name], value), name
    whole_best = torch.load(tmp_path / "whole" / "checkpoints" / "model.pt", weights_only=True)
    best = torch.load(checkpoints / "model.pt", weights_only=True)
    assert all(torch.equal(best[name], value) for name, value in whole_best.items())
    # only the newest checkpoint is kept, the one of the interrupted run is gone
    assert sorted(os.listdir(checkpoints)) == [
        "checkpoint_final_iteration=6.pt", "checkpoint_iteration=6.pt", "model.pt"
    ]


def test_resume_restores_the_best_metric(tiny_dataset, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _, _, evaluator = _run(tiny_dataset, tmp_path, kill_at=4)
    saved = torch.load(latest_checkpoint(tmp_path / "checkpoints"), weights_only=True)
    record = saved["best_model_saver"]
    assert record["best_metric_epoch"] == 1 and record["saved"][0][0] == pytest.approx(record["best_metric"])
    flow = workflow(("train",), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path), **SETTINGS)
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    trainer = flow.parser.get_parsed_content("train#trainer")
    started = {}

    @trainer.on(Events.STARTED)
    def _best_at_start(engine):
        started.update(best=evaluator.state.best_metric, epoch=evaluator.state.best_metric_epoch)

    flow.run()
    assert started == {"best": record["best_metric"], "epoch": 1}


def _initialize(dataset, output, **overrides):
    """The start-up of a training into ``output`` with this module's settings: the error that stops it, if any."""
    flow = ConfigWorkflow(config_file=config("train"), workflow_type=None,
                          **{**TINY, **SETTINGS, "dataset_dir": str(dataset), "output_dir": str(output), **overrides})
    with pytest.raises(RuntimeError) as error:
        flow.initialize()
    return error.value.__cause__


def test_resume_with_a_changed_setting_is_refused_naming_it(tiny_dataset, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_dataset, tmp_path, kill_at=4)
    saved = {path.name: path.read_bytes() for path in (tmp_path / "checkpoints").iterdir()}
    cause = _initialize(tiny_dataset, tmp_path, learning_rate=0.001)
    assert isinstance(cause, ValueError)
    assert str(cause).startswith(
        f"the training in {tmp_path / 'checkpoints' / 'checkpoint_iteration=3.pt'} was saved with other settings: "
        "learning_rate 0.0002 -> 0.001, lr_scheduler#base_lrs [0.0002] -> [0.001], lr_scheduler#eta_min 2e-06 -> "
        "1e-05, optimizer#lr 0.0002 -> 0.001. "
    )
    assert {path.name: path.read_bytes() for path in (tmp_path / "checkpoints").iterdir()} == saved


def test_resume_with_new_settings_goes_on_at_the_new_learning_rate(tiny_dataset, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_dataset, tmp_path, kill_at=4)
    flow = workflow(("train",), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path), **SETTINGS,
                    learning_rate=0.001, resume_with_new_settings=True)
    optimizer = flow.parser.get_parsed_content("optimizer")
    rates = []

    @flow.parser.get_parsed_content("train#trainer").on(Events.ITERATION_COMPLETED)
    def _record(engine):
        rates.append((engine.state.iteration, optimizer.param_groups[0]["lr"]))

    flow.run()
    # the new schedule (two epochs of three iterations, cosine from 1e-3 to 1e-5) at the resumed second epoch
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=0.001), T_max=2, eta_min=1e-5
    )
    reference.optimizer.step()
    reference.step()
    assert rates == [(iteration, reference.get_last_lr()[0]) for iteration in (4, 5, 6)]
    final = torch.load(tmp_path / "checkpoints" / "checkpoint_final_iteration=6.pt", weights_only=True)
    assert '"learning_rate": 0.001' in final["training_settings"]["values"]


def test_a_second_training_into_one_output_dir_is_refused(tiny_dataset, tmp_path):
    output = tmp_path / "run"
    # the lock as another process holds it (a lock of this process would be re-entrant)
    with open(f"{output}.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other.write("pid 4242 on elsewhere")
        other.flush()
        cause = _initialize(tiny_dataset, output)
        assert isinstance(cause, WorkDirectoryLockedError)
        assert str(cause).startswith("another run (pid 4242 on elsewhere) is writing this output")
        assert not output.exists()
    _run(tiny_dataset, output)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]
