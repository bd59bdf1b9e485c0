"""Speed of every CAM method and metric on each inference path, beside the peers, in one run.

    python benchmarks/run.py                  # CPU: forward paths of Lite0, Lite2, ResNet-50; Lite0 methods and metrics
    python benchmarks/run.py --device cuda --images 256 --batch-size 64 --slow-images 8   # on a GPU

Three sections, all on the same validation images (uniform noise when the sample is absent); the
forward paths run last, because ``torch.compile`` changes the process for what follows:

* **forward paths** (``--forward-models``): images/s of the plain forward pass at batch 8 and 32
  on every inference path we know of (PyTorch eager fp32 channels-last, eager bf16 autocast,
  ``torch.compile`` fp32 / bf16, ONNX Runtime fp32, OpenVINO fp32 / bf16; on CUDA the eager
  paths and ``torch.compile``), with the largest logit difference to eager fp32.  This is where
  :mod:`lib.inference`'s default was chosen.
* **methods** (``--models``): every method of :data:`lib.cams.METHODS` on each *path* of the
  library: ``eager`` (``CAM_INFERENCE=torch``, the reference), ``fast`` (the default CPU fast
  path, fp32) and ``fast-bf16`` (its explicit bf16 option); on CUDA ``eager`` and ``eager-bf16``
  (autocast).  Methods that need gradients or hooks run on PyTorch whatever the path, so only the
  mask-based methods are timed on the fast paths.  Beside them the peers, timed right after ours
  on the same images: pytorch-grad-cam's same method, and the FM-G-CAM authors'
  ``xai-inference-engine`` where it is installed.  ``limit`` is the path's forward rate (best
  batch) divided by the method's forward passes per image; ``diff`` is the largest per-pixel
  difference of the path's maps to eager fp32 (maps min-max normalised).
* **metrics**: AD/IC (soft phi at 100/50/15 %), deletion and insertion (1792 pixels per step),
  map density, adversarial verification (4 hosts), on each path, with the largest per-image
  difference of the metric's values to eager fp32; and the pointing games and the cascading
  randomisation (no forward-only work: PyTorch only).

Mask-based methods cost thousands of forwards per image, so they run on ``--slow-images`` images
(default 1 on a CPU) once, without repeats; every other timing is the best of ``--repeats`` after
a warm-up call (which also exports and compiles the fast path's graph).  Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA and the peak growth of the process's resident memory
during the first timed call on a CPU (sampled every 2 ms, after ``gc.collect()`` and glibc's
``malloc_trim``); the time is the best repeat, so a call slowed by the trim or the sampler does not
set it.

Every path runs with the library's allocator setting (:mod:`lib.allocator`: glibc's malloc
thresholds raised when a CPU model is loaded).  The forward section adds one row timed in a child
process with glibc's defaults (``CAM_MALLOC_TUNING=0``), which is what PyTorch eager gives without
that setting.

Results go to ``<out>/<device>.json`` and ``<out>/<device>.md`` (:mod:`benchmarks.report`, which
also renders the README's speed table from the JSON).  Nothing here is asserted: CI never times
anything.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report  # noqa: E402
from lib import allocator, inference  # noqa: E402
from lib.cams import METHODS, get_method  # noqa: E402
from lib.cams.ablation import AblationCAM  # noqa: E402
from lib.cams.perturbation import PerturbationCAM  # noqa: E402
from lib.config import resolve_device  # noqa: E402
from lib.maps import minmax_normalize  # noqa: E402
from lib.metrics import (adversarial_verification, average_drop_increase, cascading_randomization,  # noqa: E402
                         deletion_insertion, energy_pointing_game, map_density, num_points, pointing_game)
from lib.models import load_model  # noqa: E402
from lib.precision import precision_autocast  # noqa: E402

PEER = {  # our registry name -> pytorch-grad-cam class name
    "gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
    "hirescam": "HiResCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM", "ablationcam": "AblationCAM",
}
PEER_BATCHED = ("scorecam", "ablationcam")  # peer classes with a batch_size of perturbed inputs
FORWARD_BATCHES = (8, 32)
EAGER_FP32 = "PyTorch eager fp32 (channels-last)"
EAGER_UNTUNED = "PyTorch eager fp32, glibc malloc defaults"


@dataclass(frozen=True)
class InferencePath:
    """One way the library can run forward-only work: a backend of lib.inference and a precision."""

    name: str
    backend: str
    precision: str

    @property
    def fast(self) -> bool:
        return self.backend != "torch"

    def context(self):
        """The block in which lib.inference uses this path's backend."""
        return inference.use_backend(self.backend)


