"""UCAG: Unfold and Conquer Attribution Guidance (Alg. 1), a wrapper around any CAM method of lib.

::

    ucag = UCAG(GradCAM(model))                    # the authors' constants: n = 6, rho = 0.555, alpha = 2.6
    maps = ucag(images, targets="predicted")       # [N, H, W] in [0, 1], like every lib method
    many = unfold_and_conquer([GradCAM(model), GradCAMPlusPlus(model)], images, labels)  # shared passes

Steps, for each image and target class ``k`` (class chosen on the *whole* image):

1. **Unfold** (Alg. 1 lines 2-4): ``n * n`` overlapping crops of side ``rho * S``, each upscaled
   by ``alpha`` (bicubic; 124 -> 322 px at 224 px): :func:`lib.cams.ucag_geometry.unfold_crops`.
2. **Partial explanations** (lines 6-11): the wrapped method's raw map of every crop for class
   ``k``, *signed* (before its final ReLU: "not normalized or clipped", Eq. 5 note), from
   :meth:`CAM.signed_raw` (its unchecked ``_signed_raw``: the images are checked once, not every
   batch of their crops); crops go through the network in batches of ``crop_batch``.
   Gradient methods of one model and layer (Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM)
   share one forward and backward pass per crop batch in :func:`unfold_and_conquer`.
3. **Confidence** (Eq. 4): ``Y_s = exp(softmax(f(I_s))_k)``, divided by its maximum over the
   image's crops (the released code's normalisation; ``Y`` lies in ``[1/e, 1]``).
4. **Conquer** (Eq. 5-6): each partial map times ``Y_s``, resized back to the crop (bilinear,
   ``beta = 1 / alpha``), summed at its place and divided by the duplication matrix:
   :func:`lib.cams.ucag_geometry.fold_maps`.
5. **Post-processing** (released code): ReLU, min-max to ``[0, 1]``, Gaussian blur (kernel 5,
   sigma 3, :func:`torchvision.transforms.functional.gaussian_blur`). The blurred map is not
   min-max normalised again (the released code does not), so its maximum can be below 1.

**Count initialisation** (``count_init``). The released code starts the duplication matrix at
ones, so it divides by ``count + 1``; the paper describes an average. We use **0 (the paper's
average)** by default: with ones, a pixel covered by ``c`` crops is scaled by ``c / (c + 1)``,
which favours the centre (``c`` up to 36) over the corners (``c = 1``, halved) for no reason
the paper gives, and a constant partial map would not fold back to a constant.
``count_init=1.0`` reproduces the released code and notebook 04 measures both.

**Cost**: ``n * n`` passes of the wrapped method per image at ``alpha * rho`` times the side
(1.44x at the authors' constants, so about 2.1x the pixels), plus one forward pass on the whole
image to pick the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..batching import map_batches
from ..maps import gaussian_blur, minmax_normalize, upsample
from ..inference import forward_logits
from ..precision import precision_autocast
from .gradient import CAM, _check_images, _CombineCAM
from .hooks import forward_with_gradients
from .targets import Targets, is_multi_target, resolve_targets
from .ucag_geometry import UnfoldGeometry, fold_maps, unfold_crops

__all__ = ["UCAG", "UCAGSettings", "confidence_weights", "conquer", "partial_explanations", "postprocess",
           "unfold_and_conquer", "crop_passes_key", "maps_together", "maps_sharing_passes"]


@dataclass(frozen=True)
class UCAGSettings:
    """UCAG's hyper-parameters: the authors' constants by default (PROTOCOLS.md, paper Sec. 4)."""

    n: int = 6  # crops per side
    rho: float = 0.555  # crop side / image side
    alpha: float = 2.6  # upscaling of each crop
    count_init: float = 0.0  # duplication matrix start: 0 the paper's average, 1 the released code
    blur_kernel: int = 5  # post-processing Gaussian blur (released code); 0 disables it
    blur_sigma: float = 3.0
    crop_batch: int = 36  # crops per forward pass (halved on out-of-memory)

    def __post_init__(self):
        if self.blur_kernel < 0 or (self.blur_kernel and self.blur_kernel % 2 == 0):
            raise ValueError(f"blur_kernel must be 0 (no blur) or an odd number, got {self.blur_kernel}.")
        if self.count_init < 0:
            raise ValueError(f"count_init must be >= 0, got {self.count_init}.")
        if self.crop_batch < 1:
            raise ValueError(f"crop_batch must be >= 1, got {self.crop_batch}.")

    def geometry(self, size: int) -> UnfoldGeometry:
        return UnfoldGeometry(size, self.n, self.rho, self.alpha)


def confidence_weights(crop_logits: torch.Tensor, target_ids: torch.Tensor, n_crops: int) -> torch.Tensor:
    """Eq. 4 with the released code's scaling: ``exp(softmax(L_s)_k) / max_s exp(softmax(L_s)_k)``.

    ``crop_logits [N * n_crops, classes]`` (crops of image ``i`` at rows ``i * n_crops ...``),
    ``target_ids [N, K]`` -> weights ``[K, N, n_crops]`` in ``[1/e, 1]``.
    """
    n, k = target_ids.shape
    probs = torch.softmax(crop_logits.float(), dim=1)
    p = probs.gather(1, target_ids.repeat_interleave(n_crops, 0))  # [N * n_crops, K]
    y = p.exp().T.unflatten(1, (n, n_crops))  # [K, N, n_crops]
    return y / y.amax(-1, keepdim=True)


def postprocess(maps: torch.Tensor, blur_kernel: int = 5, blur_sigma: float = 3.0) -> torch.Tensor:
    """The released code's last step on folded maps ``[..., H, W]``: ReLU, min-max, Gaussian blur."""
    out = minmax_normalize(F.relu(maps))
    if blur_kernel:
        flat = out.reshape(-1, 1, *out.shape[-2:])
        out = gaussian_blur(flat, blur_kernel, blur_sigma).view_as(out)
    return out


