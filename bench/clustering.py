"""Time and quality of the clustering methods on synthetic embedding maps.

Run as ``python -m bench.clustering [--maps 2d 3d]``. Each map tiles the array with Voronoi cells (dense
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
from spoco_monai.metrics import instance_scores

DELTA_V = 0.5
DELTA_D = 2.0
MAPS = {"2d": ((448, 448), 60), "3d": ((64, 256, 256), 300)}
# the teacher's embeddings of the second view (consistency clustering) differ by noise of this norm
TEACHER_NOISE = 0.1
# threshold of the region-graph Mutex Watershed: joins pixels less than 1.17 apart in embedding space
PRESEGMENT_THRESHOLD = 0.5
# not run on 3D: the pixel-level Mutex Watershed without strides took 284 s on 64x256x256 on this machine
# (0.015 M voxels/s); HDBSCAN on all 4.2 M voxels is out of reach
SKIPPED = {"3d": ("HDBSCAN, all pixels", "MWS pixel-level")}


def _methods(spatial_dims: int, min_size: int, teacher: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    strides = (2, 2) if spatial_dims == 2 else (2, 4, 4)
    return {
        "HDBSCAN, 10k-pixel fit": lambda e: hdbscan_clustering(e, min_size, epsilon=DELTA_V, min_samples=10),
        "HDBSCAN, all pixels": lambda e: hdbscan_clustering(
            e, min_size, epsilon=DELTA_V, min_samples=10, max_samples=None
        ),
        "MWS pixel-level": lambda e: mutex_watershed(e, affinity_delta_dist=DELTA_D),
        f"MWS pixel-level, strides {strides}": lambda e: mutex_watershed(
            e, affinity_delta_dist=DELTA_D, strides=strides
        ),
        "MWS region graph": lambda e: mutex_watershed(
            e, affinity_delta_dist=DELTA_D, presegment_threshold=PRESEGMENT_THRESHOLD
        ),
        "MWS region graph, min_size": lambda e: mutex_watershed(
            e, affinity_delta_dist=DELTA_D, presegment_threshold=PRESEGMENT_THRESHOLD, min_size=min_size // 10
        ),
        "mean-shift": lambda e: mean_shift_clustering(e, bandwidth=DELTA_V),
        "consistency": lambda e: consistency_clustering(e, teacher, bandwidth=DELTA_V),
    }


def run(map_names: list[str]) -> list[dict]:
    rows = []
    for map_name in map_names:
        shape, n_objects = MAPS[map_name]
        embeddings, labels = make_synthetic_embeddings(
            shape, n_objects, noise_std=DELTA_V / 2, outlier_fraction=0.02, seed=0
        )
        noise = np.random.default_rng(1).normal(scale=TEACHER_NOISE / 4, size=embeddings.shape)
        teacher = embeddings + noise.astype(np.float32)
        min_size = labels.size // n_objects // 4
        seconds_by_method = {}
        for method, function in _methods(len(shape), min_size, teacher).items():
            if method in SKIPPED.get(map_name, ()):
                continue
            start = time.perf_counter()
            segmentation = function(embeddings)
            seconds = time.perf_counter() - start
            seconds_by_method[method] = seconds
            scores = instance_scores(segmentation, labels)
            rows.append(
                {
                    "map": f"{map_name} {'x'.join(map(str, shape))}",
                    "method": method,
                    "seconds": seconds,
                    "mvox_per_s": labels.size / seconds / 1e6,
                    "vs_hdbscan_10k": seconds_by_method["HDBSCAN, 10k-pixel fit"] / seconds,
                    "vs_hdbscan_all": seconds_by_method.get("HDBSCAN, all pixels", np.nan) / seconds,
                    "arand": scores["arand"],
                    "segments": scores["segments"],
                    "objects": scores["objects"],
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", nargs="+", choices=sorted(MAPS), default=sorted(MAPS))
    rows = run(parser.parse_args().maps)
    print(
        "\n| map | method | time (s) | M voxels/s | speed-up vs HDBSCAN 10k fit | speed-up vs HDBSCAN all pixels "
        "| adapted Rand error | segments / objects |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        versus_all = "-" if np.isnan(row["vs_hdbscan_all"]) else f"{row['vs_hdbscan_all']:.1f}x"
        print(
            f"| {row['map']} | {row['method']} | {row['seconds']:.2f} | {row['mvox_per_s']:.2f} | "
            f"{row['vs_hdbscan_10k']:.1f}x | {versus_all} | {row['arand']:.4f} | {row['segments']} / {row['objects']} |"
        )
    for map_name, methods in SKIPPED.items():
        print(f"\nNot run on {map_name}: {', '.join(methods)} (see SKIPPED in bench/clustering.py).")


if __name__ == "__main__":
    main()
