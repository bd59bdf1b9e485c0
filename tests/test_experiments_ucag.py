"""Notebook 04's experiment code (lib.experiments.ucag) on a tiny hand-built model and made-up tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lib.analysis.map_store import MapStore
from lib.cams import UCAG, GradCAM, GradCAMPlusPlus, UCAGSettings
from lib.experiments import ucag
from lib.metrics import deletion_insertion
from lib.models import Classifier
from lib.transforms import Preprocess

SETTINGS = UCAGSettings(n=2, rho=0.75, alpha=1.5, crop_batch=8)  # crops of 24 px at 0 and 8: overlaps


def tiny_model() -> Classifier:
    """conv 1x1 (3 -> 4) -> ReLU 'act' -> GAP -> linear to 3 classes, fixed random weights."""
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv", nn.Conv2d(3, 4, 3, padding=1))
    net.add_module("act", nn.ReLU())
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(4, 3))
    pre = Preprocess(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return Classifier("tiny", net, pre, "net.act", ["a", "b", "c"]).eval().requires_grad_(False)


def tiny_images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def boxes_of(n: int, box=(4.0, 4.0, 12.0, 12.0), label: int = 1):
    return [torch.tensor([box])] * n, [torch.tensor([label])] * n


# ---------------------------------------------------------------------------------------------- maps
def test_variant_maps_share_passes_equal_each_method_alone_and_are_stored(tmp_path):
    model, x = tiny_model(), tiny_images()
    targets = torch.tensor([[0], [1], [2]])
    ids = ["a", "b", "c"]
    timer: dict = {}
    fresh = ucag.variant_maps(MapStore(None, model.name), model, x, ids, targets, SETTINGS, batch_size=2, timer=timer)
    assert list(fresh) == ucag.VARIANTS and all(m.shape == (3, 1, 32, 32) for m in fresh.values())
    # the jointly computed maps are what each variant's own CAM object gives (so the store may share them)
    cams = ucag.variant_cams(model, SETTINGS)
    for name in ["Grad-CAM", "UCAG Grad-CAM++", ucag.RELEASED, ucag.SCALING]:
        torch.testing.assert_close(fresh[name], cams[name](x, targets), rtol=1e-4, atol=1e-4)  # other batches
    assert not torch.allclose(fresh["UCAG Grad-CAM"], fresh[ucag.RELEASED])  # count + 1 differs from the average
    assert timer[("tiny", "UCAG (3 methods + count + 1)")][1] == 3
    store = MapStore(tmp_path, model.name)
    stored = ucag.variant_maps(store, model, x, ids, targets, SETTINGS, batch_size=2)
    assert len(list(tmp_path.glob("*.pt"))) == 3 * len(ucag.VARIANTS)
    again_timer: dict = {}
    again = ucag.variant_maps(store, model, x, ids, targets, SETTINGS, batch_size=2, timer=again_timer)
    assert again_timer == {}  # nothing recomputed
    for name in ucag.VARIANTS:
        torch.testing.assert_close(again[name], fresh[name])
        torch.testing.assert_close(stored[name], fresh[name])
    # the store's entries are the ones any notebook gets from the variant's own CAM object (one target each)
    labels = targets[:, 0]
    for name in ["Grad-CAM", "UCAG Grad-CAM"]:
        alone = store.maps(cams[name], x, ids, labels)
        torch.testing.assert_close(alone, fresh[name][:, 0])
    assert len(list(tmp_path.glob("*.pt"))) == 3 * len(ucag.VARIANTS)  # read, not computed again
    both = ucag.variant_maps(store, model, x, ids, torch.tensor([[0, 1]] * 3), SETTINGS, batch_size=2)
    assert both["Grad-CAM"].shape == (3, 2, 32, 32) and len(list(tmp_path.glob("*.pt"))) == 6 * len(ucag.VARIANTS)


def test_map_store_keys_tell_ucag_variants_apart():
    model = tiny_model()
    average, released = UCAG(GradCAM(model), SETTINGS), UCAG(GradCAM(model), SETTINGS, count_init=1.0)
    store = MapStore(None, model.name)
    keys = {store.key(c, "img", 3) for c in (average, released, GradCAM(model), UCAG(GradCAMPlusPlus(model), SETTINGS))}
    assert len(keys) == 4
    other_batch = UCAG(GradCAM(model), SETTINGS, crop_batch=36)  # how crops are batched does not change the map
    assert store.key(other_batch, "img", 3) == store.key(average, "img", 3)


def test_check_sizes_names_the_fix():
    ucag.check_sizes(4, 2, 2, 1, 2, [224, 424])
    with pytest.raises(ValueError, match="n_causal"):
        ucag.check_sizes(4, 5, 0, 1, 1, [224, 424])
    with pytest.raises(ValueError, match="n_qualitative"):
        ucag.check_sizes(4, 2, 0, 1, 5, [224, 424])
    with pytest.raises(ValueError, match="two increasing"):
        ucag.check_sizes(4, 2, 0, 1, 1, [224])


# ------------------------------------------------------------------------------------ per-image tables
def test_causal_table_is_deletion_insertion_times_100():
    model, x = tiny_model(), tiny_images(2)
    y = torch.tensor([0, 2])
    maps = {"A": torch.rand(2, 32, 32), "B": torch.rand(2, 32, 32)}
    table = ucag.causal_table(model, x, y, ["i", "j"], maps, ["A", "B"], batch_size=2)
    assert list(table.columns) == ["model", "variant", "image_id", "deletion", "insertion"]
    assert table["variant"].tolist() == ["A", "A", "B", "B"]
    expected = 100 * deletion_insertion(model, x, maps["B"], y, mode="insertion", batch_size=2)["auc"]
    np.testing.assert_allclose(table[table.variant == "B"]["insertion"], expected.numpy(), rtol=1e-6)


def test_localisation_table_hits_energy_and_composite_targets():
    peak_in, peak_out = torch.zeros(2, 32, 32), torch.zeros(2, 32, 32)
    peak_in[:, 8, 8] = 1.0     # inside the box [4, 12) x [4, 12)
    peak_out[:, 30, 30] = 1.0  # 18 px away from it: a miss at 15 px tolerance
    boxes, labels = boxes_of(2)
    single = ucag.Stacked(torch.zeros(2, 3, 32, 32), torch.tensor([1, 1]), ["p", "q"], boxes, labels,
                          torch.tensor([[1], [1]]))
    both = single._replace(ids=["c", "d"], targets=torch.tensor([[1, 0], [1, 0]]))  # class 0 has no box
    loc = ucag.localisation_table({"val": ({"in": peak_in, "out": peak_out}, single),
                                   "comp": ({"in": peak_in[:, None].repeat(1, 2, 1, 1),
                                             "out": peak_out[:, None].repeat(1, 2, 1, 1)}, both)})
    val = loc[loc.set == "val"].set_index("variant")
    assert val.loc["in", "hit"].tolist() == [100.0, 100.0] and val.loc["out", "hit"].tolist() == [0.0, 0.0]
    assert val.loc["in", "energy"].tolist() == [100.0, 100.0]
    # the uniform map's energy is the box's share of the image (64 of 1024 pixels); 64/1024 < 1/4: difficult
    np.testing.assert_allclose(val.loc[ucag.CENTRE, "energy"], 100 * 64 / 1024, rtol=1e-5)
    assert val["difficult"].all()
    comp = loc[loc.set == "comp"]
    assert set(comp.image_id) == {"c:0", "d:0"}  # the second target (class 0) has no box: its rows are dropped
    assert comp["difficult"].all() and comp["valid"].all()  # every composite target shares its image
    assert len(comp) == 2 * 3  # two images x (centre, in, out)


def test_tied_pixels_by_hand():
    maps = {"m": torch.tensor([[[0.0, 0.5], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]])}
    table = ucag.tied_pixels(maps, ["a", "b"], ["m"])
    assert table["tied pixels (%)"].tolist() == [75.0, 25.0]


def test_upscaling_table_labels_the_smallest_and_largest_side():
    model, x = tiny_model(), tiny_images(2)
    table = ucag.upscaling_table(MapStore(None, model.name), model, x, torch.tensor([0, 1]), ["a", "b"],
                                 [32, 48, 64], batch_size=2)
    assert table.groupby("side")["input"].first().to_dict() == {32: "smallest side", 48: "between",
                                                                64: "largest side"}
    assert table["variant"].unique().tolist() == ["32 px", "48 px", "64 px"] and len(table) == 6


# ----------------------------------------------------------------------------------------- summaries
def per_image(n: int, shift: float = 1.0) -> pd.DataFrame:
    """Table 1's per-image layout: every UCAG variant is its plain method + ``shift`` (+- noise that
    averages to 0) on each image."""
    rng = np.random.default_rng(0)
    base, noise = rng.normal(10, 2, n), rng.normal(0, 0.5, n)
    ucag_values = base + shift + noise - noise.mean()
    rows = [{"model": "m", "variant": v, "image_id": f"i{k}", "deletion": d, "insertion": 2 * d}
            for plain in ucag.METHODS for v, values in ((plain, base), (f"UCAG {plain}", ucag_values))
            for k, d in enumerate(values)]
    return pd.DataFrame(rows)


def test_summary_means_and_paired_differences_as_numbers():
    table = ucag.summary(per_image(12), ["deletion", "insertion"], [("UCAG Grad-CAM", "Grad-CAM")], by=["model"])
    diff = table[table.statistic == "difference"].set_index("metric")
    assert diff.loc["deletion", "mean"] == pytest.approx(1.0) and diff.loc["insertion", "mean"] == pytest.approx(2.0)
    assert diff.loc["deletion", "minus"] == "Grad-CAM" and diff.loc["deletion", "n"] == 12
    means = table[table.statistic == "mean"]
    assert len(means) == 2 * 6 and means["low"].notna().all() and (means["low"] < means["mean"]).all()
    few = ucag.summary(per_image(4), "deletion", [("UCAG Grad-CAM", "Grad-CAM")])
    assert few["low"].isna().all() and few["note"].str.contains("too few").all()  # below MIN_N: no interval


def test_table1_carries_the_papers_values_and_differences():
    table = ucag.table1(per_image(3))
    row = table[(table.statistic == "mean") & (table.variant == "Grad-CAM") & (table.metric == "deletion")]
    assert row["paper ResNet-50"].item() == 11.3 and row["paper DenseNet-121"].item() == 10.6
    diff = table[(table.statistic == "difference") & (table.metric == "insertion") & (table.variant == "UCAG Grad-CAM")]
    assert diff["paper ResNet-50"].item() == pytest.approx(53.4 - 53.9)  # the paper's own, nearly flat, insertion


def test_readable_rows_and_key_numbers():
    table = ucag.table1(per_image(12))
    shown = ucag.readable(table, ["model"])
    assert ("m", "UCAG Grad-CAM − Grad-CAM") in shown.index and "deletion (paper ResNet-50)" in shown.columns
    assert shown.loc[("m", "UCAG Grad-CAM − Grad-CAM"), "deletion"].startswith("+1.0 [")
    few = ucag.readable(ucag.table1(per_image(3)), ["model"])
    assert few.loc[("m", "Grad-CAM"), "deletion"].endswith("(n = 3, no interval)")


def test_fig2_table_compares_largest_with_smallest_side():
    scaling = pd.DataFrame([{"side": s, "variant": f"{s} px", "image_id": f"i{k}", "deletion": s / 100 + k,
                             "insertion": 1.0 + k} for s in (224, 924) for k in range(10)])
    fig2 = ucag.fig2_table(scaling)
    diff = fig2[fig2.statistic == "difference"].set_index("metric")
    assert diff.loc["deletion", "variant"] == "924 px" and diff.loc["deletion", "minus"] == "224 px"
    assert diff.loc["deletion", "mean"] == pytest.approx(7.0)
    assert "all 10 differences" in diff.loc["insertion", "note"]  # no spread: no interval, said why


def test_cost_table_says_when_everything_came_from_the_store():
    assert ucag.cost_table({})["step"].item() == "all maps read from the map store"
    cost = ucag.cost_table({("m", "plain"): [2.0, 4]})
    assert cost["seconds per image"].item() == 0.5


# --------------------------------------------------------------------------- from the evaluation rows
def test_evaluation_rows_give_the_tables_of_the_direct_computation(tmp_path):
    """Tables 1-3 (validation set) and 5 read the per-image evaluation rows (lib.evaluation); their frames equal
    the ones computed directly from the maps, and a target without a box of its class has no pointing row."""
    from lib.data.samples import Sample
    model, x = tiny_model(), tiny_images()
    boxes, box_labels = boxes_of(3)
    samples = [Sample(f"i{k}", x[k], 1 if k < 2 else 2, boxes[k], box_labels[k]) for k in range(3)]
    data = ucag.stack(samples, "cpu")
    store = MapStore(tmp_path, model.name)
    names = ["Grad-CAM", "UCAG Grad-CAM", ucag.SCALING]
    maps = {v: m[:, 0] for v, m in ucag.variant_maps(store, model, data.images, data.ids, data.targets, SETTINGS,
                                                     variants=names).items()}
    assert set(maps) == set(names)
    cams = ucag.variant_cams(model, SETTINGS)
    rows = {g: ucag.variant_rows(model, cams, names, samples, store, g) for g in ("causal", "localisation", "density")}

    direct = ucag.causal_table(model, data.images, data.labels, data.ids, maps, names)
    pd.testing.assert_frame_equal(ucag.causal_from_rows(rows["causal"]), direct, atol=1e-4, rtol=1e-5)

    loc = ucag.localisation_from_rows("val", rows["localisation"], data)
    expected = ucag.localisation_table({"val": (maps, data)})
    assert set(loc.image_id) == {"i0", "i1"}  # i2's class has no box
    pd.testing.assert_frame_equal(loc, expected, atol=1e-4, rtol=1e-5)

    density = ucag.density_from_rows(rows["density"])
    pd.testing.assert_frame_equal(density, ucag.density_table(model, data.images, maps, data.labels, data.ids, names),
                                  atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="lack"):
        ucag.causal_from_rows(rows["density"])


def test_the_pipelines_method_keys_are_the_notebooks_variants():
    """config/config.yaml's settings of each variant's key build the CAM the notebook builds (the same map-store
    key, so its shards' maps and rows are the notebook's), and notebook 04 reads exactly those keys."""
    import yaml
    from lib.config import repo_root
    from lib.evaluation import build_method
    from lib.analysis.map_store import describe
    from lib.outputs import reads
    model = tiny_model()
    methods = yaml.safe_load((repo_root() / "config" / "config.yaml").read_text())["evaluation"]["methods"]
    cams = ucag.variant_cams(model, UCAGSettings(crop_batch=4))  # crop_batch does not change a map
    for variant, key in ucag.VARIANT_KEYS.items():
        assert describe(build_method(key, model, methods[key])) == describe(cams[variant]), variant
    read = {m for spec in reads("04") for m in spec["methods"]}
    assert read == set(ucag.VARIANT_KEYS.values())
