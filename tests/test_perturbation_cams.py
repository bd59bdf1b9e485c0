"""Perturbation CAMs (Score-CAM, Ablation-CAM, RISE, Group-CAM): values by hand, peers, hygiene.

Real-weight checks run EfficientNet-Lite0 on the CPU; the expensive ones (1280 masked passes per
image, the peer as many again) use one image, and the cheaper conventions a 64 x 64 copy of it.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.maps import minmax_normalize as minmax
from lib.cams.ablation import AblationCAM
from lib.cams.group import GroupCAM, group_maps
from lib.cams.perturbation import gaussian_blur
from lib.cams.rise import RISE, rise_grids, rise_masks
from lib.cams.score import ScoreCAM, scorecam_masks
from lib.models import Classifier
from lib.transforms import Preprocess
from test_cams import tiny_image, tiny_model


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def softmax(values: list[float]) -> list[float]:
    e = [math.exp(v) for v in values]
    return [v / sum(e) for v in e]


def quadrant_image() -> torch.Tensor:
    """R = 1 on the left half, G = 1 on the top-left quadrant: logits (0.5, 0.25, 0.25) on tiny_model."""
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0, :, :2] = 1.0
    x[0, 1, :2, :2] = 1.0
    return x


# --- Score-CAM by hand --------------------------------------------------------------------------
# tiny_image: A0 = R (left half), A1 = G (top half), both already in [0, 1] at the input size, so
# the masks are R and G.  Masked by R: logits (0.5, 0.25, 0.25); by G: (0.25, 0.5, -0.25).

def test_scorecam_pytorch_grad_cam_convention_by_hand():
    model, x = tiny_model(), tiny_image()
    # target 2: masked logits 0.25 and -0.25, softmax over the two channels
    w0, w1 = sigmoid(0.5), sigmoid(-0.5)
    expected = torch.zeros(1, 4, 4)
    expected[0, :2, :2] = w0 + w1
    expected[0, :2, 2:] = w1
    expected[0, 2:, :2] = w0
    for baseline in ("pytorch-grad-cam", "torchcam"):  # TorchCAM's subtraction cancels in the softmax
        torch.testing.assert_close(ScoreCAM(model, baseline=baseline)(x, 2, size=None), expected)


def test_scorecam_paper_convention_by_hand():
    model, x = tiny_model(), tiny_image()
    p_r = softmax([0.5, 0.25, 0.25])[2]  # probability of class 2 when masked by R
    p_g = softmax([0.25, 0.5, -0.25])[2]
    expected = torch.zeros(1, 4, 4)
    expected[0, :2, :2] = p_r + p_g
    expected[0, :2, 2:] = p_g
    expected[0, 2:, :2] = p_r
    torch.testing.assert_close(ScoreCAM(model)(x, 2, size=None), expected)
    # class 0: P(0 | R-masked) weights R, P(0 | G-masked) weights G
    q_r, q_g = softmax([0.5, 0.25, 0.25])[0], softmax([0.25, 0.5, -0.25])[0]
    raw = ScoreCAM(model)(x, 0, size=None)[0]
    assert raw[0, 0] == pytest.approx(q_r + q_g) and raw[3, 0] == pytest.approx(q_r)


def test_scorecam_constant_channel_gets_no_weight():
    model = tiny_model()
    x = tiny_image()
    x[0, 1] = 1.0  # G everywhere: channel 1 is constant
    raw = ScoreCAM(model)(x, 0, size=None)[0]
    p_r = softmax([0.5, 0.5, 0.0])[0]  # masked by R: A0 mean 0.5, A1 = R mean 0.5
    torch.testing.assert_close(raw, p_r * x[0, 0])  # only R contributes
    masks = scorecam_masks(torch.ones(2, 3, 3), (6, 6), "paper")
    assert (masks == 0).all()


def test_scorecam_masks_match_each_reference():
    a = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0))
    up_true = F.interpolate(a[:, None], size=(20, 20), mode="bilinear", align_corners=True)[:, 0]
    lo, hi = up_true.amin((1, 2), keepdim=True), up_true.amax((1, 2), keepdim=True)
    torch.testing.assert_close(scorecam_masks(a, (20, 20), "pytorch-grad-cam"), (up_true - lo) / (hi - lo + 1e-8))
    lo, hi = a.amin((1, 2), keepdim=True), a.amax((1, 2), keepdim=True)
    low = (a - lo) / (hi - lo + 1e-8)
    torch.testing.assert_close(scorecam_masks(a, (20, 20), "torchcam"),
                               F.interpolate(low[:, None], size=(20, 20), mode="bilinear", align_corners=False)[:, 0])
    paper = scorecam_masks(a, (20, 20), "paper")
    assert paper.amin() == 0 and torch.allclose(paper.flatten(1).amax(1), torch.ones(3))


# --- Ablation-CAM by hand -----------------------------------------------------------------------

def test_ablationcam_weights_by_hand():
    model, x = tiny_model(), quadrant_image()
    # y2 = mean(A0) - mean(A1) = 0.25; without A0: -0.25 -> w0 = (0.25 + 0.25) / 0.25 = 2;
    # without A1: 0.5 -> w1 = (0.25 - 0.5) / 0.25 = -1.  Map = ReLU(2 R - G).
    expected = torch.zeros(1, 4, 4)
    expected[0, :2, :2] = 1.0
    expected[0, 2:, :2] = 2.0
    torch.testing.assert_close(AblationCAM(model)(x, 2, size=None), expected)
    # class 0: removing A0 drops y0 from 0.5 to 0 (w0 = 1), removing A1 changes nothing (w1 = 0)
    torch.testing.assert_close(AblationCAM(model)(x, 0, size=None), x[:, 0])


def test_ablationcam_shortcut_equals_full_passes():
    model = tiny_model()
    x = F.interpolate(quadrant_image(), size=(64, 64), mode="nearest").repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    short = AblationCAM(model)
    a = short(x, "top2", size=None)
    assert short.last_tail_side == 32  # the layers before the target ran on 32 x 32 dummies
    full = AblationCAM(model, tail="full")
    torch.testing.assert_close(a, full(x, "top2", size=None))
    assert full.last_tail_side is None


class _Bypass(nn.Module):
    """conv -> act (target) -> + the conv output again (a path around the target layer) -> GAP -> fc."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        y = self.conv(x)
        z = self.act(y) + y
        return self.fc(z.mean((-2, -1)))


