"""The CPU fast path (lib.inference) against the PyTorch fp32 reference, on real Lite0 weights.

Every method and metric whose forward-only passes run on the fast path gives maps within
``FP32_MAP_BOUND`` per pixel and metric values within ``FP32_METRIC_BOUND`` per image of PyTorch
eager; Ablation-CAM (a hook replaces the target layer's output) stays on PyTorch.  Plus the
switch, the reasons to stay on PyTorch, and the on-disk graph cache (keyed by the weights,
rebuilt when damaged).
"""

from __future__ import annotations

import logging

import pytest
import torch

from lib import inference
from lib.cams import METHODS, get_method
from lib.cams.hooks import capture_layer
from lib.cams.perturbation import PerturbationCAM
from lib.inference import FP32_MAP_BOUND, FP32_METRIC_BOUND, forward_logits, use_backend
from lib.inference import graphs, runtimes
from lib.metrics import (adversarial_verification, average_drop_increase, deletion_insertion, explanation_logits,
                         map_density, minmax_normalize, percentage_in)
from lib.metrics.average_drop import confidence_scores

FAST = [b for b in ("openvino", "onnxruntime") if runtimes.installed(b)]
pytestmark = pytest.mark.skipif(not FAST, reason="neither openvino nor onnxruntime is installed")


@pytest.fixture(scope="module", autouse=True)
def graph_cache(tmp_path_factory):
    """Graphs of this module go to a temporary folder; compiled runners are forgotten after it."""
    mp = pytest.MonkeyPatch()
    mp.setenv(graphs.CACHE_ENV, str(tmp_path_factory.mktemp("graphs")))
    runtimes.clear()
    yield
    runtimes.clear()
    mp.undo()


def both_paths(fn):
    """``fn()`` on PyTorch eager and on the default fast backend."""
    with use_backend("torch"):
        reference = fn()
    with use_backend(FAST[0]):
        fast = fn()
    return reference, fast


def assert_close(reference, fast, bound, what):
    if isinstance(reference, dict):
        for key in reference:
            if isinstance(reference[key], (dict, torch.Tensor)):
                assert_close(reference[key], fast[key], bound, f"{what}[{key!r}]")
        return
    diff = (reference.float() - fast.float()).abs().max().item()
    assert diff <= bound, f"{what}: fast path differs from PyTorch by {diff:.3g} (bound {bound:g})"


# ------------------------------------------------------------------------------------------ the switch
def test_backend_switch_and_environment(monkeypatch):
    monkeypatch.delenv(inference.ENV_VAR, raising=False)
    inference.set_backend(None)
    assert inference.get_backend() == "auto"
    assert inference.resolve_backend("cpu") == FAST[0]
    monkeypatch.setenv(inference.ENV_VAR, "torch")
    assert inference.resolve_backend("cpu") == "torch"
    with use_backend(FAST[-1]):
        assert inference.get_backend() != "torch"
    assert inference.get_backend() == "torch"  # restored
    monkeypatch.setenv(inference.ENV_VAR, "tensorrt")
    with pytest.raises(ValueError, match="CAM_INFERENCE"):
        inference.get_backend()
    with pytest.raises(ValueError, match="Unknown inference backend 'fast'"):
        inference.set_backend("fast")


def test_fast_path_only_where_it_cannot_change_what_is_computed(lite0, photos):
    x = photos[:1]
    with use_backend(FAST[0]):
        with torch.no_grad():
            assert inference.fast_backend(lite0, x) == FAST[0]
            assert inference.fast_backend(lite0, x.double()) is None
            assert inference.fast_backend(torch.nn.Sequential(lite0), x) is None  # not a Classifier
            with capture_layer(lite0, None, with_grad=False):
                assert inference.fast_backend(lite0, x) is None  # a hook would be skipped
            assert inference.fast_backend(lite0, x) == FAST[0]  # the hook was removed
        assert inference.fast_backend(lite0, x) is None  # gradients on
        with torch.no_grad():
            lite0.train()
            try:
                assert inference.fast_backend(lite0, x) is None
            finally:
                lite0.eval()
    with use_backend("torch"), torch.no_grad():
        assert inference.fast_backend(lite0, x) is None


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("part", ["model", "net"])
def test_logits_equal_pytorch(lite0, photos, backend, part):
    x = photos if part == "model" else lite0.normalize(photos)
    with torch.no_grad():
        reference = lite0(photos)
        with use_backend(backend):
            fast = forward_logits(lite0, x, part=part)
            fast_odd = forward_logits(lite0, x[:3], part=part)  # the batch dimension is dynamic
    assert fast.dtype == torch.float32 and fast.shape == reference.shape
    assert (fast - reference).abs().max().item() < 1e-4
    assert (fast_odd - reference[:3]).abs().max().item() < 1e-4


