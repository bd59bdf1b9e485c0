"""lib.experiments.lcam (notebook 02): how far an attention moved from its CAM start and its label, Table 1
as numbers with the paper's values only beside trained rows, paired differences, Fig. 4 scores, error
search and the figures written in every run, and the rendered conclusions."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lib.analysis.map_store import MapStore
from lib.cams import GradCAM
from lib.cams.lcam import LCAM, LCAMAttention
from lib.data import Sample
from lib.experiments import lcam as ex
from lib.models import Classifier
from lib.transforms import Preprocess

matplotlib.use("Agg")


def tiny_model(seed: int = 0) -> Classifier:
    """1x1 conv (3 -> 4 channels, seeded) -> 2x2 average pool -> 'act' (the CAM layer) -> GAP -> linear
    to 3 classes: a GAP + linear head, so the attention's CAM start exists."""
    torch.manual_seed(seed)
    net = nn.Sequential()
    net.add_module("conv", nn.Conv2d(3, 4, 1))
    net.add_module("down", nn.AvgPool2d(2))
    net.add_module("act", nn.ReLU())
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(4, 3))
    with torch.no_grad():
        net.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.5, -0.5], [0.0, 1.0, -0.5, 0.5], [1.0, -1.0, 0.2, 0.0]]))
    pre = Preprocess(10, 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return Classifier("tiny", net, pre, "net.act", ["a", "b", "c"]).eval().requires_grad_(False)


def images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, 3, 8, 8), generator=torch.Generator().manual_seed(seed))


def moved_frame(trained: dict[str, bool], seeds=(0,)) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "seed": s, "weight_change": 0.1 if t else 1e-6, "bias_change": 0.0,
                          "map_change": 0.1 if t else 1e-6, "map_mad": 0.05 if t else 0.0,
                          "threshold": ex.UNTRAINED_BELOW, "trained": t,
                          "label": m if t else f"{m} (untrained: = CAM start)"} for s in seeds for m, t in trained.items()])


def per_image(n: int, shift: dict[str, float] | None = None, seed: int = 0, noise: float = 0.0) -> pd.DataFrame:
    """Per-image AD/IC rows of every method: drop = base + shift[method] (+ per-image normal noise of sd
    ``noise`` on shifted methods); increase 0/100."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(10, 60, size=(n, len(ex.FRACTIONS)))
    jitter = rng.normal(0, noise, size=(n, len(ex.FRACTIONS)))
    rows = []
    for m in ex.METHODS:
        for i in range(n):
            for k, f in enumerate(ex.FRACTIONS):
                rows.append({"image_id": f"img{i}", "method": m, "fraction": f, "binary": False,
                             "drop": base[i, k] + (shift or {}).get(m, 0.0) + (jitter[i, k] if m in (shift or {}) else 0),
                             "increase": 100.0 * (i % 2),
                             "score": 50.0, "original": 80.0})
    return pd.DataFrame(rows)


def test_an_attention_equal_to_its_cam_start_is_labelled_untrained():
    model = tiny_model()
    start = LCAMAttention.from_classifier(model)
    nudged, moved = LCAMAttention.from_classifier(model), LCAMAttention.from_classifier(model)
    with torch.no_grad():
        nudged.conv.weight.mul_(1 + 1e-5)             # far below the threshold
        moved.conv.weight.add_(0.3 * torch.randn(moved.conv.weight.shape, generator=torch.Generator().manual_seed(0)))
    frame = ex.moved_from_start(model, {"L-CAM-Fm": start, "L-CAM-Img*": nudged, "L-CAM-Img": moved}, images())
    rows = frame.set_index("method")
    assert rows.loc["L-CAM-Fm", "weight_change"] == 0 and rows.loc["L-CAM-Fm", "map_change"] == 0
    assert rows.loc["L-CAM-Img*", "weight_change"] == pytest.approx(1e-5, rel=1e-2)
    assert not rows.loc["L-CAM-Fm", "trained"] and not rows.loc["L-CAM-Img*", "trained"]
    assert rows.loc["L-CAM-Img", "trained"] and rows.loc["L-CAM-Img", "weight_change"] > 1e-2
    assert rows.loc["L-CAM-Img*", "label"] == "L-CAM-Img* (untrained: = CAM start)"
    assert rows.loc["L-CAM-Img", "label"] == "L-CAM-Img"
    labels = ex.labels_of(frame)
    assert labels["Grad-CAM"] == "Grad-CAM" and labels[ex.START] == ex.START and labels["L-CAM-Fm"].endswith("start)")


def test_threshold_is_the_stated_constant():
    model = tiny_model()
    a = LCAMAttention.from_classifier(model)
    with torch.no_grad():
        a.conv.weight.mul_(1 + 5e-3)  # 5e-3 relative: untrained under 1e-2, trained under the default 1e-3
    assert not ex.moved_from_start(model, {"L-CAM-Fm": a}, images(), threshold=1e-2).trained[0]
    assert ex.moved_from_start(model, {"L-CAM-Fm": a}, images()).trained[0]


def test_paper_table_comes_from_the_registry():
    paper = ex.paper_table1().set_index(["backbone", "method", "column"])["value"]
    assert paper[("VGG-16", "Grad-CAM", "AD100")] == 32.12
    assert paper[("ResNet-50", "L-CAM-Img", "IC100")] == 43.75
    assert ("VGG-16", "L-CAM-Img†", "AD15") in paper.index and ("ResNet-50", "L-CAM-Img†", "AD15") not in paper.index


def test_table1_puts_no_paper_value_beside_an_untrained_attention():
    moved = moved_frame({"L-CAM-Fm*": False, "L-CAM-Fm": True, "L-CAM-Img*": False, "L-CAM-Img": False})
    t = ex.table1(per_image(12), moved, {m: 1 for m in ex.METHODS})
    rows = t.set_index(["method", "column"])
    assert rows.loc[("Grad-CAM", "AD100"), "paper_VGG-16"] == 32.12
    assert rows.loc[("L-CAM-Fm", "AD100"), "paper_ResNet-50"] == 12.16           # trained: beside the paper's
    assert np.isnan(rows.loc[("L-CAM-Img", "AD100"), "paper_ResNet-50"])         # untrained: not
    assert np.isnan(rows.loc[(ex.START, "AD100"), "paper_VGG-16"])              # the start is no paper row
    assert rows.loc[("L-CAM-Img", "AD100"), "label"] == "L-CAM-Img (untrained: = CAM start)"
    assert list(dict.fromkeys(t.method)) == list(ex.METHODS)
    assert list(t.column[:6]) == ["AD100", "IC100", "AD50", "IC50", "AD15", "IC15"]
    assert (t.low <= t["mean"]).all() and (t.n == 12).all()                        # intervals from n = 10 up
    shown = ex.table1_shown(t)
    assert list(shown.columns) == ["AD100", "IC100", "AD50", "IC50", "AD15", "IC15", "#FW", "n"]
    assert "[" in shown.loc["Grad-CAM", "AD100"]


def test_table1_gives_no_interval_below_ten_images():
    t = ex.table1(per_image(4), moved_frame({m: False for m in ex.VARIANTS}), {m: 1 for m in ex.METHODS})
    assert t.low.isna().all() and t.note.str.contains("too few").all()


def test_paired_differences_recover_a_known_shift():
    shift = {"L-CAM-Img": -3.0, ex.START: 2.0}
    d = ex.paired_differences(per_image(12, shift), moved_frame({m: True for m in ex.VARIANTS}))
    rows = d.set_index(["method", "minus", "column"])
    assert rows.loc[("L-CAM-Img", ex.START, "AD100"), "difference"] == pytest.approx(-5.0)
    assert rows.loc[(ex.START, "Grad-CAM", "AD15"), "difference"] == pytest.approx(2.0)
    assert rows.loc[("L-CAM-Fm", ex.START, "AD50"), "difference"] == pytest.approx(-2.0)
    assert rows.loc[("L-CAM-Fm", "Grad-CAM", "IC15"), "difference"] == 0 and not rows.resolved.all()
    assert set(d.minus) == {ex.START, "Grad-CAM"} and len(d) == (4 + 5) * 6


def test_evaluate_ad_ic_rows_and_the_map_store_give_the_same_numbers(tmp_path):
    model = tiny_model()

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return Sample(f"x{i}", images(5)[i], 0, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))

    cams = {"Grad-CAM": GradCAM(model), ex.START: LCAM(model, LCAMAttention.from_classifier(model))}
    plain, first = ex.evaluate_ad_ic(model, cams, Data(), MapStore(None, "tiny"), 2, torch.device("cpu"))
    stored, _ = ex.evaluate_ad_ic(model, cams, Data(), MapStore(tmp_path, "tiny"), 2, torch.device("cpu"))
    again, _ = ex.evaluate_ad_ic(model, cams, Data(), MapStore(tmp_path, "tiny"), 3, torch.device("cpu"))
    assert len(plain) == 5 * 2 * 3 and set(plain.method) == set(cams)
    pd.testing.assert_frame_equal(plain, stored)
    pd.testing.assert_frame_equal(plain.sort_values(["method", "image_id", "fraction"]).reset_index(drop=True),
                                  again.sort_values(["method", "image_id", "fraction"]).reset_index(drop=True))
    assert first["ids"] == ["x0", "x1"] and first["maps"]["Grad-CAM"].shape == (2, 8, 8)
    # Grad-CAM read from lib.evaluation's rows (as notebook 02 reads the pipeline's shards): the same numbers
    shared, first_shared = ex.evaluate_ad_ic(model, cams, Data(), MapStore(None, "tiny"), 2, torch.device("cpu"),
                                             shared=["Grad-CAM"], model_name="tiny")
    key = ["method", "image_id", "fraction"]
    pd.testing.assert_frame_equal(plain.sort_values(key).reset_index(drop=True),
                                  shared.sort_values(key).reset_index(drop=True), check_exact=False, atol=1e-5)
    assert torch.equal(first_shared["maps"]["Grad-CAM"], first["maps"]["Grad-CAM"])


def test_class_specific_scores_per_composite():
    class LeftHalf:  # every map puts all its mass in the left half, whatever the class asked for
        def __call__(self, x, targets):
            m = torch.zeros(len(x), 64, 64)
            m[:, :, :32] = 1.0
            return m

    boxes = torch.tensor([[0.0, 0.0, 32.0, 64.0], [32.0, 0.0, 64.0, 64.0]])
    batch = type("B", (), {"images": images(2), "image_ids": ["p", "q"], "boxes": [boxes, boxes],
                           "box_labels": [torch.tensor([0, 1]), torch.tensor([2, 1])]})()
    scores, maps = ex.class_specific_scores({"Grad-CAM": LeftHalf()}, batch, ["Grad-CAM"])
    assert list(scores.composite) == ["p", "q"]
    assert scores.energy.tolist() == [0.5, 0.5] and scores.hit_rate.tolist() == [0.5, 0.5]
    assert scores.both_hit.tolist() == [0.0, 0.0] and maps[("Grad-CAM", "right")].shape == (2, 64, 64)


def test_neighbour_rank_from_the_linear_rows():
    rank = ex.class_neighbour_rank(tiny_model())
    w = torch.nn.functional.normalize(tiny_model().net.fc.weight, dim=1)
    nearest_to_0 = int((w[1:] @ w[0]).argmax()) + 1
    assert rank[0, nearest_to_0] == 0 and rank[0, 3 - nearest_to_0] == 1


def test_every_figure_is_drawn_even_with_nothing_to_show():
    empty = pd.DataFrame(columns=["spearman", "true", "predicted"])
    fig = ex.errors_figure(empty, [], "Fig. 6 analogue", 4)
    assert "none found in this sample" in fig.axes[0].texts[0].get_text()
    fig, ids = ex.bias_figure(tiny_model(), None, torch.utils.data.TensorDataset(images(2)), ["soup bowl"],
                              torch.device("cpu"))
    assert ids == [] and "none found" in fig.axes[0].texts[0].get_text()


def test_search_errors_groups_and_keeps_maps():
    model = tiny_model()

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return Sample(f"x{i}", images(6)[i], i % 3, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))

    cam = LCAM(model, LCAMAttention.from_classifier(model))
    errors, keep = ex.search_errors(model, cam, Data(), model.categories, 4, torch.device("cpu"), related=1)
    predicted = model(images(6)).argmax(1)
    assert len(errors) == int((predicted != torch.arange(6) % 3).sum()) == len(keep)
    assert set(errors.group) <= {"related classes", "unrelated classes"}
    assert ((errors["neighbour rank"] == 1) == (errors.group == "related classes")).all()
    assert errors.spearman.between(-1, 1).all()


def test_conclusions_say_why_the_lcam_claims_are_not_computed():
    claims = pd.DataFrame({"methods": ["lcam_img vs gradcam", "lcam_fm vs rise", "gradcam vs rise"],
                           "verdict": ["not computed", "not computed", "not comparable"]})
    diffs = ex.paired_differences(per_image(12, {ex.START: 1.0}, noise=0.3), moved_frame({m: False for m in ex.VARIANTS}))
    fig4 = pd.DataFrame({"method": ["Grad-CAM"], "label": ["Grad-CAM"], "metric": ["energy"], "mean": [0.8],
                         "low": [0.7], "high": [0.9], "n": [12], "note": [""]})
    errors = pd.DataFrame({"group": ["related classes"] * 3, "spearman": [0.9, 0.8, 0.7]})
    text = ex.conclusions_markdown(moved_frame({m: False for m in ex.VARIANTS}), claims, diffs, fig4, errors, 12, 1)
    assert "Why 2 L-CAM claims are `not computed`" in text and "4 of 4 untrained" in text
    assert "AD100 +1.0" in text and "(resolved)" in text
    trained = ex.conclusions_markdown(moved_frame({m: True for m in ex.VARIANTS}), claims, diffs, fig4, errors, 12, 1)
    assert "not computed" not in trained and "0 of 4 untrained" in trained


def with_seeds(frame: pd.DataFrame, seeds=(1, 2), shift=1.0) -> pd.DataFrame:
    """The trained methods' rows again under each other seed's label, their drop shifted by seed * shift."""
    trained = frame[frame.method.isin(ex.VARIANTS)]
    extra = [trained.assign(method=trained.method.map(lambda m: ex.seed_label(m, s, 0)), drop=trained["drop"] + s * shift)
             for s in seeds]
    return pd.concat([frame, *extra], ignore_index=True)


def test_seed_labels_keys_and_primary_rows():
    assert ex.seed_label("L-CAM-Fm", 0, 0) == "L-CAM-Fm" and ex.seed_label("L-CAM-Fm", 2, 0) == "L-CAM-Fm (seed 2)"
    assert ex.base_name("L-CAM-Fm* (seed 2)") == "L-CAM-Fm*" and ex.label_seed("L-CAM-Fm* (seed 2)", 0) == 2
    assert ex.label_seed("L-CAM-Img", 5) == 5
    assert ex.shared_key("L-CAM-Img* (seed 1)") == "lcam-img-ce-s1" and ex.shared_key("Grad-CAM") == "gradcam"
    assert ex.checkpoint_name("m", "fm", True, 2) == "lcam_m_fm_ce_s2.pt"
    frame = with_seeds(per_image(4))
    assert set(ex.primary_rows(frame).method) == set(ex.METHODS)


def test_seed_spread_is_the_range_of_the_seeds_means():
    spread = ex.seed_spread(with_seeds(per_image(12), shift=0.5), [0, 1, 2])
    row = spread[(spread.method == "L-CAM-Img") & (spread.column == "AD100")].iloc[0]
    assert row.seeds == 3 and row.n == 12 and row.spread == pytest.approx(1.0)
    assert row.seed_max - row.seed_min == pytest.approx(1.0) and len(row.seed_means.split(" / ")) == 3
    ic = spread[(spread.method == "L-CAM-Img") & (spread.column == "IC100")].iloc[0]
    assert ic.spread == 0  # increase is not shifted
    assert list(spread.method.unique()) == list(ex.VARIANTS)


def test_seed_verdicts_recompute_every_claim_with_each_seed():
    # seed 0: L-CAM-Img 5 points lower AD than Grad-CAM (the paper's direction); seed 1: 5 higher (+10)
    frame = with_seeds(per_image(40, {"L-CAM-Img": -5.0}, noise=0.5), seeds=(1,), shift=10.0)
    table = ex.seed_verdicts(frame, moved_frame({m: True for m in ex.VARIANTS}, seeds=(0, 1)), [0, 1])
    row = table.set_index("claim").loc["lcam-t1-r50-ad100-img-vs-gradcam"]
    assert row["seed 0"] == "agrees" and row["seed 1"] == "disagrees" and not row.agree
    untrained = ex.seed_verdicts(frame, moved_frame({m: False for m in ex.VARIANTS}, seeds=(0, 1)), [0, 1])
    assert untrained.set_index("claim").loc["lcam-t1-r50-ad100-img-vs-gradcam", "seed 0"] == "not comparable"


def test_area_tv_table_pairs_full_with_ce_only_and_the_start():
    rows = [{"image_id": f"i{i}", "method": m, "area": a + 0.01 * i, "tv": t}
            for i in range(12) for m, a, t in ((ex.START, 0.9, 3.0), ("L-CAM-Fm*", 0.9, 3.0), ("L-CAM-Fm", 0.5, 1.0))]
    table = ex.area_tv_table(pd.DataFrame(rows))
    pair = table[(table.kind == "paired") & (table.method == "L-CAM-Fm") & (table.minus == "L-CAM-Fm*")]
    assert pair.set_index("metric").difference.to_dict() == pytest.approx({"area": -0.4, "tv": -2.0})
    assert set(table[table.kind == "mean"].method) == {ex.START, "L-CAM-Fm*", "L-CAM-Fm"}


def test_training_curves_figure_draws_each_method_and_seed():
    history = pd.DataFrame([{"method": m, "seed": s, "epoch": e, "loss": 3 - e * 0.1, "ce": 0.4, "area": 0.7,
                             "tv": 100.0, "val_loss": 3.1 - e * 0.1, "map_distance": 0.01 * e,
                             "weight_distance": 0.02 * e} for m in ("L-CAM-Fm", "L-CAM-Fm*") for s in (0, 1)
                            for e in range(4)])
    fig = ex.training_curves_figure(history)
    assert len(fig.axes) == 2 * 6 and len(fig.axes[0].lines) == 4  # training and held-out line per seed
    plt.close(fig)


def test_key_numbers_names():
    t = ex.table1(per_image(4), moved_frame({m: False for m in ex.VARIANTS}), {m: 1 for m in ex.METHODS})
    fig4 = pd.DataFrame({"method": ["Grad-CAM", "Grad-CAM"], "metric": ["energy", "hit_rate"], "mean": [0.8, 1.0]})
    values = ex.key_numbers(t, fig4)
    assert len(values) == 3 * len(ex.METHODS) + 1
    assert "table1 / L-CAM-Img / AD100" in values and "fig4 / Grad-CAM / energy" in values
    assert "fig4 / Grad-CAM / hit_rate" not in values
