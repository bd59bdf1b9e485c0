"""Gradient-weighted CAMs: Grad-CAM, Grad-CAM++, XGrad-CAM, SmoothGrad-CAM++.

Each method is a pure function ``(A, G) -> map`` of the target layer's activations
``A [N, C, h, w]`` and the gradients ``G [..., N, C, h, w]`` of the class score w.r.t. them,
wrapped in a class with the shared call shape::

    cam = GradCAM(model, target_layer=None)      # default: the model's registered layer
    maps = cam(images, targets="predicted")       # [N, H, W] in [0, 1] on the model's device

``targets`` may be class ids, ``"predicted"``, ``"top-k"`` or an ``[N, K]`` array of ids (then maps are ``[N, K, H, W]``).
Maps are ReLU'd, min-max normalised per map, then bilinearly upsampled to the image size
(PROTOCOLS.md: "CAM min-max normalised, then upsampled"); ``size=None`` returns the raw
low-resolution maps before normalisation.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..inputs import check_images
from ..maps import minmax_normalize, upsample
from ..precision import precision_autocast
from .hooks import Captured, forward_with_gradients
from .targets import Targets, is_multi_target, resolve_targets

__all__ = [
    "CAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "SmoothGradCAMPlusPlus",
    "gradcam_map",
    "gradcampp_map",
    "xgradcam_map",
    "weighted_sum",
    "finalize_maps",
]

XGRAD_EPS = 1e-7  # pytorch-grad-cam's epsilon in the XGrad-CAM denominator
GRADCAMPP_EPS = 1e-6  # pytorch-grad-cam's epsilon in the Grad-CAM++ alpha denominator


def weighted_sum(activations: torch.Tensor, weights: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """``ReLU(sum_k w_k A^k)`` (Grad-CAM Eq. 3): weights ``[..., N, C]`` -> maps ``[..., N, h, w]``.

    ``relu=False`` returns the signed sum (the partial explanations UCAG folds, Eq. 5).
    """
    maps = (weights[..., None, None] * activations).sum(-3)
    return F.relu(maps) if relu else maps


def gradcam_map(activations: torch.Tensor, gradients: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """Grad-CAM: ``w_k = 1/Z sum_ij dy/dA_ij^k`` (Eq. 2), map = ReLU(sum_k w_k A^k) (Eq. 3)."""
    return weighted_sum(activations, gradients.mean((-2, -1)), relu)


def gradcampp_alpha(activations: torch.Tensor, grad2: torch.Tensor, grad3: torch.Tensor,
                    eps: float = GRADCAMPP_EPS) -> torch.Tensor:
    """Grad-CAM++ alpha (Chattopadhay et al., Eq. 19 with the exp(S) trick).

    ``alpha_ij = g^2_ij / (2 g^2_ij + sum_ab A_ab g^3_ij)``, with the powers of the first
    derivative standing for the higher-order derivatives of ``exp(S^c)``; zero where the
    denominator vanishes (pytorch-grad-cam zeroes it where the gradient is 0).

    ``eps`` is not in the paper; it is pytorch-grad-cam's ``1e-6``.  It is *not* negligible:
    class-score gradients at the last layer are often ~1e-3, so ``g^2`` is ~1e-6 and the eps
    damps alpha where gradients are small.  We keep the peer's value so maps are comparable.
    """
    sum_a = activations.sum((-2, -1), keepdim=True)
    denom = 2 * grad2 + sum_a * grad3 + eps
    alpha = grad2 / denom
    return torch.where(grad2 != 0, alpha, torch.zeros_like(alpha))


def gradcampp_map(activations: torch.Tensor, gradients: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """Grad-CAM++: ``w_k = sum_ij alpha_ij^k ReLU(dy/dA_ij^k)`` then ReLU(sum_k w_k A^k)."""
    alpha = gradcampp_alpha(activations, gradients.pow(2), gradients.pow(3))
    return weighted_sum(activations, (alpha * F.relu(gradients)).sum((-2, -1)), relu)


def xgradcam_map(activations: torch.Tensor, gradients: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """XGrad-CAM (Fu et al., Eq. 9): ``w_k = sum_ij (A_ij^k / sum_ab A_ab^k) dy/dA_ij^k``."""
    sum_a = activations.sum((-2, -1), keepdim=True)
    return weighted_sum(activations, (gradients * activations / (sum_a + XGRAD_EPS)).sum((-2, -1)), relu)


def finalize_maps(maps: torch.Tensor, image_size: tuple[int, int] | None, several_targets: bool) -> torch.Tensor:
    """``[K, N, h, w]`` raw maps (K targets per image) -> maps in [0, 1]: ``[N, H, W]`` for one target
    per image, ``[N, K, H, W]`` when ``several_targets``; min-max normalised per map and upsampled to
    ``image_size`` (``None``: raw, at the layer's resolution)."""
    maps = maps.transpose(0, 1)  # [N, K, h, w]
    if image_size is not None:
        maps = upsample(minmax_normalize(maps), image_size)
    return maps if several_targets else maps[:, 0]


class CAM:
    """Base class: holds the model and target layer; subclasses define :meth:`maps_from` (or :meth:`_raw`).

    The public entry points (``__call__``, :meth:`raw`, :meth:`signed_raw`) check the images once
    (:func:`lib.inputs.check_images`: ``[N, 3, H, W]`` floats in [0, 1], on the model's device)
    and call the unchecked :meth:`_raw` / :meth:`_signed_raw`, which subclasses override and
    which also run on inputs a method builds itself (noisy copies, UCAG's crops).
    """

    name = "cam"
    forward_passes = 1  # forward passes of the network per image (one backward each for gradient CAMs)
    signed_maps = False  # True where signed_raw returns the map before the method's final ReLU

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, *, precision: str = "fp32"):
        self.model = model
        self.target_layer = target_layer
        self.precision = precision  # "fp32" (reference) or "bf16" (autocast forward; see forward_with_gradients)

    def maps_from(self, captured: Captured, relu: bool = True) -> torch.Tensor:
        """Raw maps ``[K, N, h, w]`` from one :func:`forward_with_gradients` capture (``relu=False``: signed)."""
        raise NotImplementedError

    def raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw maps ``[K, N, h, w]`` and target ids ``[N, K]`` (``images`` checked: :func:`lib.inputs.check_images`)."""
        _check_images(images, self.model)
        return self._raw(images, targets)

    def _raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`raw` without the image check: what subclasses define (also run on internal inputs)."""
        captured = forward_with_gradients(self.model, images, targets, self.target_layer, self.precision)
        return self.maps_from(captured), captured.targets

    def signed_raw(self, images: torch.Tensor, targets: Targets = "predicted"
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw maps ``[K, N, h, w]`` before the final ReLU, target ids ``[N, K]`` and logits ``[N, classes]``.

        UCAG folds these partial explanations un-clipped (its Eq. 5 note). Methods with
        ``signed_maps = True`` (the gradient CAMs, EigenCAM, CAM) return the signed map from the
        same pass that gives the logits. The others (Score-CAM, RISE, ...: maps that are
        non-negative by construction, or clipped inside the method) return :meth:`raw`'s maps,
        and one extra forward pass gives the logits. ``images`` are checked
        (:func:`lib.inputs.check_images`); UCAG calls :meth:`_signed_raw` on its upscaled crops.
        """
        _check_images(images, self.model)
        return self._signed_raw(images, targets)

    def _signed_raw(self, images: torch.Tensor, targets: Targets = "predicted"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`signed_raw` without the image check (subclasses with their own signed path override it)."""
        if self.signed_maps:  # raw's one-capture path, with maps_from(captured, relu=False)
            captured = forward_with_gradients(self.model, images, targets, self.target_layer, self.precision)
            return self.maps_from(captured, relu=False), captured.targets, captured.logits
        maps, target_ids = self._raw(images, targets)
        with torch.no_grad(), precision_autocast(images.device, self.precision):
            logits = self.model(images).float()
        return maps, target_ids, logits

    def __call__(self, images: torch.Tensor, targets: Targets = "predicted",
                 size: str | tuple[int, int] | None = "input") -> torch.Tensor:
        _check_images(images, self.model)
        maps, _ = self._raw(images, targets)
        image_size = tuple(images.shape[-2:]) if size == "input" else size
        return finalize_maps(maps, image_size, is_multi_target(targets))


class _CombineCAM(CAM):
    """A map that is a pure function ``combine(A, G, relu)`` of one capture (shared by UCAG across methods)."""

    combine: Callable[..., torch.Tensor]
    signed_maps = True

    def maps_from(self, captured: Captured, relu: bool = True) -> torch.Tensor:
        return type(self).combine(captured.activations, captured.gradients, relu=relu)


class GradCAM(_CombineCAM):
    """Grad-CAM (Selvaraju et al. 2017), Eq. 1-3 of the attention-guided paper."""

    name = "Grad-CAM"
    combine = staticmethod(gradcam_map)


class GradCAMPlusPlus(_CombineCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018), alpha from second/third powers of the gradient."""

    name = "Grad-CAM++"
    combine = staticmethod(gradcampp_map)


class XGradCAM(_CombineCAM):
    """XGrad-CAM (Fu et al. 2020): activation-weighted, normalised gradients."""

    name = "XGrad-CAM"
    combine = staticmethod(xgradcam_map)


class SmoothGradCAMPlusPlus(CAM):
    """SmoothGrad-CAM++ (Omeiza et al. 2019): Grad-CAM++ maps averaged over noisy copies.

    ``M(x) = 1/n sum_s GradCAM++(x + eps_s)`` (SmoothGrad's definition, Smilkov et al. 2017,
    applied to Grad-CAM++): each noisy copy gets its own activations *and* gradients, and the raw
    maps are averaged before the one min-max normalisation.

    Why not TorchCAM's variant (activations of the clean image, only the gradient powers
    averaged)?  On a head of global average pooling + linear layer (EfficientNet-Lite, ResNet-50)
    the gradient of a class score w.r.t. the last feature maps is ``W_c / Z`` whatever the input,
    so averaging gradients over noise changes nothing and that variant *is* Grad-CAM++ exactly,
    which cannot be how the papers got different numbers for the two.

    Noise: ``n_samples = 4`` Gaussian copies with standard deviation ``0.3`` *in the normalised
    tensor* (TorchCAM's defaults, the ones UCAG uses), i.e. ``0.3 * std_c`` per channel on the
    [0, 1] image, from a generator seeded with ``seed``.  Each image gets the same ``n_samples``
    noise tensors (drawn once per call, ``[n_samples, 1, 3, H, W]``, broadcast over the batch), so a
    map is a function of the image and the seed, whatever batch it is computed in, and can be stored
    (:class:`lib.analysis.map_store.MapStore`); TorchCAM draws new noise per call instead.  The noisy
    copies of a batch go through the network together (one forward and backward for all of them).
    """

    name = "SmoothGrad-CAM++"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None,
                 n_samples: int = 4, noise_std: float = 0.3, seed: int = 0, *, precision: str = "fp32"):
        super().__init__(model, target_layer, precision=precision)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        self.n_samples = n_samples
        self.noise_std = noise_std
        self.seed = seed

    @property
    def forward_passes(self) -> int:
        return self.n_samples + 1  # the clean pass picks the targets

    signed_maps = True

    def _raw(self, images, targets="predicted"):
        maps, target_ids, _ = self._maps(images, targets, relu=True)
        return maps, target_ids

    def _signed_raw(self, images, targets="predicted"):
        return self._maps(images, targets, relu=False)

    def _maps(self, images, targets, relu: bool):
        """Maps averaged over the noisy copies (each ReLU'd when ``relu``), target ids, clean logits."""
        model = self.model
        with torch.no_grad(), precision_autocast(images.device, self.precision):
            logits = model(images).float()
        target_ids = resolve_targets(logits, targets)
        std = torch.as_tensor(model.preprocess.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        generator = torch.Generator(device=images.device).manual_seed(self.seed)
        noise = torch.randn((self.n_samples, 1, *images.shape[1:]), generator=generator, device=images.device,
                            dtype=images.dtype)  # the same noise for every image: maps do not depend on the batch
        noisy = (images.unsqueeze(0) + self.noise_std * std * noise).flatten(0, 1)  # [n*N, 3, H, W]
        captured = forward_with_gradients(model, noisy, target_ids.repeat(self.n_samples, 1), self.target_layer,
                                          self.precision)
        maps = gradcampp_map(captured.activations, captured.gradients, relu)  # [K, n*N, h, w]
        return maps.unflatten(1, (self.n_samples, images.shape[0])).mean(1), target_ids, logits


def _check_images(images: torch.Tensor, model: nn.Module) -> None:
    """The user's images (:func:`lib.inputs.check_images`) and that they are on the model's device."""
    check_images(images)
    device = next(model.parameters()).device
    if images.device != device:
        raise ValueError(f"images are on {images.device} but the model is on {device}. Fix: images.to(model.device).")
