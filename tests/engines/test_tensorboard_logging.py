from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import LrScheduleHandler, TensorBoardStatsHandler
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from spoco_monai.engines import EmbeddingImageHandler, SpocoTrainer, embedding_pca_rgb, write_learning_rate


class _Recorder:
    """Stand-in for a SummaryWriter that keeps what it is given."""

    def __init__(self):
        self.images, self.scalars = [], []

    def add_image(self, tag, image, step, dataformats):
        self.images.append((tag, np.asarray(image), step, dataformats))

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass


class _SquaredEmbedding(nn.Module):
    """Stand-in for SpocoLoss with its call signature."""

    def forward(self, embeddings, target, teacher_embeddings):
        return ((embeddings - teacher_embeddings) ** 2).mean() + (embeddings**2).mean() + 0.0 * target.sum()


def _network(spatial_dims: int = 2, out_channels: int = 4) -> nn.Module:
    torch.manual_seed(0)
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if spatial_dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    return nn.Sequential(conv(1, 3, 3, padding=1), norm(3), nn.ReLU(), conv(3, out_channels, 1))


def _image(*spatial: int) -> torch.Tensor:
    return torch.rand(1, *spatial, generator=torch.Generator().manual_seed(2))


def _run(handler, iterations: int) -> Engine:
    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)
    engine.run(range(iterations), max_epochs=1)
    return engine


def _events(folder: Path) -> list[EventAccumulator]:
    accumulators = [EventAccumulator(str(path)) for path in sorted(folder.glob("events.out.tfevents.*"))]
    return [accumulator.Reload() for accumulator in accumulators]


def _decoded(event) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))


def test_embedding_pca_rgb_exact_values_for_one_channel():
    rgb = embedding_pca_rgb(np.array([[[0.0, 1.0], [2.0, 3.0]]]))
    # centred values -1.5..1.5; the 1st and 99th percentiles are -1.47 and 1.47
    expected_red = np.array([[0.0, 0.97 / 2.94], [1.97 / 2.94, 1.0]])
    np.testing.assert_allclose(rgb[..., 0], expected_red, atol=1e-6)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.float32
    assert not rgb[..., 1:].any()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_embedding_pca_rgb_red_grows_with_the_largest_loading_whatever_the_svd_sign(sign):
    line = torch.linspace(-1.0, 1.0, 40)
    embeddings = sign * torch.stack([line, 0.5 * line, 0.1 * line.cos()]).reshape(3, 5, 8)
    rgb = embedding_pca_rgb(embeddings)
    assert rgb.shape == (5, 8, 3) and 0.0 <= rgb.min() and rgb.max() <= 1.0
    red = rgb[..., 0].reshape(-1)
    # the first component is along (1, 0.5, 0); its largest loading (channel 0) is made positive
    order = np.argsort(embeddings[0].reshape(-1).numpy())
    assert np.all(np.diff(red[order]) >= 0) and red[order][-1] > red[order][0]


def test_embedding_pca_rgb_rejects_a_vector():
    with pytest.raises(ValueError, match=r"\(E, \*S\)"):
        embedding_pca_rgb(np.zeros(4))


