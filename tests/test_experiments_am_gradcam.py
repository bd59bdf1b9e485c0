"""lib.experiments.am_gradcam: notebook 01's draws, maps, per-image AD/IC, tables, figures and conclusions."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from lib.analysis.claims import load_claims
from lib.analysis.map_store import MapStore
from lib.cams import GradCAM
from lib.cams.attention import ChannelSpatialAttention
from lib.data import Sample, seeded_subset
from lib.experiments import am_gradcam as amg
from lib.train_am_gradcam import TrainConfig, train_attention
from test_cams import tiny_model

REPO = Path(__file__).resolve().parents[1]


def tiny_samples(n: int = 5) -> list[Sample]:
    images = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    return [Sample(f"img{i}", images[i], 0, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)) for i in range(n)]


def moved_attention(channels: int = 2, seed: int = 0) -> ChannelSpatialAttention:
    torch.manual_seed(seed)
    return ChannelSpatialAttention(channels, reduction=1, zero_init=False).eval()


def moved_attentions() -> dict[str, ChannelSpatialAttention]:
    """Both objectives' first-seed labels, as load_or_train names them."""
    return {"AM-Grad-CAM": moved_attention(seed=0), amg.FEATURE_CE: moved_attention(seed=1)}


def synthetic_results(n: int = 12, seed: int = 0, am_shift: float = -5.0, fce_shift: float = -2.0,
                      extra: dict[str, float] | None = None) -> pd.DataFrame:
    """Per-image rows like evaluate()'s: AM-Grad-CAM's drop = Grad-CAM's + am_shift, feature CE's + fce_shift
    (+ small noise); ``extra``: more labels (other seeds) with their shift."""
    rng = np.random.default_rng(seed)
    base = {"drop": rng.uniform(20, 60, n), "increase": 100.0 * (rng.random(n) < 0.3), "score": rng.uniform(1, 50, n)}
    shifts = {"AM-Grad-CAM": am_shift, amg.FEATURE_CE: fce_shift, **(extra or {})}
    rows = []
    for method in [*amg.METHODS, *(extra or {})]:
        for binary, fractions in ((False, amg.SOFT), (True, amg.BINARY)):
            for f in fractions:
                drop = base["drop"] + (shifts[method] + rng.normal(0, 0.5, n) if method in shifts else 0.0)
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
    cams = amg.make_cams(model, moved_attentions(), seed=0)
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
    cams = amg.make_cams(model, moved_attentions(), seed=0)
    results = amg.evaluate(model, "tiny", MapStore(None, "tiny"), cams, samples, batch_size=2)
    assert len(results) == 5 * len(amg.METHODS) * (len(amg.SOFT) + len(amg.BINARY))
    per_image = amg.per_image_table(results)
    assert list(per_image.columns) == ["image_id", "method", "binary", "fraction", "drop", "increase", "score"]
    assert len(per_image) == 5 * len(amg.METHODS) * (1 + len(amg.BINARY))
    # On a GAP + linear head XGrad-CAM is Grad-CAM: the same per-image values
    wide = results.pivot_table(index=["image_id", "binary", "fraction"], columns="method", values="drop")
    np.testing.assert_allclose(wide["XGrad-CAM"], wide["Grad-CAM"], atol=1e-4)
    assert "checks passed" in amg.check_results(results, 5, moved_attentions())
    with pytest.raises(AssertionError, match="zero initialisation"):
        amg.check_results(results, 5, {**moved_attentions(), "AM-Grad-CAM (seed 1)": ChannelSpatialAttention(2, 1)})
    with pytest.raises(AssertionError, match="misses images"):
        amg.check_results(results[results.image_id != "img0"], 5, moved_attentions())


