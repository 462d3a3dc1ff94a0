"""The set-up entry points of the README: what `make demo` says at its end, and `make notebook`."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _planned(target: str) -> str:
    """The commands ``make TARGET`` would run, as if nothing were installed yet (nothing is run)."""
    return subprocess.run(
        ["make", "--dry-run", "--always-make", target], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_demo_ends_by_saying_how_to_call_the_commands():
    last = _planned("demo").strip().splitlines()[-1]
    assert "source .venv/bin/activate" in last and ".venv/bin/spoco-monai" in last


def test_notebook_installs_its_extra_and_opens_the_quick_start():
    planned = _planned("notebook")
    assert 'pip install --quiet -e ".[notebook]"' in planned
    assert planned.strip().splitlines()[-1] == ".venv/bin/jupyter lab notebooks/quickstart.ipynb"
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "jupyterlab" in setup["options.extras_require"]["notebook"]
