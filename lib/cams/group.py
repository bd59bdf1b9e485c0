"""Group-CAM (Zhang, Rao & Yang 2021, "Group-CAM: Group Score-Weighted Visual Explanations").

Score-CAM with ``G`` masks instead of ``C``, following the authors' code
(github.com/wofmanaf/Group-CAM, ``cam/groupcam.py``):

1. Grad-CAM weighting: ``alpha_k = mean_ij dy_c / dA_k`` (logit gradient), ``A'_k = alpha_k A_k``;
2. split the ``C`` weighted maps into ``groups`` consecutive groups (``torch.chunk`` along the
   channels: groups of ``ceil(C / G)``) and sum each group: ``M_g = ReLU(sum_{k in g} A'_k)``;
3. "denoise": keep only the values of ``M_g`` strictly above its own ``threshold``-th percentile
   (70; linear interpolation, as ``np.percentile``), zero the rest;
4. upsample bilinearly (``align_corners=False``) to the input and min-max normalise: mask
   ``H_g``; a constant group is skipped (weight 0);
5. masked input: the image where the mask is 1, its Gaussian blur (kernel 51, sigma 50,
   reflect borders: kornia's ``gaussian_blur2d``) where it is 0,
   ``X_g = X * H_g + blur(X) * (1 - H_g)``;
6. weight ``w_g = P(c | X_g) - P(c | blur(X))`` (softmax probabilities; the fully blurred image
   is the baseline), map ``= ReLU(sum_g w_g H_g)`` at the input size.

Choices: per-group percentile (``groupcam.py``; the authors' "faster" variant takes one percentile
over all groups together); ``threshold=None`` skips step 3; ``background="black"`` replaces the blur
by a black image (zero in the space of ``convention``), for comparison with Score-CAM-style
masking.  Because the blur and the blend are linear and the normalisation is a per-channel affine
map, blurring and blending the ``[0, 1]`` image or the normalised tensor gives exactly the same
network input: with the default blurred background ``convention`` makes no difference.

The weighted sum over groups is computed at the layer's resolution and upsampled once
(``sum_g w_g (Up(M_g) - lo_g) / span_g = Up(sum_g w_g M_g / span_g) - sum_g w_g lo_g / span_g``
since bilinear upsampling is linear and keeps constants), which avoids holding ``G`` full-size
masks per image.

Cost: one forward and backward pass, one pass of the blurred image, and ``groups`` masked passes
per image and target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..maps import upsample
from .hooks import forward_with_gradients
from .perturbation import PerturbationCAM, gaussian_blur
from .targets import Targets

__all__ = ["GroupCAM", "GROUPCAM_BACKGROUNDS", "group_maps"]

GROUPCAM_BACKGROUNDS = ("blur", "black")


def group_maps(activations: torch.Tensor, gradients: torch.Tensor, groups: int,
               threshold: float | None = 70.0) -> torch.Tensor:
    """Steps 1-3: ``[N, C, h, w]`` activations and ``[K, N, C, h, w]`` gradients -> ``[K, N, G, h, w]``."""
    weighted = gradients.mean((-2, -1), keepdim=True) * activations
    maps = F.relu(torch.stack([chunk.sum(2) for chunk in weighted.chunk(groups, dim=2)], dim=2))
    if threshold is None:
        return maps
    flat = maps.flatten(-2)
    cut = torch.quantile(flat, threshold / 100.0, dim=-1, keepdim=True)
    return torch.where(flat > cut, flat, torch.zeros_like(flat)).view_as(maps)


class GroupCAM(PerturbationCAM):
    """Group-CAM; see the module docstring.

    Args:
        model: a classifier taking ``[0, 1]`` images.
        target_layer: layer name or module; ``None`` for the model's default.
        groups: number of channel groups ``G`` (32 in the paper).
        threshold: denoising percentile (70), or ``None`` for none.
        background: ``"blur"`` (paper) or ``"black"``.
        blur_kernel, blur_sigma: the Gaussian blur of the background (51, 50.0).
        batch_size: masked inputs per forward pass (default: :func:`lib.cams.perturbation.default_batch_size`).
        precision: ``"fp32"`` or ``"bf16"`` (CUDA only; also the gradient pass).
        convention: ``"image"`` or ``"normalized"`` (matters only for ``background="black"``).
        progress: tqdm bar over the masked passes (``None``: when a call runs >= 512 of them).
    """

    name = "Group-CAM"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, groups: int = 32, *,
                 threshold: float | None = 70.0, background: str = "blur", blur_kernel: int = 51,
                 blur_sigma: float = 50.0, batch_size: int | None = None, precision: str = "fp32",
                 convention: str = "image", progress: bool | None = None):
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}.")
        if threshold is not None and not 0.0 <= threshold <= 100.0:
            raise ValueError(f"threshold is a percentile in [0, 100] (or None), got {threshold}.")
        if background not in GROUPCAM_BACKGROUNDS:
            raise ValueError(f"Unknown background {background!r}. Fix: use one of {', '.join(GROUPCAM_BACKGROUNDS)}.")
        super().__init__(model, target_layer, batch_size=batch_size, precision=precision, convention=convention,
                         progress=progress)
        self.groups, self.threshold, self.background = groups, threshold, background
        self.blur_kernel, self.blur_sigma = blur_kernel, blur_sigma

    @property
    def forward_passes(self) -> int:
        """``groups + 2``: masked passes, the blurred baseline, and the forward(+backward) pass."""
        return self.groups + 2

    def _raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw maps ``[K, N, H, W]`` and target ids ``[N, K]``."""
        device = images.device
        precision = "bf16" if self._use_bf16(device) else "fp32"
        captured = forward_with_gradients(self.model, images, targets, self.target_layer, precision)
        ids = captured.targets  # [N, K]
        self._channels = captured.activations.shape[1]
        maps = group_maps(captured.activations, captured.gradients, self.groups, self.threshold)  # [K, N, G, h, w]
        with torch.no_grad():
            size = tuple(images.shape[-2:])
            n_img, k, g = images.shape[0], ids.shape[1], maps.shape[2]
            base = self._base(images)
            if self.background == "blur":
                background = self._base(gaussian_blur(images, self.blur_kernel, self.blur_sigma))
            else:
                background = torch.zeros_like(base)
            p_background = self._logits(background).softmax(-1).gather(1, ids)  # [N, K]
            items = maps.transpose(0, 1).flatten(0, 2)  # [N*K*G, h, w], order (image, target, group)

            def scores(chunk: slice) -> torch.Tensor:
                item = torch.arange(chunk.start, chunk.stop, device=device)
                image, target = item // (k * g), (item // g) % k
                up = F.interpolate(items[chunk][:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
                lo = up.flatten(1).amin(1)
                span = up.flatten(1).amax(1) - lo
                masks = torch.where(span[:, None, None] > 0, (up - lo[:, None, None]) / span.clamp_min(1e-30)[:, None, None],
                                    torch.zeros_like(up))[:, None]
                blended = base[image] * masks + background[image] * (1 - masks)
                p = self._logits(blended).softmax(-1).gather(1, ids[image, target][:, None])[:, 0]
                return torch.stack([p, lo, span], dim=1)

            with self._progress_bar(n_img * k * g, self.name) as bar:
                p, lo, span = self._batched(scores, n_img * k * g, device, bar).view(n_img, k, g, 3).unbind(-1)
            weights = torch.where(span > 0, p - p_background[..., None], torch.zeros_like(p))  # [N, K, G]
            coef = torch.where(span > 0, weights / span.clamp_min(1e-30), torch.zeros_like(weights))
            low = torch.einsum("nkg,kngxy->knxy", coef, maps)
            out = upsample(low, size) - (coef * lo).sum(-1).transpose(0, 1)[..., None, None]
            return F.relu(out), ids
