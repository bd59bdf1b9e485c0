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

Transparent huge pages make the fresh memory cheaper still. glibc's tunable ``glibc.malloc.hugetlb=1``
(glibc >= 2.35) makes ``malloc`` ask for transparent huge pages (``madvise(MADV_HUGEPAGE)``), so the
kernel faults in and clears 2 MiB at a time instead of 4 KiB. Tunables are read when a process starts,
so :func:`glibc_tunables` gives the environment value and the pipeline sets it for every job
(``workflow/rules/common.smk``). Measured on the same machines, fresh processes, one thread: Lite0's
first forward/backward at batch 32 (3.6 GB) 23-25 s -> 13-14 s, minor faults 0.75 M -> 2 k, and the whole
process 35 s -> 22-24 s (system time 28.6 s -> 16-18 s); one evaluation shard (X-Grad-CAM, ``ad_ic``, 64
images) 16.3-17.7 s -> 13.2-14.8 s. The pages hold the same values, so every number is unchanged. Where the
kernel's transparent huge pages are ``never``, the tunable does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

__all__ = ["ENV", "THRESHOLD", "HUGE_PAGES", "tune_malloc", "malloc_tuned", "glibc_tunables",
           "export_huge_pages"]

log = logging.getLogger(__name__)

ENV = "CAM_MALLOC_TUNING"
THRESHOLD = 1 << 30  # 1 GiB: above any activation the compendium's batches allocate
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
NEVER_TRIM = -1  # M_TRIM_THRESHOLD's value for "never return the heap's top to the system"
HUGE_PAGES = "glibc.malloc.hugetlb=1"  # GLIBC_TUNABLES entry: malloc madvises transparent huge pages

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


def glibc_tunables(current: str | None = None) -> str:
    """The value of ``GLIBC_TUNABLES`` for a child process: ``current`` with :data:`HUGE_PAGES` added.

    ``current`` is kept as it is when it already sets ``glibc.malloc.hugetlb`` (the user's choice wins)
    or when ``CAM_MALLOC_TUNING=0``; entries are joined with ``:`` as glibc expects. Processes started
    with it get transparent huge pages for their heap (see the module's docstring for what it saves).
    """
    current = (current or "").strip(":")
    if not _enabled() or "glibc.malloc.hugetlb=" in current:
        return current
    return f"{current}:{HUGE_PAGES}" if current else HUGE_PAGES


def export_huge_pages(environ=None) -> str:
    """Set ``GLIBC_TUNABLES`` in ``environ`` (default: this process's environment, which the processes it
    starts inherit) to :func:`glibc_tunables` of its current value, and return it. The pipeline calls it
    once at start (``workflow/rules/common.smk``) so that every job it starts gets huge pages."""
    environ = os.environ if environ is None else environ
    value = glibc_tunables(environ.get("GLIBC_TUNABLES"))
    if value:
        environ["GLIBC_TUNABLES"] = value
    return value
