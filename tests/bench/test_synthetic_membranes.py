"""bench/synthetic_membranes.py: the rows it scores and the table it prints, on small generated volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import synthetic_membranes

REPOSITORY = Path(__file__).resolve().parents[2]
MODEL = REPOSITORY / "bundle" / "models" / "model.pt"


@pytest.mark.slow
def test_every_network_runs_with_and_without_flips_beside_the_classical_watershed(tmp_path):
    rows = synthetic_membranes.run([MODEL], tmp_path, shape=(32, 64, 64))
    methods = [method for _, method, _ in rows]
    assert methods == ["model.pt", "model.pt, test-time flips", "classical seeded watershed"] * 2
    assert [volume for volume, _, _ in rows] == [name for name in synthetic_membranes.VOLUMES for _ in range(3)]
    for _, _, row in rows:
        assert 0.0 <= row["arand"] <= 1.0 and 0.0 <= row["sbd"] <= 1.0
        assert row["segments"] > 0 and row["objects"] > 0 and row["seconds"] > 0
    # one folder per generated volume, kept under the work folder for later runs
    assert len(list(tmp_path.iterdir())) == 2
    table = synthetic_membranes.markdown_table(rows)
    assert table.splitlines()[0] == "| volume | method | ARand | SBD | segments / cells | s |"
    assert len(table.splitlines()) == 2 + len(rows)
    assert f"| seed 7 (selection) | model.pt | {rows[0][2]['arand']:.4f} |" in table
