"""SpocoLoss: the full SPOCO training objective, sparse (positive-unlabeled) or dense."""

from __future__ import annotations

import torch
from torch import nn

from spoco_monai.losses.affinity_side import AffinitySideLoss
from spoco_monai.losses.consistency import EmbeddingConsistencyLoss
from spoco_monai.losses.discriminative import DiscriminativeLoss
from spoco_monai.losses.foreground import ForegroundLoss
from spoco_monai.losses.objects import ObjectIndex, means_and_pull, per_pixel
from spoco_monai.losses.single_instance import ChosenObjects, SingleInstanceLoss
from spoco_monai.losses.unlabeled_push import UnlabeledPushLoss
from spoco_monai.losses.inputs import flatten_loss_inputs
from spoco_monai.losses.sampling import random_priorities
from spoco_monai.validation import check_int, check_non_negative, check_positive_int

__all__ = ["SpocoLoss", "TERM_NAMES"]

#: Keys of :attr:`SpocoLoss.last_terms`, in the order of the method's terms.
TERM_NAMES = ("pull", "push", "reg", "instance", "unlabeled", "consistency", "foreground", "affinity")


class SpocoLoss(nn.Module):
    """SPOCO loss: discriminative terms, single-instance term, unlabeled push and embedding consistency.

    total = alpha pull + beta push + gamma reg + instance_weight instance
            (+ unlabeled_weight unlabeled in sparse mode) + consistency_weight consistency
            (+ foreground_weight foreground with a foreground channel) (+ affinity_weight affinity).

    - Sparse mode (``sparse=True``): ids > 0 are the labeled objects, 0 is unlabeled (objects and background
      alike), -1 is ignored. The unlabeled push acts between the objects and the unlabeled pixels, and the
      consistency term draws its anchors in the unlabeled region.
    - Dense mode (``sparse=False``): every id > 0 is an object (the background carries an id of its own).
      There is no unlabeled push. Since there is no unlabeled region, the consistency term (switched by its
      weight) draws its anchors among all non-ignored pixels.

    The consistency term needs ``teacher_embeddings`` (the EMA teacher's embeddings of a second view); when
    they are not given, the term is skipped (reported as 0). A term whose weight is 0 is not computed and is
    reported as 0. Every term is a batch mean computed in float32 (float64 for float64 embeddings), also
    under autocast; see the term modules for their definitions.

    Optional foreground channel (``foreground_weight > 0``): the network outputs E + 1 channels, the last being
    a foreground logit; the SPOCO terms see the first E channels only (of the teacher's output too), and the
    logit is trained by :class:`~spoco_monai.losses.foreground.ForegroundLoss` against the ``foreground``
    target given to ``forward`` (1 foreground, 0 background, -1 unknown). The clustering then uses the learned
    foreground as its mask. With the default weight 0 nothing changes.

    Optional affinity side term (``affinity_weight > 0``, :class:`~spoco_monai.losses.affinity_side.AffinitySideLoss`):
    a Dice between the boundaries that the embeddings' affinities imply at random offsets and those of the labeled
    pixel pairs, with the clustering's kernel width ``affinity_delta_dist`` (default ``delta_dist``). With the
    default weight 0 it is not computed. After each forward, :attr:`last_terms`
    holds the unweighted value of each term as a float, under the keys of ``TERM_NAMES``, and :attr:`last_chosen`
    the objects and anchors of the single-instance term (:class:`~spoco_monai.losses.single_instance.ChosenObjects`,
    differentiable; ``None`` when the term's weight is 0): the adversarial term
    (:mod:`~spoco_monai.losses.adversarial`) builds its soft masks from them.

    Wolny et al., "Sparse Object-level Supervision for Instance Segmentation with Pixel Embeddings", CVPR 2022.

    Args:
        delta_var: pull margin delta_v > 0, also the kernel's reference distance.
        delta_dist: push margin delta_d > 0.
        kernel_threshold: kernel value in (0, 1) at distance delta_v.
        alpha: weight of the pull term.
        beta: weight of the push term.
        gamma: weight of the regulariser.
        instance_weight: weight of the single-instance term.
        unlabeled_weight: weight of the unlabeled push (sparse mode only).
        consistency_weight: weight of the consistency term.
        foreground_weight: weight of the foreground term; > 0 means the last channel is a foreground logit.
        affinity_weight: weight of the affinity side term.
        affinity_delta_dist: None (``delta_dist``) or the affinity kernel's delta_d of the side term.
        affinity_max_offset: largest offset along an axis of the side term's random offsets.
        affinity_unlabeled_is_other: the side term counts pairs of a labeled and an unlabeled pixel as boundaries
            (``AffinitySideLoss``'s ``unlabeled_is_other``).
        sparse: positive-unlabeled labels (True) or dense labels (False).
        max_instances: None or the largest number of objects per sample in the single-instance term.
        max_anchors: largest number of consistency anchors per sample.
        kernel_pixels: None (exact), or the number of pixels per sample, drawn uniformly at random at every call,
            on which the (objects x pixels) kernel sums are taken: the single-instance term's sums of squared soft
            masks outside each object (estimated, unbiased), the unlabeled push's mean over the unlabeled pixels and
            the consistency term's soft masks. An opt-in approximation: it trades precision of those terms for
            time on large patches (``bench/RESULTS.md``, *Loss cost*). Patches of at most this many pixels are exact.
        seed: seed of the random anchor, subset and offset choices (the single-instance, consistency and affinity
            side terms own generators seeded with ``seed``, ``seed + 1`` and ``seed + 2``; with ``kernel_pixels``
            the pixel subsets come from one seeded with ``seed + 3``).

    Raises:
        TypeError: an option of the wrong type.
        ValueError: an option out of range (non-positive margins, negative weights, ...).
    """

    def __init__(
        self,
        delta_var: float = 0.5,
        delta_dist: float = 2.0,
        kernel_threshold: float = 0.9,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.001,
        instance_weight: float = 1.0,
        unlabeled_weight: float = 1.0,
        consistency_weight: float = 1.0,
        sparse: bool = True,
        max_instances: int | None = None,
        max_anchors: int = 20,
        kernel_pixels: int | None = None,
        seed: int = 0,
        foreground_weight: float = 0.0,
        affinity_weight: float = 0.0,
        affinity_delta_dist: float | None = None,
        affinity_max_offset: int = 18,
        affinity_unlabeled_is_other: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(sparse, bool):
            raise TypeError(f"sparse must be a bool, found {type(sparse).__name__} ({sparse!r}).")
        self.sparse = sparse
        self.instance_weight = check_non_negative("instance_weight", instance_weight)
        self.unlabeled_weight = check_non_negative("unlabeled_weight", unlabeled_weight)
        self.consistency_weight = check_non_negative("consistency_weight", consistency_weight)
        self.foreground_weight = check_non_negative("foreground_weight", foreground_weight)
        self.foreground = ForegroundLoss()
        self.affinity_weight = check_non_negative("affinity_weight", affinity_weight)
        side_delta = delta_dist if affinity_delta_dist is None else affinity_delta_dist
        self.affinity_side = AffinitySideLoss(
            side_delta, affinity_max_offset, seed=seed + 2, unlabeled_is_other=affinity_unlabeled_is_other
        )
        self.discriminative = DiscriminativeLoss(delta_var, delta_dist, alpha, beta, gamma)
        self.single_instance = SingleInstanceLoss(delta_var, kernel_threshold, "dice", max_instances, seed)
        self.unlabeled_push = UnlabeledPushLoss(delta_dist)
        self.consistency = EmbeddingConsistencyLoss(delta_var, kernel_threshold, max_anchors, seed=seed + 1)
        self.kernel_pixels = None if kernel_pixels is None else check_positive_int("kernel_pixels", kernel_pixels)
        # only an opt-in run owns this generator, so the random state of exact runs (and their checkpoints) is as before
        self.pixel_generator = None
        if kernel_pixels is not None:
            self.pixel_generator = torch.Generator().manual_seed(check_int("seed", seed) + 3)
        self.last_terms: dict[str, float] = dict.fromkeys(TERM_NAMES, 0.0)
        self.last_chosen: ChosenObjects | None = None

    def forward(
        self,
        embeddings: torch.Tensor,
        target: torch.Tensor,
        teacher_embeddings: torch.Tensor | None = None,
        foreground: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compute the weighted sum of the terms.

        Args:
            embeddings: (B, E, H, W) or (B, E, D, H, W) student embeddings.
            target: (B, 1, *S) or (B, *S) integer tensor; id > 0 object, 0 unlabeled, -1 ignore.
            teacher_embeddings: None or the teacher's embeddings, same shape as ``embeddings``; never
                receives a gradient.
            foreground: (B, 1, *S) foreground target (1, 0, or -1 unknown); required when ``foreground_weight > 0``.

        Returns:
            Scalar float32 (float64 for float64 embeddings) loss.

        Raises:
            ValueError: with ``foreground_weight > 0``, a missing ``foreground`` target or embeddings without
                the extra channel.
        """
        foreground_term = None
        if self.foreground_weight > 0:
            if foreground is None:
                raise ValueError(
                    "foreground_weight > 0 needs the foreground target (a 'foreground' key made by ForegroundTargetd)."
                )
            if embeddings.shape[1] < 2:
                raise ValueError(
                    f"foreground_weight > 0 needs embeddings plus a foreground channel, found {embeddings.shape[1]} channel."
                )
            with torch.autocast(device_type=embeddings.device.type, enabled=False):
                foreground_term = self.foreground(embeddings[:, -1], foreground)
            embeddings = embeddings[:, :-1]
            teacher_embeddings = None if teacher_embeddings is None else teacher_embeddings[:, :-1]
        flat_embeddings, flat_target, teacher = flatten_loss_inputs(embeddings, target, teacher_embeddings)
        with torch.autocast(device_type=flat_embeddings.device.type, enabled=False):
            affinity_term = self.affinity_side(embeddings, target) if self.affinity_weight > 0 else None
            objects = ObjectIndex.from_target(flat_target)
            valid = flat_target >= 0
            means, pull_sums = means_and_pull(flat_embeddings, objects, self.discriminative.delta_var)
            zero = flat_embeddings.new_zeros(())
            terms = dict(zip(TERM_NAMES[:3], self.discriminative.terms(objects, means, pull_sums)))
            pixels = self._kernel_pixel_subset(flat_embeddings)
            self.last_chosen = None
            terms["instance"] = zero
            if self.instance_weight > 0:
                spatial_shape = tuple(embeddings.shape[2:])
                self.last_chosen = self.single_instance.choose(flat_embeddings, objects, means, valid, spatial_shape)
                terms["instance"] = self.single_instance.chosen_term(self.last_chosen, pixels)
            apply_unlabeled = self.sparse and self.unlabeled_weight > 0
            terms["unlabeled"] = (
                self.unlabeled_push.term(
                    _at_pixels(flat_embeddings, pixels), objects, means, _at_pixels(flat_target == 0, pixels)
                )
                if apply_unlabeled
                else zero
            )
            apply_consistency = teacher is not None and self.consistency_weight > 0
            region = flat_target == 0 if self.sparse else valid
            terms["consistency"] = (
                self.consistency.term(*(_at_pixels(x, pixels) for x in (flat_embeddings, teacher, region, valid)))
                if apply_consistency
                else zero
            )
            terms["foreground"] = zero if foreground_term is None else foreground_term.to(zero.dtype)
            terms["affinity"] = zero if affinity_term is None else affinity_term.to(zero.dtype)
            weights = {
                "pull": self.discriminative.alpha,
                "push": self.discriminative.beta,
                "reg": self.discriminative.gamma,
                "instance": self.instance_weight,
                "unlabeled": self.unlabeled_weight if self.sparse else 0.0,
                "consistency": self.consistency_weight,
                "foreground": self.foreground_weight,
                "affinity": self.affinity_weight,
            }
            total = sum(weights[name] * terms[name] for name in TERM_NAMES)
            self.last_terms = dict(zip(TERM_NAMES, torch.stack([terms[n].detach() for n in TERM_NAMES]).tolist()))
            return total

    def _kernel_pixel_subset(self, flat_embeddings: torch.Tensor) -> torch.Tensor | None:
        """(B, kernel_pixels) pixels drawn for this call's kernel sums; None when they are exact."""
        batch, _, num_pixels = flat_embeddings.shape
        if self.kernel_pixels is None or self.kernel_pixels >= num_pixels:
            return None
        # the first kernel_pixels of a random permutation, in ascending order so that the gathers read memory in order
        priorities = random_priorities(batch, num_pixels, self.pixel_generator, flat_embeddings.device)
        return priorities[:, : self.kernel_pixels].sort(dim=1).values


def _at_pixels(values: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    """(B, N) or (B, C, N) ``values`` at the (B, P) drawn ``pixels``; ``values`` itself when none were drawn."""
    if pixels is None:
        return values
    return values.gather(1, pixels) if values.ndim == 2 else per_pixel(values, pixels)
