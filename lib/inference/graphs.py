"""Exported graphs on disk: one per (weights, part, input height x width, backend), written atomically.

* **Key.** :func:`weights_fingerprint` hashes every parameter and buffer (name, dtype, shape and
  bytes) with SHA-256, so two models share a graph only when their weights are equal.  The hash
  is remembered on the module until a tensor is replaced or changed in place (PyTorch's
  per-tensor version counter), so training, ``load_state_dict`` or randomising a layer gives a
  new key.  Writes through ``tensor.data`` bypass that counter (PyTorch's documented difference
  from ``detach()``): change weights with in-place operations under ``torch.no_grad()``, or call
  :func:`lib.inference.runtimes.clear` and ``del model._graph_fingerprint`` after such a write.  The file
  name also holds the model's name, the part, the input side, the runtime's and PyTorch's
  versions and :data:`FORMAT`, so a new exporter never reads an old graph.
* **Where.** ``$CAM_GRAPH_CACHE`` when set, else ``$XDG_CACHE_HOME/cam-compendium/graphs``
  (``~/.cache/...``).
* **Atomic.** A graph is exported into a temporary folder that is renamed into place; a graph
  that fails to load is deleted and exported again (:func:`cached_graph`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch
from torch import nn

__all__ = ["CACHE_ENV", "FORMAT", "cache_root", "weights_fingerprint", "graph_dir", "cached_graph", "export"]

log = logging.getLogger(__name__)

CACHE_ENV = "CAM_GRAPH_CACHE"
FORMAT = 1
"""Bumped when the way graphs are exported changes (old files are then never read)."""


def cache_root() -> Path:
    """The folder of exported graphs (``$CAM_GRAPH_CACHE``, else the user's cache folder)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cam-compendium" / "graphs"


def _state_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(model.named_parameters()) + list(model.named_buffers())


def _version_key(model: nn.Module) -> tuple:
    """Identity and in-place version of every parameter and buffer, in one walk over the modules
    (called before every fast forward, so kept cheap)."""
    key = []
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for t in tensors.values():
                if t is not None:
                    key.append((t.data_ptr(), t._version))
    return tuple(key)


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex, 24 digits) of every parameter and buffer of ``model``: name, dtype, shape, bytes.

    Cached on the module and recomputed when any tensor is replaced or modified in place.
    """
    version = _version_key(model)
    memo = model.__dict__.get("_graph_fingerprint")
    if memo is not None and memo[0] == version:
        return memo[1]
    digest = hashlib.sha256()
    for name, t in _state_tensors(model):
        data = t.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    value = digest.hexdigest()[:24]
    model.__dict__["_graph_fingerprint"] = (version, value)
    return value


def graph_dir(model: nn.Module, part: str, input_shape: tuple[int, int, int], backend: str,
              runtime_version: str) -> Path:
    """The folder of one exported graph (see the module docstring for what its name holds)."""
    c, h, w = input_shape
    name = getattr(model, "name", type(model).__name__)
    torch_version = torch.__version__.split("+")[0]
    key = (f"{name}-{part}-{c}x{h}x{w}-{weights_fingerprint(model)}-"
           f"{backend}{runtime_version}-torch{torch_version}-f{FORMAT}")
    return cache_root() / key


def export(module: nn.Module, input_shape: tuple[int, int, int], backend: str, folder: Path) -> None:
    """Export ``module`` (inputs ``[B, *input_shape]``, dynamic ``B``) for ``backend`` into ``folder``."""
    example = torch.rand(2, *input_shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about constants (normalisation) are expected
        if backend == "openvino":
            import openvino as ov

            graph = ov.convert_model(module, example_input=example, input=[ov.PartialShape([-1, *input_shape])])
            # compress_to_fp16=False: the default would store the weights in half precision.
            ov.save_model(graph, str(folder / "model.xml"), compress_to_fp16=False)
        elif backend == "onnxruntime":
            torch.onnx.export(module, (example,), str(folder / "model.onnx"), dynamo=False, input_names=["x"],
                              output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=17)
        else:
            raise ValueError(f"No graph export for backend {backend!r}.")


def cached_graph(model: nn.Module, module: nn.Module, part: str, input_shape: tuple[int, int, int],
                 backend: str, runtime_version: str, load: Callable[[Path], object]) -> object:
    """``load(folder)`` of the cached graph, exporting it first when missing or unreadable."""
    folder = graph_dir(model, part, input_shape, backend, runtime_version)
    if folder.is_dir():
        try:
            return load(folder)
        except Exception as err:  # a damaged or incompatible file: rebuild it
            log.warning("Exported graph %s could not be loaded (%s); exporting it again.", folder, err)
            shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log.info("Exporting %s (%s, input %s) for %s into %s", getattr(model, "name", "model"), part,
             "x".join(map(str, input_shape)), backend, folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        export(module, input_shape, backend, tmp)
        try:
            os.replace(tmp, folder)  # atomic; fails if another process put it there first
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load(folder)
