"""Train AM-Grad-CAM's channel-spatial attention on a frozen classifier (paper 01).

The paper does not say how the attention's MLP and 7x7 conv are obtained.  We train them on the
*frozen* classifier with one of two objectives (``TrainConfig.objective``, ``--objective``).  Common
to both:

* **Trained**: only the attention (:class:`lib.cams.attention.ChannelSpatialAttention`, MLP with
  reduction 16 and the 7x7 conv).  The MLP's last layer and the conv start at zero, so before
  training the module is Grad-CAM.  The classifier's weights and BatchNorm statistics never change.
* ``c`` is the predicted class (the "model-truth" label, as in L-CAM); ``A`` the target layer's
  activations and ``G = dy_c/dA`` their gradients; the attention sees Grad-CAM's features
  ``F = w_k A^k / max|w A|`` (``w_k`` the mean of ``G^k``) and gives the channel weights
  ``M_c = sigmoid(MLP(AvgPool F) + MLP(MaxPool F))`` ``[N, C, 1, 1]`` and the spatial map
  ``M_s = sigmoid(conv7x7([AvgPool_c F'; MaxPool_c F']))`` ``[N, 1, h, w]``, ``F' = M_c F``
  (:mod:`lib.cams.attention`); the explanation is ``ReLU(sum_k M_s M_c F^k)``.
* **Optimiser**: Adam (``torch.optim.Adam``: betas (0.9, 0.999), eps 1e-8, no weight decay),
  learning rate ``TrainConfig.lr`` = 1e-3 (``--lr``), for both objectives; ``epochs`` passes over
  the training images in batches of ``batch_size`` (the last one smaller), in an order drawn every
  epoch by ``torch.randperm`` from a ``torch.Generator`` seeded with ``seed`` (drawn for the epochs
  a resumed run skips too, so a resumed run sees the same orders).
* **Seeds**: ``torch.manual_seed(seed)`` is called after the precomputation (so a pass read from a
  cache and a pass computed here give the same weights); the global generator then serves the
  attention's initialisation, of which only the MLP's first 1x1 conv (weight and bias, PyTorch's
  default initialisation) stays random.
* **Precomputed**: the classifier is frozen and the attention sits after the target layer, so one
  pass over the training images before the first epoch stores each image's activations ``A`` and
  gradients ``G`` (float16, on the CPU), its predicted class ``c`` and the image itself (8-bit:
  ``round(255 x)``); every epoch reuses them, so there is no data augmentation (a random crop would
  change the features) and ``masked-image``'s ``x`` is the 8-bit image divided by 255. The pass
  depends only on the model and the images, so ``--features-cache FILE`` (``precompute(cache=)``)
  keeps it on disk for every objective and seed (the pipeline's rule ``am_features``).

Objective ``"masked-image"`` (the default; L-CAM-Img's loss), per batch, with ``M`` the min-max
normalised *low-resolution* AM-Grad-CAM map of ``c`` (``[N, h, w]``, each map over its own cells;
gradients flow through the normalisation), ``up(M)`` its bilinear upsampling to the image and ``x``
the [0, 1] image (muted pixels are black, PROTOCOLS.md's default convention)::

    L = 1.5 * CE(f(x * up(M)), c) + 2 * mean((M + 0.0005) ** 0.3) + 0.01 * TV(M)
    TV(M) = mean((M[n, i+1, j] - M[n, i, j]) ** 2) + mean((M[n, i, j+1] - M[n, i, j]) ** 2)

i.e. the mean squared difference of vertically neighbouring cells plus that of horizontally
neighbouring cells of the low-resolution maps, each mean over the batch and the cells; CE is
averaged over the batch, the area term over all cells.  The constants 1.5 / 2 / 0.01 (and 0.0005,
0.3) are L-CAM's (Eq. 6-8 of that paper): the CE term keeps the masked image classified as ``c``,
the area term keeps the map small, TV keeps it smooth.  ``f`` is the whole classifier, so every
step runs it forward and backward on the batch (``chunk`` images at a time if asked).
**This objective is close to the Average Drop metric itself** (paper 01's Eq. 8 on the soft map):
its CE term asks the image multiplied by the map to keep the class, which is what AD of that map
measures.  An AD gain of the trained attention over Grad-CAM is therefore partly by construction.

Objective ``"feature-ce"`` (issue 20): the cross-entropy of the classifier's *own head* on the
attention-refined feature maps, which must stay discriminative for ``c``::

    L = CE(fc(GAP(M_s * M_c * A)), c)

with ``fc`` the classifier's final linear layer (weights and bias, frozen) and GAP the mean over
the ``h x w`` cells: :func:`lib.cams.lcam.gap_linear_logits` on ``M_c * A`` and ``M_s``, exact
because the head after the target layer is global average pooling + ``fc`` (checked once with
:func:`lib.cams.lcam.check_gap_linear_head`, which raises for any other head: use
``masked-image`` there).  The gates multiply the *activations* ``A``, which the head reads, with
the ``M_c`` and ``M_s`` computed from ``F`` as above; the attended Grad-CAM features are
``M_s M_c F = (w_k / max|w A|) M_s M_c A``.  CE is averaged over the batch.  It needs the cached
``A``, ``G`` and ``c`` only: no image and no pass of the classifier during training, so an epoch
costs the attention and one matrix product.  **It is not aligned with AD**: it never sees a masked
image (nor any pixel), only feature maps gated in feature space, and has no term on the map's size
or shape.  No regulariser is added: the area term (rewards small maps) and TV (rewards smooth maps)
shape the explanation for the masked image and would bring the AD-like trade-off back; an L2 /
weight-decay term is not needed for stability: every gate is a sigmoid in [0, 1], so the head's
input stays between 0 and ``A`` whatever the weights (large weights only saturate the gates), and
Adam moves each weight by at most about ``lr`` per step.  With the same optimiser, learning rate,
seeds and data, the two objectives differ only in the loss.  At the start both gates are 1/2 (the
head sees ``A / 4``, a higher CE than the classifier's own), so part of what ``feature-ce`` learns
is to open the gates uniformly, which scales the map and leaves its min-max normalised form (the
explanation) unchanged; with every gate at 1 the head gives the classifier's own logits and the
map is Grad-CAM's.  Only gates that differ across channels or cells change the explanation.

**Determinism**: training runs inside :func:`lib.determinism.deterministic`
(``torch.use_deterministic_algorithms(True)``, cuDNN deterministic without benchmarking, cuBLAS's
workspace setting; all restored after).  On a CPU every operation used has a deterministic
implementation and two runs with the same configuration and thread count give bitwise identical
weights (tested).  On CUDA some backward passes have none (bilinear interpolation's, used by
``masked-image``; adaptive average pooling's, if the classifier uses it), so there it is
``warn_only``: those warn and stay nondeterministic.  The command line fixes the thread count
(``--threads``, default 1: ``torch.set_num_threads``), and the data order and initialisation are
seeded (above).  Floating-point summation order still differs across CPU types (vector width,
kernels chosen for the instruction set) and thread counts, so results on another machine differ in
the last bits, and Adam's first steps, which follow the sign of each gradient component, can
amplify that; this is why the pipeline trains several seeds (issue 20) and compares their
spread, not bits.

Checkpoints are written atomically (``PATH.partial`` after every epoch, ``PATH`` at the end) and
hold the configuration (``asdict(TrainConfig)``, the objective included) and the thread count; an
interrupted run resumes from ``PATH.partial`` when the configuration matches.  Checkpoints written
before ``objective`` existed were trained with ``masked-image``, which :func:`load_attention` (and
the resume check) read them as.

Command line (used by the Snakefile)::

    python -m lib.train_am_gradcam --model efficientnet_lite0 --train-dir imagenet-train-1000 \
        --epochs 3 --images 0 --batch-size 32 --seed 0 --device auto --out results/checkpoints/x.pt \
        [--objective masked-image|feature-ce] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .process import finish
from .cams.attention import AMGradCAM, ChannelSpatialAttention, gradcam_features
from .cams.hooks import forward_with_gradients
from .cams.lcam import check_gap_linear_head, gap_linear_logits
from .checkpoints import atomic_save as _atomic_save  # the name tests monkeypatch
from .determinism import deterministic
from .maps import minmax_normalize, upsample

__all__ = ["OBJECTIVES", "TrainConfig", "faithfulness_loss", "feature_cross_entropy", "gated_activations", "precompute",
           "train_attention", "load_attention", "main"]

log = logging.getLogger(__name__)

CE_WEIGHT, AREA_WEIGHT, TV_WEIGHT = 1.5, 2.0, 0.01  # L-CAM's constants
AREA_OFFSET, AREA_POWER = 0.0005, 0.3
OBJECTIVES = ("masked-image", "feature-ce")  # the first is the default (and that of checkpoints without the field)
TERMS = {"masked-image": ("loss", "ce", "area", "tv"), "feature-ce": ("loss", "ce")}  # per-epoch history columns


@dataclass
class TrainConfig:
    model: str
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    reduction: int = 16
    images: int = 0  # 0: all
    objective: str = OBJECTIVES[0]  # "masked-image" (L-CAM-Img's loss) or "feature-ce" (the head on gated features)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"Unknown AM-Grad-CAM training objective {self.objective!r}. "
                             f"Fix: one of {', '.join(OBJECTIVES)}.")


def _with_defaults(config: dict) -> dict:
    """A checkpoint's configuration with the fields it predates filled in (``objective``: masked-image)."""
    return {"objective": OBJECTIVES[0], **config}


