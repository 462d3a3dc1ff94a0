"""TensorBoard pictures of the network's embeddings of one fixed image, logged during training."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import TensorBoardHandler
from monai.transforms import ResizeWithPadOrCrop, ScaleIntensityRangePercentiles
from monai.utils import convert_to_tensor
from torch import nn

from spoco_monai.engines.ema import unwrap_module
from spoco_monai.engines.embedding_pca import embedding_pca_rgb

logger = logging.getLogger(__name__)


class EmbeddingImageHandler(TensorBoardHandler):
    """Every ``interval`` iterations, embed one fixed image and write two pictures to TensorBoard.

    - ``tag`` (default ``embedding_pca``): the first three principal components of the embeddings as RGB
      (:func:`~spoco_monai.engines.embedding_pca_rgb`; with fewer than 3 embedding channels the missing colours
      are 0);
    - ``image_tag`` (default ``embedding_pca_input``): the first channel of the image, its 1st-99th percentiles
      scaled to [0, 1].

    3D images show their middle Z slice. The image is read once, at construction, and cut (or padded) around its
    centre to ``roi_size``, so the network sees a patch of the training size whatever the size of the image.
    Attached to a trainer, this works whether or not validation runs.

    The network runs under ``torch.no_grad`` in eval mode, so it is deterministic and leaves the training
    untouched: the mode of every submodule is restored afterwards, BatchNorm statistics are not updated and no
    random number is drawn. Non-finite embeddings (a diverged run) skip the picture with a warning instead of
    stopping the training.

    Args:
        network: the network, (1, C, *S) -> (1, E, *S); a ``DistributedDataParallel`` wrapper is unwrapped.
        dataset: a sequence of dicts, e.g. the validation ``monai.data.Dataset`` (its transforms are applied).
        interval: log every ``interval`` iterations of the engine the handler is attached to.
        roi_size: spatial size of the patch the network embeds ((H, W) or (D, H, W)); ``None`` embeds the whole
            image.
        index: item of ``dataset`` to embed.
        image_key: key of the (C, *S) image in the item.
        tag: TensorBoard tag of the embedding picture.
        image_tag: TensorBoard tag of the image picture.
        summary_writer: a ``SummaryWriter``; ``None`` creates one writing to ``log_dir``.
        log_dir: folder of the event file when ``summary_writer`` is ``None``.
        foreground_channel: the network's last output channel is a foreground logit (see ``SpocoLoss``'s
            ``foreground_weight``): it is left out of the embedding picture and written as a probability picture
            under ``foreground_tag``.
        foreground_tag: TensorBoard tag of the foreground picture.

    Raises:
        ValueError: ``interval`` < 1, ``roi_size`` with non-positive entries or a length other than the image's
            spatial dimensions, or an image that is not (C, H, W) or (C, D, H, W).
        KeyError: the item has no ``image_key``.
    """

    def __init__(
        self,
        network: nn.Module,
        dataset: Sequence[Mapping[str, Any]],
        interval: int,
        roi_size: Sequence[int] | None = None,
        index: int = 0,
        image_key: str = "image",
        tag: str = "embedding_pca",
        image_tag: str = "embedding_pca_input",
        summary_writer: Any = None,
        log_dir: str = "./runs",
        foreground_channel: bool = False,
        foreground_tag: str = "foreground_probability",
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be a positive number of iterations, got {interval!r}.")
        if roi_size is not None and not all(isinstance(size, int) and size > 0 for size in roi_size):
            raise ValueError(f"roi_size must hold positive integers, got {roi_size!r}.")
        item = dataset[index]
        if not isinstance(item, Mapping) or image_key not in item:
            found = sorted(item) if isinstance(item, Mapping) else type(item).__name__
            raise KeyError(f"item {index} of the dataset must be a dict with the key '{image_key}', found {found}.")
        image = convert_to_tensor(item[image_key], dtype=torch.float32, track_meta=False)
        if image.ndim not in (3, 4):
            raise ValueError(f"the image must have shape (C, H, W) or (C, D, H, W), got {tuple(image.shape)}.")
        if roi_size is not None:
            if len(roi_size) != image.ndim - 1:
                raise ValueError(
                    f"roi_size {tuple(roi_size)} must have one entry per spatial dimension of the image "
                    f"{tuple(image.shape)} (C, *S)."
                )
            image = convert_to_tensor(ResizeWithPadOrCrop(roi_size)(image), track_meta=False)
        super().__init__(summary_writer=summary_writer, log_dir=log_dir)
        self.network = network
        self.interval = interval
        self.tag = tag
        self.image_tag = image_tag
        self.foreground_channel = foreground_channel
        self.foreground_tag = foreground_tag
        self.image = image
        picture = image[0] if image.ndim == 3 else image[0, image.shape[1] // 2]
        self.image_picture = ScaleIntensityRangePercentiles(1, 99, 0.0, 1.0, clip=True)(picture[None])

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)

    def __call__(self, engine: Engine) -> None:
        """Embed the image with the current weights and write the two pictures at ``engine.state.iteration``.

        Raises:
            ValueError: the network output is not (1, E, *S) for the (1, C, *S) input.
        """
        # the unwrapped module: a DistributedDataParallel forward would synchronise buffers with the other ranks,
        # which do not run this handler
        module = unwrap_module(self.network)
        modes = {submodule: submodule.training for submodule in module.modules()}
        module.eval()
        try:
            with torch.no_grad():
                embeddings = module(self.image[None].to(next(module.parameters()).device))
        finally:
            for submodule, training in modes.items():
                submodule.train(training)
        if embeddings.ndim != self.image.ndim + 1 or embeddings.shape[0] != 1:
            raise ValueError(
                f"the network must map the (1, C, *S) input {tuple(self.image[None].shape)} to (1, E, *S) "
                f"embeddings, got {tuple(embeddings.shape)}."
            )
        step = engine.state.iteration
        if not torch.isfinite(embeddings).all():
            logger.warning(f"iteration {step}: the embeddings are not finite, '{self.tag}' is not written.")
            return
        embeddings = embeddings[0] if self.image.ndim == 3 else embeddings[0, :, embeddings.shape[2] // 2]
        self._writer.add_image(self.image_tag, self.image_picture, step, dataformats="CHW")
        if self.foreground_channel:
            self._writer.add_image(self.foreground_tag, torch.sigmoid(embeddings[-1:]), step, dataformats="CHW")
            embeddings = embeddings[:-1]
        self._writer.add_image(self.tag, embedding_pca_rgb(embeddings), step, dataformats="HWC")
        self._writer.flush()
