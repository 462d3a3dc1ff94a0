"""engines: the SPOCO trainer (student f, EMA teacher g, two views), its variant with the adversarial mask critic, and
their checkpoint, resume, time-budget and logging helpers (loss terms, learning rate and embedding pictures for TensorBoard)."""

from __future__ import annotations

from spoco_monai.engines.adversarial import ADVERSARIAL_TERMS, AdversarialSpocoTrainer
from spoco_monai.engines.checkpoint import (
    AtomicCheckpointSaver,
    AtomicDiskSaver,
    latest_checkpoint,
    load_checked_state_dict,
    load_network_weights,
    read_checkpoint,
)
from spoco_monai.engines.ema import ema_update, unwrap_module
from spoco_monai.engines.embedding_image_handler import EmbeddingImageHandler
from spoco_monai.engines.embedding_pca import embedding_pca_rgb
from spoco_monai.engines.learning_rate import LEARNING_RATE_TAG, write_learning_rate
from spoco_monai.engines.outputs import loss_and_terms
from spoco_monai.engines.time_budget import TimeBudget
from spoco_monai.engines.trainer import LOSS_TERMS, TEACHER_PRED, SpocoTrainer
from spoco_monai.engines.training_settings import ResumeCheckpointLoader, TrainingSettings

__all__ = [
    "ADVERSARIAL_TERMS",
    "LEARNING_RATE_TAG",
    "LOSS_TERMS",
    "TEACHER_PRED",
    "AdversarialSpocoTrainer",
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "EmbeddingImageHandler",
    "ResumeCheckpointLoader",
    "SpocoTrainer",
    "TimeBudget",
    "TrainingSettings",
    "ema_update",
    "embedding_pca_rgb",
    "latest_checkpoint",
    "load_checked_state_dict",
    "load_network_weights",
    "loss_and_terms",
    "read_checkpoint",
    "unwrap_module",
    "write_learning_rate",
]
