"""The processes of a run: one, or one per rank under torchrun (NCCL on GPUs, gloo on CPU), and how
their rows are gathered so every rank sees the whole batch."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes() -> Processes:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: then join the process group (NCCL on GPUs, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(device)
    return Processes(int(os.environ.get("RANK", "0")), world_size, device)


def gather(local: torch.Tensor, procs: Processes) -> torch.Tensor:
    """Concatenate every rank's rows in rank order; rows may differ in number across ranks.
    Only the local rows keep their gradient (the others are copies); see `train.train_step`."""
    if procs.world_size == 1:
        return local
    count = torch.tensor([local.shape[0]], device=local.device)
    counts = [torch.zeros_like(count) for _ in range(procs.world_size)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local.detach()
    pieces = [torch.zeros_like(padded) for _ in range(procs.world_size)]
    dist.all_gather(pieces, padded)
    pieces[procs.rank] = local
    return torch.cat([piece[: int(c.item())] for piece, c in zip(pieces, counts, strict=True)])
