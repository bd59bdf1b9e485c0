"""``make data``: make sure the data directory holds both samples, verified; build what is missing.

    python -m lib.data.make_data [--data-dir DIR] [--mirror URL] [--workers 8] [--keep-downloads]

For each sample (``imagenet-val-1300``, ``imagenet-train-1000``) in the data directory
(:func:`lib.config.data_dir`):

* present: its files are checked against its ``SHA256SUMS``, and those checksums (but the
  ``README.md``'s) against the committed ``data/sample_checksums.csv``; nothing is downloaded;
* missing: its upstream files (``data/manifest.csv``) are downloaded into ``<data dir>/.downloads``
  (parallel, verified, resumable; see :mod:`lib.data.download`), the sample is built from them
  (:mod:`lib.data.build`) and verified; the downloads are removed afterwards unless
  ``--keep-downloads``.

``--mirror`` (or ``$CAM_DATA_MIRROR``) fetches from ``<mirror>/<repo>/<commit>/<path>`` instead of
GitHub, e.g. a local HTTP server. Without network access the first file that cannot be fetched stops
the run with an error naming its URL and the alternatives.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import data_dir as resolve_data_dir
from ..config import get_logger
from .build import EXPECTED_SUMS, build_sample, data_files, read_expected
from .checksums import SUMS_FILE, read_checksums, verify_checksums
from .errors import ChecksumError
from .manifest import MANIFEST_PATH, SAMPLES, read_manifest

__all__ = ["DOWNLOADS", "ensure_samples", "main"]

log = get_logger(__name__)

DOWNLOADS = ".downloads"
"""Folder inside the data directory that holds upstream files while a sample is built."""


def _verify_present(folder: Path, expected: dict[str, str], progress: bool) -> None:
    if not (folder / SUMS_FILE).is_file():
        raise ChecksumError(f"{folder} has no {SUMS_FILE}: remove the folder and run `make data` to rebuild it.")
    verify_checksums(folder, progress=progress)
    if data_files(read_checksums(folder / SUMS_FILE)) != expected:
        raise ChecksumError(
            f"{folder} is not the expected sample: its {SUMS_FILE} differs from {EXPECTED_SUMS.name}. "
            "Remove (or move) the folder and run `make data` to rebuild it, or point CAM_DATA_DIR elsewhere."
        )


def ensure_samples(
    data_dir: str | Path | None = None,
    samples: Sequence[str] = tuple(SAMPLES),
    *,
    mirror: str | None = None,
    manifest: str | Path = MANIFEST_PATH,
    expected: str | Path = EXPECTED_SUMS,
    workers: int = 8,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    keep_downloads: bool = False,
    strict: bool = True,
    progress: bool = True,
) -> dict[str, str]:
    """Verify or build each of ``samples`` in ``data_dir``; return ``{sample: "verified" | "built"}``."""
    from .download import download_entries  # only a build needs the network code

    root = resolve_data_dir(data_dir)
    downloads = root / DOWNLOADS
    expected_sums = read_expected(expected)
    status: dict[str, str] = {}
    for name in samples:
        if name not in SAMPLES:
            raise ValueError(f"Unknown sample {name!r}: use one of {', '.join(SAMPLES)}")
        folder = root / name
        if folder.is_dir():
            _verify_present(folder, expected_sums.get(name, {}), progress)
            log.info("%s: present and verified", folder)
            status[name] = "verified"
            continue
        entries = read_manifest(manifest, SAMPLES[name])
        log.info("%s is missing: downloading %d upstream file(s) into %s", folder, len(entries), downloads)
        root.mkdir(parents=True, exist_ok=True)
        download_entries(entries, downloads, mirror=mirror, workers=workers, retries=retries, backoff=backoff,
                         timeout=timeout, progress=progress)
        build_sample(name, entries, downloads, folder, expected=expected, strict=strict, progress=progress)
        status[name] = "built"
    if not keep_downloads and downloads.exists() and all(s in status for s in SAMPLES):
        shutil.rmtree(downloads)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.data.make_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="the data directory (default: $CAM_DATA_DIR, "
                        "else ../shared/data when it exists, else local-data/ in the checkout)")
    parser.add_argument("--mirror", default=None, help="base URL laid out as <base>/<repo>/<commit>/<path> "
                        "(default: $CAM_DATA_MIRROR, else the public repositories)")
    parser.add_argument("--sample", action="append", choices=list(SAMPLES), help="only this sample (repeatable)")
    parser.add_argument("--workers", type=int, default=8, help="parallel downloads (default 8)")
    parser.add_argument("--retries", type=int, default=4, help="retries per file, with backoff (default 4)")
    parser.add_argument("--keep-downloads", action="store_true", help="keep the upstream files after the build")
    parser.add_argument("--no-strict", dest="strict", action="store_false",
                        help="keep re-encoded training photos that differ from ours (another Pillow)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        status = ensure_samples(args.data_dir, args.sample or tuple(SAMPLES), mirror=args.mirror,
                                workers=args.workers, retries=args.retries, keep_downloads=args.keep_downloads,
                                strict=args.strict, progress=not args.quiet)
    except (OSError, ValueError) as err:
        print(f"make data: {err}", file=sys.stderr)
        return 1
    root = resolve_data_dir(args.data_dir)
    for name, what in status.items():
        print(f"make data: {root / name}: {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
