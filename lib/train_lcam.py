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

Training at ImageNet scale: the images come through a ``DataLoader`` with ``workers`` processes
(CLI default 8 on CUDA) and pinned memory on CUDA; ``amp`` (CLI ``--amp``) runs the classifier's
forward and backward passes (the clean pass and the masked pass) under CUDA autocast, bfloat16
(``"bf16"``; ``True``/``"auto"`` picks it where the GPU supports it) or float16 (``"fp16"``, with a
``torch.amp.GradScaler`` whose state the checkpoints keep), while the attention, its maps and the
loss stay float32; it is ignored on the CPU.  Like ``chunk``, ``amp`` changes float rounding only,
so it is not part of :class:`LCAMConfig` (a run may resume with another setting).

Data-parallel training
----------------------

Under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the command line starts a process group
(:func:`distributed`: backend ``"nccl"`` on CUDA, ``"gloo"`` on the CPU; rank ``r`` on CUDA uses
``cuda:LOCAL_RANK``) and destroys it at the end; :func:`train_lcam` runs data-parallel whenever a
process group of more than one process exists.  What each of the ``W`` processes does:

* **the same draws**: every rank draws the epoch's image order and crop/flip parameters from its own
  generator seeded by ``seed`` (the same numbers on every rank) and cuts the same global batches of
  ``config.batch_size`` images, which must be a multiple of ``W``: the effective batch stays
  ``config.batch_size`` = ``W`` x the per-rank batch.
* **its shard**: rank ``r`` takes the ``r``-th contiguous slice of every global batch (``B / W``
  images; a short last batch of ``n`` images is split as evenly as possible, the first ``n mod W``
  ranks taking one more; a rank whose slice is empty still takes part in every collective).
* **the same loss as one process**: the terms of rank ``r`` are sums over *its* images, divided by
  the *global* counts (:class:`BatchShard`, ``lcam_loss(..., batch=B)``)::

      CE_r = sum over its images of -log softmax(u)_y / B
      AV_r = sum over its rows i of S of (s + 0.0005) ** 0.3 / (B * J * P * Q)
      TV_r = (the TV sums of its rows of S) / (2 * B)
      keep_r = (its masked inputs still classified as y) / B

  so that they add up over the ranks to the one-process terms of the whole batch.  With
  ``loss_maps="batch"`` the rank all-gathers the batch's model-truth labels (``J = B``): its rows
  are ``S[i, j] = sigma(L^(y_j))(A_i)`` for its images ``i`` and *every* label ``y_j`` of the batch,
  its own masks ``S[i, start + i]``.  ``DistributedDataParallel`` around the attention averages
  the ranks' gradients (divides their sum by ``W``), so each rank backpropagates ``W x loss_r``:
  the gradient every rank applies is the sum of the ranks' gradients, the gradient of the whole
  batch's loss, equal to one process's up to float rounding (tested: 2 CPU processes against one).
* **rank 0**: shows the progress bar, logs, and alone writes ``OUT.partial`` and ``OUT``; on a
  start it alone reads ``OUT.partial`` and broadcasts it, so every rank resumes from the same
  state (across nodes keep ``OUT`` on a shared file system: after a restart rank 0 may run on
  another node).  The per-epoch history (loss, ce, area, tv, keep) is all-reduced: every rank
  returns, and rank 0 logs and saves, the global means, equal to one process's up to rounding.

Launch on one node with several GPUs (one process per GPU)::

    torchrun --standalone --nproc_per_node 8 -m lib.train_lcam --model resnet50 --variant img \
        --train-dir train --data-dir /path/to/ILSVRC2012 --device cuda --amp --out lcam-img.pt

On several nodes with SLURM (one ``torchrun`` per node, started by ``srun``; the first node hosts
the rendezvous)::

    srun --nodes 2 --ntasks 2 --ntasks-per-node 1 torchrun --nnodes 2 --nproc_per_node 4 \
        --rdzv_backend c10d --rdzv_id $SLURM_JOB_ID \
        --rdzv_endpoint $(scontrol show hostnames $SLURM_JOB_NODELIST | head -n1):29500 \
        -m lib.train_lcam ... --device cuda --out lcam-img.pt

The pipeline does either (rule ``train_lcam``, ``notebook02: train_gpus`` and ``train_nodes``,
``profiles/slurm/config.yaml``).

