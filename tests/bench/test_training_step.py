"""The table of ``bench/training_step.py`` and a short run of it on real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import training_step

REPOSITORY = Path(__file__).resolve().parents[2]
DSB = REPOSITORY.parent / "shared" / "data" / "dsb2018_fluo"


def test_table_lists_the_parts_in_order_with_shares_and_ratios():
    spoco = {"data": 0.02, "network forward": 0.03, "teacher forward": 0.01, "loss: consistency": 0.04,
             "network backward": 0.05, "optimizer": 0.01, "iteration": 0.2}
    peer = {"data": 0.001, "network forward": 0.02, "network backward": 0.028, "optimizer": 0.001, "iteration": 0.05}
    lines = training_step.markdown_table(spoco, peer).splitlines()
    assert lines[0] == "| part | SPOCO ms | share | peer ms | share |"
    assert lines[2] == "| data | 20.0 | 10% | 1.0 | 2% |"
    assert lines[4] == "| teacher forward | 10.0 | 5% | - | - |"
    assert [line.split(" | ")[0] for line in lines[2:8]] == [
        "| data", "| network forward", "| teacher forward", "| loss: consistency", "| network backward", "| optimizer"
    ]
    assert lines[8] == "| **iteration** | 200.0 | 100% | 50.0 | 100% |"
    # (0.03 + 0.01 + 0.05 + 0.01) / 0.05
    assert lines[-1] == "SPOCO / peer iteration: 4.00; SPOCO's networks and optimiser alone / peer iteration: 2.00"


def test_part_times_medians_leave_out_the_warmup():
    times = training_step.PartTimes(clock=lambda: 0.0)
    for seconds in (9.0, 1.0, 3.0, 2.0):
        times.add("data", seconds)
        times.add("data", 1.0)
        times.finish(total=seconds + 1.0)
    assert times.medians(warmup=1) == {"data": 3.0, "iteration": 3.0}
    with pytest.raises(ValueError, match="no iteration left"):
        times.medians(warmup=4)


def test_short_run_on_real_data_times_every_part(tmp_path, capsys):
    if not (DSB / "train" / "images").is_dir():
        pytest.skip(f"real data not found at {DSB} (the shared data folder ../shared/data is absent)")
    args = training_step.parse_arguments(["--cases", "dsb@0.1", "--iterations", "2", "--warmup", "1",
                                          "--train-images", "2"])
    spoco, peer = training_step.measure_case("dsb@0.1", args)
    expected = set(training_step.PARTS) - {"loss: foreground"} | {"iteration"}
    assert set(spoco) == expected
    assert spoco["iteration"] >= sum(seconds for part, seconds in spoco.items() if part != "iteration") * 0.99
    assert {"data", "network forward", "loss backward: other", "network backward", "optimizer"} <= set(peer)
