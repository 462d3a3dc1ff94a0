"""``bench/points_dsb.py``: the annotation cost model, and one tiny row from clicks end to end on real DSB2018 data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import points_dsb

REPOSITORY = Path(__file__).resolve().parents[2]
DSB = REPOSITORY.parent / "shared" / "data" / "dsb2018_fluo"

# the bench imports its siblings (peers, sparse_dsb) as a script does


@pytest.fixture
def tiny_dsb(tmp_path) -> Path:
    """A copy of dsb2018_fluo (links) with its first two train and first val image."""
    if not (DSB / "val" / "images").is_dir():
        pytest.skip(f"real data not found at {DSB} (the shared data folder ../shared/data is absent)")
    folder = tmp_path / "dsb"
    for split, count in (("train", 2), ("val", 1)):
        for kind in ("images", "labels"):
            (folder / split / kind).mkdir(parents=True)
        for path in sorted((DSB / split / "images").glob("*.tif"))[:count]:
            for kind in ("images", "labels"):
                (folder / split / kind / path.name).symlink_to(DSB / split / kind / path.name)
    return folder


def test_annotation_seconds_follow_the_cost_model():
    args = argparse.Namespace(seed=0, tune_images=1)
    counts = {"a.tif": 10, "b.tif": 25, "c.tif": 0}
    assert points_dsb.annotation_seconds("points@1.0", counts, args) == pytest.approx(35 * 2.4)
    # 10% of 10 and of 25 nuclei, rounded half up: 1 and 3
    assert points_dsb.annotation_seconds("points@0.1", counts, args) == pytest.approx(4 * 2.4)
    assert points_dsb.annotation_seconds("spoco@0.1", counts, args) == pytest.approx(4 * 79.0)
    assert points_dsb.annotation_seconds("dense", counts, args) == points_dsb.annotation_seconds("unet3", counts, args)
    assert points_dsb.annotation_seconds("scribbles", counts, args) == pytest.approx(35 * 4.8)
    assert points_dsb.annotation_seconds("boxes", counts, args) == pytest.approx(35 * 7.0)
    assert points_dsb.annotation_seconds("classical", counts, args) in (0.0, 10 * 79.0, 25 * 79.0)


def test_one_row_from_clicks_trains_scores_and_is_skipped_when_run_again(tiny_dsb, tmp_path, capsys):
    argv = [
        "--rows", "points@0.1", "--iterations", "2", "--checkpoint-interval", "1", "--lr-steps", "1",
        "--data-dir", str(tiny_dsb), "--output-dir", str(tmp_path / "out"),
    ]
    points_dsb.main(argv)
    first = capsys.readouterr()
    stored = json.loads((tmp_path / "out" / "points@0.1.json").read_text())
    result = stored["result"]
    assert stored["settings"]["iterations"] == 2 and result["train_s"] > 0
    assert 0.0 <= result["sbd"] <= 1.0 and 0.0 <= result["map"] <= 1.0 and result["annotation_s"] > 0
    # the clustering's settings were chosen on val: the best of the grid's trials
    assert len(result["clustering_trials"]) == 28
    assert result["map"] == max(result["clustering_trials"].values())
    assert result["clustering_trials"][json.dumps(result["clustering"])] == result["map"]
    assert "| points@0.1 | clicks |" in first.out and "click 2.4 s" in first.out
    # the second score, by one clustering of the embeddings for every row
    assert 0.0 <= result["mws"]["sbd"] <= 1.0 and 0.0 <= result["mws"]["map"] <= 1.0
    assert f"| points@0.1 | clicks | {result['mws']['sbd']:.3f} |" in first.out.splitlines()[-1]
    points_dsb.main(argv)
    second = capsys.readouterr()
    assert "read from" in second.err and second.out.splitlines()[-1] == first.out.splitlines()[-1]
