"""Train AM-Grad-CAM's channel-spatial attention on a frozen classifier (paper 01).

The paper does not say how the attention's MLP and 7x7 conv are obtained.  We train them, as
L-CAM trains its attention, with a faithfulness objective on the *frozen* classifier.  Exactly:

* **Trained**: only the attention (:class:`lib.cams.attention.ChannelSpatialAttention`, MLP with
  reduction 16 and the 7x7 conv).  The MLP's last layer and the conv start at zero, so before
  training the module is Grad-CAM.  The classifier's weights and BatchNorm statistics never change.
* **Objective** per batch, with ``c`` the predicted class (the "model-truth" label, as in L-CAM),
  ``M`` the min-max normalised *low-resolution* AM-Grad-CAM map of ``c`` (``[N, h, w]``), ``up(M)``
  its bilinear upsampling to the image and ``x`` the [0, 1] image (muted pixels are black,
  PROTOCOLS.md's default convention)::

      L = 1.5 * CE(f(x * up(M)), c) + 2 * mean((M + 0.0005) ** 0.3) + 0.01 * TV(M)
      TV(M) = mean((M[i+1, j] - M[i, j]) ** 2) + mean((M[i, j+1] - M[i, j]) ** 2)

  i.e. the mean squared difference of vertically neighbouring cells plus that of horizontally
  neighbouring cells of the low-resolution map; CE is averaged over the batch, the area term over
  all cells.  The constants 1.5 / 2 / 0.01 (and 0.0005, 0.3) are L-CAM's (Eq. 6-8 of that paper):
  the CE term keeps the masked image classified as ``c``, the area term keeps the map small, TV
  keeps it smooth.
* **Optimiser**: Adam, learning rate 1e-3 (``TrainConfig.lr``, ``--lr``), PyTorch's other defaults;
  ``epochs`` passes over the training images in batches of ``batch_size``, in a random order drawn
  every epoch from one generator seeded with ``seed`` (which also seeds the MLP's first layer).
* **Inputs**: because the classifier is frozen and the attention sits after the target layer, the
  Grad-CAM activations and gradients of each training image are computed once (stored as float16,
  the image as 8-bit) and reused every epoch; there is therefore no data augmentation (a random
  crop would change the features).

**This objective is close to the Average Drop metric itself** (paper 01's Eq. 8 on the soft map):
its CE term asks the image multiplied by the map to keep the class, which is what AD of that map
measures.  An AD gain of the trained attention over Grad-CAM is therefore partly by construction;
issue 20 will add a training objective that is not aligned with the metric.

Checkpoints are written atomically (``PATH.partial`` after every epoch, ``PATH`` at the end)
and an interrupted run resumes from ``PATH.partial`` when the configuration matches.

Command line (used by the Snakefile)::

    python -m lib.train_am_gradcam --model efficientnet_lite0 --train-dir imagenet-train-1000 \
        --epochs 3 --images 0 --batch-size 32 --seed 0 --device auto --out results/checkpoints/x.pt
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .process import finish
from .cams.attention import AMGradCAM, ChannelSpatialAttention
from .cams.hooks import forward_with_gradients
from .checkpoints import atomic_save as _atomic_save  # the name tests monkeypatch
from .maps import minmax_normalize, upsample

__all__ = ["TrainConfig", "faithfulness_loss", "precompute", "train_attention", "load_attention", "main"]

log = logging.getLogger(__name__)

CE_WEIGHT, AREA_WEIGHT, TV_WEIGHT = 1.5, 2.0, 0.01  # L-CAM's constants
AREA_OFFSET, AREA_POWER = 0.0005, 0.3


@dataclass
class TrainConfig:
    model: str
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    reduction: int = 16
    images: int = 0  # 0: all


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


def precompute(model: nn.Module, dataset, batch_size: int = 32, desc: str = "Grad-CAM features"):
    """Images (uint8), activations, gradients (float16, CPU) and predicted classes of a dataset."""
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
                    progress: bool = True, chunk: int | None = None) -> tuple[ChannelSpatialAttention, list[dict]]:
    """Train the channel-spatial attention of AM-Grad-CAM; return it and the per-epoch history.

    ``chunk``: images per pass of the classifier (``None``: the whole batch), for the Grad-CAM
    features and for each batch's masked pass (:func:`masked_cross_entropy`). The batch and so the
    training stay ``config.batch_size``; only float rounding and the peak memory depend on it.

    With ``out``, a checkpoint is written atomically to ``out.partial`` after every epoch and to
    ``out`` at the end; an existing ``out.partial`` with the same configuration is resumed.
    """
    device = next(model.parameters()).device
    torch.manual_seed(config.seed)
    images, acts, grads, preds = precompute(model, dataset, chunk or config.batch_size)
    attention = ChannelSpatialAttention(acts.shape[1], config.reduction).to(device)
    optimizer = torch.optim.Adam(attention.parameters(), lr=config.lr)
    history: list[dict] = []
    start = 0
    partial = Path(str(out) + ".partial") if out else None
    if partial is not None and partial.exists():
        state = torch.load(partial, map_location=device, weights_only=False)
        if state["config"] == asdict(config):
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
        attention.train()
        sums = {"loss": 0.0, "ce": 0.0, "area": 0.0, "tv": 0.0}  # device tensors after the first step
        steps = range(0, len(order), config.batch_size)
        bar = tqdm(steps, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress)
        for i in bar:
            idx = order[i : i + config.batch_size]
            x = images[idx].to(device).float() / 255
            low = minmax_normalize(cam.differentiable_maps(acts[idx].to(device).float(), grads[idx].to(device).float()))
            ce, ce_grad = masked_cross_entropy(model, x, low, preds[idx].to(device), chunk)
            terms = faithfulness_terms(ce, low)
            optimizer.zero_grad(set_to_none=True)
            if ce_grad is None:
                terms["loss"].backward()
            else:  # CE's gradient to the maps is known: back-propagate it with the area and TV terms
                (CE_WEIGHT * (low * ce_grad).sum() + AREA_WEIGHT * terms["area"] + TV_WEIGHT * terms["tv"]).backward()
            optimizer.step()
            for key in sums:
                sums[key] = sums[key] + terms[key].detach() * len(idx)
            if (i // config.batch_size) % 10 == 0:  # reading the loss syncs the device: not every step
                bar.set_postfix({k: f"{float(v.detach()):.3f}" for k, v in terms.items()})
        history.append({"epoch": epoch + 1, **{k: float(v) / len(order) for k, v in sums.items()}})
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
        "epoch": epoch,
        "history": history,
    }


def load_attention(path: str | Path, device: str | torch.device = "cpu") -> tuple[ChannelSpatialAttention, dict]:
    """Load a trained attention module and its checkpoint metadata."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No AM-Grad-CAM checkpoint at {path}. Fix: train one with "
            f"`python -m lib.train_am_gradcam --out {path}` (or run the pipeline)."
        )
    state = torch.load(path, map_location=device, weights_only=False)
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
    parser.add_argument("--cpu-chunk", type=int, default=0,
                        help="on a CPU, images per classifier pass inside a batch (0: the whole batch; on a GPU always "
                             "the whole batch). The training stays --batch-size: only float rounding and the peak "
                             "memory change (lib.allocator: fresh memory is slow on VMs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.cpu_chunk < 0:
        raise SystemExit(f"--cpu-chunk {args.cpu_chunk} is negative. Fix: 0 (the whole batch) or images per pass.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    root = split_dir(args.train_dir, args.data_dir or None)
    full = ImageFolder(root, model.preprocess)
    dataset = ImageFolder(root, model.preprocess, ids=seeded_subset(full.ids, args.images, args.seed))
    config = TrainConfig(args.model, args.epochs, args.batch_size, args.lr, args.seed, images=args.images)
    log.info("Training AM-Grad-CAM attention on %d images of %s (%s, %s)", len(dataset), root, args.model, device)
    chunk = args.cpu_chunk if device.type == "cpu" and args.cpu_chunk else None
    _, history = train_attention(model, dataset, config, out=args.out, chunk=chunk)
    for row in history:
        log.info("epoch %(epoch)d: loss %(loss).4f ce %(ce).4f area %(area).4f tv %(tv).4f", row)


if __name__ == "__main__":
    main()
    finish()  # every file is written and closed: skip the interpreter's teardown (lib.process)
