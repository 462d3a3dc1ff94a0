from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Engine
from torch import nn

from spoco_monai.engines import AtomicCheckpointSaver, AtomicDiskSaver, latest_checkpoint, load_network_weights


def _engine_with_saver(tmp_path, network: nn.Module, **saver_kwargs) -> Engine:
    engine = Engine(lambda engine, batch: None)
    AtomicCheckpointSaver(str(tmp_path), {"network": network, "trainer": engine}, **saver_kwargs).attach(engine)
    return engine


def test_every_saver_is_atomic(tmp_path):
    saver = AtomicCheckpointSaver(
        str(tmp_path), {"network": nn.Linear(2, 2)}, save_final=True, final_filename="final.pt",
        save_key_metric=True, key_metric_name="m", save_interval=1,
    )
    handlers = [saver._final_checkpoint.save_handler, saver._key_metric_checkpoint.save_handler,
                saver._interval_checkpoint.save_handler]
    assert all(isinstance(handler, AtomicDiskSaver) and handler._atomic for handler in handlers)
    assert handlers[0].filename == "final.pt" and handlers[2].filename is None


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    network = nn.Linear(2, 2)
    engine = _engine_with_saver(tmp_path, network, save_interval=2, epoch_level=False, n_saved=1)
    engine.run([0] * 2, max_epochs=1)
    first = tmp_path / "checkpoint_iteration=2.pt"
    content = first.read_bytes()

    def failing_save(obj, file, *args, **kwargs):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    engine = _engine_with_saver(tmp_path, network, save_interval=1, epoch_level=False, n_saved=1)
    with pytest.raises(OSError, match="disk full"):
        engine.run([0], max_epochs=1)
    assert first.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_iteration=2.pt"]


def test_latest_checkpoint_picks_highest_iteration(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for name in ("checkpoint_iteration=9.pt", "checkpoint_iteration=10.pt", "checkpoint_final_iteration=4.pt",
                 "model.pt", "other_iteration=99.pt"):
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_iteration=10.pt")


@pytest.mark.parametrize("layout", ["plain", "network", "model"])
def test_load_network_weights(tmp_path, layout):
    torch.manual_seed(0)
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    state = source.state_dict()
    content = state if layout == "plain" else {layout: state, "optimizer": {"state": {}}}
    torch.save(content, tmp_path / "c.pt")
    assert load_network_weights(target, tmp_path / "c.pt") is target
    assert torch.equal(target.weight, source.weight)


def test_load_network_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_network_weights(nn.Linear(3, 2), tmp_path / "none.pt")
    torch.save({"network": nn.Linear(3, 2).state_dict()}, tmp_path / "c.pt")
    with pytest.raises(KeyError, match="teacher"):
        load_network_weights(nn.Linear(3, 2), tmp_path / "c.pt", key="teacher")
