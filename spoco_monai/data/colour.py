"""Colour images given to a model of grey images: how to tell them, and what to do."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["COLOUR_SAMPLES", "colour_advice", "looks_like_colour_samples_last"]

# samples per pixel of RGB and RGBA images
COLOUR_SAMPLES = (3, 4)
# a spatial axis this short is more likely colour samples than space
_FEWEST_VOXELS_PER_AXIS = 5


def colour_advice(channels: int, in_channels: int) -> str | None:
    """A hint for an image of ``channels`` colour samples given to a model of fewer channels; None otherwise.

    Args:
        channels: the image's channels.
        in_channels: the channels the model takes.
    """
    if channels not in COLOUR_SAMPLES or in_channels >= channels:
        return None
    return (
        f"it looks like a colour (RGB) image; the model takes {in_channels} channel(s): keep the channel that shows "
        "the objects, or convert the image to grey (Fiji: Image > Type > 8-bit; Python: "
        "PIL.Image.open(path).convert('L').save(new_path))"
    )


def looks_like_colour_samples_last(shape: Sequence[int], channel_dim: int | None) -> bool:
    """Whether an array without a declared channel axis has colour samples stored last, as ``(Y, X, 3)``.

    Args:
        shape: the array's shape.
        channel_dim: the channel axis the file declares, None for none.
    """
    return (
        channel_dim is None
        and len(shape) >= 3
        and shape[-1] in COLOUR_SAMPLES
        and min(shape[:-1]) >= _FEWEST_VOXELS_PER_AXIS
    )
