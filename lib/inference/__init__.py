"""The fast CPU inference path of forward-only work, behind one switch.

Score-CAM, Group-CAM, RISE and SA-CAM's masked passes, and every metric that classifies
perturbed images (AD/IC, percentage in, deletion/insertion, density, adversarial verification)
only need logits: no gradient, no hook.  On a CPU, PyTorch eager is several times slower at
that than a compiled runtime (``benchmarks/run.py``, section "forward paths"), so these loops
call :func:`forward_logits`, which runs the model on

* ``"openvino"``: the model exported to OpenVINO IR (fp32 by default; bf16 with
  ``precision="bf16"`` where the CPU has it), or
* ``"onnxruntime"``: the model exported to ONNX, run by ONNX Runtime's CPU provider (fp32 only), or
* ``"torch"``: PyTorch eager, the **reference path** (exact-value tests, the peer comparison).

**The switch.** :func:`set_backend` (or :func:`use_backend` as a context manager, or the
environment variable ``CAM_INFERENCE``) picks one of :data:`BACKENDS`.  ``"auto"`` (the default)
uses OpenVINO on the CPU when it is installed, else ONNX Runtime, else PyTorch; on CUDA it uses
PyTorch (its bf16 autocast path; see DESIGN.md).  ``CAM_INFERENCE=torch`` runs every loop on the
reference path.

**When the fast path applies.**  Only where it cannot change what is computed; everything else
runs on PyTorch, silently except for a ``logging.DEBUG`` line naming the reason
(:func:`fast_backend` returns it):

* the model is a :class:`lib.models.Classifier` on the CPU, in eval mode, with float32 inputs;
* gradients are off (``torch.no_grad()`` / ``inference_mode``): a compiled graph has no backward;
* no forward hook or pre-hook is registered on any of its modules (nor a global one): a hook
  may read or replace a layer's output (``capture_layer``, Ablation-CAM's ``replace_output``),
  which an exported graph would skip.  Ablation-CAM therefore stays on PyTorch: its ablated
  passes feed the replaced target-layer output through the layers after it, run on a 32-px dummy
  input (``tail="auto"``), which already costs a small fraction of a full forward.

**Numbers.**  The measured bound of the fp32 path against PyTorch fp32 eager on real weights is in
``benchmarks/results/cpu.json`` ("forward paths": largest logit difference; "fast path": largest
per-pixel map and per-image metric difference on validation images); ``tests/test_inference.py``
checks every method and metric that uses it within :data:`FP32_MAP_BOUND` /
:data:`FP32_METRIC_BOUND`.  bf16 is an explicit option (``precision="bf16"``), never the default.

**Graphs.** One graph per model: ``model.net``, the network without its normalisation (which
runs in PyTorch before it), exported once per (weights, input height and width, backend) and
cached on disk (:mod:`lib.inference.graphs`): the key holds a SHA-256 of every parameter and
buffer, so different weights never share a graph, and changed weights (training, the cascading
randomisation) get a new one.  The batch dimension is dynamic.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import torch
from torch import nn

from ..precision import check_precision

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "FP32_MAP_BOUND",
    "FP32_METRIC_BOUND",
    "available_backends",
    "fast_backend",
    "fast_logits",
    "forward_logits",
    "get_backend",
    "resolve_backend",
    "set_backend",
    "use_backend",
]

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("auto", "torch", "openvino", "onnxruntime")
FAST_BACKENDS: tuple[str, ...] = ("openvino", "onnxruntime")
ENV_VAR = "CAM_INFERENCE"

FP32_MAP_BOUND = 1e-3
"""Largest per-pixel difference (maps min-max normalised to [0, 1]) allowed between the fp32 fast
path and PyTorch fp32 eager in the tests: DESIGN.md's bound for fp32 paths."""
FP32_METRIC_BOUND = 1e-3
"""Largest per-image difference of a probability-valued metric (in [0, 1]; 0.1 percentage points
for the metrics in %) allowed between the fp32 fast path and PyTorch fp32 eager in the tests."""

_configured: str | None = None  # None: the environment variable, else "auto"


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"Unknown inference backend {name!r}. Fix: use one of {', '.join(BACKENDS)} "
                         f"(set with lib.inference.set_backend or the {ENV_VAR} environment variable).")
    return name


def get_backend() -> str:
    """The configured backend: :func:`set_backend`'s, else ``$CAM_INFERENCE``, else ``"auto"``."""
    if _configured is not None:
        return _configured
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={value!r} is not an inference backend. Fix: set it to one of "
                         f"{', '.join(BACKENDS)}, or unset it.")
    return value


