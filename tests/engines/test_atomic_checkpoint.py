from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Engine, Events
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
        torch.save({"iteration": name}, tmp_path / name)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_iteration=10.pt")


def test_truncated_newest_checkpoint_falls_back_to_previous(tmp_path):
    for iteration in (9, 10):
        torch.save({"weights": torch.arange(1000)}, tmp_path / f"checkpoint_iteration={iteration}.pt")
    newest = tmp_path / "checkpoint_iteration=10.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="checkpoint_iteration=10.pt cannot be read.*previous one"):
        assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_iteration=9.pt")


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


def test_epoch_end_checkpoint_follows_the_epoch_handlers(tmp_path):
    engine = Engine(lambda engine, batch: None)
    engine.state.validated = 0

    @engine.on(Events.EPOCH_COMPLETED)
    def _validate(engine):
        engine.state.validated += 1

    engine.state_dict_user_keys.append("validated")
    AtomicCheckpointSaver(str(tmp_path), {"trainer": engine}, save_interval=2, epoch_level=False, n_saved=5).attach(
        engine
    )
    engine.run([0] * 3, max_epochs=2)
    saved = {path.name: torch.load(path, weights_only=True)["validated"] for path in tmp_path.iterdir()}
    # iteration 3 ends epoch 1 without falling on the interval; iteration 6 ends epoch 2 after its validation
    assert saved == {"trainer_iteration=2.pt": 0, "trainer_iteration=4.pt": 1, "trainer_iteration=6.pt": 2}


def test_nothing_is_saved_when_the_run_raises(tmp_path):
    engine = Engine(lambda engine, batch: None)
    AtomicCheckpointSaver(str(tmp_path), {"trainer": engine}, save_final=True, save_interval=5, epoch_level=False)\
        .attach(engine)

    @engine.on(Events.ITERATION_COMPLETED(once=2))
    def _fail(engine):
        raise FloatingPointError("nan")

    with pytest.raises(FloatingPointError):
        engine.run([0] * 3, max_epochs=1)
    assert list(tmp_path.iterdir()) == []


def test_resumed_saver_keeps_the_newest_files_and_drops_later_ones(tmp_path):
    for iteration in (2, 4, 6, 8):
        torch.save({}, tmp_path / f"trainer_iteration={iteration}.pt")
    engine = Engine(lambda engine, batch: None)
    AtomicCheckpointSaver(str(tmp_path), {"trainer": engine}, save_interval=2, epoch_level=False, n_saved=2)\
        .attach(engine)
    engine.load_state_dict({"iteration": 6, "epoch_length": 10, "max_epochs": 1})
    engine.run([0] * 10)
    assert sorted(os.listdir(tmp_path)) == ["trainer_iteration=10.pt", "trainer_iteration=8.pt"]


def test_key_metric_record_survives_a_resume(tmp_path):
    def evaluator_with_saver():
        evaluator = Engine(lambda engine, batch: None)
        evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1, -1
        saver = AtomicCheckpointSaver(
            str(tmp_path), {"model": nn.Linear(1, 1)}, save_key_metric=True, key_metric_name="m",
            key_metric_filename="model.pt",
        )
        saver.attach(evaluator)
        return evaluator, saver

    def validate(evaluator, value):
        @evaluator.on(Events.ITERATION_COMPLETED)
        def _metric(engine):
            engine.state.metrics["m"] = value

        evaluator.run([0], max_epochs=1)

    evaluator, saver = evaluator_with_saver()
    validate(evaluator, 0.35)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = 0.35, 1
    record = saver.state_dict()
    stamp = (tmp_path / "model.pt").stat().st_mtime_ns
    resumed, resumed_saver = evaluator_with_saver()
    resumed_saver.load_state_dict(record)
    assert (resumed.state.best_metric, resumed.state.best_metric_epoch) == (0.35, 1)
    validate(resumed, 0.16)
    assert (tmp_path / "model.pt").stat().st_mtime_ns == stamp


def test_a_file_that_is_not_a_checkpoint_is_one_clear_error(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match=r"notes\.pt' is not a PyTorch checkpoint"):
        load_network_weights(nn.Linear(3, 2), tmp_path / "notes.pt")
    torch.save({"weights": torch.arange(1000)}, tmp_path / "cut.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "cut.pt").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.pt' is not a PyTorch checkpoint, or is truncated"):
        load_network_weights(nn.Linear(3, 2), tmp_path / "cut.pt")


def test_pickled_code_is_never_loaded(tmp_path):
    torch.save({"network": nn.Linear(3, 2)}, tmp_path / "module.pt")
    with pytest.raises(ValueError, match="not loaded because unpickling them could run code"):
        load_network_weights(nn.Linear(3, 2), tmp_path / "module.pt")


def test_checkpoint_of_another_dimensionality_is_named(tmp_path):
    torch.save(nn.Conv2d(1, 4, 3).state_dict(), tmp_path / "two_d.pt")
    with pytest.raises(ValueError, match=r"two_d\.pt' does not fit the network \(Conv3d\): the checkpoint is for a 2D "
                                         r"network, this run builds a 3D one; 1 shape mismatch"):
        load_network_weights(nn.Conv3d(1, 4, 3), tmp_path / "two_d.pt")
    torch.save(nn.Linear(3, 5).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match=r"'weight': checkpoint \(5, 3\), network \(2, 3\)"):
        load_network_weights(nn.Linear(3, 2), tmp_path / "wide.pt")
