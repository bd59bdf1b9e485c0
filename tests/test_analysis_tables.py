"""lib.analysis.tables, draws, map_store, key_numbers and report; lib.outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from lib.analysis import key_numbers, map_store
from lib.analysis.draws import composite_pairs, seeded_order, split_draws
from lib.analysis.report import claims_markdown, notebook_claims
from lib.analysis.tables import display_table, formatted, paired, summarize
from lib.data import seeded_subset
from lib.outputs import check_outputs, declared, notebooks


def frame(n=12, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(50, 10, n)
    rows = []
    for method, shift in (("A", 0.0), ("B", 5.0)):
        for k in range(n):
            rows.append({"method": method, "image_id": f"i{k}", "drop": base[k] + shift + rng.normal(0, 1),
                         "increase": float(100 * ((k + (method == "B")) % 2))})
    return pd.DataFrame(rows)


def test_summarize_gives_t_and_clopper_pearson_intervals_as_numbers():
    f = frame()
    s = summarize(f, ["drop", "increase"], "method").set_index(["method", "metric"])
    a = f[f.method == "A"]["drop"].to_numpy()
    low, high = sps.t.interval(0.95, len(a) - 1, a.mean(), sps.sem(a))
    assert s.loc[("A", "drop"), "mean"] == pytest.approx(a.mean())
    assert s.loc[("A", "drop"), ["low", "high"]].tolist() == pytest.approx([low, high])
    rate = f[f.method == "A"].increase.to_numpy()
    ci = sps.binomtest(int((rate == 100).sum()), len(rate)).proportion_ci(0.95, "exact")
    assert s.loc[("A", "increase"), ["low", "high"]].tolist() == pytest.approx([100 * ci.low, 100 * ci.high])
    assert s["n"].eq(12).all() and s[["mean", "low", "high"]].dtypes.eq(float).all()


def test_summarize_below_min_n_has_no_interval_and_says_why():
    s = summarize(frame(n=4), "drop", "method")
    assert s[["low", "high"]].isna().all().all()
    assert s.note.str.contains("too few").all()
    assert formatted(s).str.contains(r"\(n = 4").all()


def test_paired_matches_the_paired_t_test_and_pairs_by_image():
    f = frame(n=15)
    f = f.sample(frac=1.0, random_state=1)  # order must not matter
    p = paired(f, "drop", ["B"], "A").iloc[0]
    wide = f.pivot_table(index="image_id", columns="method", values="drop")
    t = sps.ttest_rel(wide.B, wide.A)
    assert p.difference == pytest.approx((wide.B - wide.A).mean())
    assert p.p_value == pytest.approx(t.pvalue) and p.resolved == (t.pvalue < 0.05)
    assert p.n == 15 and p.low < p.difference < p.high


def test_paired_binary_column_uses_the_exact_mcnemar_rule():
    p = paired(frame(n=20), "increase", ["B"], "A").iloc[0]
    assert p.difference == pytest.approx(0.0) and p.p_value == pytest.approx(1.0) and not p.resolved


def test_paired_raises_on_a_missing_method():
    with pytest.raises(ValueError, match="'C'"):
        paired(frame(), "drop", ["C"], "A")


def test_display_table_pivots_formatted_cells_in_order():
    s = summarize(frame(), "drop", "method")
    shown = display_table(s, "method", "metric", digits=1, order=["B", "A"])
    assert list(shown.index) == ["B", "A"]
    assert shown.loc["A", "drop"].startswith(f"{s.iloc[0]['mean']:.1f} [")


def test_seeded_order_is_the_seeded_subset_scheme():
    ids = [f"x{i:03d}" for i in range(40)]
    order = seeded_order(reversed(ids), 3)
    assert order[:9] == seeded_subset(ids, 9, 3) and sorted(order) == ids
    assert order != seeded_order(ids, 4)
    draws = split_draws(order, {"a": 5, "b": 10})
    assert draws["a"] == order[:5] and draws["b"] == order[5:15] and draws["rest"] == order[15:]
    with pytest.raises(ValueError, match="need 41"):
        split_draws(order, {"a": 41})


def test_composite_pairs_skip_same_label_pairs_and_rejected_ids():
    order = ["a", "b", "c", "d", "e", "f", "g", "h"]
    labels = {"a": 1, "b": 1, "c": 2, "d": 3, "e": 4, "f": 4, "g": 5, "h": 6}
    assert composite_pairs(order, labels, 5) == [("c", "d"), ("g", "h")]
    keep = lambda ids: [i != "b" for i in ids]  # noqa: E731
    assert composite_pairs(order, labels, 2, keep=keep, chunk=3) == [("a", "c"), ("d", "e")]


class Doubler:
    """A stand-in CAM: maps are the images' first channel times a factor; counts its calls."""

    def __init__(self, model, factor=2.0):
        self.model, self.factor, self.target_layer, self.batch_size, self.calls = model, factor, None, 4, 0

    def __call__(self, images, targets):
        self.calls += len(images)
        return images[:, 0] * self.factor + targets.view(-1, 1, 1)


