"""lib.inputs.check_images at every public entry point: each CAM method and metric refuses bad images.

Every method of ``lib.cams.METHODS`` (through ``__call__``, ``raw`` and ``signed_raw``), UCAG,
L-CAM, AM-Grad-CAM, FM-G-CAM's ``explain`` / ``capture``, SA-CAM's ``candidate_maps`` and every
metric of ``lib.metrics`` that takes images gets each bad input of :data:`BAD` and must raise the
expected error with a message naming the fix; a valid batch with float noise of 1e-6 outside
[0, 1] must pass.  Coverage tests make sure a new method class or a new metric with an
``images`` argument cannot escape this file.  Everything runs on the tiny model of
``test_cams`` (8 x 8 images): the checks raise before any forward pass.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import numpy as np
import pytest
import torch
from test_cams import tiny_model

import lib.cams.attention
import lib.cams.lcam
import lib.metrics
from lib.cams import CAM, METHODS, UCAG, GradCAM, UCAGSettings, get_method, unfold_and_conquer
from lib.cams.attention import AMGradCAM, ChannelSpatialAttention, ParameterFreeAttention
from lib.cams.lcam import LCAM, LCAMAttention
from lib.cams.sacam import candidate_maps
from lib.cams.ucag import partial_explanations
from lib.inputs import IMAGE_TOL, check_images
from lib.metrics import (adversarial_verification, average_drop_increase, cascading_randomization,
                         confidence_scores, deletion_insertion, explanation_logits, map_density, percentage_in)

N, SIDE = 2, 8
NUMEL = N * 3 * SIDE * SIDE
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SMALL = {"rise": {"n_masks": 16}}  # RISE's 4000 masks are the default; 16 keep the valid-input test fast


def images() -> torch.Tensor:
    """A valid batch ``[2, 3, 8, 8]`` in [0, 1]."""
    return torch.rand(N, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))


def _one_inf(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[1, 2, 3, 4] = math.inf
    return x


BAD: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], type[Exception], str]] = {
    "all NaN": (lambda x: torch.full_like(x, math.nan), ValueError, f"{NUMEL} of {NUMEL} values are NaN"),
    "one inf": (_one_inf, ValueError, f"1 of {NUMEL} values are inf"),
    "uint8": (lambda x: (x * 255).round().to(torch.uint8), TypeError, r"uint8: convert with images\.float\(\) / 255"),
    "float 0..255": (lambda x: x * 255, ValueError, "0..255 pixels: divide by 255"),
    "ImageNet-normalised": (lambda x: (x - IMAGENET_MEAN) / IMAGENET_STD, ValueError,
                            "look normalised.*the model normalises them itself"),
    "[3, H, W] (no batch)": (lambda x: x[0], ValueError, r"add a batch dimension with images\[None\]"),
    "[N, H, W, 3]": (lambda x: x.permute(0, 2, 3, 1).contiguous(), ValueError, r"permute\(0, 3, 1, 2\)"),
    "4 channels": (lambda x: torch.cat([x, x[:, :1]], 1), ValueError, r"got float32 \[2, 4, 8, 8\]: 4 channels"),
    "empty batch": (lambda x: x[:0], ValueError, r"empty batch \(N = 0\)"),
}


# --- the entry points --------------------------------------------------------------------------------

def _method_entries() -> dict[str, Callable[[torch.Tensor], object]]:
    """``__call__``, ``raw`` and ``signed_raw`` of every registry method, plus the wrappers and extras."""
    model = tiny_model()
    out: dict[str, Callable[[torch.Tensor], object]] = {}
    for name in METHODS:
        cam = get_method(name, model, **SMALL.get(name, {}))
        out[f"{name}()"] = cam
        out[f"{name}.raw"] = cam.raw
        out[f"{name}.signed_raw"] = cam.signed_raw
    settings = UCAGSettings(n=2)
    out["ucag-gradcam()"] = UCAG(GradCAM(model), settings)
    out["ucag-scorecam()"] = UCAG(get_method("scorecam", model), settings)  # signed_raw's unchecked path on crops
    out["unfold_and_conquer"] = lambda x: unfold_and_conquer([GradCAM(model)], x, settings=settings)
    out["partial_explanations"] = lambda x: partial_explanations([GradCAM(model)], x, settings=settings)
    lcam = LCAM(model, LCAMAttention(2, 3))
    out["lcam()"], out["lcam.raw"], out["lcam.signed_raw"] = lcam, lcam.raw, lcam.signed_raw
    for label, attention in (("parameter-free", ParameterFreeAttention()),
                             ("trained", ChannelSpatialAttention(2, reduction=1))):
        am = AMGradCAM(model, attention)
        out[f"amgradcam ({label})()"], out[f"amgradcam ({label}).signed_raw"] = am, am.signed_raw
    fm = get_method("fmgcam", model)
    out["fmgcam.explain"], out["fmgcam.capture"] = fm.explain, fm.capture
    sacam = get_method("sacam", model)
    out["sacam candidate_maps"] = lambda x: list(candidate_maps(sacam, x, "predicted", [0.5], [1.0], [1.0]))
    return out


def _metric_entries() -> dict[str, Callable[[torch.Tensor], object]]:
    """Every metric that takes images, called with valid maps, targets and hosts for the valid batch."""
    model = tiny_model()
    maps = torch.rand(N, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1])
    hosts = torch.rand(N, 2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    return {
        "confidence_scores": lambda x: confidence_scores(model, x, maps, targets),
        "average_drop_increase": lambda x: average_drop_increase(model, x, maps, targets),
        "percentage_in": lambda x: percentage_in(model, x, maps, targets),
        "explanation_logits": lambda x: explanation_logits(model, x, maps),
        "deletion_insertion (deletion)": lambda x: deletion_insertion(model, x, maps, targets, pixels_per_step=16),
        "deletion_insertion (insertion)": lambda x: deletion_insertion(model, x, maps, targets, "insertion",
                                                                       pixels_per_step=16, blur_kernel=3),
        "map_density": lambda x: map_density(model, x, maps, targets),
        "adversarial_verification": lambda x: adversarial_verification(model, x, maps, targets, hosts),
        "cascading_randomization": lambda x: cascading_randomization(model, lambda m: GradCAM(m), x, targets),
    }


METHOD_ENTRIES = _method_entries()
METRIC_ENTRIES = _metric_entries()
ENTRIES = {**METHOD_ENTRIES, **METRIC_ENTRIES}


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("entry", list(ENTRIES))
def test_every_entry_point_refuses_bad_images(entry, bad):
    make, error, match = BAD[bad]
    with pytest.raises(error, match=match):
        ENTRIES[entry](make(images()))


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_valid_images_with_float_noise_pass(entry):
    x = images()
    x[0, 0, 0, 0] = 1 + 1e-6  # e.g. rounding after a resize: within the tolerance, passed on unchanged
    x[1, 2, 7, 7] = -1e-6
    ENTRIES[entry](x)


@pytest.mark.parametrize("bad", ["all NaN", "one inf", "uint8", "float 0..255", "ImageNet-normalised"])
def test_adversarial_verification_checks_the_hosts(bad):
    make, error, match = BAD[bad]
    model, x = tiny_model(), images()
    hosts = make(torch.rand(N, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2)))[:, None]  # K = 1 host
    with pytest.raises(error, match=f"hosts.*{match.replace('images', 'hosts')}"):
        adversarial_verification(model, x, torch.rand(N, SIDE, SIDE), torch.tensor([0, 1]), hosts)


# --- coverage: a new method or metric cannot escape ---------------------------------------------------

def _concrete_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= _concrete_subclasses(sub)
        if not sub.__name__.startswith("_") and sub.__module__.startswith("lib."):
            found.add(sub)
    return found


def test_every_method_class_is_covered():
    assert lib.cams.lcam and lib.cams.attention  # imported: their classes are CAM subclasses too
    covered = {type(fn) if isinstance(fn, CAM) else type(getattr(fn, "__self__", None))
               for fn in METHOD_ENTRIES.values()}
    covered |= {type(cam.method) for cam in METHOD_ENTRIES.values() if isinstance(cam, UCAG)}
    abstract = {"PerturbationCAM"}  # the base of the mask-based methods, never used on its own
    missing = {c.__name__ for c in _concrete_subclasses(CAM) if c not in covered and c.__name__ not in abstract}
    assert not missing, f"add these CAM classes to tests/test_input_checks.py: {sorted(missing)}"
    assert all(f"{name}()" in METHOD_ENTRIES for name in METHODS)


# Public names of lib.metrics that take images but are not metrics: building blocks of one.
NOT_METRICS = {"embed_core_area": "pastes pixels for adversarial_verification, which checks its images and hosts"}


def test_every_metric_that_takes_images_is_covered():
    takes_images = {name for name in lib.metrics.__all__
                    if callable(obj := getattr(lib.metrics, name)) and not isinstance(obj, type)
                    and "images" in inspect.signature(obj).parameters}
    covered = {entry.split(" ")[0] for entry in METRIC_ENTRIES}
    missing = takes_images - covered - set(NOT_METRICS)
    assert not missing, f"add these metrics to tests/test_input_checks.py: {sorted(missing)}"


# --- check_images itself ----------------------------------------------------------------------------

def test_valid_images_come_back_unchanged_in_any_float_dtype():
    x = images()
    assert check_images(x) is x
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        y = x.to(dtype)
        assert check_images(y) is y
    edge = x.clone()
    edge[0, 0, 0, 0], edge[0, 0, 0, 1] = 1 + 0.9 * IMAGE_TOL, -0.9 * IMAGE_TOL
    assert torch.equal(check_images(edge), edge)  # not clamped


def test_messages_name_what_was_found_and_the_fix():
    x = images()
    with pytest.raises(TypeError, match="torch.Tensor.*numpy.ndarray"):
        check_images(x.numpy())
    with pytest.raises(TypeError, match="torch.Tensor.*list"):
        check_images(x.tolist())
    # a PIL-like uint8 [H, W, 3] array as a tensor: both problems in one message
    with pytest.raises(TypeError, match=r"channels-last \[H, W, 3\].*permute\(2, 0, 1\)\[None\].*uint8"):
        check_images(torch.from_numpy(np.zeros((8, 8, 3), dtype=np.uint8)))
    with pytest.raises(TypeError, match="bool"):
        check_images(x > 0.5)
    with pytest.raises(TypeError, match=r"int64.*images\.float\(\) / 255"):
        check_images((x * 255).long())
    with pytest.raises(ValueError, match=r"grayscale.*expand\(-1, 3, -1, -1\)"):
        check_images(x[:, :1])
    with pytest.raises(ValueError, match=r"5-D tensor.*\[N, 3, H, W\]"):
        check_images(x[None])
    with pytest.raises(ValueError, match="zero height or width"):
        check_images(x[:, :, :0])
    with pytest.raises(ValueError, match="hosts contain non-finite values: 1 of"):
        check_images(_one_inf(x), name="hosts")
    nan_and_inf = _one_inf(x)
    nan_and_inf[0, 0, 0, :2] = math.nan
    with pytest.raises(ValueError, match=f"2 of {NUMEL} values are NaN and 1 of {NUMEL} values are inf"):
        check_images(nan_and_inf)
    with pytest.raises(ValueError, match=r"values up to 1\.05.*bicubic resize.*clamp\(0, 1\)"):
        check_images(x * 1.05 / x.max())
    with pytest.raises(ValueError, match=r"values down to -0\.05.*clamp\(0, 1\)"):
        check_images(torch.cat([x[:1], x[1:] - 0.05 - x[1:].min()]))
    with pytest.raises(ValueError, match="look normalised"):  # e.g. EfficientNet-Lite's (x - 127) / 128: [-1, 1]
        check_images(x * 2 - 1)
