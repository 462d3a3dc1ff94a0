"""engines: the SPOCO trainer (student f, EMA teacher g, two views) and its checkpoint and logging helpers."""

from __future__ import annotations

from spoco_monai.engines.checkpoint import (
    AtomicCheckpointSaver,
    AtomicDiskSaver,
    latest_checkpoint,
    load_network_weights,
)
from spoco_monai.engines.ema import ema_update, unwrap_module
from spoco_monai.engines.outputs import loss_and_terms
from spoco_monai.engines.trainer import LOSS_TERMS, TEACHER_PRED, SpocoTrainer

__all__ = [
    "LOSS_TERMS",
    "TEACHER_PRED",
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "SpocoTrainer",
    "ema_update",
    "latest_checkpoint",
    "load_network_weights",
    "loss_and_terms",
    "unwrap_module",
]
