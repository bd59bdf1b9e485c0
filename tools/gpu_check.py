"""One command for whoever has a CUDA GPU: `make gpu-check` (under 10 minutes on one GPU).

    python -m tools.gpu_check [--out benchmarks/results/gpu.json]

1. the CUDA-only tests (``pytest -m gpu``: bf16 on CUDA, evaluation rows on CUDA equal the CPU's);
2. the benchmark with the peer library side by side (``benchmarks/run.py --device cuda``, a short
   run: Lite0, 16 images, one repeat, no torch.compile path: with it the step ran past 150 s on an H200,
   without it 2 min) -> ``benchmarks/results/cuda.json`` / ``cuda.md``;
3. one shard of every method of ``evaluation.full_methods`` through the pipeline's ``evaluate`` rule
   (the full profile on the first shard of 64 images, in ``results/gpu-check/``): every metric group of the full
   profile but ``causal_swapped`` (:data:`CHECK_GROUPS`; the same code as ``causal`` on the other substrate, and
   21 more jobs would take the step past its limit: 297 s of 330 on an H200 with five groups);
4. a JSON summary (``--out``): each step's status and seconds, and per method and metric group the
   images per second of its shard, which ``tools/evaluation_summary.py`` turns into the full profile's
   projected GPU time. The shards run :data:`GPU_JOBS` at a time on the one GPU (each job one at a time
   would spend the step's time starting Python, torch and CUDA), so a rate is that of one job among
   several and the projection, which counts one job at a time, is an upper bound.

The steps' time limits add up to 570 s (60 + 180 + 330).

Exits non-zero when a step fails (the summary is written anyway) or when there is no GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable  # every step runs under this interpreter (`-m pytest`, `-m snakemake`), venv or not
CHECK = ROOT / "results" / "gpu-check"
SHARD_IMAGES = 64  # the one shard of every method: its images, and the rate's numerator
CHECK_GROUPS = ["ad_ic", "ad_ic_normalized", "causal", "localisation", "density"]
"""The metric groups of the shard step (the full profile's but ``causal_swapped``: see the module docstring)."""
GPU_JOBS = 8  # evaluate/train jobs sharing the one GPU at a time (--gpu-jobs), one CPU core each: 110 jobs one after
              # another, each starting Python, torch and CUDA, would not fit the step's time (on an H200 with 16
              # cores, 8 at a time ran the 112 jobs of 64 images in 297 s)


def step(name: str, cmd: list[str], timeout: int) -> dict:
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=timeout)
        status = "passed" if proc.returncode == 0 else f"failed ({proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout} s"
    return {"step": name, "status": status, "seconds": round(time.perf_counter() - start, 1)}


def shard_rates(bench: Path, images: int = SHARD_IMAGES) -> dict[str, dict[str, float]]:
    """{method: {metric group: images per second of its first shard}} from the evaluate rule's benchmark files
    (``<bench>/<model>/<method>/<target>/<group>/shard-0000.tsv``, Snakemake's wall seconds ``s``)."""
    rates: dict[str, dict[str, float]] = {}
    for tsv in sorted(bench.rglob("shard-0000.tsv")):
        _, method, _, group, _ = tsv.relative_to(bench).parts
        seconds = float(pd.read_csv(tsv, sep="\t").iloc[-1]["s"])
        if seconds > 0:
            rates.setdefault(method, {})[group] = round(images / seconds, 3)
    return rates


def scheduler_args() -> list[str]:
    """Snakemake's default scheduler solves an ILP with pulp; where pulp is not installed (a CUDA image with only
    what the evaluation needs), the greedy scheduler, which needs nothing."""
    return [] if importlib.util.find_spec("pulp") else ["--scheduler", "greedy"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    p.add_argument("--gpu-jobs", type=int, default=GPU_JOBS,
                   help=f"evaluate/train jobs sharing the GPU at a time (default {GPU_JOBS}; each takes one CPU core)")
    args = p.parse_args(argv)
    if args.gpu_jobs < 1:
        p.error(f"--gpu-jobs must be >= 1, got {args.gpu_jobs}")
    if not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device. Fix: run it on a machine with an NVIDIA GPU and the CUDA "
              "build of torch (the default from PyPI).", file=sys.stderr)
        return 2
    CHECK.mkdir(parents=True, exist_ok=True)
    cfg = CHECK / "config.yaml"
    cfg.write_text(yaml.safe_dump({"device": "cuda", "results_dir": str(CHECK), "figures_dir": str(CHECK / "figures"),
                                   "evaluation": {"full": True, "n_images": SHARD_IMAGES, "groups": CHECK_GROUPS,
                                                  "shard_size": SHARD_IMAGES}}))
    steps = [
        step("CUDA-only tests", [PYTHON, "-m", "pytest", "-m", "gpu", "tests", "-q"], 60),
        step("benchmark with the peer", [PYTHON, "benchmarks/run.py", "--device", "cuda", "--images", "16",
                                         "--repeats", "1", "--forward-models", "efficientnet_lite0", "--no-compile"],
             180),
        step("one shard of every method", [PYTHON, "-m", "snakemake", "--cores", "all", "--configfile",
                                           "config/config.yaml", str(cfg), "--rerun-incomplete", "--nolock",
                                           "--resources", f"gpu={args.gpu_jobs}", *scheduler_args()], 330),
    ]
    summary = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "steps": steps,
               "gpu_jobs_at_once": args.gpu_jobs, "images_per_shard": SHARD_IMAGES,
               "evaluate_images_per_s": shard_rates(CHECK / "benchmarks" / "evaluate")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0 if all(s["status"] == "passed" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
