from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spoco_monai.engines import ema_update, unwrap_module


def _pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    student = nn.Sequential(nn.Conv3d(1, 2, 1), nn.BatchNorm3d(2))
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(1.0)
        student[1].running_mean.fill_(4.0)
        student[1].num_batches_tracked.fill_(7)
    return teacher, student


def test_ema_update_exact_values_parameters_and_buffers():
    teacher, student = _pair()
    before = {name: value.clone() for name, value in teacher.state_dict().items()}
    ema_update(teacher, student, momentum=0.75)
    after, source = teacher.state_dict(), student.state_dict()
    for name, value in before.items():
        if value.is_floating_point():
            torch.testing.assert_close(after[name], 0.75 * value + 0.25 * source[name], rtol=0, atol=1e-6)
        else:
            assert torch.equal(after[name], source[name])
    torch.testing.assert_close(teacher[1].running_mean, torch.full((2,), 0.75 * 0.0 + 0.25 * 4.0), rtol=0, atol=0)
    assert int(teacher[1].num_batches_tracked) == 7


@pytest.mark.parametrize("momentum, expected_source", [(1.0, "teacher"), (0.0, "student")])
def test_ema_update_extreme_momenta(momentum, expected_source):
    teacher, student = _pair()
    expected = copy.deepcopy(teacher if expected_source == "teacher" else student).state_dict()
    ema_update(teacher, student, momentum)
    for name, value in teacher.state_dict().items():
        # integer buffers (counters) always follow the student
        assert torch.equal(value, expected[name] if value.is_floating_point() else student.state_dict()[name])


def test_ema_update_does_not_touch_student_or_graph():
    teacher, student = _pair()
    before = copy.deepcopy(student.state_dict())
    ema_update(teacher, student, 0.5)
    for name, value in student.state_dict().items():
        assert torch.equal(value, before[name])
    assert all(parameter.grad is None for parameter in teacher.parameters())


def test_unwrap_module():
    inner = nn.Linear(2, 2)
    assert unwrap_module(nn.DataParallel(inner)) is inner
    assert unwrap_module(inner) is inner


def test_ema_update_invalid():
    teacher, student = _pair()
    with pytest.raises(ValueError, match="momentum"):
        ema_update(teacher, student, 1.5)
    with pytest.raises(ValueError, match="differing keys"):
        ema_update(nn.Linear(2, 2), student, 0.5)
    with pytest.raises(ValueError, match="shape"):
        ema_update(nn.Linear(2, 3), nn.Linear(3, 2), 0.5)
