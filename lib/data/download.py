"""Download files listed in the manifest: parallel, verified, retried, atomic and resumable.

* **Verified.** A file counts as present only when its SHA-256 equals the manifest's; a file that
  does not is fetched again (a corrupt download is refused and retried).
* **Atomic.** Bytes go to ``<file>.part`` and are renamed into place only after the checksum
  matched, so a partial file never looks complete.
* **Resumable.** An interrupted download keeps its ``.part``; the next run asks the server for the
  rest (an HTTP ``Range`` request) and starts over only when the server cannot resume. Verified files
  are never fetched again.
* **Retried** with exponential backoff (``backoff * 2**attempt`` seconds) on network errors, HTTP 5xx
  and 429, and checksum mismatches. After the last attempt :class:`DownloadError` names the URL and
  the alternatives (a mirror, or a copy of the data folder).
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from ..config import DATA_DIR_ENV, get_logger
from .checksums import sha256_file
from .errors import DataDirError
from .manifest import MIRROR_ENV, ManifestEntry, mirror_url

__all__ = ["DownloadError", "download_entries", "download_file"]

log = get_logger(__name__)

_CHUNK = 1 << 16
USER_AGENT = "cam-compendium-data/1"


class DownloadError(DataDirError):
    """A file could not be downloaded (or never matched its checksum) after every retry."""


def _alternatives() -> str:
    return (
        "Without network access, build the samples elsewhere (`make data`) and copy the folder that "
        f"holds imagenet-val-1300/ and imagenet-train-1000/ here, then set {DATA_DIR_ENV}=/that/folder; "
        f"or point {MIRROR_ENV} at a mirror laid out as <base>/<repo>/<commit>/<path> "
        "(see data/README.md)."
    )


def _fetch_once(url: str, part: Path, timeout: float, progress: tqdm | None) -> None:
    """Append the missing bytes of ``url`` to ``part`` (resuming with a Range request when it exists).

    ``progress`` always counts the bytes that ``part`` holds (a restarted ``.part`` is taken back).
    """
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s)/file URLs from the manifest)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send (or a bad .part): start over next attempt
            part.unlink(missing_ok=True)
        raise
    with response:
        status = getattr(response, "status", 200)
        mode = "ab" if have and status == 206 else "wb"
        if mode == "wb" and have:
            log.info("%s: the server cannot resume; downloading it again from the start", url)
            if progress is not None:
                progress.update(-have)
        with open(part, mode) as handle:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                handle.write(chunk)
                if progress is not None:
                    progress.update(len(chunk))


def _retryable(err: BaseException) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500 or err.code in (408, 416, 429)
    # IncompleteRead (a connection closed mid-file) is an HTTPException, not an OSError
    return isinstance(err, (urllib.error.URLError, OSError, socket.timeout, http.client.HTTPException))


def download_file(
    entry: ManifestEntry,
    dest: str | Path,
    *,
    mirror: str | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: tqdm | None = None,
    cancel: threading.Event | None = None,
) -> bool:
    """Make ``dest`` a verified copy of ``entry``; return ``True`` when bytes were downloaded.

    A ``dest`` that already matches ``entry.sha256`` is kept (``False``). Otherwise the file is
    fetched from :func:`~lib.data.manifest.mirror_url` into ``dest.part`` (resumed when present),
    checked, and renamed to ``dest``. ``retries`` further attempts follow a failure, the n-th after
    ``backoff * 2**(n-1)`` seconds; no further attempt starts once ``cancel`` is set (another file
    failed for good). Raises :class:`DownloadError` naming the URL and the fix.
    """
    dest = Path(dest)
    if dest.is_file() and dest.stat().st_size == entry.size and sha256_file(dest) == entry.sha256:
        if progress is not None:
            progress.update(entry.size)
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    url = mirror_url(entry, mirror)
    if part.is_file() and part.stat().st_size == entry.size and sha256_file(part) == entry.sha256:
        os.replace(part, dest)  # complete from an earlier run that stopped before the rename
        if progress is not None:
            progress.update(entry.size)
        return True
    last: BaseException | None = None
    if progress is not None and part.exists():  # a leftover .part counts as progress
        progress.update(part.stat().st_size)
    for attempt in range(retries + 1):
        if cancel is not None and cancel.is_set():
            raise DownloadError(f"{url}: cancelled, because another download failed")
        if attempt:
            delay = backoff * 2 ** (attempt - 1)
            log.info("%s: attempt %d of %d in %.1f s (%s)", url, attempt + 1, retries + 1, delay, last)
            time.sleep(delay)
        try:
            _fetch_once(url, part, timeout, progress)
        except Exception as err:  # noqa: BLE001 (reported below with the URL and the fix)
            last = err
            if not _retryable(err):  # e.g. 404: the source or mirror lacks the file; no retry helps
                break
            continue
        size = part.stat().st_size
        if size < entry.size:  # the connection ended early: keep the .part, the next attempt resumes
            last = ConnectionError(f"the transfer stopped after {size} of {entry.size} bytes")
            continue
        if size == entry.size and sha256_file(part) == entry.sha256:
            os.replace(part, dest)
            return True
        last = ValueError(f"got {size} bytes with another SHA-256 than the manifest's ({entry.size} bytes, "
                          f"{entry.sha256[:12]}...)")
        if progress is not None:
            progress.update(-size)
        part.unlink(missing_ok=True)  # a corrupt (or too long) file is never resumed: fetch it whole again
    raise DownloadError(
        f"Could not download {url} (for {dest}) after {attempt + 1} attempt(s): {last}. " + _alternatives()
    )


def download_entries(
    entries: Sequence[ManifestEntry],
    root: str | Path,
    *,
    mirror: str | None = None,
    workers: int = 8,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> int:
    """Download every entry to ``root/<repo>/<commit>/<path>`` in ``workers`` threads; return how many were fetched.

    Files already verified there are not fetched again. The first file that fails for good cancels
    the files not yet started and raises its :class:`DownloadError` (what was verified stays).
    """
    root = Path(root)
    total = sum(e.size for e in entries)
    fetched = 0
    cancel = threading.Event()
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="download",
              disable=not progress) as bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {
            pool.submit(download_file, e, root / e.relpath, mirror=mirror, retries=retries, backoff=backoff,
                        timeout=timeout, progress=bar, cancel=cancel): e
            for e in entries
        }
        try:
            for future in as_completed(futures):
                fetched += bool(future.result())
        except BaseException:
            cancel.set()
            for future in futures:
                future.cancel()
            raise
    log.info("%d of %d file(s) downloaded into %s, the rest were already there", fetched, len(entries), root)
    return fetched
