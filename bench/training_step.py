"""Where a training iteration's time goes: the bundle's SPOCO trainer against the three-class U-Net peer's loop.

Run as ``python -m bench.training_step [--cases dsb-dense dsb@0.1 em3d-finetune em3d-scratch] [--iterations 30]
[--warmup 5] [--train-images 24] [--clock cpu|wall] [--channels-last] [--head-channels N]`` from the repository
root. About 4 minutes on one thread.

SPOCO side: the real trainer of the bundle (``common.json`` + ``train.json`` + the overlay, built by
``monai.bundle.ConfigParser``), with its data pipeline, teacher, loss, optimiser, EMA update and logging handlers
(validation, checkpoints and the first images' caching left out):

* ``dsb-dense``: ``dsb2018_2d.json`` with the recipe of the shipped dense model (``sparse_dsb.py``'s ``dense+fg``:
  background as an object, foreground head), 4 patches of 128x128;
* ``dsb@0.1``: ``dsb2018_2d.json`` with SPOCO@0.1 (sparse labels, unlabeled push, consistency on the unlabeled
  region), 4 patches of 128x128;
* ``em3d-finetune``: ``em3d_neurons.json`` + ``finetune.json`` from the shipped ``em3d_neurons`` model,
  2 patches of 40x64x64;
* ``em3d-scratch``: ``em3d_neurons.json`` alone, a new network (so ``--head-channels`` applies), 2 patches of
  40x64x64.

Peer side: the loop of ``peers.py``'s ``unet3`` peer (crops, three-class Dice + cross-entropy, Adam), on the same
images, with the SPOCO case's network architecture but 3 output channels: in 2D ``peers.CropSampler`` (the peer
itself), in 3D uniform random crops of the same size as SPOCO's patches without flips.

Both run in one process, one peer iteration after each SPOCO iteration, so that the load of the machine hits both
alike; the first ``--warmup`` iterations of each are dropped and every part is the median over the others. The SPOCO
iteration is split at its ignite events and at hooks on the networks, the loss terms and the optimiser: data (next
batch: augmentation, cropping, two views, collation), batch to device and zero_grad, network forward, teacher
forward, each loss term's forward pass, the loss's other work (flattening, object index, object means and pull
sums; the peer's whole Dice + cross-entropy forward pass), the loss's backward pass (to the gradient of the
network's output) split by the loss's own backward functions (:data:`BACKWARD_FUNCTIONS`), the network's backward
pass, the optimiser step, the EMA update, and the handlers of ``ITERATION_COMPLETED`` (logging). The last line
compares SPOCO's networks and optimiser alone (network forward and backward, teacher forward, optimiser) with the
peer's whole iteration. ``--clock cpu`` (default) times the CPU time of the process, which the load of other
processes disturbs far less than the wall clock.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.engines.utils import IterationEvents
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.utils.enums import CommonKeys as Keys

from bench import peers
from bench import sparse_dsb
from spoco_monai.losses import consistency, objects, pairwise, single_instance

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIGS = REPOSITORY / "bundle" / "configs"
DATA = REPOSITORY.parent / "shared" / "data"

#: Parts of an iteration, in the order they run; a trainer without a part shows "-" there.
PARTS = (
    "data",
    "batch to device, zero_grad",
    "network forward",
    "teacher forward",
    "loss: pull/push/reg",
    "loss: instance",
    "loss: unlabeled push",
    "loss: consistency",
    "loss: foreground",
    "loss: other",
    "loss backward: means, pull",
    "loss backward: instance overlaps",
    "loss backward: kernel sums",
    "loss backward: consistency",
    "loss backward: other",
    "network backward",
    "optimizer",
    "EMA update",
    "logging, handlers",
)
TOTAL = "iteration"

#: The loss's own backward passes (autograd functions of the library), timed one by one: the object means and pull sums,
#: the single-instance Dice's intersections, the (centres x pixels) kernel sums of the single-instance term and of the
#: unlabeled push, and the consistency term's soft-mask sums. The rest of the loss's backward pass (autograd of
#: built-in operations) is "loss backward: other".
BACKWARD_FUNCTIONS = {
    "loss backward: means, pull": objects._MeansAndPull,
    "loss backward: instance overlaps": single_instance._OwnGaussianSums,
    "loss backward: kernel sums": pairwise._KernelSums,
    "loss backward: consistency": consistency._MaskOverlapSums,
}

_COMMON_OVERRIDES = {
    "run_validation": False,
    "resume": False,
    "num_iterations": 100000,
    "val_interval": 100000,
    "progress_bar": False,
}


@dataclass(frozen=True)
class Case:
    """One training setting: bundle overlays and overrides, and the data the peer trains on."""

    overlays: tuple[str, ...]
    overrides: dict[str, Any]
    volume: str | None = None  # HDF5 file (datasets raw, label) of the 3D peer; None for the 2D DSB peer
    notes: str = ""


CASES: dict[str, Case] = {
    "dsb-dense": Case(("dsb2018_2d.json",), sparse_dsb.SETTINGS["dense+fg"], notes="4 x 128x128, dense + foreground"),
    "dsb@0.1": Case(("dsb2018_2d.json",), sparse_dsb.SETTINGS["spoco@0.1"], notes="4 x 128x128, SPOCO@0.1"),
    "em3d-finetune": Case(
        ("em3d_neurons.json", "finetune.json"),
        {"source_checkpoint": str(REPOSITORY / "bundle" / "models" / "em3d_neurons.pt")},
        volume=str(DATA / "em3d" / "gala_fibsem_train.h5"),
        notes="2 x 40x64x64, fine-tune of em3d_neurons",
    ),
    "em3d-scratch": Case(
        ("em3d_neurons.json",),
        {},
        volume=str(DATA / "em3d" / "gala_fibsem_train.h5"),
        notes="2 x 40x64x64, em3d_neurons from scratch",
    ),
}


@dataclass
class PartTimes:
    """Seconds per part of every measured iteration (one dict per iteration)."""

    clock: Callable[[], float]
    iterations: list[dict[str, float]] = field(default_factory=list)
    current: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = self.clock()

    def between(self, part: str, start: str, end: str) -> None:
        self.add(part, self.marks[end] - self.marks[start])

    def add(self, part: str, seconds: float) -> None:
        self.current[part] = self.current.get(part, 0.0) + seconds

    def finish(self, total: float) -> None:
        self.current[TOTAL] = total
        self.iterations.append(self.current)
        self.current, self.marks = {}, {}

    def medians(self, warmup: int) -> dict[str, float]:
        """Median seconds of every part over the iterations after the first ``warmup``."""
        kept = self.iterations[warmup:]
        if not kept:
            raise ValueError(f"no iteration left after {warmup} warm-up iterations of {len(self.iterations)}.")
        parts = [part for part in (*PARTS, TOTAL) if any(part in iteration for iteration in kept)]
        return {part: statistics.median(iteration.get(part, 0.0) for iteration in kept) for part in parts}


def timed(times: PartTimes, part: str, function: Callable) -> Callable:
    """``function`` adding its running time to ``part`` of ``times``."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = times.clock()
        try:
            return function(*args, **kwargs)
        finally:
            times.add(part, times.clock() - start)

    return wrapper


