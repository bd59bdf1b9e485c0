"""Check a data folder against its ``SHA256SUMS`` file (the format of ``sha256sum``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from ..config import get_logger
from .errors import ChecksumError, DataFormatError

__all__ = ["ChecksumError", "read_checksums", "sha256_file", "verify_checksums"]

log = get_logger(__name__)

SUMS_FILE = "SHA256SUMS"
_SHOW = 10
_CHUNK = 1 << 20


def _normalise(name: str) -> str:
    """``./images/x.JPEG`` -> ``images/x.JPEG`` (POSIX separators, no leading ``./``)."""
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def read_checksums(path: str | Path) -> dict[str, str]:
    """``relative path -> sha256 hex`` from a ``sha256sum`` output file (text or ``*binary`` lines)."""
    path = Path(path)
    sums: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n\r")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            digest, sep, name = line.partition(" ")
            if not sep or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
                raise DataFormatError(
                    f"{path}, line {number}: expected '<64 hex digits>  ./relative/path', got {line!r}. "
                    "Regenerate the file with: find . -type f ! -name SHA256SUMS | sort | xargs sha256sum > SHA256SUMS"
                )
            name = name[1:] if name[:1] in (" ", "*") else name
            sums[_normalise(name)] = digest.lower()
    return sums


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" (and {len(names) - _SHOW} more)" if len(names) > _SHOW else "")


def verify_checksums(root: str | Path, names: Iterable[str] | None = None, progress: bool = False) -> int:
    """Hash the files listed in ``root/SHA256SUMS`` (or only ``names``) and return how many were checked.

    ``names`` are paths relative to ``root`` as listed there (``"images/X.JPEG"``; a leading ``./`` is
    ignored).  Mismatched, missing and unlisted files raise :class:`ChecksumError` naming up to ten of
    each and the fix.  Without a ``SHA256SUMS`` file nothing is checked: a warning, and 0.
    """
    root = Path(root)
    sums_path = root / SUMS_FILE
    if not sums_path.is_file():
        log.warning("%s not found: the files of %s are not verified", sums_path, root)
        return 0
    sums = read_checksums(sums_path)
    if names is None:
        wanted, unlisted = sorted(sums), []
    else:
        requested = sorted({_normalise(str(n)) for n in names})
        wanted = [n for n in requested if n in sums]
        unlisted = [n for n in requested if n not in sums]
    mismatched: list[str] = []
    missing: list[str] = []
    for name in tqdm(wanted, desc=f"sha256 {root.name}", unit="file", disable=not progress):
        file = root / name
        if not file.is_file():
            missing.append(name)
        elif sha256_file(file) != sums[name]:
            mismatched.append(name)
    if mismatched or missing or unlisted:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} file(s) differ from their checksum: {_listing(mismatched)}")
        if missing:
            parts.append(f"{len(missing)} listed file(s) are missing: {_listing(missing)}")
        if unlisted:
            parts.append(f"{len(unlisted)} requested file(s) are not listed in {SUMS_FILE}: {_listing(unlisted)}")
        raise ChecksumError(
            f"{sums_path}: " + "; ".join(parts) + ". Fix: re-copy these files from the data set's source "
            f"(see data/README.md), then check again with (cd {root} && sha256sum -c --quiet {SUMS_FILE})."
        )
    log.info("%s: %d file(s) match %s", root, len(wanted), SUMS_FILE)
    return len(wanted)
