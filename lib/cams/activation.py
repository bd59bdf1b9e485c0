"""Element-wise gradient CAMs (LayerCAM, HiResCAM) and activation CAMs (EigenCAM, CAM).

Same call shape as :mod:`lib.cams.gradient`::

    maps = LayerCAM(model, target_layer=None)(images, targets="predicted", size="input")

* :class:`LayerCAM` and :class:`HiResCAM` are pure functions ``(A, G) -> map`` like Grad-CAM
  (one forward, gradients of the logits w.r.t. the target layer only).
* :class:`EigenCAM` needs no gradients: the activations' projection on their first principal
  component; class-agnostic (targets only set the output shape).
* :class:`OriginalCAM` is CAM of Zhou et al. 2016 (``lib.cams.CAM`` is already the base class's
  name): the final linear layer's weights of the class times the activations; defined for heads
  made of global average pooling + one linear layer only, checked on every call.

All raw maps are ReLU'd (pytorch-grad-cam applies ``np.maximum(cam, 0)`` to every method), then
min-max normalised and upsampled by :func:`lib.cams.gradient.finalize_maps`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models import resolve_layer
from .gradient import CAM, _CombineCAM
from ..precision import precision_autocast
from .hooks import capture_layer
from .targets import Targets, resolve_targets

__all__ = [
    "LayerCAM",
    "HiResCAM",
    "EigenCAM",
    "OriginalCAM",
    "layercam_map",
    "hirescam_map",
    "principal_projection",
    "eigencam_map",
    "forward_activations",
    "find_last_linear",
    "EIGEN_SIGNS",
]


# --- element-wise gradient CAMs -----------------------------------------------------------

def layercam_map(activations: torch.Tensor, gradients: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021, Eq. 5-6): ``ReLU(sum_k ReLU(dy/dA_ij^k) A_ij^k)``.

    ``A [N, C, h, w]``, ``G [..., N, C, h, w]`` -> ``[..., N, h, w]``.  The outer ReLU is the
    paper's; pytorch-grad-cam's base class applies the same one; ``relu=False`` drops it (the
    inner ReLU on the gradients is the method's and stays).
    """
    maps = (F.relu(gradients) * activations).sum(-3)
    return F.relu(maps) if relu else maps