def build_spoco_config(
    case: Case, output_dir: Path, train_images: int, channels_last: bool = False, head_channels: int | None = None
) -> ConfigParser:
    """The bundle config of ``case``, parsed and initialised (seeds, data checks) as the bundle's run does, on the
    first ``train_images`` training items, writing to ``output_dir``, with the bundle's ``channels_last`` and
    ``head_channels`` (the case's own when None);
    ``train#trainer`` is the trainer."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in ("common.json", "train.json", *case.overlays)])
    parser["bundle_root"] = str(REPOSITORY / "bundle")
    parser["output_dir"] = str(output_dir)
    network = {"channels_last": channels_last, **({} if head_channels is None else {"head_channels": head_channels})}
    for key, value in {**_COMMON_OVERRIDES, **case.overrides, **network}.items():
        parser[key] = value
    parser["train#datalist"] = f"$@datalist['training'][:{train_images}]"
    parser.parse()
    parser.get_parsed_content("initialize")
    return parser


@contextmanager
def timed_backward_functions(times: PartTimes) -> Iterator[None]:
    """Within the block, the backward passes of :data:`BACKWARD_FUNCTIONS` add their running time to ``times``."""
    originals = {part: function.backward for part, function in BACKWARD_FUNCTIONS.items()}
    try:
        for part, function in BACKWARD_FUNCTIONS.items():
            function.backward = staticmethod(timed(times, part, originals[part]))
        yield
    finally:
        for part, function in BACKWARD_FUNCTIONS.items():
            function.backward = staticmethod(originals[part])


def instrument_spoco(trainer: Any, times: PartTimes, after_iteration: Callable[[], None]) -> None:
    """Attach the timers of :data:`PARTS` to a ``SpocoTrainer`` (see the module docstring)."""
    loss = trainer.loss_function
    loss.discriminative.terms = timed(times, "loss: pull/push/reg", loss.discriminative.terms)
    loss.single_instance.choose = timed(times, "loss: instance", loss.single_instance.choose)
    loss.single_instance.chosen_term = timed(times, "loss: instance", loss.single_instance.chosen_term)
    loss.unlabeled_push.term = timed(times, "loss: unlabeled push", loss.unlabeled_push.term)
    loss.consistency.term = timed(times, "loss: consistency", loss.consistency.term)
    loss.foreground.forward = timed(times, "loss: foreground", loss.foreground.forward)
    for network, part in ((trainer.network, "network forward"), (trainer.teacher, "teacher forward")):
        network.register_forward_pre_hook(lambda *_, part=part: times.mark(part))
        network.register_forward_hook(lambda *_, part=part: times.add(part, times.clock() - times.marks[part]))
    trainer.optimizer.register_step_post_hook(lambda *_: times.mark("optimizer done"))

    def mark(name: str) -> Callable[[Any], None]:
        return lambda _engine: times.mark(name)

    def embeddings_gradient_hook(engine: Any) -> None:
        times.mark("forward done")
        engine.state.output[Keys.PRED].register_hook(lambda _grad: times.mark("embeddings gradient"))

    def loss_done(engine: Any) -> None:
        times.mark("loss done")
        measured = sum(times.current.get(part, 0.0) for part in PARTS if part.startswith("loss: "))
        times.add("loss: other", times.marks["loss done"] - times.marks["forward done"] - measured)

    def iteration_done(engine: Any) -> None:
        times.mark("handlers done")
        times.between("data", "batch start", "batch done")
        times.between("batch to device, zero_grad", "batch done", "network forward")
        measured = sum(times.current.get(part, 0.0) for part in BACKWARD_FUNCTIONS)
        times.add("loss backward: other", times.marks["embeddings gradient"] - times.marks["loss done"] - measured)
        times.between("network backward", "embeddings gradient", "backward done")
        times.between("optimizer", "backward done", "optimizer done")
        times.between("EMA update", "optimizer done", "model done")
        times.between("logging, handlers", "model done", "handlers done")
        times.finish(times.marks["handlers done"] - times.marks["batch start"])
        after_iteration()

    trainer.add_event_handler(Events.GET_BATCH_STARTED, mark("batch start"))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, mark("batch done"))
    trainer.add_event_handler(IterationEvents.FORWARD_COMPLETED, embeddings_gradient_hook)
    trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, loss_done)
    trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, mark("backward done"))
    trainer.add_event_handler(IterationEvents.MODEL_COMPLETED, mark("model done"))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, iteration_done)


class VolumeCrops:
    """Uniform random crops of a 3D volume and its three-class target, like ``peers.CropSampler`` without flips.

    Args:
        image: (D, H, W) float32, normalised; label: (D, H, W) integer; size: crop size; count: crops per batch.
    """

    def __init__(self, image: np.ndarray, label: np.ndarray, size: tuple[int, ...], count: int, seed: int) -> None:
        self.image, self.target = image, peers.three_class_target(label)
        self.size, self.count = size, count
        self.rng = np.random.default_rng(seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        crops = []
        for _ in range(self.count):
            start = [int(self.rng.integers(s - c + 1)) for s, c in zip(self.image.shape, self.size)]
            window = tuple(slice(b, b + c) for b, c in zip(start, self.size))
            crops.append((self.image[window], self.target[window].astype(np.int64)))
        images, targets = zip(*crops)
        return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(np.stack(targets)[:, None])


def build_peer(case: Case, config: ConfigParser, train_images: int, seed: int) -> tuple[Any, torch.nn.Module]:
    """The peer's crop sampler and its network: in 3D, the SPOCO network's layers with 3 outputs and batch norm."""
    torch.manual_seed(seed)
    if case.volume is None:
        train = peers.load_split(DATA / "dsb2018_fluo" / "train", train_images)
        return peers.CropSampler(train, np.random.default_rng(seed)), peers.build_unet()
    region = config.get_parsed_content("train_region")
    with h5py.File(case.volume, "r") as volume:
        image, label = volume["raw"][region].astype(np.float32), volume["label"][region]
    image = (image - image.mean()) / image.std()
    patch = tuple(config.get_parsed_content("patch_size"))
    sampler = VolumeCrops(image, label, patch, config.get_parsed_content("patches_per_volume"), seed)
    spoco = config.get_parsed_content("network_def")
    # the peer's batch norm: SPOCO's GroupNorm of 8 groups cannot normalise 3 output channels
    network = UNet(
        spatial_dims=spoco.dimensions, in_channels=spoco.in_channels, out_channels=3, channels=spoco.channels,
        strides=spoco.strides, num_res_units=spoco.num_res_units, norm="batch",
    )
    return sampler, network


def peer_step_function(sampler: Any, network: torch.nn.Module, times: PartTimes) -> Callable[[], None]:
    """One iteration of the peer's loop (``peers.train_unet``), timed part by part into ``times``."""
    optimizer = torch.optim.Adam(network.parameters(), lr=peers.LEARNING_RATE)
    loss_function = DiceCELoss(softmax=True, to_onehot_y=True)
    network.train()
    clock = times.clock

    def step() -> None:
        start = clock()
        images, targets = sampler.batch()
        times.add("data", clock() - start)
        mark = clock()
        optimizer.zero_grad(set_to_none=True)
        times.add("batch to device, zero_grad", clock() - mark)
        mark = clock()
        output = network(images)
        times.add("network forward", clock() - mark)
        mark = clock()
        loss = loss_function(output, targets)
        times.add("loss: other", clock() - mark)
        gradient_ready: list[float] = []
        output.register_hook(lambda _grad: gradient_ready.append(clock()))
        mark = clock()
        loss.backward()
        done = clock()
        times.add("loss backward: other", gradient_ready[0] - mark)
        times.add("network backward", done - gradient_ready[0])
        mark = clock()
        optimizer.step()
        times.add("optimizer", clock() - mark)
        mark = clock()
        float(loss.item())
        times.add("logging, handlers", clock() - mark)
        times.finish(clock() - start)

    return step


