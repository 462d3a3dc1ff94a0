"""Exponential moving average of a student network into a teacher network (SPOCO's g)."""

from __future__ import annotations

import torch
from torch import nn


def unwrap_module(network: nn.Module) -> nn.Module:
    """Return the module inside a ``DataParallel``/``DistributedDataParallel`` wrapper, or ``network`` itself."""
    if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return network.module
    return network


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Update ``teacher`` in place: ``teacher <- momentum * teacher + (1 - momentum) * student``.

    Parameters and floating-point buffers (e.g. BatchNorm running statistics) are averaged; integer buffers
    (e.g. ``num_batches_tracked``) are copied, since averaging counts has no meaning.

    ignite's ``EMAHandler`` does the same arithmetic, but it deep-copies the model into a teacher it owns, so the
    teacher could not be a separately configured object (needed by checkpoints in a bundle config without a reference
    cycle through the trainer), and it updates once per ignite event rather than after each optimiser step.

    Args:
        teacher: the moving-average network g; its parameters are never trained directly.
        student: the trained network f (a ``DistributedDataParallel`` wrapper is unwrapped); same architecture.
        momentum: m in [0, 1]; 1 keeps the teacher, 0 copies the student.

    Raises:
        ValueError: ``momentum`` outside [0, 1], or the two networks have different parameters or buffers.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}.")
    teacher, student = unwrap_module(teacher), unwrap_module(student)
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    if teacher_state.keys() != student_state.keys():
        missing = sorted(set(student_state) ^ set(teacher_state))
        raise ValueError(f"teacher and student must have the same parameters and buffers; differing keys: {missing}.")
    for name, teacher_value in teacher_state.items():
        student_value = student_state[name].detach()
        if teacher_value.shape != student_value.shape:
            raise ValueError(
                f"teacher and student differ in '{name}': shape {tuple(teacher_value.shape)} "
                f"vs {tuple(student_value.shape)}."
            )
        if teacher_value.is_floating_point():
            teacher_value.mul_(momentum).add_(student_value.to(teacher_value.dtype), alpha=1.0 - momentum)
        else:
            teacher_value.copy_(student_value)
