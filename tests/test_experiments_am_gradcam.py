"""lib.experiments.am_gradcam: notebook 01's draws, maps, per-image AD/IC, tables, figures and conclusions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from lib.analysis.claims import load_claims
from lib.analysis.map_store import MapStore
from lib.cams import GradCAM
from lib.cams.attention import ChannelSpatialAttention
from lib.data import Sample, seeded_subset
from lib.experiments import am_gradcam as amg
from lib.train_am_gradcam import TrainConfig, train_attention
from test_cams import tiny_model


def tiny_samples(n: int = 5) -> list[Sample]:
    images = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    return [Sample(f"img{i}", images[i], 0, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)) for i in range(n)]


def moved_attention(channels: int = 2) -> ChannelSpatialAttention:
    torch.manual_seed(0)
    return ChannelSpatialAttention(channels, reduction=1, zero_init=False).eval()


def synthetic_results(n: int = 12, seed: int = 0, am_shift: float = -5.0) -> pd.DataFrame:
    """Per-image rows like evaluate()'s: AM-Grad-CAM's drop = Grad-CAM's + am_shift (+ small noise)."""
    rng = np.random.default_rng(seed)
    base = {"drop": rng.uniform(20, 60, n), "increase": 100.0 * (rng.random(n) < 0.3), "score": rng.uniform(1, 50, n)}
    rows = []
    for method in amg.METHODS:
        for binary, fractions in ((False, amg.SOFT), (True, amg.BINARY)):
            for f in fractions:
                drop = base["drop"] + (am_shift + rng.normal(0, 0.5, n) if method == "AM-Grad-CAM" else 0.0)
                rows.append(pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "method": method, "fraction": f,
                                          "binary": binary, "drop": drop.clip(0, 100), "increase": base["increase"],
                                          "score": base["score"], "original": 80.0}))
    return pd.concat(rows, ignore_index=True)


def test_draw_ids_are_seeded_subset_for_every_n():
    ids = [f"x{i:03d}.JPEG" for i in range(40)]
    for n in (0, 1, 12, 39, 40, 100):
        assert amg.draw_ids(ids, n, 7) == seeded_subset(ids, n, 7)
    assert amg.draw_ids(ids, 12, 7)[:5] == amg.draw_ids(ids, 5, 7)  # a smaller draw is a prefix


def test_paper_values_equal_the_registry():
    claims = {c.id: c for c in load_claims() if c.notebook == "01_attention_map_gradcam"}
    t3 = amg.PAPER_T3.set_index(["method", "metric"])["paper"]
    t4 = amg.PAPER_T4.set_index(["method", "fraction"])["paper"]
    labels = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "smoothgradcam++": "SmoothGrad-CAM++",
              "xgradcam": "XGrad-CAM", "am_gradcam": "AM-Grad-CAM"}
    checked = 0
    for claim in claims.values():
        if claim.item == "Table 3" and claim.metric:
            metric = "drop" if claim.metric == "average_drop" else "increase"
            for name, value in claim.paper_values.items():
                assert t3[(labels[name], metric)] == pytest.approx(value)
                checked += 1
        if claim.item == "Table 4":
            fraction = claim.evidence["where"]["fraction"]
            for name, value in claim.paper_values.items():
                assert t4[(labels[name], fraction)] == pytest.approx(value)
                checked += 1
    assert checked == 2 * 28


def test_predicted_maps_use_the_store_and_equal_direct_maps(tmp_path):
    model = tiny_model()
    cams = amg.make_cams(model, moved_attention(), seed=0)
    assert list(cams) == amg.METHODS
    x = torch.stack([s.image for s in tiny_samples(3)])
    store = MapStore(tmp_path, "tiny")
    maps, targets = amg.predicted_maps(store, cams, x, ["a", "b", "c"])
    assert torch.equal(targets, model(x).argmax(1))
    torch.testing.assert_close(maps["Grad-CAM"], GradCAM(model)(x, targets))
    for m in maps.values():
        assert m.shape == (3, 4, 4) and float(m.min()) >= 0 and float(m.max()) <= 1
    assert len(list(tmp_path.iterdir())) == 3 * len(amg.METHODS)  # one entry per (method, image)
    again, _ = amg.predicted_maps(store, cams, x, ["a", "b", "c"])
    assert all(torch.equal(maps[k], again[k]) for k in maps)


def test_evaluate_gives_every_image_method_and_mask():
    model, samples = tiny_model(), tiny_samples(5)
    cams = amg.make_cams(model, moved_attention(), seed=0)
    results = amg.evaluate(model, "tiny", MapStore(None, "tiny"), cams, samples, batch_size=2)
    assert len(results) == 5 * len(amg.METHODS) * (len(amg.SOFT) + len(amg.BINARY))
    per_image = amg.per_image_table(results)
    assert list(per_image.columns) == ["image_id", "method", "binary", "fraction", "drop", "increase", "score"]
    assert len(per_image) == 5 * len(amg.METHODS) * (1 + len(amg.BINARY))
    # On a GAP + linear head XGrad-CAM is Grad-CAM: the same per-image values
    wide = results.pivot_table(index=["image_id", "binary", "fraction"], columns="method", values="drop")
    np.testing.assert_allclose(wide["XGrad-CAM"], wide["Grad-CAM"], atol=1e-4)
    assert "checks passed" in amg.check_results(results, 5, moved_attention())
    with pytest.raises(AssertionError, match="zero initialisation"):
        amg.check_results(results, 5, ChannelSpatialAttention(2, reduction=1))
    with pytest.raises(AssertionError, match="misses images"):
        amg.check_results(results[results.image_id != "img0"], 5, moved_attention())


