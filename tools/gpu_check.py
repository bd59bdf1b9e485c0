"""One command for whoever has a CUDA GPU: `make gpu-check` (under 10 minutes on one GPU).

    python -m tools.gpu_check [--out benchmarks/results/gpu.json]

1. the CUDA-only tests (``pytest -m gpu``: bf16 on CUDA, evaluation rows on CUDA equal the CPU's);
2. the benchmark with the peer library side by side (``benchmarks/run.py --device cuda``, a short
   run: Lite0, 16 images, one repeat) -> ``benchmarks/results/cuda.json`` / ``cuda.md``;
3. one shard of every method of ``evaluation.methods`` through the pipeline's ``evaluate`` rule
   (the full profile on the first shard of 64 images, every metric group, in ``results/gpu-check/``);
4. a JSON summary (``--out``): each step's status and seconds, and per method the images per second
   of its shard (all groups), which ``tools/evaluation_summary.py`` turns into the full profile's
   projected GPU time.

Exits non-zero when a step fails (the summary is written anyway) or when there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CHECK = ROOT / "results" / "gpu-check"
SHARD_IMAGES = 64  # the one shard of every method: its images, and the rate's numerator


def step(name: str, cmd: list[str], timeout: int) -> dict:
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, timeout=timeout)
        status = "passed" if proc.returncode == 0 else f"failed ({proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout} s"
    return {"step": name, "status": status, "seconds": round(time.perf_counter() - start, 1)}


def shard_rates(bench: Path) -> dict[str, float]:
    """{method: images per second of its first shard over every metric group} from the rule's benchmarks."""
    seconds: dict[str, float] = {}
    for tsv in bench.rglob("shard-0000.tsv"):
        method = tsv.relative_to(bench).parts[1]
        seconds[method] = seconds.get(method, 0.0) + float(pd.read_csv(tsv, sep="\t").iloc[-1]["s"])
    return {m: round(SHARD_IMAGES / s, 3) for m, s in sorted(seconds.items()) if s > 0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device. Fix: run it on a machine with an NVIDIA GPU and the CUDA "
              "build of torch (the default from PyPI).", file=sys.stderr)
        return 2
    CHECK.mkdir(parents=True, exist_ok=True)
    cfg = CHECK / "config.yaml"
    cfg.write_text(yaml.safe_dump({"device": "cuda", "results_dir": str(CHECK), "figures_dir": str(CHECK / "figures"),
                                   "evaluation": {"full": True, "n_images": SHARD_IMAGES,
                                                  "shard_size": SHARD_IMAGES}}))
    steps = [
        step("CUDA-only tests", [str(BIN / "python"), "-m", "pytest", "-m", "gpu", "tests", "-q"], 120),
        step("benchmark with the peer", [str(BIN / "python"), "benchmarks/run.py", "--device", "cuda", "--images", "16",
                                         "--repeats", "1", "--forward-models", "efficientnet_lite0"], 240),
        step("one shard of every method", [str(BIN / "snakemake"), "--cores", "all", "--configfile", "config/config.yaml",
                                           str(cfg), "--rerun-incomplete", "--nolock", "--resources", "gpu=1"], 300),
    ]
    summary = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "steps": steps,
               "evaluate_images_per_s": shard_rates(CHECK / "benchmarks" / "evaluate")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0 if all(s["status"] == "passed" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
