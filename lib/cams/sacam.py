"""SA-CAM (Liang, Li & Jiang): Score-CAM's channel scores plus a gradient "self-attention" term.

For a class ``c`` and the target layer's activations ``A [N, C, h, w]`` (Eq. 9-13, Alg. 1-2):

1. **Masks.** Each channel ``A_n`` is upsampled to the image and min-max normalised to a heat map
   ``H_n in [0, 1]`` (Alg. 2 lines 1-2, Eq. 7; Score-CAM's ``"paper"`` masks, see
   :func:`lib.cams.score.scorecam_masks`).
2. **Key-area extraction** (Alg. 1, :func:`key_area`): ``U_seg`` keeps the image where
   ``H_n > threshold`` and paints the rest white.  Alg. 1 as printed whitens the pixels *above*
   the threshold and then makes every near-white pixel transparent, which would delete the key
   area it is named after; we follow PROTOCOLS.md's reading (keep the key area, white out the
   rest).  No new mask multiplies the kept pixels: that is the paper's point.
3. **Perturbation** (Eq. 13, Fong & Vedaldi's operators, :func:`perturb`) with ``m = H_n``:
   ``"constant"``: ``m X + (1 - m) mu0`` (``mu0`` the image's mean colour, or a given value);
   ``"noise"``: ``m X + (1 - m) eta`` with ``eta = mu0 + noise_std * N(0, 1)`` (one seeded noise
   field shared by every image, so an image gets the same noise in any batch; clipped to [0, 1]); ``"blur"``: ``m X + (1 - m) blur_sigma0(X)``, the usual
   discrete form of the space-varying blur (``sigma0 = 10`` px, Fong & Vedaldi's value).
4. **Score** (Eq. 12): ``S_n = f(U_seg) * (1 + f(U_pert))`` with ``f`` the softmax probability of
   class ``c``: two forward passes per channel.
5. **Self-attention** (Eq. 10-11, :func:`self_attention_terms`): ``K_n`` is the mean gradient of the
   class logit over the map (Grad-CAM's weight) and ``Q_n = sum_ij alpha_ij ReLU(dy/dA_ij)`` with
   Grad-CAM++'s ``alpha`` (the paper writes ``lambda2`` inside ``alpha``; we keep it outside).  The
   paper adds "normalized" ``S`` and ``K`` (Sec. 3); gradients have no fixed scale, so we divide
   ``K`` by ``max_n |K_n|`` and ``Q`` by ``max_n Q_n`` per image and class: both lie in [-1, 1] and
   the lambdas are scale-free.  ``SA_n = S_n + lambda1 K_n + lambda2 Q_n`` (Alg. 2 line 11).
6. **Map** (Alg. 2 lines 12-13): ``w = softmax_n(SA)`` over channels, ``ReLU(sum_n w_n A_n)``, then
   (as every method here) min-max normalised and upsampled.

The paper gives neither the lambdas nor the threshold; the defaults here are the values notebook
03 selects on the *training* sample with a stated rule (see the notebook), not on evaluation images.

Cost: ``2 C + 1`` forward passes per image (``C`` = channels of the target layer) and one
backward pass per target; every target of a top-k request reuses the same masked passes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .gradient import _check_images, finalize_maps, gradcampp_alpha
from .hooks import forward_with_gradients
from .perturbation import PerturbationCAM, gaussian_blur
from .score import scorecam_masks
from .targets import Targets

__all__ = ["SACAM", "PERTURBATIONS", "key_area", "perturb", "sa_scores", "self_attention_terms", "sacam_weights",
           "candidate_maps", "select_parameters", "read_selection_grid", "parameters_from_grid"]

PERTURBATIONS = ("constant", "noise", "blur")
WHITE = 1.0  # Alg. 1 paints the pixels outside the key area (255, 255, 255): 1.0 in the [0, 1] image


def key_area(images: torch.Tensor, heat: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """Alg. 1: ``U_seg`` = the image where ``heat > threshold``, white elsewhere.

    ``images [B, 3, H, W]`` in [0, 1], ``heat [B, H, W]`` in [0, 1]; ``threshold=None`` keeps every
    pixel (``U_seg = X``).
    """
    if threshold is None:
        return images
    keep = (heat > threshold)[:, None]
    return torch.where(keep, images, torch.full_like(images, WHITE))


def perturb(images: torch.Tensor, heat: torch.Tensor, kind: str, *, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 13 with mask ``m = heat``: ``m X + (1 - m) fill``.

    ``fill`` is what the muted pixels become, broadcastable to ``images``: the constant colour
    ``mu0`` ``[B, 3, 1, 1]``, the noise image or the blurred image (:meth:`SACAM.fills` builds
    them).  ``kind`` is only checked here; all three operators share this blend.
    """
    if kind not in PERTURBATIONS:
        raise ValueError(f"Unknown perturbation {kind!r}. Fix: use one of {', '.join(PERTURBATIONS)}.")
    if fill is None:
        raise ValueError("perturb needs fill= (the constant colour, the noise image or the blurred image).")
    m = heat[:, None]
    return m * images + (1 - m) * fill


