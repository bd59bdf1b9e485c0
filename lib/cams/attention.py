"""AM-Grad-CAM: attention-map-guided Grad-CAM (paper 01, Sections 3.1-3.2).

The paper passes Grad-CAM's feature maps through a CBAM-style channel attention (Eq. 6)
and then a spatial attention (Eq. 7) and reads the result as the explanation.  It does not say
where the attention weights come from, nor exactly which tensor is the "attention map".  Our
reading, stated here and in notebook 01:

* **Grad-CAM features** ``F^k = w_k^c A^k`` (the terms summed in Eq. 3, ``w`` from Eq. 2), divided
  by ``max |F|`` of each image so that the attention sees inputs of a fixed scale (the final map
  is min-max normalised anyway, so this changes nothing but the attention's operating point).
* **Channel attention** (Eq. 6): ``M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))``,
  ``F' = M_c(F) * F``.  **Spatial attention** (Eq. 7):
  ``M_s(F') = sigmoid(f_7x7([AvgPool_c(F'); MaxPool_c(F')]))``, ``F'' = M_s(F') * F'``.
* **Explanation**: ``ReLU(sum_k F''^k)``, i.e. Grad-CAM's Eq. 3 applied to the attended features.
* **Weights**, two variants shown side by side:
  - :class:`ChannelSpatialAttention` (trained): the MLP (reduction 16, as in CBAM) and the 7x7
    conv are *trained* on the frozen classifier with a faithfulness objective
    (:mod:`lib.train_am_gradcam`).  The MLP's last layer and the conv start at zero, so before
    training ``M_c = M_s = 1/2`` everywhere and AM-Grad-CAM *is* Grad-CAM; training moves it
    from there.
  - :class:`ParameterFreeAttention`: no learned weights; the MLP is the identity and the 7x7
    conv a sum, applied to descriptors standardised (z-scored) across channels (channel
    attention) or positions (spatial attention), so the sigmoids are not stuck at 1/2 by the
    tiny scale of gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .gradient import CAM
from .hooks import Captured

__all__ = [
    "ChannelAttention",
    "SpatialAttention",
    "ChannelSpatialAttention",
    "ParameterFreeAttention",
    "gradcam_features",
    "AMGradCAM",
]


def gradcam_features(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``F^k = w_k A^k / max|w A|`` per image: ``[..., N, C, h, w]`` (``w`` = Grad-CAM Eq. 2)."""
    feats = gradients.mean((-2, -1), keepdim=True) * activations
    scale = feats.abs().amax((-3, -2, -1), keepdim=True).clamp_min(1e-12)
    return feats / scale


class ChannelAttention(nn.Module):
    """Eq. 6: ``M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))`` -> ``[N, C, 1, 1]``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        avg = feats.mean((-2, -1), keepdim=True)
        mx = feats.amax((-2, -1), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(mx))


class SpatialAttention(nn.Module):
    """Eq. 7: ``M_s(F) = sigmoid(f_7x7([AvgPool_c(F); MaxPool_c(F)]))`` -> ``[N, 1, h, w]``."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([feats.mean(1, keepdim=True), feats.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class ChannelSpatialAttention(nn.Module):
    """Channel then spatial attention (CBAM order): ``F'' = M_s(F') F'``, ``F' = M_c(F) F``.

    ``zero_init`` (default) zeroes the MLP's output layer and the 7x7 conv, so both attentions
    start at the constant 1/2 and the module starts as an exact rescaling of its input.
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, zero_init: bool = True):
        super().__init__()
        self.channels = channels
        self.reduction = reduction
        self.kernel_size = kernel_size
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)
        if zero_init:
            for p in (*self.channel.mlp[2].parameters(), *self.spatial.conv.parameters()):
                nn.init.zeros_(p)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        feats = self.channel(feats) * feats
        return self.spatial(feats) * feats


def _zscore(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    mean = x.mean(dims, keepdim=True)
    std = x.std(dims, keepdim=True, unbiased=False).clamp_min(1e-12)
    return (x - mean) / std


class ParameterFreeAttention(nn.Module):
    """Eq. 6-7 without learned weights (identity MLP, summing "conv"), on z-scored descriptors."""

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        avg = _zscore(feats.mean((-2, -1), keepdim=True), (1,))
        mx = _zscore(feats.amax((-2, -1), keepdim=True), (1,))
        feats = torch.sigmoid(avg + mx) * feats
        s_avg = _zscore(feats.mean(1, keepdim=True), (-2, -1))
        s_max = _zscore(feats.amax(1, keepdim=True), (-2, -1))
        return torch.sigmoid(s_avg + s_max) * feats


class AMGradCAM(CAM):
    """Attention-map-guided Grad-CAM: ``ReLU(sum_k Attention(F)^k)`` with ``F`` the Grad-CAM features.

    Args:
        model: a :class:`lib.models.Classifier`.
        attention: a :class:`ChannelSpatialAttention` (trained, see :mod:`lib.train_am_gradcam`)
            or :class:`ParameterFreeAttention`; moved to the model's device and put in eval mode.
        target_layer: CAM layer (default: the model's).
    """

    name = "AM-Grad-CAM"
    signed_maps = True

    def __init__(self, model: nn.Module, attention: nn.Module | None = None,
                 target_layer: str | nn.Module | None = None, *, precision: str = "fp32"):
        super().__init__(model, target_layer, precision=precision)
        attention = ParameterFreeAttention() if attention is None else attention
        self.attention = attention.to(next(model.parameters()).device).eval()

    def maps_from(self, captured: Captured, relu: bool = True) -> torch.Tensor:
        feats = gradcam_features(captured.activations, captured.gradients)  # [K, N, C, h, w]
        k, n = feats.shape[:2]
        with torch.no_grad():
            attended = self.attention(feats.flatten(0, 1)).sum(1)
        return (F.relu(attended) if relu else attended).view(k, n, *feats.shape[-2:])

    def differentiable_maps(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        """Raw maps ``[N, h, w]`` with gradients flowing into the attention (for training)."""
        return F.relu(self.attention(gradcam_features(activations, gradients)).sum(1))
