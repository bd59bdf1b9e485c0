"""Shared machinery of the perturbation (mask-based) CAMs: Score-CAM, Ablation-CAM, RISE, Group-CAM.

These methods explain a class by running the classifier on many perturbed copies of each image
(masked inputs, or ablated feature maps) and weighting masks or feature maps by the resulting
class scores.  The methods live one per file (:mod:`lib.cams.score`, :mod:`lib.cams.ablation`,
:mod:`lib.cams.rise`, :mod:`lib.cams.group`); this module holds what they share:

* **Batching.** The perturbed copies of all images are flattened into one list of
  ``(image, perturbation)`` items and run in chunks of ``batch_size`` (default 8 on the CPU, fitted
  to free memory on CUDA: :func:`default_batch_size`) through :func:`lib.batching.map_batches`, which halves the chunk on out-of-memory
  instead of failing.  No ``.item()`` and no host synchronisation inside the loops: indices,
  targets and scores stay on the model's device.
* **Inference path.** On the CPU the perturbed passes (and nothing that needs a hook or a
  gradient) run on :mod:`lib.inference`'s compiled path (OpenVINO by default; PyTorch eager with
  ``CAM_INFERENCE=torch``), within its measured bound of PyTorch fp32.
* **Precision.** ``precision="bf16"`` runs the perturbed forward passes under bfloat16 autocast
  with channels-last inputs on CUDA, or in OpenVINO's bf16 on the CPU fast path; scores are
  taken in float32 from the bf16 logits.  PyTorch eager on the CPU logs (``logging.INFO``) and
  runs fp32.
* **Masking convention** (``convention=``, PROTOCOLS.md):

  - ``"image"`` (default): the mask multiplies the ``[0, 1]`` image, ``model(x * m)``; muted
    pixels are *black*.  This is the convention of the AD/IC protocol and of L-CAM-Img.
  - ``"normalized"``: the mask multiplies the normalised tensor, ``model.net(model.normalize(x) * m)``;
    muted pixels are the dataset *mean*.  This is what pytorch-grad-cam, TorchCAM and the
    authors' Score-CAM and RISE code do, because their models take normalised tensors.
    Requires a :class:`lib.models.Classifier` (``normalize`` and ``net``).

* **Progress.** A tqdm bar over the perturbed forward passes; ``progress=None`` shows it when a
  call runs at least :data:`PROGRESS_MIN_PASSES` of them (seconds or more on a CPU),
  ``progress=False`` never.
* ``forward_passes``: network forward passes per image (perturbed ones plus the unperturbed
  pass that picks the targets), for "#FW" columns and forward-rate limits.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..batching import map_batches, suggest_batch_size
from .gradient import CAM
from ..inference import fast_backend, fast_logits
from ..precision import check_precision
from .hooks import capture_layer
from ..maps import gaussian_blur  # the one blur (torchvision's), re-exported for the CAMs
from ..metrics.masking import CONVENTIONS  # one definition for the metrics and the perturbation CAMs

__all__ = [
    "PerturbationCAM",
    "CONVENTIONS",
    "PROGRESS_MIN_PASSES",
    "default_batch_size",
    "gaussian_blur",
    "replace_output",
]

log = logging.getLogger(__name__)

PROGRESS_MIN_PASSES = 512
"""``progress=None`` shows a bar when one call runs at least this many perturbed forward passes."""


CUDA_BYTES_PER_INPUT = 64 * 2**20
"""Memory budget per perturbed 224 x 224 input on CUDA (ResNet-50's fp32 inference peak, rounded up)."""


def default_batch_size(device: torch.device | str) -> int:
    """Perturbed inputs per forward pass when ``batch_size`` is not given.

    * CUDA: fitted to free memory (half of it at :data:`CUDA_BYTES_PER_INPUT` per input, at most
      512); :func:`lib.batching.map_batches` halves it on out-of-memory.
    * CPU: 8.  On a 2-core CPU small batches stay in cache and are fastest (measured with
      ``benchmarks/run.py``: Lite0 forward 72 / 71 / 53 / 51 / 39 img/s at batch 1 / 4 / 8 / 16 / 32,
      ResNet-50 16 / 21 / 23 / 19 / 16 img/s).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return suggest_batch_size(CUDA_BYTES_PER_INPUT, device, default=256, cap=512)
    return 8


@contextlib.contextmanager
def replace_output(module: nn.Module) -> Iterator[Callable[[torch.Tensor], None]]:
    """Context manager: a forward hook that replaces ``module``'s output by a given tensor.

    Yields ``set_value(tensor)``; each forward pass of ``module`` then returns that tensor instead
    of what it computed (the layers after it see the replacement; ``None`` leaves the output
    alone).  ``set_value.calls()`` counts the hook's calls.  The hook is removed on exit.
    """
    state: dict = {"value": None, "calls": 0}

    def hook(_module, _inputs, output):
        state["calls"] += 1
        return state["value"]

    def set_value(value: torch.Tensor | None) -> None:
        state["value"] = value

    set_value.calls = lambda: state["calls"]  # type: ignore[attr-defined]

    handle = module.register_forward_hook(hook)
    try:
        yield set_value
    finally:
        handle.remove()


class PerturbationCAM(CAM):
    """Base class of the mask-based CAMs: batching, precision, conventions, progress.

    Subclasses implement :meth:`_raw` (maps ``[K, N, h, w]`` or ``[K, N, H, W]`` and target ids
    ``[N, K]``); :meth:`__call__` (from :class:`lib.cams.gradient.CAM`) min-max normalises each map
    and upsamples it to the image (a no-op resize for maps already at the input size).
    """

    name = "perturbation"

    def __init__(self, model: nn.Module, target_layer: str | nn.Module | None = None, *,
                 batch_size: int | None = None, precision: str = "fp32", convention: str = "image",
                 progress: bool | None = None):
        check_precision(precision)
        if convention not in CONVENTIONS:
            raise ValueError(f"Unknown convention {convention!r}. Fix: use one of {', '.join(CONVENTIONS)}.")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if convention == "normalized" and not (hasattr(model, "normalize") and hasattr(model, "net")):
            raise ValueError(
                f"convention='normalized' needs a lib.models.Classifier (with .normalize and .net), "
                f"got {type(model).__name__}. Fix: wrap the network in Classifier or use convention='image'."
            )
        super().__init__(model, target_layer, precision=precision)
        self.batch_size = batch_size
        self.convention = convention
        self.progress = progress
        self._warned_precision = False
        self._channels: int | None = None

    # --- devices and precision -----------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _chunk(self, device: torch.device) -> int:
        return self.batch_size or default_batch_size(device)

    def _use_bf16(self, device: torch.device) -> bool:
        if self.precision != "bf16":
            return False
        if device.type == "cuda":
            return True
        if not self._warned_precision:
            log.info("%s: precision='bf16' runs on CUDA and on the CPU fast path (lib.inference); "
                     "PyTorch eager runs this call in fp32 on %s.", self.name, device)
            self._warned_precision = True
        return False

    def _autocast(self, device: torch.device):
        if self._use_bf16(device):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- forward passes ------------------------------------------------------------------------

    def _base(self, images: torch.Tensor) -> torch.Tensor:
        """What the masks multiply: the ``[0, 1]`` image or the normalised tensor (``convention``)."""
        return self.model.normalize(images) if self.convention == "normalized" else images

    def _logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Float32 logits of a batch of (masked) inputs in the space of :meth:`_base`."""
        part = "net" if self.convention == "normalized" else "model"
        backend = fast_backend(self.model, batch)
        if backend is not None:  # the CPU fast path (lib.inference), fp32 or bf16
            return fast_logits(self.model, batch, backend, part=part, precision=self.precision)
        device = batch.device
        bf16 = self._use_bf16(device)
        net = self.model.net if self.convention == "normalized" else self.model
        if bf16 or (self.convention == "normalized" and getattr(self.model, "channels_last", False)):
            batch = batch.contiguous(memory_format=torch.channels_last)
        with self._autocast(device):
            return net(batch).float()

    def _forward_capture(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One unperturbed forward pass: target-layer activations ``[N, C, h, w]`` and logits (float32)."""
        with capture_layer(self.model, self.target_layer, with_grad=False) as cap, self._autocast(images.device):
            logits = self.model(images)
        acts = cap.require().float()
        self._channels = acts.shape[1]
        return acts, logits.float()

    def num_channels(self) -> int:
        """Channels of the target layer (one probe forward pass on a black image, then cached)."""
        if self._channels is None:
            pre = getattr(self.model, "preprocess", None)
            side = getattr(pre, "crop", 224)
            x = torch.zeros(1, 3, side, side, device=self.device)
            with torch.no_grad():
                self._forward_capture(x)
        return self._channels

    # --- batching and progress -----------------------------------------------------------------

    def _progress_bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        show = self.progress if self.progress is not None else total >= PROGRESS_MIN_PASSES
        return tqdm(total=total, desc=desc, unit="pass", disable=not show, leave=False)

    def _batched(self, fn: Callable[[slice], torch.Tensor], n: int, device: torch.device, bar) -> torch.Tensor:
        """``torch.cat([fn(chunk) ...])`` over ``n`` items in chunks of ``batch_size`` (OOM back-off)."""

        def run(chunk: slice) -> torch.Tensor:
            out = fn(chunk)
            bar.update(chunk.stop - chunk.start)
            return out

        return map_batches(run, n, self._chunk(device))