def conquer(partial: torch.Tensor, weights: torch.Tensor, geometry: UnfoldGeometry,
            settings: UCAGSettings = UCAGSettings()) -> torch.Tensor:
    """Eq. 5-6 and post-processing: partial maps ``[K, N * n^2, h, w]``, weights ``[K, N, n^2]`` -> ``[N, K, S, S]``."""
    k, n, n_crops = weights.shape
    folded = fold_maps(partial.reshape(k * n, n_crops, *partial.shape[-2:]), geometry,
                       weights.reshape(k * n, n_crops), settings.count_init)  # [K * N, S, S]
    out = postprocess(folded, settings.blur_kernel, settings.blur_sigma)
    return out.unflatten(0, (k, n)).transpose(0, 1)


def _shares_capture(a: CAM, b: CAM) -> bool:
    return (isinstance(a, _CombineCAM) and isinstance(b, _CombineCAM) and a.model is b.model
            and a.target_layer == b.target_layer and a.precision == b.precision)


def _partial_maps(methods: Sequence[CAM], crops: torch.Tensor, crop_targets: torch.Tensor
                  ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Signed maps ``[K, B, h, w]`` of each method on a batch of crops, and the crops' logits ``[B, classes]``."""
    maps: list[torch.Tensor | None] = [None] * len(methods)
    logits = None
    for i, method in enumerate(methods):
        if maps[i] is not None:
            continue
        group = [j for j in range(i, len(methods)) if j == i or _shares_capture(method, methods[j])]
        if isinstance(method, _CombineCAM):  # one forward + backward for the whole group
            captured = forward_with_gradients(method.model, crops, crop_targets, method.target_layer,
                                              method.precision)
            for j in group:
                maps[j] = methods[j].maps_from(captured, relu=False)
            logits = captured.logits if logits is None else logits
        else:  # unchecked: the crops come from images checked once in partial_explanations
            maps[i], _, method_logits = method._signed_raw(crops, crop_targets)
            logits = method_logits if logits is None else logits
    return maps, logits


def partial_explanations(methods: Sequence[CAM], images: torch.Tensor, targets: Targets = "predicted",
                         settings: UCAGSettings = UCAGSettings(), progress: bool = False
                         ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Alg. 1 lines 2-13 for several methods of one model: what :func:`conquer` folds.

    Returns the signed partial maps ``[K, N * n^2, h, w]`` of each method, the confidence weights
    ``[K, N, n^2]`` and the target ids ``[N, K]``. The classes are resolved on the whole images
    (``"predicted"``, ``"top-k"``, ids); every crop of an image is explained for its image's
    classes. Gradient methods of one model and layer share the crops' forward and backward passes.
    Images are processed in chunks of ``max(1, crop_batch // n^2)`` (halved on out-of-memory);
    ``progress`` shows a tqdm bar over them. Folding with several settings (e.g. both count
    initialisations) from one call costs no extra pass.
    """
    if not methods:
        raise ValueError("methods is empty. Fix: pass at least one CAM method, e.g. [GradCAM(model)].")
    model = methods[0].model
    if any(m.model is not model for m in methods):
        raise ValueError("UCAG explains one model at a time. Fix: group the methods by model.")
    _check_images(images, model)
    if images.shape[-2] != images.shape[-1]:
        raise ValueError(f"UCAG unfolds square images; got {tuple(images.shape[-2:])}. "
                         "Fix: resize or centre-crop to a square (the model's preprocess does).")
    geometry = settings.geometry(images.shape[-1])
    n_crops = settings.n ** 2
    with torch.no_grad(), precision_autocast(images.device, methods[0].precision):
        target_ids = resolve_targets(forward_logits(model, images).float(), targets)  # [N, K], on the whole image
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=images.shape[0], desc="UCAG", unit="image", leave=False)
    weights: list[torch.Tensor] = []

    def run(sl: slice) -> torch.Tensor:  # [b * n^2, M, K, h, w]
        ids = target_ids[sl]
        crops = unfold_crops(images[sl], geometry).flatten(0, 1)  # [b * n^2, 3, s, s]
        partial, crop_logits = _partial_maps(methods, crops, ids.repeat_interleave(n_crops, 0))
        weights.append(confidence_weights(crop_logits, ids, n_crops))  # after the passes: not on a retried chunk
        if bar is not None:
            bar.update(ids.shape[0])
        return torch.stack(partial).permute(2, 0, 1, 3, 4)

    try:
        partial = map_batches(run, images.shape[0], max(1, settings.crop_batch // n_crops))
    finally:
        if bar is not None:
            bar.close()
    partial = partial.permute(1, 2, 0, 3, 4)  # [M, K, N * n^2, h, w]
    return list(partial.unbind(0)), torch.cat(weights, dim=1), target_ids


def unfold_and_conquer(methods: Sequence[CAM], images: torch.Tensor, targets: Targets = "predicted",
                       settings: UCAGSettings = UCAGSettings(), progress: bool = False) -> list[torch.Tensor]:
    """UCAG maps of several methods of one model: ``[N, H, W]`` each (``[N, K, H, W]`` for multi-target).

    :func:`partial_explanations` then :func:`conquer` (see there for batching and sharing).
    """
    partial, weights, _ = partial_explanations(methods, images, targets, settings, progress)
    geometry = settings.geometry(images.shape[-1])
    multi = is_multi_target(targets)
    maps = [conquer(p, weights, geometry, settings) for p in partial]
    return [m if multi else m[:, 0] for m in maps]


class UCAG(CAM):
    """UCAG around one CAM method: ``UCAG(GradCAM(model))(images, targets) -> [N, H, W]``.

    ``settings`` (or keyword overrides of :class:`UCAGSettings`: ``n``, ``rho``, ``alpha``,
    ``count_init``, ``blur_kernel``, ``blur_sigma``, ``crop_batch``). Maps come back at the input
    size already post-processed (ReLU, min-max, blur: not min-max normalised again);
    ``size=(H', W')`` resizes them bilinearly. ``n=1, rho=1`` is the *scaling-only* ablation: the
    whole image upscaled by ``alpha``.
    """

    def __init__(self, method: CAM, settings: UCAGSettings | None = None, **overrides):
        if not isinstance(method, CAM):
            raise TypeError(f"UCAG wraps a lib CAM method, got {type(method).__name__}. "
                            "Fix: UCAG(GradCAM(model)) or UCAG(get_method('gradcam++', model)).")
        super().__init__(method.model, method.target_layer, precision=method.precision)
        base = settings or UCAGSettings()
        self.settings = UCAGSettings(**{**base.__dict__, **overrides}) if overrides else base
        self.method = method
        self.name = f"UCAG {method.name}"
        self.forward_passes = 1 + self.settings.n ** 2 * method.forward_passes

    def _raw(self, images, targets="predicted"):
        raise NotImplementedError("UCAG maps are made at the image size; call the UCAG object instead.")

    def __call__(self, images: torch.Tensor, targets: Targets = "predicted",
                 size: str | tuple[int, int] | None = "input") -> torch.Tensor:
        (maps,) = unfold_and_conquer([self.method], images, targets, self.settings)
        if size not in ("input", None) and tuple(size) != tuple(maps.shape[-2:]):
            maps = upsample(maps, tuple(size))
        return maps


def crop_passes_key(ucag: "UCAG") -> tuple:
    """What decides a UCAG object's crop passes: its model (by identity), crop geometry (``n``, ``rho``,
    ``alpha``), ``crop_batch`` and precision. Objects with equal keys can share them (:func:`maps_together`);
    ``count_init`` and the blur act after the passes, in :func:`conquer`."""
    s = ucag.settings
    return id(ucag.model), s.n, s.rho, s.alpha, s.crop_batch, ucag.precision


def maps_together(ucags: Sequence["UCAG"], images: torch.Tensor, targets: Targets = "predicted"
                  ) -> list[torch.Tensor]:
    """The maps of several :class:`UCAG` objects of one :func:`crop_passes_key`, from one set of crop passes.

    Each distinct wrapped method (by :func:`lib.analysis.map_store.describe`: two ``GradCAM`` objects of one
    model and layer are one method) gets its partial explanations once (:func:`partial_explanations`: gradient
    methods of one layer share the crops' forward and backward pass); each object then folds them with its own
    settings (:func:`conquer`: ``count_init``, blur). Equal to ``[u(images, targets) for u in ucags]``: the
    same passes on the same crops; at the authors' constants, UCAG around Grad-CAM, Grad-CAM++ and LayerCAM
    and the released code's count initialisation cost one method's passes instead of four.
    """
    from lib.analysis.map_store import describe  # the map store's notion of "the same method"

    if not ucags:
        return []
    if any(not isinstance(u, UCAG) for u in ucags):
        raise TypeError("maps_together takes UCAG objects. Fix: call other CAM methods one by one.")
    keys = {crop_passes_key(u) for u in ucags}
    if len(keys) > 1:
        raise ValueError("these UCAG objects do not share their crop passes (model, n, rho, alpha, crop_batch or "
                         "precision differ). Fix: group them by lib.cams.ucag.crop_passes_key first.")
    wrapped: dict[str, CAM] = {}
    for u in ucags:
        wrapped.setdefault(describe(u.method), u.method)
    partial, weights, _ = partial_explanations(list(wrapped.values()), images, targets, ucags[0].settings)
    by_method = dict(zip(wrapped, partial))
    geometry = ucags[0].settings.geometry(images.shape[-1])
    multi = is_multi_target(targets)
    maps = [conquer(by_method[describe(u.method)], weights, geometry, u.settings) for u in ucags]
    return [m if multi else m[:, 0] for m in maps]


def maps_sharing_passes(cams: Sequence[CAM], images: torch.Tensor, targets: Targets = "predicted"
                        ) -> list[torch.Tensor]:
    """``[cam(images, targets) for cam in cams]``, with the UCAG objects among them grouped by
    :func:`crop_passes_key` and each group computed by :func:`maps_together` (one set of crop passes);
    any other method is called on its own."""
    out: list[torch.Tensor | None] = [None] * len(cams)
    groups: dict[tuple, list[int]] = {}
    for i, cam in enumerate(cams):
        if isinstance(cam, UCAG):
            groups.setdefault(crop_passes_key(cam), []).append(i)
        else:
            out[i] = cam(images, targets)
    for rows in groups.values():
        for i, maps in zip(rows, maps_together([cams[i] for i in rows], images, targets)):
            out[i] = maps
    return out
