"""What one training step costs per image on this CPU: L-CAM-Fm and L-CAM-Img (issue 20, item 2).

    python benchmarks/train_cost.py                  # both variants, chunks 8 / 16 / 32, 256 images, 1 thread
    python benchmarks/train_cost.py --images 512 --chunks 8

Runs the real trainer (``python -m lib.train_lcam``, one epoch of ``--images`` training images of the
sample, batch 64, a scratch checkpoint) once per (variant, ``--cpu-chunk``) in a fresh process with
``OMP_NUM_THREADS=--threads``, one after another, and reads the epoch's rate from the trainer's own log line
(``(N images/s)``: the training loop only, not Python's start or the model's loading). Every image of the
epoch is one image-step (a forward and backward pass of the attention, and for L-CAM-Img of the whole
classifier). Writes ``<out>/train_cost.json``: seconds per image-step per variant and chunk, and the
machine. Nothing is asserted and CI never times anything; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.config import data_dir  # noqa: E402

RATE = re.compile(r"epoch 1/1: .*\(([\d.]+) images/s\)")


def command(variant: str, chunk: int, out: Path, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "lib.train_lcam", "--model", args.model, "--variant", variant,
            "--data-dir", str(data_dir().resolve()), "--train-dir", "imagenet-train-1000", "--epochs", "1",
            "--images", str(args.images), "--batch-size", "64", "--seed", "0", "--device", "cpu",
            "--cpu-chunk", str(chunk), "--out", str(out / f"lcam_{variant}_{chunk}.pt")]


def images_per_second(log: str) -> float:
    """The trainer's epoch rate from its log (``lib.train_lcam``'s ``... (N images/s)`` line)."""
    found = RATE.findall(log)
    if not found:
        raise ValueError("no '(N images/s)' epoch line in the trainer's log. Fix: run lib.train_lcam with --epochs 1 "
                         "and logging at INFO (its command line does both).")
    return float(found[-1])


def measure(variant: str, chunk: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(command(variant, chunk, Path(tmp), args), cwd=ROOT, env=env, capture_output=True,
                              text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"lib.train_lcam --variant {variant} --cpu-chunk {chunk} failed:\n{proc.stderr[-2000:]}")
    rate = images_per_second(proc.stderr + proc.stdout)
    return {"variant": variant, "cpu_chunk": chunk, "images_per_s": rate, "ms_per_image_step": round(1000 / rate, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=256, help="training images of the timed epoch")
    parser.add_argument("--chunks", default="8,16,32", help="--cpu-chunk values (images per classifier pass)")
    parser.add_argument("--variants", default="fm,img")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (the pipeline's: 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    rows = []
    for variant in args.variants.split(","):
        for chunk in (int(c) for c in args.chunks.split(",")):
            rows.append(measure(variant, chunk, args))
            print(rows[-1], flush=True)
    result = {"model": args.model, "images": args.images, "batch_size": 64, "threads": args.threads, "runs": rows,
              "machine": {"cores": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()}}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "train_cost.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
