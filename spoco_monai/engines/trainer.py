"""The SPOCO trainer: student f on view 1, EMA teacher g on view 2, SpocoLoss, optimiser step, EMA update."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from spoco_monai.engines.ema import ema_update, unwrap_module
from spoco_monai.engines.random_state import capture_random_state, find_generators, restore_random_state

TEACHER_PRED = "teacher_pred"
LOSS_TERMS = "loss_terms"
# batch key of the image files, when the pipeline keeps them (e.g. ``CopyItemsd`` of the datalist's paths)
IMAGE_FILE = "image_file"


class NonFiniteLossError(FloatingPointError):
    """The loss of a training iteration is NaN or infinite; raised before the optimiser step."""


class SpocoTrainer(SupervisedTrainer):
    """``SupervisedTrainer`` for SPOCO (Wolny et al., CVPR 2022): two views, a student f and an EMA teacher g.

    Each iteration:

    1. f embeds ``batch["image"]`` (view 1) with gradients;
    2. g embeds ``batch["image_view2"]`` (view 2: same geometry, other intensity augmentation) under
       ``torch.no_grad``;
    3. ``loss_function(embeddings, label, teacher_embeddings)`` (a ``SpocoLoss``; plus ``foreground=`` when the
       batch holds ``foreground_key``, ``points=`` and ``segments=`` when it holds ``points_key`` or ``segments_key``),
       backward, optimiser step
       (with a gradient scaler under AMP on CUDA);
    4. g <- m g + (1 - m) f for parameters and floating-point buffers (:func:`ema_update`), right after the step.

    A NaN or infinite loss stops the run with :class:`NonFiniteLossError` before the optimiser step, naming the
    iteration and the batch's files (from ``batch["image_file"]`` or the image's metadata), so no weights are
    changed and nothing is saved by the checkpoint handlers of this package.

    ``state_dict`` / ``load_state_dict`` (the ``trainer`` entry of a checkpoint) also hold what makes a resumed run
    draw the same data and random numbers as the run it continues: the state of every random generator
    (:mod:`~spoco_monai.engines.random_state`: global ones, the training transforms', the loss's), the generators'
    state when the current data-loader iterator was created and how many batches it gave, and the AMP gradient
    scaler. Resuming restores the generators, recreates the iterator and draws the batches already used, so the
    data order, augmentations and loss sampling continue exactly (on CPU the resumed run is bit-identical).

    The teacher always runs in eval mode. With GroupNorm (the 3D default) the mode makes no difference; with
    BatchNorm it makes g normalise with its own moving-average statistics instead of the view-2 batch statistics, so
    g stays exactly the moving average of f and its buffers are never changed by its own forward passes. The update
    lives in the training iteration, so evaluators (which run their own engines) never move the teacher.

    Output written to ``engine.state.output`` (a dict, not decollated): ``image``, ``label``, ``pred`` (f's
    embeddings, (B, E, *S)), ``teacher_pred`` (g's embeddings), ``loss`` (scalar tensor) and ``loss_terms``
    (``dict[str, float]`` from ``loss_function.last_terms`` when the loss has that attribute).

    Args:
        device: device of the networks and the batches.
        max_epochs: number of epochs to train.
        train_data_loader: yields dicts with ``image`` (B, C, *S), ``image_view2`` (B, C, *S) and ``label``
            (B, 1, *S) integer.
        network: the student f, (B, C, *S) -> (B, E, *S); may be wrapped in ``DistributedDataParallel``.
        optimizer: optimiser of f's parameters.
        loss_function: ``loss(embeddings, target, teacher_embeddings) -> scalar``, e.g. ``SpocoLoss``.
        teacher_network: the teacher g, same architecture as f (unwrapped). Its weights are set to f's at
            construction. ``None`` makes a deep copy of f.
        ema_momentum: m of the teacher update, in [0, 1].
        view2_key: batch key of the second view.
        foreground_key: batch key of the foreground target (see ``ForegroundTargetd``), passed to the loss as
            ``foreground=`` when the batch holds it; ``None`` never passes one.
        points_key: batch key of a point annotation (see ``SimulatePointsd``), passed to the loss as ``points=`` when
            the batch holds it (e.g. to a ``PointSupervisedLoss``); ``None`` never passes one.
        segments_key: batch key of low-level segments (see ``LowLevelSegmentsd``), passed to the loss as
            ``segments=`` when the batch holds it (e.g. to a ``PixelToSegmentLoss``); ``None`` never passes them.
        epoch_length: iterations per epoch; default ``len(train_data_loader)``.
        train_handlers: MONAI/ignite handlers with an ``attach(engine)`` method.
        amp: mixed precision on CUDA (ignored on CPU, where the trainer runs in float32).
        channels_last: store the parameters of f and g, and so their activations, channels-last
            (``torch.channels_last`` for 2D networks, ``torch.channels_last_3d`` for 3D ones). On CPU the
            convolutions then take faster kernels (measured in ``bench/training_step.py``), whose float32 rounding
            differs from the default's, hence off by default. Give ``network`` unwrapped (wrap it after
            construction) with this option.
        kwargs: further ``SupervisedTrainer`` arguments (``inferer``, ``key_train_metric``, ``amp_kwargs``, ...).
            ``decollate`` is fixed to False (the output dict is read by the logging handlers as is) and gradient
            accumulation is not supported, because the teacher must follow every optimiser step.

    Raises:
        ValueError: invalid momentum, a teacher unlike f, an unsupported keyword argument, or ``channels_last`` with
            a wrapped network or one without 2D or 3D convolutions.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: nn.Module,
        optimizer: Optimizer,
        loss_function: Callable[..., torch.Tensor],
        teacher_network: nn.Module | None = None,
        ema_momentum: float = 0.999,
        view2_key: str = "image_view2",
        foreground_key: str | None = None,
        points_key: str | None = None,
        segments_key: str | None = None,
        epoch_length: int | None = None,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        channels_last: bool = False,
        **kwargs: Any,
    ) -> None:
        for unsupported in ("decollate", "accumulation_steps", "iteration_update", "compile"):
            if unsupported in kwargs:
                raise ValueError(f"SpocoTrainer does not support the argument '{unsupported}'.")
        if not 0.0 <= ema_momentum <= 1.0:
            raise ValueError(f"ema_momentum must be in [0, 1], got {ema_momentum}.")
        device = torch.device(device)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            train_handlers=train_handlers,
            amp=amp and device.type == "cuda",
            decollate=False,
            **kwargs,
        )
        student = unwrap_module(network)
        teacher = copy.deepcopy(student) if teacher_network is None else teacher_network
        try:
            teacher.load_state_dict(student.state_dict())
        except RuntimeError as error:
            raise ValueError(f"teacher_network must have the architecture of network: {error}") from error
        self.teacher = teacher.to(device).eval().requires_grad_(False)
        if channels_last:
            if student is not network:
                raise ValueError("channels_last needs the network unwrapped; wrap it after the trainer converted it.")
            memory_format = _channels_last_format(student)
            student.to(memory_format=memory_format)
            self.teacher.to(memory_format=memory_format)
        self.ema_momentum = float(ema_momentum)
        self.view2_key = view2_key
        self.foreground_key = foreground_key
        self.points_key = points_key
        self.segments_key = segments_key
        self._stream_start: dict[str, Any] | None = None
        self._batches_drawn = 0
        self._pending_resume: dict[str, Any] | None = None

    def run(self) -> None:  # type: ignore[override]
        """Train; a run restored from the checkpoint of a finished training has nothing left to do."""
        if self.state.iteration > 0 and self._is_done(self.state):
            self.logger.info(f"Training already complete at iteration {self.state.iteration}; nothing to resume.")
            return
        super().run()

    def _generators(self) -> list:
        dataset = getattr(self.data_loader, "dataset", None)
        return find_generators(getattr(dataset, "transform", None), self.loss_function)

    def state_dict(self) -> dict:  # type: ignore[override]
        """ignite's engine state plus the random state and data position described in the class docstring."""
        state = dict(super().state_dict())
        state["random_state"] = capture_random_state(self._generators())
        state["data_stream"] = {"start": self._stream_start, "batches_drawn": self._batches_drawn}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:  # type: ignore[override]
        """Restore a :meth:`state_dict`; generators and data position are set when the run (re)creates its iterator."""
        super().load_state_dict(state_dict)
        if "random_state" in state_dict:
            self._pending_resume = {"random_state": state_dict["random_state"], **state_dict["data_stream"]}
        if self.scaler is not None and "grad_scaler" in state_dict:
            self.scaler.load_state_dict(state_dict["grad_scaler"])

    def _setup_dataloader_iter(self) -> None:
        resume, self._pending_resume = self._pending_resume, None
        generators = self._generators()
        if resume is not None and resume["start"] is not None:
            restore_random_state(resume["start"], generators)
        self._stream_start = capture_random_state(generators)
        super()._setup_dataloader_iter()
        self._batches_drawn = 0
        if resume is not None:
            # draw the batches the interrupted run used from this iterator: same order, same worker streams
            for _ in range(resume["batches_drawn"]):
                next(self._dataloader_iter)
            self._batches_drawn = resume["batches_drawn"]
            restore_random_state(resume["random_state"], generators)

    def _network_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss of the network's step, from the loss function's value: that value here; subclasses add terms."""
        return loss

    def _iteration(self, engine: SpocoTrainer, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        """One SPOCO step on ``batchdata``; returns the output dict described in the class docstring.

        Raises:
            ValueError: no batch, or the batch misses the label or the second view.
        """
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        if not isinstance(batchdata, dict) or self.view2_key not in batchdata or Keys.LABEL not in batchdata:
            found = sorted(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise ValueError(
                f"SpocoTrainer expects batch dicts with keys '{Keys.IMAGE}', '{self.view2_key}' and '{Keys.LABEL}' "
                f"(add a two-view transform such as TwoViewIntensityAugmentd), found {found}."
            )
        engine._batches_drawn += 1
        inputs, targets = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        view2 = batchdata[self.view2_key].to(engine.state.device, non_blocking=engine.non_blocking)
        loss_kwargs = {}
        if self.foreground_key is not None and self.foreground_key in batchdata:
            loss_kwargs["foreground"] = batchdata[self.foreground_key].to(
                engine.state.device, non_blocking=engine.non_blocking
            )
        for name, key in (("points", self.points_key), ("segments", self.segments_key)):
            if key is not None and key in batchdata:
                loss_kwargs[name] = batchdata[key].to(engine.state.device, non_blocking=engine.non_blocking)
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}
        engine.network.train()
        engine.teacher.eval()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)

        def _compute_pred_loss() -> torch.Tensor:
            engine.state.output[Keys.PRED] = engine.inferer(inputs, engine.network)
            with torch.no_grad():
                engine.state.output[TEACHER_PRED] = engine.inferer(view2, engine.teacher)
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            loss = engine.loss_function(
                engine.state.output[Keys.PRED], targets, engine.state.output[TEACHER_PRED], **loss_kwargs
            )
            engine.state.output[Keys.LOSS] = engine._network_loss(loss.mean())
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
            return engine.state.output[Keys.LOSS]

        if engine.amp and engine.scaler is not None:
            with torch.autocast("cuda", **engine.amp_kwargs):
                loss = _compute_pred_loss()
            _check_finite(loss, engine.state.iteration, batchdata)
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss = _compute_pred_loss()
            _check_finite(loss, engine.state.iteration, batchdata)
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        ema_update(engine.teacher, engine.network, engine.ema_momentum)
        engine.state.output[LOSS_TERMS] = dict(getattr(engine.loss_function, "last_terms", {}))
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output


def _channels_last_format(network: nn.Module) -> torch.memory_format:
    """The channels-last format of a network's convolution weights: 4D (2D networks) or 5D (3D networks)."""
    ranks = {parameter.dim() for parameter in network.parameters()} & {4, 5}
    if len(ranks) != 1:
        raise ValueError(
            f"channels_last needs a network with either 2D or 3D convolution weights (4D or 5D parameters), found "
            f"parameter ranks {sorted({parameter.dim() for parameter in network.parameters()})}."
        )
    return torch.channels_last if ranks == {4} else torch.channels_last_3d


def _check_finite(loss: torch.Tensor, iteration: int, batch: dict) -> None:
    if bool(torch.isfinite(loss.detach()).all()):
        return
    files = batch.get(IMAGE_FILE)
    if files is None:
        files = getattr(batch[Keys.IMAGE], "meta", {}).get("filename_or_obj")
    raise NonFiniteLossError(
        f"the training loss is {float(loss.detach())} at iteration {iteration} (batch files: "
        f"{files if files is not None else 'not kept by the pipeline'}); training stopped before the optimiser "
        "step, nothing was saved. Lower the learning rate or check these images."
    )
