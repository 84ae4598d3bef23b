"""Data-parallel training through ``torchrun``: process group set-up from the
environment torchrun exports (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``).

Only rank 0 writes checkpoints, metrics and plots; every rank holds the same model
(DDP broadcasts rank 0's parameters at wrap time and averages gradients each step).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1): gloo on
    CPU, NCCL on CUDA. A single process returns a trivial :class:`DistInfo`."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    needed = ("RANK",) if dist.is_initialized() else ("RANK", "MASTER_ADDR", "MASTER_PORT")
    missing = [k for k in needed if k not in os.environ]
    if missing:  # WORLD_SIZE left in the environment by hand or by another launcher
        raise RuntimeError(
            f"WORLD_SIZE={world} asks for data-parallel training, but {', '.join(missing)} "
            "is not set: launch with torchrun (torchrun --nproc_per_node=N -m deepsphere.cli "
            "train ...), or unset WORLD_SIZE for one process")
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """``obj`` from rank 0 on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size


def cleanup(info: DistInfo) -> None:
    """Leave the process group, every rank together (a rank that tears its connections down
    while a peer still uses them makes gloo abort)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class SyncVertexBatchNorm(torch.nn.SyncBatchNorm):
    """:class:`torch.nn.SyncBatchNorm` on the ``[batch, vertices, channels]`` layout
    (statistics over batch and vertices of every process), the synchronised twin of
    :class:`deepsphere.nn.blocks.VertexBatchNorm`."""

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[-1])).view_as(x)


def convert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace batch norms by synchronised ones (CUDA only, as torch's SyncBatchNorm).

    torch's ``convert_sync_batchnorm`` would turn a ``VertexBatchNorm`` into a plain
    ``SyncBatchNorm`` and lose its ``[B, N, C]`` handling, so those become
    :class:`SyncVertexBatchNorm`, with parameters and running statistics carried over.
    """
    from ..nn.blocks import VertexBatchNorm

    if isinstance(module, VertexBatchNorm):
        new = SyncVertexBatchNorm(module.num_features, module.eps, module.momentum,
                                  module.affine, module.track_running_stats)
        # the same Parameter and buffer objects (as torch's conversion): an optimizer
        # built earlier keeps training them
        for name, p in module.named_parameters(recurse=False):
            setattr(new, name, p)
        for name, b in module.named_buffers(recurse=False):
            setattr(new, name, b)
        new.training = module.training
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child))
    if type(module).__module__.startswith("torch.nn"):
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module) if isinstance(
            module, torch.nn.modules.batchnorm._BatchNorm) else module
    return module
