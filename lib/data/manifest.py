"""The upstream files of the data samples: where each comes from and its SHA-256 (``data/manifest.csv``).

Three public repositories, each pinned to one commit, hold everything the two samples are built from
(see ``data/README.md``):

* ``VeriSilicon/acuity-dataset``: ``ILSVRC2012_VAL_SET/data/*.JPEG`` (1300 validation images, already
  227x227) and ``ILSVRC2012_VAL_SET/dataset.txt`` (their 0-based ImageNet labels);
* ``clovaai/wsolevaluation``: the object boxes of the ILSVRC2012 validation set. That repository
  calls the original ILSVRC2012 validation set its *test* split (its ``val`` split is ImageNetV2), so
  the files are ``metadata/ILSVRC/test/localization.txt`` and ``image_sizes.txt``;
* ``EliSchwartz/imagenet-sample-images``: one photo per class (``<wnid>_<name>.JPEG``).

Every file is fetched from ``https://raw.githubusercontent.com/<repo>/<commit>/<path>``; the
environment variable ``CAM_DATA_MIRROR`` (or ``--mirror``) replaces that host by a mirror with the
same ``<repo>/<commit>/<path>`` layout, e.g. a local HTTP server.
"""

from __future__ import annotations

import csv
import os
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from urllib.parse import quote

from ..config import repo_root
from .errors import DataFormatError

__all__ = [
    "MANIFEST_PATH",
    "MIRROR_ENV",
    "RAW_HOST",
    "SAMPLES",
    "SOURCES",
    "ManifestEntry",
    "mirror_url",
    "raw_url",
    "read_manifest",
    "write_manifest",
]

MANIFEST_PATH = repo_root() / "data" / "manifest.csv"
"""The committed manifest: one row per upstream file (source, repo, commit, path, sha256, size, url)."""

MIRROR_ENV = "CAM_DATA_MIRROR"
"""Environment variable: base URL of a mirror laid out as ``<base>/<repo>/<commit>/<path>``."""

RAW_HOST = "https://raw.githubusercontent.com"

SOURCES: dict[str, dict] = {
    "val-images": {
        "repo": "VeriSilicon/acuity-dataset",
        "commit": "aded2e9f22cd8fe0745aa57356c68cb95457aad9",
        "folder": "ILSVRC2012_VAL_SET/data",
        "labels": "ILSVRC2012_VAL_SET/dataset.txt",
    },
    "val-boxes": {
        "repo": "clovaai/wsolevaluation",
        "commit": "96f4b88679af41f005824661f47e6fe3628af2aa",
        "files": ("metadata/ILSVRC/test/localization.txt", "metadata/ILSVRC/test/image_sizes.txt"),
    },
    "train-images": {
        "repo": "EliSchwartz/imagenet-sample-images",
        "commit": "bc69043e2862758a1906c6a24a792bb28c6bb2ff",
    },
}
"""Each source: its repository and pinned commit (and, for the build, where its files lie)."""

SAMPLES: dict[str, tuple[str, ...]] = {
    "imagenet-val-1300": ("val-images", "val-boxes"),
    "imagenet-train-1000": ("train-images",),
}
"""Each sample folder and the sources it is built from."""


@dataclass(frozen=True)
class ManifestEntry:
    """One upstream file: ``source`` (a key of :data:`SOURCES`), where it lies, and what it must hash to."""

    source: str
    repo: str
    commit: str
    path: str
    sha256: str
    size: int
    url: str

    @property
    def relpath(self) -> str:
        """Where the file is kept in a download cache or mirror: ``<repo>/<commit>/<path>``."""
        return f"{self.repo}/{self.commit}/{self.path}"


def raw_url(repo: str, commit: str, path: str) -> str:
    """The public URL of ``path`` in ``repo`` at ``commit`` (percent-encoded: names hold apostrophes)."""
    return f"{RAW_HOST}/{repo}/{commit}/{quote(path)}"


def mirror_url(entry: ManifestEntry, mirror: str | None = None) -> str:
    """``entry.url``, or the same ``<repo>/<commit>/<path>`` under ``mirror`` (default ``$CAM_DATA_MIRROR``)."""
    base = (mirror if mirror is not None else os.environ.get(MIRROR_ENV, "")).strip()
    if not base:
        return entry.url
    return f"{base.rstrip('/')}/{quote(entry.relpath)}"


_COLUMNS = [f.name for f in fields(ManifestEntry)]


def read_manifest(path: str | Path = MANIFEST_PATH, sources: tuple[str, ...] | None = None) -> list[ManifestEntry]:
    """The manifest's rows (only those of ``sources`` when given); a malformed file raises with the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path} not found: it is part of the repository; restore it with git checkout.")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != _COLUMNS:
            raise DataFormatError(f"{path}: columns {reader.fieldnames}, expected {_COLUMNS}. "
                                  "Regenerate it with tools/make_manifest.py.")
        entries = []
        for number, row in enumerate(reader, start=2):
            try:
                entry = ManifestEntry(**{**row, "size": int(row["size"])})
            except (TypeError, ValueError) as err:
                raise DataFormatError(f"{path}, line {number}: {err}") from None
            if entry.source not in SOURCES or len(entry.sha256) != 64:
                raise DataFormatError(f"{path}, line {number}: unknown source {entry.source!r} or bad sha256")
            entries.append(entry)
    if sources is not None:
        entries = [e for e in entries if e.source in sources]
    return entries


def write_manifest(entries: list[ManifestEntry], path: str | Path = MANIFEST_PATH) -> None:
    """Write ``entries`` as CSV (LF line ends, so that the committed file diffs cleanly)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(_COLUMNS)
        for entry in entries:
            writer.writerow(astuple(entry))