def test_map_store_computes_each_map_once_and_keys_on_settings(tmp_path):
    model = torch.nn.Linear(2, 2)
    model.target_layer = "net.layer"
    store = map_store.MapStore(tmp_path, "tiny")
    images, ids, targets = torch.rand(3, 3, 4, 4), ["a", "b", "c"], torch.tensor([0, 1, 2])
    cam = Doubler(model)
    first = store.maps(cam, images, ids, targets)
    again = store.maps(Doubler(model), images[[2, 0]], ["c", "a"], targets[[2, 0]])
    assert cam.calls == 3 and torch.equal(again, first[[2, 0]])
    other = Doubler(model, factor=3.0)  # another setting: another map
    store.maps(other, images[:1], ids[:1], targets[:1])
    assert other.calls == 1
    other_target = Doubler(model)
    store.maps(other_target, images[:1], ids[:1], torch.tensor([5]))
    assert other_target.calls == 1
    assert "layer='net.layer'" in map_store.describe(cam) and "batch_size" not in map_store.describe(cam)


def test_map_store_makes_several_methods_maps_in_one_call_each_under_its_own_key(tmp_path):
    model = torch.nn.Linear(2, 2)
    model.target_layer = "net.layer"
    store = map_store.MapStore(tmp_path, "tiny")
    images, ids, targets = torch.rand(3, 3, 4, 4), ["a", "b", "c"], torch.tensor([0, 1, 2])
    calls = []

    def together(cams, x, t):  # stands in for shared passes: one call for every method
        calls.append(len(x))
        return [cam(x, t) for cam in cams]

    double, triple = Doubler(model), Doubler(model, factor=3.0)
    store.maps(Doubler(model), images[:1], ids[:1], targets[:1])  # one of them stored before (`calls` is in the key)
    both = store.maps_many([double, triple], images, ids, targets, compute=together)
    assert calls == [3] and len(list(tmp_path.glob("*.pt"))) == 6  # images missing any map: computed once, all kept
    assert store.maps_many([Doubler(model), Doubler(model, factor=3.0)], images, ids, targets,
                           compute=together)[1].equal(both[1]) and calls == [3]
    alone = Doubler(model, factor=3.0)
    torch.testing.assert_close(store.maps(alone, images, ids, targets), images[:, 0] * 3.0 + targets.view(-1, 1, 1))
    assert alone.calls == 0  # its own job reads what the first one made
    no_store = map_store.MapStore(None, "tiny").maps_many([Doubler(model), triple], images, ids, targets,
                                                          compute=together)
    assert calls == [3, 3] and torch.equal(no_store[0], both[0])


def test_describe_hashes_learned_weights():
    net = torch.nn.Linear(2, 2)
    holder = type("Holder", (), {})()
    holder.attention = net
    before = map_store.describe(holder)
    with torch.no_grad():
        net.weight.add_(1e-3)
    assert map_store.describe(holder) != before


