"""lib.metrics.sanity: cascading randomisation (Adebayo et al.), Spearman and SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import nn

from lib.maps import minmax_normalize
from lib.metrics.sanity import (cascading_randomization, randomizable_layers, spearman_rank_correlation,
                                ssim)


class TinyConvModel(nn.Module):
    """[0, 1] images -> normalize -> conv, ReLU, conv, ReLU, GAP, linear (3 classes)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                                     nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        self.target_layer = "net.3"
        self.eval().requires_grad_(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - 0.5) / 0.25

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def simple_cam(model: TinyConvModel):
    """CAM: ReLU(sum_c W[t, c] A_c) on the last ReLU's maps, min-max normalised."""

    def cam(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        feats = model.net[:4](model.normalize(images))
        weights = model.net[6].weight[targets]  # [N, C]
        return minmax_normalize(torch.relu((weights[:, :, None, None] * feats).sum(1)))

    return cam


IMAGES = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(5))
TARGETS = torch.tensor([0, 2, 1])


def test_spearman_matches_scipy_with_ties_and_constants():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (6, 7, 5), generator=g).float()
    b = torch.rand(6, 7, 5, generator=g).round(decimals=1)
    r = spearman_rank_correlation(a, b)
    expected = [spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(r.numpy(), expected, atol=1e-6)
    torch.testing.assert_close(spearman_rank_correlation(a, a), torch.ones(6))
    torch.testing.assert_close(spearman_rank_correlation(a, -a), -torch.ones(6))
    # constants: scipy gives NaN; here 1 (both constant) and 0 (one constant)
    z = torch.zeros(2, 3, 3)
    torch.testing.assert_close(spearman_rank_correlation(z, z), torch.ones(2))
    torch.testing.assert_close(spearman_rank_correlation(z, a[:2, :3, :3]), torch.zeros(2))


def test_ssim_matches_skimage():
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 9, 8, generator=g), torch.rand(2, 9, 8, generator=g)
    expected = [structural_similarity(x, y, data_range=1.0) for x, y in zip(a.double().numpy(), b.double().numpy())]
    np.testing.assert_allclose(ssim(a, b).numpy(), expected, rtol=1e-5)
    torch.testing.assert_close(ssim(a, a), torch.ones(2))
    small = torch.rand(1, 4, 4, generator=g)  # window 3
    np.testing.assert_allclose(ssim(small, small * 0.5).numpy(),
                               [structural_similarity(small[0].double().numpy(), 0.5 * small[0].double().numpy(),
                                                      data_range=1.0, win_size=3)], rtol=1e-5)


def test_randomizable_layers_top_first():
    assert randomizable_layers(TinyConvModel()) == ["net.6", "net.2", "net.0"]


def test_cascading_randomization_original_unchanged_and_values():
    model = TinyConvModel()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    res = cascading_randomization(model, simple_cam, IMAGES, TARGETS, seed=0)
    # the original model is untouched, and so is the global RNG
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert res["layers"] == ["original", "net.6", "net.2", "net.0"]
    assert res["maps"].shape == (4, 3, 8, 8)
    assert res["spearman"].shape == res["ssim"].shape == (4, 3)
    assert torch.isfinite(res["spearman"]).all() and torch.isfinite(res["ssim"]).all()
    torch.testing.assert_close(res["maps"][0], simple_cam(model)(IMAGES, TARGETS))
    torch.testing.assert_close(res["spearman"][0], torch.ones(3))
    torch.testing.assert_close(res["ssim"][0], torch.ones(3))
    assert not torch.allclose(res["maps"][-1], res["maps"][0])
    # every step's similarities are scipy's / skimage's against the original maps
    ref = res["maps"][0]
    for k in range(1, 4):
        for i in range(3):
            a, b = ref[i].numpy().ravel(), res["maps"][k, i].numpy().ravel()
            if a.std() > 0 and b.std() > 0:
                assert res["spearman"][k, i].item() == pytest.approx(spearmanr(a, b)[0], abs=1e-5)
            s = structural_similarity(minmax_normalize(ref[i]).double().numpy(),
                                      minmax_normalize(res["maps"][k, i]).double().numpy(), data_range=1.0)
            assert res["ssim"][k, i].item() == pytest.approx(s, abs=1e-5)
    # deterministic for a seed, different for another
    again = cascading_randomization(model, simple_cam, IMAGES, TARGETS, seed=0)
    torch.testing.assert_close(again["maps"], res["maps"])
    other = cascading_randomization(model, simple_cam, IMAGES, TARGETS, seed=1)
    assert not torch.allclose(other["maps"][-1], res["maps"][-1])


def test_cascading_randomization_takes_the_original_maps_it_is_given():
    model = TinyConvModel()
    calls = []

    def counting(m):
        calls.append(1)
        return simple_cam(m)

    full = cascading_randomization(model, counting, IMAGES, TARGETS, seed=0)
    assert len(calls) == 4
    given = cascading_randomization(model, counting, IMAGES, TARGETS, seed=0, original=full["maps"][0])
    assert len(calls) == 4 + 3  # the three randomised steps only
    for key in ("maps", "spearman", "ssim"):
        torch.testing.assert_close(given[key], full[key])
    with pytest.raises(ValueError, match="original maps must be"):
        cascading_randomization(model, counting, IMAGES, TARGETS, original=full["maps"][0][:2])


def test_randomised_layer_uses_reset_parameters_with_seed():
    # randomise only the linear layer: the copy's layer equals nn.Linear's default init under seed + 1
    model = TinyConvModel()
    seen = {}

    def factory(m):
        seen["weight"] = m.net[6].weight.clone()
        return simple_cam(m)

    cascading_randomization(model, factory, IMAGES, TARGETS, layers=["net.6"], seed=10)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        expected = nn.Linear(4, 3).weight
    torch.testing.assert_close(seen["weight"], expected)


def test_constant_maps_no_nan():
    model = TinyConvModel()
    res = cascading_randomization(model, lambda m: (lambda x, t: torch.zeros(x.shape[0], 8, 8)), IMAGES, TARGETS)
    torch.testing.assert_close(res["spearman"], torch.ones(4, 3))
    torch.testing.assert_close(res["ssim"], torch.ones(4, 3))
    calls = {"n": 0}

    def factory(m):  # the trained model's maps are informative, randomised ones constant
        calls["n"] += 1
        return simple_cam(m) if calls["n"] == 1 else (lambda x, t: torch.zeros(x.shape[0], 8, 8))

    res = cascading_randomization(model, factory, IMAGES, TARGETS, layers=["net.6"])
    assert torch.isfinite(res["spearman"]).all() and torch.isfinite(res["ssim"]).all()
    torch.testing.assert_close(res["spearman"][1], torch.zeros(3))


def test_argument_checks():
    with pytest.raises(ValueError, match="unknown layers"):
        cascading_randomization(TinyConvModel(), simple_cam, IMAGES, TARGETS, layers=["net.99"])
    with pytest.raises(ValueError, match="one class per image"):
        cascading_randomization(TinyConvModel(), simple_cam, IMAGES, [0])
