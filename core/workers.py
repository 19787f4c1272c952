"""Process pools whose workers each load something once (a model, a test split) and keep it for every
job they run. Spawned, not forked: the parent holds runtime and torch thread pools, which a fork would
copy in a state they cannot run from."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

_LOADED: dict = {}


def load(setup: Callable[..., dict], *args) -> None:
    """Run `setup(*args)` and keep what it returns for `loaded()`: each worker's initializer, or the
    caller's own process when it does the jobs itself."""
    _LOADED.clear()
    _LOADED.update(setup(*args))


def loaded() -> dict:
    """What the last `load` in this process kept."""
    return _LOADED


def spawned_pool(workers: int, setup: Callable[..., dict], *args) -> ProcessPoolExecutor:
    """`workers` fresh processes, each running `setup(*args)` once before its first job. `setup` and
    the jobs must be module-level functions (they are pickled by name)."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=load, initargs=(setup, *args))
