"""lib.experiments.fmgcam (notebook 05): the draws, the per-image measures against hand values, the
tables as numbers, and the experiment functions on EfficientNet-Lite0 with two photos."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from lib.data import packaged_photos
from lib.experiments import fmgcam


# ------------------------------------------------------------------------------------------ draws
def test_draw_reproduces_the_notebooks_former_slices_and_pairs():
    ids = [f"img{i:03d}.JPEG" for i in range(40)]
    labels = {i: n % 3 for n, i in enumerate(ids)}
    d = fmgcam.draw(ids, labels, seed=0, n_figure=2, n_choose_k=5, n_composites=6)
    order = [str(i) for i in np.random.default_rng(0).permutation(sorted(ids))]  # the former scheme
    pool = order[7:]
    old_pairs = [(a, b) for a, b in zip(pool[0::2], pool[1::2]) if labels[a] != labels[b]][:6]
    assert d.figure == order[:2] and d.choose_k == order[2:7] and d.pairs == old_pairs
    with pytest.raises(ValueError, match="need 47"):
        fmgcam.draw(ids, labels, 0, 2, 5, 20)


# --------------------------------------------------------------------------- per-image measures
def test_pairwise_correlation_is_one_for_equal_maps_and_minus_one_for_opposite_ones():
    base = torch.rand(1, 1, 5, 5)
    assert float(fmgcam.pairwise_correlation(torch.cat([base, 2 * base + 1], 1))) == pytest.approx(1, abs=1e-6)
    assert float(fmgcam.pairwise_correlation(torch.cat([base, -base], 1))) == pytest.approx(-1, abs=1e-6)


def test_area_won_and_lower_class_share_by_hand():
    # class 0 wins 2 pixels, class 1 wins 1, one pixel is unclaimed (all 0)
    fused = torch.tensor([[[[0.9, 0.5], [0.0, 0.0]], [[0.0, 0.0], [0.3, 0.0]]]])
    torch.testing.assert_close(fmgcam.area_won(fused), torch.tensor([[2 / 3, 1 / 3]]))
    assert float(fmgcam.lower_class_share(fused)) == pytest.approx(0.3 / 1.7)
    assert fmgcam.area_won(torch.zeros(1, 2, 2, 2)).sum() == 0
    assert fmgcam.lower_class_share(torch.zeros(1, 2, 1, 1)) == 0


# ------------------------------------------------------------------------------------------ tables
def test_summary_table_skips_undefined_rows_keeps_the_maximum_and_the_order():
    frame = pd.DataFrame({"k": [1] * 12 + [2] * 12, "a": np.r_[np.full(12, np.nan), np.arange(12.0)],
                          "hit": np.r_[np.zeros(12), np.full(12, 100.0)]})
    table = fmgcam.summary_table(frame, ["a", "hit"], "k", order=[2, 1], binary=["hit"])
    assert list(zip(table["k"], table["metric"])) == [(2, "a"), (2, "hit"), (1, "hit")]
    a = table.iloc[0]
    assert a["mean"] == 5.5 and a["max"] == 11 and a["n"] == 12 and a["low"] < 5.5 < a["high"]
    hit = table.iloc[1]  # 12 of 12: Clopper-Pearson, an interval of positive width below 100
    assert hit["mean"] == 100 and hit["low"] < 100 and hit["high"] == pytest.approx(100)
    assert table.select_dtypes("number").shape[1] >= 5  # numbers, not strings


def test_composite_summary_counts_composites_and_pairs_them():
    rows = [{"variant": v, "item": f"c{u}:{j}", "energy": 50.0 + u + j + shift}
            for v, shift in [("uniform map", -20), ("Grad-CAM (separate)", 0), ("FM-G-CAM", 3),
                             ("FM-G-CAM, released norm", -1 + 0.0)] for u in range(12) for j in (0, 1)]
    per_item = pd.DataFrame(rows)
    per_item.loc[(per_item["variant"] == "FM-G-CAM, released norm") & (per_item["item"] == "c0:0"), "energy"] += 2
    table = fmgcam.composite_summary(per_item)
    assert list(table["variant"]) == ["uniform map", "Grad-CAM (separate)", "FM-G-CAM", "FM-G-CAM",
                                      "FM-G-CAM, released norm", "FM-G-CAM, released norm"]
    assert (table["n"] == 12).all()  # composites, not (composite, class) items
    fm = table[(table["variant"] == "FM-G-CAM") & table["minus"].notna()].iloc[0]
    assert fm["mean"] == pytest.approx(3) and "all" in fm["note"]  # a constant difference: no interval
    released = table[(table["variant"] == "FM-G-CAM, released norm") & table["minus"].notna()].iloc[0]
    assert released["mean"] == pytest.approx(-1 + 1 / 12) and released["low"] < released["mean"] < released["high"]
    shown = fmgcam.shown(table, "variant", order=fmgcam.VARIANTS)
    assert shown.loc["uniform map", "minus Grad-CAM (separate) (paired)"] == "-"
    assert shown.loc["FM-G-CAM, released norm", "minus Grad-CAM (separate) (paired)"].startswith("-0.9 [")


def _choice_summary(diff_low: list[float]) -> pd.DataFrame:
    rows = [{"k": k, "metric": fmgcam.DIFFERENCE, "mean": 5.0, "low": low, "high": 9.0, "n": 20, "note": ""}
            for k, low in zip(range(2, 2 + len(diff_low)), diff_low)]
    rows += [{"k": k, "metric": m, "mean": 50.0 + k, "low": 40.0, "high": 60.0, "n": 20, "note": ""}
             for k in range(1, 2 + len(diff_low)) for m in (fmgcam.PROBABILITY, fmgcam.ACCURACY)]
    return pd.DataFrame(rows)


def test_k_supported_stops_at_the_first_unresolved_k():
    assert fmgcam.k_supported(_choice_summary([1.0, 0.5, -0.2, 2.0])) == 3
    assert fmgcam.k_supported(_choice_summary([1.0, 0.5])) == 3
    assert fmgcam.k_supported(_choice_summary([float("nan"), 1.0])) == 1
    text = fmgcam.choice_of_k_text(_choice_summary([1.0, 0.5, -0.2, 2.0]), k=3)
    assert "up to **3**, not at k = 4" in text and "top 3 hold 53.0 % [40.0, 60.0]" in text
    few = _choice_summary([float("nan")]).assign(note="n = 8: too few")
    assert fmgcam.choice_of_k_text(few, k=2).startswith("No k is resolved against the random class in its place "
                                                         "here (n = 8")


# ------------------------------------------------------------------- experiments on a real model
@pytest.fixture(scope="module")
def two(lite0, photos):
    return photos[:2]  # coffee, chelsea


def test_norms_and_activations_per_image(lite0, two):
    top = fmgcam.top_k_class_maps(lite0, two, k=3)
    assert top.r.shape[:2] == (2, 3) and torch.all(top.probabilities[:, :-1] >= top.probabilities[:, 1:])
    by_norm, per_image = fmgcam.norm_per_image(top, ["coffee", "chelsea"])
    assert list(by_norm) == list(fmgcam.NORM_READINGS) and len(per_image) == 2 * len(by_norm)
    change = per_image.set_index(["reading", "image"])[fmgcam.NORM_CHANGE]
    assert (change.loc["no norm"] == 0).all() and (change.loc["Eq. 6 (default)"] < 1e-5).all()
    assert (change.loc["released (dim=1)"] > 0.1).all()  # the released per-column norm changes the maps
    share = per_image[fmgcam.LOWER_SHARE]
    assert share.between(0, 100).all()
    act = fmgcam.activation_per_image(fmgcam.activation_variants(top), top, ["coffee", "chelsea"])
    fm_rows, gc_rows = act[act[fmgcam.LIT].notna()], act[act[fmgcam.RELU_CHANGE].notna()]
    assert len(fm_rows) == 12 and len(gc_rows) == 6 and fm_rows[fmgcam.LIT].between(0, 100).all()
    assert (gc_rows.set_index("variant").loc["Grad-CAM · RELU", fmgcam.RELU_CHANGE] == 0).all()


def test_choice_of_k_per_image(lite0, two):
    labels = lite0(two).argmax(1)  # the top-1 class: accuracy 100 at every k
    table = fmgcam.choice_of_k(lite0, two, labels, ["coffee", "chelsea"], max_k=3, seed=0, batch_size=1)
    assert list(table["k"]) == [1, 2, 3, 1, 2, 3] and (table[fmgcam.ACCURACY] == 100).all()
    first = table[table["k"] == 1]
    assert (first[fmgcam.AREA] == 100).all() and first[fmgcam.CONTROL].isna().all()
    rest = table[table["k"] > 1]
    np.testing.assert_allclose(rest[fmgcam.DIFFERENCE], rest[fmgcam.AREA] - rest[fmgcam.CONTROL], atol=1e-4)
    prob = table.pivot(index="image", columns="k", values=fmgcam.PROBABILITY).to_numpy()
    assert (np.diff(prob, axis=1) >= 0).all() and (prob <= 100 + 1e-4).all()
    again = fmgcam.choice_of_k(lite0, two, labels, ["coffee", "chelsea"], max_k=3, seed=0, batch_size=2)
    pd.testing.assert_frame_equal(table, again, atol=1e-4, check_dtype=False)  # batching does not matter


def test_composite_energy_per_item(lite0):
    cat, coffee = packaged_photos(["chelsea", "coffee"])
    comp = fmgcam.make_composites(lite0.preprocess, [(cat, coffee)], "cpu")
    assert comp.targets.tolist() == [[cat.label, coffee.label]]
    energy = fmgcam.composite_energy(lite0, comp)
    assert sorted(energy["variant"].unique()) == sorted(fmgcam.VARIANTS) and len(energy) == 8
    assert set(energy["item"]) == {f"{comp.ids[0]}:0", f"{comp.ids[0]}:1"}
    by = energy.set_index(["variant", "item"])["energy"]
    uniform = by.loc["uniform map"]
    assert uniform.iloc[0] == pytest.approx(uniform.iloc[1]) and 0 < uniform.iloc[0] < 50  # a photo's share
    assert (by.loc["FM-G-CAM"] > uniform.iloc[0]).all()  # each class's fused map sits on its own photo
    with pytest.raises(ValueError, match="no composite pairs"):
        fmgcam.make_composites(lite0.preprocess, [], "cpu")


def test_fig1_fig6_table_and_key_numbers(lite0, two):
    fig, table = fmgcam.fig1_fig6(lite0, two, ["coffee", "chelsea"], 3, [f"class{i}" for i in range(1000)])
    area = table[[f"area won by #{c} (%)" for c in (1, 2, 3)]].sum(axis=1)
    np.testing.assert_allclose(area, 100, atol=1e-3)  # every positive pixel is won by one class
    assert (table["Grad-CAM pairwise r"] > table["FM-G-CAM pairwise r"]).all()
    assert len(fig.axes) >= 2 * 5
    plt.close(fig)
    summary = fmgcam.summary_table(table.assign(k=1), ["Grad-CAM pairwise r"], "k")
    assert summary["n"].iloc[0] == 2 and math.isnan(summary["low"].iloc[0])  # below MIN_N: no interval


def test_findings_and_key_numbers_are_read_from_the_tables():
    images = [f"i{n}" for n in range(12)]
    fig_table = pd.DataFrame({"image": images, "Grad-CAM pairwise r": np.linspace(0.5, 0.9, 12),
                              "FM-G-CAM pairwise r": np.linspace(-0.3, -0.1, 12)})
    norm = pd.DataFrame([{"reading": r, "image": i, fmgcam.LOWER_SHARE: 30.0 + n,
                          fmgcam.NORM_CHANGE: {"no norm": 0.0, "Eq. 6 (default)": 1e-8}.get(r, 0.5 + n / 100)}
                         for r in fmgcam.NORM_READINGS for n, i in enumerate(images)])
    norm_table = fmgcam.summary_table(norm, [fmgcam.LOWER_SHARE, fmgcam.NORM_CHANGE], "reading")
    act = pd.DataFrame([{"variant": v, "image": i, fmgcam.LIT: np.nan, fmgcam.RELU_CHANGE: 0.01 * n}
                        for v in ("Grad-CAM · GELU", "Grad-CAM · ELU") for n, i in enumerate(images)]
                       + [{"variant": "RELU · Eq. 6", "image": i, fmgcam.LIT: 60.0 + n, fmgcam.RELU_CHANGE: np.nan}
                          for n, i in enumerate(images)])
    act_table = fmgcam.summary_table(act, [fmgcam.LIT, fmgcam.RELU_CHANGE], "variant")
    composites = fmgcam.composite_summary(pd.DataFrame(
        [{"variant": v, "item": f"c{u}:{j}", "energy": 40.0 + s * u} for v, s in zip(fmgcam.VARIANTS, (0, 1, 2, 0.5))
         for u in range(12) for j in (0, 1)]))
    claims = pd.DataFrame({"claim": ["fmgcam-abstract-benefits-vs-gradcam"], "verdict": ["agrees"],
                           "reason": ["resolved"]})
    text = fmgcam.findings(fig_table, norm_table, act_table, composites, claims)
    assert "(12 images)" in text and "r = 0.70 [" in text and "at most 1e-08" in text and "up to 0.61" in text
    assert "at most 0.11 and 0.11" in text and "**agrees** (resolved)" in text and "+5.50 [" in text
    choice = fmgcam.summary_table(pd.DataFrame({"image": images * 2, "k": [1] * 12 + [2] * 12,
                                                fmgcam.AREA: 10.0, fmgcam.CONTROL: 1.0, fmgcam.PROBABILITY: 80.0}),
                                  [fmgcam.AREA, fmgcam.CONTROL, fmgcam.PROBABILITY], "k")
    numbers = fmgcam.key_numbers(fig_table, norm_table, act_table, choice, composites)
    assert numbers["fig5 lit"] == {"RELU · Eq. 6": pytest.approx(65.5)}
    assert numbers["composites"]["FM-G-CAM minus Grad-CAM (separate)"] == pytest.approx(5.5)
    assert numbers["choice of K"]["area won by class k (%) k=2"] == 10
    assert len(numbers["fig3 energy of classes 2..K"]) == 5
