"""Throughput and peak memory of every CAM method and metric, beside pytorch-grad-cam, same run.

    python benchmarks/run.py                                   # CPU: both models, every method and metric
    python benchmarks/run.py --device cuda --images 256 --batch-size 64 --slow-images 8   # on a GPU

For each model (EfficientNet-Lite0 with its real weights, ResNet-50 with random weights: timing
only) on the same inputs (images of the validation sample when it is found, else uniform noise):

* **forward limit**: images/s of the plain forward pass at its best batch size, in fp32 and, on
  CUDA, bf16 autocast + channels_last (the DESIGN.md ceilings).
* **methods**: every method of :data:`lib.cams.METHODS`, ours in fp32 and (on CUDA, or with
  ``--precisions fp32 bf16``) bf16, and pytorch-grad-cam's same method (the peer, fp32: it has no
  autocast path) timed right after on the same images.  ``limit`` is the forward rate of that
  precision divided by the method's forward passes per image (gradient methods: 1 pass, a lower
  bound on their cost); ``bf16_diff`` is the largest per-pixel difference between the bf16 and
  fp32 maps after min-max (the stated bound of the mixed-precision path).
* **metrics**: AD/IC (soft phi at 100/50/15 %: 1 + 3 forwards), deletion and insertion (UCAG:
  1792 pixels per step, 29 points), map density (2 forwards), pointing game and energy pointing
  game (no forward), and the cascading-randomisation sanity check of Grad-CAM (one map per
  randomised layer), each in images/s beside its forward limit.

Mask-based methods cost thousands of forwards per image (Score-CAM: one per channel, 2048 on
ResNet-50; RISE: 4000), so they run on ``--slow-images`` images (default 1 on a CPU) once,
without repeats; every other timing is the best of ``--repeats`` after a warm-up call.  Peak
memory is ``torch.cuda.max_memory_allocated`` on CUDA and the peak growth of the process's
resident memory during the call on a CPU (sampled every 2 ms), measured after ``gc.collect()``
and glibc's ``malloc_trim(0)`` have handed memory freed by earlier calls back to the system (else
a call that reuses freed heap pages would show no growth at all).

Results go to ``<out>/<device>.json`` and a markdown table ``<out>/<device>.md``.  Nothing here
is asserted: CI never times anything.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from lib.cams import METHODS, get_method
from lib.cams.perturbation import PerturbationCAM
from lib.config import resolve_device
from lib.maps import minmax_normalize
from lib.metrics import (average_drop_increase, cascading_randomization, deletion_insertion, energy_pointing_game,
                         map_density, num_points, pointing_game)
from lib.models import load_model

PEER = {  # our registry name -> pytorch-grad-cam class name
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
    "hirescam": "HiResCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM", "ablationcam": "AblationCAM",
}
PEER_BATCHED = ("scorecam", "ablationcam")  # peer classes with a batch_size of perturbed inputs


try:  # glibc only; elsewhere the RSS growth may miss reused heap pages
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):
    _LIBC = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release_free_memory() -> None:
    """Collect garbage and return the C heap's free pages to the system (glibc ``malloc_trim``)."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class _RssPeak:
    """Peak growth of this process's resident memory (MiB) while the context is open (Linux)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0
        self.mib = 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        _release_free_memory()
        self._stop = threading.Event()
        self.start = self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.mib = max(self.mib, (max(self.peak, self._rss()) - self.start) / 2**20)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1
          ) -> tuple[float, float | None]:
    """Seconds per call (best of ``repeats``) and peak memory in MiB (see the module docstring)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    best = float("inf")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rss = _RssPeak() if device.type == "cpu" and os.path.exists("/proc/self/statm") else None
    for _ in range(repeats):
        if rss is not None:
            rss.__enter__()
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
        if rss is not None:
            rss.__exit__()
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = rss.mib if rss is not None else None
    return best, peak


def forward_rate(model, images, batch_size, device, bf16=False) -> float:
    """Images/s of the plain forward pass in chunks of ``batch_size``."""
    def run():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(images), batch_size):
                model(images[i : i + batch_size])

    seconds, _ = timed(run, device)
    return len(images) / seconds


