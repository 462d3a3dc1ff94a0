"""Helpers of the bundle tests: run the bundle's configs through MONAI's ConfigWorkflow with tiny settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ignite.engine import Engine, Events
from monai.bundle import ConfigWorkflow

CONFIGS = Path(__file__).resolve().parents[2] / "bundle" / "configs"

# A network, patch and loss small enough for a fast CPU iteration; the validation window must stay longer than
# the longest Mutex Watershed offset (27 voxels).
TINY = {
    "device": "$torch.device('cpu')",
    "amp": False,
    "num_workers": 0,
    "patch_size": [16, 24, 24],
    "segmentation#roi_size": [32, 32, 32],
    # an untrained network gives noisy affinities, on which the Mutex Watershed is slow without strides
    "clustering": "mws",
    "clustering_kwargs": {"strides": [4, 4, 4]},
    "patches_per_volume": 1,
    "max_anchors": 2,
    "max_instances": 8,
    "network_channels": [8, 16],
    "network_strides": [2],
    "num_iterations": 2,
    "val_interval": 2,
    "checkpoint_interval": 1,
}


def config(*names: str) -> list[str]:
    """Paths of the bundle's configs ``names``, layered in order on ``common.json`` as every bundle command does."""
    return [str(CONFIGS / f"{name}.json") for name in ("common", *names)]


def workflow(names: tuple[str, ...], **overrides) -> ConfigWorkflow:
    """An initialised ConfigWorkflow of the bundle's configs ``names`` (layered in order) with ``overrides``."""
    flow = ConfigWorkflow(config_file=config(*names), workflow_type=None, **{**TINY, **overrides})
    flow.initialize()
    return flow


def record_losses(flow: ConfigWorkflow) -> list[tuple[int, float]]:
    """Attach a recorder of (iteration, loss) to the workflow's trainer and return its list."""
    losses: list[tuple[int, float]] = []
    trainer = flow.parser.get_parsed_content("train#trainer")

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine):
        losses.append((engine.state.iteration, float(engine.state.output["loss"].detach())))

    return losses


def run_recorded(
    names: tuple[str, ...], kill_at: int | None = None, **overrides
) -> tuple[ConfigWorkflow, list[tuple[int, float]]]:
    """Run the workflow of ``names``, recording its losses; returns the workflow and the (iteration, loss) pairs.

    With ``kill_at``, the run is killed after that iteration: ``KeyboardInterrupt`` propagates.
    """
    flow = workflow(names, **overrides)
    losses = record_losses(flow)
    if kill_at is not None:

        @flow.parser.get_parsed_content("train#trainer").on(Events.ITERATION_COMPLETED(once=kill_at))
        def _kill(engine):
            raise KeyboardInterrupt

    flow.run()
    return flow, losses


def rescored(evaluator: Engine, metric: Callable) -> float:
    """``metric(prediction, label)`` of the one validation image the evaluator's last iteration segmented."""
    (item,) = evaluator.state.output
    return float(metric(item["pred"], item["label"]))