def test_key_numbers_pass_within_tolerance_and_fail_on_a_one_percent_change(tmp_path, monkeypatch):
    monkeypatch.delenv("CAM_UPDATE_KEY_NUMBERS", raising=False)
    values = {"AD": {"Grad-CAM": 22.2, "trained": 20.0}, "IC": 28.1}
    wide = {"AD / trained": (0.1, "trained here")}
    assert "written" in key_numbers.check_key_numbers("09", values, True, wide, expected_dir=tmp_path)
    assert "equal" in key_numbers.check_key_numbers("09", values, True, wide, expected_dir=tmp_path)
    near = {"AD": {"Grad-CAM": 22.2 * 1.0005, "trained": 21.0}, "IC": 28.1}
    key_numbers.check_key_numbers("09", near, True, expected_dir=tmp_path)
    with pytest.raises(AssertionError, match="AD / Grad-CAM"):
        key_numbers.check_key_numbers("09", {"AD": {"Grad-CAM": 22.2 * 1.01, "trained": 20.0}, "IC": 28.1}, True,
                                      expected_dir=tmp_path)
    with pytest.raises(AssertionError, match="missing"):
        key_numbers.check_key_numbers("09", {"IC": 28.1}, True, expected_dir=tmp_path)
    assert "not checked" in key_numbers.check_key_numbers("09", {"IC": 1.0}, False, expected_dir=tmp_path)
    assert json.loads((tmp_path / "09.json").read_text())["tolerances"]["wide"]["AD / trained"]["rtol"] == 0.1


def test_outputs_list_is_checked(tmp_path):
    assert set(notebooks()) == {"01", "02", "03", "04", "05"}
    names = declared("01")
    assert "claims.csv" in names and declared("01", "figures")[0].endswith(".png")
    for name in names:
        (tmp_path / name).write_text("x")
    assert check_outputs("01", tmp_path) == names
    (tmp_path / "stray.csv").write_text("x")
    with pytest.raises(RuntimeError, match="undeclared \\['stray.csv'\\]"):
        check_outputs("01", tmp_path)
    (tmp_path / "stray.csv").unlink()
    (tmp_path / names[0]).unlink()
    with pytest.raises(RuntimeError, match="missing"):
        check_outputs("01", tmp_path)
    with pytest.raises(ValueError, match="no notebook"):
        declared("07")


def test_notebook_claims_writes_claims_csv_from_the_notebooks_tables(tmp_path):
    out = tmp_path / "01"
    out.mkdir()
    rng = np.random.default_rng(0)
    masks = [(False, 1.0)] + [(True, f) for f in (0.05, 0.1, 0.2, 0.25, 0.5)]
    rows = [{"image_id": f"i{k}", "method": m, "binary": binary, "fraction": fraction,
             "drop": 30 + rng.normal() - (5 if m == "AM-Grad-CAM" else 0), "increase": 0.0, "score": 1.0 + rng.normal()}
            for k in range(12) for binary, fraction in masks
            for m in ("Grad-CAM", "Grad-CAM++", "SmoothGrad-CAM++", "XGrad-CAM", "AM-Grad-CAM")]
    pd.DataFrame(rows).to_csv(out / "per_image_ad_ic.csv", index=False)
    frame_ = notebook_claims("01_attention_map_gradcam", out)
    written = pd.read_csv(out / "claims.csv")
    assert len(written) == len(frame_) and set(written.claim) == set(frame_.claim)
    verdict = frame_.set_index("claim").verdict
    assert verdict["amgc-t3-ad-vs-gradcam"] == "agrees"  # AM-Grad-CAM's AD is 5 lower on every image
    text = claims_markdown(frame_)
    assert "claims in the registry" in text
    with pytest.raises(ValueError, match="no claims"):
        notebook_claims("09_nothing", out)
    with pytest.raises(ValueError, match="output folder"):
        notebook_claims("03_sa_cam", out)
