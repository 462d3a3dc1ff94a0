"""Pictures and a short report of a segmentation: raw image, embedding PCA and instance labels side by side.

Library functions work on arrays; the command line applies them to the files of a segmentation, with the network
of the model that made it (``--model``: a name or a model folder, as for ``spoco-monai segment``)::

    python -m spoco_monai.visualize --image sample.nii.gz --labels out/sample_instances.nii.gz \\
        --ground-truth sample_labels.nii.gz --output-dir out --model model

It writes ``<labels name>.tif`` (the labels as a TIFF, axes as stored), ``<labels name>.png`` (the figure of
the central slice) and ``<labels name>_report.json``, and prints the adapted Rand error and SBD against the
ground truth when one is given. With ``--baseline membranes`` (or ``nuclei``) it also segments the image with
the classical seeded watershed of :mod:`spoco_monai.baselines` and prints its scores beside the model's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from bioimage_cpp.segmentation import relabel_sequential
from monai.transforms import LoadImage
from monai.utils import OptionalImportError, optional_import

from spoco_monai.baselines import membrane_watershed, nuclei_watershed
from spoco_monai.bundle import DEFAULT_BUNDLE, DEFAULT_MODEL, bundle_model, load_bundle_network, model_names
from spoco_monai.data import default_readers
from spoco_monai.data.volume_io import write_volume
from spoco_monai.engines import embedding_pca_rgb
from spoco_monai.inferers import SpocoSlidingWindowInferer
from spoco_monai.metrics import adapted_rand_error, symmetric_best_dice


def label_rgb(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Colour instance labels: a random bright colour per id (seeded), black for 0 and below.

    The n-th smallest positive id takes the n-th colour of the seeded palette, so two label images with the
    same ids are coloured alike whether or not they contain background or negative (ignore) values.

    Args:
        labels: (*S) integer array.
        seed: seed of the colour choice.

    Returns:
        (*S, 3) float32 in [0, 1].
    """
    ranks, _, inverse_map = relabel_sequential(np.maximum(np.asarray(labels), 0).astype(np.int64))
    palette = np.random.default_rng(seed).uniform(0.25, 1.0, (len(inverse_map), 3)).astype(np.float32)
    palette[0] = 0.0
    return palette[ranks]


