"""lib.metrics: phi_nu masks, masking conventions, AD / IC / percentage-in, bootstrap CIs.

Expected values are computed by hand on a tiny model (CPU only, fast).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lib.metrics import (CONVENTIONS, FRAME_COLUMNS, ad_ic, average_drop_increase, bootstrap_ci,
                         confidence_scores, explanation_logits, minmax_normalize, num_kept,
                         percentage_in, phi, summarize, to_frame)
from lib.metrics.masks import top_k_pixels
from tiny_models import TinyModel, sigmoid


def image(ch0: list[list[float]], seed: int = 0) -> torch.Tensor:
    """A [3, H, W] image with the given channel 0; channels 1, 2 random (the model ignores them)."""
    g = torch.Generator().manual_seed(seed)
    c0 = torch.tensor(ch0)
    return torch.cat([c0[None], torch.rand(2, *c0.shape, generator=g)])


# ------------------------------------------------------------------------------------------ masks
MAP_2x3 = torch.tensor([[[0.2, 0.5, 0.5],
                         [0.5, 1.0, 0.0]]])


def test_phi_ties_exact_k_soft_and_binary():
    # fraction 0.5 of 6 pixels -> k = 3: 1.0 (flat 4), then the tied 0.5s at flat 1, 2 (lowest index).
    soft = phi(MAP_2x3, 0.5)
    binary = phi(MAP_2x3, 0.5, binary=True)
    assert torch.equal(soft, torch.tensor([[[0.0, 0.5, 0.5], [0.0, 1.0, 0.0]]]))
    assert torch.equal(binary, torch.tensor([[[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]]]))
    # 0.4 * 6 = 2.4 -> ceil 3 as well; 1/3 * 6 -> 2: 1.0 and the first 0.5.
    assert torch.equal(phi(MAP_2x3, 0.4), soft)
    assert torch.equal(phi(MAP_2x3, 1 / 3, binary=True), torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]]))
    # the smallest fraction keeps one pixel
    assert torch.equal(phi(MAP_2x3, 1e-6, binary=True), torch.tensor([[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]))


def test_phi_fraction_one_and_float_noise():
    m = torch.rand(2, 5, 7)
    out = phi(m, 1.0)
    assert torch.equal(out, m) and out.data_ptr() != m.data_ptr()
    assert torch.equal(phi(m, 1.0, binary=True), torch.ones_like(m))
    # 0.07 * 100 = 7.000000000000001 in floats: still exactly 7 pixels
    assert num_kept(0.07, 100) == 7
    assert int(phi(torch.rand(1, 10, 10), 0.07, binary=True).sum()) == 7


def test_phi_batched_exact_k_with_many_ties():
    g = torch.Generator().manual_seed(1)
    maps = torch.randint(0, 3, (4, 6, 9), generator=g).float() / 2  # values in {0, .5, 1}
    for f in (0.05, 0.15, 0.5, 0.77):
        k = math.ceil(f * 54)
        b = phi(maps, f, binary=True)
        assert b.flatten(1).sum(1).tolist() == [k] * 4
        s = phi(maps, f)
        assert torch.equal(s, maps * b)
        # every kept value >= every dropped value
        for i in range(4):
            kept, dropped = maps[i][b[i] > 0], maps[i][b[i] == 0]
            assert kept.min() >= dropped.max()


def test_top_k_pixels_are_a_stable_sorts_first_k():
    """phi's selection without a sort keeps exactly the pixels of the stable descending sort it replaced."""
    g = torch.Generator().manual_seed(0)
    cases = {"continuous": torch.rand(5, 50176, generator=g), "tied": (torch.rand(5, 50176, generator=g) * 20).round(),
             "constant": torch.zeros(2, 50176), "relu": torch.relu(torch.randn(5, 50176, generator=g))}
    for name, flat in cases.items():
        for k in (1, 502, 5018, 25088, 45159, 50175):
            order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
            expected = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, order, True)
            assert torch.equal(top_k_pixels(flat, k), expected), (name, k)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_phi_bad_fraction(bad):
    with pytest.raises(ValueError, match="fraction"):
        phi(MAP_2x3, bad)


