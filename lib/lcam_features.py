"""L-CAM-Fm trained to convergence on cached feature maps (paper 02, Sec. 3.2; issue 20).

L-CAM-Fm's classifier is frozen and its mask multiplies the target layer's feature maps ``A``
(Eq. 4), so for a head made of global average pooling + one linear layer (EfficientNet-Lite,
ResNet) a training step needs only ``A`` and the model-truth label ``y`` of each augmented view:
``u = fc(mean_pq(A * M))`` (:func:`lib.cams.lcam.gap_linear_logits`).  Both are computed **once**
here, for a fixed set of seeded augmented views of every training image, and kept on disk; the
attention then trains on them for as many epochs as it takes, with no backbone pass per step.

**The cache** (:func:`build_feature_cache`, ``python -m lib.lcam_features cache``): a folder with

* ``features.npy``: ``[V + 1, N, K, P, Q]`` feature maps of the target layer, float16 by default
  (``--dtype float32`` keeps full precision; the README of the issue-20 runs gives the measured
  effect of float16 on the trained weights);
* ``targets.npy``: ``[V + 1, N]`` model-truth labels ``argmax f(view)`` from the float32 pass;
* ``meta.json``: model, layer, image ids, views, seed, dtype.

View 0 of each image is its *evaluation* view (the model's own resize + centre crop,
:class:`lib.data.ImageFolder`); views ``1..V`` are the training augmentation of
:mod:`lib.train_lcam` (the authors' ``LoadData.py``: shorter side resized, a random square crop, a
horizontal flip with probability 1/2; :class:`lib.train_lcam.AugmentedFolder`), their parameters
drawn from one generator seeded with ``seed``.  Each image is decoded and resized once for all its
views.  The cache is written into ``OUT.partial/`` image block by image block (a memory-mapped
array and a progress file), so an interrupted build resumes where it stopped, and renamed to
``OUT`` when complete.

**Training** (:func:`train_on_features`, ``python -m lib.lcam_features train``): the paper's loss
and constants exactly as :mod:`lib.train_lcam` (Eq. 6-8 with the authors' offset, border term and
``loss_maps``; :func:`lib.train_lcam.lcam_loss`), the paper's optimiser (SGD, Nesterov momentum 0.9,
weight decay 5e-4, biases at twice the rate) from the CAM start, batch 64.  What changes, and why:

* **Learning rate.** The paper's 1e-4 was set for 1.28 M images over 25 epochs: each class's row
  of the attention is the CE target of about 1280 x 25 = 32,000 images.  With one training image
  per class and ``V`` views, a row is the target of ``V`` views per epoch, thousands of times
  fewer, so at 1e-4 the attention stays at its start (issue 20: one epoch moved it by 1e-5 of its
  norm).  The rate here (``lr``, default 0.1) was chosen on the training sample's validation views
  among 1e-2, 0.1 and 1 (Lite0, 8 views, the full loss): at 1 the losses rose again after a few
  epochs; at 1e-2 the validation loss after 14 epochs was still far above what 0.1 reached in 10;
  0.1 fell steadily and plateaued (notebook 02 shows its curves).
* **Schedule.** The rate is divided by 10 when the validation loss has not improved (by a
  relative ``1e-3``) for ``plateau`` epochs (PyTorch's ``ReduceLROnPlateau``), and training stops
  when it has not improved for ``patience`` epochs or after ``max_epochs``; the checkpoint keeps
  the epoch with the lowest validation loss.  The paper decays by 0.95 per epoch for a fixed 25.
* **Validation.** The training sample holds one image per class, and each class's row of the
  attention is its own parameters: a held-out *image* would be the only image of its class, its
  row would never be a CE target, and its loss would not measure what training changes.  The
  held-out part is therefore view 0 of every training image, the evaluation's centre crop, never
  trained on: it measures whether the attention learnt from random crops holds on the crop the
  evaluation uses.  The evaluation images (``imagenet-val-1300``) are never seen.

Per epoch the history records the training loss terms (means over the epoch's views), the
validation terms on view 0, the own-class mask's mean (the area the AV term shrinks) and total
variation, the relative distance of the weights from the start ``||W - W0|| / ||W0||`` (weights
and biases together), and the mean absolute difference of the min-max normalised low-resolution
maps from the start's, ``mean |zeta(L) - zeta(L0)|`` on view 0 of every image (the map of each
view's model-truth class; ``zeta``: min-max, as at inference).

**Determinism.** Training runs under :func:`lib.determinism.deterministic` with the data order
drawn from ``seed`` every epoch; two runs with the same cache and seed on one machine give the
same weights bit for bit.  Across CPU types float summation order still differs, so the pipeline
trains several seeds and the notebook prints their spread.  The seed sets the epoch order only:
the views are the cache's (seeded by the cache's own seed) and the start is CAM.

Checkpoints are written atomically: ``OUT.partial`` after every epoch (attention, optimiser,
scheduler, best weights, history), ``OUT`` at the end, in the format of
:func:`lib.train_lcam.load_lcam` (which loads them).  A run started again with the same
configuration resumes from ``OUT.partial``.

Command line::

    python -m lib.lcam_features cache --model efficientnet_lite0 --train-dir imagenet-train-1000 \
        --views 8 --seed 0 --out results/cache/lcam_features_efficientnet_lite0
    python -m lib.lcam_features train --cache results/cache/lcam_features_efficientnet_lite0 \
        --seed 0 [--ce-only] --out results/checkpoints/lcam_efficientnet_lite0_fm_full_s0.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .cams.activation import forward_activations
from .cams.lcam import LCAMAttention, check_gap_linear_head, gap_linear_logits
from .checkpoints import atomic_save
from .determinism import deterministic
from .process import finish
from .maps import minmax_normalize
from .train_lcam import (AugmentedFolder, LOSS_MAPS, frozen, lcam_loss, loss_maps, make_optimizer,
                         tv_loss)

__all__ = [
    "FeatureCache",
    "FeatureTrainConfig",
    "build_feature_cache",
    "load_feature_cache",
    "train_on_features",
    "map_distance",
    "weight_distance",
    "main",
]

log = logging.getLogger(__name__)

PLATEAU_THRESHOLD = 1e-3  # relative improvement of the validation loss that counts
DTYPES = {"float16": np.float16, "float32": np.float32}


# --- the cache -------------------------------------------------------------------------------------

@dataclass
class FeatureCache:
    """A loaded cache: ``features [V + 1, N, K, P, Q]`` (float16 or float32), ``targets [V + 1, N]``, ``meta``."""

    features: torch.Tensor
    targets: torch.Tensor
    meta: dict

    @property
    def views(self) -> int:
        """Training views per image (view 0, the evaluation view, not counted)."""
        return self.features.shape[0] - 1


def _view_params(n_images: int, views: int, seed: int) -> torch.Tensor:
    """``[views, n_images, 3]`` crop/flip draws of :class:`AugmentedFolder`, from a generator seeded with ``seed``."""
    return torch.rand(views, n_images, 3, generator=torch.Generator().manual_seed(seed))


def build_feature_cache(model: nn.Module, folder, views: int, seed: int, out: str | Path, *,
                        target_layer: str | None = None, dtype: str = "float16", block: int = 16,
                        chunk: int = 8, progress: bool = True) -> Path:
    """Write the cache of ``folder``'s images (an :class:`lib.data.ImageFolder`) to the folder ``out``.

    Args:
        model: a :class:`lib.models.Classifier` ([0, 1] images in); only forward passes, no gradients.
        views: random training views per image (``>= 1``); view 0, the evaluation view, comes on top.
        seed: seeds the views' crops and flips.
        target_layer: the feature maps' layer (default: the model's CAM layer).
        dtype: ``"float16"`` or ``"float32"`` storage of the feature maps.
        block: images decoded per step (each contributes ``views + 1`` crops).
        chunk: crops per forward pass (small batches run faster on CPUs, where large ones fall out of cache).

    Returns the path ``out``.  Resumes a matching ``out.partial/``; an existing complete ``out`` with
    the same configuration is returned as is.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}. Fix: --views 8 (random crops per image).")
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}. Fix: use one of {sorted(DTYPES)}.")
    out = Path(out)
    layer = target_layer if target_layer is not None else model.target_layer
    meta = {"model": model.name, "layer": layer, "ids": list(folder.ids), "views": int(views), "seed": int(seed),
            "dtype": dtype, "root": str(folder.root)}
    if (out / "meta.json").exists():
        found = json.loads((out / "meta.json").read_text())
        if _same_cache(found, meta):
            log.info("Feature cache %s is complete", out)
            return out
        raise FileExistsError(f"{out} holds a feature cache of another configuration. Fix: delete it or pick "
                              "another --out.")
    partial = Path(str(out) + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    progress_file = partial / "progress.json"
    done = 0
    if progress_file.exists():
        state = json.loads(progress_file.read_text())
        if _same_cache(state["meta"], meta):
            done = int(state["done"])
            log.info("Resuming the feature cache at image %d of %d", done, len(folder))
        else:
            shutil.rmtree(partial)
            partial.mkdir(parents=True)
    device = next(model.parameters()).device
    preprocess = model.preprocess
    augment = AugmentedFolder(folder, preprocess.resize, preprocess.crop, preprocess.interpolation)
    params = _view_params(len(folder), views, seed)
    n = len(folder)
    features = targets = None
    with frozen(model):
        bar = tqdm(total=n, initial=done, desc=f"feature cache ({views + 1} views)", unit="image", disable=not progress)
        for start in range(done, n, block):
            stop = min(start + block, n)
            crops = []  # [views + 1, images, 3, H, W]: view-major within the block
            for i in range(start, stop):
                resized = augment.resized(i)
                crops.append(torch.stack([folder[i].image] + [augment.view(resized, params[v, i])
                                                              for v in range(views)]))
            batch = torch.stack(crops, 1).flatten(0, 1).to(device)
            outputs = [forward_activations(model, part, "predicted", layer) for part in batch.split(chunk)]
            acts = torch.cat([o[0] for o in outputs])
            ids = torch.cat([o[2] for o in outputs])
            acts = acts.unflatten(0, (views + 1, stop - start))
            ids = ids[:, 0].unflatten(0, (views + 1, stop - start))
            if features is None:
                shape = (views + 1, n, *acts.shape[2:])
                mode = "r+" if done else "w+"
                features = np.lib.format.open_memmap(partial / "features.npy", mode=mode, dtype=DTYPES[dtype],
                                                     shape=shape)
                targets = np.lib.format.open_memmap(partial / "targets.npy", mode=mode, dtype=np.int64,
                                                    shape=(views + 1, n))
            features[:, start:stop] = acts.cpu().numpy().astype(DTYPES[dtype])
            targets[:, start:stop] = ids.cpu().numpy()
            features.flush()
            targets.flush()
            _write_json(progress_file, {"meta": meta, "done": stop})
            bar.update(stop - start)
        bar.close()
    del features, targets
    _write_json(partial / "meta.json", meta)
    progress_file.unlink()
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    return out


def _same_cache(a: dict, b: dict) -> bool:
    keys = ("model", "layer", "ids", "views", "seed", "dtype")
    return all(a.get(k) == b.get(k) for k in keys)


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def load_feature_cache(path: str | Path) -> FeatureCache:
    """The cache at ``path`` in memory (feature maps in their stored dtype)."""
    path = Path(path)
    if not (path / "meta.json").exists():
        hint = (" A partial build is at " + str(path) + ".partial: the same `cache` command resumes it."
                if Path(str(path) + ".partial").exists() else "")
        raise FileNotFoundError(f"No feature cache at {path}. Fix: python -m lib.lcam_features cache --out {path} "
                                "(or run the pipeline's lcam_features rule)." + hint)
    meta = json.loads((path / "meta.json").read_text())
    features = torch.from_numpy(np.load(path / "features.npy"))
    targets = torch.from_numpy(np.load(path / "targets.npy"))
    return FeatureCache(features, targets, meta)


# --- training --------------------------------------------------------------------------------------

@dataclass
class FeatureTrainConfig:
    """Everything that determines the trained weights (a resumed run must match it exactly).

    ``lr``: the weights' rate (biases 2x); ``plateau``: epochs without improvement before the rate
    is divided by 10; ``patience``: epochs without improvement before training stops;
    ``max_epochs``: the cap.  ``cache``: the cache's meta (model, views, seed), recorded.
    """

    model: str = "efficientnet_lite0"
    ce_only: bool = False
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    max_epochs: int = 60
    plateau: int = 2
    patience: int = 5
    loss_maps: str = "batch"
    cache_views: int = 0
    cache_seed: int = 0

    def __post_init__(self) -> None:
        if self.loss_maps not in LOSS_MAPS:
            raise ValueError(f"Unknown loss_maps {self.loss_maps!r}. Fix: use 'batch' (the authors' code) or 'own'.")
        for name in ("batch_size", "max_epochs", "plateau", "patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not (self.lr > 0 and 0 <= self.momentum < 1 and self.weight_decay >= 0):
            raise ValueError(f"Bad optimiser settings lr={self.lr}, momentum={self.momentum}, "
                             f"weight_decay={self.weight_decay}. Fix: lr > 0, 0 <= momentum < 1, weight_decay >= 0.")

    @property
    def method(self) -> str:
        return f"L-CAM-Fm{'*' if self.ce_only else ''}"


def weight_distance(attention: LCAMAttention, start: LCAMAttention) -> float:
    """``||theta - theta0|| / ||theta0||`` over the weights and biases together (Frobenius norms)."""
    now = torch.cat([attention.conv.weight.detach().flatten(), attention.conv.bias.detach()])
    then = torch.cat([start.conv.weight.detach().flatten(), start.conv.bias.detach()])
    return float((now - then).norm() / then.norm().clamp_min(1e-12))


def map_distance(attention: LCAMAttention, start: LCAMAttention, features: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
    """Per image ``mean |zeta(L) - zeta(L0)|`` of the target class's min-max normalised low-resolution map.

    ``features [N, K, P, Q]``, ``targets [N]`` -> ``[N]`` in [0, 1] (0: the same map as the start).
    """
    with torch.no_grad():
        now = attention.class_logits(features, targets[:, None])[:, 0]
        then = start.class_logits(features, targets[:, None])[:, 0]
        return (minmax_normalize(now) - minmax_normalize(then)).abs().flatten(1).mean(1)


def _batch_terms(attention, fc, features, targets, config) -> dict[str, torch.Tensor]:
    own, maps = loss_maps(attention, features, targets, config.loss_maps)
    logits = gap_linear_logits(features, own, fc)
    terms = lcam_loss(logits, targets, maps, config.ce_only)
    terms["keep"] = (logits.detach().argmax(1) == targets).float().mean()
    terms["mask_mean"] = own.detach().mean()
    terms["mask_tv"] = tv_loss(own.detach())
    return terms


KEYS = ("loss", "ce", "area", "tv", "keep", "mask_mean", "mask_tv")


def _mean_terms(attention, fc, features, targets, config, start=None) -> dict[str, float]:
    """Means of the loss terms over ``features`` in fixed batches (no gradients); with ``start``, the
    map distance from it too."""
    device = fc.weight.device
    sums = {k: torch.zeros((), dtype=torch.float64, device=device) for k in KEYS}  # read once at the end
    moved = []
    with torch.no_grad():
        for begin in range(0, len(targets), config.batch_size):
            x = features[begin: begin + config.batch_size].to(device, torch.float32)
            y = targets[begin: begin + config.batch_size].to(device)
            terms = _batch_terms(attention, fc, x, y, config)
            for k in KEYS:
                sums[k] += terms[k] * len(y)
            if start is not None:
                moved.append(map_distance(attention, start, x, y))
    row = {k: float(v) / len(targets) for k, v in sums.items()}
    if start is not None:
        row["map_distance"] = float(torch.cat(moved).mean())
    return row


def _validate(attention, start, fc, cache: FeatureCache, config) -> dict[str, float]:
    """The loss terms on view 0 of every image (fixed batches in image order), and the distances."""
    row = _mean_terms(attention, fc, cache.features[0], cache.targets[0], config, start)
    row = {("map_distance" if k == "map_distance" else f"val_{k}"): v for k, v in row.items()}
    row["weight_distance"] = weight_distance(attention, start)
    return row


def train_on_features(model: nn.Module, cache: FeatureCache, config: FeatureTrainConfig,
                      out: str | Path | None = None, *, progress: bool = True
                      ) -> tuple[LCAMAttention, list[dict]]:
    """Train L-CAM-Fm's attention on ``cache`` from the CAM start; return the best attention and the history.

    ``model`` supplies the start (:meth:`LCAMAttention.from_classifier`) and the head ``fc``; it is
    never run on images.  The best epoch (lowest validation loss) is returned and saved to ``out``.

    History rows: ``epoch``, ``lr``, the training means ``loss``, ``ce``, ``area``, ``tv``,
    ``keep``, ``mask_mean``, ``mask_tv``, the same on view 0 as ``val_*``, ``map_distance``,
    ``weight_distance``, ``images`` (views trained on), ``seconds``; plus ``best`` (bool).
    """
    name = getattr(model, "name", config.model)
    if name != config.model or cache.meta.get("model") != name:
        raise ValueError(f"config.model {config.model!r}, the classifier {name!r} and the cache's model "
                         f"{cache.meta.get('model')!r} must agree. Fix: build the cache with --model {name}.")
    layer = cache.meta["layer"]
    device = next(model.parameters()).device
    try:
        fc = check_gap_linear_head(model, layer)
    except ValueError as err:
        raise ValueError(f"Training on cached features needs a GAP + linear head after the target layer. {err} "
                         "Fix: train with `python -m lib.train_lcam --variant fm`, which runs the network.") from err
    partial = Path(str(out) + ".partial") if out is not None else None
    with frozen(model), deterministic(warn_only=device.type == "cuda"):  # CUDA: some ops have no deterministic kernel
        start = LCAMAttention.from_classifier(model, layer).to(device).requires_grad_(False)
        attention = LCAMAttention.from_classifier(model, layer).to(device)
        optimizer = make_optimizer(attention, config)  # the authors' SGD: biases at twice the rate
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.1, patience=config.plateau - 1, threshold=PLATEAU_THRESHOLD)
        history, best_state, first = [], None, 0
        if partial is not None and partial.exists():
            state = torch.load(partial, map_location=device, weights_only=False)
            if state.get("config") == asdict(config):
                attention.load_state_dict(state["state_dict"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                history, best_state, first = state["history"], state["best_state"], int(state["epoch"])
                log.info("Resuming %s from %s (epoch %d)", config.method, partial, first)
            else:
                log.warning("Ignoring %s: written with another configuration", partial)
        train_views = cache.features[1:].flatten(0, 1)  # [V * N, K, P, Q], view-major
        train_targets = cache.targets[1:].flatten()
        if not history:  # epoch 0: the start, on the training views in their stored order and on view 0
            history.append({"epoch": 0, "lr": config.lr, **_mean_terms(attention, fc, train_views, train_targets,
                                                                         config),
                            **_validate(attention, start, fc, cache, config), "images": 0, "seconds": 0.0,
                            "best": True})
            best_state = _copy_state(attention)
            scheduler.step(history[0]["val_loss"])  # the start is the scheduler's first best, as it is ours
        generator = torch.Generator().manual_seed(config.seed)
        for epoch in range(1, config.max_epochs + 1):
            order = torch.randperm(len(train_targets), generator=generator)  # drawn every epoch: resume-safe
            if epoch <= first:
                continue
            if _stopped(history, config):
                break
            lr = optimizer.param_groups[0]["lr"]
            row = _train_epoch(attention, fc, optimizer, train_views, train_targets, order, config, device,
                               desc=f"{config.method} epoch {epoch}", progress=progress)
            row.update(_validate(attention, start, fc, cache, config))
            best = row["val_loss"] < min(h["val_loss"] for h in history) * (1 - PLATEAU_THRESHOLD)
            history.append({"epoch": epoch, "lr": lr, **row, "best": best})
            if best:
                best_state = _copy_state(attention)
            scheduler.step(row["val_loss"])
            log.info("%s epoch %d: lr %.3g loss %.4f val %.4f (ce %.4f area %.4f tv %.2f) map distance %.4f "
                     "weight distance %.4f (%.0f views/s)", config.method, epoch, lr, row["loss"], row["val_loss"],
                     row["val_ce"], row["val_area"], row["val_tv"], row["map_distance"], row["weight_distance"],
                     row["images"] / max(row["seconds"], 1e-9))
            if partial is not None:
                atomic_save(_checkpoint(attention, optimizer, scheduler, best_state, config, epoch, history, layer,
                                        cache), partial)
        attention.load_state_dict(best_state)
        attention.eval()
    if out is not None:
        epoch = history[-1]["epoch"]
        atomic_save(_checkpoint(attention, optimizer, scheduler, best_state, config, epoch, history, layer, cache),
                    Path(out))
        if partial is not None and partial.exists():
            partial.unlink()
    return attention, history


def _stopped(history: list[dict], config: FeatureTrainConfig) -> bool:
    """No improvement of the validation loss in the last ``patience`` epochs."""
    last_best = max(h["epoch"] for h in history if h["best"])
    return history[-1]["epoch"] - last_best >= config.patience


def _copy_state(attention: LCAMAttention) -> dict:
    return {k: v.detach().clone() for k, v in attention.state_dict().items()}


def _train_epoch(attention, fc, optimizer, features, targets, order, config, device, desc, progress) -> dict:
    sums = {k: torch.zeros((), device=device) for k in KEYS}
    start = time.perf_counter()
    attention.train()
    batches = order.split(config.batch_size)
    for idx in tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False):
        x = features[idx].to(device, torch.float32, non_blocking=True)
        y = targets[idx].to(device)
        optimizer.zero_grad(set_to_none=True)
        terms = _batch_terms(attention, fc, x, y, config)
        terms["loss"].backward()
        optimizer.step()
        for k in KEYS:
            sums[k] += terms[k].detach() * len(idx)
    attention.eval()
    n = len(order)
    return {**{k: float(v) / n for k, v in sums.items()}, "images": n, "seconds": time.perf_counter() - start}


def _checkpoint(attention, optimizer, scheduler, best_state, config, epoch, history, layer, cache) -> dict:
    return {
        "state_dict": attention.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "best_state": best_state,
        "channels": attention.channels,
        "num_classes": attention.num_classes,
        "target_layer": layer if isinstance(layer, str) else None,
        "method": config.method,
        "config": asdict(config),
        "cache": {k: v for k, v in cache.meta.items() if k != "ids"},
        "epoch": epoch,
        "history": history,
        "trainer": "lib.lcam_features",
    }


# --- command line ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    from .config import resolve_device, split_dir
    from .data import ImageFolder, seeded_subset
    from .models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("cache", help="compute the feature maps of the training views once")
    build.add_argument("--model", default="efficientnet_lite0")
    build.add_argument("--data-dir", default="")
    build.add_argument("--train-dir", default="imagenet-train-1000")
    build.add_argument("--images", type=int, default=0, help="a seeded subset of the training images (0: all)")
    build.add_argument("--views", type=int, default=8, help="random views per image (plus the evaluation view)")
    build.add_argument("--seed", type=int, default=0, help="seeds the views (and the subset)")
    build.add_argument("--dtype", default="float16", choices=sorted(DTYPES))
    build.add_argument("--device", default="auto")
    build.add_argument("--threads", type=int, default=1, help="torch threads")
    build.add_argument("--out", required=True)
    defaults = FeatureTrainConfig()
    train = sub.add_parser("train", help="train L-CAM-Fm on a cache")
    train.add_argument("--cache", required=True)
    train.add_argument("--ce-only", action="store_true", help="the L-CAM-Fm* ablation: cross-entropy only")
    train.add_argument("--seed", type=int, default=defaults.seed, help="the epochs' data order")
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--max-epochs", type=int, default=defaults.max_epochs)
    train.add_argument("--plateau", type=int, default=defaults.plateau)
    train.add_argument("--patience", type=int, default=defaults.patience)
    train.add_argument("--loss-maps", default=defaults.loss_maps, choices=LOSS_MAPS)
    train.add_argument("--device", default="auto")
    train.add_argument("--threads", type=int, default=1, help="torch threads")
    train.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.command == "cache":
        model = load_model(args.model, device=device)
        root = split_dir(args.train_dir, args.data_dir or None)
        full = ImageFolder(root, model.preprocess)
        folder = ImageFolder(root, model.preprocess, ids=seeded_subset(full.ids, args.images, args.seed))
        log.info("Caching %d views of %d images of %s (%s, %s)", args.views + 1, len(folder), root, args.model, device)
        build_feature_cache(model, folder, args.views, args.seed, args.out, dtype=args.dtype,
                            progress=sys.stderr.isatty())
        return
    cache = load_feature_cache(args.cache)
    model = load_model(cache.meta["model"], device=device)
    config = FeatureTrainConfig(cache.meta["model"], args.ce_only, args.batch_size, args.lr, seed=args.seed,
                                max_epochs=args.max_epochs, plateau=args.plateau, patience=args.patience,
                                loss_maps=args.loss_maps, cache_views=cache.views, cache_seed=cache.meta["seed"])
    log.info("Training %s on %d views of %d images (%s)", config.method, cache.views, cache.features.shape[1], device)
    _, history = train_on_features(model, cache, config, args.out, progress=sys.stderr.isatty())  # logs: epoch lines
    best = min(history, key=lambda h: h["val_loss"])
    log.info("best epoch %d of %d: val loss %.4f, map distance %.4f, weight distance %.4f", best["epoch"],
             history[-1]["epoch"], best["val_loss"], best["map_distance"], best["weight_distance"])


if __name__ == "__main__":
    main()
    finish()  # every file is written and closed: skip the interpreter's teardown (lib.process)
