"""Train L-CAM's attention (L-CAM-Img or L-CAM-Fm) on a frozen classifier (paper 02, Sec. 3.2, 4.2).

Only the attention :class:`lib.cams.lcam.LCAMAttention` (a 1x1 convolution, Eq. 3) learns; the
classifier stays in eval mode (BatchNorm statistics and dropout frozen) and its parameters get no
gradients (their ``requires_grad`` flags are switched off for the run and restored after).  One
training step on a batch ``x`` of augmented ``[0, 1]`` images:

1. one forward pass without gradients gives the target layer's feature maps ``A`` and the
   *model-truth* labels ``y = argmax f(x)`` (Sec. 3.1: the classifier's top-1 class on the
   unmasked, augmented image);
2. ``M = sigma(W_y . A + b_y)``, the mask of each image's class (Eq. 3);
3. L-CAM-Img: ``u = f(x * up(M))`` (Eq. 5, :func:`lib.cams.lcam.lcam_img_logits`); L-CAM-Fm:
   ``u = head(A * M)`` (Eq. 4, :func:`lib.cams.lcam.lcam_fm_logits`, or the closed form
   :func:`lib.cams.lcam.gap_linear_logits` when the head is global average pooling + linear);
4. the loss of Eq. 6 (:func:`lcam_loss`), one SGD step on the attention.

The loss (Eq. 6-8), exactly as implemented (:func:`lcam_loss`)::

    loss = 1.5 * CE(u, y) + 2 * AV(S) + 0.01 * TV(S)          (ce_only: loss = CE(u, y))
    CE   = mean over the B images of -log softmax(u)_y
    AV   = mean over every cell of S of (s + 0.0005) ** 0.3
    TV   = ( sum (s[p+1, q] - s[p, q])**2 + sum (s[p, q+1] - s[p, q])**2
             + 0.3 * sum over the 4 border lines of s**2 ) / (2 * B)

with ``S = [B, J, P, Q]`` the *low-resolution* sigmoid maps (P x Q = the feature maps' size, never
the upsampled mask), sums over all of ``S``, corners counted twice in the border sum (once per
line), and ``B`` the number of images.  Sources:

* lambda_1 = 0.01 (TV), lambda_2 = 2 (AV), lambda_3 = 1.5 (CE), lambda_4 = 0.3 (the power in AV):
  the paper, Sec. 4.2, and the authors' code (``smoothness_loss_coef``, ``area_loss_coef``,
  ``ce_coef``, ``area_loss_power``).
* The offset 0.0005 inside the power (Eq. 7 has none): the authors' code ("prevent nan", the
  derivative of ``s ** 0.3`` is infinite at 0).
* TV as squared differences (Eq. 8) plus a border term 0.3 * s**2 on the first and last row and
  column, divided by ``power * B = 2 * B``: the authors' ``smoothness_loss(masks, power=2,
  border_penalty=0.3)`` (after Dabkowski & Gal's real-time saliency code, the paper's ref. [9]).
  Eq. 8 itself has neither the border term nor the normalisation.
* Which maps ``S`` holds (``loss_maps``):

  - ``"batch"`` (default, the authors' code): their training loop calls ``get_a(labels)``, i.e.
    ``a[:, labels]`` with the batch's label *vector*, so ``S[i, j] = sigma(L^(y_j))`` of image
    ``i`` for every label ``y_j`` of the batch: ``B x B`` maps, ``J = B``.  AV averages all of
    them; TV sums all of them and divides by ``2 B``.  The constants above were tuned with this.
    It also pushes each batch class's map down on the other images of the batch, and makes the
    weight of TV relative to AV grow with the batch size.
  - ``"own"``: Eq. 6-8 read per image, ``S[i, 0] = sigma(L^(y_i))`` of image ``i`` only (``J = 1``).

  Either way the mask that multiplies the image or the feature maps is each image's own map.
* CE-only ablation (L-CAM*, ``ce_only=True``): plain ``CE(u, y)`` with weight 1, as the authors'
  ``*A`` models (``get_loss`` returns the cross-entropy alone); AV and TV are still computed and
  reported, not optimised.

Training schedule (Sec. 4.2, PROTOCOLS.md, the authors' ``my_optim.py``): SGD with Nesterov
momentum 0.9 and weight decay 5e-4 (on weights and bias), learning rate 1e-4 for the weights and
2e-4 for the bias, multiplied by ``lr_decay ** epoch`` at the start of every epoch (0.95 for
ResNet-50, 0.75 for VGG-16; epochs: the paper says 25 and 7, PROTOCOLS.md 26 and 8; the authors'
ResNet-50 ``reduce_lr`` stops decaying after epoch 12, we decay every epoch as the paper says),
batch 64.  Augmentation (the authors'
``LoadData.py``): the shorter side resized to the model's ``preprocess.resize`` (256; 292 for
Lite2) with its interpolation, a random ``preprocess.crop`` square (224; 260) and a horizontal flip
with probability 1/2 (torchvision's functional transforms on the ``[0, 1]`` tensor).  Crops, flips
and the image order come from a generator seeded by ``seed`` and drawn afresh every epoch, so a
run is reproducible and a resumed run draws exactly what an uninterrupted one would.

Differences from the authors' setup: the attention can start from the classifier's own linear
layer (``init="cam"``, the default here, PROTOCOLS.md) instead of PyTorch's default
initialisation (``init="random"``); the classifier runs in eval mode (the authors' VGG-16 loop
left its classifier's dropout active); the training images are a small folder
(``imagenet-train-1000``) instead of ImageNet's 1.28 M.

Checkpoints are written atomically (:func:`lib.checkpoints.atomic_save`): ``OUT.partial`` after
every epoch (attention, optimizer, configuration, per-epoch history), ``OUT`` at the end; an
interrupted run started again with the same configuration resumes from ``OUT.partial`` and ends
with the same weights as an uninterrupted one.

Command line::

    python -m lib.train_lcam --model efficientnet_lite0 --variant img --epochs 3 --images 0 \
        --train-dir imagenet-train-1000 --device auto --out results/checkpoints/lcam-img.pt
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from .process import finish
from .cams.activation import forward_activations
from .cams.lcam import (
    LCAMAttention,
    check_gap_linear_head,
    gap_linear_logits,
    lcam_fm_logits,
    lcam_img_logits,
    probe_images,
)
from .checkpoints import atomic_save

__all__ = [
    "LCAMConfig",
    "AugmentedFolder",
    "area_loss",
    "tv_loss",
    "lcam_loss",
    "loss_maps",
    "lcam_step",
    "lcam_backward",
    "make_attention",
    "make_optimizer",
    "train_lcam",
    "load_lcam",
    "main",
]

log = logging.getLogger(__name__)

CE_WEIGHT, AREA_WEIGHT, TV_WEIGHT = 1.5, 2.0, 0.01  # lambda_3, lambda_2, lambda_1 (Sec. 4.2)
AREA_POWER, AREA_OFFSET = 0.3, 0.0005  # lambda_4 (Eq. 7); the offset is the authors' code's
TV_POWER, TV_BORDER = 2, 0.3  # Eq. 8's square; the border penalty is the authors' code's
BIAS_LR_FACTOR = 2.0  # the authors' my_optim.py: biases at twice the learning rate
VARIANTS = ("img", "fm")
INITS = ("cam", "random")
LOSS_MAPS = ("batch", "own")
LOG_EVERY = 10  # steps between reads of the loss values (each read waits for the device)


@dataclass
class LCAMConfig:
    """Everything that determines the trained weights (a resumed run must match it exactly).

    ``variant``: ``"img"`` (L-CAM-Img) or ``"fm"`` (L-CAM-Fm).  ``ce_only``: the L-CAM* ablation.
    ``epochs``: paper 25 (ResNet-50) / 7 (VGG-16); PROTOCOLS.md 26 / 8.  ``lr_decay``: per-epoch factor, 0.95 for
    ResNet-50-like classifiers, 0.75 for VGG-16.  ``images``: how many training images (a seeded
    subset), 0 for all.  ``init``: ``"cam"`` (rows from the classifier's linear layer) or
    ``"random"`` (PyTorch's default initialisation, seeded).  ``loss_maps``: which maps the AV and
    TV terms see (module docstring): ``"batch"`` (authors' code) or ``"own"``.
    """

    model: str = "efficientnet_lite0"
    variant: str = "img"
    ce_only: bool = False
    epochs: int = 25
    batch_size: int = 64
    lr: float = 1e-4
    lr_decay: float = 0.95
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    images: int = 0
    init: str = "cam"
    loss_maps: str = "batch"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown L-CAM variant {self.variant!r}. Fix: use 'img' (L-CAM-Img) or 'fm' (L-CAM-Fm).")
        if self.init not in INITS:
            raise ValueError(f"Unknown init {self.init!r}. Fix: use 'cam' (rows from the classifier's linear "
                             "layer) or 'random'.")
        if self.loss_maps not in LOSS_MAPS:
            raise ValueError(f"Unknown loss_maps {self.loss_maps!r}. Fix: use 'batch' (the authors' code) or 'own'.")
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.images < 0:
            raise ValueError(f"images must be >= 0 (0: all), got {self.images}.")
        if not (self.lr > 0 and 0 < self.lr_decay <= 1 and 0 <= self.momentum < 1 and self.weight_decay >= 0):
            raise ValueError(f"Bad optimiser settings lr={self.lr}, lr_decay={self.lr_decay}, momentum={self.momentum}, "
                             f"weight_decay={self.weight_decay}. Fix: lr > 0, 0 < lr_decay <= 1, 0 <= momentum < 1, "
                             "weight_decay >= 0.")

    @property
    def method(self) -> str:
        """The paper's name of what this configuration trains, e.g. ``"L-CAM-Img"`` or ``"L-CAM-Fm*"``."""
        return f"L-CAM-{'Img' if self.variant == 'img' else 'Fm'}{'*' if self.ce_only else ''}"


# --- the loss (Eq. 6-8) ----------------------------------------------------------------------------

def _as_4d(masks: torch.Tensor) -> torch.Tensor:
    if masks.ndim == 3:
        return masks.unsqueeze(1)
    if masks.ndim != 4:
        raise ValueError(f"masks must be [B, P, Q] or [B, J, P, Q], got {tuple(masks.shape)}.")
    return masks


def area_loss(masks: torch.Tensor) -> torch.Tensor:
    """AV (Eq. 7 with the authors' offset): ``mean((s + 0.0005) ** 0.3)`` over every cell of every map."""
    return (masks + AREA_OFFSET).pow(AREA_POWER).mean()


def tv_loss(masks: torch.Tensor) -> torch.Tensor:
    """TV (Eq. 8 + the authors' border term and normalisation) of ``[B, P, Q]`` or ``[B, J, P, Q]`` maps.

    ``(sum dP**2 + sum dQ**2 + 0.3 * sum(first/last row and column)**2) / (2 * B)``, ``B = masks.shape[0]``.
    """
    m = _as_4d(masks)
    dp = (m[:, :, 1:, :] - m[:, :, :-1, :]).pow(TV_POWER).sum()
    dq = (m[:, :, :, 1:] - m[:, :, :, :-1]).pow(TV_POWER).sum()
    border = (m[:, :, 0, :].pow(TV_POWER).sum() + m[:, :, -1, :].pow(TV_POWER).sum()
              + m[:, :, :, 0].pow(TV_POWER).sum() + m[:, :, :, -1].pow(TV_POWER).sum())
    return (dp + dq + TV_BORDER * border) / (TV_POWER * m.shape[0])


def lcam_loss(logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor,
              ce_only: bool = False) -> dict[str, torch.Tensor]:
    """Eq. 6: ``{"loss", "ce", "area", "tv"}`` (unweighted terms and the weighted total) as device scalars.

    ``logits [B, R]`` of the masked input, ``targets [B]`` the model-truth labels, ``masks`` the
    sigmoid maps the AV/TV terms see (``[B, P, Q]`` or ``[B, J, P, Q]``, see :func:`loss_maps`).
    ``loss = 1.5 ce + 2 area + 0.01 tv``, or ``ce`` alone with ``ce_only`` (L-CAM*).
    """
    ce = F.cross_entropy(logits.float(), targets)
    area = area_loss(masks)
    tv = tv_loss(masks)
    total = ce if ce_only else CE_WEIGHT * ce + AREA_WEIGHT * area + TV_WEIGHT * tv
    return {"loss": total, "ce": ce, "area": area, "tv": tv}


def loss_maps(attention: LCAMAttention, features: torch.Tensor, targets: torch.Tensor,
              mode: str = "batch") -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's own mask ``[B, P, Q]`` and the maps the loss sees ``[B, J, P, Q]`` (all sigmoid).

    ``"own"``: ``J = 1``, ``S[i, 0] = sigma(L^(y_i))(A_i)``.  ``"batch"`` (authors' code):
    ``J = B``, ``S[i, j] = sigma(L^(y_j))(A_i)``; the own masks are its diagonal.
    """
    if mode not in LOSS_MAPS:
        raise ValueError(f"Unknown loss_maps {mode!r}. Fix: use 'batch' or 'own'.")
    if mode == "own":
        maps = torch.sigmoid(attention.class_logits(features, targets[:, None]))
        return maps[:, 0], maps
    maps = torch.sigmoid(attention.class_logits(features, targets))  # the batch's labels for every image
    own = maps.diagonal(dim1=0, dim2=1).permute(2, 0, 1)  # [B, P, Q]: S[i, i]
    return own, maps


def lcam_step(model: nn.Module, attention: LCAMAttention, images: torch.Tensor, config: LCAMConfig,
              target_layer: str | nn.Module | None = None, fc: nn.Linear | None = None) -> dict[str, torch.Tensor]:
    """Forward of one training step (no optimiser step): the loss terms plus ``"keep"``.

    ``keep`` is the fraction of images whose masked input is still classified as ``y`` (detached).
    ``fc``: the head's linear layer when the head is GAP + linear (L-CAM-Fm then uses the closed
    form and runs the backbone once); ``None`` uses the forward hook.
    """
    features, targets = _clean_pass(model, images, target_layer, None)
    own, maps = loss_maps(attention, features, targets, config.loss_maps)
    logits = _masked_logits(model, images, own, features, config.variant, target_layer, fc)
    terms = lcam_loss(logits, targets, maps, config.ce_only)
    terms["keep"] = (logits.detach().argmax(1) == targets).float().mean()
    return terms


def lcam_backward(model: nn.Module, attention: LCAMAttention, images: torch.Tensor, config: LCAMConfig,
                  target_layer: str | nn.Module | None = None, fc: nn.Linear | None = None,
                  chunk: int | None = None) -> dict[str, torch.Tensor]:
    """Forward and backward of one training step: gradients land in ``attention``; returns detached terms.

    The same loss and gradients as ``lcam_step(...)["loss"].backward()`` (tested), but the
    classifier sees the batch in chunks of ``chunk`` images (``None``: all at once): the clean pass
    chunk by chunk, then for each chunk the masked pass and its backward to the masks
    (``d(w_ce CE_sum / B)/dM``, accumulated in a leaf copy of the masks); finally one backward
    from the masks and the AV/TV terms into the attention.  The batch of the optimiser step, and
    so the training, stays ``config.batch_size``; smaller chunks only run faster on CPUs, where
    large batches fall out of cache (Lite0 forward: 71 images/s at batch 4, 39 at batch 32).
    """
    b = images.shape[0]
    if chunk is None or chunk >= b:
        terms = lcam_step(model, attention, images, config, target_layer, fc)
        terms["loss"].backward()
        return {k: v.detach() for k, v in terms.items()}
    features, targets = _clean_pass(model, images, target_layer, chunk)
    own, maps = loss_maps(attention, features, targets, config.loss_maps)
    leaf = own.detach().requires_grad_(True)
    ce_weight = 1.0 if config.ce_only else CE_WEIGHT
    ce_sum = torch.zeros((), device=images.device)
    kept = torch.zeros((), device=images.device)
    for start in range(0, b, chunk):
        part = slice(start, start + chunk)
        logits = _masked_logits(model, images[part], leaf[part], features[part], config.variant, target_layer, fc)
        ce = F.cross_entropy(logits.float(), targets[part], reduction="sum")
        (ce * (ce_weight / b)).backward()
        ce_sum += ce.detach()
        kept += (logits.detach().argmax(1) == targets[part]).sum()
    area, tv = area_loss(maps), tv_loss(maps)
    ce = ce_sum / b
    if config.ce_only:
        torch.autograd.backward([own], [leaf.grad])
        total = ce
    else:
        regulariser = AREA_WEIGHT * area + TV_WEIGHT * tv
        torch.autograd.backward([own, regulariser], [leaf.grad, None])
        total = ce_weight * ce + regulariser.detach()
    return {"loss": total, "ce": ce, "area": area.detach(), "tv": tv.detach(), "keep": kept / b}


def _clean_pass(model, images, target_layer, chunk) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps ``A`` and model-truth labels ``y`` of the unmasked images (no gradients)."""
    parts = images.split(chunk) if chunk else [images]
    outputs = [forward_activations(model, part, "predicted", target_layer) for part in parts]
    features = torch.cat([o[0] for o in outputs]) if len(outputs) > 1 else outputs[0][0]
    targets = torch.cat([o[2][:, 0] for o in outputs])
    return features, targets


def _masked_logits(model, images, own, features, variant, target_layer, fc) -> torch.Tensor:
    if variant == "img":
        return lcam_img_logits(model, images, own)
    if fc is not None:
        return gap_linear_logits(features, own, fc)
    return lcam_fm_logits(model, images, own, target_layer)


# --- data ------------------------------------------------------------------------------------------

class AugmentedFolder(Dataset):
    """Training images of an :class:`lib.data.ImageFolder`: resize, random crop, horizontal flip.

    ``__getitem__(i)`` -> ``[3, crop, crop]`` float tensor in [0, 1].  The shorter side is resized
    to ``resize`` (PIL, the model's interpolation with antialiasing, as its evaluation
    preprocessing), the image becomes a ``[0, 1]`` tensor, then torchvision's functional ``crop``
    and ``hflip`` apply the crop and flip fixed by :meth:`set_params` (one row ``(u_top, u_left,
    u_flip)`` of uniform [0, 1) draws per image; offsets ``floor(u * (size - crop + 1))``, flip
    when ``u_flip < 0.5``).  Drawing the parameters outside the data set keeps runs reproducible
    with any number of loader workers.
    """

    def __init__(self, folder, resize: int, crop: int, interpolation: str = "bilinear"):
        if crop > resize:
            raise ValueError(f"crop {crop} is larger than the resize {resize}. Fix: crop <= resize.")
        self.folder = folder
        self.resize = int(resize)
        self.crop = int(crop)
        self.interpolation = InterpolationMode(interpolation)
        self.params = torch.zeros(len(folder), 3)

    def __len__(self) -> int:
        return len(self.folder)

    def set_params(self, params: torch.Tensor) -> None:
        if params.shape != (len(self), 3):
            raise ValueError(f"params must be [{len(self)}, 3], got {tuple(params.shape)}.")
        self.params = params

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.view(self.resized(index), self.params[index])

    def resized(self, index: int) -> torch.Tensor:
        """Image ``index`` with its shorter side resized to ``resize``, ``[3, h, w]`` in [0, 1] (no crop yet)."""
        from .data import load_rgb

        image = load_rgb(self.folder.path(self.folder.ids[index]))
        w, h = image.size
        if w <= h:
            size = [int(self.resize * h / w), self.resize]
        else:
            size = [self.resize, int(self.resize * w / h)]
        return TF.to_tensor(TF.resize(image, size, interpolation=self.interpolation, antialias=True))

    def view(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """The ``crop`` x ``crop`` view of a :meth:`resized` image fixed by one ``(u_top, u_left, u_flip)`` row."""
        u_top, u_left, u_flip = params.tolist()
        top = int(u_top * (x.shape[-2] - self.crop + 1))
        left = int(u_left * (x.shape[-1] - self.crop + 1))
        x = TF.crop(x, top, left, self.crop, self.crop)
        return TF.hflip(x) if u_flip < 0.5 else x


# --- setup -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """The classifier in eval mode with no parameter requiring grad; flags and mode restored on exit."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


def make_attention(model: nn.Module, config: LCAMConfig, target_layer: str | nn.Module | None = None
                   ) -> LCAMAttention:
    """The initial attention on the model's device: CAM rows (``init="cam"``) or seeded default init."""
    device = next(model.parameters()).device
    if config.init == "cam":
        return LCAMAttention.from_classifier(model, target_layer).to(device)
    features, logits, _ = forward_activations(model, probe_images(model, 1), "predicted", target_layer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        attention = LCAMAttention(features.shape[1], logits.shape[1])
    return attention.to(device)


def make_optimizer(attention: LCAMAttention, config: LCAMConfig) -> torch.optim.SGD:
    """SGD, Nesterov: weights at ``lr``, bias at ``2 lr`` (the authors' parameter groups)."""
    return torch.optim.SGD(
        [{"params": [attention.conv.weight], "lr": config.lr, "lr_factor": 1.0},
         {"params": [attention.conv.bias], "lr": config.lr * BIAS_LR_FACTOR, "lr_factor": BIAS_LR_FACTOR}],
        lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=True,
    )


def _set_epoch_lr(optimizer: torch.optim.Optimizer, config: LCAMConfig, epoch: int) -> float:
    lr = config.lr * config.lr_decay ** epoch
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_factor"]
    return lr


def _fm_head(model: nn.Module, config: LCAMConfig, target_layer) -> nn.Linear | None:
    if config.variant != "fm":
        return None
    try:
        return check_gap_linear_head(model, target_layer)
    except ValueError:
        log.info("L-CAM-Fm: the head is not GAP + linear; the masked feature maps go through the network's own "
                 "layers with a forward hook (one extra forward pass per step).")
        return None


def _checkpoint(attention, optimizer, config, epoch, history, target_layer) -> dict:
    return {
        "state_dict": attention.state_dict(),
        "optimizer": optimizer.state_dict(),
        "channels": attention.channels,
        "num_classes": attention.num_classes,
        "target_layer": target_layer if isinstance(target_layer, str) else None,
        "method": config.method,
        "config": asdict(config),
        "epoch": epoch,
        "history": history,
    }


def _resume(partial: Path | None, attention, optimizer, config, device) -> tuple[list[dict], int]:
    if partial is None or not partial.exists():
        return [], 0
    state = torch.load(partial, map_location=device, weights_only=False)
    if state.get("config") != asdict(config):
        log.warning("Ignoring %s: it was written with another configuration (%s, not %s)", partial,
                    state.get("config"), asdict(config))
        return [], 0
    attention.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("Resuming %s training from %s (epoch %d of %d)", config.method, partial, state["epoch"], config.epochs)
    return state["history"], int(state["epoch"])


# --- training --------------------------------------------------------------------------------------

def train_lcam(model: nn.Module, dataset, config: LCAMConfig, out: str | Path | None = None, *,
               target_layer: str | nn.Module | None = None, progress: bool = True, workers: int = 0,
               chunk: int | None = None, until_epoch: int | None = None) -> tuple[LCAMAttention, list[dict]]:
    """Train L-CAM's attention on ``dataset`` (an :class:`lib.data.ImageFolder`); return it and the history.

    Args:
        model: a :class:`lib.models.Classifier` (takes [0, 1] images); frozen during training and
            left as found (mode and ``requires_grad`` flags restored).
        dataset: the training folder (its ``ids`` and ``path(id)``; its labels are not used: the
            CE target is the classifier's own prediction).  Images follow ``model.preprocess``'s
            resize, then random crop and flip (:class:`AugmentedFolder`).
        config: :class:`LCAMConfig`; ``config.model`` must be ``model.name``.
        out: checkpoint path: ``out.partial`` after every epoch, ``out`` at the end; an existing
            ``out.partial`` with the same configuration is resumed.
        target_layer: the feature maps' layer (default: the model's ``target_layer``).
        workers: data loader worker processes (0: load in this process).
        chunk: images per forward pass of the classifier inside a batch (:func:`lcam_backward`;
            ``None``: the whole batch).  The optimiser still steps once per ``config.batch_size``
            images; only float rounding depends on ``chunk``, so resume with the same value.
        until_epoch: stop after this epoch (absolute, ``<= config.epochs``) leaving ``out.partial``
            to resume from; for time-limited jobs and tests.

    History rows: ``epoch``, ``lr`` (weights; bias 2x), ``loss``, ``ce``, ``area``, ``tv``,
    ``keep`` (fraction of masked inputs still classified as ``y``), all means over the epoch's
    images, plus ``images`` and ``seconds``.
    """
    name = getattr(model, "name", config.model)
    if name != config.model:
        raise ValueError(f"config.model is {config.model!r} but the classifier is {name!r}. Fix: LCAMConfig(model={name!r}, ...).")
    stop = config.epochs if until_epoch is None else min(int(until_epoch), config.epochs)
    device = next(model.parameters()).device
    layer = target_layer if target_layer is not None else getattr(model, "target_layer", None)
    preprocess = model.preprocess
    data = AugmentedFolder(dataset, preprocess.resize, preprocess.crop, preprocess.interpolation)
    partial = Path(str(out) + ".partial") if out is not None else None
    with frozen(model):
        attention = make_attention(model, config, layer)
        optimizer = make_optimizer(attention, config)
        fc = _fm_head(model, config, layer)
        history, start = _resume(partial, attention, optimizer, config, device)
        generator = torch.Generator().manual_seed(config.seed)
        for epoch in range(stop):
            order = torch.randperm(len(data), generator=generator)  # drawn every epoch: resume-safe
            params = torch.rand(len(data), 3, generator=generator)
            if epoch < start:
                continue
            data.set_params(params)
            lr = _set_epoch_lr(optimizer, config, epoch)
            row = _train_epoch(model, attention, optimizer, data, order, config, layer, fc, workers, chunk, device,
                               desc=f"{config.method} epoch {epoch + 1}/{config.epochs}", progress=progress)
            history.append({"epoch": epoch + 1, "lr": lr, **row})
            log.info("%s epoch %d/%d: loss %.4f ce %.4f area %.4f tv %.4f keep %.3f (%.1f images/s)", config.method,
                     epoch + 1, config.epochs, row["loss"], row["ce"], row["area"], row["tv"], row["keep"],
                     row["images"] / max(row["seconds"], 1e-9))
            if partial is not None:
                atomic_save(_checkpoint(attention, optimizer, config, epoch + 1, history, layer), partial)
    attention.eval()
    if out is not None and stop == config.epochs:
        atomic_save(_checkpoint(attention, optimizer, config, config.epochs, history, layer), Path(out))
        if partial is not None and partial.exists():
            partial.unlink()
    return attention, history


def _train_epoch(model, attention, optimizer, data, order, config, layer, fc, workers, chunk, device, desc,
                 progress) -> dict:
    batches = [order[i : i + config.batch_size].tolist() for i in range(0, len(order), config.batch_size)]
    loader = DataLoader(data, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda")
    keys = ("loss", "ce", "area", "tv", "keep")
    sums = {k: torch.zeros((), device=device) for k in keys}
    start = time.perf_counter()
    attention.train()
    bar = tqdm(loader, desc=desc, unit="batch", disable=not progress)
    for step, images in enumerate(bar):
        images = images.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        terms = lcam_backward(model, attention, images, config, layer, fc, chunk)
        optimizer.step()
        for k in keys:
            sums[k] += terms[k] * len(images)
        if step % LOG_EVERY == 0:  # reading values waits for the device: not every step
            bar.set_postfix({k: f"{float(terms[k]):.3f}" for k in keys})
    attention.eval()
    n = len(order)
    row = {k: float(v) / n for k, v in sums.items()}
    return {**row, "images": n, "seconds": time.perf_counter() - start}


def load_lcam(path: str | Path, device: str | torch.device = "cpu") -> tuple[LCAMAttention, dict]:
    """The trained attention (eval mode, on ``device``) and its checkpoint (config, history, method, ...)."""
    path = Path(path)
    if not path.exists():
        resume = (f" A partial run is at {path}.partial: the same command resumes it."
                  if Path(str(path) + ".partial").exists() else "")
        raise FileNotFoundError(
            f"No L-CAM checkpoint at {path}. Fix: train one with `python -m lib.train_lcam --model efficientnet_lite0 "
            f"--variant img --out {path}` (--variant fm for L-CAM-Fm, --ce-only for L-CAM*), or run the pipeline."
            + resume
        )
    state = torch.load(path, map_location=device, weights_only=False)
    attention = LCAMAttention(state["channels"], state["num_classes"])
    attention.load_state_dict(state["state_dict"])
    return attention.to(device).eval(), state


def main(argv: list[str] | None = None) -> None:
    from .config import resolve_device, split_dir
    from .data import ImageFolder, seeded_subset
    from .models import load_model

    defaults = LCAMConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--variant", default=defaults.variant, choices=VARIANTS)
    parser.add_argument("--ce-only", action="store_true", help="the L-CAM* ablation: cross-entropy only")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--lr-decay", type=float, default=defaults.lr_decay, help="0.95 ResNet-50-like, 0.75 VGG-16")
    parser.add_argument("--momentum", type=float, default=defaults.momentum)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--images", type=int, default=defaults.images, help="0: every training image")
    parser.add_argument("--init", default=defaults.init, choices=INITS)
    parser.add_argument("--loss-maps", default=defaults.loss_maps, choices=LOSS_MAPS)
    parser.add_argument("--data-dir", default="")
    parser.add_argument("--train-dir", default="imagenet-train-1000")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=-1, help="data loader workers (-1: 0 on CPU, 8 on CUDA)")
    parser.add_argument("--cpu-chunk", type=int, default=0,
                        help="on a CPU, images per classifier pass inside a batch (0: the whole batch; on a GPU "
                             "always the whole batch). The batch and the training stay --batch-size: only float "
                             "rounding and the peak memory change (lib.allocator: fresh memory is slow on VMs)")
    parser.add_argument("--until-epoch", type=int, default=None, help="stop after this epoch; rerun to resume")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.cpu_chunk < 0:
        raise SystemExit(f"--cpu-chunk {args.cpu_chunk} is negative. Fix: 0 (the whole batch) or images per pass.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = LCAMConfig(args.model, args.variant, args.ce_only, args.epochs, args.batch_size, args.lr, args.lr_decay,
                        args.momentum, args.weight_decay, args.seed, args.images, args.init, args.loss_maps)
    device = resolve_device(args.device)
    workers = args.workers if args.workers >= 0 else (8 if device.type == "cuda" else 0)
    model = load_model(args.model, device=device)
    root = split_dir(args.train_dir, args.data_dir or None)
    full = ImageFolder(root, model.preprocess)
    dataset = ImageFolder(root, model.preprocess, ids=seeded_subset(full.ids, args.images, args.seed))
    log.info("Training %s on %d images of %s (%s, %s)", config.method, len(dataset), root, args.model, device)
    chunk = args.cpu_chunk if device.type == "cpu" and args.cpu_chunk else None
    _, history = train_lcam(model, dataset, config, out=args.out, workers=workers, chunk=chunk,
                            until_epoch=args.until_epoch)
    for row in history:
        log.info("epoch %(epoch)d: loss %(loss).4f ce %(ce).4f area %(area).4f tv %(tv).4f keep %(keep).3f", row)


if __name__ == "__main__":
    main()
    finish()  # every file is written and closed: skip the interpreter's teardown (lib.process)
