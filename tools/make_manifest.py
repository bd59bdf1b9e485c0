"""Write ``data/manifest.csv``: every upstream file the data samples use, with its URL and SHA-256.

The checksums are computed from git snapshots of the three upstream repositories (never from our
own copies of the samples), at the commits pinned below:

    python tools/make_manifest.py --snapshot VeriSilicon/acuity-dataset=/path/to/acuity.git \
        --snapshot clovaai/wsolevaluation=/path/to/wsolevaluation.git \
        --snapshot EliSchwartz/imagenet-sample-images=/path/to/imagenet-sample-images.git

Each ``--snapshot`` names a git directory (a bare clone or a ``.git`` folder) that holds the pinned
commit. Only the files that ``lib.data.build`` reads are listed. ``--mirror-out DIR`` also writes
every listed file to ``DIR/<repo>/<commit>/<path>``: a mirror to serve over HTTP, e.g. for testing
``make data`` offline (``python -m http.server -b 127.0.0.1 -d DIR`` and ``CAM_DATA_MIRROR``).

``--sample-checksums-from DATA_DIR`` (instead of snapshots) writes ``data/sample_checksums.csv``, what
a build must reproduce, from the ``SHA256SUMS`` of the reference samples in ``DATA_DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.data.build import write_expected  # noqa: E402
from lib.data.manifest import (  # noqa: E402
    MANIFEST_PATH,
    SOURCES,
    ManifestEntry,
    raw_url,
    write_manifest,
)


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def _blob(git_dir: Path, commit: str, path: str) -> bytes:
    return _git(git_dir, "cat-file", "blob", f"{commit}:{path}")


def _tree(git_dir: Path, commit: str, folder: str) -> list[str]:
    out = _git(git_dir, "ls-tree", "-r", "--name-only", "-z", commit, "--", folder or ".")
    return [name for name in out.decode().split("\0") if name]


def _val_paths(git_dir: Path, commit: str) -> list[str]:
    """dataset.txt and every image it lists (``./data/X.JPEG, label``)."""
    listing = SOURCES["val-images"]["labels"]
    text = _blob(git_dir, commit, listing).decode()
    images = [line.split(",")[0].strip().removeprefix("./") for line in text.splitlines() if line.strip()]
    base = listing.rsplit("/", 1)[0]  # dataset.txt lists images relative to its own folder
    return [listing] + [f"{base}/{name}" for name in images]


def _train_paths(git_dir: Path, commit: str) -> list[str]:
    return sorted(p for p in _tree(git_dir, commit, "") if "/" not in p and p.endswith(".JPEG"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshot", action="append", default=[], metavar="OWNER/REPO=GIT_DIR")
    parser.add_argument("--sample-checksums-from", type=Path, default=None, metavar="DATA_DIR")
    parser.add_argument("--out", type=Path, default=MANIFEST_PATH)
    parser.add_argument("--mirror-out", type=Path, default=None, help="also write the files here")
    args = parser.parse_args(argv)
    if args.sample_checksums_from is not None:
        print(f"wrote {write_expected(args.sample_checksums_from)}")
        return 0
    git_dirs = dict(item.split("=", 1) for item in args.snapshot)
    entries: list[ManifestEntry] = []
    for key, source in SOURCES.items():
        repo, commit = source["repo"], source["commit"]
        if repo not in git_dirs:
            parser.error(f"no --snapshot for {repo}")
        git_dir = Path(git_dirs[repo])
        if key == "val-images":
            paths = _val_paths(git_dir, commit)
        elif key == "val-boxes":
            paths = list(source["files"])
        else:
            paths = _train_paths(git_dir, commit)
        for path in paths:
            data = _blob(git_dir, commit, path)
            if args.mirror_out is not None:
                target = args.mirror_out / repo / commit / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            entries.append(ManifestEntry(key, repo, commit, path, hashlib.sha256(data).hexdigest(),
                                         len(data), raw_url(repo, commit, path)))
    write_manifest(entries, args.out)
    print(f"{args.out}: {len(entries)} files, {sum(e.size for e in entries) / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