@pytest.mark.parametrize("spatial, roi_size", [((9, 10), (8, 8)), ((5, 9, 10), (4, 6, 8))])
def test_embedding_images_of_the_middle_slice_of_the_centre_patch(spatial, roi_size):
    network = _network(len(spatial))
    image = _image(*spatial)
    recorder = _Recorder()
    handler = EmbeddingImageHandler(network, [{"image": image}], interval=2, roi_size=roi_size, summary_writer=recorder)
    _run(handler, 5)

    assert [(tag, step) for tag, _, step, _ in recorder.images] == [
        ("embedding_pca_input", 2), ("embedding_pca", 2), ("embedding_pca_input", 4), ("embedding_pca", 4)
    ]
    _, raw, _, raw_format = recorder.images[0]
    _, pca, _, pca_format = recorder.images[1]
    assert raw_format == "CHW" and raw.shape == (1, *roi_size[-2:])
    assert pca_format == "HWC" and pca.shape == (*roi_size[-2:], 3)
    assert raw.min() == 0.0 and raw.max() == 1.0 and 0.0 <= pca.min() and pca.max() <= 1.0

    # the centre crop of the image, its middle Z slice in 3D
    start = [(size - roi) // 2 for size, roi in zip(spatial, roi_size)]
    patch = image[(slice(None), *(slice(s, s + roi) for s, roi in zip(start, roi_size)))]
    with torch.no_grad():
        embeddings = network.eval()(patch[None])[0]
    middle = (slice(None),) if len(spatial) == 2 else (slice(None), roi_size[0] // 2)
    np.testing.assert_array_equal(pca, embedding_pca_rgb(embeddings[middle]))
    np.testing.assert_array_equal(recorder.images[3][1], pca)


def test_embedding_images_in_the_event_file(tmp_path):
    handler = EmbeddingImageHandler(
        _network(3), [{"image": _image(6, 12, 10)}], interval=1, roi_size=(4, 8, 8), log_dir=str(tmp_path)
    )
    _run(handler, 1)
    (events,) = _events(tmp_path)
    assert set(events.Tags()["images"]) == {"embedding_pca", "embedding_pca_input"}
    (image,) = events.Images("embedding_pca")
    assert (image.step, image.height, image.width) == (1, 8, 8)
    decoded = _decoded(image)
    assert decoded.shape == (8, 8, 3) and decoded.dtype == np.uint8 and decoded.max() > 0


def test_whole_image_without_roi_size_and_padding_of_a_small_image():
    recorder = _Recorder()
    _run(EmbeddingImageHandler(_network(), [{"image": _image(5, 7)}], interval=1, summary_writer=recorder), 1)
    assert recorder.images[1][1].shape == (5, 7, 3)
    recorder = _Recorder()
    handler = EmbeddingImageHandler(_network(), [{"image": _image(5, 7)}], 1, roi_size=(8, 8), summary_writer=recorder)
    _run(handler, 1)
    assert recorder.images[1][1].shape == (8, 8, 3)


@pytest.mark.parametrize("out_channels", [1, 2])
def test_fewer_than_three_embedding_channels_leave_the_missing_colours_black(out_channels):
    recorder = _Recorder()
    network = _network(out_channels=out_channels)
    _run(EmbeddingImageHandler(network, [{"image": _image(8, 8)}], interval=1, summary_writer=recorder), 1)
    pca = recorder.images[1][1]
    assert pca[..., :out_channels].max() == 1.0
    assert not pca[..., out_channels:].any()


def test_network_modes_restored_and_weights_statistics_and_random_state_untouched():
    network = _network().train()
    network[1].eval()  # a frozen normalisation layer keeps its own mode
    state = copy.deepcopy(network.state_dict())
    rng = torch.get_rng_state()
    recorder = _Recorder()
    _run(EmbeddingImageHandler(network, [{"image": _image(8, 8)}], interval=1, summary_writer=recorder), 3)
    assert network.training and network[0].training and not network[1].training
    for name, value in network.state_dict().items():
        assert torch.equal(value, state[name])
    assert torch.equal(torch.get_rng_state(), rng)
    assert np.array_equal(recorder.images[1][1], recorder.images[5][1])


def _trainer(network, handlers, iterations=3, epochs=1, optimizer=None) -> SpocoTrainer:
    generator = torch.Generator().manual_seed(1)
    batches = [
        {
            "image": torch.rand(2, 1, 8, 8, generator=generator),
            "image_view2": torch.rand(2, 1, 8, 8, generator=generator),
            "label": torch.randint(0, 3, (2, 1, 8, 8), generator=generator),
        }
        for _ in range(iterations)
    ]
    optimizer = optimizer or torch.optim.SGD(network.parameters(), lr=0.1)
    return SpocoTrainer(
        device="cpu", max_epochs=epochs, train_data_loader=batches, network=network, optimizer=optimizer,
        loss_function=_SquaredEmbedding(), ema_momentum=0.9, train_handlers=handlers,
    )


def test_training_with_the_handler_gives_the_same_weights_as_without():
    plain = _network()
    _trainer(plain, []).run()
    logged = _network()
    handler = EmbeddingImageHandler(logged, [{"image": _image(8, 8)}], interval=1, summary_writer=_Recorder())
    _trainer(logged, [handler]).run()
    for name, value in logged.state_dict().items():
        assert torch.equal(value, plain.state_dict()[name])


def test_non_finite_embeddings_skip_the_picture_with_a_warning(caplog):
    network = _network()
    with torch.no_grad():
        network[3].bias.fill_(float("nan"))
    recorder = _Recorder()
    with caplog.at_level(logging.WARNING):
        _run(EmbeddingImageHandler(network, [{"image": _image(8, 8)}], interval=1, summary_writer=recorder), 1)
    assert recorder.images == [] and "not finite" in caplog.text


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"interval": 0}, ValueError, "interval"),
        ({"roi_size": (8, 0)}, ValueError, "positive"),
        ({"roi_size": (4, 8, 8)}, ValueError, "spatial dimension"),
        ({"dataset": [{"label": torch.zeros(1, 8, 8)}]}, KeyError, "image"),
        ({"dataset": [{"image": torch.zeros(8, 8)}]}, ValueError, r"\(C, H, W\)"),
    ],
)
def test_invalid_arguments(kwargs, error, message):
    arguments = {
        "network": _network(), "dataset": [{"image": _image(8, 8)}], "interval": 1, "summary_writer": _Recorder()
    }
    with pytest.raises(error, match=message):
        EmbeddingImageHandler(**{**arguments, **kwargs})