def test_ablationcam_falls_back_when_a_path_bypasses_the_target():
    torch.manual_seed(0)
    model = Classifier("bypass", _Bypass(), Preprocess(64, 64, (0, 0, 0), (1, 1, 1)), "net.act", ["a", "b", "c"]).eval()
    model.requires_grad_(False)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    auto = AblationCAM(model)
    maps = auto(x, size=None)
    assert auto.last_tail_side is None
    torch.testing.assert_close(maps, AblationCAM(model, tail="full")(x, size=None))
    with pytest.raises(RuntimeError, match="does not reproduce"):
        AblationCAM(model, tail="tiny")(x)


def test_ablationcam_peer_fill_on_negative_activations():
    model, x = tiny_model(), quadrant_image()
    model.net.act = nn.Identity()  # activations may now be negative
    # R' = (R - 0.5) / 0.5 on [0, 1] images: the quadrant image's R channel (1 left, 0 right) with -1 at (3, 3)
    model.preprocess = Preprocess(4, 4, (0.5, 0.0, 0.0), (0.5, 1.0, 1.0))
    x[0, 0, :, 2:] = 0.5
    x[0, 0, 3, 3] = 0.0
    zero = AblationCAM(model)(x, 0, size=None)
    peer = AblationCAM(model, fill="pytorch-grad-cam")(x, 0, size=None)
    assert torch.isfinite(peer).all() and not torch.allclose(zero, peer)


# --- RISE ---------------------------------------------------------------------------------------