def test_seed_labels_map_to_the_evaluation_keys():
    assert amg.eval_key("AM-Grad-CAM") == "amgradcam"
    assert amg.eval_key("AM-Grad-CAM (seed 1)") == "amgradcam-s1"
    assert amg.eval_key(amg.FEATURE_CE) == "amgradcam-fce"
    assert amg.eval_key(amg.seed_label(amg.FEATURE_CE, 2, 0)) == "amgradcam-fce-s2"
    assert amg.eval_key("AM-Grad-CAM (parameter-free)") == "amgradcam-free"
    assert amg.objective_of("AM-Grad-CAM (feature CE) (seed 2)") == "feature-ce"
    assert amg.objective_of("AM-Grad-CAM") == "masked-image" and amg.objective_of("Grad-CAM") is None
    assert amg.label_seed("AM-Grad-CAM (feature CE) (seed 2)", 0) == 2 and amg.label_seed(amg.FEATURE_CE, 0) == 0
    # every key the notebook can ask for is a method key of the pipeline that notebook 01 reads
    keys = {amg.eval_key(amg.seed_label(name, s, 0)) for name in amg.OBJECTIVE_NAMES.values() for s in (0, 1, 2)}
    reads = set(yaml.safe_load((REPO / "config" / "outputs.yaml").read_text())["01"]["reads"]["methods"])
    assert keys | {amg.eval_key(m) for m in amg.METHODS} == reads
    methods = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["evaluation"]["methods"]
    assert reads <= set(methods)
    assert amg.checkpoint_name("lite", "feature-ce", 1) == "am_gradcam_lite_feature-ce_s1.pt"


def test_seed_list_reads_what_papermill_passes():
    assert amg.seed_list([0, 1, 2]) == [0, 1, 2]
    assert amg.seed_list("[0, 1, 2]") == amg.seed_list("0,1,2") == amg.seed_list("0 1 2") == [0, 1, 2]
    assert amg.seed_list(3) == [3] and amg.seed_list([2, 0, 2]) == [2, 0]
    with pytest.raises(ValueError, match="names no seed"):
        amg.seed_list([])


def test_load_or_train_loads_every_objective_and_seed(tmp_path):
    model = tiny_model()
    trained = {}
    for objective in ("masked-image", "feature-ce"):
        for seed in (0, 1):
            cfg = TrainConfig("tiny", epochs=1, batch_size=2, reduction=1, seed=seed, objective=objective)
            trained[(objective, seed)], _ = train_attention(model, tiny_samples(4), cfg, progress=False,
                                                            out=tmp_path / amg.checkpoint_name("tiny", objective, seed))
    attentions, history, message = amg.load_or_train(model, "tiny", tmp_path, "nowhere", None, 0, 1, 2, seeds=[0, 1])
    assert list(attentions) == ["AM-Grad-CAM", amg.FEATURE_CE, "AM-Grad-CAM (seed 1)", "AM-Grad-CAM (feature CE) (seed 1)"]
    assert "4 loaded" in message and "0 trained" in message
    assert set(zip(history.objective, history.seed)) == set(trained) and set(history.epoch) == {1}
    assert history.how.str.startswith("loaded").all()
    for label, attention in attentions.items():
        expected = trained[(amg.objective_of(label), amg.label_seed(label, 0))]
        for a, b in zip(attention.state_dict().values(), expected.state_dict().values()):
            torch.testing.assert_close(a, b)
    # a file whose stored objective is not its name's is refused
    (tmp_path / amg.checkpoint_name("tiny", "feature-ce", 0)).write_bytes(
        (tmp_path / amg.checkpoint_name("tiny", "masked-image", 0)).read_bytes())
    with pytest.raises(ValueError, match="objective 'masked-image'"):
        amg.load_or_train(model, "tiny", tmp_path, "nowhere", None, 0, 1, 2, seeds=[0])


