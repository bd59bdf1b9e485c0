"""Compiled runners of the fast backends: ``runner(x [B, C, H, W]) -> logits [B, classes]`` (float32).

One runner per (weights, part, input shape, backend, precision), kept in memory
(:data:`MAX_RUNNERS`, least recently used first out); the graph behind it comes from
:func:`lib.inference.graphs.cached_graph`.

* **OpenVINO**: the IR compiled for the CPU with ``INFERENCE_PRECISION_HINT`` ``f32`` (exactly:
  OpenVINO would otherwise pick bf16 by itself on CPUs with AMX/AVX-512-BF16) or ``bf16``,
  ``INFERENCE_NUM_THREADS`` = ``torch.get_num_threads()`` and the latency hint (one stream: the
  loops call it one batch at a time), and ``ENABLE_CPU_PINNING`` off: with pinning, OpenVINO binds its
  inference threads to the first cores, so two one-thread processes side by side (the pipeline's shards,
  trainings and notebooks) ran on the same core while the other idled (measured on 2 cores, Lite0 at batch
  16: 33 images/s each side by side against 64 alone; without pinning each keeps its own core).
* **ONNX Runtime**: the CPU execution provider, ``intra_op_num_threads`` = PyTorch's threads;
  fp32 only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch
from torch import nn

from .graphs import cached_graph, weights_fingerprint

__all__ = ["MAX_RUNNERS", "PACKAGES", "installed", "require", "runtime_version", "compiled_runner", "clear"]

log = logging.getLogger(__name__)

PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}
MAX_RUNNERS = 16

_runners: "OrderedDict[tuple, Callable[[torch.Tensor], torch.Tensor]]" = OrderedDict()


def installed(backend: str) -> bool:
    """Whether ``backend``'s runtime imports."""
    try:
        importlib.import_module(PACKAGES[backend])
    except ImportError:
        return False
    return True


def require(backend: str) -> None:
    """Raise ``ImportError`` naming the package when ``backend`` is configured but not installed."""
    if not installed(backend):
        raise ImportError(f"The inference backend {backend!r} needs the package {PACKAGES[backend]!r}. "
                          f"Fix: pip install {PACKAGES[backend]} (it is in requirements/lock.txt), or set "
                          "CAM_INFERENCE=auto or torch.")


def runtime_version(backend: str) -> str:
    return importlib.metadata.version(PACKAGES[backend])


def clear() -> None:
    """Forget every compiled runner (the graphs on disk stay)."""
    _runners.clear()


_OPENVINO_CORE = None


def _openvino_core():
    """One OpenVINO ``Core`` for the process, never destroyed: compiled models must not outlive the
    core (and the plugin) that compiled them."""
    global _OPENVINO_CORE
    if _OPENVINO_CORE is None:
        import openvino as ov

        _OPENVINO_CORE = ov.Core()
    return _OPENVINO_CORE


def _openvino_runner(folder, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    compiled = _openvino_core().compile_model(str(folder / "model.xml"), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "INFERENCE_NUM_THREADS": max(1, torch.get_num_threads()),
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,  # see the module docstring: pinned one-thread processes share one core
    })
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        # share_inputs: OpenVINO reads the array in place (the call is synchronous); the request's
        # output buffer is reused by the next call: copy it.
        return np.array(request.infer({0: x}, share_inputs=True)[0], dtype=np.float32, copy=True)

    return run


def _onnxruntime_runner(folder, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    if precision != "fp32":
        raise ValueError("ONNX Runtime's CPU provider has no bf16 path. Fix: use precision='fp32', or "
                         "lib.inference.set_backend('openvino') for bf16.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


_LOADERS = {"openvino": _openvino_runner, "onnxruntime": _onnxruntime_runner}


def compiled_runner(model: nn.Module, input_shape: tuple[int, int, int], backend: str,
                    precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The runner of ``model.net`` (the classifier without its normalisation) for ``[B, *input_shape]``
    normalised inputs."""
    require(backend)
    if backend == "onnxruntime" and precision != "fp32":
        _onnxruntime_runner(None, precision)  # raises the explanation
    key = (weights_fingerprint(model), input_shape, backend, precision)
    runner = _runners.get(key)
    if runner is not None:
        _runners.move_to_end(key)
        return runner
    run = cached_graph(model, model.net, "net", input_shape, backend, runtime_version(backend),
                       lambda folder: _LOADERS[backend](folder, precision))

    def runner(x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != input_shape:
            raise ValueError(f"runner for inputs {input_shape} got {tuple(x.shape[1:])}")
        return torch.from_numpy(run(x.detach().contiguous().numpy()))

    _runners[key] = runner
    while len(_runners) > MAX_RUNNERS:
        _runners.popitem(last=False)
    return runner
