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


def _probe(setting: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != allocator.ENV}
    if setting is not None:
        env[allocator.ENV] = setting
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
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
