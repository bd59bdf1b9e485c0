"""FM-G-CAM: Fused Multi-class Gradient-weighted Class Activation Map (Rammuni Silva & Bird).

One explanation for the top-K classes at once (``../shared/papers/fm-g-cam.txt``, Sec. 3.1)::

    fm = FMGCAM(model, k=3)                 # top-3 by logit (the paper's K)
    maps = fm(images)                       # [N, K, H, W] in [0, 1]: one map per class, fused
    explanation = fm.explain(images)        # maps + class ids and probabilities for the legend

The steps, each a pure function of tensors:

1. :func:`class_maps` (Eqs. 2-3): per class ``n_k``, channel weights ``alpha_c`` = the spatial
   mean of ``d y^{n_k} / d A^c``, and ``R^{n_k} = 1/C sum_c alpha_c A^c``: the **channel mean**
   of the weighted activations (the authors' library, PROTOCOLS.md), i.e. Grad-CAM's sum / C,
   *without* a ReLU. The K classes' gradients come from one forward and one batched backward pass
   (:func:`lib.cams.hooks.forward_with_gradients` with ``batched_backward=True``).
2. :func:`winner_take_all` (Eq. 4): at each pixel only the class with the largest ``R`` keeps its
   value, the others are set to 0.
3. :func:`l2_normalize` (Eqs. 5-6): ``S' / ||S'||_2`` over the stacked ``[K, h, w]`` tensor.
4. The activation (Eq. 6): ReLU, or GELU / ELU (the library's options, the paper's Fig. 5).
5. **One** min-max over all K maps of an image (not one per map), so the classes stay comparable.

Choices where the paper and the released library (``xai-inference-engine``) differ (PROTOCOLS.md):

* **In-place weighting across classes: not reproduced.** The released code multiplies the
  activations by each class's weights *in place*, so class k sees activations already scaled by
  classes 1..k-1. That is a bug (Eq. 3 weights the same ``A`` for every class); here every class
  weights the unmodified activations.
* **Normalisation axis: the paper's Eq. 6 (``norm="eq6"``, the default).** ``S'`` is the
  ``I x J x K`` concatenation and ``||S'||_2`` its L2 (Frobenius) norm: one positive number per
  image, taken across all classes and pixels. The released code calls
  ``F.normalize(maps, p=2, dim=1)`` on ``[K, H, W]``, i.e. it divides each column of each class
  map by that column's norm over the rows (``norm="released"``). Two other readings are offered
  for comparison (the notebook shows all of them, Fig. 3): ``"pixel"`` (per pixel across the K
  classes: after Eq. 4 only one class is non-zero at a pixel, so this turns every map into its
  sign, a hard partition without intensity) and ``"class"`` (each class map by its own norm over
  the pixels, which equalises strong and weak classes). ``norm=None`` skips Eq. 6's division.

  Consequence, stated rather than hidden: with ReLU, Eq. 6's division by one positive number is
  undone by the final min-max, so ``norm="eq6"`` and ``norm=None`` give the **same** maps
  (tested). It matters for GELU and ELU, which are not scale-invariant: the norm sets the scale
  they see. The visible "L2 effect" of the paper's Fig. 3 matches the released per-column norm.
* **Ties in Eq. 4**: every class equal to the maximum keeps its value (Eq. 4 as written).
* **Resolution**: the fused maps are computed at the target layer's resolution and then
  bilinearly upsampled to the image (the project's convention for every CAM); the renderer
  (:func:`lib.plotting.fused_overlay`) resizes bicubically, as the library displays them.
* **Target layer**: the model's registered layer (the same as Grad-CAM's everywhere in this
  project); the authors took the layer before the last BatchNorm of their ResNet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..maps import minmax_normalize, upsample
from .gradient import CAM, _check_images
from .hooks import Captured, forward_with_gradients
from .targets import Targets, is_multi_target

__all__ = ["FMGCAM", "FusedExplanation", "ACTIVATIONS", "NORMS", "class_maps", "winner_take_all",
           "l2_normalize", "fuse"]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "elu": F.elu,
}
"""Eq. 6's final activation: ReLU (the paper), GELU or ELU (the library's options, Fig. 5)."""

NORMS = ("eq6", "released", "class", "pixel", None)
"""Readings of Eq. 6's L2 normalisation (see the module docstring); ``"eq6"`` is the default."""