def sa_scores(p_seg: torch.Tensor, p_perturbed: torch.Tensor) -> torch.Tensor:
    """Eq. 12: ``Score = f(U_seg) * (1 + f(U_perturbed))`` (class probabilities in, same shape out)."""
    return p_seg * (1 + p_perturbed)


def self_attention_terms(activations: torch.Tensor, gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 10-11 before the lambdas: ``K [..., N, C]`` (mean gradient) and ``Q [..., N, C]``.

    ``K_n = 1/(h w) sum_ij dy/dA_n,ij`` (Grad-CAM's weight); ``Q_n = sum_ij alpha_n,ij
    ReLU(dy/dA_n,ij)`` with Grad-CAM++'s ``alpha`` (:func:`lib.cams.gradient.gradcampp_alpha`).
    """
    k = gradients.mean((-2, -1))
    alpha = gradcampp_alpha(activations, gradients.pow(2), gradients.pow(3))
    q = (alpha * F.relu(gradients)).sum((-2, -1))
    return k, q


def _scale_free(values: torch.Tensor) -> torch.Tensor:
    """``values / max_n |values_n|`` over the channel axis (last); all-zero rows stay zero."""
    top = values.abs().amax(-1, keepdim=True)
    return torch.where(top > 0, values / top.clamp_min(torch.finfo(values.dtype).tiny), torch.zeros_like(values))


def sacam_weights(scores: torch.Tensor, k: torch.Tensor, q: torch.Tensor, lambda1: float, lambda2: float
                  ) -> torch.Tensor:
    """Alg. 2 lines 11-12: ``softmax_n(S_n + lambda1 K_n + lambda2 Q_n)`` over channels (last axis).

    ``K`` and ``Q`` are divided by their largest magnitude over the channels first (module docstring).
    """
    sa = scores + lambda1 * _scale_free(k) + lambda2 * _scale_free(q)
    return sa.softmax(-1)


class SACAM(PerturbationCAM):
    """SA-CAM (module docstring): ``ReLU(sum_n softmax(S + lambda1 K + lambda2 Q)_n A_n)``.

    Args:
        model: a classifier taking ``[0, 1]`` images (:class:`lib.models.Classifier`).
        target_layer: layer name or module; ``None`` for the model's default.
        lambda1, lambda2: weights of the gradient terms ``K`` and ``Q`` (Eq. 10).
        threshold: key-area threshold on the heat map (Alg. 1); ``None`` keeps every pixel.
        perturbation: ``"constant"``, ``"noise"`` or ``"blur"`` (Eq. 13).
        constant: ``mu0`` of the constant and noise operators: ``"mean"`` (the image's mean
            colour) or a number in [0, 1] (e.g. ``0.0``: black, which makes ``U_constant``
            Score-CAM's masked image ``X * H_n``).
        sigma0: standard deviation (pixels) of the blur operator; noise_std: of the noise operator.
        seed: seeds the noise field (one field for every image: the same noise in any batch or call).
        batch_size, precision, progress: as in :class:`lib.cams.perturbation.PerturbationCAM`.
    """

    name = "SA-CAM"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, *,
                 lambda1: float = 1.0, lambda2: float = 1.0, threshold: float | None = 0.5,
                 perturbation: str = "blur", constant: str | float = "mean", sigma0: float = 10.0,
                 noise_std: float = 0.2, seed: int = 0, batch_size: int | None = None, precision: str = "fp32",
                 progress: bool | None = None):
        super().__init__(model, target_layer, batch_size=batch_size, precision=precision, convention="image",
                         progress=progress)
        if perturbation not in PERTURBATIONS:
            raise ValueError(f"Unknown perturbation {perturbation!r}. Fix: use one of {', '.join(PERTURBATIONS)}.")
        if threshold is not None and not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1) (the heat maps are min-max normalised) or None, "
                             f"got {threshold}.")
        if not (constant == "mean" or (isinstance(constant, (int, float)) and 0.0 <= constant <= 1.0)):
            raise ValueError(f"constant must be 'mean' or a number in [0, 1], got {constant!r}.")
        for name, value in (("lambda1", lambda1), ("lambda2", lambda2), ("sigma0", sigma0), ("noise_std", noise_std)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}.")
        if sigma0 <= 0 or noise_std < 0:
            raise ValueError(f"sigma0 must be > 0 and noise_std >= 0, got {sigma0} and {noise_std}.")
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.threshold = threshold
        self.perturbation = perturbation
        self.constant = constant
        self.sigma0, self.noise_std, self.seed = float(sigma0), float(noise_std), int(seed)

    @property
    def forward_passes(self) -> int:
        """``2 C + 1``: the key area and the perturbed image per channel, plus the unmasked pass."""
        return 2 * self.num_channels() + 1

    def fills(self, images: torch.Tensor) -> torch.Tensor:
        """What the perturbation blends in where the mask is 0: ``[N, 3, 1, 1]`` or ``[N, 3, H, W]``."""
        if self.perturbation == "blur":
            kernel = 2 * math.ceil(3 * self.sigma0) + 1
            return gaussian_blur(images, kernel, self.sigma0)
        mu0 = images.mean((-2, -1), keepdim=True) if self.constant == "mean" else \
            torch.full_like(images[:, :, :1, :1], float(self.constant))
        if self.perturbation == "constant":
            return mu0
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((1, *images.shape[1:]), generator=generator).to(images.device, images.dtype)
        return (mu0 + self.noise_std * noise).clamp(0, 1)

    def _channel_probs(self, images: torch.Tensor, activations: torch.Tensor, ids: torch.Tensor, build, label: str
                       ) -> torch.Tensor:
        """``f(build(x, H_n, image_index))`` for every channel ``n``: probabilities ``[N, C, K]`` (C passes per image)."""
        device = images.device
        n_img, c = activations.shape[:2]
        size = tuple(images.shape[-2:])
        flat = activations.flatten(0, 1)

        def probs(chunk: slice) -> torch.Tensor:
            image = torch.arange(chunk.start, chunk.stop, device=device) // c
            heat = scorecam_masks(flat[chunk], size, "paper")
            return self._logits(build(images[image], heat, image)).softmax(-1).gather(1, ids[image])

        with torch.no_grad(), self._progress_bar(n_img * c, f"{self.name} ({label})") as bar:
            return self._batched(probs, n_img * c, device, bar).view(n_img, c, -1)

    def key_area_probs(self, images: torch.Tensor, activations: torch.Tensor, ids: torch.Tensor,
                       threshold: float | None) -> torch.Tensor:
        """``f(U_seg)`` per channel (Alg. 1) at ``threshold`` (``None``: keep every pixel): ``[N, C, K]``."""
        return self._channel_probs(images, activations, ids, lambda x, heat, _: key_area(x, heat, threshold),
                                   "key areas")

    def perturbed_probs(self, images: torch.Tensor, activations: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``f(U_perturbed)`` per channel (Eq. 13, the method's perturbation): ``[N, C, K]``."""
        fills = self.fills(images)
        return self._channel_probs(images, activations, ids,
                                   lambda x, heat, image: perturb(x, heat, self.perturbation, fill=fills[image]),
                                   f"{self.perturbation} perturbation")

    def channel_scores(self, images: torch.Tensor, activations: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Eq. 12 for every channel: ``S [N, C, K]`` for target ids ``[N, K]`` (2 C forward passes per image)."""
        return sa_scores(self.key_area_probs(images, activations, ids, self.threshold),
                         self.perturbed_probs(images, activations, ids))

    def _raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw maps ``[K, N, h, w]`` at the layer's size and target ids ``[N, K]``."""
        captured = forward_with_gradients(self.model, images, targets, self.target_layer, self.precision)
        acts, ids = captured.activations.detach(), captured.targets
        self._channels = acts.shape[1]
        k, q = self_attention_terms(acts, captured.gradients.detach())  # [K, N, C]
        s = self.channel_scores(images, acts, ids).permute(2, 0, 1)  # [K, N, C]
        weights = sacam_weights(s, k, q, self.lambda1, self.lambda2)
        return F.relu(torch.einsum("knc,nchw->knhw", weights, acts)), ids


def candidate_maps(cam: SACAM, images: torch.Tensor, targets: Targets, thresholds, lambdas1, lambdas2):
    """Maps of every ``(threshold, lambda1, lambda2)`` of a grid, each masked pass run once.

    ``f(U_seg)`` depends on the threshold only, ``f(U_perturbed)`` on ``cam``'s perturbation only
    and the gradients on nothing in the grid, so a grid costs ``(len(thresholds) + 1) * C`` passes
    per image however many lambdas it has.  Yields ``((threshold, lambda1, lambda2), maps [N, H, W])``
    for one target per image; the maps equal ``SACAM(..., threshold=t, lambda1=l1,
    lambda2=l2)(images, targets)``. ``images`` are checked (:func:`lib.inputs.check_images`) when
    the function is called, before the first grid point is asked for.
    """
    _check_images(images, cam.model)
    return _candidate_maps(cam, images, targets, thresholds, lambdas1, lambdas2)


def _candidate_maps(cam: SACAM, images: torch.Tensor, targets: Targets, thresholds, lambdas1, lambdas2):
    """The generator of :func:`candidate_maps` (images already checked)."""
    captured = forward_with_gradients(cam.model, images, targets, cam.target_layer, cam.precision)
    acts, ids = captured.activations.detach(), captured.targets
    if ids.shape[1] != 1:
        raise ValueError(f"candidate_maps takes one target per image, got {ids.shape[1]}. Fix: pass class ids or 'predicted'.")
    k, q = self_attention_terms(acts, captured.gradients.detach())
    size = tuple(images.shape[-2:])
    p_perturbed = cam.perturbed_probs(images, acts, ids)
    for threshold in thresholds:
        s = sa_scores(cam.key_area_probs(images, acts, ids, threshold), p_perturbed).permute(2, 0, 1)
        for lambda1 in lambdas1:
            for lambda2 in lambdas2:
                weights = sacam_weights(s, k, q, lambda1, lambda2)
                raw = F.relu(torch.einsum("knc,nchw->knhw", weights, acts))
                yield (threshold, float(lambda1), float(lambda2)), finalize_maps(raw, size, False)


def select_parameters(scores: dict[tuple, torch.Tensor]) -> tuple:
    """The stated rule of notebook 03: the grid point with the highest mean per-image score.

    ``scores`` maps ``(threshold, lambda1, lambda2)`` to per-image scores ``[N]`` (higher is
    better; the notebook uses insertion AUC minus deletion AUC on training images).  Ties (means
    within 1e-9) go to the smallest ``lambda1 + lambda2`` (the least change to the Score-CAM-like
    part), then to the smallest threshold (the largest key area).
    """
    if not scores:
        raise ValueError("select_parameters needs at least one grid point.")
    means = {key: float(value.double().mean()) for key, value in scores.items()}
    if any(not math.isfinite(m) for m in means.values()):
        raise ValueError("select_parameters: a grid point has a NaN or infinite mean score.")
    best = max(means.values())
    tied = [key for key, m in means.items() if m >= best - 1e-9]
    return min(tied, key=lambda key: (key[1] + key[2], -1 if key[0] is None else key[0]))


def read_selection_grid(path):
    """A selection grid file: a CSV with one row per training image and grid point, columns ``threshold`` (a
    number, or ``none``: keep every pixel), ``lambda1``, ``lambda2`` and ``overall`` (the per-image score), what
    the pipeline's ``select_sacam`` rule writes (``python -m lib.experiments.sacam``) and notebook 03 shows; its
    thresholds as ``"none"`` or a number."""
    import pandas as pd

    grid = pd.read_csv(path, dtype={"threshold": str})
    missing = {"threshold", "lambda1", "lambda2", "overall"} - set(grid.columns)
    if missing or grid.empty:
        raise ValueError(f"{path}: not a selection grid (missing columns {sorted(missing)} or no rows). Fix: rerun "
                         "the select_sacam rule (python -m lib.experiments.sacam).")
    grid["threshold"] = [t if t == "none" else float(t) for t in grid.threshold]
    return grid.astype({"threshold": object})


def parameters_from_grid(grid) -> dict:
    """SA-CAM's ``threshold, lambda1, lambda2`` chosen by :func:`select_parameters` from a selection grid (a frame
    of :func:`read_selection_grid`'s columns, or the path of its file)."""
    if not hasattr(grid, "groupby"):
        grid = read_selection_grid(grid)
    scores = {}
    for (threshold, lambda1, lambda2), part in grid.groupby(["threshold", "lambda1", "lambda2"], sort=False):
        key = (None if threshold == "none" else float(threshold), float(lambda1), float(lambda2))
        scores[key] = torch.tensor(part["overall"].to_numpy(), dtype=torch.float64)
    threshold, lambda1, lambda2 = select_parameters(scores)
    return {"threshold": threshold, "lambda1": lambda1, "lambda2": lambda2}
