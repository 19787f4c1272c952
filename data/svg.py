"""Rendering SVG drawings safely: no external files or URLs, a per-file time and size limit, each file
in a worker process so a slow or crashing drawing cannot take the build down."""

from __future__ import annotations

import gc
import io
import multiprocessing
import os
import re
import signal
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from siglip2_sdk.data.debian import SourceUnavailable

MAX_FILE_BYTES = 8 << 20  # the largest drawing in the package is 1.7 MB
TIME_LIMIT_S = 30  # per drawing; the slowest real one takes about 2 s
_UNITS = SimpleNamespace(dpi=96, context_width=None, context_height=None, font_size=16.0)
_DOCTYPE = re.compile(rb"<!DOCTYPE[^\[>]*\[(.*?)\]\s*>", re.DOTALL)
_PLAIN_ENTITY = re.compile(rb'<!ENTITY\s+([\w.-]+)\s+"([^"&%<]{0,200})"\s*>')


def inline_entities(data: bytes) -> bytes:
    """Adobe Illustrator declares its namespaces as XML entities (`<!ENTITY ns_svg "http://...">`),
    which the safe parsers reject: replace plain text entities by their value and drop the DOCTYPE.

    Values cannot contain `&` or markup, so nothing expands recursively; anything else is left for the
    parser to reject.
    """
    doctype = _DOCTYPE.search(data)
    if doctype is None:
        return data
    entities = dict(_PLAIN_ENTITY.findall(doctype[1]))
    body = data[: doctype.start()] + data[doctype.end() :]
    inlined = re.sub(rb"&([\w.-]+);", lambda ref: entities.get(ref[1], ref[0]), body)
    return inlined if len(inlined) <= MAX_FILE_BYTES else data


class _TimeLimit(BaseException):
    """Raised by the alarm; a BaseException so cairosvg's own `except Exception` cannot swallow it."""


def _reset_cairo() -> None:
    """Start cairo's static state (font faces, glyph caches) afresh. Text drawn in a process comes out
    differently depending on the text drawn before it: 14 of Open Clip Art's 293 drawings with text
    changed with the order they were rendered in, so which drawings a pool worker happened to get
    changed the corpus (43 drawings, all with text, between two builds). Reset before each drawing
    with text, every order gives the same pixels (before every drawing, the build took 20% longer).
    cairo allows it only while none of its objects is alive: the last drawing's are collected first."""
    import cairocffi

    gc.collect()
    cairocffi.cairo.cairo_debug_reset_static_data()


def render_svg(data: bytes, max_side: int) -> Image.Image:
    """RGBA rendering of an SVG with its long side scaled to `max_side` px, aspect kept.

    `unsafe=False` keeps cairosvg from reading external files or URLs and rejects XML entities.
    """
    from cairosvg.helpers import node_format
    from cairosvg.parser import Tree
    from cairosvg.surface import PNGSurface

    if b"<text" in data:
        _reset_cairo()
    tree = Tree(bytestring=inline_entities(data), unsafe=False)
    width, height, _ = node_format(_UNITS, tree)
    if not (width > 0 and height > 0):
        raise ValueError("the SVG has no width or height")
    scale = max_side / max(width, height)
    out = io.BytesIO()
    PNGSurface(
        tree, out, 96, output_width=max(1, round(width * scale)), output_height=max(1, round(height * scale))
    ).finish()
    return Image.open(io.BytesIO(out.getvalue()))


def _is_blank(image: Image.Image) -> bool:
    """True when the picture is a single colour once composited on white."""
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, "white")
    return all(low == high for low, high in Image.alpha_composite(white, rgba).convert("RGB").getextrema())


def _render_file(path: Path, max_side: int) -> bytes | str:
    """Worker: PNG bytes of the drawing, or why it was skipped. Never raises."""

    def alarm(signum, frame):
        raise _TimeLimit

    signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return "file too large"
        image = render_svg(path.read_bytes(), max_side)
        if _is_blank(image):
            return "blank"
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=1)
        return out.getvalue()
    except _TimeLimit:
        return "time limit"
    except Exception as error:  # any broken drawing is skipped, whatever broke
        return f"render error ({type(error).__name__})"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def render_svg_files(paths: list[Path], max_side: int) -> Iterator[Image.Image | str]:
    """Render SVG files in worker processes, yielding in input order an RGBA image or a skip reason.

    Workers isolate the caller from slow or crashing drawings; each gets `TIME_LIMIT_S` seconds.
    """
    if not paths:
        return
    try:
        import cairosvg  # noqa: F401  (fail here, once, rather than skip every drawing in the workers)
    except (ImportError, OSError) as error:  # OSError: the cairo C library is missing
        raise SourceUnavailable(f"cannot render SVG: {error}; install cairosvg and libcairo2") from error
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    # forkserver: forking a caller that holds threads (torch, CUDA) is unsafe.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(min(cpus, 8, len(paths)), mp_context=multiprocessing.get_context(method))
    try:
        for result in pool.map(_render_file, paths, [max_side] * len(paths), chunksize=8):
            yield result if isinstance(result, str) else Image.open(io.BytesIO(result))
    finally:
        pool.shutdown(cancel_futures=True)  # a consumer that stops early must not wait for the rest
