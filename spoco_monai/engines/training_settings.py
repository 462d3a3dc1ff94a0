"""The settings a training's result depends on: saved in its checkpoints, compared before a resume, and applied
to the resumed state when the user accepts new ones."""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ignite.engine import Engine
from monai.handlers import CheckpointLoader
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from spoco_monai.engines.checkpoint import read_checkpoint

__all__ = ["SETTINGS_KEY", "ResumeCheckpointLoader", "TrainingSettings"]

logger = logging.getLogger(__name__)

# the checkpoint entry that holds the settings (a key of the checkpoint's objects)
SETTINGS_KEY = "training_settings"
# the bundle's config key that accepts new settings on resume
ACCEPT_KEY = "resume_with_new_settings"
# longest value a message shows in full
SHOWN_CHARACTERS = 60
# the value of a setting that one side does not have
MISSING = "(none)"


class TrainingSettings:
    """Every setting a training's result depends on, by name, as saved in its checkpoints.

    Put the object among the checkpoint's objects under :data:`SETTINGS_KEY`, so that every checkpoint holds the
    settings that trained it, and call :meth:`check` with the checkpoint a run resumes from before it loads it
    (the bundle's ``check_data`` does): a resume is taken only with the settings it was saved with, unless new ones
    are accepted, and then :class:`ResumeCheckpointLoader` applies them to the resumed state.

    Args:
        settings: name -> value of every setting that changes the result. Values are numbers, strings, booleans,
            ``None``, lists and mappings of them, objects with a stable ``repr`` (slices, devices), torch optimizers
            (their class and ``defaults``) and learning-rate schedulers (their class and public state but the
            position). Nested names are compared one by one and named as the bundle's configs do, ``outer#inner``.
        accept_changes: go on from a checkpoint whose settings differ (the bundle's ``resume_with_new_settings``).
        fixed: names of the settings that a resumed training cannot change even when ``accept_changes``.

    Raises:
        TypeError: a value is an object without a stable description (its ``repr`` is Python's default).
    """

    def __init__(self, settings: Mapping[str, Any], accept_changes: bool = False, fixed: Sequence[str] = ()) -> None:
        self.values: dict[str, Any] = {str(name): _described(value, str(name)) for name, value in settings.items()}
        self.accept_changes = bool(accept_changes)
        self.fixed = tuple(fixed)
        self.changed = False

    def state_dict(self) -> dict[str, str]:
        """The settings as JSON text, which a checkpoint loads with ``weights_only=True``."""
        return {"values": json.dumps(self.values, sort_keys=True)}

    def check(self, checkpoint: str | os.PathLike | None) -> dict[str, tuple[Any, Any]]:
        """Compare these settings with those saved in the checkpoint a run resumes from.

        Args:
            checkpoint: the checkpoint to resume from; ``None`` for a fresh start (nothing to compare).

        Returns:
            the changed settings, flattened name -> (saved value, this run's value; :data:`MISSING` for a setting
            one side lacks); empty when they are the same. When changes are accepted, :attr:`changed` is set and a
            warning names them.

        Raises:
            ValueError: the settings differ (or the checkpoint holds none) and changes are not accepted, or one
                of the ``fixed`` settings differs; the message names each changed setting with both values.
        """
        if checkpoint is None:
            return {}
        content = read_checkpoint(checkpoint)
        saved = content.get(SETTINGS_KEY) if isinstance(content, Mapping) else None
        now = _flattened(self.values)
        if saved is None:
            if not self.accept_changes:
                raise ValueError(
                    f"the checkpoint {checkpoint} holds no training settings to compare with this run's (it was "
                    f"saved before they were recorded); set {ACCEPT_KEY} to true to resume it with this run's "
                    "settings, or choose another output_dir to start afresh."
                )
            logger.warning(f"resuming {checkpoint}, which holds no training settings, with this run's.")
            self.changed = True
            return {name: (MISSING, value) for name, value in now.items()}
        before = _flattened(json.loads(saved["values"]))
        # a setting introduced after the checkpoint was saved is null or false where it keeps the earlier behaviour
        added = {name: value for name, value in now.items() if name not in before and (value is None or value is False)}
        before.update(added)
        changes = {
            name: (before.get(name, MISSING), now.get(name, MISSING))
            for name in sorted(before.keys() | now.keys())
            if before.get(name, MISSING) != now.get(name, MISSING)
        }
        fixed = {name: change for name, change in changes.items() if name.split("#")[0] in self.fixed}
        if fixed:
            raise ValueError(
                f"the training in {checkpoint} was saved with other settings that a resumed training cannot change: "
                f"{_listed(fixed)}. Resume with the saved ones, or choose another output_dir to start afresh."
            )
        if changes and not self.accept_changes:
            raise ValueError(
                f"the training in {checkpoint} was saved with other settings: {_listed(changes)}. Resume with the "
                f"saved ones, set {ACCEPT_KEY} to true to go on with the new ones from the saved state, or choose "
                "another output_dir to start afresh."
            )
        if changes:
            logger.warning(f"resuming {checkpoint} with new settings: {_listed(changes)}.")
            self.changed = True
        return changes


class ResumeCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` for a training whose settings a :class:`TrainingSettings` checks.

    The :class:`TrainingSettings` among the objects are not loaded: :meth:`TrainingSettings.check` compares them
    before the run, and a checkpoint saved before they were recorded holds none. When the check accepted new
    settings, the optimizers and learning-rate schedules go on with this run's settings, not the checkpoint's:
    after loading, every optimizer's parameter groups take this run's hyperparameters (learning rate, weight decay,
    betas, ...), and every schedule takes this run's settings and is stepped as many times as the checkpoint's was,
    so the learning rate is the one the new schedule gives at the resumed epoch. The optimizers' state (moments),
    the networks and everything else come from the checkpoint.

    Args:
        load_path: the checkpoint.
        load_dict: the objects to load, by their checkpoint entries.
        settings: the run's settings, checked before this loader runs; ``None`` loads as ``CheckpointLoader``.
        kwargs: further ``CheckpointLoader`` arguments (``map_location``, ``strict``, ...).
    """

    def __init__(
        self, load_path: str, load_dict: dict, settings: TrainingSettings | None = None, **kwargs: Any
    ) -> None:
        kept = {name: item for name, item in load_dict.items() if not isinstance(item, TrainingSettings)}
        super().__init__(load_path=load_path, load_dict=kept, **kwargs)
        self.settings = settings

    def __call__(self, engine: Engine) -> None:
        if self.settings is None or not self.settings.changed:
            super().__call__(engine)
            return
        optimizers = [item for item in self.load_dict.values() if isinstance(item, Optimizer)]
        schedules = [item for item in self.load_dict.values() if isinstance(item, LRScheduler)]
        new_groups = [
            [{name: copy.deepcopy(value) for name, value in group.items() if name != "params"} for group in groups]
            for groups in (optimizer.param_groups for optimizer in optimizers)
        ]
        new_schedules = [copy.deepcopy(schedule.state_dict()) for schedule in schedules]
        super().__call__(engine)
        for optimizer, groups in zip(optimizers, new_groups):
            for group, values in zip(optimizer.param_groups, groups):
                group.update(values)
        for schedule, state in zip(schedules, new_schedules):
            steps = schedule.last_epoch - state["last_epoch"]
            schedule.load_state_dict(state)
            with warnings.catch_warnings():
                # replaying the schedule calls no optimizer step, of which torch would warn
                warnings.simplefilter("ignore", UserWarning)
                for _ in range(steps):
                    schedule.step()


def _described(value: Any, name: str) -> Any:
    """``value`` as JSON data (see :class:`TrainingSettings` for what is accepted)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(key): _described(item, f"{name}#{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_described(item, f"{name}#{index}") for index, item in enumerate(value)]
    if isinstance(value, Optimizer):
        return {"type": type(value).__name__, **_described(value.defaults, name)}
    if isinstance(value, LRScheduler):
        # the position in the schedule is state, not a setting
        state = value.state_dict()
        public = {key: item for key, item in state.items() if not key.startswith("_") and key != "last_epoch"}
        return {"type": type(value).__name__, **_described(public, name)}
    if type(value).__repr__ is object.__repr__:
        raise TypeError(
            f"the training setting {name!r} is a {type(value).__name__}, which has no stable description; give its "
            "settings (numbers, strings, lists, mappings) instead."
        )
    return repr(value)


def _flattened(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings flattened to ``outer#inner`` names; lists are compared whole."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flattened(value, f"{prefix}{name}#"))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _listed(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{name} {_shown(before)} -> {_shown(now)}" for name, (before, now) in changes.items())


def _shown(value: Any) -> str:
    text = MISSING if value is MISSING else json.dumps(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 3] + "..."