def test_rise_masks_match_the_authors_skimage_upsampling():
    from skimage.transform import resize

    size, s = (30, 26), 7
    grids, shifts = rise_grids(6, s, 0.5, size, seed=3)
    masks = rise_masks(grids, shifts, size)
    cells = (math.ceil(size[0] / s), math.ceil(size[1] / s))
    for i in range(6):
        up = resize(grids[i].numpy(), ((s + 1) * cells[0], (s + 1) * cells[1]), order=1, mode="reflect",
                    anti_aliasing=False)
        dx, dy = shifts[i].tolist()
        ref = up[dx : dx + size[0], dy : dy + size[1]]
        np.testing.assert_allclose(masks[i].numpy(), ref, atol=1e-6)
    assert (shifts[:, 0] < cells[0]).all() and (shifts >= 0).all()


@pytest.mark.parametrize("p1", [0.5, 0.3])
def test_rise_mask_statistics(p1):
    rise = RISE(tiny_model(), n_masks=400, p1=p1, seed=1)
    masks = rise.generate_masks((56, 56))
    assert masks.shape == (400, 56, 56)
    assert masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean().item() - p1) < 0.02
    grids, _ = rise_grids(400, 7, p1, (56, 56), seed=1)
    assert abs(grids.mean().item() - p1) < 0.02


def test_rise_is_seeded_and_independent_of_batch_size():
    model = tiny_model()
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = RISE(model, n_masks=100, seed=5, batch_size=7)(x, "top2")
    b = RISE(model, n_masks=100, seed=5, batch_size=64)(x, "top2")
    torch.testing.assert_close(a, b)
    c = RISE(model, n_masks=100, seed=6)(x, "top2")
    assert not torch.allclose(a, c)


def test_rise_saliency_is_the_weighted_mean_of_masks():
    model = tiny_model()
    x = torch.rand(1, 3, 14, 14, generator=torch.Generator().manual_seed(2))
    rise = RISE(model, n_masks=50, s=3, p1=0.4, seed=0, batch_size=8)
    raw = rise(x, 1, size=None)
    masks = rise.generate_masks((14, 14))
    probs = torch.stack([model(x * m).softmax(-1)[0, 1] for m in masks])
    expected = (probs[:, None, None] * masks).sum(0) / (50 * 0.4)
    torch.testing.assert_close(raw[0], expected)
    # p1 = 1: every mask keeps everything, saliency = P(class | x) everywhere
    full = RISE(model, n_masks=5, p1=1.0)(x, 1, size=None)
    torch.testing.assert_close(full, model(x).softmax(-1)[0, 1].expand(1, 14, 14))


