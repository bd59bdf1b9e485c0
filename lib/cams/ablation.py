"""Ablation-CAM (Desai & Ramaswamy, WACV 2020): feature maps weighted by the score drop when removed.

``w_k = (y_c - y_c^k) / y_c`` where ``y_c`` is the class score (the logit) and ``y_c^k`` the score
with channel ``k`` of the target layer set to zero; map ``= ReLU(sum_k w_k A_k)``.  This is the
paper's Eq. 3 and pytorch-grad-cam's ``AblationCAM`` formula (it divides by ``y_c`` as is, so a
negative class logit flips the signs of all weights; we keep that for equality and, where
``y_c == 0`` exactly, use the undivided drop ``y_c - y_c^k`` instead of producing infinities).

Efficiency: only the layers *after* the target layer need to run for each ablated copy.  A
forward hook on the target layer replaces its output by a batch of ablated copies of the stored
activations; the layers *before* it then run on a tiny dummy input (32 x 32 black images, about 2%
of a 224 x 224 forward pass) whose result the hook throws away.  This is exact when nothing before
the target layer feeds a later layer by another path (true for the last convolutional layer of
every registry model).  Each call checks it: the unablated activations pushed through this
shortcut must reproduce the model's own logits, otherwise (or if the small input does not fit the
network) the method falls back to full forward passes of the image with the hook in place
(``tail="full"`` forces that; ``tail="tiny"`` forces the shortcut and raises if the check fails).

``fill="zero"`` sets the ablated channel to 0 (the paper).  ``fill="pytorch-grad-cam"`` uses the
peer's rule: 0 when the image's activations have minimum 0 (after a ReLU), else
``min - 1e7`` (a deviation of the peer for layers with negative values).

Cost: ``C`` partial forward passes per image plus one full pass.

Inference path: these passes stay on PyTorch eager, also on the CPU where the other mask-based
methods use :mod:`lib.inference`'s compiled path.  The replaced target-layer output is a forward
hook, which an exported graph of the whole network would skip (``lib.inference`` refuses any
hooked model), and the shortcut already costs a small fraction of a full forward, so a separate
graph of the layers after the target layer would buy little (``benchmarks/results/cpu.md``).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..models import resolve_layer
from .perturbation import PerturbationCAM, replace_output
from .targets import Targets, resolve_targets

__all__ = ["AblationCAM", "ABLATION_FILLS", "ABLATION_TAILS"]

log = logging.getLogger(__name__)

ABLATION_FILLS = ("zero", "pytorch-grad-cam")
ABLATION_TAILS = ("auto", "tiny", "full")
_TINY_SIDES = (32, 64, 128)
_PEER_ABLATION_VALUE = 1e7


class AblationCAM(PerturbationCAM):
    """Ablation-CAM; see the module docstring.

    Args:
        model: a classifier taking ``[0, 1]`` images.
        target_layer: layer name or module; ``None`` for the model's default.
        batch_size: ablated copies per forward pass (default: :func:`lib.cams.perturbation.default_batch_size`).
        precision: ``"fp32"`` or ``"bf16"`` (CUDA only).  Weights are small differences of logits,
            so bf16 moves them much more than it moves Score-CAM's.
        fill: ``"zero"`` (paper) or ``"pytorch-grad-cam"`` (the peer's ablation value).
        tail: ``"auto"`` (shortcut when it checks out), ``"tiny"`` or ``"full"``.
        progress: tqdm bar over the ablated passes (``None``: when a call runs >= 512 of them).
    """

    name = "Ablation-CAM"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, *,
                 batch_size: int | None = None, precision: str = "fp32", fill: str = "zero", tail: str = "auto",
                 progress: bool | None = None):
        if fill not in ABLATION_FILLS:
            raise ValueError(f"Unknown fill {fill!r}. Fix: use one of {', '.join(ABLATION_FILLS)}.")
        if tail not in ABLATION_TAILS:
            raise ValueError(f"Unknown tail {tail!r}. Fix: use one of {', '.join(ABLATION_TAILS)}.")
        super().__init__(model, target_layer, batch_size=batch_size, precision=precision, progress=progress)
        self.fill = fill
        self.tail = tail
        self.last_tail_side: int | None = None  # input side used for the layers before the target (None: full)

    @property
    def forward_passes(self) -> int:
        """``C + 1``: one (partial) pass per ablated channel plus the unablated full pass."""
        return self.num_channels() + 1

    def _fill_values(self, acts: torch.Tensor) -> torch.Tensor:
        """Value written into an ablated channel, per image ``[N]``."""
        if self.fill == "zero":
            return acts.new_zeros(acts.shape[0])
        lo = acts.amin((1, 2, 3))
        return torch.where(lo == 0, torch.zeros_like(lo), lo - _PEER_ABLATION_VALUE)

    def _tail_side(self, set_value, acts: torch.Tensor, logits: torch.Tensor, full_side: int) -> tuple[int | None, torch.Tensor]:
        """Smallest dummy input side whose shortcut reproduces ``logits``, and the logits it gave."""
        if self.tail == "full":
            return None, logits
        bf16 = self._use_bf16(acts.device)
        tol = (5e-2 if bf16 else 1e-4) * (1.0 + logits.abs().amax())
        for side in _TINY_SIDES:
            if side >= full_side:
                break
            dummy = acts.new_zeros(acts.shape[0], 3, side, side)
            set_value(acts)
            try:
                out = self._logits(dummy)
            except (RuntimeError, ValueError) as err:  # the network needs a larger input
                log.debug("%s: tiny input %d failed (%s)", self.name, side, err)
                continue
            finally:
                set_value(None)
            if out.shape == logits.shape and bool(((out - logits).abs() <= tol).all()):  # one sync per call
                return side, out
        if self.tail == "tiny":
            raise RuntimeError(
                f"{self.name}: running only the layers after the target layer does not reproduce the model's "
                "logits (a connection bypasses the target layer, or the network needs its full input). "
                "Fix: use tail='auto' or tail='full'."
            )
        log.info("%s: layers before the target layer feed later layers; using full forward passes.", self.name)
        return None, logits

    def _raw(self, images: torch.Tensor, targets: Targets = "predicted") -> tuple[torch.Tensor, torch.Tensor]:
        """Raw maps ``[K, N, h, w]`` and target ids ``[N, K]``."""
        with torch.no_grad():
            device = images.device
            acts, logits = self._forward_capture(images)
            ids = resolve_targets(logits, targets)  # [N, K]
            n_img, c = acts.shape[:2]
            fill = self._fill_values(acts)
            layer = resolve_layer(self.model, self.target_layer)
            with replace_output(layer) as set_value:
                side, reference = self._tail_side(set_value, acts, logits, min(images.shape[-2:]))
                self.last_tail_side = side
                y = reference.gather(1, ids)  # [N, K]: unablated scores through the same path

                def scores(chunk: slice) -> torch.Tensor:
                    item = torch.arange(chunk.start, chunk.stop, device=device)
                    image, channel = item // c, item % c
                    ablated = acts[image]  # advanced indexing copies
                    ablated[torch.arange(len(item), device=device), channel] = fill[image, None, None]
                    inputs = images[image] if side is None else images.new_zeros(len(item), 3, side, side)
                    set_value(ablated)
                    try:
                        out = self._logits(inputs)
                    finally:
                        set_value(None)
                    return out.gather(1, ids[image])  # [b, K]

                with self._progress_bar(n_img * c, self.name) as bar:
                    y_k = self._batched(scores, n_img * c, device, bar).view(n_img, c, -1)  # [N, C, K]
            drop = y[:, None, :] - y_k
            weights = torch.where(y[:, None, :] != 0, drop / y[:, None, :], drop)
            maps = torch.einsum("nck,nchw->knhw", weights, acts)
            return F.relu(maps), ids