def set_backend(name: str | None) -> None:
    """Choose the backend of every forward-only loop (``None``: back to ``$CAM_INFERENCE`` / auto)."""
    global _configured
    _configured = None if name is None else _check_backend(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: :func:`set_backend` ``name`` inside the block, the previous choice after it."""
    global _configured
    previous = _configured
    set_backend(name)
    try:
        yield
    finally:
        _configured = previous


def available_backends() -> list[str]:
    """The fast backends whose runtime is installed (import succeeds), in order of preference."""
    from . import runtimes

    return [name for name in FAST_BACKENDS if runtimes.installed(name)]


def resolve_backend(device: torch.device | str = "cpu") -> str:
    """The backend that ``"auto"`` (or the configured choice) means on ``device``.

    ``"torch"`` on non-CPU devices whatever is configured (the runtimes here are CPU builds).
    A configured fast backend that is not installed raises ``ImportError`` naming the package.
    """
    configured = get_backend()
    if torch.device(device).type != "cpu" or configured == "torch":
        return "torch"
    if configured == "auto":
        found = available_backends()
        return found[0] if found else "torch"
    from . import runtimes

    runtimes.require(configured)
    return configured


def _has_hooks(model: nn.Module) -> bool:
    from torch.nn.modules import module as module_mod

    if module_mod._global_forward_hooks or module_mod._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def _torch_reason(model: nn.Module, x: torch.Tensor) -> str | None:
    """Why this call must run on PyTorch (``None``: the fast path may run it)."""
    from ..models import Classifier

    if not isinstance(model, Classifier):
        return f"{type(model).__name__} is not a lib.models.Classifier"
    if x.device.type != "cpu":
        return f"inputs on {x.device}"
    if x.dtype != torch.float32:
        return f"{x.dtype} inputs"
    if torch.is_grad_enabled():
        return "gradients are enabled"
    if model.training:
        return "the model is in training mode"
    if _has_hooks(model):
        return "a forward hook is registered on the model"
    return None


_logged: set[str] = set()


def fast_backend(model: nn.Module, x: torch.Tensor) -> str | None:
    """The fast backend that :func:`forward_logits` would use for ``model(x)``, or ``None`` (PyTorch)."""
    backend = resolve_backend(x.device)
    if backend == "torch":
        return None
    reason = _torch_reason(model, x)
    if reason is not None:
        if reason not in _logged:
            _logged.add(reason)
            log.debug("Inference on PyTorch instead of %s: %s.", backend, reason)
        return None
    return backend


def _autocast_precision(device: torch.device) -> str:
    """``"bf16"`` inside a bfloat16 autocast region of ``device``'s type, else ``"fp32"``."""
    if torch.is_autocast_enabled(device.type) and torch.get_autocast_dtype(device.type) == torch.bfloat16:
        return "bf16"
    return "fp32"


def forward_logits(model: nn.Module, x: torch.Tensor, *, part: str = "model",
                   precision: str | None = None) -> torch.Tensor:
    """Logits of a forward-only pass: ``model(x)`` (``part="model"``, ``[0, 1]`` images) or
    ``model.net(x)`` (``part="net"``, normalised tensors), on the configured backend.

    Args:
        model: a classifier (the fast path needs a :class:`lib.models.Classifier`; others run eager).
        x: ``[B, 3, H, W]`` inputs.
        part: ``"model"`` or ``"net"`` (the network without its normalisation).
        precision: ``"fp32"`` or ``"bf16"`` for the fast path; ``None``: bf16 inside a bfloat16
            autocast region, else fp32.  On the PyTorch path the surrounding autocast state
            applies as before (this argument does not add one).

    Returns:
        ``[B, classes]`` logits on ``x``'s device: float32 from a fast backend; on PyTorch whatever
        the network returns (callers take ``.float()``).
    """
    if part not in ("model", "net"):
        raise ValueError(f"part must be 'model' or 'net', got {part!r}")
    backend = fast_backend(model, x)
    if backend is None:
        if part == "net":
            if getattr(model, "channels_last", False):
                x = x.contiguous(memory_format=torch.channels_last)
            return model.net(x)
        return model(x)
    return fast_logits(model, x, backend, part=part, precision=precision)


def fast_logits(model: nn.Module, x: torch.Tensor, backend: str, *, part: str = "model",
                precision: str | None = None) -> torch.Tensor:
    """:func:`forward_logits` on ``backend``, a fast backend that :func:`fast_backend` returned for
    this model and input (callers that already asked it do not ask again)."""
    precision = _autocast_precision(x.device) if precision is None else precision
    check_precision(precision)
    from .runtimes import compiled_runner

    # One graph per model: the network without its normalisation, which runs here in PyTorch.
    # So ``model(x)`` and ``model.net(model.normalize(x) * 1)`` feed the same graph the same
    # tensor and tie exactly, as on PyTorch (IC's strict ``O > Y`` at a mask of ones needs that).
    if part == "model":
        x = model.normalize(x)
    return compiled_runner(model, tuple(x.shape[-3:]), backend, precision)(x)
