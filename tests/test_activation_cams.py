"""LayerCAM, HiResCAM, EigenCAM, CAM: hand-computed values, equality with pytorch-grad-cam, head checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lib.maps import minmax_normalize as minmax
from lib.cams import GradCAM
from lib.cams.activation import (EigenCAM, HiResCAM, LayerCAM, OriginalCAM, find_last_linear,
                                 principal_projection)
from lib.models import Classifier
from lib.transforms import Preprocess
from test_cams import tiny_image, tiny_model


def spatial_head_model() -> Classifier:
    """tiny_model's conv + ReLU 'act', then flatten + linear: gradients vary over the pixels.

    Class 0's weights: +2 on A0 at (0, 0), -1 on A1 at (0, 0), +1 on A0 at (3, 0); classes 1, 2: 0.
    """
    base = tiny_model()
    fc = nn.Linear(32, 3, bias=False)
    with torch.no_grad():
        w = torch.zeros(3, 2, 4, 4)
        w[0, 0, 0, 0], w[0, 1, 0, 0], w[0, 0, 3, 0] = 2.0, -1.0, 1.0
        fc.weight.copy_(w.flatten(1))
    net = nn.Sequential()
    net.add_module("conv", base.net.conv)
    net.add_module("act", nn.ReLU())
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", fc)
    model = Classifier("spatial", net, Preprocess(4, 4, (0.0,) * 3, (1.0,) * 3), "net.act", ["a", "b", "c"])
    return model.eval().requires_grad_(False)


def block_image(top_left: bool) -> torch.Tensor:
    """R = 1 and G = 0.5 on the top-left 2x2 block (``top_left``) or on the other 12 pixels."""
    block = torch.zeros(4, 4, dtype=torch.bool)
    block[:2, :2] = True
    region = block if top_left else ~block
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0][region] = 1.0
    x[0, 1][region] = 0.5
    return x


# --- LayerCAM / HiResCAM ------------------------------------------------------------------

def test_layercam_by_hand_on_tiny_model():
    model, x = tiny_model(), tiny_image()
    # Class 2: dy/dA = [1/16, -1/16] everywhere; ReLU keeps channel 0 (R): 1/16 on the left half,
    # where Grad-CAM's ReLU((R - G) / 16) keeps only the bottom-left quarter.
    expected = torch.zeros(1, 4, 4)
    expected[0, :, :2] = 1 / 16
    torch.testing.assert_close(LayerCAM(model)(x, 2, size=None), expected)
    expected = torch.zeros(1, 4, 4)
    expected[0, :2, :] = 1 / 16  # class 1: G
    torch.testing.assert_close(LayerCAM(model)(x, 1, size=None), expected)


def test_hirescam_equals_gradcam_on_gap_linear_head():
    model, x = tiny_model(), tiny_image()
    expected = torch.zeros(1, 4, 4)
    expected[0, 2:, :2] = 1 / 16
    torch.testing.assert_close(HiResCAM(model)(x, 2, size=None), expected)
    for c in range(3):
        torch.testing.assert_close(HiResCAM(model)(x, c, size=None), GradCAM(model)(x, c, size=None))


def test_spatial_gradients_by_hand():
    model, x = spatial_head_model(), tiny_image()  # A0 = R (left half), A1 = G (top half)
    hires = torch.zeros(1, 4, 4)
    hires[0, 0, 0], hires[0, 3, 0] = 2 - 1, 1  # sum_k g_k A_k
    torch.testing.assert_close(HiResCAM(model)(x, 0, size=None), hires)
    layer = torch.zeros(1, 4, 4)
    layer[0, 0, 0], layer[0, 3, 0] = 2, 1  # sum_k ReLU(g_k) A_k
    torch.testing.assert_close(LayerCAM(model)(x, 0, size=None), layer)
    grad = torch.zeros(1, 4, 4)  # weights 3/16 (A0), -1/16 (A1): ReLU(3/16 R - 1/16 G)
    grad[0, :2, :2], grad[0, 2:, :2] = 2 / 16, 3 / 16
    torch.testing.assert_close(GradCAM(model)(x, 0, size=None), grad)


# --- EigenCAM -----------------------------------------------------------------------------

def test_eigencam_by_hand():
    # A0 = 1_S, A1 = 0.5 * 1_S on the top-left block S (4 of 16 pixels): rank one after centring,
    # v = (2, 1) / sqrt(5), projection = (1_S - 1/4) * 2.5 / sqrt(5): 3 sqrt(5) / 8 on S, -sqrt(5) / 8 off S.
    model, x = tiny_model(), block_image(top_left=True)
    on, off = 3 * math.sqrt(5) / 8, math.sqrt(5) / 8
    signed = torch.full((1, 4, 4), -off)
    signed[0, :2, :2] = on
    activations = model.net.act(model.net.conv(x))
    for sign in ("activation", "max"):
        torch.testing.assert_close(principal_projection(activations, sign), signed)
    torch.testing.assert_close(principal_projection(activations, "svd").abs(), signed.abs())
    torch.testing.assert_close(EigenCAM(model)(x, size=None), signed.clamp_min(0))
    expected = torch.zeros(1, 4, 4)
    expected[0, :2, :2] = 1.0
    torch.testing.assert_close(EigenCAM(model)(x), expected)


def test_eigencam_sign_conventions_differ_when_the_active_region_is_large():
    # Active on 12 of 16 pixels: the projection is +c/4 on them, -3c/4 on the 2x2 block.
    # "activation" keeps the active region positive; "max" flips toward the larger magnitude.
    model, x = tiny_model(), block_image(top_left=False)
    block = torch.zeros(1, 4, 4)
    block[0, :2, :2] = 1.0
    torch.testing.assert_close(EigenCAM(model)(x), 1 - block)
    torch.testing.assert_close(EigenCAM(model, sign="max")(x), block)
    with pytest.raises(ValueError, match="Unknown sign convention 'abs'.*activation"):
        EigenCAM(model, sign="abs")


def test_eigencam_is_class_agnostic_and_batched():
    model = tiny_model()
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    cam = EigenCAM(model)
    maps = cam(x)
    assert maps.shape == (3, 4, 4) and not maps.requires_grad
    for c in range(3):
        torch.testing.assert_close(cam(x, c), maps)
    top = cam(x, "top2")
    assert top.shape == (3, 2, 4, 4)
    torch.testing.assert_close(top[:, 1], maps)
    single = torch.cat([cam(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(single, maps)
    with pytest.raises(ValueError, match="out of range"):
        cam(x, 3)


# --- CAM (Zhou et al.) --------------------------------------------------------------------

def test_cam_by_hand_and_equal_to_gradcam_times_hw():
    model, x = tiny_model(), tiny_image()
    expected = torch.zeros(1, 4, 4)
    expected[0, 2:, :2] = 1.0  # ReLU(1 * R - 1 * G)
    torch.testing.assert_close(OriginalCAM(model)(x, 2, size=None), expected)
    for c in range(3):
        torch.testing.assert_close(OriginalCAM(model)(x, c, size=None), 16 * GradCAM(model)(x, c, size=None))
        torch.testing.assert_close(OriginalCAM(model)(x, c), GradCAM(model)(x, c))
    assert find_last_linear(model)[0] == "net.fc"
    torch.testing.assert_close(OriginalCAM(model, fc="net.fc")(x, "top3"), OriginalCAM(model)(x, "top3"))


def test_cam_refuses_heads_that_are_not_gap_plus_linear():
    with pytest.raises(ValueError, match="takes 32 features but the target layer has 2 channels.*GradCAM"):
        OriginalCAM(spatial_head_model())(tiny_image())
    with pytest.raises(ValueError, match="not an nn.Linear"):
        OriginalCAM(tiny_model(), fc="net.conv")
    # Target layer before the ReLU: fc(GAP(A)) no longer gives the logits (a mean of 0.5 makes the
    # network's input, hence the conv's output, negative somewhere; the image itself stays in [0, 1]).
    shifted = tiny_model()
    shifted.preprocess = Preprocess(4, 4, (0.5,) * 3, (1.0,) * 3)
    with pytest.raises(ValueError, match="differs from the model's logits"):
        OriginalCAM(shifted, target_layer="net.conv")(tiny_image())
    no_linear = Classifier("conv-only", nn.Sequential(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                           Preprocess(4, 4, (0.0,) * 3, (1.0,) * 3), "net.0", ["a", "b", "c"])
    with pytest.raises(ValueError, match="no nn.Linear.*fc="):
        OriginalCAM(no_linear)


def test_cam_refuses_vgg_and_densenet_heads():
    from lib.models import load_model

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    vgg = load_model("vgg16", weights=None)  # classifier: 3 linear layers
    with pytest.raises(ValueError, match="'net.classifier.6' takes 4096 features.*512 channels.*3 linear layers"):
        OriginalCAM(vgg)(x)
    del vgg
    # DenseNet applies F.relu(inplace=True) after features.norm5: the captured activations must be
    # the BatchNorm output (not overwritten by that ReLU), so the head check fails.
    densenet = load_model("densenet121", weights=None)
    with pytest.raises(ValueError, match="differs from the model's logits"):
        OriginalCAM(densenet)(x)


def test_constant_image_gives_zeros_and_hooks_are_removed():
    model = tiny_model()
    layer = model.get_submodule("net.act")
    black = torch.zeros(2, 3, 4, 4)
    for method in (LayerCAM(model), HiResCAM(model), EigenCAM(model), OriginalCAM(model)):
        maps = method(black)
        assert torch.isfinite(maps).all() and (maps == 0).all(), method.name
        method(tiny_image(), "top2")
    assert not layer._forward_hooks and not layer._backward_hooks
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


# --- real weights: equality with pytorch-grad-cam -----------------------------------------

def _peer(peer_cls, model, photos):
    layer = model.get_submodule(model.target_layer)
    model.requires_grad_(True)  # the peer back-propagates through the parameters
    try:
        with peer_cls(model=model, target_layers=[layer]) as peer:
            return torch.from_numpy(peer(input_tensor=photos, targets=None))
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ["LayerCAM", "HiResCAM", "EigenCAM"])
def test_equal_to_pytorch_grad_cam_on_lite0(lite0, photos, name):
    import pytorch_grad_cam as pgc

    ours = {"LayerCAM": LayerCAM, "HiResCAM": HiResCAM, "EigenCAM": EigenCAM}[name](lite0)(photos)
    theirs = _peer(getattr(pgc, name), lite0, photos)
    diff = (minmax(ours) - minmax(theirs)).abs().max().item()
    assert diff <= 1e-3, f"{name}: max abs difference {diff:.2e}"


def test_principal_projection_matches_peer_svd_on_lite0(lite0, photos):
    # Before the ReLU: same centring and projection as get_2d_projection.  The peer's sign is
    # LAPACK's (no correction); on these photos it agrees with our "activation" orientation, and
    # "svd" agrees with it up to sign (torch's MKL and NumPy's OpenBLAS may differ in sign).
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    from lib.cams.activation import forward_activations

    activations, _, _ = forward_activations(lite0, photos)
    theirs = torch.from_numpy(get_2d_projection(activations.numpy()))
    scale = theirs.abs().amax((-2, -1), keepdim=True)
    ours = principal_projection(activations)
    assert ((ours - theirs).abs() / scale).max() <= 1e-3
    raw = principal_projection(activations, "svd")
    assert ((raw.abs() - theirs.abs()).abs() / scale).max() <= 1e-3


def test_cam_equals_gradcam_on_lite0(lite0, photos):
    cam = OriginalCAM(lite0)
    assert cam.fc_name == "net.fc"
    ours, grad = cam(photos, "top2"), GradCAM(lite0)(photos, "top2")
    assert (ours - grad).abs().max() <= 1e-4
    raw = cam(photos, size=None)
    assert raw.shape == (4, 7, 7)
    torch.testing.assert_close(raw, 49 * GradCAM(lite0)(photos, size=None), rtol=1e-4, atol=1e-5)