def test_minmax_normalize_values_and_constant_map():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 2.0]],
                         [[4.0, 4.0], [4.0, 4.0]]])
    out = minmax_normalize(maps)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.5], [1.0, 0.25]]))
    assert torch.equal(out[1], torch.zeros(2, 2))
    assert not torch.isnan(out).any()


# ---------------------------------------------------------------------------------------- masking
def test_masking_conventions_by_hand():
    model = TinyModel()
    x = image([[1.0, 1.0], [1.0, 1.0]])[None]
    m = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    # "image": [0,1] image * mask = [1,0,0,0] -> normalised [1,-1,-1,-1] -> s = -0.5
    assert torch.allclose(explanation_logits(model, x, m), torch.tensor([[-0.5, 0.5]]))
    # "normalized": normalised [1,1,1,1] * mask -> s = 0.25
    assert torch.allclose(explanation_logits(model, x, m, convention="normalized"), torch.tensor([[0.25, -0.25]]))
    # all-ones mask: both conventions are the plain forward
    ones = torch.ones(1, 2, 2)
    for conv in CONVENTIONS:
        assert torch.allclose(explanation_logits(model, x, ones, convention=conv), model(x))


def test_masking_unknown_convention_and_no_grad():
    model = TinyModel()
    x = torch.rand(3, 3, 4, 4)
    with pytest.raises(ValueError, match="image.*normalized"):
        explanation_logits(model, x, torch.ones(3, 4, 4), convention="mean")
    out = explanation_logits(model, x, torch.ones(3, 4, 4))
    assert not out.requires_grad


# ------------------------------------------------------------------------------------------- AD/IC
def three_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.stack([image([[1.0, 1.0], [0.0, 0.0]], 0),
                          image([[1.0, 1.0], [1.0, 1.0]], 1),
                          image([[1.0, 1.0], [1.0, 1.0]], 2)])
    maps = torch.tensor([[[1.0, 0.8], [0.0, 0.2]]]).expand(3, 2, 2).clone()
    targets = torch.tensor([0, 0, 1])
    return images, maps, targets


def test_ad_ic_by_hand_binary_half():
    """Top 50 % binary = top row kept.

    img 0 (top row white, bottom black; class 0): s = 0 before and after -> Y = O = 0.5 (O == Y: no increase)
    img 1 (all white; class 0): s = 1 -> Y = sigmoid(2); masked s = 0 -> O = 0.5 (a drop)
    img 2 (all white; class 1): Y = sigmoid(-2); O = 0.5 > Y (an increase)
    """
    images, maps, targets = three_images()
    res = average_drop_increase(TinyModel(), images, maps, targets, fractions=(0.5,), binary=True)
    y = torch.tensor([0.5, sigmoid(2), sigmoid(-2)])
    d1 = 100 * (sigmoid(2) - 0.5) / sigmoid(2)
    assert torch.allclose(res["original"], 100 * y)
    assert torch.allclose(res["score"][0.5], torch.tensor([50.0, 50.0, 50.0]))
    assert torch.allclose(res["drop"][0.5], torch.tensor([0.0, d1, 0.0]))
    assert res["increase"][0.5].tolist() == [0.0, 0.0, 100.0]  # strict: O == Y is no increase
    agg = ad_ic(res)[0.5]
    assert math.isclose(float(agg["AD"]), d1 / 3, rel_tol=1e-5)
    assert math.isclose(float(agg["IC"]), 100 / 3, rel_tol=1e-6)
    assert math.isclose(float(agg["percentage_in"]), 50.0, rel_tol=1e-6)

    y_, o_ = confidence_scores(TinyModel(), images, phi(maps, 0.5, binary=True), targets)
    assert torch.allclose(y_, y) and torch.allclose(o_, torch.full((3,), 0.5))