def test_load_or_train_trains_and_saves_what_is_missing(tmp_path):
    model = tiny_model()
    attentions, history, message = amg.load_or_train(model, "tiny", tmp_path, "nowhere", None, 0, 1, 2, seeds=[0],
                                                     objectives=["feature-ce"])
    assert list(attentions) == [amg.FEATURE_CE] and "1 trained here" in message
    assert (tmp_path / amg.checkpoint_name("tiny", "feature-ce", 0)).exists()
    assert list(history.columns[:4]) == ["method", "objective", "seed", "how"]
    with pytest.raises(ValueError, match="Unknown AM-Grad-CAM objective"):
        amg.load_or_train(model, "tiny", tmp_path, "nowhere", None, 0, 1, 2, objectives=["nope"])


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


def test_tables_use_the_first_seed_of_each_objective():
    results = synthetic_results(extra={"AM-Grad-CAM (seed 1)": -4.0, "AM-Grad-CAM (feature CE) (seed 1)": 1.0})
    assert set(amg.primary_rows(results).method) == set(amg.METHODS)
    for table in (amg.table3(results), amg.table3_extended(results), amg.table4(results), amg.paired_vs_gradcam(results)):
        assert set(table.method) == set(amg.METHODS) - ({"Grad-CAM"} if "minus" in table else set())
    assert set(amg.per_image_table(results).method) == set(results.method)  # every label's rows


def test_seed_spread_per_objective_and_column():
    results = synthetic_results(extra={"AM-Grad-CAM (seed 1)": -3.0, "AM-Grad-CAM (seed 2)": -4.0,
                                       "AM-Grad-CAM (feature CE) (seed 1)": 0.0,
                                       "AM-Grad-CAM (feature CE) (seed 2)": -1.0})
    spread = amg.seed_spread(results, [0, 1, 2])
    assert len(spread) == 2 * len(amg.SPREAD_COLUMNS) and set(spread.seeds) == {3} and set(spread.n) == {12}
    soft = results[~results.binary & (results.fraction == 1.0)]
    means = [soft[soft.method == m]["drop"].mean() for m in ("AM-Grad-CAM", "AM-Grad-CAM (seed 1)", "AM-Grad-CAM (seed 2)")]
    ad = spread[(spread.objective == "masked-image") & (spread.column == "AD")].iloc[0]
    assert ad.seed_means == " / ".join(f"{v:.2f}" for v in means)
    assert ad.seed_min == pytest.approx(min(means)) and ad.spread == pytest.approx(max(means) - min(means))
    assert ad.gradcam == pytest.approx(soft[soft.method == "Grad-CAM"]["drop"].mean())
    assert ad["item"] == "Table 3" and ad["method"] == "AM-Grad-CAM"
    pin = spread[(spread.objective == "feature-ce") & (spread.column == "pin 5%")].iloc[0]
    assert pin["item"] == "Table 4" and pin.spread == pytest.approx(0.0)  # the synthetic score does not move
    one = amg.seed_spread(amg.primary_rows(results), [0])
    assert set(one.seeds) == {1} and (one.spread == 0).all()


def hand_made_per_image(n: int = 12) -> pd.DataFrame:
    """A tiny per-image table by hand: on every image the baselines' AD is 40, masked-image seed 0 35 (lower:
    the claim's direction), seed 1 45 (higher), feature-ce seed 0 38 and seed 1 36; IC and scores equal."""
    drops = {"Grad-CAM": 40.0, "Grad-CAM++": 40.0, "SmoothGrad-CAM++": 40.0, "XGrad-CAM": 40.0,
             "AM-Grad-CAM (parameter-free)": 40.0, "AM-Grad-CAM": 35.0, "AM-Grad-CAM (seed 1)": 45.0,
             amg.FEATURE_CE: 38.0, "AM-Grad-CAM (feature CE) (seed 1)": 36.0}
    rows = [{"image_id": f"i{k}", "method": m, "binary": b, "fraction": f,
             "drop": d + (0.3 * (k % 5) if amg.objective_of(m) else 0.1 * (k % 3)),
             "increase": 100.0 * (k % 4 == 0), "score": 20.0 + k, "original": 80.0}
            for m, d in drops.items() for b, fs in ((False, (1.0,)), (True, amg.BINARY)) for f in fs for k in range(n)]
    return pd.DataFrame(rows)


