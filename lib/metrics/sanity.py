"""Cascading model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps", 2018).

Starting from the output side, the parameterised layers of a *deep copy* of the model are
re-initialised one at a time, cumulatively (step ``k`` has the top ``k`` layers random). After
each step the saliency maps are recomputed and compared with the maps of the trained model,
per image, by

* Spearman rank correlation (average ranks for ties, as :func:`scipy.stats.spearmanr`;
  implemented in torch, batched, on the maps' device);
* SSIM (:func:`skimage.metrics.structural_similarity`, ``data_range=1``, 7 x 7 uniform window
  or the largest odd window that fits smaller maps) of the min-max normalised maps.

A method that passes the check loses similarity quickly as layers are randomised; a method whose
maps stay similar does not depend on the learnt weights (SA-CAM Fig. 8 shows the curve for
VGG-16).

Choices (not fixed by the paper for CAMs):

* Default layers: every ``Conv*d`` and ``Linear`` module, in reverse registration order (for
  ``torchvision`` VGG-16: the 3 fully connected layers, then the 13 convolutions, 16 steps).
  BatchNorm layers are left trained unless named in ``layers``.
* Re-initialisation: the module's own ``reset_parameters()`` (PyTorch's default init; Adebayo
  et al. used the layers' initialisers, truncated normal) with the CPU generator seeded with
  ``seed + step``, so results do not depend on the device and the global RNG state is restored
  afterwards. Modules without ``reset_parameters`` get ``N(0, 0.01)`` weights and zero biases.
* NaN-free similarities: when both maps are constant the Spearman correlation is 1 (identical,
  all-tied rankings), when one is constant it is 0 (scipy gives NaN). SSIM never gives NaN.
* ``targets`` must be fixed class ids (e.g. the trained model's prediction), so every step
  explains the same class.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..inputs import check_images
from ..maps import minmax_normalize
from .masking import model_device

__all__ = ["cascading_randomization", "randomizable_layers", "spearman_rank_correlation", "ssim"]

CamFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def randomizable_layers(model: nn.Module,
                        layer_types: tuple[type[nn.Module], ...] = _LAYER_TYPES) -> list[str]:
    """Names of the modules of ``layer_types`` that own parameters, output side first."""
    names = [name for name, m in model.named_modules()
             if isinstance(m, layer_types) and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks ``1 .. P`` of each row of ``[N, P]``, ties get their average rank (float64)."""
    n, p = x.shape
    vals, order = torch.sort(x, dim=1, stable=True)
    pos = torch.arange(p, device=x.device).expand(n, p)
    starts = torch.ones_like(vals, dtype=torch.bool)
    starts[:, 1:] = vals[:, 1:] != vals[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.cummax(torch.where(starts, pos, torch.zeros_like(pos)), dim=1).values
    last = torch.cummin(torch.where(ends, pos, torch.full_like(pos, p)).flip(1), dim=1).values.flip(1)
    avg = (first + last).double() / 2 + 1
    return torch.empty_like(avg).scatter_(1, order, avg)


def spearman_rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman correlation of maps ``[N, H, W]`` (or ``[N, P]``) -> ``[N]`` float32.

    Pearson correlation of the average ranks (equal to :func:`scipy.stats.spearmanr`); 1 when
    both maps are constant, 0 when exactly one is (instead of NaN).
    """
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"maps must have the same [N, ...] shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra = _average_ranks(a.reshape(a.shape[0], -1))
    rb = _average_ranks(b.reshape(b.shape[0], -1).to(a.device))
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    va, vb = (ra * ra).sum(1), (rb * rb).sum(1)
    const_a, const_b = va == 0, vb == 0
    denom = torch.sqrt(torch.where(const_a | const_b, torch.ones_like(va), va * vb))
    r = ((ra * rb).sum(1) / denom).clamp(-1, 1)
    r = torch.where(const_a | const_b, (const_a & const_b).double(), r)
    return r.float()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of maps ``[N, H, W]`` in ``[0, 1]`` (skimage, ``data_range=1``) -> ``[N]`` float32.

    Computed on the CPU (one transfer); 7 x 7 window, or the largest odd window that fits.
    Returned on ``a``'s device.
    """
    from skimage.metrics import structural_similarity

    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"maps must both be [N, H, W], got {tuple(a.shape)} and {tuple(b.shape)}")
    side = min(a.shape[-2:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"maps of size {tuple(a.shape[-2:])} are too small for SSIM (need at least 3 x 3)")
    an = a.detach().double().cpu().numpy()
    bn = b.detach().double().cpu().numpy()
    vals = [structural_similarity(x, y, data_range=1.0, win_size=win) for x, y in zip(an, bn)]
    return torch.tensor(np.asarray(vals, dtype=np.float64), dtype=torch.float32, device=a.device)


def _randomize(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters (and buffers) in place, seeded on the CPU."""
    tmp = copy.deepcopy(module).to("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(tmp, "reset_parameters"):
            tmp.reset_parameters()
        else:
            with torch.no_grad():
                for name, p in tmp.named_parameters(recurse=False):
                    if name == "bias":
                        p.zero_()
                    else:
                        p.normal_(0.0, 0.01)
    with torch.no_grad():
        for (_, dst), (_, src) in zip(module.named_parameters(recurse=False), tmp.named_parameters(recurse=False)):
            dst.copy_(src)
        for (_, dst), (_, src) in zip(module.named_buffers(recurse=False), tmp.named_buffers(recurse=False)):
            dst.copy_(src)


def cascading_randomization(model: nn.Module, cam_factory: Callable[[nn.Module], CamFn],
                            images: torch.Tensor, targets: torch.Tensor | Sequence[int],
                            layers: Sequence[str] | None = None, seed: int = 0,
                            original: torch.Tensor | None = None) -> dict:
    """Cascading randomisation sanity check (see the module docstring).

    Args:
        model: the trained classifier; never modified (all work happens on a deep copy).
        cam_factory: ``cam_factory(model) -> cam``, ``cam(images, targets) -> maps [N, H, W]``;
            called once per step with the (partly randomised) copy, e.g.
            ``lambda m: GradCAM(m)`` (the copy keeps ``model.target_layer``).
        images: ``[N, 3, H, W]`` images in ``[0, 1]`` (moved to the model's device).
        targets: ``[N]`` fixed class ids (e.g. the trained model's top-1 prediction).
        layers: module names (as in ``model.named_modules()``) in the order to randomise, the
            output side first; default :func:`randomizable_layers` (all Conv / Linear layers).
        seed: step ``k`` (1-based) re-initialises its layer with seed ``seed + k``.
        original: the trained model's maps ``[N, H, W]`` of these images and targets when they are
            already computed (e.g. read from a map store): row 0, instead of calling the CAM on the
            unrandomised copy (the same maps, up to the float noise of another batch).

    Returns:
        ``{"layers": ["original", name_1, ..., name_S], "maps": [S + 1, N, H, W],
        "spearman": [S + 1, N], "ssim": [S + 1, N]}``: row ``k`` is after randomising
        ``name_1 .. name_k`` (row 0: the trained model, similarity with itself). Tensors are on
        the model's device; ``maps`` as returned by the CAM, similarities as described above.
    """
    check_images(images)
    device = model_device(model, images.device)
    work = copy.deepcopy(model)
    names = list(randomizable_layers(work) if layers is None else layers)
    modules = dict(work.named_modules())
    missing = [nm for nm in names if nm not in modules]
    if missing:
        raise ValueError(f"unknown layers {missing}; use names from model.named_modules()")
    x = images.to(device)
    t = torch.as_tensor(targets, device=device).long().reshape(-1)
    if t.numel() != x.shape[0]:
        raise ValueError(f"targets must have one class per image ({x.shape[0]}), got {t.numel()}")

    def maps_of(m: nn.Module) -> torch.Tensor:
        out = cam_factory(m)(x, t)
        if out.dim() != 3 or out.shape[0] != x.shape[0]:
            raise ValueError(f"cam_factory's maps must be [N, H, W], got {tuple(out.shape)}")
        return out.detach()

    if original is not None and tuple(original.shape) != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"original maps must be [N, H, W] = {(x.shape[0], *x.shape[-2:])} for these images, got "
                         f"{tuple(original.shape)}. Fix: pass the trained model's maps of the same images, or None.")
    all_maps = [original.detach().to(device) if original is not None else maps_of(work)]
    for step, name in enumerate(names, start=1):
        _randomize(modules[name], seed + step)
        all_maps.append(maps_of(work))
    stacked = torch.stack(all_maps)  # [S + 1, N, H, W]
    s, n = stacked.shape[:2]
    reference = stacked[0:1].expand_as(stacked).reshape(s * n, *stacked.shape[-2:])
    flat = stacked.reshape(s * n, *stacked.shape[-2:])
    spearman = spearman_rank_correlation(reference, flat).view(s, n)
    ssims = ssim(minmax_normalize(reference.float()), minmax_normalize(flat.float())).view(s, n)
    return {"layers": ["original", *names], "maps": stacked, "spearman": spearman, "ssim": ssims}