def test_ad_soft_full_map_and_normalized_convention():
    images, maps, targets = three_images()
    # soft, fraction 1 (L-CAM's AD100): img 1 * map -> ch0 [1, .8, 0, .2] -> normalised [1, .6, -1, -.6], s = 0
    res = average_drop_increase(TinyModel(), images[1:2], maps[1:2], targets[1:2], fractions=(1.0,))
    assert torch.allclose(res["score"][1.0], torch.tensor([50.0]))
    # "normalized": normalised [1,1,1,1] * top-row mask -> s = 0.5 -> O = sigmoid(1)
    res = average_drop_increase(TinyModel(), images[1:2], maps[1:2], targets[1:2], fractions=(0.5,),
                                binary=True, convention="normalized")
    assert torch.allclose(res["score"][0.5], torch.tensor([100 * sigmoid(1)]))
    assert torch.allclose(res["drop"][0.5], torch.tensor([100 * (1 - sigmoid(1) / sigmoid(2))]))


def test_binary_fraction_one_is_no_change():
    images, maps, targets = three_images()
    res = average_drop_increase(TinyModel(), images, maps, targets, fractions=(1.0,), binary=True)
    assert res["drop"][1.0].tolist() == [0.0, 0.0, 0.0]
    assert res["increase"][1.0].tolist() == [0.0, 0.0, 0.0]


def random_setup(n: int = 7):
    g = torch.Generator().manual_seed(3)
    model = TinyModel()
    model.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 5))
    for p in model.parameters():
        with torch.no_grad():
            p.copy_(torch.randn(p.shape, generator=g))
    images = torch.rand(n, 3, 8, 8, generator=g)
    maps = minmax_normalize(torch.rand(n, 8, 8, generator=g))
    targets = torch.randint(0, 5, (n,), generator=g)
    return model, images, maps, targets


@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("binary", [False, True])
def test_batch_size_chunking_is_invariant(convention, binary):
    model, images, maps, targets = random_setup()
    fr = (1.0, 0.5, 0.15)
    a = average_drop_increase(model, images, maps, targets, fr, binary, convention, batch_size=64)
    b = average_drop_increase(model, images, maps, targets, fr, binary, convention, batch_size=2)
    assert torch.allclose(a["original"], b["original"], atol=1e-5)
    for f in fr:
        for key in ("drop", "score"):
            assert torch.allclose(a[key][f], b[key][f], atol=1e-4)
        assert torch.equal(a["increase"][f], b["increase"][f])
        assert not torch.isnan(a["drop"][f]).any()
    la = explanation_logits(model, images, phi(maps, 0.5), convention, batch_size=64)
    lb = explanation_logits(model, images, phi(maps, 0.5), convention, batch_size=3)
    assert torch.allclose(la, lb, atol=1e-5)


def test_percentage_in_matches_scores():
    model, images, maps, targets = random_setup()
    p = percentage_in(model, images, maps, targets)
    assert set(p) == {"binary", "soft"}
    assert sorted(p["binary"]) == [0.05, 0.10, 0.20, 0.25, 0.50]
    for binary, key in ((True, "binary"), (False, "soft")):
        res = average_drop_increase(model, images, maps, targets, (0.05, 0.2), binary=binary)
        for f in (0.05, 0.2):
            assert torch.allclose(p[key][f], res["score"][f], atol=1e-5)


def test_input_validation():
    model, images, maps, targets = random_setup()
    with pytest.raises(ValueError, match="min-max"):
        average_drop_increase(model, images, maps * 3, targets)
    with pytest.raises(ValueError, match="targets"):
        average_drop_increase(model, images, maps, targets[:3])
    with pytest.raises(ValueError, match="convention"):
        average_drop_increase(model, images, maps, targets, convention="foo")
    with pytest.raises(ValueError, match="fraction"):
        average_drop_increase(model, images, maps, targets, fractions=(0.5, 2.0))


