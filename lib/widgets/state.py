"""What the explorer shows, as plain data: the selection, class search and candidate layers.

Nothing here imports ipywidgets: :class:`Selection` is the snapshot of the controls that one
computation uses (so a computation in the background thread never reads a widget), and the
helpers are pure functions that the tests call directly.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import nn

__all__ = [
    "TARGET_MODES",
    "Selection",
    "search_classes",
    "candidate_layers",
    "normalize_method",
    "JOINT_METHODS",
    "LAYERLESS_METHODS",
]

TARGET_MODES: tuple[str, ...] = ("predicted", "top-k", "class")
"""How the target classes are chosen: the top-1 prediction, the ``k`` highest logits, or one class by name."""

MAX_TOPK = 10

JOINT_METHODS: frozenset[str] = frozenset({"fmgcam"})
"""Methods whose K maps are one joint explanation of the K classes (FM-G-CAM's winner-take-all and
shared min-max): a class's map depends on which other classes are explained with it. Every other
method's map of a class depends on that class only."""


LAYERLESS_METHODS: frozenset[str] = frozenset({"rise"})
"""Methods that ignore the target layer (RISE looks only at inputs and outputs): the layer is not
part of their cache key, so changing it reuses their maps."""


def normalize_method(name: str) -> str:
    """A method name as :func:`lib.cams.get_method` keys it (lower case, no '-', '_' or spaces)."""
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


@dataclass(frozen=True)
class Selection:
    """One state of the explorer's controls: everything a computation depends on.

    Attributes:
        image: image key of :class:`lib.widgets.images.ImageLibrary` (``"photo:chelsea"``,
            ``"sample:<id>"``, ``"upload:<sha256>"``).
        model: a name of :data:`lib.models.MODELS`.
        methods: CAM method names (keys of :data:`lib.cams.METHODS`), shown side by side.
        target_mode: one of :data:`TARGET_MODES`.
        k: how many classes in ``"top-k"`` mode (1..10).
        class_id: the ImageNet class in ``"class"`` mode.
        layer: dotted module name of the target layer, or ``None`` for the model's default.
        threshold: in ``[0, 1)``; map pixels *below* it are set to 0, both in the overlays shown and
            in the map whose AD/IC is reported ("the current map"). 0 keeps the whole map.
    """

    image: str
    model: str
    methods: tuple[str, ...]
    target_mode: str = "predicted"
    k: int = 3
    class_id: int | None = None
    layer: str | None = None
    threshold: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        if not self.methods:
            raise ValueError("No CAM method selected. Fix: pick at least one method in the 'methods' list.")
        if self.target_mode not in TARGET_MODES:
            raise ValueError(f"Unknown target mode {self.target_mode!r}. Fix: use one of {', '.join(TARGET_MODES)}.")
        if not 1 <= int(self.k) <= MAX_TOPK:
            raise ValueError(f"k = {self.k} is out of range. Fix: choose k in 1..{MAX_TOPK}.")
        if self.target_mode == "class" and self.class_id is None:
            raise ValueError("Target mode 'class' needs a class. Fix: type part of a class name in the search "
                             "box and pick one from the list.")
        if not 0.0 <= float(self.threshold) < 1.0:
            raise ValueError(f"threshold = {self.threshold} is out of range. Fix: use a value in [0, 1).")

    @property
    def targets(self) -> str | int:
        """The ``targets`` argument of a CAM call: ``"predicted"``, ``"top<k>"`` or a class id."""
        if self.target_mode == "predicted":
            return "predicted"
        if self.target_mode == "top-k":
            return f"top{int(self.k)}"
        return int(self.class_id)  # type: ignore[arg-type]

    def with_(self, **changes) -> "Selection":
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)


def search_classes(query: str, names: Sequence[str], limit: int = 50) -> list[tuple[int, str]]:
    """ImageNet classes matching ``query``: ``[(class id, name), ...]``, best matches first.

    Case-insensitive. A number selects that class id; otherwise names starting with the query
    come first, then names containing it (alphabetical within each group), then close spellings
    (``difflib``) when nothing contains it. An empty query lists the first ``limit`` classes.
    """
    q = query.strip().lower()
    if not q:
        return list(enumerate(names))[:limit]
    if q.isdigit():
        i = int(q)
        return [(i, names[i])] if 0 <= i < len(names) else []
    lowered = [n.lower() for n in names]
    prefix = [i for i, n in enumerate(lowered) if n.startswith(q)]
    inner = [i for i, n in enumerate(lowered) if q in n and not n.startswith(q)]
    hits = sorted(prefix, key=lambda i: lowered[i]) + sorted(inner, key=lambda i: lowered[i])
    if not hits:
        close = difflib.get_close_matches(q, lowered, n=limit, cutoff=0.6)
        hits = [lowered.index(c) for c in close]
    return [(i, names[i]) for i in hits[:limit]]


_NOT_LAYERS = (nn.ModuleList, nn.ModuleDict, nn.Identity, nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d,
               nn.ReplicationPad2d, nn.Dropout, nn.Dropout2d)


def candidate_layers(model: nn.Module, max_depth: int = 3) -> list[str]:
    """Modules of ``model`` that output one 4-D feature map ``[N, C, h, w]``: target-layer choices.

    One forward pass of a black image (side ``model.preprocess.crop``, else 224) with a hook on
    every module; modules whose dotted name has at most ``max_depth`` parts (e.g. ``net.blocks.7``,
    ``net.layer4``, ``net.features.29``), that run exactly once and whose map is larger than 1x1
    are kept, in forward order (paddings, identities and dropouts are skipped).
    The model's default ``target_layer`` is always included. Hooks are removed before returning.
    """
    calls: dict[str, int] = {}
    order: list[str] = []
    handles = []

    def hook(name):
        def record(_module, _inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if (isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-2:].numel() > 1
                    and name not in order):
                order.append(name)
        return record

    for name, module in model.named_modules():
        skip = isinstance(module, _NOT_LAYERS) or type(module).__name__ == "Identity"
        if name and len(name.split(".")) <= max_depth and not skip:
            handles.append(module.register_forward_hook(hook(name)))
    try:
        side = getattr(getattr(model, "preprocess", None), "crop", 224)
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, 3, side, side, device=device))
    finally:
        for h in handles:
            h.remove()
    layers = [n for n in order if calls.get(n) == 1]
    default = getattr(model, "target_layer", None)
    if default and default not in layers:
        layers.append(default)
    return layers
