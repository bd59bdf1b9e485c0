"""Two one-thread jobs at once, or one two-thread job after the other? (issue 19: the rules' threads)

    python benchmarks/threads.py --workload lcam       # the four L-CAM trainings of the default profile
    python benchmarks/threads.py --workload evaluate   # four evaluation shards (rule evaluate)

Runs real pipeline jobs (``python -m lib.train_lcam`` for the four variants of the default profile, or
``python -m lib.evaluation`` for Grad-CAM and Grad-CAM++'s ad_ic rows on shards 0-1 of 64 images, no
map store; each writing to a scratch folder, so nothing of the pipeline's is touched) in two schedules
on this machine's cores and times them by the wall clock:

* ``sequential``: one job at a time, each with ``OMP_NUM_THREADS=<cores>`` (what ``threads:
  workflow.cores`` gives today);
* ``parallel``: ``cores`` jobs at a time, each with ``OMP_NUM_THREADS=1``.

Writes the workload's entry of ``<out>/threads.json`` (the other workloads' are kept): each schedule's
wall seconds, every job's seconds, and ``ratio`` = sequential / parallel (above 1: one-thread jobs side
by side are faster). Nothing is asserted; CI
never times anything. Run it on a quiet machine: other work on the cores distorts both schedules.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.config import data_dir  # noqa: E402

VARIANTS = [("fm", False), ("fm", True), ("img", False), ("img", True)]


SHARDS = [("gradcam", 0), ("gradcam", 1), ("gradcam++", 0), ("gradcam++", 1)]


def lcam_command(variant: str, ce_only: bool, out: Path, args: argparse.Namespace) -> list[str]:
    name = f"lcam_{args.model}_{variant}_{'ce' if ce_only else 'full'}.pt"
    return [sys.executable, "-m", "lib.train_lcam", "--model", args.model, "--variant", variant,
            *(["--ce-only"] if ce_only else []), "--data-dir", str(data_dir().resolve()),
            "--train-dir", "imagenet-train-1000", "--epochs", "1", "--images", str(args.images),
            "--batch-size", "64", "--seed", "0", "--device", "cpu", "--out", str(out / name)]


def evaluate_command(method: str, shard: int, out: Path, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "lib.evaluation", "--model", args.model, "--method", method, "--group", "ad_ic",
            "--shard", str(shard), "--shard-size", "64", "--data-dir", str(data_dir().resolve()), "--device", "cpu",
            "--out", str(out / f"{method}-{shard}.parquet")]


def commands(out: Path, args: argparse.Namespace) -> list[list[str]]:
    if args.workload == "lcam":
        return [lcam_command(v, ce, out, args) for v, ce in VARIANTS]
    return [evaluate_command(m, k, out, args) for m, k in SHARDS]


def timed(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def schedule(name: str, cores: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp), args)
        start = time.perf_counter()
        if name == "sequential":
            jobs = [timed(c, cores) for c in cmds]
        else:
            with ThreadPoolExecutor(max_workers=cores) as pool:
                jobs = list(pool.map(lambda c: timed(c, 1), cmds))
        wall = time.perf_counter() - start
    return {"wall_s": round(wall, 2), "jobs_s": [round(j, 2) for j in jobs],
            "threads_per_job": cores if name == "sequential" else 1, "jobs_at_once": 1 if name == "sequential" else cores}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=["lcam", "evaluate"], default="lcam")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=0, help="training images per job (0: all 1000)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    jobs = ([f"lib.train_lcam --variant {v}{' --ce-only' if ce else ''}" for v, ce in VARIANTS] if args.workload == "lcam"
            else [f"lib.evaluation --method {m} --group ad_ic --shard {k} --shard-size 64" for m, k in SHARDS])
    result = {"jobs": jobs, "images_per_job": (args.images or 1000) if args.workload == "lcam" else 64}
    for name in ("sequential", "parallel"):
        result[name] = schedule(name, cores, args)
        print(name, result[name], flush=True)
    result["ratio"] = round(result["sequential"]["wall_s"] / result["parallel"]["wall_s"], 3)
    path = args.out / "threads.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    workloads = previous.get("workloads") or ({"lcam": {k: previous[k] for k in ("jobs", "images_per_job", "sequential",
                                                                                  "parallel", "ratio")}}
                                              if "ratio" in previous else {})
    workloads[args.workload] = result
    machine = {"cores": cores, "processor": platform.processor(), "python": platform.python_version()}
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine, "workloads": workloads}, indent=1) + "\n")
    print(f"{args.workload}: sequential / parallel = {result['ratio']} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