def hirescam_map(activations: torch.Tensor, gradients: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020): ``ReLU(sum_k dy/dA_ij^k A_ij^k)``.

    The paper's map is the plain sum (signed); the ReLU is pytorch-grad-cam's (its base class
    clips every method's map at 0 before normalising), kept so maps are comparable.  On a head of
    global average pooling + linear layer the gradient is constant per channel, and HiResCAM
    equals Grad-CAM exactly. ``relu=False``: the paper's signed sum.
    """
    maps = (gradients * activations).sum(-3)
    return F.relu(maps) if relu else maps


class LayerCAM(_CombineCAM):
    """LayerCAM (Jiang et al. 2021): positive gradients weight the activations pixel by pixel."""

    name = "LayerCAM"
    combine = staticmethod(layercam_map)


class HiResCAM(_CombineCAM):
    """HiResCAM (Draelos & Carin 2020): gradient times activation, summed over channels."""

    name = "HiResCAM"
    combine = staticmethod(hirescam_map)


# --- activation-only forward --------------------------------------------------------------

def forward_activations(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted",
                        layer: str | nn.Module | None = None, precision: str = "fp32"
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward pass without gradients: activations ``[N, C, h, w]``, logits, target ids ``[N, K]``.

    Uses ``capture_layer(with_grad=True)`` inside ``torch.no_grad()`` on purpose: that mode hands
    the downstream layers a *clone* of the output, so in-place operations after the target layer
    cannot overwrite the captured activations.  ``with_grad=False`` stores an alias, and e.g.
    torchvision's DenseNet applies ``F.relu(..., inplace=True)`` right after ``features.norm5``
    (its default layer), which would silently turn the captured BatchNorm output into its ReLU.
    Under ``no_grad`` no graph is built either way.  ``precision="bf16"`` runs the forward under
    bfloat16 autocast; activations and logits are returned in float32.
    """
    with capture_layer(model, layer, with_grad=True) as cap, torch.no_grad(), \
            precision_autocast(images.device, precision):
        logits = model(images).float()
        activations = cap.require().detach().float()
        target_ids = resolve_targets(logits, targets)
    return activations, logits, target_ids


class _ActivationCAM(CAM):
    """CAMs computed from one gradient-free forward: subclasses define :meth:`maps_from_activations`."""

    signed_maps = True

    def maps_from_activations(self, activations: torch.Tensor, logits: torch.Tensor,
                              target_ids: torch.Tensor, relu: bool = True) -> torch.Tensor:
        """Raw maps ``[K, N, h, w]`` (``relu=False``: before the final ReLU)."""
        raise NotImplementedError

    def _raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        maps, target_ids, _ = self._maps(images, targets, relu=True)
        return maps, target_ids

    def _signed_raw(self, images, targets="predicted"):
        return self._maps(images, targets, relu=False)

    def _maps(self, images, targets, relu: bool):
        activations, logits, target_ids = forward_activations(self.model, images, targets, self.target_layer,
                                                              self.precision)
        return self.maps_from_activations(activations, logits, target_ids, relu), target_ids, logits


# --- EigenCAM -----------------------------------------------------------------------------

EIGEN_SIGNS = ("activation", "max", "svd")


def principal_projection(activations: torch.Tensor, sign: str = "activation") -> torch.Tensor:
    """Signed projection of ``A [N, C, h, w]`` on its first principal component: ``[N, h, w]``.

    pytorch-grad-cam's ``get_2d_projection`` conventions: NaNs set to 0; the ``[h*w, C]`` matrix
    (pixels as samples, channels as features) centred per channel over the pixels; projection
    ``X_centred @ v`` with ``v`` the first right singular vector.  Batched ``torch.linalg.svd``
    in the activations' dtype (float32, like the peer's NumPy call).

    ``sign`` fixes the SVD's arbitrary sign (``v`` and ``-v`` are both valid):

    * ``"activation"`` (default): orient ``v`` so that the projection correlates positively with
      the (centred) total activation ``sum_k A_k``, i.e. positive where the layer fires more;
      equivalently ``sum_k v_k > 0``.  This is the orientation of EigenCAM's uncentred SVD on
      non-negative activations (Perron-Frobenius), deterministic on every backend.
    * ``"max"``: flip where ``|min| > |max|`` (Seg-Eigen-CAM Eq. 13, pytorch-grad-cam's
      ``get_2d_projection_with_sign_correction``).
    * ``"svd"``: no correction, the sign LAPACK / cuSOLVER returns: what pytorch-grad-cam's
      ``EigenCAM`` does (it has no sign handling).  Not reproducible across backends: on this
      machine torch (MKL) and NumPy (OpenBLAS) return the same sign for Lite0's 7x7 maps and the
      opposite sign for every Lite2 (9x9) image tried.
    """
    if sign not in EIGEN_SIGNS:
        raise ValueError(f"Unknown sign convention {sign!r}. Fix: use one of {', '.join(EIGEN_SIGNS)}.")
    a = activations.float() if activations.dtype in (torch.float16, torch.bfloat16) else activations
    a = torch.where(torch.isnan(a), torch.zeros_like(a), a)
    n, _, h, w = a.shape
    x = a.flatten(2).transpose(1, 2)  # [N, h*w, C]
    x = x - x.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    v = vh[:, 0, :]  # [N, C], first right singular vector
    proj = (x @ v.unsqueeze(-1)).squeeze(-1)  # [N, h*w]
    if sign == "activation":
        flip = (proj * x.sum(-1)).sum(-1) < 0
    elif sign == "max":
        flip = proj.amin(-1).abs() > proj.amax(-1).abs()
    else:
        flip = torch.zeros(n, dtype=torch.bool, device=proj.device)
    proj = torch.where(flip.unsqueeze(-1), -proj, proj)
    return proj.view(n, h, w).to(activations.dtype)


def eigencam_map(activations: torch.Tensor, sign: str = "activation") -> torch.Tensor:
    """EigenCAM (Muhammad & Yeasin 2020): ``ReLU`` of :func:`principal_projection`, ``[N, h, w]``."""
    return F.relu(principal_projection(activations, sign))


class EigenCAM(_ActivationCAM):
    """EigenCAM (Muhammad & Yeasin 2020): first principal component of the activations.

    Class-agnostic: the map is the same for every target; ``targets`` only decides the output
    shape (``[N, H, W]`` or ``[N, k, H, W]`` for ``"top-k"``) and is validated as for the other
    methods.  No gradients.  ``sign``: see :func:`principal_projection`.
    """

    name = "EigenCAM"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None,
                 sign: str = "activation", *, precision: str = "fp32"):
        super().__init__(model, target_layer, precision=precision)
        if sign not in EIGEN_SIGNS:
            raise ValueError(f"Unknown sign convention {sign!r}. Fix: use one of {', '.join(EIGEN_SIGNS)}.")
        self.sign = sign

    def maps_from_activations(self, activations, logits, target_ids, relu=True):
        maps = eigencam_map(activations, self.sign) if relu else principal_projection(activations, self.sign)
        return maps.unsqueeze(0).expand(target_ids.shape[1], *maps.shape)


