"""lib.allocator: glibc malloc thresholds raised for CPU models, so freed activations are reused.

Each check runs in a child process: mallopt changes the whole process, and this one has already
loaded models (which tune it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lib.allocator as allocator

ROOT = Path(__file__).resolve().parent.parent

# Allocate, touch and free a 64 MiB tensor twice; report the page faults of the second round.
# With glibc's defaults the second round maps fresh pages again (one minor fault per 4 KiB page);
# with the thresholds raised it reuses the heap memory freed by the first round.
_PROBE = """
import json, resource, sys
import torch
from lib import allocator
from lib.models import load_model

load_model("efficientnet_lite0", weights=None)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def round_trip():
    x = torch.empty(16 * 2**20, dtype=torch.float32)
    x.fill_(1.0)
    del x
round_trip()
before = faults()
round_trip()
print(json.dumps({"tuned": allocator.malloc_tuned(), "faults": faults() - before}))
"""


# Touch a fresh 64 MiB tensor once; report its page faults.
_FRESH = """
import json, resource
import torch
from lib.models import load_model

load_model("efficientnet_lite0", weights=None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(16 * 2**20, dtype=torch.float32).fill_(1.0)
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(setting: str | None, code: str = _PROBE, tunables: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (allocator.ENV, "GLIBC_TUNABLES")}
    if setting is not None:
        env[allocator.ENV] = setting
    if tunables is not None:
        env["GLIBC_TUNABLES"] = tunables
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_cpu_models_reuse_freed_activations_instead_of_faulting_fresh_pages():
    tuned, default = _probe(None), _probe("0")
    assert tuned["tuned"] is True and default["tuned"] is False
    pages = 64 * 2**20 // 4096
    assert default["faults"] > pages // 2  # glibc's defaults: the 64 MiB is mapped afresh
    assert tuned["faults"] < pages // 20  # tuned: the freed block is reused


def test_bad_setting_names_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setattr(allocator, "_tuned", None)
    monkeypatch.setenv(allocator.ENV, "maybe")
    with pytest.raises(ValueError, match=f"{allocator.ENV}='maybe'.*Fix: set it to 1"):
        allocator.tune_malloc()


def test_threshold_must_fit_a_c_int(monkeypatch):
    monkeypatch.setattr(allocator, "_tuned", None)
    with pytest.raises(ValueError, match="below 2 GiB"):
        allocator.tune_malloc(2**31)


def _transparent_huge_pages() -> bool:
    """Whether the kernel gives transparent huge pages to a process that asks (madvise or always)."""
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.is_file() and "[never]" not in path.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _transparent_huge_pages(),
                    reason="glibc's tunables and the kernel's transparent huge pages")
def test_huge_page_tunable_faults_fresh_memory_in_two_megabyte_pages():
    plain = _probe(None, _FRESH)
    huge = _probe(None, _FRESH, tunables=allocator.glibc_tunables(None))
    pages = 64 * 2**20 // 4096
    assert plain["faults"] > pages // 2  # one fault per 4 KiB page
    assert huge["faults"] < pages // 20  # one per 2 MiB page (plus the heap's edges)


def test_glibc_tunables_adds_huge_pages_and_keeps_the_users_entries(monkeypatch):
    monkeypatch.delenv(allocator.ENV, raising=False)
    assert allocator.glibc_tunables(None) == "glibc.malloc.hugetlb=1"
    assert allocator.glibc_tunables("glibc.malloc.arena_max=2") == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert allocator.glibc_tunables("glibc.malloc.hugetlb=0") == "glibc.malloc.hugetlb=0"  # the user's choice
    monkeypatch.setenv(allocator.ENV, "0")
    assert allocator.glibc_tunables("glibc.malloc.arena_max=2") == "glibc.malloc.arena_max=2"


def test_export_huge_pages_sets_the_environment_children_inherit(monkeypatch):
    monkeypatch.delenv(allocator.ENV, raising=False)
    environ = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert allocator.export_huge_pages(environ) == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    monkeypatch.setenv(allocator.ENV, "0")
    environ = {}
    assert allocator.export_huge_pages(environ) == "" and "GLIBC_TUNABLES" not in environ
