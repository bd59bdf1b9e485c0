"""Score-CAM (Wang et al., CVPR-W 2020): feature maps weighted by the score of the image they mask.

For each channel ``k`` of the target layer's activations ``A [N, C, h, w]``:

1. upsample ``A_k`` bilinearly to the input size and min-max normalise it to a mask
   ``H_k in [0, 1]`` (a constant channel gives an all-zero mask);
2. run the classifier on the masked input ``X * H_k`` (see ``convention`` in
   :mod:`lib.cams.perturbation`) and take a score ``S_k`` of the target class;
3. turn the scores into channel weights ``w_k`` and return ``ReLU(sum_k w_k A_k)``.

Three reference implementations disagree on steps 1-3; ``baseline=`` picks whose conventions to
follow, exactly (checked against pytorch-grad-cam in ``tests/test_perturbation_cams.py``):

======================  =========================================  ===================================  ==========================
``baseline``            mask ``H_k``                               score ``S_k``, weight ``w_k``         map
======================  =========================================  ===================================  ==========================
``"paper"`` (default)   upsample (bilinear, ``align_corners=False``) ``S_k = softmax(f(X*H_k))_c`` (the   ``ReLU(sum_k w_k Up(A_k))``
                        then min-max; constant channels skipped    class *probability*), ``w_k = S_k``  at the input size
                        (``w_k = 0``)                              (no softmax over channels)
``"pytorch-grad-cam"``  upsample (``align_corners=True``) then     ``S_k = f(X*H_k)_c`` (the *logit*),  ``ReLU(sum_k w_k A_k)``
                        min-max with ``+1e-8`` in the denominator  ``w = softmax_k(S)`` over channels   at the layer's size
``"torchcam"``          min-max at the layer's size (``+1e-8``),   ``S_k = f(X*H_k)_c - f(X)_c`` (logit  ``ReLU(sum_k w_k A_k)``
                        then upsample (``align_corners=False``)    minus the unmasked logit),           at the layer's size
                                                                   ``w = softmax_k(S)`` over channels
======================  =========================================  ===================================  ==========================

``"paper"`` is the authors' code (github.com/haofanwang/Score-CAM, ``cam/scorecam.py``), which is
also what PROTOCOLS.md describes ("softmax score of the class").  Note on ``"torchcam"``: TorchCAM
subtracts the unmasked *logit* of the class (the paper's ``f(X) - f(X_b)`` increase of
confidence), but then takes a softmax over the channels, and a softmax is invariant to subtracting
one constant from all its inputs: TorchCAM's weights equal pytorch-grad-cam's up to rounding.  The
two differ only in the order of normalisation and upsampling and in ``align_corners``.

All three mask the tensor the model is given; with a :class:`lib.models.Classifier` that is the
``[0, 1]`` image by default, and the normalised tensor (what the three reference codes multiply)
with ``convention="normalized"``.

Cost: ``C`` masked forward passes per image (1280 for EfficientNet-Lite0's head, 2048 for
ResNet-50's layer4, 512 for VGG-16) plus one unmasked pass.  Every target of a top-k request comes
from the same masked passes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..maps import upsample
from .perturbation import PerturbationCAM
from .targets import Targets, resolve_targets

__all__ = ["ScoreCAM", "SCORECAM_BASELINES", "scorecam_masks"]

SCORECAM_BASELINES = ("paper", "pytorch-grad-cam", "torchcam")
_EPS = 1e-8  # pytorch-grad-cam's and TorchCAM's epsilon in the min-max denominator


def scorecam_masks(activations: torch.Tensor, size: tuple[int, int], baseline: str = "paper") -> torch.Tensor:
    """Masks ``[B, H, W]`` in [0, 1] from activation maps ``[B, h, w]`` (step 1 above)."""
    a = activations[:, None].float()
    if baseline == "torchcam":
        flat = a.flatten(-2)
        lo = flat.amin(-1, keepdim=True)[..., None]
        a = (a - lo) / ((flat.amax(-1, keepdim=True)[..., None] - lo) + _EPS)
        return F.interpolate(a, size=size, mode="bilinear", align_corners=False)[:, 0]
    up = F.interpolate(a, size=size, mode="bilinear", align_corners=baseline == "pytorch-grad-cam")[:, 0]
    flat = up.flatten(-2)
    lo = flat.amin(-1)[:, None, None]
    span = flat.amax(-1)[:, None, None] - lo
    if baseline == "pytorch-grad-cam":
        return (up - lo) / (span + _EPS)
    return torch.where(span > 0, (up - lo) / span.clamp_min(torch.finfo(up.dtype).tiny), torch.zeros_like(up))


class ScoreCAM(PerturbationCAM):
    """Score-CAM with the conventions of ``baseline`` (see the module docstring).

    Args:
        model: a classifier (:class:`lib.models.Classifier`: takes ``[0, 1]`` images).
        target_layer: layer name or module; ``None`` for the model's default.
        baseline: ``"paper"`` (authors' code, default), ``"pytorch-grad-cam"`` or ``"torchcam"``.
        batch_size: masked inputs per forward pass (default: :func:`lib.cams.perturbation.default_batch_size`).
        precision: ``"fp32"`` or ``"bf16"`` (autocast + channels-last, CUDA only).
        convention: ``"image"`` (mask the ``[0, 1]`` image) or ``"normalized"`` (mask the
            normalised tensor, as the reference codes do).
        progress: tqdm bar over the masked passes (``None``: when a call runs >= 512 of them).
    """

    name = "Score-CAM"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, baseline: str = "paper", *,
                 batch_size: int | None = None, precision: str = "fp32", convention: str = "image",
                 progress: bool | None = None):
        if baseline not in SCORECAM_BASELINES:
            raise ValueError(f"Unknown Score-CAM baseline {baseline!r}. Fix: use one of {', '.join(SCORECAM_BASELINES)}.")
        super().__init__(model, target_layer, batch_size=batch_size, precision=precision, convention=convention,
                         progress=progress)
        self.baseline = baseline

    @property
    def forward_passes(self) -> int:
        """``C + 1``: one masked pass per channel of the target layer plus the unmasked pass."""
        return self.num_channels() + 1

    def channel_scores(self, images: torch.Tensor, activations: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Step 2 for every channel: scores ``S [N, C, K]`` of target ids ``[N, K]`` (C forward passes per image).

        ``activations [N, C, h, w]`` may be any channels (e.g. a subset, in tests).
        """
        device = images.device
        n_img, c = activations.shape[:2]
        size = tuple(images.shape[-2:])
        base = self._base(images)
        flat = activations.flatten(0, 1)  # [N*C, h, w]: item i is channel i % C of image i // C

        def scores(chunk: slice) -> torch.Tensor:
            image = torch.arange(chunk.start, chunk.stop, device=device) // c
            masks = scorecam_masks(flat[chunk], size, self.baseline)
            out = self._logits(base[image] * masks[:, None])
            if self.baseline == "paper":
                out = out.softmax(-1)
            return out.gather(1, ids[image])  # [b, K]

        with torch.no_grad(), self._progress_bar(n_img * c, self.name) as bar:
            return self._batched(scores, n_img * c, device, bar).view(n_img, c, -1)

    def _raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw maps (``[K, N, h, w]``; ``[K, N, H, W]`` for ``baseline="paper"``) and target ids ``[N, K]``."""
        with torch.no_grad():
            acts, logits = self._forward_capture(images)
            ids = resolve_targets(logits, targets)  # [N, K]
            size = tuple(images.shape[-2:])
            s = self.channel_scores(images, acts, ids)  # [N, C, K]

            if self.baseline == "paper":
                constant = acts.flatten(-2).amax(-1) == acts.flatten(-2).amin(-1)  # [N, C]
                weights = torch.where(constant[..., None], torch.zeros_like(s), s)
            elif self.baseline == "torchcam":
                weights = (s - logits.gather(1, ids)[:, None, :]).softmax(1)
            else:
                weights = s.softmax(1)
            maps = torch.einsum("nck,nchw->knhw", weights, acts)
            if self.baseline == "paper":  # the authors sum the upsampled maps, then ReLU
                maps = upsample(maps, size)
            return F.relu(maps), ids
