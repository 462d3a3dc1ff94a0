"""The set-up: what `make demo` says at its end, `make notebook`, and which dependencies are required or extras."""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _planned(target: str) -> str:
    """The commands ``make TARGET`` would run, as if nothing were installed yet (nothing is run)."""
    return subprocess.run(
        # without the directory lines make prints when it runs inside another make (as under `make test`)
        ["make", "--dry-run", "--always-make", "--no-print-directory", target],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout


@needs_make
def test_demo_ends_by_saying_how_to_call_the_commands():
    last = _planned("demo").strip().splitlines()[-1]
    assert "source .venv/bin/activate" in last and ".venv/bin/spoco-monai" in last


@needs_make
def test_notebook_installs_its_extra_and_opens_the_quick_start():
    planned = _planned("notebook")
    assert 'pip install --quiet -e ".[notebook]"' in planned
    assert planned.strip().splitlines()[-1] == ".venv/bin/jupyter lab notebooks/quickstart.ipynb"
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "jupyterlab" in setup["options.extras_require"]["notebook"]


# import names of the distributions in setup.cfg that differ from them
IMPORT_NAMES = {"pillow": "PIL", "scikit-image": "skimage", "bioimage-cpp": "bioimage_cpp", "pytorch-ignite": "ignite",
                "pyyaml": "yaml"}


def _requirements(text: str) -> set[str]:
    names = {re.split(r"[<>=\[; ]", line.strip())[0].lower() for line in text.strip().splitlines()}
    return {IMPORT_NAMES.get(name, name.replace("-", "_")) for name in names}


def _module_level_imports() -> set[str]:
    """Top-level names of the packages that modules of spoco_monai import when they are imported."""
    names = set()
    for path in (ROOT / "spoco_monai").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"spoco_monai"}


def test_what_modules_import_is_required_and_the_rest_is_an_extra():
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    required = _requirements(setup["options"]["install_requires"])
    assert _module_level_imports() <= required
    extras = setup["options.extras_require"]
    assert {"hdbscan", "matplotlib"} <= _requirements(extras["hdbscan"]) | _requirements(extras["figures"])
    assert {"dask", "distributed"} <= _requirements(extras["distributed"])
    assert not {"hdbscan", "matplotlib", "dask", "distributed"} & required


def test_missing_optional_packages_are_named_with_their_extra(monkeypatch):
    from monai.utils import OptionalImportError

    from spoco_monai.clustering import hdbscan_clustering
    from spoco_monai.inferers import SegmentationSettings
    from spoco_monai.visualize import save_segmentation_figure

    monkeypatch.setitem(sys.modules, "hdbscan", None)  # an import of it now fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ValueError, match=r"needs the hdbscan package, .*pip install 'spoco-monai\[hdbscan\]'"):
        SegmentationSettings((8, 8), blend="embeddings", clustering="hdbscan", clustering_kwargs={"min_size": 5})
    with pytest.raises(OptionalImportError, match=r"pip install 'spoco-monai\[hdbscan\]'"):
        hdbscan_clustering(np.zeros((2, 8, 8), np.float32), min_size=5)
    with pytest.raises(OptionalImportError, match=r"the figure needs matplotlib, .*pip install 'spoco-monai\[figures\]'"):
        save_segmentation_figure(np.zeros((4, 4)), np.zeros((4, 4, 3)), np.zeros((4, 4), int), "unused.png")
