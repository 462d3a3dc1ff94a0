"""The adversarial overlay: trains from the command line, checkpoints the critic, and resumes it exactly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from bundle_workflow import CONFIGS, TINY, config, run_recorded

from spoco_monai.engines import AdversarialSpocoTrainer

CHECKPOINT_OBJECTS = {
    "network", "teacher", "optimizer", "lr_scheduler", "trainer", "best_model_saver", "critic", "critic_optimizer",
    "training_settings",
}


def _argument(value: object) -> str:
    return repr(value) if isinstance(value, (list, dict)) else str(value)


def test_overlay_trains_from_the_command_line(tiny_dataset, tmp_path):
    overrides = {**TINY, "num_iterations": 4, "val_interval": 4, "dataset_dir": str(tiny_dataset),
                 "output_dir": str(tmp_path)}
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(config("train", "adversarial"))]
    for name, value in overrides.items():
        command += [f"--{name}", _argument(value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=CONFIGS.parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "AdversarialSpocoTrainer" in result.stderr + result.stdout
    assert "loss_critic" in result.stderr + result.stdout
    saved = torch.load(tmp_path / "checkpoints" / "checkpoint_final_iteration=4.pt", weights_only=True)
    assert set(saved) == CHECKPOINT_OBJECTS
    # the default critic (widths 64-512) on boxes of half the patch; two critic steps per batch with objects
    assert saved["critic"]["score.weight"].shape == (1, 512)
    steps = {int(state["step"]) for state in saved["critic_optimizer"]["state"].values()}
    assert len(steps) == 1 and 0 < steps.pop() <= 2 * 4


# two training volumes, a checkpoint every 3 iterations; the generator term enters after the resume point
SETTINGS = {
    "num_iterations": 6, "val_interval": 3, "checkpoint_interval": 3, "checkpoints_kept": 1, "run_validation": False,
    "train#datalist": "$@datalist['training'] + @datalist['validation']", "critic_channels": [4, 8, 8, 8],
    "adversarial_warmup": 4,
}


def _run(dataset, output, kill_at=None, names=("train", "adversarial")):
    flow, losses = run_recorded(names, kill_at, dataset_dir=str(dataset), output_dir=str(output), **SETTINGS)
    return losses, flow.parser.get_parsed_content("train#trainer")


@pytest.fixture(scope="module")
def whole_run(tiny_dataset, tmp_path_factory):
    """Losses and trainer of an uninterrupted run of the overlay with SETTINGS."""
    return _run(tiny_dataset, tmp_path_factory.mktemp("whole"))


def _assert_same_state(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for name, value in first.items():
        if isinstance(value, dict):
            _assert_same_state(value, second[name])
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, second[name]), name
        else:
            assert value == second[name], name


def test_killed_and_resumed_critic_is_bit_identical(tiny_dataset, tmp_path, whole_run):
    expected_losses, expected = whole_run
    assert isinstance(expected, AdversarialSpocoTrainer)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_dataset, tmp_path, kill_at=5)
    losses, resumed = _run(tiny_dataset, tmp_path)
    assert losses == expected_losses[3:]
    _assert_same_state(expected.critic.state_dict(), resumed.critic.state_dict())
    _assert_same_state(expected.critic_optimizer.state_dict(), resumed.critic_optimizer.state_dict())
    _assert_same_state(expected.network.state_dict(), resumed.network.state_dict())
    assert resumed.state.output["loss_terms"]["adversarial"] != 0.0


def test_warm_up_trains_as_without_the_critic(tiny_dataset, tmp_path, whole_run):
    # the seeded critic leaves every other random draw alone, and the warm-up loss is the SPOCO loss itself
    adversarial_losses, _ = whole_run
    plain_losses, _ = _run(tiny_dataset, tmp_path, names=("train",))
    assert adversarial_losses[:4] == plain_losses[:4]
    assert adversarial_losses[4] != plain_losses[4]