def test_rise_normalized_convention_masks_the_normalised_tensor():
    model = tiny_model()
    model.preprocess = Preprocess(16, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    rise = RISE(model, n_masks=20, seed=0, convention="normalized")
    masks = rise.generate_masks((16, 16))
    probs = torch.stack([model.net(model.normalize(x) * m).softmax(-1)[0, 0] for m in masks])
    expected = (probs[:, None, None] * masks).sum(0) / (20 * 0.5)
    torch.testing.assert_close(rise(x, 0, size=None)[0], expected)
    assert not torch.allclose(RISE(model, n_masks=20, seed=0)(x, 0, size=None)[0], expected)


def test_rise_rejects_a_positional_mask_count():
    with pytest.raises(TypeError, match="n_masks=4000"):
        RISE(tiny_model(), 4000)


# --- Group-CAM ----------------------------------------------------------------------------------

def test_gaussian_blur_matches_kornia_reflect_arithmetic():
    from scipy.ndimage import correlate1d

    x = torch.rand(1, 3, 40, 33, generator=torch.Generator().manual_seed(0))
    k = torch.exp(-(torch.arange(11.0) - 5) ** 2 / (2 * 3.0**2))
    k = k / k.sum()  # kornia's kernel: exp(-x^2 / 2 sigma^2) at x = -5 .. 5, normalised
    ref = correlate1d(correlate1d(x.numpy(), k.numpy(), axis=-1, mode="mirror"), k.numpy(), axis=-2, mode="mirror")
    np.testing.assert_allclose(gaussian_blur(x, 11, 3.0).numpy(), ref, atol=1e-6)
    flat = torch.full((1, 3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 51, 50.0), flat)  # replicate padding when too small


def _graded_model_and_image():
    """tiny_model with R = (0..15)/15 row-major, G = 0: y0 = mean(R), gradients of y0: (1/16, 0)."""
    model = tiny_model()
    x = torch.zeros(1, 3, 4, 4)
    x[0, 0] = torch.arange(16.0).view(4, 4) / 15
    return model, x


def test_groupcam_by_hand_with_black_background():
    model, x = _graded_model_and_image()
    # group 0 = R / 16; its 70th percentile is the value 10.5/15/16 -> keep cells 11..15;
    # min-max: mask = R on those cells (max 15/15), 0 elsewhere.  Group 1 = 0: constant, skipped.
    r = x[0, 0]
    mask = torch.where(r > 10.5 / 15, r, torch.zeros_like(r))
    logits = model(x * mask).softmax(-1)[0, 0]
    base = model(torch.zeros_like(x)).softmax(-1)[0, 0]
    expected = F.relu((logits - base) * mask)
    got = GroupCAM(model, groups=2, background="black")(x, 0, size=None)[0]
    torch.testing.assert_close(got, expected)
    maps = group_maps(r.view(1, 1, 4, 4).expand(1, 2, 4, 4) * torch.tensor([1.0, 0.0]).view(1, 2, 1, 1),
                      torch.full((1, 1, 2, 4, 4), 1 / 16), groups=2)
    torch.testing.assert_close(maps[0, 0, 0], mask / 16)


def test_groupcam_blur_background_by_hand():
    model, x = _graded_model_and_image()
    r = x[0, 0]
    mask = torch.where(r > 10.5 / 15, r, torch.zeros_like(r))
    blurred = gaussian_blur(x, 3, 1.0)
    p = model(x * mask + blurred * (1 - mask)).softmax(-1)[0, 0]
    p_blur = model(blurred).softmax(-1)[0, 0]
    got = GroupCAM(model, groups=2, blur_kernel=3, blur_sigma=1.0)(x, 0, size=None)[0]
    torch.testing.assert_close(got, F.relu((p - p_blur) * mask))


def test_groupcam_blur_is_the_same_in_either_convention():
    model = tiny_model()
    model.preprocess = Preprocess(32, 32, (0.5, 0.4, 0.3), (0.25, 0.2, 0.3))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    a = GroupCAM(model, groups=2, blur_kernel=7, blur_sigma=2.0)(x, "top2", size=None)
    b = GroupCAM(model, groups=2, blur_kernel=7, blur_sigma=2.0, convention="normalized")(x, "top2", size=None)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# --- shapes, targets, hygiene ------------------------------------------------------------------

def _methods(model):
    return [ScoreCAM(model), ScoreCAM(model, baseline="pytorch-grad-cam"), AblationCAM(model),
            RISE(model, n_masks=30), GroupCAM(model, groups=2, blur_kernel=3, blur_sigma=1.0)]


def test_targets_forms_and_shapes():
    model = tiny_model()
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    for method in _methods(model):
        assert method(x).shape == (2, 4, 4), method.name
        assert method(x, [0, 1]).shape == (2, 4, 4), method.name
        assert method(x, torch.tensor([2, 2])).shape == (2, 4, 4), method.name
        top = method(x, "top2")
        assert top.shape == (2, 2, 4, 4), method.name
        torch.testing.assert_close(top[:, 0], method(x, "predicted"), msg=method.name)
        assert method(x, size=None).ndim == 3
        with pytest.raises(ValueError, match="out of range"):
            method(x, 5)


def test_forward_passes():
    model = tiny_model()
    assert ScoreCAM(model).forward_passes == 3
    assert AblationCAM(model).forward_passes == 3
    assert RISE(model, n_masks=4000).forward_passes == 4001
    assert GroupCAM(model).forward_passes == 34


def test_black_images_give_finite_maps():
    model = tiny_model()
    black = torch.zeros(2, 3, 4, 4)
    for method in _methods(model):
        maps = method(black)
        assert torch.isfinite(maps).all(), method.name
        assert maps.min() >= 0 and maps.max() <= 1, method.name


def test_hooks_removed_and_model_left_as_found():
    model, x = tiny_model(), tiny_image()
    layer = model.get_submodule("net.act")
    flags = [p.requires_grad for p in model.parameters()]
    for method in _methods(model):
        method(x, "top2")
    with pytest.raises(ValueError):
        AblationCAM(model)(x, 7)
    assert not layer._forward_hooks and not layer._backward_hooks
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_are_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="baseline"):
        ScoreCAM(model, baseline="gradcam")
    with pytest.raises(ValueError, match="precision"):
        RISE(model, precision="fp16")
    with pytest.raises(ValueError, match="convention"):
        ScoreCAM(model, convention="mean")
    with pytest.raises(ValueError, match="Classifier"):
        RISE(model.net, convention="normalized")
    with pytest.raises(ValueError, match="Unknown layer"):
        ScoreCAM(model, "net.actt")(tiny_image())


