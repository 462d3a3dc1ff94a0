"""The torch.distributed process group that shares the blocks of a whole-volume segmentation.

Under ``torchrun`` (or any launcher that calls ``torch.distributed.init_process_group``) every process
runs :func:`~.segment_volume.segment_volume` with the same arguments; the processes split the blocks
among themselves and meet at barriers of the process group (gloo on CPU, NCCL on GPUs), through
``ignite.distributed`` (``idist.one_rank_first``, ``idist.barrier``), which finds the group the launcher set up.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def block_sharing_group(distributed: bool | None) -> tuple[int, int]:
    """Rank of this process and number of processes sharing the blocks.

    Args:
        distributed: ``None`` to share whenever a process group with more than one process is initialised,
            ``True`` to require one, ``False`` to run alone even inside a process group.

    Returns:
        ``(rank, world_size)``; ``(0, 1)`` for a single-process run.

    Raises:
        ValueError: if ``distributed`` is True and no process group is initialised.
    """
    initialised = dist.is_available() and dist.is_initialized()
    if distributed is None:
        distributed = initialised and dist.get_world_size() > 1
    if not distributed:
        return 0, 1
    if not initialised:
        raise ValueError(
            "distributed=True needs an initialised torch.distributed process group (launch with torchrun and "
            "call torch.distributed.init_process_group), found none."
        )
    return dist.get_rank(), dist.get_world_size()


def init_from_environment(device: str) -> tuple[str, bool]:
    """Join the process group a launcher such as ``torchrun`` describes in the environment, if any.

    Reads ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by ``torchrun``); the rendezvous itself uses
    ``MASTER_ADDR``/``MASTER_PORT`` through ``init_method="env://"``.

    Args:
        device: the requested device, e.g. ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.

    Returns:
        the device for this process (``"cuda"`` becomes ``"cuda:<LOCAL_RANK>"``), and whether this call
        initialised the process group (so that the caller destroys it when done).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return device, False
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu and torch.device(device).index is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if on_gpu:
        # NCCL's barrier runs on the current device: one GPU per process
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend="nccl" if on_gpu else "gloo", init_method="env://")
    return device, True
