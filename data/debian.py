"""Finding a Debian package's files: installed on the system, or unpacked into our cache.

`apt-get download` + `dpkg-deb -x` needs no root and leaves the system untouched, so a user who
cannot install packages still gets the corpus; an installed package is used in place.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from siglip2_sdk.core.assets import cache_dir
from siglip2_sdk.core.errors import Siglip2Error


class SourceUnavailable(Siglip2Error):
    """A corpus source whose package cannot be found or fetched here."""


@dataclass(frozen=True)
class PackageRoot:
    package: str
    version: str
    root: Path  # a filesystem root: the package's files are at root / "usr/share/..."


def _run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def installed_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    result = _run("dpkg-query", "-W", "-f=${Status}\t${Version}", package)
    if result.returncode != 0 or "\t" not in result.stdout:
        return None
    status, version = result.stdout.split("\t", 1)
    return version if status.endswith(" installed") else None


def locate_package(package: str) -> PackageRoot:
    """The package's files: the system's if installed, else our unpacked copy (fetched if needed)."""
    version = installed_version(package)
    if version is not None:
        return PackageRoot(package, version, Path("/"))
    unpacked = cache_dir() / "debs" / package
    stamp = unpacked / ".version"
    if stamp.is_file():
        return PackageRoot(package, stamp.read_text().strip(), unpacked)
    return _download_and_unpack(package, unpacked)


def _download_and_unpack(package: str, dest: Path) -> PackageRoot:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SourceUnavailable(
            f"Debian package '{package}' is not installed and apt-get/dpkg-deb are missing"
        )
    with tempfile.TemporaryDirectory(prefix="siglip2-sdk-deb-") as tmp:
        download = _run("apt-get", "download", package, cwd=Path(tmp))
        if download.returncode != 0 and os.geteuid() == 0:
            _run("apt-get", "update")  # an image with empty package lists knows no packages yet
            download = _run("apt-get", "download", package, cwd=Path(tmp))
        debs = sorted(Path(tmp).glob("*.deb"))
        if download.returncode != 0 or not debs:
            reason = (download.stderr.strip().splitlines() or ["no .deb written"])[-1]
            raise SourceUnavailable(f"cannot fetch Debian package '{package}': {reason}")
        version = _run("dpkg-deb", "-f", str(debs[0]), "Version").stdout.strip()
        staging = Path(tempfile.mkdtemp(prefix=f".{package}.", dir=_parent(dest)))
        unpack = _run("dpkg-deb", "-x", str(debs[0]), str(staging))
        if unpack.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise SourceUnavailable(f"cannot unpack '{debs[0].name}': {unpack.stderr.strip()}")
    (staging / ".version").write_text(version + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)  # the unpacked copy appears whole or not at all
    return PackageRoot(package, version, dest)


def _parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent
