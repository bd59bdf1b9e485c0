"""Hook machinery: capture a layer's activations and the gradients of class scores w.r.t. them.

The forward hook replaces the layer's output by a detached leaf tensor that requires grad (and
a clone of it, so that in-place operations downstream stay legal).  Gradients are then taken
with :func:`torch.autograd.grad` with respect to that leaf only, so

* the backward pass runs through the layers *after* the target layer only (the classifier
  head), not the whole network, which is what makes gradient CAMs cheap here;
* no ``.grad`` is accumulated on the model's parameters and their ``requires_grad`` flags are
  never touched;
* the hook is removed when the context exits, whatever happens inside: the model is left as
  found.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..config import get_logger
from ..models import resolve_layer
from ..precision import PRECISIONS, precision_autocast
from .targets import resolve_targets

__all__ = ["LayerCapture", "capture_layer", "forward_with_gradients", "Captured", "PRECISIONS"]

log = get_logger(__name__)


class LayerCapture:
    """What :func:`capture_layer` recorded: the leaf activations of the last forward."""

    def __init__(self, layer_name: str):
        self.layer_name = layer_name
        self.activations: torch.Tensor | None = None
        self.calls = 0

    def require(self) -> torch.Tensor:
        if self.calls == 0 or self.activations is None:
            raise RuntimeError(
                f"Target layer {self.layer_name!r} did not run in the forward pass. "
                "Fix: pick a layer that the model's forward actually calls."
            )
        if self.calls > 1:
            raise RuntimeError(
                f"Target layer {self.layer_name!r} ran {self.calls} times in one forward pass "
                "(a module shared between places), so its activations are ambiguous. "
                "Fix: pick a module that runs once."
            )
        return self.activations


@contextlib.contextmanager
def capture_layer(model: nn.Module, layer: str | nn.Module | None = None,
                  with_grad: bool = True) -> Iterator[LayerCapture]:
    """Context manager recording ``layer``'s output; with ``with_grad`` it becomes a grad leaf."""
    module = resolve_layer(model, layer)
    name = layer if isinstance(layer, str) else getattr(model, "target_layer", type(module).__name__)
    capture = LayerCapture(str(name))

    def hook(_module, _inputs, output):
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"Target layer {capture.layer_name!r} returns {type(output).__name__}, not a tensor. "
                "Fix: pick a layer whose output is a [N, C, H, W] tensor."
            )
        capture.calls += 1
        if not with_grad:
            # A clone: a later in-place op (e.g. DenseNet's ReLU(inplace=True)) would otherwise
            # overwrite the stored activations.
            capture.activations = output.detach().clone()
            return None
        leaf = output.detach().requires_grad_(True)
        capture.activations = leaf
        return leaf.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()


@dataclass
class Captured:
    """Activations ``[N, C, h, w]``, gradients ``[K, N, C, h, w]`` for K targets, logits, targets ``[N, K]``."""

    activations: torch.Tensor
    gradients: torch.Tensor
    logits: torch.Tensor
    targets: torch.Tensor


def forward_with_gradients(model: nn.Module, images: torch.Tensor, targets="predicted",
                           layer: str | nn.Module | None = None, precision: str = "fp32",
                           batched_backward: bool = False) -> Captured:
    """One forward pass and one backward per target column: activations and d(logit)/dA.

    ``targets`` as in :func:`lib.cams.targets.resolve_targets`.  Gradients are of the raw class
    score (the logit, before softmax), as in Grad-CAM Eq. 1.  Batched: the scores of all images
    are summed before the backward pass, which is exact because images do not interact in eval
    mode.

    ``precision="bf16"`` runs the forward pass under bfloat16 autocast (the fast path on GPUs);
    activations, gradients and logits are returned in float32 either way, so everything computed
    from them (the maps) is fp32 arithmetic on bf16-rounded inputs.

    ``batched_backward=True`` takes the K target columns' gradients in **one** batched backward
    pass (``torch.autograd.grad(..., is_grads_batched=True)``: the K one-hot output gradients are
    vmapped through the head), as FM-G-CAM asks. The result equals the per-column loop (tested);
    a head that vmap cannot batch falls back to the loop, with a log message.
    """
    with capture_layer(model, layer) as cap, torch.enable_grad(), precision_autocast(images.device, precision):
        logits = model(images)
        leaf = cap.require()
        target_ids = resolve_targets(logits, targets)
        gradients = _batched_gradients(logits, leaf, target_ids) if batched_backward else None
        if gradients is None:
            gradients = _gradients_per_column(logits, leaf, target_ids)
    return Captured(leaf.detach().float(), gradients.float(), logits.detach().float(), target_ids)


def _gradients_per_column(logits: torch.Tensor, leaf: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """``[K, N, C, h, w]``: one backward pass per target column (the scores of all images summed)."""
    grads = []
    k = target_ids.shape[1]
    for j in range(k):
        score = logits.gather(1, target_ids[:, j : j + 1]).sum()
        (g,) = torch.autograd.grad(score, leaf, retain_graph=j < k - 1)
        grads.append(g)
    return torch.stack(grads)


def _batched_gradients(logits: torch.Tensor, leaf: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor | None:
    """``[K, N, C, h, w]`` from one vmapped backward pass, or None when the head cannot be batched."""
    one_hot = torch.zeros((target_ids.shape[1], *logits.shape), dtype=logits.dtype, device=logits.device)
    one_hot.scatter_(2, target_ids.T.unsqueeze(-1), 1.0)  # one_hot[k, n, target_ids[n, k]] = 1
    try:
        (grads,) = torch.autograd.grad(logits, leaf, grad_outputs=one_hot, is_grads_batched=True,
                                       retain_graph=True)
    except RuntimeError as error:  # an op without a batching rule: the loop gives the same gradients
        log.info("Batched backward failed (%s); taking one backward pass per target instead.", error)
        return None
    return grads
