"""Where things are (repository, data directory, splits), which device to use, and logging.

The data directory is, in this order (see ``data/README.md``):

1. an explicit value (the ``data_dir`` config key, a ``--data-dir`` argument), when not empty;
2. the environment variable ``CAM_DATA_DIR``;
3. ``../shared/data``, the folder beside the checkout, when it exists (the project's own machines);
4. ``local-data/`` inside the checkout (git-ignored): where ``make data`` builds the samples on any
   other machine.

Relative paths are taken relative to the repository root, as the Snakefile does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "LOCAL_DATA_DIR",
    "data_dir",
    "get_logger",
    "repo_root",
    "resolve_device",
    "split_dir",
]

DATA_DIR_ENV = "CAM_DATA_DIR"
"""Environment variable naming the data directory when the config leaves ``data_dir`` empty."""

DEFAULT_DATA_DIR = Path("..") / "shared" / "data"
"""The data directory used when neither the config nor ``CAM_DATA_DIR`` names one and it exists (repo-relative)."""

LOCAL_DATA_DIR = Path("local-data")
"""The data directory otherwise (repo-relative, git-ignored): ``make data`` builds the samples there."""


def get_logger(name: str) -> logging.Logger:
    """The standard-library logger ``name`` (the library logs; it never prints)."""
    return logging.getLogger(name)


# A library adds no handlers of its own; this only silences "no handler" warnings on old Pythons.
logging.getLogger("lib").addHandler(logging.NullHandler())


def repo_root() -> Path:
    """The repository root: the nearest folder above this file that holds ``pyproject.toml``."""
    here = Path(__file__).resolve()
    for folder in here.parents:
        if (folder / "pyproject.toml").is_file():
            return folder
    # Installed without the checkout (a wheel): the folder holding the ``lib`` package.
    return here.parent.parent


def _from_repo(path: str | Path) -> Path:
    """``path`` with ``~`` expanded; a relative path is taken relative to the repository root."""
    path = Path(os.path.expanduser(str(path)))
    return path if path.is_absolute() else repo_root() / path


def data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit`` (non-empty) > ``$CAM_DATA_DIR`` > ``<repo>/../shared/data``
    when that folder exists > ``<repo>/local-data``.

    Existence of the chosen folder is not checked here; readers (:class:`lib.data.ImageFolder`) report a missing
    folder with the fix.
    """
    if explicit is not None and str(explicit).strip():
        return _from_repo(str(explicit).strip())
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return _from_repo(env)
    shared = repo_root().parent / "shared" / "data"  # DEFAULT_DATA_DIR, without the ".."
    return shared if shared.is_dir() else _from_repo(LOCAL_DATA_DIR)


_resolve_data_dir = data_dir  # split_dir's parameter shadows the function name


def split_dir(split_or_path: str | Path, data_dir: str | Path | None = None) -> Path:  # noqa: A002
    """Folder of one data set: an existing folder path as given, else ``data_dir(data_dir) / split``.

    ``split_or_path`` is either a name inside the data directory (``"imagenet-val-1300"``) or
    a path (absolute, or relative to the working directory) to an existing folder.  An
    absolute path is returned as is even when missing, so that the error names it.
    """
    given = Path(os.path.expanduser(str(split_or_path)))
    if given.is_absolute() or given.is_dir():
        return given
    return _resolve_data_dir(data_dir) / given


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as asked.

    Asking for a device this machine does not have raises :class:`ValueError` naming the fix.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"Unknown device {name!r}: use device: auto, cpu or cuda (or cuda:<index>).") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} was asked for but torch sees no CUDA GPU on this machine: "
                "use device: auto (CUDA when available, else the CPU) or device: cpu."
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {name!r} was asked for but this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1}): use device: auto, cuda or cpu."
            )
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"device {name!r} is not available on this machine: use device: auto or cpu.")
    elif device.type != "cpu":
        raise ValueError(f"Unsupported device {name!r}: use device: auto, cpu or cuda.")
    return device
