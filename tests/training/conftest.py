"""Shared helpers of the training tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spoco_monai.engines import read_checkpoint
from spoco_monai.engines.training_settings import SETTINGS_KEY


@pytest.fixture
def trained_setting() -> Callable[[Path, str], Any]:
    """A function giving a training setting saved in a model folder's final checkpoint."""

    def setting(model_folder: Path, name: str) -> Any:
        final = next((model_folder / "training" / "checkpoints").glob("checkpoint_final_iteration=*.pt"))
        return json.loads(read_checkpoint(final)[SETTINGS_KEY]["values"])[name]

    return setting
