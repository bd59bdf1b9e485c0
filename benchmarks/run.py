"""Throughput and peak memory of every CAM method and metric, beside pytorch-grad-cam, same run.

    python benchmarks/run.py --models efficientnet_lite0 resnet50 --images 8 --out benchmarks/results
    python benchmarks/run.py --device cuda --images 256 --batch-size 64      # on a GPU

For each model (ResNet-50 with random weights: timing only) it measures

* the forward-pass limit (images/s) in fp32 and, on CUDA, bf16 autocast + channels_last;
* every method of ``lib.cams.METHODS`` (ours) and the same method of pytorch-grad-cam (the peer)
  on the same inputs, images/s and peak CUDA memory;
* AD/IC (soft phi at 100/50/15 %) as images/s beside the forward limit.

Results go to ``<out>/<device>.json`` and a markdown table ``<out>/<device>.md``: for mask-based
methods, ``limit`` is the forward rate divided by the method's forward passes per image.  Nothing
here is asserted: CI never times anything.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Callable

import torch

from lib.cams import METHODS, get_method
from lib.config import resolve_device
from lib.metrics import average_drop_increase
from lib.models import load_model

PEER = {  # our registry name -> pytorch-grad-cam class name
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
    "hirescam": "HiResCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM", "ablationcam": "AblationCAM",
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> tuple[float, float | None]:
    """Seconds per call (best of ``repeats``) and peak CUDA memory in MiB (None on CPU)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return best, peak


def forward_rate(model, images, batch_size, device, bf16=False) -> float:
    def run():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(images), batch_size):
                model(images[i : i + batch_size])

    seconds, _ = timed(run, device)
    return len(images) / seconds


def peer_method(name: str, model, images, batch_size):
    import pytorch_grad_cam as pgc

    cls = getattr(pgc, PEER[name])
    layer = model.get_submodule(model.target_layer)
    kwargs = {"batch_size": batch_size} if name in ("scorecam", "ablationcam") else {}

    def run():
        model.requires_grad_(True)
        try:
            with cls(model=model, target_layers=[layer]) as cam:
                if kwargs:
                    cam.batch_size = kwargs["batch_size"]
                for i in range(0, len(images), batch_size):
                    cam(input_tensor=images[i : i + batch_size], targets=None)
        finally:
            model.requires_grad_(False)
            model.zero_grad(set_to_none=True)

    return run


def our_method(name: str, model, images, batch_size):
    cam = get_method(name, model)

    def run():
        for i in range(0, len(images), batch_size):
            cam(images[i : i + batch_size])

    return run


def bench_model(model_name: str, device: torch.device, n_images: int, batch_size: int, methods: list[str]) -> dict:
    weights = "default" if model_name.startswith("efficientnet") else None
    model = load_model(model_name, weights=weights, device=device)
    g = torch.Generator().manual_seed(0)
    size = model.preprocess.crop
    images = torch.rand(n_images, 3, size, size, generator=g).to(device)
    out = {"model": model_name, "weights": weights or "random", "images": n_images, "batch_size": batch_size}
    out["forward_fp32"] = forward_rate(model, images, batch_size, device)
    if device.type == "cuda":
        out["forward_bf16"] = forward_rate(model, images, batch_size, device, bf16=True)
    rows = []
    for name in methods:
        row = {"method": name}
        ours = our_method(name, model, images, batch_size)
        seconds, peak = timed(ours, device)
        row.update(ours_img_s=n_images / seconds, ours_peak_mib=peak)
        passes = getattr(get_method(name, model), "forward_passes", 1)
        row["forward_passes"] = passes
        row["limit_img_s"] = out.get("forward_bf16", out["forward_fp32"]) / passes
        if name in PEER:
            seconds, peak = timed(peer_method(name, model, images, batch_size), device)
            row.update(peer_img_s=n_images / seconds, peer_peak_mib=peak)
            row["speedup"] = row["ours_img_s"] / row["peer_img_s"]
        rows.append(row)
        print(f"{model_name:20s} {name:18s} ours {row['ours_img_s']:9.2f} img/s  "
              f"peer {row.get('peer_img_s', float('nan')):9.2f} img/s", flush=True)
    with torch.no_grad():
        targets = model(images).argmax(1)
    maps = get_method("gradcam", model)(images)
    seconds, _ = timed(lambda: average_drop_increase(model, images, maps, targets, batch_size=batch_size), device)
    out["ad_ic_img_s"] = n_images / seconds
    out["ad_ic_limit_img_s"] = out["forward_fp32"] / 4  # one original + three masked forwards
    out["methods"] = rows
    return out


def markdown(results: list[dict]) -> str:
    lines = ["| model | method | ours img/s | peer img/s | ours/peer | limit img/s | ours/limit |", "|---|---|---|---|---|---|---|"]
    for r in results:
        for m in r["methods"]:
            peer = m.get("peer_img_s")
            lines.append(
                f"| {r['model']} | {m['method']} | {m['ours_img_s']:.2f} | {peer:.2f} | {m['speedup']:.2f}x | "
                f"{m['limit_img_s']:.2f} | {m['ours_img_s'] / m['limit_img_s']:.0%} |" if peer else
                f"| {r['model']} | {m['method']} | {m['ours_img_s']:.2f} | - | - | {m['limit_img_s']:.2f} | "
                f"{m['ours_img_s'] / m['limit_img_s']:.0%} |")
        lines.append(f"| {r['model']} | AD/IC (3 masks) | {r['ad_ic_img_s']:.2f} | - | - | {r['ad_ic_limit_img_s']:.2f} | "
                     f"{r['ad_ic_img_s'] / r['ad_ic_limit_img_s']:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method in lib.cams.METHODS")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    methods = args.methods or [m for m in METHODS if m != "smoothgradcam++"] + ["smoothgradcam++"]
    results = [bench_model(m, device, args.images, args.batch_size, methods) for m in args.models]
    meta = {"device": str(device), "torch": torch.__version__, "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "threads": torch.get_num_threads()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{device.type}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (out / f"{device.type}.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