def test_attention_for_run_loads_a_checkpoint(tmp_path):
    model = tiny_model()
    trained, _ = train_attention(model, tiny_samples(4), TrainConfig("tiny", epochs=1, batch_size=2, reduction=1),
                                 out=tmp_path / "att.pt", progress=False)
    attention, history, message = amg.attention_for_run(model, "tiny", str(tmp_path / "att.pt"), "nowhere", None,
                                                        0, 1, 2, 0)
    assert message.startswith("Loaded") and list(history.epoch) == [1]
    for a, b in zip(attention.state_dict().values(), trained.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_tables_are_numbers_with_the_papers_values():
    results = synthetic_results()
    t3 = amg.table3(results)
    assert len(t3) == 2 * len(amg.METHODS)
    gradcam = results[(results.method == "Grad-CAM") & ~results.binary & (results.fraction == 1.0)]
    row = t3[(t3.method == "Grad-CAM") & (t3.metric == "drop")].iloc[0]
    assert row["mean"] == pytest.approx(gradcam["drop"].mean()) and row.low < row["mean"] < row.high
    assert row.paper == 45.27
    assert t3[t3.method == "AM-Grad-CAM (parameter-free)"].paper.isna().all()
    t4 = amg.table4(results)
    assert len(t4) == len(amg.METHODS) * 2 * len(amg.BINARY)
    assert t4[~t4.binary].paper.isna().all()
    assert t4[t4.binary & (t4.method == "AM-Grad-CAM") & (t4.fraction == 0.05)].paper.item() == 1.0229
    shown = amg.show_table4(t4)
    assert list(shown.columns) == amg.METHODS and shown.loc["the paper's 5%", "Grad-CAM"] == 0.2846
    assert list(amg.show_table3(t3).columns[-2:]) == ["paper AD", "paper IC"]
    extended = amg.table3_extended(results)
    assert len(extended) == len(amg.METHODS) * 2 * (len(amg.SOFT) + len(amg.BINARY))


def test_paired_table_and_findings():
    results = synthetic_results(am_shift=-5.0)
    pairs = amg.paired_vs_gradcam(results)
    assert len(pairs) == len(amg.METHODS[1:]) * (2 + len(amg.BINARY))
    assert set(pairs[pairs.item == "Table 3"].metric) == {"drop", "increase"}
    assert set(pairs[pairs.item == "Table 4"].metric) == {"score"}
    am = pairs[(pairs.method == "AM-Grad-CAM") & (pairs.metric == "drop")].iloc[0]
    assert am.difference == pytest.approx(-5.0, abs=0.5) and am.resolved
    gradpp = pairs[(pairs.method == "Grad-CAM++") & (pairs.metric == "drop")].iloc[0]
    assert gradpp.difference == 0 and not gradpp.resolved
    claims = pd.DataFrame({"item": ["Table 3", "Table 3", "Table 4", "Fig. 7"],
                           "verdict": ["agrees", "not resolved", "disagrees", "not comparable"]})
    text = amg.findings_markdown(amg.table3(results), pairs, claims, "tiny run")
    shown = f"{am.difference:+.2f} [{am.low:+.2f}, {am.high:+.2f}] (resolved)"
    assert f"Trained AM-Grad-CAM minus Grad-CAM**: AD {shown}" in text
    assert "AD +0.00 (all 12 differences are 0) (not resolved)" in text  # XGrad-CAM's line
    assert "Table 3: 1 agrees, 1 not resolved; Table 4: 1 disagrees" in text
    t3, t4 = amg.table3(results), amg.table4(results)
    numbers = amg.key_numbers(t3, t4)
    assert sum(len(v) for v in numbers.values()) == 30
    assert numbers["Grad-CAM"]["AD"] == t3[(t3.method == "Grad-CAM") & (t3.metric == "drop")]["mean"].item()
    pin20 = t4[t4.binary & (t4.method == "AM-Grad-CAM") & (t4.fraction == 0.2)]["mean"].item()
    assert numbers["AM-Grad-CAM"]["pin 20%"] == pin20


def test_figures_always_give_the_declared_count():
    images = torch.rand(1, 3, 4, 4)
    maps = {m: torch.rand(1, 4, 4) for m in amg.METHODS}
    figs = amg.fig7_figures(images, maps, ["one\nimage"])
    assert len(figs) == 2 and len(figs[0].axes) == len(amg.METHODS) * len(amg.BINARY)
    assert "no image 2" in figs[1].axes[0].texts[0].get_text()
    fig = amg.percentage_in_figure(amg.table4(synthetic_results()))
    assert len(fig.axes[0].lines) == len(amg.METHODS) + 5  # ours, then the paper's five methods (dashed)
    plt.close("all")