# --- CAM (Zhou et al. 2016) ---------------------------------------------------------------

def find_last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` registered in ``model`` and its dotted name."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, so CAM cannot find the classifier weights. "
            "Fix: pass fc=<the final linear layer or its name>, or use GradCAM (equal to CAM on "
            "global-average-pooling + linear heads)."
        )
    return found[-1]


class OriginalCAM(_ActivationCAM):
    """CAM (Zhou et al. 2016): ``M_c = ReLU(sum_k W_{c,k} A_k)`` for GAP + linear heads.

    ``fc``: the final linear layer (module or dotted name); default the last ``nn.Linear`` of the
    model (``net.fc`` for EfficientNet-Lite, ``net.fc`` for ResNet).  No bias (it is constant over
    the map).  No gradients.

    The head is checked on every call: ``fc.in_features`` must equal the target layer's channels
    and ``fc(GAP(A))`` must reproduce the model's logits (so the layers in between are only global
    average pooling, flatten, eval-mode dropout).  Otherwise (VGG's 3-layer classifier, a
    functional ReLU after the layer as in DenseNet's ``features.norm5``, a non-final target
    layer) a ``ValueError`` names the fix.  On heads that pass, ``dy_c/dA_k = W_{c,k}/(h w)``, so
    CAM is ``h w`` times Grad-CAM (and HiResCAM, XGrad-CAM): equal after min-max.
    """

    name = "CAM"
    logits_rtol = 1e-3  # relative to max |logit|; float32 rounding of the mean is ~1e-6
    logits_rtol_bf16 = 5e-2  # bf16 keeps 8 bits of mantissa: ~0.4% per value, more after sums

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None,
                 fc: str | nn.Linear | None = None, *, precision: str = "fp32"):
        super().__init__(model, target_layer, precision=precision)
        if fc is None:
            self.fc_name, self.fc = find_last_linear(model)
        else:
            module = resolve_layer(model, fc)
            if not isinstance(module, nn.Linear):
                raise ValueError(f"fc={fc!r} is a {type(module).__name__}, not an nn.Linear. "
                                 "Fix: pass the final linear layer.")
            self.fc_name = fc if isinstance(fc, str) else type(module).__name__
            self.fc = module

    def _check_head(self, activations: torch.Tensor, logits: torch.Tensor) -> None:
        fix = ("Fix: CAM needs the target layer to be the last feature maps, followed only by global "
               "average pooling and this one linear layer; use GradCAM (it needs no such head), or pass "
               "target_layer=/fc= for a model that has that head.")
        n_linear = sum(isinstance(m, nn.Linear) for m in self.model.modules())
        channels = activations.shape[1]
        if self.fc.in_features != channels:
            more = f" The model has {n_linear} linear layers (e.g. VGG's 3-layer classifier)." if n_linear > 1 else ""
            raise ValueError(
                f"CAM: the final linear layer {self.fc_name!r} takes {self.fc.in_features} features but the "
                f"target layer has {channels} channels, so the head is not global average pooling + one "
                f"linear layer.{more} {fix}"
            )
        if logits.shape[-1] != self.fc.out_features:
            raise ValueError(
                f"CAM: {self.fc_name!r} has {self.fc.out_features} outputs but the model {logits.shape[-1]} "
                f"logits. {fix}"
            )
        predicted = F.linear(activations.mean((-2, -1)).to(self.fc.weight.dtype), self.fc.weight, self.fc.bias)
        err = (predicted - logits).abs().max().item()
        scale = max(logits.abs().max().item(), 1.0)
        rtol = self.logits_rtol_bf16 if self.precision == "bf16" else self.logits_rtol
        if not err <= rtol * scale:
            hint = " The model is in training mode (dropout is active): call model.eval()." if self.model.training else ""
            raise ValueError(
                f"CAM: {self.fc_name!r}(global average pool of the target layer) differs from the model's "
                f"logits by up to {err:.3g}, so the layers between them are not just pooling + this linear "
                f"layer (e.g. an activation applied after the target layer).{hint} {fix}"
            )

    def maps_from_activations(self, activations, logits, target_ids, relu=True):
        self._check_head(activations, logits)
        weights = self.fc.weight.detach()[target_ids].to(activations.dtype)  # [N, K, C]
        maps = torch.einsum("nkc,nchw->knhw", weights, activations)
        return F.relu(maps) if relu else maps
