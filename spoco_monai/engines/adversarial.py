"""The SPOCO trainer with the adversarial mask term: a critic, with an optimiser of its own, trained beside f."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from spoco_monai.engines.random_state import find_generators
from spoco_monai.engines.trainer import LOSS_TERMS, SpocoTrainer
from spoco_monai.losses.adversarial import MaskCritic, WassersteinMaskLoss
from spoco_monai.losses.spoco import SpocoLoss
from spoco_monai.validation import check_int, check_non_negative, check_positive_int

__all__ = ["ADVERSARIAL_TERMS", "AdversarialSpocoTrainer"]

#: Keys the adversarial trainer adds to the ``loss_terms`` of its output.
ADVERSARIAL_TERMS = ("adversarial", "critic", "wasserstein", "gradient_penalty")


class AdversarialSpocoTrainer(SpocoTrainer):
    """:class:`SpocoTrainer` plus the adversarial mask term of SPOCO's appendix A.1 (WGAN-GP).

    Each iteration, on one batch:

    1. as :class:`SpocoTrainer`, f and g embed the two views and ``SpocoLoss`` is computed; its single-instance term
       draws the objects and anchors (``SpocoLoss.last_chosen``);
    2. the soft masks of these objects (fake) and their ground-truth masks (real) are cut to boxes
       (:meth:`~spoco_monai.losses.adversarial.WassersteinMaskLoss.masks`); after ``warmup_iterations`` iterations
       the network's loss becomes SpocoLoss + ``adversarial_weight`` * (-E[D(fake)]), the critic D being frozen
       meanwhile (``requires_grad`` off), so that no gradient reaches it;
    3. backward pass, network step and EMA update of g, as :class:`SpocoTrainer`;
    4. ``n_critic`` critic steps on the masks of step 2, the fake ones detached (no gradient reaches f): zero the
       critic's gradients, critic loss E[D(fake)] - E[D(real)] + lambda GP, backward pass, ``critic_optimizer`` step;
       each step draws new interpolation weights for the gradient penalty. The critic's gradients are then cleared.

    The critic trains from the first iteration, so that it already tells the masks apart when its term enters the
    network's loss. The critic steps reuse the masks of the iteration's batch (the SPOCO reference code gives each
    critic step a batch of its own and skips the network's step then), so N iterations are N network steps and
    draw the same N batches with or without the critic. A batch without labeled objects has no masks: its term is 0
    and the critic makes no step. The masks and the critic are computed in float32 outside autocast; under AMP the
    gradient scaler acts on the network's loss only.

    ``loss_terms`` of the output also hold ``adversarial`` (-E[D(fake)] of step 2, 0 during the warm-up), and
    ``critic``, ``wasserstein`` (E[D(real)] - E[D(fake)]) and ``gradient_penalty`` of the iteration's last critic
    step (0 when it made none). :meth:`state_dict` also holds the state of the adversarial loss's generator; the
    critic and its optimiser are checkpoint objects of their own (``critic`` and ``critic_optimizer`` in
    ``bundle/configs/adversarial.json``). Not for distributed runs: the critic is not synchronised across processes.

    Defaults: ``adversarial_weight`` 0.1 and ``n_critic`` 2 are those of the SPOCO reference code
    (``--gan-loss-weight``, ``--critic-iters``); no warm-up, as there (``--bootstrap-embeddings`` unset).

    Args:
        device: device of the networks and the batches.
        max_epochs: number of epochs to train.
        train_data_loader: as for :class:`SpocoTrainer`.
        network: the student f.
        optimizer: optimiser of f's parameters.
        loss_function: a ``SpocoLoss`` with ``instance_weight > 0`` (its soft masks are the fake masks).
        critic: the critic D (e.g. :class:`~spoco_monai.losses.adversarial.MaskCritic`) on ``device``, taking masks
            of the adversarial loss's box.
        critic_optimizer: optimiser of exactly the critic's parameters, e.g. ``Adam(lr=1e-4, betas=(0.5, 0.9))``
            as in the WGAN-GP authors' code.
        adversarial_loss: the WGAN-GP objectives and box size.
        adversarial_weight: weight >= 0 of the generator term in the network's loss.
        n_critic: critic steps per network step, >= 1.
        warmup_iterations: iterations >= 0 before the generator term enters the network's loss.
        kwargs: further :class:`SpocoTrainer` arguments (``teacher_network``, ``ema_momentum``, ``amp``, ...).

    Raises:
        TypeError: an option of the wrong type.
        ValueError: a bad option, a loss without the single-instance term, a critic optimiser that does not hold
            exactly the critic's parameters, a box the critic cannot take, or a distributed run.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: nn.Module,
        optimizer: Optimizer,
        loss_function: SpocoLoss,
        critic: nn.Module,
        critic_optimizer: Optimizer,
        adversarial_loss: WassersteinMaskLoss,
        adversarial_weight: float = 0.1,
        n_critic: int = 2,
        warmup_iterations: int = 0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(loss_function, SpocoLoss) or loss_function.instance_weight == 0:
            raise ValueError(
                "the adversarial term needs a SpocoLoss with instance_weight > 0: its single-instance soft masks are "
                f"the critic's fake masks (found {type(loss_function).__name__})."
            )
        optimised = {id(parameter) for group in critic_optimizer.param_groups for parameter in group["params"]}
        if optimised != {id(parameter) for parameter in critic.parameters()}:
            raise ValueError(
                "critic_optimizer must optimise exactly the critic's parameters (build it on critic.parameters())."
            )
        box = adversarial_loss.box_size
        if isinstance(critic, MaskCritic) and (len(box) != critic.spatial_dims or min(box) < critic.min_size):
            raise ValueError(
                f"the {critic.spatial_dims}D critic takes boxes of {critic.spatial_dims} sizes >= {critic.min_size}, "
                f"found box_size {box}; enlarge the box or give the critic fewer widths."
            )
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed and torch.distributed.get_world_size() > 1:
            raise ValueError("AdversarialSpocoTrainer does not support distributed runs (unsynchronised critic).")
        adversarial_weight = check_non_negative("adversarial_weight", adversarial_weight)
        n_critic = check_positive_int("n_critic", n_critic)
        if check_int("warmup_iterations", warmup_iterations) < 0:
            raise ValueError(f"warmup_iterations must be >= 0, found {warmup_iterations}.")
        super().__init__(device, max_epochs, train_data_loader, network, optimizer, loss_function, **kwargs)
        self.critic = critic
        self.critic_optimizer = critic_optimizer
        self.adversarial_loss = adversarial_loss
        self.adversarial_weight = adversarial_weight
        self.n_critic = n_critic
        self.warmup_iterations = warmup_iterations
        self._masks: tuple[torch.Tensor, torch.Tensor] | None = None
        self._generator_term = 0.0

    def _generators(self) -> list:
        return super()._generators() + find_generators(self.adversarial_loss)

    def _network_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """SpocoLoss plus, after the warm-up, the weighted generator term; keeps the masks for the critic steps."""
        active = self.state.iteration > self.warmup_iterations and self.adversarial_weight > 0
        with torch.autocast(device_type=loss.device.type, enabled=False), torch.set_grad_enabled(active):
            fake, real = self.adversarial_loss.masks(self.loss_function.last_chosen)
            self._masks = (fake.detach(), real)
            self._generator_term = 0.0
            if not active or fake.shape[0] == 0:
                return loss
            self.critic.requires_grad_(False)
            try:
                term = self.adversarial_loss.generator_loss(self.critic, fake)
            finally:
                self.critic.requires_grad_(True)
        self._generator_term = float(term.detach())
        return loss + self.adversarial_weight * term

    def critic_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """One optimiser step of the critic on (n, 1, *box) masks, n >= 1; the masks receive no gradient.

        Returns:
            the critic loss, Wasserstein estimate and gradient penalty of the step (``critic``, ``wasserstein``,
            ``gradient_penalty``).
        """
        self.critic_optimizer.zero_grad(set_to_none=True)
        self.adversarial_loss.critic_loss(self.critic, real, fake).backward()
        self.critic_optimizer.step()
        return dict(self.adversarial_loss.last_terms)

    def _iteration(  # type: ignore[override]
        self, engine: AdversarialSpocoTrainer, batchdata: dict[str, torch.Tensor]
    ) -> dict:
        """The :class:`SpocoTrainer` step with the generator term, then the critic steps (see the class docstring)."""
        output = super()._iteration(engine, batchdata)
        fake, real = self._masks
        self._masks = None
        terms = dict.fromkeys(ADVERSARIAL_TERMS, 0.0)
        terms["adversarial"] = self._generator_term
        if fake.shape[0] > 0:
            for _ in range(self.n_critic):
                terms.update(self.critic_step(real, fake))
            self.critic_optimizer.zero_grad(set_to_none=True)
        output[LOSS_TERMS].update(terms)
        return output