def library_paths(device: torch.device, bf16: bool) -> list[InferencePath]:
    """The library's paths on ``device``: the reference first."""
    if device.type == "cuda":
        return [InferencePath("eager", "torch", "fp32"), InferencePath("eager-bf16", "torch", "bf16")]
    with inference.use_backend("auto"):
        fast = inference.resolve_backend(device)
    if fast == "torch":
        print("no fast backend installed (openvino, onnxruntime): timing PyTorch eager only", flush=True)
        return [InferencePath("eager", "torch", "fp32")]
    paths = [InferencePath("eager", "torch", "fp32"), InferencePath("fast", fast, "fp32")]
    if bf16 and fast == "openvino":
        paths.append(InferencePath("fast-bf16", fast, "bf16"))
    return paths


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
    """Seconds per call (best of ``repeats``) and peak memory in MiB of the first repeat (see the
    module docstring)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    best = float("inf")
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    rss = _RssPeak() if device.type == "cpu" and os.path.exists("/proc/self/statm") else None
    for i in range(repeats):
        # Memory on the first repeat only: its malloc_trim returns the heap's free pages, so that
        # call maps (and page-faults) its activations afresh, which the repeats after it do not.
        sampled = rss is not None and i == 0
        if sampled:
            rss.__enter__()
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
        if sampled:
            rss.__exit__()
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = rss.mib if rss is not None else None
    return best, peak




def path_logits(model, x, path: InferencePath, device) -> torch.Tensor:
    """Forward-only logits of ``x`` on ``path`` (what the library's loops call)."""
    with path.context(), torch.no_grad():
        if path.fast:
            return inference.forward_logits(model, x, precision=path.precision).float()
        with precision_autocast(device, path.precision):
            return inference.forward_logits(model, x).float()


def path_forward_limit(model, images, device, path: InferencePath) -> tuple[float, int, dict[int, float]]:
    """The best forward rate of ``path`` over batch sizes (the ceiling of every method on it)."""
    sizes = (256, 512, 1024) if device.type == "cuda" else (1, 4, 8, 16, 32)
    pool = images.repeat(max(sizes) // len(images) + 1, 1, 1, 1)[: max(sizes)]
    rates = {}
    for b in sizes:
        def run():
            for i in range(0, len(pool), b):
                path_logits(model, pool[i : i + b], path, device)
        seconds, _ = timed(run, device)
        rates[b] = len(pool) / seconds
    best = max(rates, key=rates.get)
    return rates[best], best, rates


# ------------------------------------------------------------------------------------- forward paths
def forward_candidates(device: torch.device, compile_: bool) -> list[tuple[str, Callable]]:
    """``(name, make(model) -> fn(x) -> logits)`` for every forward path to compare."""
    def eager(bf16):
        def make(model):
            def fn(x):
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    return model(x).float()
            return fn
        return make

    def compiled(bf16):
        def make(model):
            net = torch.compile(model)
            def fn(x):
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    return net(x).float()
            return fn
        return make

    def runtime(backend, precision):
        def make(model):
            def fn(x):
                with inference.use_backend(backend), torch.no_grad():
                    return inference.forward_logits(model, x, precision=precision)
            return fn
        return make

    out = [(EAGER_FP32, eager(False)), ("PyTorch eager bf16 autocast", eager(True))]
    if compile_:
        out += [("torch.compile fp32", compiled(False)), ("torch.compile bf16 autocast", compiled(True))]
    if device.type == "cpu":
        from lib.inference import runtimes
        if runtimes.installed("onnxruntime"):
            out.append(("ONNX Runtime fp32 (CPU provider)", runtime("onnxruntime", "fp32")))
        if runtimes.installed("openvino"):
            out += [("OpenVINO fp32", runtime("openvino", "fp32")), ("OpenVINO bf16", runtime("openvino", "bf16"))]
    return out


def bench_forward_paths(model_name: str, device: torch.device, args) -> dict:
    """img/s at batch 8 and 32 and the largest logit difference to eager fp32, for each forward path."""
    weights = "default" if model_name.startswith("efficientnet") else None
    model = load_model(model_name, weights=weights, device=device)
    images, _, source = load_images(max(FORWARD_BATCHES), model.preprocess.crop, device, model.preprocess)
    with torch.no_grad():
        reference = model(images).float()
    out = {"model": model_name, "weights": weights or "random", "inputs": source, "images": len(images),
           "input_side": model.preprocess.crop, "paths": []}
    print(f"forward paths: {model_name} ({out['weights']} weights, {source})", flush=True)
    for name, make in forward_candidates(device, not args.no_compile):
        row = {"path": name}
        try:
            start = time.perf_counter()
            fn = make(model)
            logits = fn(images)  # exports / compiles
            row["setup_s"] = time.perf_counter() - start
            row["logit_diff_max"] = float((logits - reference).abs().max())
            row["top1_agreement"] = float((logits.argmax(1) == reference.argmax(1)).float().mean())
            for b in FORWARD_BATCHES:
                x = images[:b]
                seconds, _ = timed(lambda: fn(x), device, args.repeats)
                row[f"img_s_batch{b}"] = b / seconds
        except Exception as err:  # a path that does not run here is reported, not fatal
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        out["paths"].append(row)
        print("  " + report.forward_line(row), flush=True)
        if name == EAGER_FP32 and device.type == "cpu" and allocator.malloc_tuned():
            row = untuned_eager_row(model, args.repeats, reference)
            out["paths"].append(row)
            print("  " + report.forward_line(row), flush=True)
    return out


def untuned_eager_row(model, repeats: int, reference: torch.Tensor) -> dict:
    """Eager fp32 with glibc's malloc defaults (``CAM_MALLOC_TUNING=0``), timed in a child process
    (mallopt cannot be undone in this one: see :mod:`lib.allocator`) on this model's weights; its
    logits beside ours."""
    env = {**os.environ, allocator.ENV: "0"}
    with tempfile.TemporaryDirectory() as tmp:
        logits_file, weights_file = Path(tmp) / "logits.pt", Path(tmp) / "weights.pt"
        torch.save(model.state_dict(), weights_file)  # random-weight models: the child must use the same
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--eager-child", model.name,
                               str(weights_file), str(logits_file), "--repeats", str(repeats)],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            return {"path": EAGER_UNTUNED, "error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}
        row = json.loads(done.stdout.strip().splitlines()[-1])
        logits = torch.load(logits_file)
    row["logit_diff_max"] = float((logits - reference.cpu()).abs().max())
    row["top1_agreement"] = float((logits.argmax(1) == reference.cpu().argmax(1)).float().mean())
    return row


def eager_child(model_name: str, weights_file: str, logits_file: str, repeats: int) -> None:
    """The child of :func:`untuned_eager_row`: save the logits, print the row as JSON."""
    model = load_model(model_name, weights=None, device="cpu")
    model.load_state_dict(torch.load(weights_file))
    images, _, _ = load_images(max(FORWARD_BATCHES), model.preprocess.crop, torch.device("cpu"), model.preprocess)
    row = {"path": EAGER_UNTUNED, "malloc_tuned": allocator.malloc_tuned()}
    start = time.perf_counter()
    with torch.no_grad():
        torch.save(model(images).float(), logits_file)
        row["setup_s"] = time.perf_counter() - start
        for b in FORWARD_BATCHES:
            seconds, _ = timed(lambda: model(images[:b]), torch.device("cpu"), repeats)
            row[f"img_s_batch{b}"] = b / seconds
    print(json.dumps(row))


# ---------------------------------------------------------------------------------------- methods
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



def fmgcam_peer(model, images):
    """The FM-G-CAM authors' library (``xai-inference-engine``), one image per call as it works."""
    from xai_inference_engine.services import FMGCam

    layer = model.get_submodule(model.target_layer)
    generator = FMGCam(model, layer, images.device)

    def run():
        model.requires_grad_(True)
        try:
            for i in range(len(images)):
                generator(images[i], class_count=3)  # it adds the batch dimension itself
                generator.my_queue.get()
        finally:
            model.requires_grad_(False)
            model.zero_grad(set_to_none=True)

    return run


def _peer_installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def our_maps(cam, images, batch_size) -> torch.Tensor:
    return torch.cat([cam(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def _map_diff(maps: torch.Tensor, reference: torch.Tensor) -> float:
    return float((minmax_normalize(maps.float().flatten(0, -3)) - minmax_normalize(reference.float().flatten(0, -3)))
                 .abs().max())


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



def uses_fast_path(cam) -> bool:
    """Whether a method's forward-only passes go through lib.inference (mask-based, no hook)."""
    return isinstance(cam, PerturbationCAM) and not isinstance(cam, AblationCAM)


def bench_methods(model, images, methods, paths, out, args, device) -> list[dict]:
    rows = []
    slow_n = min(args.slow_images, len(images))
    for name in methods:
        probe = get_method(name, model)
        passes = getattr(probe, "forward_passes", 1)
        slow = isinstance(probe, PerturbationCAM)
        x = images[:slow_n] if slow else images
        repeats, warmup = (1, 0) if slow else (args.repeats, 1)
        row = {"method": name, "forward_passes": passes, "images": len(x), "repeats": repeats,
               "fast_path": uses_fast_path(probe)}
        maps = {}
        for path in paths:
            if path.fast and not row["fast_path"]:
                continue  # gradients or hooks: PyTorch on every path, timed once
            kwargs = {"precision": path.precision}
            if slow:
                kwargs.update(batch_size=out["perturbation_batch"], progress=False)
            with path.context():
                cam = get_method(name, model, **kwargs)
                if slow and path.fast:
                    with torch.no_grad():  # export and compile the graph outside the timing
                        path_logits(model, x[:1], path, device)
                result = {}
                seconds, peak = timed(lambda: result.__setitem__("maps", our_maps(cam, x, args.batch_size)),
                                      device, repeats, warmup)
            maps[path.name] = result["maps"]
            limit = out["forward"][path.name]["img_s"] / passes
            row[path.name] = {"img_s": len(x) / seconds, "peak_mib": peak, "limit_img_s": limit,
                              "of_limit": len(x) / seconds / limit}
            if path.name != paths[0].name:
                row[path.name]["diff_max"] = _map_diff(maps[path.name], maps[paths[0].name])
        if name in PEER and not args.no_peer:
            seconds, peak = timed(peer_method(name, model, x, args.batch_size, out["perturbation_batch"]), device,
                                  repeats=repeats, warmup=warmup)
            row["peer"] = {"name": "pytorch-grad-cam", "img_s": len(x) / seconds, "peak_mib": peak}
        elif name == "fmgcam" and not args.no_peer and _peer_installed("xai_inference_engine"):
            seconds, peak = timed(fmgcam_peer(model, x), device, repeats=repeats, warmup=warmup)
            row["peer"] = {"name": "xai-inference-engine", "img_s": len(x) / seconds, "peak_mib": peak}
        rows.append(row)
        print("  " + report.method_line(row, [p.name for p in paths]), flush=True)
    return rows


# ---------------------------------------------------------------------------------------- metrics
def metric_specs(model, images, maps, targets, batch: int):
    """``(name, forward passes per image, fn(precision), values(result) -> [N, ...], unit)``."""
    side = images.shape[-1]
    points = num_points(side * side, 1792)
    hosts = torch.stack([images.roll(k, 0) for k in range(1, 5)], 1)  # 4 other images per image
    return [
        ("AD/IC (100/50/15%)", 4, lambda p: average_drop_increase(
            model, images, maps, targets, batch_size=batch, precision=p),
         lambda r: torch.stack([r["drop"][f] for f in r["fractions"]], 1), "drop, % points"),
        (f"deletion ({points} points)", points, lambda p: deletion_insertion(
            model, images, maps, targets, "deletion", batch_size=batch, precision=p),
         lambda r: r["auc"], "AUC"),
        (f"insertion ({points} points)", points, lambda p: deletion_insertion(
            model, images, maps, targets, "insertion", batch_size=batch, precision=p),
         lambda r: r["auc"], "AUC"),
        ("map density (+/-)", 2, lambda p: map_density(model, images, maps, targets, batch_size=batch, precision=p),
         lambda r: torch.stack([r["score_positive"], r["score_negative"]], 1), "probability"),
        ("adversarial verification (4 hosts)", 5, lambda p: adversarial_verification(
            model, images, maps, targets, hosts, batch_size=batch, precision=p),
         lambda r: r["embedded"], "probability"),
    ]


def bench_metrics(model, images, batch, paths, out, args, device) -> list[dict]:
    """Every metric on Grad-CAM maps of the images, per path, beside the path's forward limit."""
    with torch.no_grad():
        targets = model(images).argmax(1)
    maps = our_maps(get_method("gradcam", model), images, args.batch_size)
    rows = []
    for name, passes, fn, values, unit in metric_specs(model, images, maps, targets, out["perturbation_batch"]):
        row = {"metric": name, "forward_passes": passes, "images": len(images), "fast_path": True, "unit": unit}
        reference = None
        for path in paths:
            result = {}
            with path.context():
                seconds, peak = timed(lambda: result.__setitem__("r", fn(path.precision)), device, args.repeats)
            limit = out["forward"][path.name]["img_s"] / passes
            row[path.name] = {"img_s": len(images) / seconds, "peak_mib": peak, "limit_img_s": limit,
                              "of_limit": len(images) / seconds / limit}
            v = values(result["r"]).float()
            if reference is None:
                reference = v
            else:
                row[path.name]["diff_max"] = float((v - reference).abs().max())
        rows.append(row)
        print("  " + report.method_line(row, [p.name for p in paths]), flush=True)
    eager = paths[0].name
    if batch is not None:
        for name, fn in [("pointing game", lambda: pointing_game(maps, batch.boxes, batch.box_labels, batch.labels)),
                         ("energy pointing game",
                          lambda: energy_pointing_game(maps, batch.boxes, batch.box_labels, batch.labels))]:
            seconds, peak = timed(fn, device, args.repeats)
            rows.append({"metric": name, "forward_passes": 0, "images": len(images), "fast_path": False,
                         eager: {"img_s": len(images) / seconds, "peak_mib": peak}})
    n_sanity = min(len(images), args.batch_size)
    result = {}
    seconds, peak = timed(lambda: result.setdefault("r", cascading_randomization(
        model, lambda m: get_method("gradcam", m), images[:n_sanity], targets[:n_sanity])), device, 1, 0)
    steps = len(result["r"]["layers"])
    limit = out["forward"][eager]["img_s"] / steps  # one forward + backward per step: an upper bound
    rows.append({"metric": f"cascading randomisation, Grad-CAM ({steps} steps)", "forward_passes": steps,
                 "images": n_sanity, "fast_path": False,
                 eager: {"img_s": n_sanity / seconds, "peak_mib": peak, "limit_img_s": limit,
                         "of_limit": n_sanity / seconds / limit}})
    for r in rows[-3:]:
        print("  " + report.method_line(r, [p.name for p in paths]), flush=True)
    return rows


def bench_model(model_name: str, device: torch.device, args, paths: list[InferencePath], methods: list[str]) -> dict:
    weights = "default" if model_name.startswith("efficientnet") else None
    model = load_model(model_name, weights=weights, device=device)
    images, batch, source = load_images(args.images, model.preprocess.crop, device, model.preprocess)
    out = {"model": model_name, "weights": weights or "random", "inputs": source, "images": len(images),
           "batch_size": args.batch_size, "target_layer": model.target_layer,
           "paths": [asdict(p) for p in paths], "forward": {}}
    print(f"{model_name} ({out['weights']} weights, {source}, target layer {model.target_layer})", flush=True)
    for path in paths:
        rate, best, rates = path_forward_limit(model, images, device, path)
        out["forward"][path.name] = {"img_s": rate, "batch": best, "by_batch": rates}
        print(f"  forward {path.name}: {rate:.1f} img/s (batch {best}; "
              + ", ".join(f"{b}: {r:.1f}" for b, r in rates.items()) + ")", flush=True)
    # perturbed inputs and metric forwards run at the library's CPU default unless given
    out["perturbation_batch"] = args.perturbation_batch or (out["forward"][paths[-1].name]["batch"]
                                                            if device.type == "cuda" else 8)
    out["methods"] = bench_methods(model, images, methods, paths, out, args, device)
    if not args.no_metrics:
        out["metrics"] = bench_metrics(model, images, batch, paths, out, args, device)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=["efficientnet_lite0"],
                        help="models whose methods and metrics are timed")
    parser.add_argument("--forward-models", nargs="*", default=["efficientnet_lite0", "efficientnet_lite2", "resnet50"],
                        help="models whose forward paths are compared")
    parser.add_argument("--methods", nargs="+", default=None, help="default: every method in lib.cams.METHODS")
    parser.add_argument("--images", type=int, default=16, help="images for gradient methods and metrics")
    parser.add_argument("--slow-images", type=int, default=None,
                        help="images for mask-based methods (default: 1 on a CPU, --images on CUDA)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per call")
    parser.add_argument("--perturbation-batch", type=int, default=None,
                        help="perturbed inputs per forward of mask-based methods and metrics, ours and the peer's "
                             "(default: 8 on a CPU, the library's default; the best measured batch on CUDA)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the fast path's explicit bf16 option")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile among the forward paths")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--eager-child", nargs=3, metavar=("MODEL", "WEIGHTS", "LOGITS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.eager_child:
        return eager_child(*args.eager_child, args.repeats)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    args.slow_images = args.slow_images or (args.images if cuda else 1)
    methods = args.methods or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; use names from lib.cams.METHODS: {', '.join(METHODS)}")
    paths = library_paths(device, bf16=not args.no_bf16)
    started = time.time()
    results = [bench_model(m, device, args, paths, methods) for m in args.models]
    # Last: torch.compile leaves the process changed (it turns on flush-denormal, which speeds up
    # PyTorch eager on masked inputs by up to 2x), so nothing after it would time eager as users get it.
    forward = [bench_forward_paths(m, device, args) for m in args.forward_models]
    meta = {"device": str(device), "torch": torch.__version__, "platform": platform.platform(),
            "processor": _processor(), "gpu": torch.cuda.get_device_name(device) if cuda else None,
            "threads": torch.get_num_threads(), "paths": [asdict(p) for p in paths],
            "runtimes": _versions(["openvino", "onnxruntime", "grad-cam", "xai-inference-engine"]),
            "seconds": time.time() - started,
            "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "forward_paths": forward, "results": results}
    (out / f"{device.type}.json").write_text(json.dumps(data, indent=2))
    text = report.markdown(data)
    (out / f"{device.type}.md").write_text(text)
    print(text)


def _versions(packages: list[str]) -> dict[str, str | None]:
    import importlib.metadata

    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


if __name__ == "__main__":
    main()
