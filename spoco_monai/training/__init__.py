"""Training on a user's own annotated volumes: checks and summaries of the pairs, the training, the model folder."""

from __future__ import annotations

from spoco_monai.training.annotations import AnnotatedVolume, describe_volumes, summarize_pairs
from spoco_monai.training.model_folder import (
    MODEL_CONFIG,
    MODEL_RECORD,
    MODEL_WEIGHTS,
    TRAINING_FOLDER,
    is_model_folder,
    read_model_folder,
    write_model_folder,
)

__all__ = [
    "AnnotatedVolume",
    "MODEL_CONFIG",
    "MODEL_RECORD",
    "MODEL_WEIGHTS",
    "TRAINING_FOLDER",
    "describe_volumes",
    "is_model_folder",
    "read_model_folder",
    "summarize_pairs",
    "write_model_folder",
]
