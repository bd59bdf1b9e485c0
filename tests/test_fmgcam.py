"""FM-G-CAM (lib/cams/fmgcam.py): the fusion against a hand computation, the norms, the method on a
real model, the batched backward pass, and the multi-colour renderer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib.cams import FMGCAM, GradCAM, get_method
from lib.cams.fmgcam import NORMS, class_maps, fuse, l2_normalize, winner_take_all
from lib.cams.gradient import gradcam_map
from lib.cams.hooks import forward_with_gradients
from lib.plotting import CLASS_COLOURS, class_colours, fused_figure, fused_overlay

# ---------------------------------------------------------------------------------------------
# The hand computation: C = 2 channels, a 2 x 2 layer, K = 2 classes, one image.
#   A^0 = [[1, 0], [2, -1]],  A^1 = [[0, 3], [1, -2]]
#   class a: dy/dA^0 = [[4, 0], [2, 2]] (mean 2),   dy/dA^1 = [[1, -1], [0, 0]] (mean 0)
#   class b: dy/dA^0 = [[-2, 0], [0, -2]] (mean -1), dy/dA^1 = [[3, 1], [0, 0]] (mean 1)
# Eq. 3 (channel mean): R_a = (2 A^0 + 0 A^1) / 2 = [[1, 0], [2, -1]]
#                       R_b = (-A^0 + A^1) / 2    = [[-0.5, 1.5], [-0.5, -0.5]]
# Eq. 4: a wins (0,0) and (1,0); b wins (0,1) with 1.5 and (1,1) with -0.5 (> -1):
#        S_a = [[1, 0], [2, 0]],  S_b = [[0, 1.5], [0, -0.5]]
# Eq. 6: ||S'||_2 = sqrt(1 + 4 + 2.25 + 0.25) = sqrt(7.5); ReLU drops b's -0.5;
# one min-max over both maps (min 0, max 2 / sqrt(7.5)):
#        a = [[0.5, 0], [1, 0]],  b = [[0, 0.75], [0, 0]]
# ---------------------------------------------------------------------------------------------
A = torch.tensor([[[[1.0, 0.0], [2.0, -1.0]], [[0.0, 3.0], [1.0, -2.0]]]])  # [N=1, C=2, 2, 2]
G = torch.tensor([
    [[[[4.0, 0.0], [2.0, 2.0]], [[1.0, -1.0], [0.0, 0.0]]]],     # class a: [N, C, 2, 2]
    [[[[-2.0, 0.0], [0.0, -2.0]], [[3.0, 1.0], [0.0, 0.0]]]],    # class b
])  # [K=2, N=1, C=2, 2, 2]
R_HAND = torch.tensor([[[[1.0, 0.0], [2.0, -1.0]], [[-0.5, 1.5], [-0.5, -0.5]]]])
S_HAND = torch.tensor([[[[1.0, 0.0], [2.0, 0.0]], [[0.0, 1.5], [0.0, -0.5]]]])
FUSED_HAND = torch.tensor([[[[0.5, 0.0], [1.0, 0.0]], [[0.0, 0.75], [0.0, 0.0]]]])


def test_class_maps_are_eq3_channel_means_of_gradient_weighted_activations():
    torch.testing.assert_close(class_maps(A, G), R_HAND)


def test_winner_take_all_keeps_only_the_largest_class_per_pixel():
    torch.testing.assert_close(winner_take_all(R_HAND), S_HAND)


def test_fusion_matches_the_hand_computation_at_k2():
    torch.testing.assert_close(fuse(class_maps(A, G)), FUSED_HAND)


def test_gelu_and_elu_fusions_match_the_hand_computation():
    norm = math.sqrt(7.5)
    values = {"a00": 1 / norm, "a10": 2 / norm, "b01": 1.5 / norm, "b11": -0.5 / norm, "zero": 0.0}
    activations = {
        "gelu": lambda x: x * 0.5 * (1 + math.erf(x / math.sqrt(2))),
        "elu": lambda x: x if x > 0 else math.exp(x) - 1,
    }
    for name, f in activations.items():
        v = {key: f(x) for key, x in values.items()}
        low, high = min(v.values()), max(v.values())
        scale = lambda key: (v[key] - low) / (high - low)  # noqa: E731
        expected = torch.tensor([[[[scale("a00"), scale("zero")], [scale("a10"), scale("zero")]],
                                  [[scale("zero"), scale("b01")], [scale("zero"), scale("b11")]]]])
        torch.testing.assert_close(fuse(class_maps(A, G), activation=name), expected)
        # the negative winner is the minimum: the losers' zeros are lifted above it (the "noise" of Fig. 5)
        assert scale("zero") > 0


def test_eq6_norm_is_undone_by_the_min_max_under_relu_but_not_under_gelu():
    torch.manual_seed(0)
    r = torch.randn(3, 4, 7, 7) * 0.01
    torch.testing.assert_close(fuse(r, "relu", "eq6"), fuse(r, "relu", None))
    assert (fuse(r, "gelu", "eq6") - fuse(r, "gelu", None)).abs().max() > 1e-3


def test_each_norm_reading_normalises_its_own_axis():
    torch.manual_seed(1)
    s = winner_take_all(torch.randn(2, 3, 5, 6))
    torch.testing.assert_close(l2_normalize(s, "eq6").pow(2).sum((1, 2, 3)), torch.ones(2))
    per_class = l2_normalize(s, "class").pow(2).sum((2, 3))
    torch.testing.assert_close(per_class, torch.ones(2, 3))
    columns = l2_normalize(s, "released").pow(2).sum(2)  # [N, K, W]: each class's columns over its rows
    nonzero = s.pow(2).sum(2) > 0
    torch.testing.assert_close(columns[nonzero], torch.ones(int(nonzero.sum())))
    torch.testing.assert_close(l2_normalize(s, "pixel"), torch.sign(s))  # one non-zero class per pixel
    assert l2_normalize(s, None) is s


def test_zero_maps_give_zeros_not_nan():
    for norm in NORMS:
        out = fuse(torch.zeros(1, 2, 3, 3), norm=norm)
        assert torch.isfinite(out).all() and out.abs().max() == 0


def test_bad_options_name_the_choices():
    with pytest.raises(ValueError, match="activation"):
        fuse(R_HAND, activation="tanh")
    with pytest.raises(ValueError, match="norm"):
        l2_normalize(R_HAND, "l1")


# --- the method on a real model --------------------------------------------------------------

def test_batched_backward_equals_one_backward_per_class(lite0, photos):
    loop = forward_with_gradients(lite0, photos, "top4")
    batched = forward_with_gradients(lite0, photos, "top4", batched_backward=True)
    torch.testing.assert_close(batched.gradients, loop.gradients)
    assert torch.equal(batched.targets, loop.targets)


def test_batched_backward_falls_back_to_the_loop(lite0, photos, monkeypatch):
    import lib.cams.hooks as hooks

    loop = forward_with_gradients(lite0, photos[:2], "top2")
    real_grad = torch.autograd.grad

    def no_batching(*args, **kwargs):
        if kwargs.get("is_grads_batched"):
            raise RuntimeError("no batching rule")
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(hooks.torch.autograd, "grad", no_batching)
    fallback = forward_with_gradients(lite0, photos[:2], "top2", batched_backward=True)
    torch.testing.assert_close(fallback.gradients, loop.gradients)


def test_fmgcam_on_lite0_fuses_the_top_k_classes(lite0, photos):
    fm = FMGCAM(lite0, k=3)
    explanation = fm.explain(photos, size=None)
    low = explanation.maps  # [N, K, h, w] at the layer's resolution
    assert low.shape[:2] == (4, 3)
    logits = lite0(photos).detach()
    assert torch.equal(explanation.class_ids, logits.topk(3, 1).indices)
    torch.testing.assert_close(explanation.probabilities, logits.softmax(1).gather(1, explanation.class_ids))
    assert ((low > 0).sum(1) <= 1).all(), "more than one class claims a pixel"
    torch.testing.assert_close(low.amax((1, 2, 3)), torch.ones(4))  # one min-max over all K maps
    assert low.amin() >= 0
    full = fm(photos)
    assert full.shape == (4, 3, 224, 224) and full.min() >= 0 and full.max() <= 1


def test_every_class_weights_the_same_unmodified_activations(lite0, photos):
    """The released code's in-place weighting is not reproduced: R^k is Grad-CAM's signed map / C for every k."""
    captured = forward_with_gradients(lite0, photos, "top3")
    r = class_maps(captured.activations, captured.gradients)  # [N, K, h, w]
    channels = captured.activations.shape[1]
    signed_gradcam = gradcam_map(captured.activations, captured.gradients, relu=False).transpose(0, 1)
    torch.testing.assert_close(r, signed_gradcam / channels, rtol=1e-4, atol=1e-7)


def test_explicit_targets_and_their_order(lite0, photos):
    fm = FMGCAM(lite0)
    ids = torch.tensor([[281, 967]] * 4)
    forward = fm(photos, ids, size=None)
    backward = fm(photos, ids.flip(1), size=None)
    torch.testing.assert_close(backward, forward.flip(1))
    assert get_method("fm-g-cam", lite0, k=2).k == 2


def test_fmgcam_with_k1_is_grad_cam(lite0, photos):
    fused = FMGCAM(lite0, k=1)(photos, size=None)[:, 0]
    gradcam = GradCAM(lite0)(photos, "predicted", size=None)
    from lib.maps import minmax_normalize

    torch.testing.assert_close(fused, minmax_normalize(gradcam), atol=1e-5, rtol=1e-4)


def test_constructor_errors():
    model = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="k must be"):
        FMGCAM(model, k=0)
    with pytest.raises(ValueError, match="activation"):
        FMGCAM(model, activation="sigmoid")
    with pytest.raises(ValueError, match="norm"):
        FMGCAM(model, norm="l1")


# --- the renderer ----------------------------------------------------------------------------

def test_fused_overlay_blends_each_class_colour_by_its_intensity():
    image = torch.full((3, 4, 4), 0.5)
    maps = torch.zeros(2, 4, 4)
    maps[0, :, :2] = 1.0  # class 0 (red) claims the left half at full intensity
    out = fused_overlay(image, maps, alpha=0.8)
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(out[1, 0], 0.2 * 0.5 + 0.8 * np.array(CLASS_COLOURS[0]), atol=1e-6)
    np.testing.assert_allclose(out[1, 3], [0.5, 0.5, 0.5], atol=0.05)  # unclaimed: the image (bicubic ringing aside)
    maps[1, :, 2:] = 0.5  # class 1 (green) at half intensity on the right
    out = fused_overlay(image, maps, alpha=0.8)
    np.testing.assert_allclose(out[1, 3], 0.6 * 0.5 + 0.4 * np.array(CLASS_COLOURS[1]), atol=0.05)


def test_renderer_colours_and_errors():
    assert class_colours(7)[:5] == list(CLASS_COLOURS) and len(set(class_colours(7))) == 7
    with pytest.raises(ValueError, match="K, h, w"):
        fused_overlay(torch.zeros(3, 4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="colours"):
        fused_overlay(torch.zeros(3, 4, 4), torch.zeros(3, 4, 4), colours=[(1.0, 0.0, 0.0)])


def test_fused_figure_has_legend_with_names_and_probabilities():
    import matplotlib.pyplot as plt

    images = torch.rand(1, 3, 8, 8)
    maps = torch.rand(1, 2, 8, 8)
    fig = fused_figure(images, {"FM-G-CAM": maps}, [["tabby", "tiger cat"]], torch.tensor([[0.6, 0.3]]),
                       per_class=maps)
    texts = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    plt.close(fig)
    assert texts == ["tabby (60%)", "tiger cat (30%)"]
