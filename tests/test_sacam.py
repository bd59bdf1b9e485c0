"""SA-CAM (lib.cams.sacam): key-area extraction, the three perturbations, the SA weights by hand on a
tiny model, forward-pass count, and the reduction to Score-CAM's channel scores."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lib.cams import ScoreCAM
from lib.cams.perturbation import gaussian_blur
from lib.cams.sacam import (SACAM, candidate_maps, key_area, perturb, sa_scores, sacam_weights, select_parameters,
                            self_attention_terms)


class TinyCNN(nn.Module):
    """``[N, 3, 4, 4]`` in [0, 1] -> ``features`` (1x1 conv, 2 channels at 4x4) -> GAP -> linear (3 classes).

    The features keep the image's size, so upsampling them is the identity and every heat map is
    just the min-max of a channel: everything below can be written out by hand.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([[1.0, -0.5, 0.2], [-0.3, 0.8, 0.4]]).view(2, 3, 1, 1))
            self.features.bias.copy_(torch.tensor([0.1, -0.2]))
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [-1.5, 3.0], [0.5, 0.5]]))
            self.fc.bias.copy_(torch.tensor([0.1, 0.0, -0.1]))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def tiny_image(seed: int = 0, n: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


def minmax(a: torch.Tensor) -> torch.Tensor:
    return (a - a.min()) / (a.max() - a.min())


def prob(model: nn.Module, x: torch.Tensor, c: int) -> float:
    with torch.no_grad():
        return float(model(x).softmax(-1)[0, c])


# --- Alg. 1 and Eq. 12-13 ------------------------------------------------------------------------

def test_key_area_keeps_pixels_above_the_threshold_and_whitens_the_rest():
    image = torch.tensor([[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6], [0.7, 0.8]], [[0.0, 0.1], [0.2, 0.3]]])[None]
    heat = torch.tensor([[[0.2, 0.6], [0.9, 0.5]]])
    out = key_area(image, heat, threshold=0.5)
    # kept: (0, 1) and (1, 0); (0, 0) below and (1, 1) equal to the threshold become white
    expected = image.clone()
    expected[..., 0, 0] = 1.0
    expected[..., 1, 1] = 1.0
    torch.testing.assert_close(out, expected)
    assert key_area(image, heat, threshold=None) is image  # keep everything


def test_constant_perturbation_by_hand():
    image = torch.tensor([[[0.0, 1.0]], [[0.5, 0.5]], [[0.2, 0.6]]])[None]  # [1, 3, 1, 2]
    heat = torch.tensor([[[1.0, 0.25]]])
    mu0 = image.mean((-2, -1), keepdim=True)  # (0.5, 0.5, 0.4)
    out = perturb(image, heat, "constant", fill=mu0)
    # pixel 0 kept (m = 1); pixel 1: 0.25 * x + 0.75 * mu0
    expected = torch.tensor([[[0.0, 0.25 * 1.0 + 0.75 * 0.5]], [[0.5, 0.5]], [[0.2, 0.25 * 0.6 + 0.75 * 0.4]]])[None]
    torch.testing.assert_close(out, expected)


def test_fills_of_the_three_operators():
    model = TinyCNN()
    x = tiny_image(1)
    constant = SACAM(model, "features", perturbation="constant").fills(x)
    torch.testing.assert_close(constant, x.mean((-2, -1), keepdim=True))
    black = SACAM(model, "features", perturbation="constant", constant=0.0).fills(x)
    assert black.abs().max() == 0
    # noise: seeded, around mu0, clipped to [0, 1]; no noise -> the constant
    noisy = SACAM(model, "features", perturbation="noise", noise_std=0.3, seed=4)
    a, b = noisy.fills(x), noisy.fills(x)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, SACAM(model, "features", perturbation="noise", noise_std=0.3, seed=5).fills(x))
    assert a.min() >= 0 and a.max() <= 1 and a.shape == x.shape
    # the noise field does not depend on the image's place in the batch
    pair = torch.cat([tiny_image(9), x])
    unclipped = SACAM(model, "features", perturbation="noise", noise_std=0.01, seed=4)
    torch.testing.assert_close(unclipped.fills(pair)[1] - pair[1].mean((-2, -1), keepdim=True),
                               unclipped.fills(x)[0] - x[0].mean((-2, -1), keepdim=True))
    quiet = SACAM(model, "features", perturbation="noise", noise_std=0.0).fills(x)
    torch.testing.assert_close(quiet, constant.expand_as(x))
    # blur: a Gaussian of sigma0 with a kernel of 2 * ceil(3 sigma0) + 1 taps
    blurred = SACAM(model, "features", perturbation="blur", sigma0=1.5).fills(x)
    torch.testing.assert_close(blurred, gaussian_blur(x, 11, 1.5))


