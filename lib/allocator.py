"""glibc ``malloc`` settings that keep PyTorch's CPU activations from being page-faulted on every call.

PyTorch's CPU tensors come from ``malloc``.  glibc serves a request above ``M_MMAP_THRESHOLD``
with a fresh ``mmap`` and returns it to the system on ``free``; heap memory above
``M_TRIM_THRESHOLD`` at the top of the heap is returned too.  Both start at 128 KiB and adapt only
up to 32 MiB, while one forward pass of EfficientNet-Lite0 at batch 8 allocates and frees
activations of several MiB many times over.  So by default every call maps fresh pages, and the
kernel zeroes each on its first touch: measured on a 2-core CPU (AVX-512, glibc 2.36), Lite0's
eager forward at batch 8 ran at 45-65 images/s with glibc's defaults and at 130-165 images/s with
both thresholds at 1 GiB, with the same numbers bit for bit (``benchmarks/results/cpu.md``,
forward paths: the row "PyTorch eager fp32, glibc malloc defaults" is timed in a child process
with ``CAM_MALLOC_TUNING=0``).  How fast it ran with the
defaults also depended on the largest batch the process had seen before, which made eager timings
vary by 2x between processes.

:func:`tune_malloc` raises ``M_MMAP_THRESHOLD`` to 1 GiB and turns trimming off
(``M_TRIM_THRESHOLD`` = -1, "never"; ``mallopt``), so freed activations stay in the heap and are
reused. A fixed trim threshold is not enough: a backward pass over a UCAG crop batch peaks at about
3 GB, and each trim above 1 GiB made the next batch fault its pages in again (notebook 04 on one
thread: 203 s with a 1 GiB trim threshold, 170 s without trimming, same tables).

On the virtual machines the compendium is measured on (KVM, ``virtio_balloon``), memory a process
touches for the first time is slow: the kernel's page clearing (``clear_page_erms``) took 63% of a
UCAG run's time, and Lite0's first forward/backward at batch 32 took 35-38 s against 1.1-1.3 s for
the same pass once its memory was reused (2.9 GB of fresh pages). So every process pays for its peak
memory; the CPU defaults keep it low (the trainings' ``--cpu-chunk``, config/config.yaml).  The price is that the process's resident memory stays at its peak instead of
shrinking after each call, which a compendium run that holds one model can afford.
:func:`lib.models.load_model` calls it for CPU models; set ``CAM_MALLOC_TUNING=0`` to keep glibc's
defaults (nothing happens on non-glibc systems).  It is the allocator setting PyTorch's CPU
performance guide reaches with jemalloc/tcmalloc, without preloading another library.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["ENV", "THRESHOLD", "tune_malloc", "malloc_tuned"]

log = logging.getLogger(__name__)

ENV = "CAM_MALLOC_TUNING"
THRESHOLD = 1 << 30  # 1 GiB: above any activation the compendium's batches allocate
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
NEVER_TRIM = -1  # M_TRIM_THRESHOLD's value for "never return the heap's top to the system"

_tuned: bool | None = None


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def _enabled() -> bool:
    value = os.environ.get(ENV, "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{ENV}={value!r} is not understood. Fix: set it to 1 (tune glibc malloc, the default) "
                     "or 0 (keep glibc's defaults).")


def tune_malloc(threshold: int = THRESHOLD) -> bool:
    """Raise glibc's ``M_MMAP_THRESHOLD`` to ``threshold`` bytes and turn trimming off, once per process.

    Returns whether the process now runs with the tuned thresholds: ``False`` when
    ``CAM_MALLOC_TUNING=0``, when the C library has no ``mallopt`` (not glibc) or refuses the value.
    Later calls return the first call's answer.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    if not 0 < threshold < 2**31:
        raise ValueError(f"threshold={threshold} must be a positive int below 2 GiB (mallopt takes a C int).")
    _tuned = False
    if not _enabled():
        log.debug("glibc malloc left at its defaults (%s=0)", ENV)
        return False
    mallopt = _libc()
    if mallopt is None:
        log.debug("no mallopt in the C library: malloc left as it is")
        return False
    # M_MMAP_THRESHOLD first: setting either one turns off glibc's adaptation of both. The trim threshold
    # -1 ("never", mallopt(3)): a UCAG crop batch's backward pass peaks at ~3 GB, above any fixed
    # threshold a C int holds, and each trim made the next batch fault its pages in again.
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, NEVER_TRIM))
    log.debug("glibc malloc thresholds %s to %d bytes", "raised" if _tuned else "not accepted", threshold)
    return _tuned


def malloc_tuned() -> bool:
    """Whether :func:`tune_malloc` has tuned this process."""
    return bool(_tuned)