def test_bf16_is_explicit_and_bounded(lite0, photos):
    if "openvino" not in FAST:
        pytest.skip("bf16 runs on OpenVINO")
    with torch.no_grad(), use_backend("openvino"):
        reference = lite0(photos)
        fp32 = forward_logits(lite0, photos)
        bf16 = forward_logits(lite0, photos, precision="bf16")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = forward_logits(lite0, photos)  # the autocast region asks for bf16
    assert (fp32 - reference).abs().max().item() < 1e-4
    assert (bf16 - reference).abs().max().item() < 2.0  # measured 0.5-0.6 on these photos
    assert torch.equal(autocast, bf16)
    assert (bf16.argmax(1) == reference.argmax(1)).all()


def test_onnxruntime_has_no_bf16(lite0, photos):
    if "onnxruntime" not in FAST:
        pytest.skip("onnxruntime is not installed")
    with torch.no_grad(), use_backend("onnxruntime"), pytest.raises(ValueError, match="no bf16"):
        forward_logits(lite0, photos, precision="bf16")


# ------------------------------------------------------------------------------------ the graph cache
def test_graphs_keyed_by_weights_and_rebuilt_when_damaged(lite0, photos, caplog):
    from lib.models import load_model

    model = load_model("efficientnet_lite0")
    backend = FAST[0]
    version = runtimes.runtime_version(backend)
    shape = tuple(photos.shape[1:])
    folder = graphs.graph_dir(model, "net", shape, backend, version)
    assert folder == graphs.graph_dir(lite0, "net", shape, backend, version)  # equal weights share it
    with torch.no_grad(), use_backend(backend):
        before = forward_logits(model, photos)
        assert folder.is_dir()
        # Change one weight in place: a new key, a new graph, new logits.
        params = dict(model.named_parameters())
        last_bias = [n for n in params if n.endswith("bias")][-1]
        params[last_bias][0] += 5.0  # in place: its version counter moves
        changed = graphs.graph_dir(model, "net", shape, backend, version)
        assert changed != folder
        after = forward_logits(model, photos)
        assert changed.is_dir()
        assert (after - model(photos)).abs().max().item() < 1e-4
        assert (after[:, 0] - before[:, 0]).abs().min().item() > 1.0
        # A damaged graph is exported again, with a warning.
        runtimes.clear()
        for f in changed.iterdir():
            f.write_bytes(b"damaged")
        with caplog.at_level(logging.WARNING, logger="lib.inference.graphs"):
            again = forward_logits(model, photos)
        assert "exporting it again" in caplog.text
        assert (again - after).abs().max().item() < 1e-6


def test_fingerprint_follows_in_place_changes(lite0):
    from lib.models import load_model

    model = load_model("efficientnet_lite0")
    first = graphs.weights_fingerprint(model)
    assert graphs.weights_fingerprint(model) == first == graphs.weights_fingerprint(lite0)
    with torch.no_grad():
        next(model.parameters()).mul_(1.0001)
    assert graphs.weights_fingerprint(model) != first


# --------------------------------------------------------------------- every method that uses the path
def _last_block(model):
    return model.net.blocks[-1]


SLOW_METHODS = {  # registry name -> (settings, images): Lite0's last block (320 channels) keeps them short
    "scorecam": (dict(target_layer="last-block"), 1),
    "groupcam": ({}, 2),
    "rise": (dict(n_masks=256), 1),
    "sacam": (dict(target_layer="last-block"), 1),
    "ablationcam": ({}, 1),
}


def test_every_perturbation_method_is_compared():
    perturbation = {name for name, cls in METHODS.items() if issubclass(cls, PerturbationCAM)}
    assert perturbation == set(SLOW_METHODS), "a new mask-based method needs an equality test here"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLOW_METHODS))
def test_method_maps_equal_pytorch(lite0, photos, name):
    settings, n = SLOW_METHODS[name]
    settings = dict(settings)
    if settings.pop("target_layer", None) == "last-block":
        settings["target_layer"] = _last_block(lite0)
    layer = settings.pop("target_layer", None)
    reference, fast = both_paths(lambda: get_method(name, lite0, layer, progress=False, **settings)(photos[:n]))
    assert_close(reference, fast, FP32_MAP_BOUND, name)
    if name == "ablationcam":  # stays on PyTorch: its replaced target-layer output is a hook
        assert torch.equal(reference, fast)


