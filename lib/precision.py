"""The two numeric paths of every method and metric: ``"fp32"`` (the reference) and ``"bf16"``.

``"bf16"`` runs forward passes under bfloat16 autocast (the GPU fast path), or, for forward-only
work on the CPU, in OpenVINO's bf16 (:mod:`lib.inference`, which reads the autocast region);
results are always returned in float32.  One home for the names and the check, shared by :mod:`lib.cams` and
:mod:`lib.metrics`.
"""

from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "check_precision", "precision_autocast"]

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")


def check_precision(precision: str) -> bool:
    """``True`` for ``"bf16"``, ``False`` for ``"fp32"``; a ``ValueError`` naming the choices otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}. Fix: use one of {', '.join(PRECISIONS)}.")
    return precision == "bf16"


def precision_autocast(device: torch.device, precision: str):
    """Autocast context of forward passes on ``device``: disabled for fp32, bfloat16 for bf16.

    On a CPU, PyTorch eager bf16 runs but is slower than the fp32 fast path; forward-only passes
    inside this region go to :mod:`lib.inference` in bf16 instead (an explicit option, measured
    bound in ``benchmarks/results/cpu.json``).
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=check_precision(precision))


def strict_fp32_on_cuda() -> None:
    """Make fp32 on CUDA IEEE fp32: no TF32 in cuDNN convolutions or in matrix products.

    PyTorch lets cuDNN run fp32 convolutions in TF32 (10-bit mantissa) on Ampere and later GPUs by
    default. That is not the fp32 the CPU computes: on an H200, Grad-CAM's AD rows of 3 images on
    CUDA differed from the CPU's by up to 0.8 points with TF32 on (`make gpu-check`,
    tests/test_evaluation.py::test_rows_on_cuda_equal_the_cpu_rows). Reduced precision stays an
    explicit choice (``precision="bf16"``). Process-wide, like the flags it sets.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