def save_segmentation_figure(
    image: np.ndarray,
    embedding_rgb: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    ground_truth: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Save a PNG with the raw image, the embedding PCA, the labels and optionally the ground truth.

    Args:
        image: (H, W) raw intensities of one slice.
        embedding_rgb: (H, W, 3) colours from :func:`embedding_pca_rgb`.
        labels: (H, W) instance labels.
        path: PNG file to write.
        ground_truth: optional (H, W) reference labels.
        title: optional figure title.

    Returns:
        The path written.

    Raises:
        ValueError: the panels do not share the (H, W) shape.
        monai.utils.OptionalImportError: the optional ``matplotlib`` package is not installed.
    """
    Figure, installed = optional_import("matplotlib.figure", name="Figure")
    if not installed:
        raise OptionalImportError(
            "the figure needs matplotlib, which is not installed: pip install 'spoco-monai[figures]' (or pip install "
            "matplotlib)."
        )
    panels = [("raw", image, "gray"), ("embedding PCA", embedding_rgb, None), ("instances", label_rgb(labels), None)]
    if ground_truth is not None:
        panels.append(("ground truth", label_rgb(ground_truth), None))
    shapes = {np.shape(panel)[:2] for _, panel, _ in panels}
    if len(shapes) != 1 or np.ndim(image) != 2:
        raise ValueError(f"all panels must be one (H, W) slice; found shapes {[np.shape(p) for _, p, _ in panels]}.")
    # The object-oriented Figure needs no pyplot backend, so this works without a display.
    figure = Figure(figsize=(4 * len(panels), 4.4))
    axes = figure.subplots(1, len(panels), squeeze=False)
    for axis, (name, panel, colormap) in zip(axes[0], panels):
        axis.imshow(panel, cmap=colormap, interpolation="nearest")
        axis.set_title(name)
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def central_slab(image: torch.Tensor, depth: int) -> tuple[torch.Tensor, int]:
    """The ``depth`` leading-axis slices around the centre of a (C, D, H, W) volume (2D images pass through).

    Args:
        image: (C, D, H, W) or (C, H, W) tensor.
        depth: slab thickness along D (clipped to D).

    Returns:
        ``(slab, index)``: the (C, d, H, W) slab (or the 2D image) and the index of the central slice in it
        (``-1`` for 2D).
    """
    if image.ndim == 3:
        return image, -1
    size = image.shape[1]
    depth = min(depth, size)
    start = max(0, min(size // 2 - depth // 2, size - depth))
    return image[:, start : start + depth], size // 2 - start


def _read_volume(path: str) -> np.ndarray:
    loader = LoadImage(reader=default_readers(), image_only=True, dtype=None)
    return np.asarray(loader(path))


BASELINES = {"membranes": membrane_watershed, "nuclei": nuclei_watershed}


def _report(args: argparse.Namespace) -> dict:
    model = bundle_model(args.bundle, args.model)
    overrides = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.set)}
    checkpoint = args.checkpoint or Path(args.bundle) / model["model_path"]
    network, parser = load_bundle_network(args.bundle, checkpoint, args.config or model["configs"], "cpu", overrides)
    roi_size = tuple(parser["patch_size"])
    image = parser.get_parsed_content("preprocessing")({"image": args.image})["image"].as_tensor()
    slab, index = central_slab(image, roi_size[0])
    # the network runs on the CPU here, whatever device the config's settings name; the figure shows the
    # embeddings of one pass (mirrored passes' embeddings cannot be averaged)
    settings = dataclasses.replace(parser.get_parsed_content("segmentation"), device=None, test_time_flips=False)
    inferer = SpocoSlidingWindowInferer(settings, output="embeddings")
    with torch.no_grad():
        embeddings = inferer(slab[None].float(), network)[0]
    labels = _read_volume(args.labels).astype(np.int64)
    ground_truth = _read_volume(args.ground_truth).astype(np.int64) if args.ground_truth else None

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(args.labels).name.split(".")[0]
    tiff_path = output_dir / f"{stem}.tif"
    write_volume(tiff_path, labels.astype(np.int32), overwrite=True)

    def central(volume: np.ndarray) -> np.ndarray:
        return volume if volume.ndim == 2 else volume[volume.shape[0] // 2]

    raw_slice = slab[0] if index < 0 else slab[0, index]
    embedding_slice = embeddings if index < 0 else embeddings[:, index]
    report: dict = {
        "labels": str(args.labels),
        "labels_tiff": str(tiff_path),
        "objects": int(len(np.unique(labels[labels > 0]))),
    }
    title = f"{stem}: {report['objects']} objects"
    if ground_truth is not None:
        report["adapted_rand_error"] = float(adapted_rand_error(labels, ground_truth))
        report["symmetric_best_dice"] = float(symmetric_best_dice(labels, ground_truth))
        title += f", adapted Rand error {report['adapted_rand_error']:.4f}"
        if args.baseline is not None:
            raw = _read_volume(args.image).astype(np.float32)
            raw = raw[0] if raw.ndim == ground_truth.ndim + 1 else raw
            classical = BASELINES[args.baseline](raw, element_size=args.element_size)
            report["baseline"] = {
                "method": args.baseline,
                "objects": int(classical.max()),
                "adapted_rand_error": float(adapted_rand_error(classical, ground_truth)),
                "symmetric_best_dice": float(symmetric_best_dice(classical, ground_truth)),
            }
    figure_path = save_segmentation_figure(
        raw_slice.numpy(), embedding_pca_rgb(embedding_slice), central(labels), output_dir / f"{stem}.png",
        None if ground_truth is None else central(ground_truth), title,
    )
    report["figure"] = str(figure_path)
    (output_dir / f"{stem}_report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: figure, TIFF copy and metrics of a bundle inference result (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True, help="the image the labels were computed from")
    parser.add_argument("--labels", required=True, help="instance labels written by the bundle's inference.json")
    parser.add_argument("--ground-truth", help="optional reference labels for the adapted Rand error and SBD")
    parser.add_argument("--bundle", default=DEFAULT_BUNDLE, help=f"MONAI bundle directory (default: {DEFAULT_BUNDLE})")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a model the bundle ships, by name ({', '.join(model_names(DEFAULT_BUNDLE))}), or a model folder "
        f"written by 'spoco-monai train', as for 'spoco-monai segment --model' (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--checkpoint", help="weights (default: the model's, e.g. BUNDLE/models/model.pt)")
    parser.add_argument("--config", nargs="+", help="bundle config files, relative to the bundle (default: the model's)")
    parser.add_argument("--output-dir", required=True, help="folder for the TIFF, the PNG and the report")
    parser.add_argument(
        "--set", action="append", default=[], metavar="ID=JSON",
        help="override a config value as for the bundle run, e.g. --set 'patch_size=[32,64,64]'",
    )
    parser.add_argument(
        "--baseline", choices=sorted(BASELINES), help="also score a classical seeded watershed (needs --ground-truth)"
    )
    parser.add_argument("--element-size", nargs="+", type=float, help="voxel size per axis for the baseline")
    report = _report(parser.parse_args(argv))
    print(f"labels (TIFF): {report['labels_tiff']}\nfigure: {report['figure']}\nobjects: {report['objects']}")
    if "adapted_rand_error" in report:
        print(f"adapted Rand error: {report['adapted_rand_error']:.4f}")
        print(f"symmetric best Dice: {report['symmetric_best_dice']:.4f}")
    if "baseline" in report:
        baseline = report["baseline"]
        print(
            f"classical {baseline['method']} watershed: adapted Rand error {baseline['adapted_rand_error']:.4f}, "
            f"symmetric best Dice {baseline['symmetric_best_dice']:.4f}, {baseline['objects']} objects"
        )
    return report


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError, OptionalImportError) as error:
        sys.exit(f"python -m spoco_monai.visualize: error: {error}")
