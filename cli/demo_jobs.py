"""The demo's jobs that run in worker processes, each on one thread: exporting the student to each
bundle, and measuring each model on the test split. Exporters are mostly single-threaded Python
(graph capture, lowering, conversion) and a demo-sized model does not fill a second core while it is
evaluated, so two jobs at a time roughly halve both steps (benchmarks/results/design_choices.md).
What the workers print goes to the demo's log file, not its terminal.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from siglip2_sdk.core.workers import load, loaded, spawned_pool

LATENCY_RUNS = 20
PARITY_EXAMPLES = 256  # held-out test pairs each bundle is compared with the float student on


def test_examples(data: Path) -> list:
    from siglip2_sdk.core.shards import iter_examples, split_shards

    return list(iter_examples(split_shards(data, "test")))


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _output_to(log: str) -> None:
    """Everything this process prints goes to the end of `log` from now on. At the file-descriptor
    level: the native libraries under the exporters and runtimes (ExecuTorch's cpuinfo, TFLite's
    converter, absl) write to fds 1 and 2 directly, past sys.stdout and sys.stderr."""
    _point_output_at(log)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s")
    logging.captureWarnings(True)


def _point_output_at(log: str | Path) -> None:
    """File descriptors 1 and 2 write to the end of `log` from now on."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _logged(log: str, setup: Callable[..., dict], *args) -> dict:
    """`setup(*args)` in a worker whose output goes to `log`: the demo's terminal shows its own
    progress, not its libraries' advice to their developers."""
    _output_to(log)
    logging.getLogger(__name__).info("worker started: %s", setup.__name__)
    return setup(*args)


# --- exports -------------------------------------------------------------------------------------


def _export_setup(student: str, data: str, bundles: str, model_id: str, one_thread: bool) -> dict:
    """What an export worker loads once: the student, the parity and calibration data, and the
    student's own embeddings of the parity data (the reference every bundle is held to)."""
    if one_thread:
        _one_thread()
    from siglip2_sdk.core.checkpoint import load_checkpoint
    from siglip2_sdk.core.tokenizer import Tokenizer
    from siglip2_sdk.export.writer import calibration_inputs, float_embeddings, parity_data_from_shards

    model = load_checkpoint(student)
    tokenizer = Tokenizer.for_text_tower(Path(student) / "tokenizer.json", model.config.text)
    parity = parity_data_from_shards(str(Path(data) / "test-*.tar"), PARITY_EXAMPLES)
    calibration = calibration_inputs(
        parity_data_from_shards(str(Path(data) / "val-*.tar"), 128), model.image_preprocessing, tokenizer
    )
    reference = float_embeddings(model, tokenizer, parity)
    return dict(
        model=model, parity=parity, reference=reference, calibration=calibration, bundles=Path(bundles),
        model_id=model_id,
    )  # fmt: skip


def _export_one(to: str, precision: str) -> tuple[str, list[str], float]:
    """(bundle folder name, gate problems, seconds) of one export."""
    from siglip2_sdk.export.writer import export_bundle

    inputs = loaded()
    started = time.perf_counter()
    result = export_bundle(
        inputs["model"], inputs["model_id"], to, precision, inputs["bundles"], inputs["parity"],
        reference=inputs["reference"], calibration=inputs["calibration"],
    )  # fmt: skip
    return result.folder.name, list(result.problems), time.perf_counter() - started


def exports(
    targets: list[tuple[str, str]], inputs: tuple[str, str, str, str], workers: int, log: Path
) -> Iterator:
    """`_export_one` of each (to, precision), as each finishes: in `workers` spawned processes whose
    output goes to `log`; `workers=0`: in this process (where a test's patched exporter applies)."""
    if workers == 0:
        load(_export_setup, *inputs, False)
        yield from (_export_one(to, precision) for to, precision in targets)
        return
    with spawned_pool(workers, _logged, str(log), _export_setup, *inputs, True) as pool:
        jobs = {pool.submit(_export_one, to, precision): (to, precision) for to, precision in targets}
        for job in as_completed(jobs):
            try:
                yield job.result()
            except BrokenProcessPool:
                # A runtime's native assert aborted the worker (and with it the pool's pending jobs): the
                # demo reports those bundles as not made and goes on with the others.
                to, precision = jobs[job]
                yield f"{to} {precision}", [f"its export process crashed (see {log})"], 0.0


# --- evaluations ---------------------------------------------------------------------------------


def measure(folder: Path, examples, threads: int | None = None) -> dict:
    """Retrieval and zero-shot on the test split, and batch-1 latency of each tower."""
    from siglip2_sdk.bench.timing import median_ms
    from siglip2_sdk.core.evaluate import evaluate, headline
    from siglip2_sdk.core.preprocess import preprocess
    from siglip2_sdk.encoder import Encoder

    encoder = Encoder.load(folder, threads=threads)
    results = evaluate(encoder, examples)
    pixels = preprocess([examples[0].image], encoder.image_preprocessing)
    ids = encoder.tokenizer([next(iter(examples[0].captions.values()))])
    return {
        **headline(results),
        "image_ms": median_ms(lambda: encoder.backend.embed_pixels(pixels), LATENCY_RUNS),
        "text_ms": median_ms(lambda: encoder.backend.embed_tokens(ids), LATENCY_RUNS),
        "full": results,
    }


def _evaluation_setup(data: str) -> dict:
    _one_thread()
    return {"examples": test_examples(Path(data))}


def _evaluate_one(name: str, folder: str) -> tuple[str, dict, float]:
    started = time.perf_counter()
    return name, measure(Path(folder), loaded()["examples"], threads=1), time.perf_counter() - started


def evaluations(
    models: dict[str, Path], data: Path, workers: int, log: Path
) -> Iterator[tuple[str, dict, float]]:
    """(name, results, seconds) of each model, as each finishes, in `workers` spawned processes whose
    output goes to `log`; `workers=0`: in this process, on its threads (tests)."""
    if workers == 0:
        examples = test_examples(data)
        for name, folder in models.items():
            started = time.perf_counter()
            yield name, measure(folder, examples), time.perf_counter() - started
        return
    with spawned_pool(workers, _logged, str(log), _evaluation_setup, str(data)) as pool:
        for job in as_completed([pool.submit(_evaluate_one, name, str(f)) for name, f in models.items()]):
            yield job.result()
