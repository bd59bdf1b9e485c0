"""Adversarial verification (SA-CAM Sec. 4.6, Tables 4-5), made concrete.

The paper "extracts the core interpretation area and randomly embeds it into multiple adversarial
images", then reports an accuracy and a "fading rate" without defining either.  Our protocol
(PROTOCOLS.md suggests this reading; notebook 03 states it):

1. **Core area.** The top ``fraction`` of the map's pixels (:func:`lib.metrics.phi`, binary):
   ``B = phi_fraction(M)``.
2. **Embedding.** For each of ``K`` host images (images of *other* classes: the "adversarial
   images"), the core pixels are moved by a random offset that keeps their bounding box inside
   the image and pasted over the host: ``Z = shift(B) * shift(X) + (1 - shift(B)) * host``.
   Offsets are drawn from a seeded generator, one per (image, host) pair.
3. **Accuracy** (Table 4): the share of the ``K`` composites whose top-1 class is still the
   image's target class, in %.
4. **Fading rate** (Table 5): how much of the target's probability is lost,
   ``100 * max(0, p(X) - p(Z)) / p(X)``, averaged over the hosts (lower is better, as in the
   paper).

Everything is batched over the ``N * K`` composites; the explanation is the same map for every
host, so a better map (one whose top pixels carry the class) keeps more of the class.
"""

from __future__ import annotations

import torch

from ..batching import map_batches
from ..inputs import check_images
from ..inference import forward_logits
from .masking import precision_autocast
from .masks import phi

__all__ = ["random_offsets", "embed_core_area", "adversarial_verification"]


def random_offsets(core: torch.Tensor, hosts_per_image: int, seed: int = 0) -> torch.Tensor:
    """Offsets ``[N, K, 2]`` (dy, dx) that keep each core area's bounding box inside the image.

    ``core [N, H, W]`` boolean.  Drawn uniformly over the allowed range with a seeded CPU
    generator (the same call gives the same offsets on any device).
    """
    n, h, w = core.shape
    rows, cols = core.any(2), core.any(1)  # [N, H], [N, W]
    if not bool(rows.any(1).all()):
        raise ValueError("random_offsets: an image has an empty core area. Fix: use a fraction > 0.")
    ar_h, ar_w = torch.arange(h, device=core.device), torch.arange(w, device=core.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1)
    low = torch.stack([-y0, -x0], 1).cpu()  # [N, 2]
    high = torch.stack([h - 1 - y1, w - 1 - x1], 1).cpu()
    u = torch.rand(n, hosts_per_image, 2, generator=torch.Generator().manual_seed(seed))
    span = (high - low + 1)[:, None, :]
    return (low[:, None, :] + (u * span).floor().long().clamp_max(span - 1)).to(core.device)


def embed_core_area(images: torch.Tensor, core: torch.Tensor, hosts: torch.Tensor, offsets: torch.Tensor
                    ) -> torch.Tensor:
    """Composites ``[M, 3, H, W]``: the core pixels of ``images[i]`` moved by ``offsets[m]`` over ``hosts[m]``.

    ``images [N, 3, H, W]``, ``core [N, H, W]`` (boolean), ``hosts [M, 3, H, W]`` and ``offsets
    [M, 2]`` with ``M = N * K`` ordered image-major (composite ``m`` belongs to image ``m // K``).
    Offsets must keep the core inside the image (see :func:`random_offsets`); pixels are moved, not
    wrapped.
    """
    m = hosts.shape[0]
    n, _, h, w = images.shape
    if m % n:
        raise ValueError(f"{m} hosts for {n} images: give the same number of hosts to every image.")
    src = torch.arange(m, device=images.device) // (m // n)
    dy, dx = offsets[:, 0], offsets[:, 1]
    rows = torch.arange(h, device=images.device)[None, :] - dy[:, None]  # source row of each target row
    cols = torch.arange(w, device=images.device)[None, :] - dx[:, None]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    r = rows.clamp(0, h - 1)[:, :, None].expand(m, h, w)
    c = cols.clamp(0, w - 1)[:, None, :].expand(m, h, w)
    moved_core = core[src[:, None, None], r, c] & inside  # [M, H, W]
    moved = images[src[:, None, None], :, r, c].permute(0, 3, 1, 2)  # [M, 3, H, W]
    keep = moved_core[:, None]
    return torch.where(keep, moved, hosts)


def adversarial_verification(model: torch.nn.Module, images: torch.Tensor, maps: torch.Tensor,
                             targets: torch.Tensor, hosts: torch.Tensor, *, fraction: float = 0.2, seed: int = 0,
                             batch_size: int = 32, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Accuracy and fading rate per image (module docstring).

    Args:
        model: classifier taking the images as given (``[0, 1]`` for :class:`lib.models.Classifier`).
        images: ``[N, 3, H, W]`` in [0, 1]; maps: ``[N, H, W]`` in [0, 1]; targets: ``[N]`` class ids.
        hosts: ``[N, K, 3, H, W]`` host images in [0, 1] for each image (images of other classes).
            Images and hosts are checked (:func:`lib.inputs.check_images`).
        fraction: share of pixels in the core area; seed: seeds the offsets.

    Returns:
        ``accuracy [N]`` (% of hosts still classified as the target), ``fading [N]`` (mean % of the
        target's probability lost), ``original [N]`` (p(X)), ``embedded [N, K]`` (p(Z)),
        ``offsets [N, K, 2]``.
    """
    check_images(images)
    if isinstance(hosts, torch.Tensor) and hosts.dim() == 5:
        check_images(hosts.flatten(0, 1), name="hosts")  # [N * K, 3, H, W]
    if maps.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"maps must be [N, H, W] = {(images.shape[0], *images.shape[-2:])}, got {tuple(maps.shape)}.")
    if hosts.dim() != 5 or hosts.shape[0] != images.shape[0] or hosts.shape[2:] != images.shape[1:]:
        raise ValueError(f"hosts must be [N, K, 3, H, W] with N = {images.shape[0]}, got {tuple(hosts.shape)}.")
    if not torch.isfinite(maps).all():
        raise ValueError("maps contain NaN or infinite values.")
    n, k = hosts.shape[:2]
    targets = torch.as_tensor(targets, device=images.device).long().view(n)
    core = phi(maps, fraction, binary=True) > 0
    offsets = random_offsets(core, k, seed)
    flat_hosts, flat_offsets = hosts.flatten(0, 1), offsets.flatten(0, 1)
    owner = torch.arange(n * k, device=images.device) // k

    def probs(chunk: slice) -> torch.Tensor:
        src = owner[chunk]  # one image per host in the chunk
        composites = embed_core_area(images[src], core[src], flat_hosts[chunk], flat_offsets[chunk])
        with torch.no_grad(), precision_autocast(images.device, precision):
            p = forward_logits(model, composites).float().softmax(-1)
        return torch.stack([p.gather(1, targets[src][:, None])[:, 0], (p.argmax(1) == targets[src]).float()], 1)

    with torch.no_grad(), precision_autocast(images.device, precision):
        original = forward_logits(model, images).float().softmax(-1).gather(1, targets[:, None])[:, 0]
    out = map_batches(probs, n * k, batch_size).view(n, k, 2)
    embedded, correct = out[..., 0], out[..., 1]
    fading = 100 * (original[:, None] - embedded).clamp_min(0) / original[:, None].clamp_min(1e-12)
    return {"accuracy": 100 * correct.mean(1), "fading": fading.mean(1), "original": original,
            "embedded": embedded, "offsets": offsets}