@pytest.mark.parametrize("kind", ["constant", "noise", "blur"])
def test_each_perturbation_keeps_the_image_where_the_mask_is_one_and_fills_where_it_is_zero(kind):
    model = TinyCNN()
    x = tiny_image(2)
    cam = SACAM(model, "features", perturbation=kind, sigma0=1.0, noise_std=0.2)
    fill = cam.fills(x).expand_as(x)
    heat = torch.zeros(1, 4, 4)
    heat[0, :2] = 1.0
    out = perturb(x, heat, kind, fill=fill)
    torch.testing.assert_close(out[..., :2, :], x[..., :2, :])
    torch.testing.assert_close(out[..., 2:, :], fill[..., 2:, :])


def test_score_of_eq_12():
    torch.testing.assert_close(sa_scores(torch.tensor([0.5, 0.2]), torch.tensor([0.4, 1.0])), torch.tensor([0.7, 0.4]))


# --- Eq. 10-11 and Alg. 2 by hand ----------------------------------------------------------------

def hand_sacam(model: TinyCNN, x: torch.Tensor, c: int, lambda1: float, lambda2: float, threshold):
    """Every step of SA-CAM written out for TinyCNN (constant perturbation, mean colour)."""
    with torch.no_grad():
        acts = model.features(x)[0]  # [2, 4, 4]
    mu0 = x.mean((-2, -1), keepdim=True)
    scores, ks, qs = [], [], []
    for n in range(2):
        heat = minmax(acts[n])
        seg = x.clone()
        if threshold is not None:
            seg[:, :, ~(heat > threshold)] = 1.0
        pert = heat * x + (1 - heat) * mu0
        scores.append(prob(model, seg, c) * (1 + prob(model, pert, c)))
        # y_c = sum_n W[c, n] mean(A_n) + b: the gradient is W[c, n] / 16 at every cell
        g = float(model.fc.weight[c, n].detach()) / 16
        ks.append(g)
        sum_a = float(acts[n].sum())
        alpha = g ** 2 / (2 * g ** 2 + sum_a * g ** 3 + 1e-6)
        qs.append(16 * alpha * max(g, 0.0))
    k_hat = [k / max(abs(v) for v in ks) for k in ks]
    q_top = max(abs(v) for v in qs)
    q_hat = [q / q_top if q_top > 0 else 0.0 for q in qs]
    sa = [s + lambda1 * k + lambda2 * q for s, k, q in zip(scores, k_hat, q_hat)]
    z = sum(math.exp(v) for v in sa)
    w = [math.exp(v) / z for v in sa]
    return torch.relu(w[0] * acts[0] + w[1] * acts[1]), w, scores


