"""Run a network on the sliding windows of one region and blend the windows' outputs with Gaussian weights."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.data.utils import compute_importance_map
from monai.inferers import Merger
from monai.utils import BlendMode

from ..clustering.affinities import embeddings_to_affinities, overlap_slices

BLEND_OUTPUTS = ("affinities", "embeddings")


def blend_windows(
    image: torch.Tensor,
    network: Callable[[torch.Tensor], torch.Tensor],
    roi_size: Sequence[int],
    window_starts: Sequence[Sequence[int]],
    output: str = "affinities",
    offsets: Sequence[Sequence[int]] | None = None,
    affinity_delta_dist: float = 2.0,
    sw_batch_size: int = 1,
    sigma_scale: float = 0.125,
    on_windows: Callable[[int], None] | None = None,
    timings: dict[str, float] | None = None,
    foreground_channel: bool = False,
    workspace: BlendingWorkspace | None = None,
    test_time_flips: bool = False,
) -> torch.Tensor:
    """Predict a region window by window and blend the windows with MONAI's Gaussian importance map.

    In ``"affinities"`` output, every window's embeddings are turned into affinities for ``offsets``
    inside that window before blending. An affinity only compares two embeddings from the same forward
    pass, so it does not change when the network places a window's embeddings differently (shifted,
    rotated) from its neighbours'. The windows' predictions are blended by a :class:`WindowBlender`.
    In ``"embeddings"`` output the embeddings themselves are blended, as ``sliding_window_inference`` does.
    With ``foreground_channel`` the network's last output channel is a foreground logit: it takes no part in the
    affinities or embeddings, and its probability (sigmoid) is blended into one extra, last output channel.
    With ``test_time_flips`` every window also goes through the network mirrored along each combination of its
    axes (4 passes in 2D, 8 in 3D); each pass's embeddings are mirrored back and turned into affinities, and a
    window's prediction is the mean of its passes' affinities (and foreground probabilities). An affinity
    compares two embeddings of one pass, so the passes' different embeddings do not mix; the mean smooths the
    network's noise where a border lies.

    Args:
        image: ``(C, *R)`` tensor of the region; along axes where it is smaller than the window it is padded
            (centred) by mirroring its border (edge values where the region is thinner than the padding): a
            constant would show the network a false edge, and on DSB2018 val mirroring gave +0.003 SBD and
            +0.005 AP@0.5 over zero padding for whole images padded to a multiple of 32.
        network: maps ``(B, C, *roi_size)`` to ``(B, E, *roi_size)`` embeddings.
        roi_size: window size per spatial axis.
        window_starts: per axis, the window starts within the (padded) region.
        output: ``"affinities"`` or ``"embeddings"``.
        offsets: affinity offsets (``"affinities"`` output), each with ``len(roi_size)`` integers.
        affinity_delta_dist: ``delta_d`` of the affinity formula.
        sw_batch_size: number of windows per forward pass.
        sigma_scale: Gaussian sigma of the importance map as a fraction of the window size.
        on_windows: called with the number of windows finished after every forward pass.
        timings: if given, ``timings["affinities"]`` is increased by the seconds spent turning window
            embeddings into affinities.
        foreground_channel: the network outputs ``E + 1`` channels, the last a foreground logit.
        workspace: where the blended sums are kept (see :class:`BlendingWorkspace`); the result is then a view of
            its buffer, valid until the next blend in the same workspace. ``None`` allocates new memory.
        test_time_flips: average every window's affinities over its mirrored passes (``"affinities"`` output
            only; as many times the network's cost as there are passes).

    Returns:
        ``(len(offsets), *R)`` affinities or ``(E, *R)`` embeddings, float32 on ``image``'s device; with
        ``foreground_channel``, one more channel: the blended foreground probability.

    Raises:
        ValueError: for an unknown ``output``, ``"affinities"`` without offsets, ``test_time_flips`` with
            ``"embeddings"`` output, or a network output that does not have the window's spatial shape.
    """
    if output not in BLEND_OUTPUTS:
        raise ValueError(f"output must be one of {BLEND_OUTPUTS}, got {output!r}.")
    if output == "affinities" and not offsets:
        raise ValueError("affinities need offsets, got none.")
    if test_time_flips and output != "affinities":
        raise ValueError("test_time_flips averages affinities; embeddings of mirrored passes cannot be averaged.")
    roi_size = tuple(roi_size)
    region_shape = tuple(image.shape[1:])
    padding = [(max(0, r - s) // 2, max(0, r - s) - max(0, r - s) // 2) for r, s in zip(roi_size, region_shape)]
    if any(before or after for before, after in padding):
        mode = "reflect" if all(max(pair) < size for pair, size in zip(padding, region_shape)) else "replicate"
        # torch pads the last axes of a batch: one leading axis is added and removed
        image = F.pad(image[None], [p for pair in reversed(padding) for p in pair], mode=mode)[0]
    blender = WindowBlender(
        image.shape[1:], roi_size, output, offsets=offsets, sigma_scale=sigma_scale,
        foreground_channel=foreground_channel, device=image.device, workspace=workspace,
    )
    locations = list(itertools.product(*window_starts))
    spatial_axes = range(2, 2 + len(roi_size))
    mirrorings = [
        axes for count in range(len(roi_size) + 1) for axes in itertools.combinations(spatial_axes, count)
    ] if test_time_flips else [()]
    for first in range(0, len(locations), sw_batch_size):
        batch_locations = locations[first : first + sw_batch_size]
        windows = [tuple(slice(start, start + r) for start, r in zip(place, roi_size)) for place in batch_locations]
        batch = torch.stack([image[(slice(None), *window)] for window in windows])
        predictions = None
        for axes in mirrorings:
            embeddings = network(batch.flip(axes) if axes else batch)
            if embeddings.ndim != image.ndim + 1 or tuple(embeddings.shape[2:]) != roi_size:
                raise ValueError(
                    f"the network must map windows of shape {(len(windows), image.shape[0], *roi_size)} to "
                    f"(B, E, *{roi_size}) embeddings, got output shape {tuple(embeddings.shape)}."
                )
            embeddings = embeddings.float().flip(axes) if axes else embeddings.float()
            passed = window_predictions(embeddings, output, offsets, affinity_delta_dist, timings, foreground_channel)
            predictions = passed if predictions is None else [p.add_(q) for p, q in zip(predictions, passed)]
        if len(mirrorings) > 1:
            predictions = [p.div_(len(mirrorings)) for p in predictions]
        for location, prediction in zip(batch_locations, predictions):
            blender.aggregate(prediction, location)
        if on_windows is not None:
            on_windows(len(batch_locations))
    crop = tuple(slice(before, before + s) for (before, _), s in zip(padding, region_shape))
    return blender.finalize()[(slice(None), *crop)]


class WindowBlender(Merger):
    """Gaussian-weighted blending of window predictions over one region, shaped like MONAI's ``Merger``.

    :meth:`aggregate` adds a window's prediction weighted by MONAI's Gaussian importance map (as
    ``sliding_window_inference`` does); :meth:`finalize` divides by the summed weights. Embeddings (and a foreground
    channel) are divided by the weights of all windows holding the voxel. An affinity is divided by the weights of
    the windows holding both ends of its edge, and an edge held by no window gets the neutral value of its channel:
    0 on the attractive nearest-neighbour channels (the first ``len(roi_size)``), 1 (no repulsion) on the mutex
    channels.

    Args:
        merged_shape: the spatial shape of the region the windows lie in.
        roi_size: window size per spatial axis.
        output: ``"affinities"`` or ``"embeddings"``, what the aggregated predictions are.
        offsets: affinity offsets (``"affinities"`` output), each with ``len(roi_size)`` integers.
        sigma_scale: Gaussian sigma of the importance map as a fraction of the window size.
        foreground_channel: the predictions have one more, last channel, a foreground probability.
        device: device of the blending buffers.
        workspace: optional :class:`BlendingWorkspace` that holds the sums (the blend is then valid until the
            workspace's next use).
    """

    def __init__(
        self,
        merged_shape: Sequence[int],
        roi_size: Sequence[int],
        output: str,
        offsets: Sequence[Sequence[int]] | None = None,
        sigma_scale: float = 0.125,
        foreground_channel: bool = False,
        device: torch.device | str = "cpu",
        workspace: BlendingWorkspace | None = None,
    ) -> None:
        super().__init__(merged_shape, device=device)
        self.workspace = workspace
        self.roi_size = tuple(roi_size)
        self.output = output
        self.offsets = offsets
        self.foreground_channel = foreground_channel
        self.importance = compute_importance_map(self.roi_size, BlendMode.GAUSSIAN, sigma_scale, device=device)
        self.windows: list[tuple[slice, ...]] = []
        # the channel count is the network's: the sum buffer is made by the first window
        self.values: torch.Tensor | None = None
        weighted = output == "embeddings" or foreground_channel
        self.weights = torch.zeros(self.merged_shape, device=device) if weighted else None

    def aggregate(self, values: torch.Tensor, location: Sequence[int]) -> None:
        """Add one window's ``(K, *roi_size)`` prediction, the window starting at ``location`` in the region."""
        window = tuple(slice(start, start + r) for start, r in zip(location, self.roi_size))
        if self.values is None:
            shape = (values.shape[0], *self.merged_shape)
            if self.workspace is None:
                self.values = torch.zeros(shape, device=self.device)
            else:
                self.values = self.workspace.zeros(shape, self.device)
        self.values[(slice(None), *window)].addcmul_(values.to(self.device), self.importance)
        if self.weights is not None:
            self.weights[window] += self.importance
        self.windows.append(window)

    def finalize(self) -> torch.Tensor:
        """The ``(K, *merged_shape)`` blended predictions (computed in place, once)."""
        if self.values is None:
            raise ValueError("no window was aggregated.")
        if not self.is_finalized:
            if self.output == "embeddings":
                self.values /= self.weights
            else:
                _normalise_affinities(self.values, self.windows, self.importance, self.offsets, len(self.roi_size))
                if self.foreground_channel:
                    self.values[-1] /= self.weights
            self.is_finalized = True
        return self.values


class BlendingWorkspace:
    """One float32 buffer reused by consecutive blends, grown to the largest one.

    A block's blended affinities take tens of MiB; a fresh buffer for every block costs the page faults of
    new memory each time (about 6% of the network part of ``bench/volume.py``), a reused one only its zeroing.
    Each result lives in the buffer until the next blend, so a caller must be done with one block's
    prediction before the next block is blended (as :func:`~.segment_volume.segment_volume` is).
    """

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def zeros(self, shape: Sequence[int], device: torch.device | str) -> torch.Tensor:
        """A zeroed float32 tensor of ``shape`` on ``device``, a view of the buffer."""
        size = math.prod(shape)
        device = torch.device(device)
        if self._buffer is None or self._buffer.numel() < size or self._buffer.device != device:
            self._buffer = None  # the old buffer goes before the new one is made
            self._buffer = torch.empty(size, device=device)
        return self._buffer[:size].view(tuple(shape)).zero_()


def window_predictions(
    embeddings: torch.Tensor,
    output: str,
    offsets: Sequence[Sequence[int]] | None,
    affinity_delta_dist: float,
    timings: dict[str, float] | None,
    foreground_channel: bool,
) -> list[torch.Tensor]:
    """Per window of a ``(B, E[+1], *roi)`` network output: its affinities or embeddings, then its foreground."""
    foreground = torch.sigmoid(embeddings[:, -1:]) if foreground_channel else None
    embeddings = embeddings[:, :-1] if foreground_channel else embeddings
    if output == "affinities":
        start = time.perf_counter()
        predictions = [_window_affinities(e, offsets, affinity_delta_dist) for e in embeddings]
        if timings is not None:
            timings["affinities"] = timings.get("affinities", 0.0) + time.perf_counter() - start
    else:
        predictions = list(embeddings)
    if foreground is not None:
        predictions = [torch.cat([p, f.to(p.device)]) for p, f in zip(predictions, foreground)]
    return predictions


def _window_affinities(
    embeddings: torch.Tensor, offsets: Sequence[Sequence[int]], affinity_delta_dist: float
) -> torch.Tensor:
    if embeddings.device.type != "cpu":
        return embeddings_to_affinities(embeddings, offsets, affinity_delta_dist)
    # on CPU the C++ kernel behind numpy input is several times faster than strided torch slicing
    return torch.from_numpy(embeddings_to_affinities(embeddings.numpy(), offsets, affinity_delta_dist))


def _normalise_affinities(
    accumulated: torch.Tensor,
    windows: list[tuple[slice, ...]],
    importance: torch.Tensor,
    offsets: Sequence[Sequence[int]],
    num_attractive: int,
) -> None:
    # one channel of weights at a time: the weight of an edge depends on its offset (only windows holding
    # both ends count), and a full (channels, *S) weight buffer would double the block's memory
    weights = torch.empty_like(accumulated[0])
    for channel, offset in enumerate(offsets):
        weights.zero_()
        inside, _ = overlap_slices(offset, importance.shape)
        for window in windows:
            weights[window][inside] += importance[inside]
        # uncovered edges accumulated 0 with weight 0: 0 / 0 = NaN marks exactly them
        accumulated[channel].div_(weights).nan_to_num_(nan=0.0 if channel < num_attractive else 1.0)