Command line::

    python -m lib.train_lcam --model efficientnet_lite0 --variant img --epochs 3 --images 0 \
        --train-dir imagenet-train-1000 --device auto --out results/checkpoints/lcam-img.pt
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from tqdm.auto import tqdm

from .process import finish
from .cams.activation import forward_activations
from .cams.hooks import capture_layer
from .cams.targets import resolve_targets
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
    "BatchShard",
    "distributed",
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


def area_loss(masks: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """AV (Eq. 7 with the authors' offset): ``mean((s + 0.0005) ** 0.3)`` over every cell of every map.

    ``batch``: a shard of a data-parallel batch of ``batch`` images passes it; the sum over the
    shard's cells is then divided by the whole batch's cell count ``batch * J * P * Q``.
    """
    if batch is None:
        return (masks + AREA_OFFSET).pow(AREA_POWER).mean()
    m = _as_4d(masks)
    return (m + AREA_OFFSET).pow(AREA_POWER).sum() / (batch * math.prod(m.shape[1:]))


def tv_loss(masks: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """TV (Eq. 8 + the authors' border term and normalisation) of ``[B, P, Q]`` or ``[B, J, P, Q]`` maps.

    ``(sum dP**2 + sum dQ**2 + 0.3 * sum(first/last row and column)**2) / (2 * B)``, ``B = masks.shape[0]``
    (``batch`` when given: a shard of a data-parallel batch divides by the whole batch's ``2 B``).
    """
    m = _as_4d(masks)
    dp = (m[:, :, 1:, :] - m[:, :, :-1, :]).pow(TV_POWER).sum()
    dq = (m[:, :, :, 1:] - m[:, :, :, :-1]).pow(TV_POWER).sum()
    border = (m[:, :, 0, :].pow(TV_POWER).sum() + m[:, :, -1, :].pow(TV_POWER).sum()
              + m[:, :, :, 0].pow(TV_POWER).sum() + m[:, :, :, -1].pow(TV_POWER).sum())
    return (dp + dq + TV_BORDER * border) / (TV_POWER * (m.shape[0] if batch is None else batch))


def lcam_loss(logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor,
              ce_only: bool = False, batch: int | None = None) -> dict[str, torch.Tensor]:
    """Eq. 6: ``{"loss", "ce", "area", "tv"}`` (unweighted terms and the weighted total) as device scalars.

    ``logits [B, R]`` of the masked input, ``targets [B]`` the model-truth labels, ``masks`` the
    sigmoid maps the AV/TV terms see (``[B, P, Q]`` or ``[B, J, P, Q]``, see :func:`loss_maps`).
    ``loss = 1.5 ce + 2 area + 0.01 tv``, or ``ce`` alone with ``ce_only`` (L-CAM*).

    ``batch``: these are one shard of a data-parallel batch of ``batch`` images (module docstring,
    "Data-parallel training"); every term is the shard's sum divided by the whole batch's count, so
    that the shards' terms add up to the batch's.
    """
    if batch is None:
        ce = F.cross_entropy(logits.float(), targets)
    else:
        ce = F.cross_entropy(logits.float(), targets, reduction="sum") / batch
    area = area_loss(masks, batch)
    tv = tv_loss(masks, batch)
    total = ce if ce_only else CE_WEIGHT * ce + AREA_WEIGHT * area + TV_WEIGHT * tv
    return {"loss": total, "ce": ce, "area": area, "tv": tv}


@dataclass(frozen=True)
class BatchShard:
    """This process's part of a global batch in data-parallel training (module docstring).

    ``sizes[r]``: the images of rank ``r`` in the batch (contiguous slices in rank order); this
    process is rank ``rank`` and holds images ``start .. start + sizes[rank]`` of the batch.
    ``gather(targets)``: the whole batch's model-truth labels ``[B]`` from this shard's
    ``[sizes[rank]]`` (default: an all-gather over the process group; a function returning the
    same tensor simulates the group in one process).
    """

    sizes: tuple[int, ...]
    rank: int
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def batch(self) -> int:
        """``B``, the images of the whole batch."""
        return sum(self.sizes)

    @property
    def start(self) -> int:
        """The index of this shard's first image in the batch."""
        return sum(self.sizes[: self.rank])

    def batch_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """All ranks' labels in batch order (an all-gather of the shards, padded to the largest)."""
        if targets.shape[0] != self.sizes[self.rank]:
            raise ValueError(f"rank {self.rank} holds {self.sizes[self.rank]} images of the batch, got "
                             f"{targets.shape[0]} targets.")
        if self.gather is not None:
            return self.gather(targets)
        padded = targets.new_zeros(max(self.sizes))
        padded[: targets.shape[0]] = targets
        parts = [torch.empty_like(padded) for _ in self.sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, self.sizes)])


