"""Deterministic training: :func:`deterministic`, a context manager shared by the trainers.

Inside ``with deterministic():``

* ``torch.use_deterministic_algorithms(True, warn_only=warn_only)``: operations with a
  deterministic implementation use it; those without one raise a ``RuntimeError`` (``warn_only``:
  a warning instead; on CUDA some backward passes, e.g. bilinear interpolation's and adaptive
  average pooling's, have none);
* ``torch.backends.cudnn.benchmark = False`` and ``torch.backends.cudnn.deterministic = True``
  (no auto-tuned, run-dependent convolution algorithms);
* ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment when it is unset and ``cublas`` (default:
  CUDA is available), which deterministic cuBLAS needs (CUDA >= 10.2; read when cuBLAS first
  starts in the process, so enter the context before the first CUDA matrix product).

Everything is restored on exit (the previous mode and ``warn_only`` flag, both cuDNN flags, and the
environment variable removed if this context set it), also when the body raises; contexts nest.

Determinism here means the same bits on the same machine, software and thread count. It does not
fix the thread count (the trainers' ``--threads`` does) nor seed anything (the trainers do), and
floating-point summation order still differs between CPU types and vector instruction sets, so
results on another machine differ in the last bits.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

__all__ = ["CUBLAS_WORKSPACE", "deterministic"]

CUBLAS_WORKSPACE = ":4096:8"  # PyTorch's documented setting for deterministic cuBLAS


@contextlib.contextmanager
def deterministic(warn_only: bool = False, cublas: bool | None = None) -> Iterator[None]:
    """Deterministic algorithms, cuDNN without benchmarking, deterministic cuBLAS; restored on exit."""
    cublas = torch.cuda.is_available() if cublas is None else cublas
    mode = torch.are_deterministic_algorithms_enabled()
    mode_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark, cudnn_deterministic = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    set_env = cublas and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    if set_env:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    try:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        yield
    finally:
        torch.use_deterministic_algorithms(mode, warn_only=mode_warn_only)
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.deterministic = cudnn_deterministic
        if set_env:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