def total_variation(maps: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between horizontally and vertically neighbouring cells, ``[N, h, w]`` -> scalar."""
    dh = (maps[:, 1:, :] - maps[:, :-1, :]).pow(2).mean()
    dw = (maps[:, :, 1:] - maps[:, :, :-1]).pow(2).mean()
    return dh + dw


def faithfulness_loss(logits: torch.Tensor, targets: torch.Tensor, maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three terms and their weighted sum, for maps ``[N, h, w]`` in [0, 1]."""
    return faithfulness_terms(F.cross_entropy(logits, targets), maps)


def faithfulness_terms(ce: torch.Tensor, maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """The weighted sum of a batch's cross-entropy ``ce`` and the area and TV terms of its maps ``[N, h, w]``."""
    area = (maps + AREA_OFFSET).pow(AREA_POWER).mean()
    tv = total_variation(maps)
    return {"loss": CE_WEIGHT * ce + AREA_WEIGHT * area + TV_WEIGHT * tv, "ce": ce, "area": area, "tv": tv}


def masked_cross_entropy(model: nn.Module, x: torch.Tensor, low: torch.Tensor, targets: torch.Tensor,
                         chunk: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch's cross-entropy on the images masked by their upsampled maps ``low`` ``[N, h, w]``.

    With ``chunk`` below the batch, the classifier sees ``chunk`` images at a time and the function
    returns the (detached) batch mean and its gradient to ``low``, accumulated chunk by chunk with
    ``torch.autograd.grad``: the same gradient as the whole batch's up to float rounding, at a
    fraction of the peak memory. Otherwise ``(ce, None)`` with ``ce`` in the graph.
    """
    if not chunk or chunk >= len(x):
        return F.cross_entropy(model(x * upsample(low, tuple(x.shape[-2:])).unsqueeze(1)), targets), None
    total, grads = torch.zeros((), device=x.device), []
    for part in torch.arange(len(x), device=x.device).split(chunk):
        leaf = low[part].detach().requires_grad_()
        logits = model(x[part] * upsample(leaf, tuple(x.shape[-2:])).unsqueeze(1))
        ce = F.cross_entropy(logits, targets[part], reduction="sum") / len(x)
        grads.append(torch.autograd.grad(ce, leaf)[0])
        total = total + ce.detach()
    return total, torch.cat(grads)


def gated_activations(attention: ChannelSpatialAttention, activations: torch.Tensor,
                      gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M_c * A, M_s)``: activations ``A [N, C, h, w]`` gated by the channel weights; spatial map ``[N, h, w]``.

    ``M_c`` and ``M_s`` are the attention's own gates, computed exactly as in its forward pass from
    Grad-CAM's features ``F`` of ``A`` and ``gradients`` (``F' = M_c F``, ``M_s`` from ``F'``), so
    ``attention(F) = (w_k / max|w A|) * M_s * M_c * A``; the classifier's head reads ``M_s * M_c * A``.
    """
    feats = gradcam_features(activations, gradients)
    channel = attention.channel(feats)  # [N, C, 1, 1]
    spatial = attention.spatial(channel * feats)  # [N, 1, h, w]
    return channel * activations, spatial[:, 0]


def feature_cross_entropy(attention: ChannelSpatialAttention, activations: torch.Tensor, gradients: torch.Tensor,
                          targets: torch.Tensor, fc: nn.Linear) -> torch.Tensor:
    """Objective ``feature-ce``: ``CE(fc(GAP(M_s * M_c * A)), c)``, averaged over the batch.

    ``fc`` is the classifier's final linear layer after a global-average-pooling head
    (:func:`lib.cams.lcam.check_gap_linear_head`); :func:`lib.cams.lcam.gap_linear_logits` applies it.
    """
    gated, spatial = gated_activations(attention, activations, gradients)
    return F.cross_entropy(gap_linear_logits(gated, spatial, fc), targets)


def _head(model: nn.Module) -> nn.Linear:
    """The final linear layer of a GAP + linear head, or a ValueError naming the fix."""
    try:
        return check_gap_linear_head(model)
    except ValueError as err:
        detail = err.__cause__ or err
        raise ValueError(f"AM-Grad-CAM objective 'feature-ce' applies the classifier's head in closed form, which "
                         f"needs global average pooling + one linear layer after the target layer. {detail} "
                         "Fix: train with --objective masked-image (TrainConfig(objective='masked-image')), "
                         "which works on any head.") from err


def precompute(model: nn.Module, dataset, batch_size: int = 32, desc: str = "Grad-CAM features",
               cache: str | Path | None = None):
    """Images (uint8), activations, gradients (float16, CPU) and predicted classes of a dataset.

    ``cache``: a file holding them for this model, these images and this batch size (the batches set
    the float rounding), read when it matches and else computed and written there atomically, so that
    the trainings of both objectives and every seed share one pass (rule ``am_features``). A file that
    does not match is left as it is (the pass is computed and not written).
    """
    meta = {"model": getattr(model, "name", None), "ids": list(getattr(dataset, "ids", [])), "batch_size": batch_size,
            "root": str(getattr(dataset, "root", ""))}
    if cache is not None and Path(cache).exists():
        state = torch.load(cache, map_location="cpu", weights_only=False)
        if state.get("meta") == meta:
            log.info("Grad-CAM features of %d images read from %s", len(meta["ids"]), cache)
            return state["images"], state["acts"], state["grads"], state["preds"]
        log.warning("Ignoring %s: written for other images, model or batch size", cache)
    result = _precompute(model, dataset, batch_size, desc)
    if cache is not None and not Path(cache).exists():
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"meta": meta, **dict(zip(("images", "acts", "grads", "preds"), result))}, Path(cache))
    return result


def _precompute(model: nn.Module, dataset, batch_size: int, desc: str):
    from .data import collate_samples

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    device = next(model.parameters()).device
    images, acts, grads, preds = [], [], [], []
    for batch in tqdm(loader, desc=desc, unit="batch"):
        x = batch.images.to(device)
        cap = forward_with_gradients(model, x, "predicted")
        images.append((x * 255).round().to(torch.uint8).cpu())
        acts.append(cap.activations.half().cpu())
        grads.append(cap.gradients[0].half().cpu())
        preds.append(cap.targets[:, 0].cpu())
    return torch.cat(images), torch.cat(acts), torch.cat(grads), torch.cat(preds)


def train_attention(model: nn.Module, dataset, config: TrainConfig, out: str | Path | None = None,
                    progress: bool = True, chunk: int | None = None, features_cache: str | Path | None = None
                    ) -> tuple[ChannelSpatialAttention, list[dict]]:
    """Train the channel-spatial attention of AM-Grad-CAM; return it and the per-epoch history.

    ``config.objective`` chooses the loss (module docstring): ``"masked-image"`` or ``"feature-ce"``.
    The whole run (precomputation included) is inside :func:`lib.determinism.deterministic`
    (``warn_only`` on CUDA, where some backward passes have no deterministic implementation).

    ``chunk``: images per pass of the classifier (``None``: the whole batch), for the Grad-CAM
    features and for each batch's masked pass (:func:`masked_cross_entropy`). The batch and so the
    training stay ``config.batch_size``; only float rounding and the peak memory depend on it.

    With ``out``, a checkpoint is written atomically to ``out.partial`` after every epoch and to
    ``out`` at the end; an existing ``out.partial`` with the same configuration is resumed.
    ``features_cache``: the file of :func:`precompute`'s pass, shared by trainings on the same images.
    """
    device = next(model.parameters()).device
    with deterministic(warn_only=device.type == "cuda"):
        return _train(model, dataset, config, out, progress, chunk, device, features_cache)


def _train(model, dataset, config, out, progress, chunk, device, features_cache=None
           ) -> tuple[ChannelSpatialAttention, list[dict]]:
    fc = _head(model) if config.objective == "feature-ce" else None  # checked before the long precomputation
    images, acts, grads, preds = precompute(model, dataset, chunk or config.batch_size, cache=features_cache)
    torch.manual_seed(config.seed)  # after the pass (its loader draws from the global generator), cached or not
    attention = ChannelSpatialAttention(acts.shape[1], config.reduction).to(device)
    optimizer = torch.optim.Adam(attention.parameters(), lr=config.lr)
    history: list[dict] = []
    start = 0
    partial = Path(str(out) + ".partial") if out else None
    if partial is not None and partial.exists():
        state = torch.load(partial, map_location=device, weights_only=False)
        if _with_defaults(state["config"]) == asdict(config):
            attention.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            history, start = state["history"], state["epoch"]
            log.info("Resuming AM-Grad-CAM training from %s (epoch %d of %d)", partial, start, config.epochs)
        else:
            log.warning("Ignoring %s: it was written with another configuration", partial)
    cam = AMGradCAM(model, attention)
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(config.epochs):
        order = torch.randperm(len(images), generator=generator)  # drawn every epoch: resume-safe
        if epoch < start:
            continue
        began = time.perf_counter()
        attention.train()
        sums = dict.fromkeys(TERMS[config.objective], 0.0)  # device tensors after the first step
        steps = range(0, len(order), config.batch_size)
        bar = tqdm(steps, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress)
        for i in bar:
            idx = order[i : i + config.batch_size]
            if config.objective == "feature-ce":
                ce = feature_cross_entropy(attention, acts[idx].to(device).float(), grads[idx].to(device).float(),
                                           preds[idx].to(device), fc)
                terms = {"loss": ce, "ce": ce}
                optimizer.zero_grad(set_to_none=True)
                ce.backward()
            else:
                x = images[idx].to(device).float() / 255
                low = minmax_normalize(cam.differentiable_maps(acts[idx].to(device).float(),
                                                               grads[idx].to(device).float()))
                ce, ce_grad = masked_cross_entropy(model, x, low, preds[idx].to(device), chunk)
                terms = faithfulness_terms(ce, low)
                optimizer.zero_grad(set_to_none=True)
                if ce_grad is None:
                    terms["loss"].backward()
                else:  # CE's gradient to the maps is known: back-propagate it with the area and TV terms
                    (CE_WEIGHT * (low * ce_grad).sum() + AREA_WEIGHT * terms["area"]
                     + TV_WEIGHT * terms["tv"]).backward()
            optimizer.step()
            for key in sums:
                sums[key] = sums[key] + terms[key].detach() * len(idx)
            if (i // config.batch_size) % 10 == 0:  # reading the loss syncs the device: not every step
                bar.set_postfix({k: f"{float(v.detach()):.3f}" for k, v in terms.items()})
        history.append({"epoch": epoch + 1, **{k: float(v) / len(order) for k, v in sums.items()}})
        seconds = time.perf_counter() - began
        log.info("epoch %d/%d (%s): %s; %.2f s (%.1f images/s)", epoch + 1, config.epochs, config.objective,
                 " ".join(f"{k} {v:.4f}" for k, v in history[-1].items() if k != "epoch"), seconds,
                 len(order) / max(seconds, 1e-9))
        attention.eval()
        if partial is not None:
            _atomic_save(_checkpoint(attention, optimizer, config, epoch + 1, history), partial)
    attention.eval()
    if out is not None:
        _atomic_save(_checkpoint(attention, optimizer, config, config.epochs, history), Path(out))
        if partial is not None and partial.exists():
            partial.unlink()
    return attention, history


def _checkpoint(attention, optimizer, config, epoch, history) -> dict:
    return {
        "state_dict": attention.state_dict(),
        "optimizer": optimizer.state_dict(),
        "channels": attention.channels,
        "reduction": attention.reduction,
        "config": asdict(config),
        "threads": torch.get_num_threads(),  # results depend on it in the last bits (module docstring)
        "epoch": epoch,
        "history": history,
    }


def load_attention(path: str | Path, device: str | torch.device = "cpu") -> tuple[ChannelSpatialAttention, dict]:
    """Load a trained attention module and its checkpoint metadata.

    ``state["config"]["objective"]`` is ``"masked-image"`` for checkpoints written before the field
    existed (they were all trained with it).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No AM-Grad-CAM checkpoint at {path}. Fix: train one with "
            f"`python -m lib.train_am_gradcam --out {path}` (or run the pipeline)."
        )
    state = torch.load(path, map_location=device, weights_only=False)
    if isinstance(state.get("config"), dict):
        state["config"] = _with_defaults(state["config"])
    attention = ChannelSpatialAttention(state["channels"], state["reduction"], zero_init=False)
    attention.load_state_dict(state["state_dict"])
    return attention.to(device).eval(), state


def main(argv: list[str] | None = None) -> None:
    from .config import resolve_device, split_dir
    from .data import ImageFolder, seeded_subset
    from .models import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--train-dir", default="imagenet-train-1000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=0, help="0: every training image")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--objective", choices=OBJECTIVES, default=OBJECTIVES[0],
                        help="training objective (module docstring): masked-image = L-CAM-Img's loss on the image "
                             "multiplied by the map (close to Average Drop); feature-ce = CE of the classifier's "
                             "GAP + linear head on the attention-gated activations (no image, not aligned with AD)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (torch.set_num_threads); results depend on it in the last bits")
    parser.add_argument("--cpu-chunk", type=int, default=0,
                        help="on a CPU, images per classifier pass inside a batch (0: the whole batch; on a GPU always "
                             "the whole batch). The training stays --batch-size: only float rounding and the peak "
                             "memory change (lib.allocator: fresh memory is slow on VMs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--features-cache", default=None,
                        help="file of the Grad-CAM features of the training images, shared by trainings (read when "
                             "it matches, else written)")
    parser.add_argument("--precompute-only", action="store_true",
                        help="only write --features-cache (the pipeline's am_features rule), no training")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.precompute_only and not args.features_cache:
        raise SystemExit("--precompute-only writes --features-cache. Fix: give --features-cache PATH.")
    if not args.precompute_only and not args.out:
        raise SystemExit("--out is required (the checkpoint to write). Fix: --out results/checkpoints/am.pt.")
    if args.cpu_chunk < 0:
        raise SystemExit(f"--cpu-chunk {args.cpu_chunk} is negative. Fix: 0 (the whole batch) or images per pass.")
    if args.threads < 1:
        raise SystemExit(f"--threads {args.threads} is below 1. Fix: a positive number of torch threads (default 1).")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    root = split_dir(args.train_dir, args.data_dir or None)
    full = ImageFolder(root, model.preprocess)
    dataset = ImageFolder(root, model.preprocess, ids=seeded_subset(full.ids, args.images, args.seed))
    config = TrainConfig(args.model, args.epochs, args.batch_size, args.lr, args.seed, images=args.images,
                         objective=args.objective)
    log.info("Training AM-Grad-CAM attention (objective %s) on %d images of %s (%s, %s, %d threads)", args.objective,
             len(dataset), root, args.model, device, torch.get_num_threads())
    chunk = args.cpu_chunk if device.type == "cpu" and args.cpu_chunk else None
    if args.precompute_only:
        precompute(model, dataset, chunk or config.batch_size, cache=args.features_cache)
        return
    train_attention(model, dataset, config, out=args.out, chunk=chunk,  # logs every epoch's terms and seconds
                    features_cache=args.features_cache)


if __name__ == "__main__":
    main()
    finish()  # every file is written and closed: skip the interpreter's teardown (lib.process)
