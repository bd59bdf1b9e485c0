"""lib.metrics.causal (deletion / insertion) and lib.metrics.density (map densities).

Expected values are computed by hand on a tiny model (CPU only, fast).
"""

from __future__ import annotations


import pytest
import torch
from torchvision.transforms import functional as TF

from lib.metrics.causal import auc, deletion_insertion, num_points, saliency_ranks
from lib.metrics.density import map_density
from tiny_models import TinyModel, sigmoid


def image(ch0: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A [3, H, W] image with the given channel 0; channels 1, 2 random (the model ignores them)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cat([ch0[None], torch.rand(2, *ch0.shape, generator=g)])


def blocks(values: list[list[float]]) -> torch.Tensor:
    """A 2x2 grid of values expanded to a 4x4 image (each value fills a 2x2 block)."""
    return torch.tensor(values).repeat_interleave(2, 0).repeat_interleave(2, 1)


# Channel 0 per block: TL 1.0, TR 0.0, BL 0.75, BR 0.25 -> normalised 1, -1, 0.5, -0.5 (4 pixels each).
X = image(blocks([[1.0, 0.0], [0.75, 0.25]]))[None]
# 2x2 saliency map, upsampled by blocks: order of the blocks TL (0.9), BL (0.5), BR (0.3), TR (0.1).
M = blocks([[0.9, 0.1], [0.5, 0.3]])[None]


def curve(s_values: list[float], target: int = 0) -> torch.Tensor:
    sign = 1.0 if target == 0 else -1.0
    return torch.tensor([sigmoid(sign * 2 * s) for s in s_values])


def test_num_points_and_auc():
    assert num_points(224 * 224, 1792) == 29  # UCAG: 28 steps of 1792 pixels + the start
    assert num_points(16, 4) == 5
    assert num_points(16, 3) == 7  # last step moves 1 pixel
    assert num_points(16, 100) == 2
    torch.testing.assert_close(auc(torch.tensor([1.0, 0.5, 0.0])), torch.tensor(0.5))
    # (sum - (first + last) / 2) / (n - 1) = (2.0 - 0.25) / 3
    torch.testing.assert_close(auc(torch.tensor([[0.2, 0.8, 0.7, 0.3]])), torch.tensor([1.75 / 3]))


def test_saliency_ranks_stable_ties():
    m = torch.tensor([[[0.5, 1.0], [0.5, 0.2]]])
    assert saliency_ranks(m).tolist() == [[1, 0, 2, 3]]  # tied 0.5s: flat 0 before flat 2
    assert saliency_ranks(torch.zeros(1, 2, 2)).tolist() == [[0, 1, 2, 3]]


def test_deletion_normalized_zero_by_hand():
    # UCAG default: pixels set to 0 in the normalised tensor. Sums of the remaining blocks:
    # start 1 - 1 + 0.5 - 0.5 = 0 (x4 pixels); - TL: -1; - BL: -1.5; - BR: -1; - TR: 0.
    res = deletion_insertion(TinyModel(), X, M, [0], mode="deletion", pixels_per_step=4)
    expected = curve([0.0, -4 / 16, -6 / 16, -4 / 16, 0.0])
    torch.testing.assert_close(res["curves"], expected[None])
    torch.testing.assert_close(res["auc"], ((expected.sum() - (expected[0] + expected[-1]) / 2) / 4)[None])
    # the other class: p1 = sigmoid(-2 s)
    res1 = deletion_insertion(TinyModel(), X, M, [1], mode="deletion", pixels_per_step=4)
    torch.testing.assert_close(res1["curves"], curve([0.0, -4 / 16, -6 / 16, -4 / 16, 0.0], target=1)[None])


def test_deletion_image_convention_by_hand():
    # "image" convention: deleted pixels are black (x = 0 -> normalised -1).
    res = deletion_insertion(TinyModel(), X, M, [0], mode="deletion", pixels_per_step=4, convention="image")
    # block sums of the normalised channel: TL 4, TR -4, BL 2, BR -2; a deleted block contributes -4.
    sums = [0.0, (-4 - 4 + 2 - 2), (-4 - 4 - 4 - 2), (-4 - 4 - 4 - 4), -16.0]
    torch.testing.assert_close(res["curves"], curve([s / 16 for s in sums])[None])


def test_insertion_zero_substrate_by_hand():
    res = deletion_insertion(TinyModel(), X, M, [0], mode="insertion", pixels_per_step=4, substrate="zero")
    # start all 0 (normalised), insert TL (4), BL (2), BR (-2), TR (-4)
    torch.testing.assert_close(res["curves"], curve([0.0, 4 / 16, 6 / 16, 4 / 16, 0.0])[None])


def test_insertion_blur_substrate():
    # default insertion substrate: Gaussian blur of the normalised image (torchvision, reflect padding)
    res = deletion_insertion(TinyModel(), X, M, [0], mode="insertion", pixels_per_step=4, blur_kernel=3,
                             blur_sigma=1.0)
    z = (X - 0.5) / 0.5
    blurred = TF.gaussian_blur(z, [3, 3], [1.0, 1.0])[0, 0]
    order = [(slice(0, 2), slice(0, 2)), (slice(2, 4), slice(0, 2)), (slice(2, 4), slice(2, 4)),
             (slice(0, 2), slice(2, 4))]
    cur, s_values = blurred.clone(), [float(blurred.mean())]
    for rows, cols in order:
        cur[rows, cols] = z[0, 0, rows, cols]
        s_values.append(float(cur.mean()))
    torch.testing.assert_close(res["curves"], curve(s_values)[None])
    assert abs(s_values[-1]) < 1e-6  # ends on the image itself (s = 0)
    # blur commutes with the affine normalisation (reflect padding): same curve in image space
    res_img = deletion_insertion(TinyModel(), X, M, [0], mode="insertion", pixels_per_step=4, blur_kernel=3,
                                 blur_sigma=1.0, convention="image")
    torch.testing.assert_close(res_img["curves"], res["curves"])
    # UCAG's kernel 51 does not fit a 4x4 image
    with pytest.raises(ValueError, match="too large"):
        deletion_insertion(TinyModel(), X, M, [0], mode="insertion", pixels_per_step=4)


def reference_curves(model, images, maps, targets, mode, step, substrate_fn):
    """RISE's loop (one image, one step at a time), stable order, in the normalised space."""
    out = []
    for x, m, t in zip(images, maps, targets):
        z = model.normalize(x[None])
        sub = substrate_fn(z)
        start, finish = (z.clone(), sub) if mode == "deletion" else (sub.clone(), z)
        hw = m.numel()
        order = torch.sort(m.reshape(-1), descending=True, stable=True).indices
        n_steps = (hw + step - 1) // step
        scores = []
        for i in range(n_steps + 1):
            scores.append(torch.softmax(model.net(start), 1)[0, t])
            if i < n_steps:
                idx = order[step * i: step * (i + 1)]
                start.view(1, 3, hw)[0, :, idx] = finish.reshape(1, 3, hw)[0, :, idx]
        out.append(torch.stack(scores))
    return torch.stack(out)


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_matches_reference_loop_and_batching_invariance(mode):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 5, 4, generator=g)
    maps = torch.rand(3, 5, 4, generator=g)
    maps[1] = maps[1].round(decimals=1)  # ties
    targets = torch.tensor([0, 1, 0])
    model = TinyModel()
    kw = dict(mode=mode, pixels_per_step=3, blur_kernel=3, blur_sigma=2.0)
    res = deletion_insertion(model, images, maps, targets, batch_size=64, **kw)
    assert res["curves"].shape == (3, num_points(20, 3)) == (3, 8)
    sub = torch.zeros_like if mode == "deletion" else (lambda z: TF.gaussian_blur(z, [3, 3], [2.0, 2.0]))
    with torch.no_grad():
        ref = reference_curves(model, images, maps, targets, mode, 3, sub)
    torch.testing.assert_close(res["curves"], ref)
    for bs in (1, 2, 5, 7, 23, 24):  # chunks cut across images and steps
        other = deletion_insertion(model, images, maps, targets, batch_size=bs, **kw)
        torch.testing.assert_close(other["curves"], res["curves"])
        torch.testing.assert_close(other["auc"], res["auc"])
    # per-image results do not depend on the other images of the batch
    single = deletion_insertion(model, images[1:2], maps[1:2], targets[1:2], **kw)
    torch.testing.assert_close(single["curves"], res["curves"][1:2])