NORM_EPS = 1e-12  # F.normalize's epsilon: a zero norm leaves zeros, never NaN


def class_maps(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Unfiltered class maps ``R`` (Eqs. 2-3): ``[N, C, h, w]`` and ``[K, N, C, h, w]`` -> ``[N, K, h, w]``.

    ``alpha_c^{n_k} = 1/(IJ) sum_ij d y^{n_k} / d a_ij^c`` (Eq. 2) and
    ``R^{n_k} = 1/C sum_c alpha_c^{n_k} a^c`` (Eq. 3): signed, no ReLU. Every class weights the
    same, unmodified activations (the released code's in-place weighting is not reproduced).
    """
    weights = gradients.mean((-2, -1))  # [K, N, C]
    maps = (weights[..., None, None] * activations).mean(-3)  # [K, N, h, w]
    return maps.transpose(0, 1)


def winner_take_all(maps: torch.Tensor) -> torch.Tensor:
    """Eq. 4 on ``[N, K, h, w]``: keep ``R^k_ij`` where it is the maximum over the K classes, else 0."""
    winner = maps.amax(1, keepdim=True)
    return torch.where(maps == winner, maps, torch.zeros_like(maps))


def l2_normalize(maps: torch.Tensor, norm: str | None = "eq6") -> torch.Tensor:
    """Eq. 6's ``S' / ||S'||_2`` on ``[N, K, h, w]``, for one of :data:`NORMS`.

    * ``"eq6"``: the norm of each image's whole ``[K, h, w]`` tensor (one number per image);
    * ``"released"``: the authors' ``F.normalize(dim=1)`` on ``[K, H, W]``: over the rows, for
      each class and column;
    * ``"class"``: each class map by its own norm over the pixels;
    * ``"pixel"``: each pixel's K-vector by its norm (after Eq. 4: the sign of the map);
    * ``None``: unchanged.

    A zero norm leaves zeros (never NaN).
    """
    dims = {"eq6": (1, 2, 3), "released": (2,), "class": (2, 3), "pixel": (1,)}
    if norm is None:
        return maps
    if norm not in dims:
        raise ValueError(f"Unknown norm {norm!r}. Fix: use one of {NORMS}.")
    length = maps.pow(2).sum(dims[norm], keepdim=True).sqrt()
    return maps / length.clamp_min(NORM_EPS)


def _minmax_over_classes(maps: torch.Tensor) -> torch.Tensor:
    """One min-max per image over all of ``[K, h, w]`` (``[N, K*h, w]`` for :func:`minmax_normalize`); no NaN."""
    return minmax_normalize(maps.flatten(1, 2)).view_as(maps)


def fuse(maps: torch.Tensor, activation: str = "relu", norm: str | None = "eq6") -> torch.Tensor:
    """Fused maps ``[N, K, h, w]`` in [0, 1] from unfiltered class maps ``R`` (Eqs. 4-6, then one min-max)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}. Fix: use one of {', '.join(ACTIVATIONS)}.")
    fused = ACTIVATIONS[activation](l2_normalize(winner_take_all(maps), norm))
    return _minmax_over_classes(fused)


@dataclass
class FusedExplanation:
    """FM-G-CAM's output for a batch: maps ``[N, K, H, W]``, class ids and softmax probabilities ``[N, K]``."""

    maps: torch.Tensor
    class_ids: torch.Tensor
    probabilities: torch.Tensor
    logits: torch.Tensor


class FMGCAM(CAM):
    """FM-G-CAM (Rammuni Silva & Bird), Eqs. 1-6: top-K Grad-CAM maps fused into one explanation.

    Args:
        model, target_layer, precision: as for every :class:`lib.cams.CAM`.
        k: how many top classes (by logit, Eq. 1) when ``targets`` is None (the paper: 3; its
            Figs. 1 and 6 use 4).
        activation: ``"relu"`` (the paper), ``"gelu"`` or ``"elu"``.
        norm: the reading of Eq. 6 (see the module docstring); ``"eq6"`` by default.

    ``cam(images)`` returns ``[N, K, H, W]``: one map per class of the top-k, together one
    explanation (a pixel is non-zero for the winning class only, before upsampling). ``targets``
    may also be ``"top-k"`` or an ``[N, K]`` tensor of ids (e.g. the two classes of a composite),
    or one class per image (``[N, H, W]``, the registry's common shape).
    """

    name = "FM-G-CAM"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, k: int = 3,
                 activation: str = "relu", norm: str | None = "eq6", *, precision: str = "fp32"):
        super().__init__(model, target_layer, precision=precision)
        if int(k) < 1:
            raise ValueError(f"k must be >= 1 (the number of classes to fuse), got {k}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {activation!r}. Fix: use one of {', '.join(ACTIVATIONS)}.")
        if norm not in NORMS:
            raise ValueError(f"Unknown norm {norm!r}. Fix: use one of {NORMS}.")
        self.k = int(k)
        self.activation = activation
        self.norm = norm

    def _targets(self, targets: Targets | None) -> Targets:
        return f"top{self.k}" if targets is None else targets

    def capture(self, images: torch.Tensor, targets: Targets | None = None) -> Captured:
        """One forward and one batched backward pass for the K classes (activations, gradients, logits, ids).

        ``images`` are checked (:func:`lib.inputs.check_images`).
        """
        _check_images(images, self.model)
        return self._capture(images, targets)

    def _capture(self, images: torch.Tensor, targets: Targets | None = None) -> Captured:
        """:meth:`capture` without the image check."""
        return forward_with_gradients(self.model, images, self._targets(targets), self.target_layer,
                                      self.precision, batched_backward=True)

    def maps_from(self, captured: Captured, relu: bool = True) -> torch.Tensor:
        """Fused maps ``[K, N, h, w]`` (the :class:`CAM` layout) of one capture."""
        return fuse(class_maps(captured.activations, captured.gradients), self.activation, self.norm).transpose(0, 1)

    def raw(self, images: torch.Tensor, targets: Targets | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused maps ``[K, N, h, w]`` and class ids ``[N, K]`` (``targets=None``: the top-k); images checked."""
        return super().raw(images, targets)

    def _raw(self, images: torch.Tensor, targets: Targets | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        captured = self._capture(images, targets)
        return self.maps_from(captured), captured.targets

    def explain(self, images: torch.Tensor, targets: Targets | None = None,
                size: str | tuple[int, int] | None = "input") -> FusedExplanation:
        """Maps ``[N, K, H, W]`` (``size=None``: the layer's ``h x w``), class ids and probabilities ``[N, K]``."""
        _check_images(images, self.model)
        captured = self._capture(images, targets)
        maps = self.maps_from(captured).transpose(0, 1)
        image_size = tuple(images.shape[-2:]) if size == "input" else size
        if image_size is not None:
            maps = upsample(maps, image_size).clamp(0, 1)
        probabilities = captured.logits.softmax(1).gather(1, captured.targets)
        return FusedExplanation(maps, captured.targets, probabilities, captured.logits)

    def __call__(self, images: torch.Tensor, targets: Targets | None = None,
                 size: str | tuple[int, int] | None = "input") -> torch.Tensor:
        """``[N, K, H, W]`` for the top-k (the default) or ``[N, K]`` ids; ``[N, H, W]`` for one class per image.

        One class per image (``"predicted"``, an id, N ids) is the registry's common call shape;
        with K = 1 the fusion is Grad-CAM with one min-max (tested).
        """
        maps = self.explain(images, targets, size).maps
        return maps if targets is None or is_multi_target(targets) else maps[:, 0]
