"""Capture and restore every random generator that decides the next training steps, as checkpoint data.

A resumed training must draw the same random numbers as the run it continues: the global generators of torch
(CPU and CUDA), numpy and Python, the ``RandomState`` of every MONAI randomisable transform and every
``torch.Generator`` owned by a module (e.g. the loss's anchor sampling). The captured state holds only tensors,
numbers, strings and tuples, so checkpoints still load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, Union

import numpy as np
import torch
from monai.transforms import Randomizable, Transform
from torch import nn

__all__ = ["capture_random_state", "find_generators", "restore_random_state"]

Generator = Union[np.random.RandomState, torch.Generator]
# how deep attribute chains are followed from a root (Compose -> transform -> inner chain -> RandomState)
_MAX_DEPTH = 8


def find_generators(*roots: Any) -> list[Generator]:
    """The random generators reachable from ``roots`` through transforms, modules, lists and dicts, in a stable order.

    Args:
        roots: e.g. a dataset's ``Compose`` and the loss module.

    Returns:
        each ``np.random.RandomState`` / ``torch.Generator`` once, in traversal order (the same for the same objects
        built from the same configuration).
    """
    found: list[Generator] = []
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > _MAX_DEPTH:
            return
        seen.add(id(obj))
        if isinstance(obj, (np.random.RandomState, torch.Generator)):
            found.append(obj)
            return
        if isinstance(obj, Mapping):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple)):
            children = list(obj)
        elif isinstance(obj, (Transform, Randomizable, nn.Module)):
            # a transform never seeded on its own draws from the class-wide ``Randomizable.R``
            children = ([obj.R] if isinstance(obj, Randomizable) else []) + list(vars(obj).values())
        else:
            return
        for child in children:
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    return found


def _numpy_state(state: tuple) -> dict[str, Any]:
    name, keys, position, has_gauss, gauss = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "position": int(position),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _numpy_tuple(state: Mapping[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, state["position"], state["has_gauss"], state["gauss"]


def capture_random_state(generators: list[Generator]) -> dict[str, Any]:
    """The state of the global generators and of ``generators`` (see :func:`find_generators`)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": _numpy_state(np.random.get_state()),
        "python": random.getstate(),
        "generators": [
            g.get_state() if isinstance(g, torch.Generator) else _numpy_state(g.get_state()) for g in generators
        ],
    }


def restore_random_state(state: Mapping[str, Any], generators: list[Generator]) -> None:
    """Set the global generators and ``generators`` to a state from :func:`capture_random_state`.

    Raises:
        ValueError: if the state holds another number of generators (another configuration).
    """
    if len(state["generators"]) != len(generators):
        raise ValueError(
            f"the checkpoint's random state has {len(state['generators'])} generators but this configuration has "
            f"{len(generators)}: resume with the configuration (transforms, loss) of the run that saved it."
        )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(_numpy_tuple(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    for generator, saved in zip(generators, state["generators"]):
        if isinstance(generator, torch.Generator):
            generator.set_state(saved)
        else:
            generator.set_state(_numpy_tuple(saved))
