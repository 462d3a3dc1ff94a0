"""Execute the quick-start notebook end to end with a tiny setting and check what it reports."""

from __future__ import annotations

import re
import sys
import tempfile
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
    r"\|DiC\|=(?P<dic>\d+)\s+objects=(?P<objects>\d+) \(ground truth (?P<truth>\d+)\)",
    re.MULTILINE,
)
# An extra cell scores every segmentation again, from scikit-image's contingency table and adapted Rand error.
REFERENCE_CELL = """
from skimage.metrics import adapted_rand_error as skimage_adapted_rand_error
from skimage.metrics import contingency_table

for method, segmentation in segmentations.items():
    table = contingency_table(ground_truth, segmentation).toarray()  # pixels per (true id, segment id)
    truth_sizes, segment_sizes = table[1:].sum(1), table[:, 1:].sum(0)
    objects = table[1:, 1:][truth_sizes > 0][:, segment_sizes > 0]
    truth_sizes, segment_sizes = truth_sizes[truth_sizes > 0, None], segment_sizes[segment_sizes > 0]
    dice = 2 * objects / (truth_sizes + segment_sizes)
    sbd = min(dice.max(1).mean(), dice.max(0).mean()) if objects.size else 0.0
    # above an IoU of one half every object has at most one partner
    matched = np.count_nonzero(objects / (truth_sizes + segment_sizes - objects) > 0.5)
    ap = matched / (len(truth_sizes) + len(segment_sizes) - matched)
    arand = skimage_adapted_rand_error(ground_truth, segmentation)[0]
    print(f"reference {method} SBD={sbd:.3f} AP@0.5={ap:.3f} adapted_Rand_error={arand:.3f}")
"""
REFERENCE_LINE = re.compile(
    r"^reference (?P<method>\S+) SBD=(?P<sbd>\S+) AP@0\.5=(?P<ap>\S+) adapted_Rand_error=(?P<arand>\S+)$", re.MULTILINE
)
INTERPRETER_MARKER = "kernel interpreter: "
# the reference scores, then which interpreter ran the kernel
EXTRA_CELLS = [REFERENCE_CELL, f"import sys\nprint({INTERPRETER_MARKER!r} + sys.executable)"]


def _stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")


def _has_figure(cell: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed_notebook(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    """The notebook after running every cell in a python3 kernel with :data:`SMALL_SETTING`."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # the extra cells run after the notebook's own; the file itself is not changed
    notebook.cells.extend(new_code_cell(source) for source in EXTRA_CELLS)
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


def test_synthetic_fallback_is_said_in_a_printed_line(tmp_path, monkeypatch, capsys) -> None:
    """Run from a folder without the data, the settings, imports and data cells say they use synthetic images."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    data_cell = next(source for source in code if "find_dsb2018" in source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPOCO_NB_N_IMAGES", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    namespace: dict = {}
    for source in (*code[:2], data_cell):
        exec(source, namespace)
    assert (
        "DSB2018 data not found (no shared/data/dsb2018_fluo beside the repository; set DATA_DIR or SPOCO_NB_DATA_DIR "
        "to its folder): using synthetic 2D images of membrane-stained tissue instead"
    ) in capsys.readouterr().out


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
    references = {match["method"]: match for match in REFERENCE_LINE.finditer(text)}
    assert sorted(references) == expected
    names = ("sbd", "ap", "arand")
    for method, match in scores.items():
        assert [match[name] for name in names] == [references[method][name] for name in names]
        assert int(match["dic"]) == abs(int(match["objects"]) - int(match["truth"]))


@pytest.mark.slow
def test_notebook_draws_the_figures(executed_notebook: nbformat.NotebookNode) -> None:
    code_cells = [cell for cell in executed_notebook.cells if cell.cell_type == "code"]
    # sparse-label figure, loss curve and the final panel figure (the notebook's last cell)
    assert sum(_has_figure(cell) for cell in code_cells) >= 3
    assert _has_figure(code_cells[-len(EXTRA_CELLS) - 1])
