"""The Gaussian soft-mask kernel of the single-instance and consistency terms, and Dice on soft masks."""

from __future__ import annotations

import math

import torch

from spoco_monai.validation import check_open_unit_interval, check_positive

__all__ = ["kernel_sigma_squared", "dice_loss_from_sums"]


def kernel_sigma_squared(delta_var: float, kernel_threshold: float) -> float:
    """Variance of the Gaussian kernel whose value is ``kernel_threshold`` at distance ``delta_var``.

    The soft mask around an anchor a is S(i) = exp(-||e_i - e_a||^2 / (2 sigma^2)); requiring S = t at
    ||e_i - e_a|| = delta_v gives sigma^2 = -delta_v^2 / (2 ln t).

    Args:
        delta_var: pull margin delta_v > 0.
        kernel_threshold: kernel value t in (0, 1) at distance delta_v.

    Returns:
        sigma^2 as a float.

    Raises:
        TypeError: a non-numeric argument.
        ValueError: delta_var <= 0 or kernel_threshold outside (0, 1).
    """
    delta_var = check_positive("delta_var", delta_var)
    kernel_threshold = check_open_unit_interval("kernel_threshold", kernel_threshold)
    return -(delta_var**2) / (2.0 * math.log(kernel_threshold))


def dice_loss_from_sums(
    intersection: torch.Tensor, prediction_sq: torch.Tensor, target_sq: torch.Tensor
) -> torch.Tensor:
    """Dice loss 1 - 2 sum(p g) / (sum p^2 + sum g^2) from its three sums (tensors of matching shapes).

    Callers guarantee a positive denominator (a non-empty ground-truth mask, or a soft mask equal to 1 at its
    anchor).
    """
    return 1.0 - 2.0 * intersection / (prediction_sq + target_sq)