def forward_limit(model, images, device, bf16=False) -> tuple[float, int, dict[int, float]]:
    """The best forward rate over batch sizes (the ceiling every method is compared with).

    On a 2-core CPU small batches are fastest (they stay in cache); on a GPU large ones.
    """
    sizes = (256, 512, 1024) if device.type == "cuda" else (1, 2, 4, 8, 16, 32)
    reps = max(sizes) // len(images) + 1
    pool = images.repeat(reps, 1, 1, 1)[: max(sizes)] if len(images) < max(sizes) else images
    rates = {b: forward_rate(model, pool, b, device, bf16) for b in sizes}
    best = max(rates, key=rates.get)
    return rates[best], best, rates


def peer_method(name: str, model, images, batch_size, perturbation_batch: int):
    import pytorch_grad_cam as pgc

    cls = getattr(pgc, PEER[name])
    layer = model.get_submodule(model.target_layer)

    def run():
        model.requires_grad_(True)
        try:
            with cls(model=model, target_layers=[layer]) as cam:
                if name in PEER_BATCHED:
                    cam.batch_size = perturbation_batch
                for i in range(0, len(images), batch_size):
                    cam(input_tensor=images[i : i + batch_size], targets=None)
        finally:
            model.requires_grad_(False)
            model.zero_grad(set_to_none=True)

    return run