def measure_case(name: str, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """Median part times of the SPOCO trainer and of the peer for case ``name``, interleaved in this process."""
    case = CASES[name]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    spoco_times, peer_times = PartTimes(clock), PartTimes(clock)
    with tempfile.TemporaryDirectory() as output_dir:
        config = build_spoco_config(case, Path(output_dir), args.train_images, args.channels_last, args.head_channels)
        trainer = config.get_parsed_content("train#trainer")
        sampler, peer_network = build_peer(case, config, args.train_images, args.seed)
        peer_step = peer_step_function(sampler, peer_network, peer_times)
        instrument_spoco(trainer, spoco_times, peer_step)
        total = args.warmup + args.iterations
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=total), lambda engine: engine.terminate())
        with timed_backward_functions(spoco_times):
            trainer.run()
    return spoco_times.medians(args.warmup), peer_times.medians(args.warmup)


#: Parts set by the networks alone: what no change to the data, the loss or the logging can remove.
NETWORK_PARTS = ("network forward", "teacher forward", "network backward", "optimizer")


def _cells(seconds: float | None, total: float) -> str:
    return "- | -" if seconds is None else f"{seconds * 1000:.1f} | {seconds / total:.0%}"


def markdown_table(spoco: dict[str, float], peer: dict[str, float]) -> str:
    """Rows of :data:`PARTS` and the iteration (ms and share of the iteration for SPOCO and the peer), then the
    ratio of the iterations and that of SPOCO's :data:`NETWORK_PARTS` to the peer's iteration.

    Args:
        spoco: median seconds per part of the SPOCO iteration, with the key :data:`TOTAL`.
        peer: the same for the peer.
    """
    lines = ["| part | SPOCO ms | share | peer ms | share |", "|---|---|---|---|---|"]
    for part in PARTS:
        if part in spoco or part in peer:
            cells = (_cells(spoco.get(part), spoco[TOTAL]), _cells(peer.get(part), peer[TOTAL]))
            lines.append(f"| {part} | {cells[0]} | {cells[1]} |")
    lines.append(f"| **{TOTAL}** | {spoco[TOTAL] * 1000:.1f} | 100% | {peer[TOTAL] * 1000:.1f} | 100% |")
    networks = sum(spoco.get(part, 0.0) for part in NETWORK_PARTS)
    lines.append(
        f"\nSPOCO / peer iteration: {spoco[TOTAL] / peer[TOTAL]:.2f}; SPOCO's networks and optimiser alone / peer "
        f"iteration: {networks / peer[TOTAL]:.2f}"
    )
    return "\n".join(lines)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--iterations", type=int, default=30, help="measured iterations of each trainer")
    parser.add_argument("--warmup", type=int, default=5, help="first iterations left out")
    parser.add_argument("--train-images", type=int, default=24, help="first DSB train images in the data")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels-last", action="store_true", help="the bundle's channels_last for SPOCO's networks")
    parser.add_argument("--head-channels", type=int, default=None, help="the bundle's head_channels for SPOCO")
    args = parser.parse_args(argv)
    for option in ("iterations", "train_images", "threads"):
        if getattr(args, option) <= 0:
            parser.error(f"--{option.replace('_', '-')} must be positive, got {getattr(args, option)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    for name in args.cases:
        spoco, peer = measure_case(name, args)
        setting = CASES[name].notes + (", channels_last" if args.channels_last else "")
        setting += f", head_channels {args.head_channels}" if args.head_channels is not None else ""
        print(
            f"\n### {name} ({setting}); {args.clock} clock, {args.threads} thread(s), median of {args.iterations} "
            f"iterations after {args.warmup}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
        )
        print(markdown_table(spoco, peer), flush=True)


if __name__ == "__main__":
    main()