def test_constant_maps_no_nan_and_callable_substrate():
    images = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    maps = torch.zeros(2, 4, 4)
    for mode in ("deletion", "insertion"):
        res = deletion_insertion(TinyModel(), images, maps, [0, 1], mode=mode, pixels_per_step=5, substrate="zero")
        assert torch.isfinite(res["curves"]).all() and torch.isfinite(res["auc"]).all()
        assert ((res["curves"] >= 0) & (res["curves"] <= 1)).all()
    # a callable substrate: the constant 1 in the normalised space -> the final deletion point has s = 1
    res = deletion_insertion(TinyModel(), images, maps, [0, 0], pixels_per_step=16, substrate=torch.ones_like)
    torch.testing.assert_close(res["curves"][:, -1], torch.full((2,), sigmoid(2.0)))


def test_argument_checks():
    with pytest.raises(ValueError, match="mode"):
        deletion_insertion(TinyModel(), X, M, [0], mode="del")
    with pytest.raises(ValueError, match="substrate"):
        deletion_insertion(TinyModel(), X, M, [0], substrate="noise")
    with pytest.raises(ValueError, match="maps"):
        deletion_insertion(TinyModel(), X, M[:, :2], [0])
    with pytest.raises(ValueError, match="NaN"):
        deletion_insertion(TinyModel(), X, torch.full_like(M, float("nan")), [0])
    with pytest.raises(ValueError, match="pixels_per_step"):
        deletion_insertion(TinyModel(), X, M, [0], pixels_per_step=0)