def test_bf16_falls_back_to_fp32_on_cpu_eager(caplog):
    """On PyTorch eager (the reference path) bf16 is CUDA only; the CPU fast path has its own bf16
    (tests/test_inference.py)."""
    model, x = tiny_model(), tiny_image()
    with caplog.at_level(logging.INFO, logger="lib.cams.perturbation"):
        maps = ScoreCAM(model, precision="bf16")(x, 2)
    assert "PyTorch eager runs this call in fp32" in caplog.text
    torch.testing.assert_close(maps, ScoreCAM(model)(x, 2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_close_to_fp32_on_cuda():
    model = tiny_model().cuda()
    x = torch.rand(2, 3, 32, 32, device="cuda")
    for cls in (ScoreCAM, RISE):
        a, b = cls(model)(x), cls(model, precision="bf16")(x)
        assert (a - b).abs().max().item() < 0.05


# --- real weights: EfficientNet-Lite0 beside pytorch-grad-cam ------------------------------------

@pytest.fixture(scope="module")
def coffee(lite0):
    from PIL import Image
    from skimage import data

    return lite0.preprocess(Image.fromarray(data.coffee())).unsqueeze(0)


@pytest.fixture(scope="module")
def coffee64(coffee):
    return F.interpolate(coffee, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)


def _peer(cls, model, layer, images, batch_size, **kwargs):
    model.requires_grad_(True)  # as in test_cams: some peer methods back-propagate through parameters
    try:
        with cls(model=model, target_layers=[layer], **kwargs) as peer:
            peer.batch_size = batch_size
            return torch.from_numpy(peer(input_tensor=images, targets=None))
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)


def test_scorecam_equals_pytorch_grad_cam_on_lite0(lite0, coffee):
    """Full size, the peer's own setting: it multiplies the normalised tensor of a network taking it."""
    import pytorch_grad_cam as pgc

    ours = ScoreCAM(lite0, baseline="pytorch-grad-cam", convention="normalized", batch_size=32, progress=False)(coffee)
    layer = lite0.get_submodule(lite0.target_layer)
    theirs = _peer(pgc.ScoreCAM, lite0.net, layer, lite0.normalize(coffee), 32)
    diff = (minmax(ours) - minmax(theirs)).abs().max().item()
    assert diff <= 1e-3, f"max abs difference {diff:.2e}"


def test_scorecam_image_convention_equals_pytorch_grad_cam_given_the_image(lite0, coffee64):
    """Given our Classifier (which takes [0, 1] images), the peer masks the image: convention="image"."""
    import pytorch_grad_cam as pgc

    ours = ScoreCAM(lite0, baseline="pytorch-grad-cam", batch_size=128)(coffee64)
    layer = lite0.get_submodule(lite0.target_layer)
    theirs = _peer(pgc.ScoreCAM, lite0, layer, coffee64, 128)
    diff = (minmax(ours) - minmax(theirs)).abs().max().item()
    assert diff <= 1e-3, f"max abs difference {diff:.2e}"
    normalised = ScoreCAM(lite0, baseline="pytorch-grad-cam", convention="normalized", batch_size=128)(coffee64)
    assert (normalised - ours).abs().max().item() > 1e-2  # the two conventions are different explanations


def test_scorecam_paper_and_torchcam_equal_their_reference_loops_on_lite0(lite0, coffee64):
    """Transcriptions of the authors' per-channel loop and of TorchCAM's weights, at 64 x 64."""
    x = lite0.normalize(coffee64)
    size = x.shape[-2:]
    with torch.no_grad():
        acts = lite0.net.features(x.contiguous(memory_format=torch.channels_last))
        logits = lite0.net(x)
        cls = logits.argmax(1)
        # authors (haofanwang/Score-CAM): per channel, skip constant, softmax prob, sum upsampled maps
        up = F.interpolate(acts.transpose(0, 1), size=size, mode="bilinear", align_corners=False)  # [C, 1, H, W]
        paper = torch.zeros(1, 1, *size)
        masked, kept = [], []
        for k in range(up.shape[0]):
            m = up[k : k + 1]
            if m.max() == m.min():
                continue
            masked.append(x * (m - m.min()) / (m.max() - m.min()))
            kept.append(k)
        probs = torch.cat([lite0.net(b).softmax(-1)[:, cls[0]] for b in torch.cat(masked).split(128)])
        for p, k in zip(probs, kept):
            paper += p * up[k : k + 1]
        paper = F.relu(paper)[0]
        # TorchCAM: normalise at the layer's size, upsample, logit minus unmasked logit, softmax over channels
        a = acts[0]
        lo = a.flatten(1).amin(1)[:, None, None]
        low = (a - lo) / ((a.flatten(1).amax(1)[:, None, None] - lo) + 1e-8)
        masks = F.interpolate(low[:, None], size=size, mode="bilinear", align_corners=False)
        cic = torch.cat([lite0.net(b)[:, cls[0]] for b in (x * masks).split(128)]) - logits[0, cls[0]]
        torchcam = F.relu((cic.softmax(0)[:, None, None] * a).sum(0, keepdim=True))
    ours_paper = ScoreCAM(lite0, convention="normalized", batch_size=128)(coffee64, size=None)
    ours_tc = ScoreCAM(lite0, baseline="torchcam", convention="normalized", batch_size=128)(coffee64, size=None)
    assert (minmax(ours_paper) - minmax(paper)).abs().max().item() <= 1e-3
    assert (minmax(ours_tc) - minmax(torchcam)).abs().max().item() <= 1e-3


def test_ablationcam_equals_pytorch_grad_cam_on_lite0(lite0, coffee):
    """At 112 x 112 (a 4 x 4 head): the peer runs 1280 full passes, ours 1280 passes of the head only."""
    import pytorch_grad_cam as pgc

    x = F.interpolate(coffee, size=(112, 112), mode="bilinear", antialias=True, align_corners=False)
    method = AblationCAM(lite0, fill="pytorch-grad-cam", batch_size=128)
    ours = method(x)
    assert method.last_tail_side == 32
    layer = lite0.get_submodule(lite0.target_layer)
    theirs = _peer(pgc.AblationCAM, lite0, layer, x, 128)
    diff = (minmax(ours) - minmax(theirs)).abs().max().item()
    assert diff <= 1e-3, f"max abs difference {diff:.2e}"
    torch.testing.assert_close(AblationCAM(lite0, batch_size=128)(x), ours)  # min is 0 after ReLU6: same fill


def test_groupcam_and_rise_on_lite0(lite0, coffee):
    maps = GroupCAM(lite0)(coffee, "top2")
    assert maps.shape == (1, 2, 224, 224) and torch.isfinite(maps).all()
    assert maps.flatten(2).amax(-1).min() == 1  # non-degenerate maps for both classes
    rise = RISE(lite0, n_masks=64, batch_size=32)(coffee)
    assert rise.shape == (1, 224, 224) and torch.isfinite(rise).all() and rise.max() == 1
