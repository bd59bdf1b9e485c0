"""L-CAM (Gkartzonika, Gkalelis & Mezaris 2022): a learned attention over the last feature maps.

The attention mechanism ``g`` (Eq. 2-3) is one 1x1 convolution from the ``K`` channels of the
target layer's feature maps ``A [N, K, P, Q]`` to one map per class::

    L^(c) = sum_k w_k^(c) A_k + b^(c) J          (Eq. 3, pre-sigmoid)
    M^(c) = sigma(L^(c))                          (the training mask, in [0, 1])

It is trained on the *frozen* classifier (see :mod:`lib.train_lcam`) with one of two
architectures, both pure functions here:

* **L-CAM-Img** (Eq. 5, Fig. 2b), :func:`lcam_img_logits`: the mask of the model-truth class,
  bilinearly upsampled to the input size, multiplies the ``[0, 1]`` image, and the classifier
  (which normalises inside ``forward``) runs on it: ``model(x * up(M))``.  The authors' code
  multiplies the unnormalised image and normalises after (PROTOCOLS.md).
* **L-CAM-Fm** (Eq. 4, Fig. 2a), :func:`lcam_fm_logits`: the mask multiplies the target layer's
  feature maps, ``A * M``, and the rest of the network (pooling, classifier) runs on that.  Done
  with a forward hook that replaces the target layer's output, so it works for any classifier;
  :func:`gap_linear_logits` is the same computation in closed form for heads made of global
  average pooling + one linear layer (``fc(mean(A * M))``), which the trainer uses when the head
  passes :func:`check_gap_linear_head`.

Inference (Sec. 3.3, Eq. 9, Fig. 2c), :class:`LCAM`: **one** forward pass of the classifier gives
the feature maps (captured at the target layer) and the logits, hence the model-truth class;
the attention's row of that class gives ``L``; the saliency map is ``theta(zeta(L))``: min-max
normalisation, then bilinear upsampling to the image (:func:`lib.cams.gradient.finalize_maps`,
the same post-processing as the other CAMs).

Choices where the paper is open, and their sources:

* The map at inference is the **pre-sigmoid** ``L`` (Eq. 9 normalises ``L^(y)``; the authors'
  evaluation code takes ``get_c``, the convolution output before the sigmoid, min-max normalises
  it, then upsamples with ``F.interpolate(bilinear, align_corners=False)``).  ``sigmoid=True``
  gives ``theta(zeta(sigma(L)))`` instead; both rank the *low-resolution* cells identically (the
  sigmoid is monotone) but the upsampled maps differ slightly.
* No ReLU (unlike CAM / Grad-CAM): the paper applies none, and min-max handles negative values.
* **CAM initialisation** (:meth:`LCAMAttention.from_classifier`, PROTOCOLS.md): with only a small
  training sample, the rows are initialised from the classifier's own final linear layer when
  the head is global average pooling + that layer: ``w^(c) = W_c``, ``b^(c) = b_c``.  Then
  ``L^(c) = W_c . A + b_c`` is CAM's map (Zhou et al. 2016) plus a constant, so the untrained
  L-CAM map *is* CAM after min-max (before CAM's ReLU).  The authors train from PyTorch's default
  initialisation (``init="random"`` in the trainer).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..maps import upsample
from ..models import resolve_layer
from .activation import OriginalCAM, forward_activations
from .gradient import CAM
from .targets import Targets

__all__ = [
    "LCAM",
    "LCAMAttention",
    "check_gap_linear_head",
    "gap_linear_logits",
    "lcam_fm_logits",
    "lcam_img_logits",
    "probe_images",
    "scale_output",
]


class LCAMAttention(nn.Module):
    """L-CAM's attention mechanism ``g`` (Eq. 3): 1x1 ``Conv2d(K -> R, bias=True)`` + sigmoid.

    ``forward(A)`` returns ``sigma(L)`` for every class, ``[N, R, P, Q]`` (the authors' ``a``);
    :meth:`class_logits` returns the pre-sigmoid ``L`` of selected classes only (one einsum over
    the selected rows, no need to compute all ``R`` maps).
    """

    def __init__(self, channels: int, num_classes: int = 1000):
        super().__init__()
        if channels < 1 or num_classes < 1:
            raise ValueError(f"channels and num_classes must be >= 1, got {channels} and {num_classes}.")
        self.channels = int(channels)
        self.num_classes = int(num_classes)
        self.conv = nn.Conv2d(self.channels, self.num_classes, kernel_size=1, bias=True)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid maps ``L`` of every class (Eq. 3): ``[N, K, P, Q]`` -> ``[N, R, P, Q]``."""
        self._check_features(features)
        return self.conv(features)

    def forward(self, features: torch.Tensor, class_ids: torch.Tensor | None = None) -> torch.Tensor:
        """``sigma(L)`` of every class, ``[N, R, P, Q]`` in [0, 1]; of chosen classes with ``class_ids``.

        ``class_ids`` (``[N, J]`` or ``[J]``, as :meth:`class_logits`): ``sigma`` of
        ``class_logits(features, class_ids)``, ``[N, J, P, Q]``.  The trainer calls this form, so that
        a ``DistributedDataParallel`` wrapper around the attention sees the forward it must (it
        all-reduces the gradients of what its own ``forward`` computed).
        """
        if class_ids is not None:
            return torch.sigmoid(self.class_logits(features, class_ids))
        return torch.sigmoid(self.logits(features))

    def class_logits(self, features: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid maps of chosen classes: ``A [N, K, P, Q]``, ids ``[N, J]`` -> ``[N, J, P, Q]``.

        Row ``j`` of image ``n`` is ``L^(c)`` with ``c = class_ids[n, j]``: equal to
        ``self.logits(A)[n, c]`` (tested), computed from the selected rows only.  1-D ids ``[J]``
        select the same ``J`` classes for every image (``self.logits(A)[:, ids]``).
        """
        self._check_features(features)
        weight = self.conv.weight[:, :, 0, 0]
        features = features.to(weight.dtype)
        if class_ids.ndim == 1:
            maps = torch.einsum("jk,nkpq->njpq", weight[class_ids], features)
            return maps + self.conv.bias[class_ids][None, :, None, None]
        if class_ids.ndim != 2 or class_ids.shape[0] != features.shape[0]:
            raise ValueError(f"class_ids must be [N, J] or [J] with N = {features.shape[0]}, "
                             f"got {tuple(class_ids.shape)}.")
        maps = torch.einsum("njk,nkpq->njpq", weight[class_ids], features)
        return maps + self.conv.bias[class_ids][..., None, None]

    def _check_features(self, features: torch.Tensor) -> None:
        if features.ndim != 4 or features.shape[1] != self.channels:
            raise ValueError(
                f"L-CAM attention expects feature maps [N, {self.channels}, P, Q], got {tuple(features.shape)}. "
                "Fix: use the target layer it was trained on (its checkpoint names it) or train one for this layer."
            )

    @classmethod
    def from_classifier(cls, model: nn.Module, target_layer: str | nn.Module | None = None,
                        fc: str | nn.Linear | None = None, probe: torch.Tensor | None = None) -> "LCAMAttention":
        """Rows initialised from the classifier's final linear layer: ``conv.weight = fc.weight[:, :, None, None]``.

        Valid only when the head after ``target_layer`` is global average pooling + ``fc`` (checked
        with :func:`check_gap_linear_head` on ``probe`` images, default :func:`probe_images`); then
        ``L^(c) = W_c . A + b_c`` is CAM's map plus a constant.  The module is created on the CPU
        in float32 (move it with ``.to(device)``).

        Raises:
            ValueError naming the fix (``init="random"``) when the head is anything else.
        """
        linear = check_gap_linear_head(model, target_layer, fc, probe)
        attention = cls(linear.in_features, linear.out_features)
        with torch.no_grad():
            attention.conv.weight.copy_(linear.weight.detach().float().cpu()[:, :, None, None])
            if linear.bias is not None:
                attention.conv.bias.copy_(linear.bias.detach().float().cpu())
            else:
                attention.conv.bias.zero_()
        return attention


def probe_images(model: nn.Module, n: int = 2, seed: int = 0) -> torch.Tensor:
    """``n`` seeded uniform-noise images in [0, 1] at the model's crop size, on its device (head checks)."""
    crop = getattr(getattr(model, "preprocess", None), "crop", 224)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    return torch.rand((n, 3, crop, crop), generator=generator).to(device)


def check_gap_linear_head(model: nn.Module, target_layer: str | nn.Module | None = None,
                          fc: str | nn.Linear | None = None, probe: torch.Tensor | None = None) -> nn.Linear:
    """The final linear layer, after checking that ``logits = fc(GAP(A))`` (OriginalCAM's head check).

    One forward pass on ``probe`` (default: two seeded noise images) captures the target layer's
    output ``A``; :class:`lib.cams.OriginalCAM`'s checks then require ``fc.in_features`` to equal
    the channels of ``A`` and ``fc(mean(A))`` to reproduce the logits.  Raises ``ValueError``
    saying that L-CAM's CAM initialisation / closed-form head needs such a head and what to use
    instead.
    """
    try:
        cam = OriginalCAM(model, target_layer, fc)
        probe = probe_images(model) if probe is None else probe
        activations, logits, _ = forward_activations(model, probe, "predicted", target_layer)
        cam._check_head(activations, logits)
    except ValueError as err:
        raise ValueError(
            f"L-CAM: the classifier's head is not global average pooling + one linear layer, so the attention "
            f"cannot be initialised from it (or the head computed in closed form). {err} "
            "Fix for L-CAM: train from a random initialisation (init='random', CLI --init random), as the "
            "L-CAM authors do; L-CAM itself works on any head."
        ) from err
    return cam.fc


# --- the two training architectures (Fig. 2a, 2b) ----------------------------------------------

def lcam_img_logits(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """L-CAM-Img (Eq. 5): ``model(x * up(M))``, the mask upsampled to the image and applied to [0, 1] pixels.

    ``images [N, 3, H, W]`` in [0, 1], ``masks [N, P, Q]`` in [0, 1] (one map per image) ->
    logits ``[N, R]``.  ``up`` is bilinear with ``align_corners=False`` (:func:`lib.maps.upsample`,
    the authors' ``F.interpolate(..., mode='bilinear')``).  The classifier normalises inside
    ``forward`` (:class:`lib.models.Classifier`), i.e. *after* masking, as in the authors' code:
    masked pixels are black, not the dataset mean.  Gradients flow to ``masks`` through the
    whole (frozen) network.
    """
    if masks.ndim != 3 or masks.shape[0] != images.shape[0]:
        raise ValueError(f"masks must be [N, P, Q] with N = {images.shape[0]}, got {tuple(masks.shape)}.")
    return model(images * upsample(masks, tuple(images.shape[-2:])).unsqueeze(1).to(images.dtype))


@contextlib.contextmanager
def scale_output(module: nn.Module, scale: torch.Tensor) -> Iterator[None]:
    """Context manager: a forward hook making ``module`` return ``output * scale``; removed on exit."""

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"L-CAM-Fm: the target layer returns {type(output).__name__}, not a tensor. "
                            "Fix: pick a layer whose output is the [N, K, P, Q] feature maps.")
        return output * scale.to(output.dtype)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def lcam_fm_logits(model: nn.Module, images: torch.Tensor, masks: torch.Tensor,
                   target_layer: str | nn.Module | None = None) -> torch.Tensor:
    """L-CAM-Fm (Eq. 4): the network with the target layer's output ``A`` replaced by ``A * M``.

    ``images [N, 3, H, W]`` in [0, 1], ``masks [N, P, Q]`` at the feature maps' size -> logits.
    Every channel ``k`` becomes ``A_k * M`` (broadcast over channels), then the layers after the
    target layer (pooling, classifier) run unchanged.  A forward hook does the replacement, so any
    classifier works; the layers before the target layer run again (their parameters need no
    gradient, so no graph is built through them).
    """
    if masks.ndim != 3 or masks.shape[0] != images.shape[0]:
        raise ValueError(f"masks must be [N, P, Q] with N = {images.shape[0]}, got {tuple(masks.shape)}.")
    with scale_output(resolve_layer(model, target_layer), masks.unsqueeze(1)):
        return model(images)


def gap_linear_logits(features: torch.Tensor, masks: torch.Tensor, fc: nn.Linear) -> torch.Tensor:
    """L-CAM-Fm for a global-average-pooling + linear head, in closed form: ``fc(mean_pq(A * M))``.

    Equal to :func:`lcam_fm_logits` when the head passed :func:`check_gap_linear_head` (tested);
    it reuses the feature maps ``A [N, K, P, Q]`` of the unmasked pass instead of running the
    backbone again (what the authors' ResNet-50 L-CAM-Fm does).
    """
    pooled = (features * masks.unsqueeze(1).to(features.dtype)).mean((-2, -1))
    return F.linear(pooled.to(fc.weight.dtype), fc.weight, fc.bias)


# --- inference (Sec. 3.3, Eq. 9) ---------------------------------------------------------------

class LCAM(CAM):
    """L-CAM-Fm / L-CAM-Img at inference (Eq. 9, Fig. 2c): one forward pass, no gradients.

    ``LCAM(model, attention)(images, targets)`` -> ``[N, H, W]`` in [0, 1] (``[N, k, H, W]`` for
    ``"top-k"``), the shared call shape of :mod:`lib.cams`.  The two variants differ only in how
    the attention was trained; pass the trained :class:`LCAMAttention` (e.g. from
    :func:`lib.train_lcam.load_lcam`).

    One forward pass of the classifier per batch captures the target layer's feature maps ``A``
    and the logits; ``targets`` ("predicted" = the model-truth label of the paper, "top-k", or
    class ids: :func:`lib.cams.targets.resolve_targets`) select rows of the attention; the raw
    map is ``L = W_c . A + b_c`` (``sigmoid=True``: ``sigma(L)``), then min-max normalised and
    bilinearly upsampled (``size=None`` returns the raw low-resolution maps).  Hooks are removed
    after every call; neither the model nor the attention is changed.
    """

    name = "L-CAM"
    forward_passes = 1

    def __init__(self, model: nn.Module, attention: LCAMAttention, target_layer: str | nn.Module | None = None,
                 *, sigmoid: bool = False, precision: str = "fp32"):
        super().__init__(model, target_layer, precision=precision)
        if not isinstance(attention, LCAMAttention):
            raise TypeError(f"attention must be an LCAMAttention, got {type(attention).__name__}. "
                            "Fix: load one with lib.train_lcam.load_lcam(path) or build LCAMAttention.from_classifier(model).")
        model_device = next(model.parameters()).device
        att_device = attention.conv.weight.device
        if att_device != model_device:
            raise ValueError(f"The attention is on {att_device} but the model on {model_device}. "
                             "Fix: attention.to(model.device) (or load_lcam(path, device)).")
        self.attention = attention
        self.sigmoid = bool(sigmoid)

    def _raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw maps ``[K, N, P, Q]`` (pre-sigmoid ``L`` unless ``sigmoid``) and target ids ``[N, K]``."""
        activations, _, target_ids = forward_activations(self.model, images, targets, self.target_layer,
                                                         self.precision)
        with torch.no_grad():
            maps = self.attention.class_logits(activations, target_ids)  # [N, K, P, Q]
            if self.sigmoid:
                maps = torch.sigmoid(maps)
        return maps.float().transpose(0, 1), target_ids