# ------------------------------------------------------------------------------------- density
X2 = image(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))[None]
M2 = torch.tensor([[[1.0, 0.5], [0.0, 0.0]]])


def test_density_image_convention_by_hand():
    res = map_density(TinyModel(), X2, M2, [0])
    # M*X ch0 = [[1, .25], [0, 0]] -> normalised [[1, -.5], [-1, -1]], s = -1.5 / 4; sum M = 1.5
    p_pos = sigmoid(2 * -1.5 / 4)
    # (1-M)*X ch0 = [[0, .25], [0, 1]] -> [[-1, -.5], [-1, 1]], s = -1.5 / 4; sum (1 - M) = 2.5
    p_neg = sigmoid(2 * -1.5 / 4)
    torch.testing.assert_close(res["score_positive"], torch.tensor([p_pos]))
    torch.testing.assert_close(res["positive"], torch.tensor([p_pos * 4 / 1.5]))
    torch.testing.assert_close(res["negative"], torch.tensor([p_neg * 4 / 2.5]))


def test_density_normalized_convention_by_hand():
    res = map_density(TinyModel(), X2, M2, [1], convention="normalized")
    # z = [[1, 0], [-1, 1]]; z*M = [[1, 0], [0, 0]] -> s = 0.25; z*(1-M) = [[0, 0], [-1, 1]] -> s = 0
    torch.testing.assert_close(res["positive"], torch.tensor([sigmoid(-0.5) * 4 / 1.5]))
    torch.testing.assert_close(res["negative"], torch.tensor([0.5 * 4 / 2.5]))


def test_density_zero_sums_and_batching():
    g = torch.Generator().manual_seed(3)
    images = torch.rand(5, 3, 4, 4, generator=g)
    maps = torch.rand(5, 4, 4, generator=g)
    maps[0] = 0.0  # sum M = 0 -> rho+ = 0
    maps[1] = 1.0  # sum (1 - M) = 0 -> rho- = 0
    targets = [0, 1, 1, 0, 1]
    res = map_density(TinyModel(), images, maps, targets)
    for v in res.values():
        assert torch.isfinite(v).all()
    assert res["positive"][0] == 0 and res["negative"][1] == 0
    # all-zero map: (1 - M) X = X, so rho- = p(X) * hw / hw = p(X)
    with torch.no_grad():
        p_x = torch.softmax(TinyModel()(images[:1]), 1)[0, 0]
    torch.testing.assert_close(res["negative"][0], p_x)
    for bs in (1, 2, 3):
        other = map_density(TinyModel(), images, maps, targets, batch_size=bs)
        for key in res:
            torch.testing.assert_close(other[key], res[key])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        map_density(TinyModel(), images, maps * 2, targets)