def test_attention_verdicts_per_objective_and_seed(tmp_path):
    from lib.analysis.report import notebook_claims
    results = hand_made_per_image()
    table = amg.attention_verdicts(results, [0, 1])
    columns = ["masked-image s0", "masked-image s1", "feature-ce s0", "feature-ce s1"]
    assert list(table.columns) == ["claim", "item", "methods", *columns, "agree_masked-image", "agree_feature-ce",
                                   "agree_objectives"]
    claims = [c for c in load_claims() if c.notebook == "01_attention_map_gradcam" and c.evidence]
    assert set(table.claim) == {c.id for c in claims if c.evidence["table"].endswith("per_image_ad_ic.csv")}
    row = table.set_index("claim").loc["amgc-t3-ad-vs-gradcam"]
    assert [row[c] for c in columns] == ["agrees", "disagrees", "agrees", "agrees"]
    assert not row["agree_masked-image"] and row["agree_feature-ce"] and not row.agree_objectives
    same = table.set_index("claim").loc["amgc-t4-pin05-vs-gradcam"]  # equal scores: the same under every attention
    assert same["agree_masked-image"] and same["agree_feature-ce"] and same.agree_objectives
    # the first seed's masked-image column is the registry's verdict on the notebook's own per-image table
    out = tmp_path / "01"
    out.mkdir()
    amg.per_image_table(results).to_csv(out / "per_image_ad_ic.csv", index=False, float_format=amg.PER_IMAGE_FORMAT)
    registry = notebook_claims("01_attention_map_gradcam", out).set_index("claim").verdict
    pd.testing.assert_series_equal(table.set_index("claim")["masked-image s0"], registry[table.claim].rename(
        "masked-image s0"), check_names=False)
    # an attention missing from the results gets no column
    only = amg.attention_verdicts(results[~results.method.str.contains("feature CE")], [0, 1])
    assert [c for c in only.columns if " s" in c] == ["masked-image s0", "masked-image s1"]
    assert "agree_feature-ce" not in only and not only.agree_objectives.any()


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
    fce = pairs[(pairs.method == amg.FEATURE_CE) & (pairs.metric == "drop")].iloc[0]
    assert f"**Feature-ce minus Grad-CAM**: AD {fce.difference:+.2f} [{fce.low:+.2f}, {fce.high:+.2f}]" in text
    t3 = amg.table3(results)
    level = t3[(t3.method == amg.FEATURE_CE) & (t3.metric == "drop")].iloc[0]
    assert f"feature-ce (`{amg.FEATURE_CE}`) {level['mean']:.2f} [{level.low:.2f}, {level.high:.2f}]" in text
    ratio = fce.difference / am.difference  # the share of the masked-image gain that feature-ce keeps
    assert (f"AD gain over Grad-CAM, {-am.difference:.2f} points, the feature-ce objective, which never sees a "
            f"masked image, keeps {-fce.difference:+.2f} points ({ratio:.0%})") in text
    assert f"the other {fce.difference - am.difference:.2f} points ({1 - ratio:.0%}) come only with" in text
    # with the seed spread and the verdicts per attention
    spread = amg.seed_spread(results, [0])
    verdicts = pd.DataFrame({"claim": ["a", "b"], "item": "Table 3", "methods": "x vs y",
                             "masked-image s0": ["agrees", "not computed"], "feature-ce s0": ["disagrees", "not computed"],
                             "agree_masked-image": True, "agree_feature-ce": True, "agree_objectives": [False, True]})
    text = amg.findings_markdown(t3, pairs, claims, "tiny run", spread=spread, verdicts=verdicts)
    assert "one training seed in this run" in text
    assert "masked-image s0: 1 agrees, 1 not computed; feature-ce s0: 1 disagrees, 1 not computed" in text
    assert "Of the 1 with a computed verdict" in text and "0 get the same verdict from both objectives (not: `a`)" in text
    assert "keep it under every seed" not in text  # one seed: nothing to compare
    # no gain of the masked-image objective: said so, no share computed
    flat = amg.paired_vs_gradcam(synthetic_results(am_shift=0.0))
    assert "has no resolved AD gain over Grad-CAM in this run" in amg.findings_markdown(t3, flat, claims, "tiny run")
    worse = amg.paired_vs_gradcam(synthetic_results(am_shift=-5.0, fce_shift=+2.0))
    assert "above Grad-CAM's, so without training on the masked image there is no gain at all" in amg.findings_markdown(
        t3, worse, claims, "tiny run")
    # several seeds: the spread and the range of the gains over the seeds
    seeded = synthetic_results(extra={"AM-Grad-CAM (seed 1)": -4.0, "AM-Grad-CAM (feature CE) (seed 1)": -1.0})
    spread = amg.seed_spread(seeded, [0, 1])
    text = amg.findings_markdown(amg.table3(seeded), amg.paired_vs_gradcam(seeded), claims, "tiny run", spread=spread)
    ad = spread[spread.column == "AD"].set_index("objective")
    assert f"masked-image {ad.loc['masked-image', 'seed_means']} (spread {ad.loc['masked-image', 'spread']:.2f})" in text
    low, high = (ad.loc["feature-ce", "gradcam"] - ad.loc["feature-ce", k] for k in ("seed_max", "seed_min"))
    assert f"Over the 2 training seeds, Grad-CAM's AD minus each seed's: " in text and f"feature-ce {low:+.2f} to {high:+.2f}" in text
    t3, t4 = amg.table3(results), amg.table4(results)
    numbers = amg.key_numbers(t3, t4)
    assert sum(len(v) for v in numbers.values()) == 30
    assert numbers["Grad-CAM"]["AD"] == t3[(t3.method == "Grad-CAM") & (t3.metric == "drop")]["mean"].item()
    pin20 = t4[t4.binary & (t4.method == "AM-Grad-CAM") & (t4.fraction == 0.2)]["mean"].item()
    assert numbers["AM-Grad-CAM"]["pin 20%"] == pin20
    assert amg.FEATURE_CE not in numbers  # notebooks/expected/01.json stores the other methods' numbers