def test_to_frame_columns():
    images, maps, targets = three_images()
    res = average_drop_increase(TinyModel(), images, maps, targets, fractions=(1.0, 0.5), binary=True)
    df = to_frame(res, image_ids=["a", "b", "c"], method="gradcam")
    assert list(df.columns) == list(FRAME_COLUMNS) == ["image_id", "method", "fraction", "binary", "drop",
                                                        "increase", "score", "original"]
    assert len(df) == 6
    assert df["fraction"].tolist() == [1.0] * 3 + [0.5] * 3
    assert (df["method"] == "gradcam").all() and df["binary"].all()
    half = df[df.fraction == 0.5]
    assert half["image_id"].tolist() == ["a", "b", "c"]
    assert half["increase"].tolist() == [0.0, 0.0, 100.0]
    assert to_frame(res)["image_id"].tolist() == [0, 1, 2, 0, 1, 2]


# ------------------------------------------------------------------------------------------- stats
def test_bootstrap_constant_and_single_value_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci(torch.full((50,), 12.5)) == (12.5, 12.5, 12.5)
        assert bootstrap_ci(np.array([3.0])) == (3.0, 3.0, 3.0)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_bootstrap_contains_mean_and_narrows():
    rng = np.random.default_rng(0)
    small, large = rng.normal(10, 2, 20), rng.normal(10, 2, 2000)
    m_s, lo_s, hi_s = bootstrap_ci(small)
    m_l, lo_l, hi_l = bootstrap_ci(torch.from_numpy(large))
    assert lo_s <= m_s <= hi_s and lo_l <= m_l <= hi_l
    assert math.isclose(m_s, small.mean())
    assert hi_l - lo_l < (hi_s - lo_s) / 3
    assert bootstrap_ci(small, seed=5) == bootstrap_ci(small, seed=5)  # deterministic


def test_summarize_groups():
    df = pd.DataFrame({"method": ["a"] * 4 + ["b"] * 3, "fraction": [0.5] * 7,
                       "drop": [1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0], "increase": [0, 100, 0, 100, 0, 0, 0.0]})
    out = summarize(df, ["drop", "increase"], ["method", "fraction"])
    assert list(out.columns) == ["method", "fraction", "metric", "mean", "ci_low", "ci_high", "n"]
    assert len(out) == 4
    row = out[(out.method == "a") & (out.metric == "drop")].iloc[0]
    assert row["mean"] == 2.5 and row["n"] == 4 and row["ci_low"] <= 2.5 <= row["ci_high"]
    row = out[(out.method == "b") & (out.metric == "drop")].iloc[0]
    assert (row["mean"], row["ci_low"], row["ci_high"], row["n"]) == (5.0, 5.0, 5.0, 3)


def test_precomputed_original_gives_the_same_result():
    model, images, maps, targets = random_setup()
    a = average_drop_increase(model, images, maps, targets, (0.5, 0.15), True, batch_size=3)
    calls = []
    model.net.register_forward_hook(lambda *_: calls.append(1))
    b = average_drop_increase(model, images, maps, targets, (0.5, 0.15), True, batch_size=3,
                              original=a["original"] / 100)
    assert len(calls) == 2 * 3  # 2 fractions x 3 chunks: no unmasked forward
    for f in (0.5, 0.15):
        assert torch.allclose(a["drop"][f], b["drop"][f]) and torch.equal(a["increase"][f], b["increase"][f])


def test_bf16_path_close_to_fp32():
    model, images, maps, targets = random_setup()
    a = average_drop_increase(model, images, maps, targets, (1.0, 0.5), False)
    b = average_drop_increase(model, images, maps, targets, (1.0, 0.5), False, precision="bf16")
    for f in (1.0, 0.5):
        assert b["score"][f].dtype == torch.float32
        assert torch.allclose(a["score"][f], b["score"][f], atol=2.0)  # percentage points
    with pytest.raises(ValueError, match="precision"):
        average_drop_increase(model, images, maps, targets, precision="fp16")
