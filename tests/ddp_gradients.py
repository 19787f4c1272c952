"""One training step's gradients, before clipping and the optimizer, written to a safetensors file.

Run alone for one process, or under torchrun for several; tests/test_train.py compares the two.
Every collective the step makes is recorded, and the script fails if one gets a tensor that is not
on the process group's device (NCCL takes CUDA tensors only), or that is called from anywhere but
`processes.gather`: on CPU under gloo the device check cannot fail, and gather builds what it sends on
the device of the embeddings it gathers.

    python tests/ddp_gradients.py CONFIG.json OUT.safetensors [float64]
    python -m torch.distributed.run --nproc_per_node 2 tests/ddp_gradients.py CONFIG.json OUT.safetensors

`float64` runs the student in double precision: one and several processes add the same terms in
another order, which float32 rounds differently by a few units in the last place (up to ~3e-6 on
gradients of ~2 on the demo corpus); in float64 what is left is the algorithm's difference.

CONFIG.json holds a `TrainConfig` (distill/config.py) as JSON, as a run writes to DIR/config.json.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from siglip2_sdk.core.tokenizer import Tokenizer
from siglip2_sdk.distill.config import TrainConfig
from siglip2_sdk.distill.processes import gather, start_processes
from siglip2_sdk.distill.state import Position
from siglip2_sdk.distill.teacher_cache import TeacherCache
from siglip2_sdk.distill.train import build_student, epochs, towers_for, train_step

COLLECTIVES = ("all_gather", "all_gather_into_tensor", "all_reduce", "broadcast", "reduce_scatter")


def record_collectives(device: torch.device) -> list[str]:
    """Wrap torch.distributed's collectives to check and list the tensors they are given."""
    calls: list[str] = []

    def checked(name, collective):
        @functools.wraps(collective)
        def run(*args, **kwargs):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            tensors += [t for a in args if isinstance(a, list) for t in a if isinstance(t, torch.Tensor)]
            for tensor in tensors:
                if tensor.device.type != device.type:
                    raise AssertionError(f"{name} got a tensor on {tensor.device}; the group is on {device}")
            # Under gloo the model's device is the CPU, so the check above cannot see a CPU tensor
            # that would reach NCCL (an all-gather of the loader's KD row indices once crashed on
            # GPUs that way). So the step may only communicate through `processes.gather`, which
            # makes every tensor it sends on the device of the embeddings it is given.
            caller = sys._getframe(1).f_code
            if caller is not gather.__code__:
                raise AssertionError(f"{name} called from {caller.co_name}, not processes.gather")
            calls.append(f"{name}:{tensors[0].dtype}")
            return collective(*args, **kwargs)

        return run

    for name in COLLECTIVES:
        setattr(dist, name, checked(name, getattr(dist, name)))
    return calls


def main(config_file: str, out: str, precision: str = "float32") -> None:
    config = TrainConfig(**json.loads(Path(config_file).read_text()))
    procs = start_processes()
    torch.manual_seed(config.seed)
    model = build_student(config).to(procs.device, getattr(torch, precision))
    towers, _ = towers_for(model, procs)
    teacher = TeacherCache(config.teacher_cache) if config.teacher_cache else None
    tokenizer = Tokenizer.for_text_tower(Path(config.tokenizer), model.config.text)
    _, _, batch = next(epochs(config, tokenizer, model.image_preprocessing, procs, Position()))
    calls = record_collectives(procs.device)
    generator = torch.Generator().manual_seed(config.seed)
    metrics = train_step(batch, towers, model, teacher, config, generator, procs)
    if procs.main:
        gradients = {name: p.grad.detach().to_dense().cpu() for name, p in model.named_parameters()}
        save_file(gradients, out, metadata={"metrics": json.dumps(metrics), "collectives": json.dumps(calls)})
    if procs.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
