"""The floors of the house (ARCHITECTURE.md), read from the source with `ast`: which stage may import
which, that no stage imports the face (`siglip2_sdk` itself), and that torch stays out of the paths a
torch-free install runs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> the import package it installs as (pyproject.toml's package-dir).
PACKAGES = {
    "sdk": "siglip2_sdk",
    "core": "siglip2_sdk.core",
    "data": "siglip2_sdk.data",
    "runtimes": "siglip2_sdk.runtimes",
    "distill": "siglip2_sdk.distill",
    "export": "siglip2_sdk.export",
    "bench": "siglip2_sdk.bench",
    "cli": "siglip2_sdk.cli",
}
# stage -> the stages its modules may import. Data flows one way (data -> distill -> export ->
# runtimes -> sdk); the core is every stage's floor; export's parity gate runs the bundle it wrote
# through runtimes; the benchmark and the command line are clients on top.
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "runtimes": {"core", "runtimes"},
    "distill": {"core", "distill"},
    "export": {"core", "runtimes", "export"},
    "sdk": {"core", "runtimes", "sdk"},
    "bench": {"core", "runtimes", "sdk", "bench"},
    "cli": {"core", "data", "runtimes", "distill", "export", "sdk", "bench", "cli"},
}
# `python -m siglip2_sdk` is the command line's entry point, though it sits in the face's folder.
ENTRY_POINTS = {"sdk/__main__.py": "cli"}
# What `pip install siglip2-sdk[onnx]` (or [tflite]) runs: these modules and everything they import at
# module level must not import torch. The torch loader (core.checkpoint), the model (core.model) and the
# torch and ExecuTorch runtimes are imported lazily, where a checkpoint or an ExecuTorch bundle is used;
# the command line starts without torch too (`siglip2-sdk index` and `search` run on such an install).
TORCH_CORE = ("model", "checkpoint")
TORCH_FREE = [
    *(f"core/{p.name}" for p in sorted((REPO / "core").glob("*.py")) if p.stem not in TORCH_CORE),
    "runtimes/__init__.py",
    "runtimes/base.py",
    "runtimes/onnxruntime_runtime.py",
    "runtimes/litert_runtime.py",
    *(f"sdk/{p.name}" for p in sorted((REPO / "sdk").glob("*.py"))),
    *(f"cli/{p.name}" for p in sorted((REPO / "cli").glob("*.py"))),
    "distill/config.py",  # the training flags `siglip2-sdk distill --help` shows
]
TORCH = ("torch", "transformers", "torchao", "executorch")


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int
    top_level: bool  # runs when the module is imported (not inside a function)


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO)
    parts = [PACKAGES[relative.parts[0]], *relative.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_files() -> dict[str, Path]:
    return {module_name(path): path for folder in PACKAGES for path in sorted((REPO / folder).rglob("*.py"))}


MODULES = package_files()


def imports(path: Path) -> list[Import]:
    """Every import in the file, relative ones made absolute; `from X import y` also names X.y when
    that is a module of the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    # Imports in functions, or under `if TYPE_CHECKING:` (for annotations only), never run on import.
    inside_functions = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or _for_typing(block)
        for node in ast.walk(block)
    }
    found = []
    for node in ast.walk(tree):
        top_level = id(node) not in inside_functions
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno, top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(Import(base, node.lineno, top_level))
            found += [
                Import(f"{base}.{alias.name}", node.lineno, top_level)
                for alias in node.names
                if f"{base}.{alias.name}" in MODULES
            ]
    return found


def _for_typing(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def stage_of_file(path: Path) -> str:
    relative = path.relative_to(REPO).as_posix()
    return ENTRY_POINTS.get(relative, relative.split("/")[0])


def stage_of_module(name: str) -> str | None:
    """The stage a dotted name belongs to; "face" for `siglip2_sdk` itself, None outside the package."""
    if name == "siglip2_sdk":
        return "face"
    if not name.startswith("siglip2_sdk."):
        return None
    first = name.split(".")[1]
    folder = next((f for f, package in PACKAGES.items() if package == f"siglip2_sdk.{first}"), None)
    return folder or "sdk"  # the API's own modules (encoder, index, ann) live in sdk/


def test_every_stage_folder_is_a_package_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {folder: package for package, folder in setuptools["package-dir"].items()} == PACKAGES
    declared = set(setuptools["packages"])
    found = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert declared == found, f"packages: missing {found - declared}, extra {declared - found}"


@pytest.mark.parametrize("path", sorted(MODULES.values()), ids=lambda p: p.relative_to(REPO).as_posix())
def test_imports_follow_the_floors(path):
    stage = stage_of_file(path)
    wrong = []
    for found in imports(path):
        target = stage_of_module(found.module)
        if target is not None and target not in ALLOWED[stage]:
            wrong.append(f"line {found.line}: {found.module} ({target})")
    assert not wrong, f"{stage} may import only {sorted(ALLOWED[stage])}: " + "; ".join(wrong)


def torch_path(start: str) -> list[str] | None:
    """The chain of module-level imports from `start` to a torch library, if there is one."""
    seen, queue = {start}, [[start]]
    while queue:
        chain = queue.pop(0)
        for found in imports(MODULES[chain[-1]]):
            if not found.top_level:
                continue
            if found.module.split(".")[0] in TORCH:
                return [*chain, found.module]
            if found.module in MODULES and found.module not in seen:
                seen.add(found.module)
                queue.append([*chain, found.module])
    return None


@pytest.mark.parametrize("relative", TORCH_FREE)
def test_torch_free_paths_do_not_import_torch(relative):
    chain = torch_path(module_name(REPO / relative))
    assert chain is None, "imports torch at module level: " + " -> ".join(chain)
