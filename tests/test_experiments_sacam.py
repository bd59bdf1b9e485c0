"""lib.experiments.sacam (notebook 03): the draws reproduce the notebook's former images, the tables
are the paper's layout in numbers with the right interval rules, and the per-image frames carry the
columns the claims registry reads."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from lib.analysis.claims import load_claims
from lib.analysis.draws import seeded_order
from lib.analysis.map_store import MapStore
from lib.analysis.stats import mean_interval, proportion_interval
from lib.data.samples import Batch
from lib.experiments import sacam
from tests.tiny_models import TinyModel

METHODS = ["Grad-CAM", "Score-CAM", "SA-CAM"]


def labels_of(n: int, classes: int, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    return {f"img{k:04d}.JPEG": int(c) for k, c in enumerate(rng.integers(0, classes, n))}


def keep_from(ok: dict[str, bool], calls: list | None = None):
    def keep(ids):
        if calls is not None:
            calls.append(list(ids))
        return [ok[i] for i in ids]
    return keep


# --- draws: the same images as the notebook's former loops --------------------------------------

def old_two_class(labels, ok, seed, n):
    """The notebook's former Fig. 6 draw (chunks of 4n, correctly classified, each class once)."""
    pool = [str(i) for i in np.random.default_rng(seed).permutation(sorted(labels))]
    photos, seen = [], set()
    for start in range(0, len(pool), 4 * n):
        for i in pool[start:start + 4 * n]:
            if ok[i] and labels[i] not in seen:
                seen.add(labels[i])
                photos.append(i)
        if len(photos) >= 2 * n:
            break
    return [(photos[2 * k], photos[2 * k + 1]) for k in range(n)]


def old_same_class(labels, ok, seed, n):
    """The notebook's former Fig. 7 draw (classes with two images, permuted; both correct)."""
    by_class = {}
    for image_id, label in sorted(labels.items()):
        by_class.setdefault(label, []).append(image_id)
    candidates = [ids for ids in by_class.values() if len(ids) >= 2]
    pairs = []
    for k in np.random.default_rng(seed).permutation(len(candidates)):
        pair = [i for i in candidates[k][:2] if ok[i]]
        if len(pair) == 2:
            pairs.append(tuple(pair))
        if len(pairs) >= n:
            break
    return pairs


@pytest.mark.parametrize("seed,n,classes", [(1, 1, 50), (7, 3, 20), (11, 5, 12)])
def test_composite_draws_reproduce_the_former_images(seed, n, classes):
    labels = labels_of(300, classes, seed)
    ok = {i: bool(v) for i, v in zip(labels, np.random.default_rng(seed + 100).random(len(labels)) > 0.3)}
    two = sacam.two_class_pairs(list(labels), labels, seed, n, keep_from(ok))
    assert two == old_two_class(labels, ok, seed, n)
    flat = [i for pair in two for i in pair]
    assert len({labels[i] for i in flat}) == len(flat) and all(ok[i] for i in flat)
    same = sacam.same_class_pairs(labels, seed + 1, n, keep_from(ok))
    assert same == old_same_class(labels, ok, seed + 1, n)
    assert all(labels[a] == labels[b] and a < b for a, b in same)


def test_two_class_draw_classifies_only_the_chunks_it_needs():
    labels = labels_of(400, 300)
    calls = []
    sacam.two_class_pairs(list(labels), labels, 1, 1, keep_from({i: True for i in labels}, calls))
    assert len(calls) == 1 and len(calls[0]) == 4


def test_hosts_follow_one_cursor_and_are_of_other_classes():
    labels = labels_of(40, 3)
    order = seeded_order(labels, 3)
    targets = [labels[order[0]], labels[order[5]], 0]
    hosts = sacam.adversarial_hosts(order, labels, targets, 4)
    cursor, expected = 0, []
    for t in targets:  # the notebook's former loop
        mine = []
        while len(mine) < 4:
            c = order[cursor % len(order)]
            cursor += 1
            if labels[c] != t:
                mine.append(c)
        expected.append(mine)
    assert hosts == expected
    assert all(labels[h] != t for t, hs in zip(targets, hosts) for h in hs)
    with pytest.raises(ValueError, match="n_hosts"):
        sacam.adversarial_hosts(order, labels, targets, 0)