def test_network_with_other_output_shape_is_a_clear_error():
    network = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten())
    handler = EmbeddingImageHandler(network, [{"image": _image(8, 8)}], interval=1, summary_writer=_Recorder())
    with pytest.raises(ValueError, match=r"\(1, E, \*S\)"):
        _run(handler, 1)


def test_learning_rate_logged_each_iteration_and_after_the_scheduler_step(tmp_path):
    network = _network()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    writer = TensorBoardStatsHandler(log_dir=str(tmp_path), epoch_log=False, iteration_event_writer=write_learning_rate)
    handlers = [LrScheduleHandler(scheduler, print_lr=False), writer]
    _trainer(network, handlers, iterations=2, epochs=2, optimizer=optimizer).run()
    (events,) = _events(tmp_path)
    logged = [(event.step, event.value) for event in events.Scalars("learning_rate")]
    assert logged == [(step, pytest.approx(rate)) for step, rate in [(1, 0.1), (2, 0.1), (3, 0.05), (4, 0.05)]]


def test_learning_rate_of_each_parameter_group():
    network = _network()
    groups = [{"params": network[0].parameters()}, {"params": network[3].parameters(), "lr": 0.01}]
    optimizer = torch.optim.SGD(groups, lr=0.1)
    engine = Engine(lambda engine, batch: None)
    engine.optimizer = optimizer
    engine.state.iteration = 7
    recorder = _Recorder()
    write_learning_rate(engine, recorder)
    assert recorder.scalars == [("learning_rate/0", 0.1, 7), ("learning_rate/1", 0.01, 7)]


def test_learning_rate_needs_an_optimizer():
    with pytest.raises(TypeError, match="optimizer"):
        write_learning_rate(Engine(lambda engine, batch: None), _Recorder())



def test_foreground_channel_is_a_picture_of_its_own_and_left_out_of_the_pca():
    network = _network(2, out_channels=5)
    image = _image(8, 8)
    recorder = _Recorder()
    handler = EmbeddingImageHandler(
        network, [{"image": image}], interval=1, summary_writer=recorder, foreground_channel=True
    )
    _run(handler, 1)
    assert [tag for tag, *_ in recorder.images] == ["embedding_pca_input", "foreground_probability", "embedding_pca"]
    with torch.no_grad():
        output = network.eval()(image[None])[0]
    np.testing.assert_allclose(recorder.images[1][1], torch.sigmoid(output[-1:]).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(recorder.images[2][1], embedding_pca_rgb(output[:-1]))