@pytest.mark.slow
def test_ucag_maps_equal_pytorch(lite0, photos):
    reference, fast = both_paths(lambda: get_method("ucag-gradcam", lite0)(photos[:1]))
    assert_close(reference, fast, FP32_MAP_BOUND, "ucag-gradcam")


# --------------------------------------------------------------------- every metric that uses the path
@pytest.fixture(scope="module")
def metric_inputs(lite0, photos):
    images = photos[:2]
    with torch.no_grad():
        targets = lite0(images).argmax(1)
    maps = minmax_normalize(get_method("gradcam", lite0)(images, targets))
    return images, maps, targets


@pytest.mark.parametrize("convention", ["image", "normalized"])
@pytest.mark.parametrize("binary", [False, True])
def test_average_drop_increase_equal_pytorch(lite0, metric_inputs, convention, binary):
    images, maps, targets = metric_inputs
    reference, fast = both_paths(lambda: average_drop_increase(lite0, images, maps, targets, binary=binary,
                                                               convention=convention))
    # drop / score in %: the bound in probability is 1e-3, i.e. 0.1 points; increase is 0 or 100.
    for key in ("original", "drop", "score"):
        assert_close(reference[key], fast[key], 100 * FP32_METRIC_BOUND, key)
    assert_close(reference["increase"], fast["increase"], 0.0, "increase")


def test_percentage_in_confidence_and_logits_equal_pytorch(lite0, metric_inputs):
    images, maps, targets = metric_inputs
    reference, fast = both_paths(lambda: percentage_in(lite0, images, maps, targets))
    assert_close(reference, fast, 100 * FP32_METRIC_BOUND, "percentage_in")
    reference, fast = both_paths(lambda: confidence_scores(lite0, images, maps, targets))
    assert_close(reference[0], fast[0], FP32_METRIC_BOUND, "Y")
    assert_close(reference[1], fast[1], FP32_METRIC_BOUND, "O")
    for convention in ("image", "normalized"):
        reference, fast = both_paths(lambda: explanation_logits(lite0, images, maps, convention))
        assert_close(reference, fast, 1e-3, f"explanation_logits ({convention})")


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
@pytest.mark.parametrize("convention", ["normalized", "image"])
def test_deletion_insertion_equal_pytorch(lite0, metric_inputs, mode, convention):
    images, maps, targets = metric_inputs
    reference, fast = both_paths(lambda: deletion_insertion(lite0, images, maps, targets, mode=mode,
                                                            pixels_per_step=224 * 32, convention=convention))
    assert_close(reference, fast, FP32_METRIC_BOUND, f"{mode} ({convention})")


def test_density_and_adversarial_equal_pytorch(lite0, photos, metric_inputs):
    images, maps, targets = metric_inputs
    reference, fast = both_paths(lambda: map_density(lite0, images, maps, targets))
    assert_close({k: reference[k] for k in ("score_positive", "score_negative")},
                 {k: fast[k] for k in ("score_positive", "score_negative")}, FP32_METRIC_BOUND, "density scores")
    # densities are probabilities divided by map mass fractions: compare them relative to their size
    for key in ("positive", "negative"):
        rel = ((reference[key] - fast[key]).abs() / reference[key].abs().clamp_min(1e-6)).max().item()
        assert rel < 1e-3, f"density {key}: relative difference {rel:.3g}"
    hosts = photos[2:4].unsqueeze(0).expand(2, 2, 3, 224, 224)
    reference, fast = both_paths(lambda: adversarial_verification(lite0, images, maps, targets, hosts))
    assert_close({k: reference[k] for k in ("original", "embedded")},
                 {k: fast[k] for k in ("original", "embedded")}, FP32_METRIC_BOUND, "adversarial")
    assert torch.equal(reference["accuracy"], fast["accuracy"])


def test_openvino_compiles_without_cpu_pinning(monkeypatch, tmp_path):
    """Pinned, two one-thread processes side by side shared one core (lib.inference.runtimes' docstring)."""
    from lib.inference import runtimes
    seen = {}

    class Core:
        def compile_model(self, path, device, config):
            seen.update(config, device=device)
            raise RuntimeError("compiled")

    monkeypatch.setattr(runtimes, "_openvino_core", lambda: Core())
    with pytest.raises(RuntimeError, match="compiled"):
        runtimes._openvino_runner(tmp_path, "fp32")
    assert seen["ENABLE_CPU_PINNING"] is False and seen["INFERENCE_PRECISION_HINT"] == "f32" and seen["device"] == "CPU"
