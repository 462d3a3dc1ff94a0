"""Execute the quick-start notebook end to end with a tiny setting and check what it reports."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"

# Read by the notebook's first code cell. One thread per process: on a few shared cores, several torch threads
# competing with other processes make the small convolutions many times slower.
SMALL_SETTING = {
    "SPOCO_NB_ITERATIONS": "3",
    "SPOCO_NB_PATCH_SIZE": "64",
    "SPOCO_NB_N_IMAGES": "2",
    "SPOCO_NB_BATCH_SIZE": "2",
    "OMP_NUM_THREADS": "1",
}
METRIC_LINE = re.compile(
    r"^(?P<method>MWS|HDBSCAN|mask)\s+SBD=(?P<sbd>\S+)\s+AP@0\.5=(?P<ap>\S+)\s+adapted_Rand_error=(?P<arand>\S+)\s+"
    r"\|DiC\|=(?P<dic>\d+)",
    re.MULTILINE,
)
INTERPRETER_MARKER = "kernel interpreter: "


def _stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")


def _has_figure(cell: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed_notebook(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    """The notebook after running every cell in a python3 kernel with :data:`SMALL_SETTING`."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # An extra last cell reports which interpreter ran the kernel; the file itself is not changed.
    notebook.cells.append(new_code_cell(f"import sys\nprint({INTERPRETER_MARKER!r} + sys.executable)"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SMALL_SETTING.items():
            patch.setenv(name, value)
        # The kernel inherits the environment: synthetic fallback data, if written, land in pytest's folder.
        patch.setenv("TMPDIR", str(tmp_path_factory.mktemp("notebook_tmp")))
        client = NotebookClient(
            notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        )
        client.execute()
    return notebook


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells)


@pytest.mark.slow
def test_notebook_runs_in_the_test_interpreter(executed_notebook: nbformat.NotebookNode) -> None:
    output = _stream_text(executed_notebook.cells[-1])
    assert output.strip() == f"{INTERPRETER_MARKER}{sys.executable}"


@pytest.mark.slow
def test_notebook_reads_the_small_setting(executed_notebook: nbformat.NotebookNode) -> None:
    text = "".join(_stream_text(cell) for cell in executed_notebook.cells if cell.cell_type == "code")
    assert "ITERATIONS=3 PATCH_SIZE=64 N_IMAGES=2" in text
    assert "Using the DSB2018 nuclei images" in text or ": using synthetic 2D images" in text
    assert len(re.findall(r"^iteration\s+\d+: loss \d", text, re.MULTILINE)) == 3


@pytest.mark.slow
def test_notebook_reports_metrics_of_every_segmentation(executed_notebook: nbformat.NotebookNode) -> None:
    text = "".join(_stream_text(cell) for cell in executed_notebook.cells if cell.cell_type == "code")
    scores = {match["method"]: match for match in METRIC_LINE.finditer(text)}
    # the foreground-mask yardstick exists only for images with background (not for the synthetic fallback)
    expected = ["HDBSCAN", "MWS", "mask"] if "Using the DSB2018 nuclei images" in text else ["HDBSCAN", "MWS"]
    assert sorted(scores) == expected
    for match in scores.values():
        for name in ("sbd", "ap", "arand"):
            assert 0.0 <= float(match[name]) <= 1.0


@pytest.mark.slow
def test_notebook_draws_the_figures(executed_notebook: nbformat.NotebookNode) -> None:
    code_cells = [cell for cell in executed_notebook.cells if cell.cell_type == "code"]
    # sparse-label figure, loss curve and the final panel figure (the cell before the interpreter check)
    assert sum(_has_figure(cell) for cell in code_cells) >= 3
    assert _has_figure(code_cells[-2])