def loss_maps(attention: LCAMAttention, features: torch.Tensor, targets: torch.Tensor,
              mode: str = "batch", shard: BatchShard | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's own mask ``[B, P, Q]`` and the maps the loss sees ``[B, J, P, Q]`` (all sigmoid).

    ``"own"``: ``J = 1``, ``S[i, 0] = sigma(L^(y_i))(A_i)``.  ``"batch"`` (authors' code):
    ``J = B``, ``S[i, j] = sigma(L^(y_j))(A_i)``; the own masks are its diagonal.

    ``shard``: ``features`` and ``targets`` are this rank's images of a data-parallel batch; with
    ``"batch"`` the labels ``y_j`` are the whole batch's (:meth:`BatchShard.batch_targets`), so the
    rows are ``[b, B, P, Q]`` and image ``i``'s own mask is ``S[i, start + i]``.  ``attention`` may be
    wrapped in ``DistributedDataParallel`` (it is called, not its methods).
    """
    if mode not in LOSS_MAPS:
        raise ValueError(f"Unknown loss_maps {mode!r}. Fix: use 'batch' or 'own'.")
    if mode == "own":
        maps = attention(features, targets[:, None])
        return maps[:, 0], maps
    if shard is None:
        maps = attention(features, targets)  # the batch's labels for every image
        own = maps.diagonal(dim1=0, dim2=1).permute(2, 0, 1)  # [B, P, Q]: S[i, i]
        return own, maps
    maps = attention(features, shard.batch_targets(targets))  # [b, B, P, Q]: the whole batch's labels
    rows = torch.arange(features.shape[0], device=maps.device)
    return maps[rows, shard.start + rows], maps


def lcam_step(model: nn.Module, attention: LCAMAttention, images: torch.Tensor, config: LCAMConfig,
              target_layer: str | nn.Module | None = None, fc: nn.Linear | None = None, *,
              shard: BatchShard | None = None, amp: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Forward of one training step (no optimiser step): the loss terms plus ``"keep"``.

    ``keep`` is the fraction of images whose masked input is still classified as ``y`` (detached).
    ``fc``: the head's linear layer when the head is GAP + linear (L-CAM-Fm then uses the closed
    form and runs the backbone once); ``None`` uses the forward hook.  ``shard``: ``images`` are
    this rank's part of a data-parallel batch (possibly none of it): the terms are its shares of
    the batch's (:func:`lcam_loss` with ``batch``).  ``amp``: ``torch.bfloat16`` or
    ``torch.float16`` runs the classifier under CUDA autocast; the loss stays float32.
    """
    b = images.shape[0]
    if b:
        features, targets = _clean_pass(model, images, target_layer, None, amp)
    else:  # an empty shard (a short last batch): no classifier pass, but every collective
        features, targets = _no_features(attention, images)
    own, maps = loss_maps(attention, features, targets, config.loss_maps, shard)
    if b:
        logits = _masked_logits(model, images, own, features, config.variant, target_layer, fc, amp)
    else:
        logits = own.new_zeros(0, _module(attention).num_classes)
    terms = lcam_loss(logits, targets, maps, config.ce_only, None if shard is None else shard.batch)
    hits = (logits.detach().argmax(1) == targets).float()
    terms["keep"] = hits.mean() if shard is None else hits.sum() / shard.batch
    if not b:  # + 0 that reaches the attention: DistributedDataParallel all-reduces on every rank
        terms["loss"] = terms["loss"] + own.sum()
    return terms


def lcam_backward(model: nn.Module, attention: LCAMAttention, images: torch.Tensor, config: LCAMConfig,
                  target_layer: str | nn.Module | None = None, fc: nn.Linear | None = None,
                  chunk: int | None = None, *, shard: BatchShard | None = None, amp: torch.dtype | None = None,
                  grad_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Forward and backward of one training step: gradients land in ``attention``; returns detached terms.

    The same loss and gradients as ``lcam_step(...)["loss"].backward()`` (tested), but the
    classifier sees the batch in chunks of ``chunk`` images (``None``: all at once): the clean pass
    chunk by chunk, then for each chunk the masked pass and its backward to the masks
    (``d(w_ce CE_sum / B)/dM``, accumulated in a leaf copy of the masks); finally one backward
    from the masks and the AV/TV terms into the attention.  The batch of the optimiser step, and
    so the training, stays ``config.batch_size``; smaller chunks only run faster on CPUs, where
    large batches fall out of cache (Lite0 forward: 71 images/s at batch 4, 39 at batch 32).

    ``shard``, ``amp``: as :func:`lcam_step`.  ``grad_scale``: the backward is of ``grad_scale x
    loss`` (the returned terms are not scaled): the world size under ``DistributedDataParallel``,
    times the loss scale of float16 autocast.
    """
    b = images.shape[0]
    n = b if shard is None else shard.batch  # the images the terms are normalised by
    if chunk is None or chunk >= b:
        terms = lcam_step(model, attention, images, config, target_layer, fc, shard=shard, amp=amp)
        (terms["loss"] if grad_scale == 1 else terms["loss"] * grad_scale).backward()
        return {k: v.detach() for k, v in terms.items()}
    features, targets = _clean_pass(model, images, target_layer, chunk, amp)
    own, maps = loss_maps(attention, features, targets, config.loss_maps, shard)
    leaf = own.detach().requires_grad_(True)
    ce_weight = 1.0 if config.ce_only else CE_WEIGHT
    ce_sum = torch.zeros((), device=images.device)
    kept = torch.zeros((), device=images.device)
    for start in range(0, b, chunk):
        part = slice(start, start + chunk)
        logits = _masked_logits(model, images[part], leaf[part], features[part], config.variant, target_layer, fc,
                                amp)
        ce = F.cross_entropy(logits.float(), targets[part], reduction="sum")
        (ce * (ce_weight * grad_scale / n)).backward()
        ce_sum += ce.detach()
        kept += (logits.detach().argmax(1) == targets[part]).sum()
    batch = None if shard is None else n
    area, tv = area_loss(maps, batch), tv_loss(maps, batch)
    ce = ce_sum / n
    if config.ce_only:
        torch.autograd.backward([own], [leaf.grad])
        total = ce
    else:
        regulariser = AREA_WEIGHT * area + TV_WEIGHT * tv
        seed = None if grad_scale == 1 else torch.full_like(regulariser, grad_scale)
        torch.autograd.backward([own, regulariser], [leaf.grad, seed])
        total = ce_weight * ce + regulariser.detach()
    return {"loss": total, "ce": ce, "area": area.detach(), "tv": tv.detach(), "keep": kept / n}


def _module(attention: nn.Module) -> LCAMAttention:
    """The attention itself, also inside a ``DistributedDataParallel`` wrapper."""
    return attention.module if isinstance(attention, DistributedDataParallel) else attention


def _autocast(device: torch.device, amp: torch.dtype | None):
    return contextlib.nullcontext() if amp is None else torch.autocast(device.type, dtype=amp)


def _no_features(attention, images) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps and labels of no image (``[0, K, 1, 1]``, ``[0]``): an empty shard's."""
    return (images.new_zeros(0, _module(attention).channels, 1, 1),
            torch.zeros(0, dtype=torch.long, device=images.device))


def _clean_pass(model, images, target_layer, chunk, amp=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps ``A`` and model-truth labels ``y`` of the unmasked images (no gradients; float32)."""
    parts = images.split(chunk) if chunk else [images]
    outputs = [_features(model, part, target_layer, amp) for part in parts]
    features = torch.cat([o[0] for o in outputs]) if len(outputs) > 1 else outputs[0][0]
    targets = torch.cat([o[2][:, 0] for o in outputs])
    return features, targets


def _features(model, images, target_layer, amp):
    if amp is None:
        return forward_activations(model, images, "predicted", target_layer)
    if amp == torch.bfloat16:
        return forward_activations(model, images, "predicted", target_layer, "bf16")
    # float16: forward_activations' bf16 autocast, in float16 (its own region would switch an outer one off)
    with capture_layer(model, target_layer, with_grad=True) as cap, torch.no_grad(), _autocast(images.device, amp):
        logits = model(images).float()
        activations = cap.require().detach().float()
    return activations, logits, resolve_targets(logits, "predicted")


def _masked_logits(model, images, own, features, variant, target_layer, fc, amp=None) -> torch.Tensor:
    with _autocast(images.device, amp):
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


def make_optimizer(attention: LCAMAttention, config) -> torch.optim.SGD:
    """SGD, Nesterov: weights at ``lr``, bias at ``2 lr`` (the authors' parameter groups); ``config``: an
    :class:`LCAMConfig` or :class:`lib.lcam_features.FeatureTrainConfig` (its ``lr``, ``momentum``, ``weight_decay``)."""
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


def _checkpoint(attention, optimizer, config, epoch, history, target_layer, scaler=None, world=1,
                amp=None) -> dict:
    state = {
        "state_dict": attention.state_dict(),
        "optimizer": optimizer.state_dict(),
        "channels": attention.channels,
        "num_classes": attention.num_classes,
        "target_layer": target_layer if isinstance(target_layer, str) else None,
        "method": config.method,
        "config": asdict(config),
        "epoch": epoch,
        "history": history,
        "world_size": world,  # how it was trained (not part of the configuration: float rounding only)
        "amp": None if amp is None else str(amp).removeprefix("torch."),
    }
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    return state


def _read_partial(partial: Path | None, config: LCAMConfig, device) -> dict | None:
    if partial is None or not partial.exists():
        return None
    state = torch.load(partial, map_location=device, weights_only=False)
    if state.get("config") != asdict(config):
        log.warning("Ignoring %s: it was written with another configuration (%s, not %s)", partial,
                    state.get("config"), asdict(config))
        return None
    return state


def _resume(partial: Path | None, attention, optimizer, config, device, scaler=None, rank=0, world=1
            ) -> tuple[list[dict], int]:
    """The history and epoch to continue from, with the attention and optimizer (and loss scaler) loaded.

    Data-parallel: rank 0 reads ``partial`` and broadcasts it, so every rank resumes from the same state."""
    if world == 1:
        state = _read_partial(partial, config, device)
    else:
        box = [_read_partial(partial, config, "cpu") if rank == 0 else None]
        dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
        state = box[0]
    if state is None:
        return [], 0
    attention.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and scaler.is_enabled() and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if rank == 0:
        log.info("Resuming %s training from %s (epoch %d of %d)", config.method, partial, state["epoch"],
                 config.epochs)
    return state["history"], int(state["epoch"])


def _rank_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _amp_dtype(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` on ``device``: ``None`` (float32) off CUDA or when off."""
    if amp in (None, False, "off"):
        return None
    if amp not in (True, "auto", "bf16", "fp16"):
        raise ValueError(f"Unknown amp {amp!r}. Fix: False/'off', True/'auto' (bf16 where the GPU has it, else "
                         "fp16), 'bf16' or 'fp16'.")
    if device.type != "cuda":
        log.info("amp=%r is for CUDA: training in float32 on %s", amp, device)
        return None
    if amp == "fp16" or (amp in (True, "auto") and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


# --- training --------------------------------------------------------------------------------------

def train_lcam(model: nn.Module, dataset, config: LCAMConfig, out: str | Path | None = None, *,
               target_layer: str | nn.Module | None = None, progress: bool = True, workers: int = 0,
               chunk: int | None = None, until_epoch: int | None = None, amp: bool | str = False
               ) -> tuple[LCAMAttention, list[dict]]:
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
        amp: mixed precision of the classifier's passes on CUDA (module docstring): ``False``/``"off"``,
            ``True``/``"auto"``, ``"bf16"`` or ``"fp16"``; ignored on the CPU.

    Data-parallel when a process group of several processes exists (module docstring, "Data-parallel
    training"): call it on every rank with the same arguments (the model on this rank's device);
    every rank returns the same attention and the global history.

    History rows: ``epoch``, ``lr`` (weights; bias 2x), ``loss``, ``ce``, ``area``, ``tv``,
    ``keep`` (fraction of masked inputs still classified as ``y``), all means over the epoch's
    images, plus ``images`` and ``seconds``.
    """
    name = getattr(model, "name", config.model)
    if name != config.model:
        raise ValueError(f"config.model is {config.model!r} but the classifier is {name!r}. Fix: LCAMConfig(model={name!r}, ...).")
    rank, world = _rank_world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of the {world} processes: the batch of "
                         f"an optimiser step is split evenly between them. Fix: a batch size divisible by {world}, "
                         "or another number of processes.")
    stop = config.epochs if until_epoch is None else min(int(until_epoch), config.epochs)
    device = next(model.parameters()).device
    amp_dtype = _amp_dtype(amp, device)
    layer = target_layer if target_layer is not None else getattr(model, "target_layer", None)
    preprocess = model.preprocess
    data = AugmentedFolder(dataset, preprocess.resize, preprocess.crop, preprocess.interpolation)
    partial = Path(str(out) + ".partial") if out is not None else None
    writer = rank == 0  # only rank 0 logs and writes checkpoints
    with frozen(model):
        attention = make_attention(model, config, layer)
        optimizer = make_optimizer(attention, config)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        fc = _fm_head(model, config, layer)
        history, start = _resume(partial, attention, optimizer, config, device, scaler, rank, world)
        net = attention
        if world > 1:
            net = DistributedDataParallel(attention, device_ids=[device] if device.type == "cuda" else None)
            if writer:
                log.info("%s: data-parallel over %d processes, %d images each per batch of %d", config.method,
                         world, config.batch_size // world, config.batch_size)
        generator = torch.Generator().manual_seed(config.seed)
        for epoch in range(stop):
            order = torch.randperm(len(data), generator=generator)  # drawn every epoch: resume-safe
            params = torch.rand(len(data), 3, generator=generator)
            if epoch < start:
                continue
            data.set_params(params)
            lr = _set_epoch_lr(optimizer, config, epoch)
            row = _train_epoch(model, net, optimizer, data, order, config, layer, fc, workers, chunk, device,
                               desc=f"{config.method} epoch {epoch + 1}/{config.epochs}", progress=progress,
                               rank=rank, world=world, amp=amp_dtype, scaler=scaler)
            history.append({"epoch": epoch + 1, "lr": lr, **row})
            if writer:
                log.info("%s epoch %d/%d: loss %.4f ce %.4f area %.4f tv %.4f keep %.3f (%.1f images/s)",
                         config.method, epoch + 1, config.epochs, row["loss"], row["ce"], row["area"], row["tv"],
                         row["keep"], row["images"] / max(row["seconds"], 1e-9))
            if partial is not None and writer:
                atomic_save(_checkpoint(attention, optimizer, config, epoch + 1, history, layer, scaler, world,
                                        amp_dtype), partial)
        del net
    attention.eval()
    if out is not None and stop == config.epochs and writer:
        atomic_save(_checkpoint(attention, optimizer, config, config.epochs, history, layer, scaler, world, amp_dtype),
                    Path(out))
        if partial is not None and partial.exists():
            partial.unlink()
    if world > 1:
        dist.barrier()  # OUT (or OUT.partial) is written when any rank returns
    return attention, history


def _shard_sizes(n: int, world: int) -> tuple[int, ...]:
    """Images of each rank in a batch of ``n``: as even as possible, the first ``n % world`` ranks one more."""
    return tuple(n // world + (r < n % world) for r in range(world))


def _train_epoch(model, attention, optimizer, data, order, config, layer, fc, workers, chunk, device, desc,
                 progress, *, rank=0, world=1, amp=None, scaler=None) -> dict:
    batches = [order[i : i + config.batch_size].tolist() for i in range(0, len(order), config.batch_size)]
    sizes = [_shard_sizes(len(batch), world) for batch in batches]
    mine = [batch[sum(s[:rank]) : sum(s[: rank + 1])] for batch, s in zip(batches, sizes)]  # this rank's shards
    loader = DataLoader(data, batch_sampler=[m for m in mine if m], num_workers=workers,
                        pin_memory=device.type == "cuda")
    loaded = iter(loader)
    keys = ("loss", "ce", "area", "tv", "keep")
    sums = {k: torch.zeros((), device=device) for k in keys}
    start = time.perf_counter()
    _module(attention).train()
    bar = tqdm(total=len(batches), desc=desc, unit="batch", disable=not (progress and rank == 0))
    for step, (shard_sizes, part) in enumerate(zip(sizes, mine)):
        if part:
            images = next(loaded).to(device, non_blocking=True)
        else:  # an empty shard of a short last batch
            images = torch.zeros(0, 3, data.crop, data.crop, device=device)
        shard = None if world == 1 else BatchShard(shard_sizes, rank)
        optimizer.zero_grad(set_to_none=True)
        grad_scale = float(world)  # DistributedDataParallel divides the summed gradients by the world size
        if scaler is not None:
            scaler.scale(torch.ones((), device=device))  # creates the scale on the first step
            grad_scale *= scaler.get_scale()
        terms = lcam_backward(model, attention, images, config, layer, fc, chunk, shard=shard, amp=amp,
                              grad_scale=grad_scale)
        if scaler is not None:
            scaler.step(optimizer)  # unscales; skips the step when a gradient overflowed (on every rank alike)
            scaler.update()
        else:
            optimizer.step()
        count = len(images) if shard is None else shard.batch  # the terms are means over `count` images
        for k in keys:
            sums[k] += terms[k] * count
        bar.update(1)
        if progress and step % LOG_EVERY == 0:  # reading values waits for the device: not every step
            shown = torch.stack([terms[k] for k in keys])
            if world > 1:
                dist.all_reduce(shown)  # the batch's terms (every rank takes part)
            bar.set_postfix({k: f"{float(v):.3f}" for k, v in zip(keys, shown)})
    bar.close()
    _module(attention).eval()
    totals = torch.stack([sums[k] for k in keys])
    if world > 1:
        dist.all_reduce(totals)  # the ranks' sums: the epoch's over every image
    n = len(order)
    row = {k: float(v) / n for k, v in zip(keys, totals)}
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


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[torch.device]:
    """The process group of a ``torchrun`` launch for the block; yields this rank's device.

    Started when torchrun's environment says ``WORLD_SIZE > 1`` (``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT`` come with it): backend ``"nccl"`` with ``cuda:LOCAL_RANK`` made
    the current device when ``device`` is CUDA, ``"gloo"`` on the CPU; destroyed on exit.  Without
    that environment, or inside a group started elsewhere, it does nothing and yields ``device``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(f"Local rank {local} but this node has {torch.cuda.device_count()} CUDA device(s). Fix: "
                             f"torchrun --nproc_per_node {torch.cuda.device_count()} (one process per GPU).")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


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
    parser.add_argument("--amp", nargs="?", const="auto", default="off", choices=("off", "auto", "bf16", "fp16"),
                        help="CUDA mixed precision of the classifier's passes (--amp: bf16 where the GPU has it, "
                             "else fp16); the loss stays float32; ignored on a CPU")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.cpu_chunk < 0:
        raise SystemExit(f"--cpu-chunk {args.cpu_chunk} is negative. Fix: 0 (the whole batch) or images per pass.")
    rank = int(os.environ.get("RANK", "0"))  # under torchrun: only rank 0 logs progress
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = LCAMConfig(args.model, args.variant, args.ce_only, args.epochs, args.batch_size, args.lr, args.lr_decay,
                        args.momentum, args.weight_decay, args.seed, args.images, args.init, args.loss_maps)
    with distributed(resolve_device(args.device)) as device:
        workers = args.workers if args.workers >= 0 else (8 if device.type == "cuda" else 0)
        model = load_model(args.model, device=device)
        root = split_dir(args.train_dir, args.data_dir or None)
        full = ImageFolder(root, model.preprocess)
        dataset = ImageFolder(root, model.preprocess, ids=seeded_subset(full.ids, args.images, args.seed))
        log.info("Training %s on %d images of %s (%s, %s)", config.method, len(dataset), root, args.model, device)
        chunk = args.cpu_chunk if device.type == "cpu" and args.cpu_chunk else None
        _, history = train_lcam(model, dataset, config, out=args.out, workers=workers, chunk=chunk,
                                until_epoch=args.until_epoch, amp=args.amp)
    for row in history:
        log.info("epoch %(epoch)d: loss %(loss).4f ce %(ce).4f area %(area).4f tv %(tv).4f keep %(keep).3f", row)


if __name__ == "__main__":
    main()
    finish()  # every file is written and closed: skip the interpreter's teardown (lib.process)
