from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spoco_monai.bundle_errors import innermost_cause, report_innermost_cause
from spoco_monai.data import check_dataset

BUNDLE = Path(__file__).parents[1] / "bundle"


def _wrapped(function):
    """The error ``function`` raises, wrapped as MONAI's ConfigParser wraps a failed config expression."""
    try:
        try:
            function()
        except Exception as error:
            raise RuntimeError("Failed to evaluate ConfigExpression: ...") from error
    except RuntimeError as wrapper:
        return wrapper


def test_bad_input_refused_by_a_check_is_its_message_alone(tmp_path, capsys):
    error = _wrapped(lambda: check_dataset([{"image": str(tmp_path / "missing.tif")}], 2, label_key=None))
    report_innermost_cause(type(error), error, error.__traceback__)
    assert capsys.readouterr().err == (
        f"error: dataset check failed for 1 problem(s):\n  item 0: file not found: {tmp_path / 'missing.tif'}\n"
    )


def test_any_other_error_keeps_its_traceback_and_ends_with_its_cause(capsys):
    error = _wrapped(lambda: 1 / 0)
    assert isinstance(innermost_cause(error), ZeroDivisionError)
    report_innermost_cause(type(error), error, error.__traceback__)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "RuntimeError: Failed to evaluate" in "\n".join(lines)
    assert lines[-1] == "error: ZeroDivisionError: division by zero"


def test_every_bundle_run_reports_this_way():
    imports = json.loads((BUNDLE / "configs" / "common.json").read_text())["imports"]
    assert "$import spoco_monai.bundle_errors" in imports
    # in a fresh interpreter: another test of this session may have installed its own hook (torch.distributed does)
    command = "import sys, spoco_monai.bundle_errors as e; print(sys.excepthook is e.report_innermost_cause)"
    installed = subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, check=True).stdout
    assert installed.strip() == "True"


@pytest.mark.slow
def test_bundle_run_on_a_missing_image_ends_with_one_line(tmp_path):
    configs = [str(BUNDLE / "configs" / name) for name in ("common.json", "inference.json")]
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(configs), "--bundle_root", str(BUNDLE),
         "--input_image", str(tmp_path / "missing.nii.gz"), "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-2:] == [
        "error: dataset check failed for 1 problem(s):", f"  item 0: file not found: {tmp_path / 'missing.nii.gz'}"
    ]
    assert "Traceback" not in result.stderr