def test_parse_grid_reads_none_and_needs_three_cases():
    assert sacam.parse_grid("none, 0.5", "0,1", "0.1,0.2,0.3") == ([None, 0.5], [0.0, 1.0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="three fractions"):
        sacam.parse_grid("none", "0", "0.1,0.2")


# --- tables ---------------------------------------------------------------------------------------

def auc_frame(n_per_group: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(5):
        for k in range(n_per_group):
            image = f"g{g}i{k}"
            for m, shift in zip(METHODS, (0.0, -0.05, 0.04)):
                d, i = rng.uniform(0.05, 0.3), rng.uniform(0.3, 0.8) + shift
                rows.append({"method": m, "group": f"Group-{g + 1}", "image_id": image, "deletion": d,
                             "insertion": i, "overall": i - d})
    return pd.DataFrame(rows)


def test_group_table_totals_are_five_group_means_with_five_times_the_t_interval():
    aucs = auc_frame(3)
    table = sacam.group_table(aucs, "insertion")
    assert list(table.group[table.method == "SA-CAM"]) == sacam.ROWS
    assert list(dict.fromkeys(table.method)) == METHODS
    total = table[(table.method == "SA-CAM") & (table.group == "Total")].iloc[0]
    values = aucs[aucs.method == "SA-CAM"].insertion
    est = mean_interval(values.to_numpy())
    group_means = aucs[aucs.method == "SA-CAM"].groupby("group").insertion.mean()
    assert total["mean"] == pytest.approx(group_means.sum())
    assert (total.low, total.high) == pytest.approx((5 * est.low, 5 * est.high))
    assert total.n == 15 and total.paper == 2.035
    g2 = table[(table.method == "Score-CAM") & (table.group == "Group-2")].iloc[0]
    assert g2.paper == 0.467 and np.isnan(g2.low) and "too few" in g2.note  # 3 images: no interval


def test_totals_and_paired_differences_are_numbers():
    aucs = auc_frame(3)
    t3 = sacam.totals_table(aucs)
    row = t3[(t3.method == "SA-CAM") & (t3.metric == "overall")].iloc[0]
    assert row.paper == 1.734 and row["mean"] == pytest.approx(5 * aucs[aucs.method == "SA-CAM"].overall.mean())
    assert t3[(t3.method == "Grad-CAM") & (t3.metric == "deletion")].paper.iloc[0] == 0.464
    pairs = sacam.paired_differences(aucs)
    assert len(pairs) == 9 and pairs.difference.dtype == float
    wide = aucs.pivot(index="image_id", columns="method", values="deletion")
    row = pairs[(pairs.method == "SA-CAM") & (pairs.minus == "Grad-CAM") & (pairs.metric == "deletion")].iloc[0]
    assert row.difference == pytest.approx((wide["SA-CAM"] - wide["Grad-CAM"]).mean())
    shown = sacam.shown_paired(pairs)
    assert list(shown.index) == ["SA-CAM - Score-CAM", "SA-CAM - Grad-CAM", "Score-CAM - Grad-CAM"]


def test_shown_puts_ours_beside_the_papers():
    table = sacam.group_table(auc_frame(3), "deletion")
    shown = sacam.shown(table, "group", sacam.ROWS)
    assert list(shown.columns) == [f"{m} ({w})" for m in METHODS for w in ("ours", "paper")] + ["n"]
    assert shown.loc["Total", "SA-CAM (paper)"] == 0.301 and "[" in shown.loc["Total", "SA-CAM (ours)"]


def adversarial(n_images: int, accuracy_values) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for c, f in zip(("Case-1", "Case-2", "Case-3"), (0.1, 0.2, 0.3)):
        for m in METHODS:
            for k in range(n_images):
                rows.append({"case": c, "core fraction": f, "method": m, "image_id": f"i{k}",
                             "accuracy": float(rng.choice(accuracy_values)), "fading": float(rng.uniform(0, 100)),
                             "case_image": f"{c}/i{k}"})
    return pd.DataFrame(rows)


def test_adversarial_accuracy_rule_follows_the_hosts():
    one_host = adversarial(12, [0.0, 100.0])
    t4 = sacam.adversarial_table(one_host, "accuracy", n_hosts=1)
    row = t4[(t4.case == "Case-2") & (t4.method == "SA-CAM")].iloc[0]
    values = one_host[(one_host.case == "Case-2") & (one_host.method == "SA-CAM")].accuracy
    cp = proportion_interval(values.to_numpy())
    assert row.rule == "clopper-pearson" and (row.low, row.high) == pytest.approx((cp.low, cp.high))
    assert row.paper == 29.26
    four_hosts = adversarial(12, [0.0, 25.0, 50.0, 100.0])
    t4 = sacam.adversarial_table(four_hosts, "accuracy", n_hosts=4)
    row = t4[(t4.case == "Case-3") & (t4.method == "Grad-CAM")].iloc[0]
    values = four_hosts[(four_hosts.case == "Case-3") & (four_hosts.method == "Grad-CAM")].accuracy
    assert row.rule == "t" and row.low == pytest.approx(mean_interval(values.to_numpy()).low)
    t5 = sacam.adversarial_table(four_hosts, "fading", n_hosts=1)
    assert set(t5.rule) == {"t"} and t5[(t5.case == "Case-1") & (t5.method == "Score-CAM")].paper.iloc[0] == 70.37
    assert sacam.accuracy_rule(1) == "clopper-pearson" and sacam.accuracy_rule(2) == "t"


def test_adversarial_frame_has_the_columns_the_registry_reads():
    torch.manual_seed(0)
    model = TinyModel().eval()
    images = torch.rand(3, 3, 16, 16)
    maps = {m: torch.rand(3, 16, 16) for m in METHODS}
    frame = sacam.adversarial_frame(model, images, maps, torch.tensor([0, 1, 0]), ["a", "b", "c"],
                                    torch.rand(3, 2, 3, 16, 16), [0.1, 0.2, 0.3], 0, 8)
    assert len(frame) == 3 * 3 * 3 and set(frame.accuracy) <= {0.0, 50.0, 100.0}
    for claim in load_claims("sa-cam"):
        ev = claim.evidence
        if ev and ev["table"].endswith("per_image_adversarial.csv"):
            needed = {ev["value"], ev.get("image_column", "image_id"), *ev.get("where", {})}
            assert needed <= set(frame.columns), claim.id
            if ev.get("unit_pattern"):
                units = frame[ev["image_column"]].str.extract(ev["unit_pattern"], expand=False)
                assert (units == frame.image_id).all(), claim.id


def test_multi_target_table_counts_composites():
    two = pd.DataFrame([{"method": m, "composite": f"c{k}", "class": "x", "side": s, "energy": e}
                        for m in METHODS for k in range(3) for s, e in (("left", 0.9), ("right", 0.5 + 0.1 * k))])
    same = pd.DataFrame([{"method": m, "composite": f"d{k}", "left": 0.4, "right": 0.4, "in the photos": 0.8,
                          "weaker half's share": 0.5} for m in METHODS for k in range(2)])
    table = sacam.multi_target_table(two, same)
    row = table[(table.method == "SA-CAM") & (table.metric == "two classes: energy in the class's half")].iloc[0]
    assert row.n == 3 and row["mean"] == pytest.approx(np.mean([0.7, 0.75, 0.8]))
    assert set(table.metric) == {"two classes: energy in the class's half", "one class twice: in the photos",
                                 "one class twice: weaker half's share"}


class HalfCAM:
    """A fake CAM: for class 3 the left half, for class 5 the right half, else everything."""

    def __init__(self):
        self._calls = 0

    def __call__(self, images, targets):
        self._calls += 1
        n, _, h, w = images.shape
        t = torch.as_tensor(targets).reshape(n, -1)
        out = torch.ones(n, t.shape[1], h, w)
        out[..., : w // 2] *= (t != 5).float()[..., None, None]
        out[..., w // 2:] *= (t != 3).float()[..., None, None]
        return out if t.shape[1] > 1 else out[:, 0]


def composites(labels) -> "sacam.Composites":
    boxes = torch.tensor([[0.0, 0.0, 4.0, 8.0], [4.0, 0.0, 8.0, 8.0]])
    batch = Batch(["c0"], torch.rand(1, 3, 8, 8), torch.tensor([labels[0]]), [boxes], [torch.tensor(labels)])
    return sacam.Composites(batch, torch.tensor([labels]), ["composite:a+b"], {"composite_size": 8})


def test_energy_of_two_class_and_same_class_composites(tmp_path):
    store = MapStore(tmp_path, "fake")
    cam = HalfCAM()
    two, shown = sacam.two_class_energy(store, {"SA-CAM": cam}, composites([3, 5]), [str(c) for c in range(10)])
    assert list(two.energy) == [1.0, 1.0] and list(two.side) == ["left", "right"] and shown["SA-CAM"].shape[1] == 2
    same, _ = sacam.same_class_energy(store, {"SA-CAM": cam}, composites([7, 7]))
    row = same.iloc[0]
    assert row["in the photos"] == pytest.approx(1.0) and row["weaker half's share"] == pytest.approx(0.5)
    calls = cam._calls
    sacam.same_class_energy(store, {"SA-CAM": cam}, composites([7, 7]))
    assert cam._calls == calls  # the second time from the store


def test_timed_maps_chunks_and_reads_the_store(tmp_path):
    cam = HalfCAM()
    images, targets = torch.rand(5, 3, 8, 8), torch.tensor([3, 5, 1, 3, 5])
    ids = [f"i{k}" for k in range(5)]
    maps, seconds = sacam.timed_maps(MapStore(tmp_path, "fake"), {"x": cam}, images, ids, targets, batch_size=2)
    assert cam._calls == 3 and torch.equal(maps["x"], cam(images, targets)) and seconds["x"] >= 0
    sacam.timed_maps(MapStore(tmp_path, "fake"), {"x": cam}, images, ids, targets, batch_size=2)
    assert cam._calls == 4  # only the reference call above: all maps from the store


def test_curve_bands_are_t_intervals_from_min_n():
    rng = np.random.default_rng(0)
    many = {mode: {"curves": torch.tensor(rng.random((12, 5)))} for mode in ("deletion", "insertion")}
    few = {k: {"curves": v["curves"][:3]} for k, v in many.items()}
    bands = sacam.curve_bands({"A": many, "B": few})
    a = bands[(bands.method == "A") & (bands["mode"] == "insertion")]
    est = mean_interval(many["insertion"]["curves"][:, 2].numpy())
    assert (a["mean"].iloc[2], a.low.iloc[2], a.high.iloc[2]) == pytest.approx((est.value, est.low, est.high))
    assert bands[bands.method == "B"].low.isna().all() and list(a.fraction) == pytest.approx(np.linspace(0, 1, 5))


def test_selection_text_says_whether_the_chosen_point_is_the_library_default():
    grid = pd.DataFrame([{"threshold": t, "lambda1": l1, "lambda2": 0.0, "image_id": "x", "overall": o}
                         for t, l1, o in (("none", 0.0, 0.1), (0.5, 1.0, 0.3), (0.5, 3.0, 0.3))])
    scores = {(None if r.threshold == "none" else r.threshold, r.lambda1, r.lambda2): torch.tensor([r.overall])
              for r in grid.itertuples()}
    chosen = sacam.chosen_parameters(scores)
    assert chosen == {"threshold": 0.5, "lambda1": 1.0, "lambda2": 0.0}  # the tie goes to the smaller lambdas
    text = sacam.selection_text(chosen, grid)
    assert "lambda1 1, lambda2 0" in text and "another point" in text and "0.3000" in text
    defaults = sacam.library_defaults()
    grid.loc[1, ["threshold", "lambda1", "lambda2"]] = [defaults["threshold"], defaults["lambda1"], defaults["lambda2"]]
    assert "the same point" in sacam.selection_text(defaults, grid)


def test_layer_check_says_when_the_tables_use_the_models_layer():
    class Net:
        target_layer = "head"
    table = sacam.layer_check(Net(), "head", None, torch.rand(1, 3, 8, 8), torch.tensor([0]), ["a"], None, 1, 8)
    assert len(table) == 1 and "no check needed" in table.note.iloc[0]


def test_key_numbers_and_agreement_text():
    aucs = auc_frame(3)
    adv = adversarial(12, [0.0, 50.0, 100.0])
    two = pd.DataFrame([{"method": m, "composite": "c", "energy": 0.8} for m in METHODS])
    same = pd.DataFrame([{"method": m, "composite": "c", "weaker half's share": 0.3} for m in METHODS])
    numbers = sacam.key_numbers(aucs, adv, two, same)
    flat = pd.json_normalize(numbers, sep=" / ").iloc[0]
    assert 10 <= len(flat) <= 40 and flat["auc / SA-CAM / overall"] == pytest.approx(
        aucs[aucs.method == "SA-CAM"].overall.mean())
    pairs = sacam.paired_differences(aucs)
    sanity = pd.DataFrame([{"method": m, "step": s, "randomised up to": n, "image_id": "a", "spearman": 1.0 - s,
                            "ssim": 1.0} for m in METHODS for s, n in ((0, "original"), (1, "net.fc"))])
    text = sacam.agreement_markdown(pairs, sanity, "net.blocks.15", "net.head_act")
    resolved = int(pairs.resolved.sum())
    assert f"{resolved} of 9 resolved" in text and "`net.fc`" in text and "net.head_act" in text
    assert len(re.findall(r"^\* ", text, re.M)) == resolved


def test_the_grid_file_gives_the_chosen_point_as_the_scores_do(tmp_path):
    """The select_sacam rule writes the grid; SA-CAM's evaluate job and notebook 03 derive the chosen point from the
    file (lib.cams.sacam.parameters_from_grid): the same point as from the scores, thresholds read back as written."""
    from lib.cams.sacam import parameters_from_grid
    rng = np.random.default_rng(3)
    rows = [{"threshold": "none" if t is None else t, "lambda1": l1, "lambda2": l2, "image_id": f"i{k}",
             "deletion": 0.1, "insertion": 0.2, "overall": float(rng.normal(0.1 * l1 - 0.05 * l2, 0.01))}
            for t in (None, 0.5) for l1 in (0.0, 1.0, 3.0) for l2 in (0.0, 1.0) for k in range(4)]
    grid = pd.DataFrame(rows)
    grid.to_csv(tmp_path / "grid.csv", index=False)
    scores = {}
    for r in rows:
        key = (None if r["threshold"] == "none" else r["threshold"], r["lambda1"], r["lambda2"])
        scores[key] = torch.cat([scores.get(key, torch.empty(0, dtype=torch.float64)), torch.tensor([r["overall"]], dtype=torch.float64)])
    assert parameters_from_grid(tmp_path / "grid.csv") == sacam.chosen_parameters(scores)
    back = sacam.read_grid(tmp_path / "grid.csv")
    assert list(back.threshold[:2]) == ["none", "none"] and back.threshold.iloc[-1] == 0.5
    pd.testing.assert_frame_equal(back.drop(columns="threshold"), grid.drop(columns="threshold"))
    pd.DataFrame({"threshold": []}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="not a selection grid"):
        parameters_from_grid(tmp_path / "bad.csv")


def test_frames_from_rows_equal_the_direct_aucs_and_curves(tmp_path):
    """Tables 1-3 and Fig. 9 from the causal_curves rows (values in %) equal auc_frame's AUCs and curves."""
    from lib.evaluation import SuiteSettings, evaluate_shard, EvalSpec
    from lib.data.samples import Sample
    from lib.metrics import deletion_insertion
    model = TinyModel()
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # insertion blurs with a 51 px kernel
    samples = [Sample(f"i{k}", x[k], k % 2, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)) for k in range(3)]
    class MeanCAM:  # a map with an order: the image's mean colour
        def __call__(self, images, targets):
            return images.mean(1)

    cam = MeanCAM()
    store = MapStore(tmp_path, "tiny")
    rows = evaluate_shard(model, EvalSpec("tiny", "half", "label", "causal_curves"), samples, store,
                          SuiteSettings(pixels_per_step=512), batch_size=2, cam=cam, progress=False)
    group_of = {"i0": "Group-1", "i1": "Group-1", "i2": "Group-2"}
    aucs, curves = sacam.frames_from_rows(rows.assign(method="Grad-CAM"), group_of)
    maps, labels = cam(x, torch.tensor([0, 1, 0])), torch.tensor([0, 1, 0])
    direct = {mode: deletion_insertion(model, x, maps, labels, mode=mode, pixels_per_step=512) for mode in ("deletion", "insertion")}
    assert list(aucs.columns) == ["method", "group", "image_id", "deletion", "insertion", "overall"]
    assert list(aucs.group) == ["Group-1", "Group-1", "Group-2"]
    for mode in ("deletion", "insertion"):
        assert aucs[mode].to_numpy() == pytest.approx(direct[mode]["auc"].double().numpy(), abs=1e-6)
        torch.testing.assert_close(curves["Grad-CAM"][mode]["curves"], direct[mode]["curves"].double(), atol=1e-6, rtol=1e-5)
    assert aucs.overall.to_numpy() == pytest.approx((aucs.insertion - aucs.deletion).to_numpy())


def test_the_pipelines_method_keys_are_the_notebooks_methods(lite0, tmp_path):
    """config/config.yaml's keys of Tables 1-3 (notebook 03's CPU layer, SA-CAM at the grid's chosen point) build
    the CAMs notebook 03 builds (the same map-store key: the pipeline's maps and rows are the notebook's), and the
    notebook reads exactly those keys."""
    import yaml
    from lib.analysis.map_store import describe
    from lib.cams.sacam import parameters_from_grid
    from lib.config import repo_root
    from lib.evaluation import build_method
    from lib.outputs import reads
    config = yaml.safe_load((repo_root() / "config" / "config.yaml").read_text())
    nb03, methods = config["notebook03"], config["evaluation"]["methods"]
    pd.DataFrame([{"threshold": 0.5, "lambda1": 3.0, "lambda2": 1.0, "image_id": "x", "overall": 0.2}]).to_csv(
        tmp_path / "grid.csv", index=False)
    layer = sacam.resolve_layer(lite0, nb03["target_layer_cpu"])
    cams = sacam.method_cams(lite0, layer, parameters_from_grid(tmp_path / "grid.csv"), nb03["perturbation"],
                             nb03["seed"], batch_size=4)
    for name, key in sacam.METHOD_KEYS.items():
        settings = {k: (v["cpu"] if isinstance(v, dict) else v) for k, v in methods[key].items()}
        if settings.get("selection") == "select":
            settings["selection"] = str(tmp_path / "grid.csv")
        assert describe(build_method(key, lite0, settings)) == describe(cams[name]), name
    assert {m for spec in reads("03") for m in spec["methods"]} == set(sacam.METHOD_KEYS.values())