def our_maps(cam, images, batch_size) -> torch.Tensor:
    return torch.cat([cam(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def load_images(n: int, size: int, device: torch.device, preprocess) -> tuple[torch.Tensor, object | None, str]:
    """``n`` validation images (and their batch, with boxes) or uniform noise if the sample is absent."""
    try:
        from lib.config import split_dir
        from lib.data import ImageFolder, collate_samples, seeded_subset

        folder = ImageFolder(split_dir("imagenet-val-1300"), preprocess)
        ids = seeded_subset(folder.ids, n, seed=0)
        batch = collate_samples([folder[folder.ids.index(i)] for i in ids])
        return batch.images.to(device), batch.to(device), "imagenet-val-1300"
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"validation sample not found ({err}); timing on uniform noise", flush=True)
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 3, size, size, generator=g).to(device), None, "uniform noise"


def bench_methods(model, images, methods, precisions, out, args, device) -> list[dict]:
    rows = []
    slow_n = min(args.slow_images, len(images))
    for name in methods:
        probe = get_method(name, model)
        passes = getattr(probe, "forward_passes", 1)
        slow = isinstance(probe, PerturbationCAM)
        x = images[:slow_n] if slow else images
        repeats, warmup = (1, 0) if slow else (args.repeats, 1)
        row = {"method": name, "forward_passes": passes, "images": len(x), "repeats": repeats}
        maps = {}
        for precision in precisions:
            kwargs = {"precision": precision}
            if slow:
                kwargs.update(batch_size=out["perturbation_batch"], progress=False)
            cam = get_method(name, model, **kwargs)
            result = {}
            seconds, peak = timed(lambda: result.setdefault("maps", our_maps(cam, x, args.batch_size)),
                                  device, repeats=1, warmup=0) if slow else \
                timed(lambda: our_maps(cam, x, args.batch_size), device, repeats, warmup)
            maps[precision] = result.get("maps") if slow else our_maps(cam, x, args.batch_size)
            limit = out[f"forward_{precision}"] / passes
            row[precision] = {"img_s": len(x) / seconds, "peak_mib": peak, "limit_img_s": limit,
                              "of_limit": len(x) / seconds / limit}
        if "bf16" in maps and "fp32" in maps:
            diff = (minmax_normalize(maps["bf16"].float()) - minmax_normalize(maps["fp32"].float())).abs()
            row["bf16_diff_max"] = float(diff.max())
            row["bf16_diff_mean"] = float(diff.mean())
        if name in PEER and not args.no_peer:
            seconds, peak = timed(peer_method(name, model, x, args.batch_size, out["perturbation_batch"]), device,
                                  repeats=repeats, warmup=warmup)
            row["peer"] = {"img_s": len(x) / seconds, "peak_mib": peak}
            best = max(row[p]["img_s"] for p in precisions)
            row["speedup"] = best / row["peer"]["img_s"]
        rows.append(row)
        print(f"  {name:16s} " + "  ".join(f"{p} {_fmt(row[p]['img_s']):>9s} img/s" for p in precisions)
              + (f"  peer {_fmt(row['peer']['img_s']):>9s} img/s  x{row['speedup']:.2f}" if "peer" in row else ""),
              flush=True)
    return rows


def bench_metrics(model, images, batch, precisions, out, args, device) -> list[dict]:
    """Every metric on Grad-CAM maps of the images, in images/s beside its forward limit."""
    with torch.no_grad():
        targets = model(images).argmax(1)
    maps = our_maps(get_method("gradcam", model), images, args.batch_size)
    side = images.shape[-1]
    points = num_points(side * side, 1792)
    specs = [  # name, forwards per image, fn(precision)
        ("AD/IC (100/50/15%)", 4, lambda p: average_drop_increase(
            model, images, maps, targets, batch_size=out["perturbation_batch"], precision=p)),
        (f"deletion ({points} points)", points, lambda p: deletion_insertion(
            model, images, maps, targets, "deletion", batch_size=out["perturbation_batch"], precision=p)),
        (f"insertion ({points} points)", points, lambda p: deletion_insertion(
            model, images, maps, targets, "insertion", batch_size=out["perturbation_batch"], precision=p)),
        ("map density (+/-)", 2, lambda p: map_density(
            model, images, maps, targets, batch_size=out["perturbation_batch"], precision=p)),
    ]
    rows = []
    for name, passes, fn in specs:
        row = {"metric": name, "forward_passes": passes, "images": len(images)}
        for precision in precisions:
            seconds, peak = timed(lambda: fn(precision), device, args.repeats)
            limit = out[f"forward_{precision}"] / passes
            row[precision] = {"img_s": len(images) / seconds, "peak_mib": peak, "limit_img_s": limit,
                              "of_limit": len(images) / seconds / limit}
        rows.append(row)
    if batch is not None:
        for name, fn in [("pointing game", lambda: pointing_game(maps, batch.boxes, batch.box_labels, batch.labels)),
                         ("energy pointing game",
                          lambda: energy_pointing_game(maps, batch.boxes, batch.box_labels, batch.labels))]:
            seconds, peak = timed(fn, device, args.repeats)
            rows.append({"metric": name, "forward_passes": 0, "images": len(images),
                         "fp32": {"img_s": len(images) / seconds, "peak_mib": peak}})
    n_sanity = min(len(images), args.batch_size)
    layers = []
    result = {}
    seconds, peak = timed(lambda: result.setdefault("r", cascading_randomization(
        model, lambda m: get_method("gradcam", m), images[:n_sanity], targets[:n_sanity])), device, 1, 0)
    layers = result["r"]["layers"]
    # each step is one forward + backward of the N images: the forward limit / steps is an upper bound
    rows.append({"metric": f"cascading randomisation, Grad-CAM ({len(layers)} steps)", "forward_passes": len(layers),
                 "images": n_sanity, "fp32": {"img_s": n_sanity / seconds, "peak_mib": peak,
                                              "limit_img_s": out["forward_fp32"] / len(layers),
                                              "of_limit": n_sanity / seconds / (out["forward_fp32"] / len(layers))}})
    for r in rows:
        print(f"  {r['metric']:34s} " + "  ".join(f"{p} {r[p]['img_s']:9.2f} img/s" for p in precisions if p in r),
              flush=True)
    return rows


def bench_model(model_name: str, device: torch.device, args, precisions: list[str], methods: list[str]) -> dict:
    weights = "default" if model_name.startswith("efficientnet") else None
    model = load_model(model_name, weights=weights, device=device)
    images, batch, source = load_images(args.images, model.preprocess.crop, device, model.preprocess)
    out = {"model": model_name, "weights": weights or "random", "inputs": source, "images": len(images),
           "batch_size": args.batch_size,
           "target_layer": model.target_layer}
    print(f"{model_name} ({out['weights']} weights, {source}, target layer {model.target_layer})", flush=True)
    for precision in precisions:
        rate, best, rates = forward_limit(model, images, device, bf16=precision == "bf16")
        out[f"forward_{precision}"] = rate
        out[f"forward_{precision}_batch"] = best
        out[f"forward_{precision}_by_batch"] = rates
        print(f"  forward {precision}: {rate:.1f} img/s (batch {best}; "
              + ", ".join(f"{b}: {r:.1f}" for b, r in rates.items()) + ")", flush=True)
    # perturbed inputs and metric forwards run at the forward pass's best batch unless given
    out["perturbation_batch"] = args.perturbation_batch or out[f"forward_{precisions[-1]}_batch"]
    out["methods"] = bench_methods(model, images, methods, precisions, out, args, device)
    if not args.no_metrics:
        out["metrics"] = bench_metrics(model, images, batch, precisions, out, args, device)
    return out


def _fmt(value, spec=".2f", suffix="") -> str:
    """``value`` with ``spec``; rates below 1 with three significant digits (0.00489, not 0.00)."""
    if value is None:
        return "-"
    if spec == ".2f" and abs(value) < 1:
        spec = ".3g"
    return f"{value:{spec}}{suffix}"


def markdown(results: list[dict], precisions: list[str]) -> str:
    best = precisions[-1]  # bf16 where measured
    head = (f"| model | method | images | passes | ours fp32 img/s | ours {best} img/s | peer img/s | ours/peer | "
            f"limit ({best}) img/s | ours/limit | bf16 max diff | peak MiB ours / peer |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    lines += _rows(results, best)
    if best == "fp32":  # one precision measured: drop the repeated rate column
        lines = ["|".join(cell for k, cell in enumerate(line.split("|")) if k != 6) for line in lines]
    return "\n".join(lines) + "\n"


def _rows(results: list[dict], best: str) -> list[str]:
    lines = []
    for r in results:
        lines.append(f"| {r['model']} | forward | {r['images']} | 1 | {r['forward_fp32']:.1f} | "
                     f"{r[f'forward_{best}']:.1f} | - | - | - | - | - | - |")
        for m in r["methods"]:
            ours = m[best]
            peer = m.get("peer", {})
            lines.append(
                f"| {r['model']} | {m['method']} | {m['images']} | {m['forward_passes']} | {_fmt(m['fp32']['img_s'])} | "
                f"{_fmt(ours['img_s'])} | {_fmt(peer.get('img_s'))} | {_fmt(m.get('speedup'), '.2f', 'x')} | "
                f"{_fmt(ours['limit_img_s'])} | {ours['of_limit']:.0%} | {_fmt(m.get('bf16_diff_max'), '.3f')} | "
                f"{_fmt(ours['peak_mib'], '.0f')} / {_fmt(peer.get('peak_mib'), '.0f')} |")
        for m in r.get("metrics", []):
            ours = m.get(best, m["fp32"])
            lines.append(
                f"| {r['model']} | {m['metric']} | {m['images']} | {m['forward_passes']} | {_fmt(m['fp32']['img_s'])} | "
                f"{_fmt(ours['img_s'])} | - | - | {_fmt(ours.get('limit_img_s'))} | "
                f"{_fmt(ours.get('of_limit'), '.0%')} | - | {_fmt(ours['peak_mib'], '.0f')} / - |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method in lib.cams.METHODS")
    parser.add_argument("--images", type=int, default=16, help="images for gradient methods and metrics")
    parser.add_argument("--slow-images", type=int, default=None,
                        help="images for mask-based methods (default: 1 on a CPU, --images on CUDA)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per call")
    parser.add_argument("--perturbation-batch", type=int, default=None,
                        help="perturbed inputs per forward of mask-based methods, ours and the peer's "
                             "(default: the forward pass's best batch size, measured)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                        help="default: fp32 on a CPU, fp32 and bf16 on CUDA")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    precisions = args.precisions or (["fp32", "bf16"] if cuda else ["fp32"])
    if "fp32" not in precisions:
        precisions = ["fp32", *precisions]
    args.slow_images = args.slow_images or (args.images if cuda else 1)
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; use names from lib.cams.METHODS: {', '.join(METHODS)}")
    started = time.time()
    results = [bench_model(m, device, args, precisions, methods) for m in args.models]
    meta = {"device": str(device), "torch": torch.__version__, "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(device) if cuda else None, "threads": torch.get_num_threads(),
            "precisions": precisions, "seconds": time.time() - started,
            "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:])}
    try:
        import pytorch_grad_cam

        meta["peer"] = f"pytorch-grad-cam {getattr(pytorch_grad_cam, '__version__', '1.5.x')}"
    except ImportError:
        meta["peer"] = None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{device.type}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    table = markdown(results, precisions)
    (out / f"{device.type}.md").write_text(f"{meta['command']}  \n{meta['gpu'] or platform.processor() or 'CPU'}, "
                                           f"torch {meta['torch']}, {meta['threads']} threads\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
