"""Several processes, one model: the ``torchrun`` side of training.

``torchrun --nproc_per_node 2 -m selfstudy pretrain ...`` starts one process per device and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`init_from_env`
reads them and joins the process group (gloo on CPU, nccl on CUDA). The training loop then wraps the
model in ``DistributedDataParallel``, gives every rank its own slice of each global batch
(:func:`shard`), and lets only rank 0 write files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from selfstudy.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world`` processes, using ``device``."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes more than one process (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "cpu") -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    ``device`` is ``"cpu"`` or ``"cuda"``; with CUDA each process takes GPU ``LOCAL_RANK``. Outside
    torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) this does nothing and returns a single-process
    :class:`DistInfo`. Idempotent: a second call reuses the group.
    """
    if not launched_by_torchrun():
        return DistInfo(device=device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.startswith("cuda"):
        if torch.cuda.device_count() <= local_rank:
            raise UserError(f"process {rank} needs GPU {local_rank} but only "
                            f"{torch.cuda.device_count()} are visible; lower --nproc_per_node")
        torch.cuda.set_device(local_rank)
        device, backend = f"cuda:{local_rank}", "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def current() -> DistInfo:
    """The :class:`DistInfo` of an already initialised process group (single-process if none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size())


def shard(batch_indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices (``len`` divisible by ``world``)."""
    per_rank = len(batch_indices) // world
    return batch_indices[rank * per_rank:(rank + 1) * per_rank]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (a small picklable value), in rank order, on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Every rank's ``t`` (same shape on every rank), concatenated along dim 0 in rank order; ``t``
    itself in a single process. No gradient flows through it (it is for state updates: memory-bank
    rows, queued keys, their indices).

    This is how state shared by all ranks stays identical without a broadcast: each rank applies the
    same gathered update to its own copy (MoCo's ``concat_all_gather``).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    t = t.detach().contiguous()
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t)
    return torch.cat(out)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics, memory banks) to every rank.

    The loop wraps models with ``broadcast_buffers=False`` (a per-forward broadcast of rank 0's buffers
    would overwrite the other ranks' memory-bank updates and send a whole bank every step), so each
    rank keeps its own BatchNorm running statistics while training; calling this at the end makes
    every rank's model identical. Shared state such as CMC's banks and MoCo's queue is kept identical
    all along by applying every rank's update everywhere (:func:`all_gather_rows`).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=0)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