def test_figures_always_give_the_declared_count():
    images = torch.rand(1, 3, 4, 4)
    maps = {m: torch.rand(1, 4, 4) for m in amg.METHODS}
    figs = amg.fig7_figures(images, maps, ["one\nimage"])
    assert len(figs) == 2 and len(figs[0].axes) == len(amg.METHODS) * len(amg.BINARY)
    assert "no image 2" in figs[1].axes[0].texts[0].get_text()
    fig = amg.percentage_in_figure(amg.table4(synthetic_results()))
    assert len(fig.axes[0].lines) == len(amg.METHODS) + 5  # ours, then the paper's five methods (dashed)
    plt.close("all")


def test_notebook_parameters_match_the_pipeline_config():
    """The pipeline passes every key of config section notebook01 that is a parameter of the notebook
    (workflow/rules/notebooks.smk), plus checkpoint_dir: train_seeds must be both, checkpoint gone."""
    import ast
    import json
    cells = json.loads((REPO / "notebooks" / "01_attention_map_gradcam.ipynb").read_text())["cells"]
    (source,) = ["".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", [])]
    names = {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert {"checkpoint_dir", "train_seeds"} <= names and "checkpoint" not in names
    section = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["notebook01"]
    assert "train_seeds" in section and amg.seed_list(str(section["train_seeds"])) == section["train_seeds"]
    declared = yaml.safe_load((REPO / "config" / "outputs.yaml").read_text())["01"]["tables"]
    assert {"seed_spread.csv", "claims_by_attention.csv", "per_image_ad_ic.csv"} <= set(declared)
