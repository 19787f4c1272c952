"""What a resumable checkpoint holds beside the weights: optimizer moments, the selection RNG and the
data position (`checkpoints/step-*`, all that `--resume` needs to continue bit-for-bit)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


@dataclass
class Position:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # super-batches of this epoch already consumed


def save_state(
    folder: Path, optimizer: torch.optim.Optimizer, generator: torch.Generator, position: Position
):
    """Optimizer moments, the selection RNG and the data position, next to the weights: all that
    `--resume` needs to continue bit-for-bit. safetensors + JSON: nothing is pickled."""
    state = optimizer.state_dict()
    tensors = {"rng.selection": generator.get_state()}
    for index, moments in state["state"].items():
        for name, value in moments.items():
            tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value).cpu().contiguous()
    save_file(tensors, folder / "train_state.safetensors")
    groups = [{k: v for k, v in group.items()} for group in state["param_groups"]]
    meta = {"position": dataclasses.asdict(position), "param_groups": groups}
    (folder / "train_state.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_state(folder: Path, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> Position:
    tensors = load_file(folder / "train_state.safetensors")
    meta = json.loads((folder / "train_state.json").read_text())
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, field = name.split(".", 2)
            moments.setdefault(int(index), {})[field] = value
    optimizer.load_state_dict({"state": moments, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["rng.selection"])
    return Position(**meta["position"])


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step-*"))
    return found[-1] if found else None
