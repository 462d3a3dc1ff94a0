from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Events

from spoco_monai.engines import latest_checkpoint
from spoco_monai.metrics import adapted_rand_error, symmetric_best_dice

from bundle_workflow import record_losses, rescored, workflow

pytestmark = pytest.mark.slow


def test_train_two_iterations_with_validation_and_checkpoints(tiny_dataset, tmp_path):
    flow = workflow(("train",), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path))
    flow.run()
    trainer = flow.parser.get_parsed_content("train#trainer")
    evaluator = flow.parser.get_parsed_content("validate#evaluator")
    assert trainer.state.iteration == 2
    assert set(evaluator.state.metrics) == {"val_sbd", "val_adapted_rand_error"}
    # the validation metrics are those of the labels the evaluator wrote for the one validation image
    assert evaluator.state.metrics["val_sbd"] == pytest.approx(rescored(evaluator, symmetric_best_dice))
    assert evaluator.state.metrics["val_adapted_rand_error"] == pytest.approx(rescored(evaluator, adapted_rand_error))
    checkpoints = tmp_path / "checkpoints"
    state = torch.load(latest_checkpoint(checkpoints), weights_only=True)
    assert set(state) == {
        "network", "teacher", "optimizer", "lr_scheduler", "trainer", "best_model_saver", "training_settings"
    }
    assert state["trainer"]["iteration"] == 2
    best = torch.load(checkpoints / "model.pt", weights_only=True)
    assert set(best) == set(state["network"])
    manifest = json.loads((tmp_path / "sparse_annotation.json").read_text())
    # only the training image is sparsified; the validation image keeps its dense labels
    assert list(manifest) == ["synthetic_000.nii.gz"] and len(manifest["synthetic_000.nii.gz"]) >= 1


def test_interrupted_training_resumes_from_saved_iteration(tiny_dataset, tmp_path):
    overrides = {
        "dataset_dir": str(tiny_dataset), "output_dir": str(tmp_path), "num_iterations": 4, "val_interval": 4,
        "run_validation": False,
    }
    first = workflow(("train",), **overrides)
    trainer = first.parser.get_parsed_content("train#trainer")

    @trainer.on(Events.ITERATION_COMPLETED(once=3))
    def _kill(engine):
        raise RuntimeError("simulated kill")

    with pytest.raises(RuntimeError) as error:
        first.run()
    assert "simulated kill" in str(error.value.__cause__)
    manifest = (tmp_path / "sparse_annotation.json").read_text()
    saved = torch.load(latest_checkpoint(tmp_path / "checkpoints"), weights_only=True)
    saved_iteration = saved["trainer"]["iteration"]
    assert saved_iteration >= 2

    second = workflow(("train",), **overrides)
    losses = record_losses(second)
    resumed = second.parser.get_parsed_content("train#trainer")
    started_teacher = {}

    @resumed.on(Events.ITERATION_STARTED(once=saved_iteration + 1))
    def _teacher_at_start(engine):
        started_teacher.update({k: v.clone() for k, v in engine.teacher.state_dict().items()})

    second.run()
    assert [iteration for iteration, _ in losses] == list(range(saved_iteration + 1, 5))
    assert resumed.state.iteration == 4
    for name, value in saved["teacher"].items():
        assert torch.equal(started_teacher[name], value)
    assert (tmp_path / "sparse_annotation.json").read_text() == manifest


def test_finetune_starts_below_scratch_loss(tiny_dataset, trained, tmp_path):
    common = {
        "dataset_dir": str(tiny_dataset), "num_iterations": 1, "val_interval": 1, "sparse_fraction": 0.5,
        "run_validation": False,
    }
    scratch = workflow(("train",), output_dir=str(tmp_path / "scratch"), **common)
    scratch_losses = record_losses(scratch)
    scratch.run()
    finetune = workflow(
        ("train", "finetune"), output_dir=str(tmp_path / "finetune"),
        source_checkpoint=str(trained), **common,
    )
    finetune_losses = record_losses(finetune)
    optimizer = finetune.parser.get_parsed_content("optimizer")
    assert optimizer.param_groups[0]["initial_lr"] == pytest.approx(0.0002 / 10)
    finetune.run()
    assert finetune_losses[0][1] < scratch_losses[0][1]