@pytest.mark.parametrize("c,lambda1,lambda2,threshold", [(0, 1.0, 1.0, 0.5), (1, 0.3, 2.0, 0.2), (2, 0.0, 0.0, None)])
def test_sa_weights_and_map_by_hand_on_a_tiny_model(c, lambda1, lambda2, threshold):
    model = TinyCNN()
    x = tiny_image(3)
    cam = SACAM(model, "features", lambda1=lambda1, lambda2=lambda2, threshold=threshold, perturbation="constant")
    maps, ids = cam.raw(x, [c])
    expected, _, scores = hand_sacam(model, x, c, lambda1, lambda2, threshold)
    assert ids.tolist() == [[c]]
    torch.testing.assert_close(maps[0, 0], expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        acts = model.features(x)
    torch.testing.assert_close(cam.channel_scores(x, acts, torch.tensor([[c]]))[0, :, 0], torch.tensor(scores),
                               rtol=1e-5, atol=1e-7)


def test_self_attention_terms_and_weights_by_hand():
    acts = torch.tensor([[[[1.0, 2.0]], [[0.0, 4.0]]]])  # [1, 2, 1, 2]
    grads = torch.tensor([[[[0.5, -0.5]], [[1.0, 3.0]]]])
    k, q = self_attention_terms(acts, grads)
    torch.testing.assert_close(k, torch.tensor([[0.0, 2.0]]))
    # channel 0: sum A = 3; alpha = g^2 / (2 g^2 + 3 g^3 + 1e-6); only the positive gradient counts
    a0 = 0.25 / (2 * 0.25 + 3 * 0.125 + 1e-6)
    a1 = [g * g / (2 * g * g + 4 * g ** 3 + 1e-6) for g in (1.0, 3.0)]
    torch.testing.assert_close(q, torch.tensor([[a0 * 0.5, a1[0] * 1.0 + a1[1] * 3.0]]))
    w = sacam_weights(torch.tensor([[0.2, 0.4]]), k, q, lambda1=1.0, lambda2=0.5)
    sa = torch.tensor([0.2, 0.4]) + torch.tensor([0.0, 1.0]) + 0.5 * q[0] / q[0].max()
    torch.testing.assert_close(w[0], sa.softmax(0))


# --- reduction to Score-CAM -------------------------------------------------------------------------

def test_without_lambdas_and_segmentation_sa_cam_is_score_cam_through_a_softmax():
    """lambda1 = lambda2 = 0, keep every pixel, black constant: ``S_n = p(X) (1 + s_n)``, s = Score-CAM's scores."""
    model = TinyCNN()
    x = tiny_image(5)
    cam = SACAM(model, "features", lambda1=0.0, lambda2=0.0, threshold=None, perturbation="constant", constant=0.0)
    score_cam = ScoreCAM(model, "features", baseline="paper")
    with torch.no_grad():
        acts = model.features(x)
    ids = torch.tensor([[1]])
    s = score_cam.channel_scores(x, acts, ids)
    p = prob(model, x, 1)
    torch.testing.assert_close(cam.channel_scores(x, acts, ids), p * (1 + s))
    maps, _ = cam.raw(x, [1])
    weights = (p * (1 + s[0, :, 0])).softmax(0)
    torch.testing.assert_close(maps[0, 0], torch.relu((weights[:, None, None] * acts[0]).sum(0)))


def test_reduction_holds_on_lite0_channels(lite0, photos):
    x = photos[:1]
    with torch.no_grad():
        logits = lite0(x)
    from lib.cams.activation import forward_activations
    acts, _, ids = forward_activations(lite0, x)
    acts = acts[:, :6]  # any channels: six keep the test fast
    cam = SACAM(lite0, lambda1=0.0, lambda2=0.0, threshold=None, perturbation="constant", constant=0.0)
    s = ScoreCAM(lite0, baseline="paper").channel_scores(x, acts, ids)
    p = logits.softmax(-1).gather(1, ids)[:, None, :]
    torch.testing.assert_close(cam.channel_scores(x, acts, ids), p * (1 + s), rtol=1e-4, atol=1e-6)


# --- cost, call shape, bad inputs -------------------------------------------------------------------

def count_images(model: nn.Module):
    seen = []
    handle = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    return seen, handle


@pytest.mark.parametrize("targets", [[0], "top2"])
def test_two_passes_per_channel_plus_one_shared_by_every_target(targets):
    model = TinyCNN()
    cam = SACAM(model, "features", batch_size=3)
    x = tiny_image(6, n=2)
    seen, handle = count_images(model)
    try:
        cam.raw(x, targets if targets != [0] else torch.tensor([[0], [2]]))
    finally:
        handle.remove()
    assert sum(seen) == 2 * (2 * 2 + 1)  # 2 images x (2 channels x 2 passes + 1)
    assert max(seen) <= 3  # masked inputs go through in batches of batch_size
    assert cam.forward_passes == 2 * 2 + 1


def test_call_shape_and_batching_invariance():
    model = TinyCNN()
    x = tiny_image(7, n=3)
    one = SACAM(model, "features", batch_size=1)(x, "predicted")
    many = SACAM(model, "features", batch_size=64)(x, "predicted")
    assert one.shape == (3, 4, 4) and one.min() >= 0 and one.max() <= 1
    torch.testing.assert_close(one, many)
    top = SACAM(model, "features")(x, "top2")
    assert top.shape == (3, 2, 4, 4)


@pytest.mark.parametrize("kwargs,match", [
    ({"perturbation": "pixelate"}, "perturbation"),
    ({"threshold": 1.5}, "threshold"),
    ({"constant": "grey"}, "constant"),
    ({"lambda1": float("nan")}, "lambda1"),
    ({"sigma0": 0.0}, "sigma0"),
])
def test_bad_arguments_name_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SACAM(TinyCNN(), "features", **kwargs)


# --- the parameter grid and the selection rule ------------------------------------------------------

def test_candidate_maps_equal_separate_calls_and_share_the_masked_passes():
    model = TinyCNN()
    x = tiny_image(8, n=2)
    cam = SACAM(model, "features", perturbation="blur", sigma0=1.0, threshold=0.3)
    grid = ([0.2, None], [0.0, 1.5], [0.0, 2.0])
    seen, handle = count_images(model)
    try:
        got = dict(candidate_maps(cam, x, "predicted", *grid))
    finally:
        handle.remove()
    # one gradient pass; per image and channel one perturbed pass and one key-area pass per threshold
    assert sum(seen) == 2 * (1 + 2 * (1 + 2))
    assert len(got) == 8 and cam.threshold == 0.3  # the grid leaves the method as it was
    for (t, l1, l2), maps in got.items():
        direct = SACAM(model, "features", perturbation="blur", sigma0=1.0, threshold=t, lambda1=l1, lambda2=l2)
        torch.testing.assert_close(maps, direct(x, "predicted"))
    with pytest.raises(ValueError, match="one target"):
        next(candidate_maps(cam, x, "top2", [0.5], [0.0], [0.0]))


def test_selection_rule_takes_the_best_mean_and_breaks_ties_towards_less_change():
    scores = {(0.5, 1.0, 1.0): torch.tensor([0.4, 0.6]), (0.5, 0.0, 0.0): torch.tensor([0.3, 0.3]),
              (0.2, 2.0, 0.0): torch.tensor([0.2, 0.2])}
    assert select_parameters(scores) == (0.5, 1.0, 1.0)
    tied = {(0.5, 1.0, 1.0): torch.tensor([0.5]), (0.7, 0.0, 1.0): torch.tensor([0.5]),
            (0.2, 0.0, 1.0): torch.tensor([0.5]), (None, 0.0, 1.0): torch.tensor([0.5])}
    assert select_parameters(tied) == (None, 0.0, 1.0)  # least lambda, then the largest key area
    with pytest.raises(ValueError, match="NaN"):
        select_parameters({(0.5, 0.0, 0.0): torch.tensor([float("nan")])})
    with pytest.raises(ValueError, match="at least one"):
        select_parameters({})


def test_several_class_ids_per_image_give_one_map_each_and_share_the_masked_passes():
    from lib.cams import GradCAM

    model = TinyCNN()
    x = tiny_image(11, n=2)
    ids = torch.tensor([[0, 2], [1, 0]])
    cam = SACAM(model, "features", perturbation="constant", threshold=0.4, lambda1=0.5, lambda2=2.0)
    seen, handle = count_images(model)
    try:
        both = cam(x, ids)
    finally:
        handle.remove()
    assert both.shape == (2, 2, *x.shape[-2:])
    assert sum(seen) == 2 * (1 + 2 * 2)  # the masked passes serve both classes
    for k in range(2):
        torch.testing.assert_close(both[:, k], cam(x, ids[:, k]))
        torch.testing.assert_close(GradCAM(model, "features")(x, ids)[:, k], GradCAM(model, "features")(x, ids[:, k]))
