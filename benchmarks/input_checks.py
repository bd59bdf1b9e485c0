"""Cost of the image check (:func:`lib.inputs.check_images`) beside the Grad-CAM call it guards.

    python benchmarks/input_checks.py                 # CPU, EfficientNet-Lite0, batches 8 and 32

For each batch size, on uniform-noise ``[N, 3, 224, 224]`` images in [0, 1] (the check's cost does
not depend on the values):

* ``check_s``: :func:`lib.inputs.check_images` alone (best of ``--check-repeats`` after a warm-up);
* ``gradcam_s``: ``GradCAM(model)(images)``, which checks the images once (best of ``--repeats``);
* ``gradcam_unchecked_s``: the same call without the check (``finalize_maps(cam._raw(...))``, what
  ``__call__`` does after checking), timed interleaved with the checked call in alternating order;
* ``ratio``: ``check_s / gradcam_s``, the share of a Grad-CAM call the check costs.  The
  difference of the two Grad-CAM timings is within their noise on a shared CPU; ``ratio`` is the
  number to read.

Writes ``<out>/input_checks.json``.  Nothing is asserted: CI never times anything.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from lib.cams import GradCAM, finalize_maps
from lib.config import resolve_device
from lib.inputs import check_images
from lib.models import load_model


def best_of(fn: Callable[[], object], repeats: int, device: torch.device, warmup: bool = True) -> float:
    """Seconds of the fastest of ``repeats`` calls (after one warm-up call unless ``warmup=False``)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def bench_batch(cam: GradCAM, images: torch.Tensor, args, device: torch.device) -> dict:
    check_s = best_of(lambda: check_images(images), args.check_repeats, device)
    calls = {"checked": lambda: cam(images),
             "unchecked": lambda: finalize_maps(cam._raw(images, "predicted")[0], tuple(images.shape[-2:]), False)}
    best = {}
    for name in calls:  # warm-up
        calls[name]()
    for i in range(args.repeats):  # interleaved in alternating order: both see the same load of a shared machine
        for name in (calls if i % 2 == 0 else reversed(list(calls))):
            best[name] = min(best.get(name, float("inf")), best_of(calls[name], 1, device, warmup=False))
    checked, unchecked = best["checked"], best["unchecked"]
    row = {"batch": len(images), "check_s": check_s, "gradcam_s": checked, "gradcam_unchecked_s": unchecked,
           "ratio": check_s / checked, "check_us_per_image": 1e6 * check_s / len(images)}
    print(f"  batch {len(images):3d}: check {1e3 * check_s:8.3f} ms | Grad-CAM {1e3 * checked:8.1f} ms "
          f"(unchecked {1e3 * unchecked:8.1f} ms) | check / Grad-CAM {row['ratio']:.2e}", flush=True)
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--repeats", type=int, default=5, help="Grad-CAM calls per variant (best kept)")
    parser.add_argument("--check-repeats", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    started = time.time()
    model = load_model(args.model, device=device)
    cam = GradCAM(model)
    side = model.preprocess.crop
    pool = torch.rand(max(args.batches), 3, side, side, generator=torch.Generator().manual_seed(0)).to(device)
    print(f"{args.model} on {device}, {side} px, torch {torch.__version__}, {torch.get_num_threads()} threads",
          flush=True)
    rows = [bench_batch(cam, pool[:b], args, device) for b in args.batches]
    meta = {"device": str(device), "model": args.model, "torch": torch.__version__, "platform": platform.platform(),
            "threads": torch.get_num_threads(), "inputs": "uniform noise", "image_side": side,
            "seconds": time.time() - started,
            "command": "python benchmarks/input_checks.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "input_checks.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
