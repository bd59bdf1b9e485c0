"""Atomic checkpoint writes shared by the trainers (:mod:`lib.train_am_gradcam`, :mod:`lib.train_lcam`).

A checkpoint is first written in full to ``PATH.tmp`` beside its destination and then moved
over ``PATH`` with :func:`os.replace`, which is atomic on POSIX and Windows when both are on the
same file system: an interruption (Ctrl-C, a killed job, a full disk) leaves either the old file
or the new one, never a truncated file that a resumed run would fail to read.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["atomic_save"]


def atomic_save(obj, path: str | Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically (``path.tmp`` then ``os.replace``); makes parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
