"""Time and quality of the clustering methods on synthetic embedding maps.

Run as ``python bench/clustering.py [--maps 2d 3d]``. Each map tiles the array with Voronoi cells (dense
tissue); every object has its own embedding centre (centres > 2 delta_d apart), pixels get Gaussian noise
of norm delta_v / 2 and 2% of the boundary pixels are outliers halfway between two objects. Quality is the
adapted Rand error against the true objects, speed is compared with HDBSCAN measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from spoco_monai.clustering import (
    consistency_clustering,
    hdbscan_clustering,
    make_synthetic_embeddings,
    mean_shift_clustering,
    mutex_watershed,
)

try:
    from spoco_monai.metrics import adapted_rand_error
except ImportError:
    from skimage.metrics import adapted_rand_error

DELTA_V = 0.5
DELTA_D = 2.0
MAPS = {"2d": ((448, 448), 60), "3d": ((64, 256, 256), 300)}
# the second view of consistency clustering: the teacher's embeddings differ by this much noise
TEACHER_NOISE = 0.1


def _methods(spatial_dims: int, min_size: int, teacher: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    mutex_strides = [1] + [2] * (spatial_dims - 1) if spatial_dims == 3 else [2, 2]
    return {
        "HDBSCAN (10k-pixel fit)": lambda e: hdbscan_clustering(e, min_size, epsilon=DELTA_V, min_samples=10),
        "MWS": lambda e: mutex_watershed(e, delta_dist=DELTA_D),
        f"MWS, strides {tuple(mutex_strides)}": lambda e: mutex_watershed(e, delta_dist=DELTA_D, strides=mutex_strides),
        "MWS, min_size": lambda e: mutex_watershed(e, delta_dist=DELTA_D, min_size=min_size // 10),
        "mean-shift": lambda e: mean_shift_clustering(e, bandwidth=DELTA_V),
        "consistency": lambda e: consistency_clustering(e, teacher, bandwidth=DELTA_V),
    }


def _score(labels: np.ndarray, segmentation: np.ndarray) -> float:
    error = adapted_rand_error(segmentation, labels) if adapted_rand_error.__module__.startswith("spoco") else (
        adapted_rand_error(labels, segmentation)
    )
    return float(error[0] if isinstance(error, tuple) else error)


def run(map_names: list[str]) -> list[dict]:
    rows = []
    for map_name in map_names:
        shape, n_objects = MAPS[map_name]
        embeddings, labels = make_synthetic_embeddings(
            shape, n_objects, noise_std=DELTA_V / 2, outlier_fraction=0.02, seed=0
        )
        rng = np.random.default_rng(1)
        teacher = embeddings + rng.normal(scale=TEACHER_NOISE / 4, size=embeddings.shape).astype(np.float32)
        min_size = labels.size // n_objects // 4
        baseline = None
        for method, function in _methods(len(shape), min_size, teacher).items():
            start = time.perf_counter()
            segmentation = function(embeddings)
            seconds = time.perf_counter() - start
            baseline = baseline or seconds
            rows.append(
                {
                    "map": f"{map_name} {'x'.join(map(str, shape))}",
                    "method": method,
                    "seconds": seconds,
                    "mvox_per_s": labels.size / seconds / 1e6,
                    "speedup": baseline / seconds,
                    "arand": _score(labels, segmentation),
                    "segments": int(segmentation.max()),
                    "objects": n_objects,
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", nargs="+", choices=sorted(MAPS), default=sorted(MAPS))
    rows = run(parser.parse_args().maps)
    print("\n| map | method | time (s) | M voxels/s | speed-up vs HDBSCAN | adapted Rand error | segments / objects |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['map']} | {row['method']} | {row['seconds']:.2f} | {row['mvox_per_s']:.2f} | "
            f"{row['speedup']:.1f}x | {row['arand']:.4f} | {row['segments']} / {row['objects']} |"
        )


if __name__ == "__main__":
    main()
