"""lib.evaluation: shards, the metric suite's rows, computed once, read back, and the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib.analysis.draws import seeded_order
from lib.analysis.map_store import MapStore
from lib.cams import GradCAM
from lib.config import data_dir
from lib.data import ImageFolder
from lib.evaluation import (EvalSpec, ad_ic_frame, SuiteSettings, build_method, dataset_rows, evaluate_shard, head_name, n_shards,
                            parse_part, parse_protocol, part_ids, part_names, read_rows, shard_ids, shard_path,
                            shard_rows, shards_for)
from lib.evaluation import run as run_module
from lib.evaluation.__main__ import main as cli_main
from lib.evaluation.suite import protocol
from lib.metrics import average_drop_increase, deletion_insertion, to_frame

VAL = data_dir() / "imagenet-val-1300"
needs_data = pytest.mark.skipif(not (VAL / "labels.csv").is_file(), reason="the validation sample is not installed")
QUICK = SuiteSettings(soft=(1.0, 0.5), binary=(0.25,), batch_size=8)


# ------------------------------------------------------------------------------------------- shards
def test_shards_partition_the_seeded_order_and_the_first_shards_are_a_notebooks_first_images():
    ids = [f"img{i:03d}" for i in range(23)]
    shards = [shard_ids(ids, k, 5, seed=3) for k in range(n_shards(len(ids), 5))]
    assert [len(s) for s in shards] == [5, 5, 5, 5, 3]
    assert sum(shards, []) == seeded_order(ids, 3)
    first_12 = sum((shard_ids(ids, k, 5, 3) for k in shards_for(12, 5)), [])[:12]
    assert first_12 == seeded_order(ids, 3)[:12]
    assert shards_for(0, 5, total=23) == [0, 1, 2, 3, 4]


def test_shard_errors_name_the_fix():
    with pytest.raises(ValueError, match="shards 0..4"):
        shard_ids([str(i) for i in range(23)], 5, 5, 0)
    with pytest.raises(ValueError, match="shard_size"):
        n_shards(10, 0)
    with pytest.raises(ValueError, match="total"):
        shards_for(0, 5)


def test_a_head_is_the_first_n_images_when_fewer_than_a_shard_are_wanted(tmp_path):
    ids = [f"img{i:03d}" for i in range(23)]
    assert part_names(3, 5, total=23) == ["head-0003"]  # 3 < a shard: one head, not shard 0's 5 images
    assert part_names(5, 5, total=23) == [0] and part_names(12, 5, total=23) == [0, 1, 2]
    assert part_names(0, 5, total=23) == [0, 1, 2, 3, 4] and part_names(3, 5, total=3) == [0]  # all: shards
    assert part_ids(ids, "head-0003", 5, seed=3) == seeded_order(ids, 3)[:3] == shard_ids(ids, 0, 5, 3)[:3]
    assert part_ids(ids, 2, 5, seed=3) == shard_ids(ids, 2, 5, 3)
    assert parse_part("head-0008") == (0, 8) and parse_part("shard-0003") == (3, None) and parse_part(4) == (4, None)
    assert shard_path(tmp_path, "m", "rise", "predicted", "ad_ic", head_name(8)).name == "head-0008.parquet"
    assert shard_path(tmp_path, "m", "rise", "predicted", "ad_ic", 3).name == "shard-0003.parquet"
    with pytest.raises(ValueError, match="shard-NNNN or head-NNNN"):
        parse_part("tail-0003")
    with pytest.raises(ValueError, match="at least one image"):
        head_name(0)


@needs_data
def test_a_notebooks_few_images_of_a_slow_method_are_one_head(lite0, tmp_path):
    """dataset_rows on the first 2 images with shards of 64: computes and writes head-0002, not shard 0 (64 images),
    and reads it back the second time; the command line writes the same head."""
    every = ImageFolder(VAL, lite0.preprocess).ids
    first = ImageFolder(VAL, lite0.preprocess, ids=seeded_order(every, 0)[:2])
    cams = {"Grad-CAM": ("gradcam", GradCAM(lite0))}
    rows = dataset_rows(lite0, "efficientnet_lite0", cams, first, MapStore(None, "m"), eval_dir=tmp_path, shard_size=64,
                        suite=QUICK, batch_size=2, progress=False)
    head = tmp_path / "efficientnet_lite0/gradcam/predicted/ad_ic/head-0002.parquet"
    assert head.is_file() and not head.with_name("shard-0000.parquet").exists()
    assert set(rows.image_id) == set(first.ids) and set(read_rows([head]).image_id) == set(first.ids)
    out = tmp_path / "cli.parquet"
    cli_main(["--model", "efficientnet_lite0", "--method", "gradcam", "--head", "2", "--data-dir", str(VAL.parent),
              "--out", str(out)])
    assert set(read_rows([out]).image_id) == set(first.ids)
    with pytest.raises(SystemExit):
        cli_main(["--model", "efficientnet_lite0", "--method", "gradcam", "--shard", "0", "--out", str(out)])  # no size


def test_protocol_round_trip_and_spec_errors():
    text = protocol(mask="soft", fraction=0.5, convention="image")
    assert parse_protocol(text) == {"mask": "soft", "fraction": "0.5", "convention": "image"}
    assert parse_protocol("") == {}
    with pytest.raises(ValueError, match="one of predicted, label"):
        EvalSpec("m", "gradcam", target="top3")
    with pytest.raises(ValueError, match="metric group"):
        EvalSpec("m", "gradcam", group="speed")


# ------------------------------------------------------------------------------------------ the rows
@pytest.fixture(scope="module")
def shard(lite0):
    if not (VAL / "labels.csv").is_file():
        pytest.skip("the validation sample is not installed")
    ids = shard_ids(ImageFolder(VAL, lite0.preprocess).ids, 0, 3, seed=0)
    return ImageFolder(VAL, lite0.preprocess, ids=ids)


@needs_data
def test_ad_ic_rows_equal_the_metric_called_directly(lite0, shard, tmp_path):
    store = MapStore(tmp_path, "lite0")
    rows = evaluate_shard(lite0, EvalSpec("efficientnet_lite0", "gradcam"), shard, store, QUICK, batch_size=2,
                          progress=False)
    assert list(rows.columns)[:8] == ["image_id", "model", "method", "target_rule", "target", "metric", "protocol", "value"]
    images = torch.stack([shard[k].image for k in range(len(shard))])
    targets = lite0(images).argmax(1)
    assert rows.drop_duplicates("image_id").target.tolist() == targets.tolist()
    maps = store.maps(GradCAM(lite0), images, shard.ids, targets)  # stored by the evaluation: read back
    normalized = evaluate_shard(lite0, EvalSpec("efficientnet_lite0", "gradcam", group="ad_ic_normalized"), shard,
                                store, QUICK, batch_size=2, progress=False)
    for convention, got in (("image", rows), ("normalized", normalized)):
        direct = average_drop_increase(lite0, images, maps, targets, fractions=(0.5,), convention=convention)
        got = got[(got.metric == "drop") & (got.protocol == f"mask=soft,fraction=0.5,convention={convention}")]
        assert got.image_id.tolist() == shard.ids
        torch.testing.assert_close(torch.tensor(got.value.tolist(), dtype=torch.float64), direct["drop"][0.5].double(),
                                   rtol=1e-5, atol=1e-5)
    # 3 images x (1 original + 3 masks x 3 metrics), one convention per group
    assert len(rows) == len(normalized) == 3 * (1 + 3 * 3) and rows.value.notna().all()
    # the wide frame of notebooks 01-02 is lib.metrics.to_frame's
    wide = ad_ic_frame(rows.assign(method="Grad-CAM"))
    soft = average_drop_increase(lite0, images, maps, targets, fractions=QUICK.soft)
    expected = to_frame(soft, shard.ids, "Grad-CAM")
    got = wide[~wide.binary].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.sort_values(["image_id", "fraction"]).reset_index(drop=True),
                                  expected.sort_values(["image_id", "fraction"]).reset_index(drop=True),
                                  check_exact=False, rtol=1e-5, atol=1e-5)


@needs_data
def test_causal_localisation_density_rows(lite0, shard, tmp_path):
    store = MapStore(tmp_path, "lite0")
    spec = EvalSpec("efficientnet_lite0", "gradcam", target="label", group="causal")
    causal = evaluate_shard(lite0, spec, shard, store, QUICK, batch_size=8, progress=False)
    assert sorted(causal.metric.unique()) == ["deletion", "insertion"] and len(causal) == 3 * 2
    substrate = {m: {parse_protocol(p)["substrate"] for p in causal.protocol[causal.metric == m]} for m in causal.metric}
    assert substrate == {"deletion": {"zero"}, "insertion": {"blur"}}  # the papers' protocol (UCAG, SA-CAM)
    swapped = evaluate_shard(lite0, EvalSpec("efficientnet_lite0", "gradcam", "label", "causal_swapped"), shard, store,
                             QUICK, batch_size=8, progress=False)
    assert {(m, parse_protocol(p)["substrate"]) for m, p in zip(swapped.metric, swapped.protocol)} == {
        ("deletion", "blur"), ("insertion", "zero")} and len(swapped) == 3 * 2
    assert causal.target.tolist()[:3] == [shard[k].label for k in range(3)]
    images = torch.stack([shard[k].image for k in range(3)])
    maps = torch.stack([store.cache.load(store.key(GradCAM(lite0), i, t))
                        for i, t in zip(shard.ids, causal.target.tolist()[:3])])
    ins = deletion_insertion(lite0, images, maps, torch.tensor(causal.target.tolist()[:3]), mode="insertion",
                             pixels_per_step=1792, substrate="blur")["auc"]
    got = causal[(causal.metric == "insertion") & causal.protocol.str.contains("blur")].value
    torch.testing.assert_close(torch.tensor(got.tolist(), dtype=torch.float64), 100 * ins.double(), rtol=1e-5, atol=1e-4)
    loc = evaluate_shard(lite0, EvalSpec("efficientnet_lite0", "gradcam", "label", "localisation"), shard, store,
                         QUICK, progress=False)
    assert set(loc.metric) == {"pointing", "energy_pointing", "box_share"}
    assert set(loc.value[loc.metric == "pointing"]) <= {0.0, 100.0}
    dens = evaluate_shard(lite0, EvalSpec("efficientnet_lite0", "gradcam", "label", "density"), shard, store,
                          QUICK, progress=False)
    assert sorted(dens.metric.unique()) == ["rho+", "rho-"] and (dens.value >= 0).all()


@needs_data
def test_a_shard_is_computed_once_and_recomputed_when_the_settings_change(lite0, shard, tmp_path, monkeypatch):
    spec = EvalSpec("efficientnet_lite0", "gradcam", group="density")
    store = MapStore(tmp_path / "maps", "lite0")
    first = shard_rows(tmp_path / "rows", lite0, spec, 0, shard, store, QUICK, progress=False)
    assert spec.path(tmp_path / "rows", 0).is_file()

    def fail(*args, **kwargs):
        raise AssertionError("recomputed a stored shard")

    monkeypatch.setattr(run_module, "evaluate_shard", fail)
    again = shard_rows(tmp_path / "rows", lite0, spec, 0, shard, store, QUICK, progress=False)
    pd.testing.assert_frame_equal(first, again)
    other = EvalSpec("efficientnet_lite0", "gradcam", group="density", settings={"precision": "bf16"})
    with pytest.raises(AssertionError, match="recomputed"):  # same file, other settings: recomputed
        shard_rows(tmp_path / "rows", lite0, other, 0, shard, store, QUICK, progress=False)
    assert len(read_rows([spec.path(tmp_path / "rows", 0)])) == len(first)
    with pytest.raises(FileNotFoundError, match="evaluate rule"):
        read_rows([tmp_path / "nothing.parquet"])


@needs_data
def test_smoothgrad_maps_are_a_function_of_the_image(lite0, shard, tmp_path):
    """The same noise for every image: an image's map (and its rows) is the same in a shard of 3 and alone."""
    spec = EvalSpec("efficientnet_lite0", "smoothgradcam++", group="density", settings={"n_samples": 2})
    together = evaluate_shard(lite0, spec, shard, MapStore(None, "m"), QUICK, batch_size=3, progress=False)
    alone = evaluate_shard(lite0, spec, ImageFolder(VAL, lite0.preprocess, ids=shard.ids[1:2]), MapStore(None, "m"),
                           QUICK, batch_size=3, progress=False)
    pd.testing.assert_frame_equal(together[together.image_id == shard.ids[1]].reset_index(drop=True), alone)


@needs_data
def test_command_line_writes_the_shard(tmp_path, capsys):
    out = tmp_path / "rows.parquet"
    cli_main(["--model", "efficientnet_lite0", "--method", "gradcam", "--group", "localisation", "--target", "label",
              "--shard", "1", "--shard-size", "2", "--data-dir", str(VAL.parent), "--out", str(out)])
    rows = read_rows([out])
    assert set(rows.image_id) <= set(shard_ids(ImageFolder(VAL, lambda x: x).ids, 1, 2, 0))
    assert "2 checksums verified" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not JSON"):
        cli_main(["--model", "efficientnet_lite0", "--method", "gradcam", "--shard", "0", "--shard-size", "2",
                  "--settings", "{n", "--out", str(out)])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@needs_data
def test_rows_on_cuda_equal_the_cpu_rows(shard, tmp_path):
    """The same shard on the GPU: the same targets, AD/IC and densities within float tolerance."""
    from lib.models import load_model

    rows = {}
    for device in ("cpu", "cuda"):
        model = load_model("efficientnet_lite0", device=device)
        for group in ("ad_ic", "density"):
            rows[device, group] = evaluate_shard(model, EvalSpec("efficientnet_lite0", "gradcam", group=group), shard,
                                                 MapStore(None, "m"), QUICK, progress=False)
    for group in ("ad_ic", "density"):
        cpu, gpu = rows["cpu", group], rows["cuda", group]
        assert cpu.target.tolist() == gpu.target.tolist()
        keep = cpu.metric != "increase"  # a 0/100 flag may flip where O and Y are within rounding
        np.testing.assert_allclose(gpu.value[keep], cpu.value[keep], rtol=1e-3, atol=0.05)


# ------------------------------------------------------------------------------------- method keys
def test_alias_and_lcam_keys_build_the_methods_they_name(lite0, tmp_path):
    from lib.analysis.map_store import describe
    from lib.cams import GradCAMPlusPlus
    from lib.cams.lcam import LCAM, LCAMAttention
    from lib.evaluation import build_method

    alias = build_method("my-gradcam-pp", lite0, {"method": "gradcam++"})  # an alias names its base method
    assert type(alias) is GradCAMPlusPlus and describe(alias) == describe(GradCAMPlusPlus(lite0))
    start = build_method("lcam-start", lite0, {"method": "lcam"})  # no checkpoint: the CAM start
    assert type(start) is LCAM and describe(start) == describe(LCAM(lite0, LCAMAttention.from_classifier(lite0)))
    trained = LCAMAttention.from_classifier(lite0)
    with torch.no_grad():
        trained.conv.weight.add_(0.01)
    path = tmp_path / "lcam.pt"
    torch.save({"state_dict": trained.state_dict(), "channels": trained.channels,
                "num_classes": trained.num_classes}, path)
    loaded = build_method("lcam-fm", lite0, {"method": "lcam", "checkpoint": str(path)})
    assert describe(loaded) == describe(LCAM(lite0, trained)) != describe(start)  # the same map store key
    images = torch.rand(2, 3, 224, 224)
    assert torch.allclose(loaded(images, "predicted"), LCAM(lite0, trained)(images, "predicted"))
    with pytest.raises(ValueError, match="Unknown CAM method 'nocam'"):
        build_method("x", lite0, {"method": "nocam"})


@needs_data
def test_causal_curves_rows_hold_the_causal_aucs_and_every_point(lite0, shard, tmp_path):
    """causal_curves (notebook 03's Fig. 9): the causal group's AUCs, and each curve's points in %."""
    store = MapStore(tmp_path, "lite0")
    spec = lambda group: EvalSpec("efficientnet_lite0", "gradcam", "label", group)  # noqa: E731
    causal = evaluate_shard(lite0, spec("causal"), shard, store, QUICK, batch_size=8, progress=False)
    curves = evaluate_shard(lite0, spec("causal_curves"), shard, store, QUICK, batch_size=8, progress=False)
    aucs = curves[curves.metric.isin(["deletion", "insertion"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(aucs, causal)
    points = curves[curves.metric == "insertion_curve"]
    steps = {int(parse_protocol(p)["points"]) for p in points.protocol}
    assert steps == {29} and len(points) == 3 * 29  # 224 * 224 / 1792 = 28 steps, both ends
    images = torch.stack([shard[k].image for k in range(3)])
    maps = torch.stack([store.cache.load(store.key(GradCAM(lite0), i, t)) for i, t in zip(shard.ids, causal.target[:3])])
    ins = deletion_insertion(lite0, images, maps, torch.tensor(causal.target.tolist()[:3]), mode="insertion")["curves"]
    first = points[points.image_id == shard.ids[0]].value.to_numpy()
    assert first == pytest.approx(100 * ins[0].double().numpy(), rel=1e-5, abs=1e-4)


@needs_data
def test_build_method_resolves_layer_aliases_and_sacams_selection(lite0, tmp_path):
    """`target_layer: last-block` is Lite's last MBConv block; SA-CAM's `selection` file gives its parameters."""
    grid = pd.DataFrame([{"threshold": t, "lambda1": l1, "lambda2": 0.0, "image_id": "x", "overall": o}
                         for t, l1, o in (("none", 0.0, 0.1), (0.5, 3.0, 0.4))])
    grid.to_csv(tmp_path / "grid.csv", index=False)
    cam = build_method("sacam-selected", lite0, {"method": "sacam", "target_layer": "last-block",
                                                 "selection": str(tmp_path / "grid.csv")})
    assert cam.target_layer == f"net.blocks.{len(lite0.net.blocks) - 1}"
    assert (cam.threshold, cam.lambda1, cam.lambda2) == (0.5, 3.0, 0.0)
    assert build_method("gradcam", lite0, {"target_layer": "default"}).target_layer == lite0.target_layer
    with pytest.raises(ValueError, match="SA-CAM's"):
        build_method("gradcam", lite0, {"selection": str(tmp_path / "grid.csv")})


@needs_data
def test_companions_maps_are_made_with_the_methods_and_read_by_their_own_jobs(lite0, shard, tmp_path, monkeypatch):
    """The pipeline's UCAG family: the first key's job makes its companions' maps in the same crop passes and stores
    them; a companion's own job then computes no map, and its rows equal those of a job that made its maps alone."""
    settings = {"n": 2, "crop_batch": 8}
    leader = build_method("ucag-gradcam", lite0, settings)
    companion = build_method("ucag-gradcam++", lite0, settings)
    store = MapStore(tmp_path / "maps", "lite0")
    spec = EvalSpec("efficientnet_lite0", "ucag-gradcam", "label", "density", settings)
    evaluate_shard(lite0, spec, shard, store, QUICK, batch_size=2, progress=False, companions=[companion])
    images = torch.stack([shard[k].image for k in range(len(shard))])
    labels = torch.tensor([shard[k].label for k in range(len(shard))])
    keys = [store.key(companion, i, t) for i, t in zip(shard.ids, labels)]
    assert all(k in store.cache for k in keys)

    own = EvalSpec("efficientnet_lite0", "ucag-gradcam++", "label", "density", settings)
    import lib.cams.ucag as ucag_module

    def refuse(*args, **kwargs):
        raise AssertionError("the companion's map was computed again")

    with monkeypatch.context() as patch:
        patch.setattr(ucag_module, "partial_explanations", refuse)
        read = evaluate_shard(lite0, own, shard, store, QUICK, batch_size=2, progress=False, cam=companion)
    alone = evaluate_shard(lite0, own, shard, MapStore(tmp_path / "alone", "lite0"), QUICK, batch_size=2,
                           progress=False)
    pd.testing.assert_frame_equal(read, alone)
    torch.testing.assert_close(store.maps(companion, images, list(shard.ids), labels), companion(images, labels),
                               rtol=0, atol=0)


def test_command_line_checks_its_companions(tmp_path):
    base = ["--model", "efficientnet_lite0", "--method", "ucag-gradcam", "--head", "1", "--out", str(tmp_path / "r.pq")]
    with pytest.raises(SystemExit, match="not a JSON object"):
        cli_main([*base, "--companions", "[1]", "--map-store", str(tmp_path)])
    with pytest.raises(SystemExit, match="--map-store is empty"):
        cli_main([*base, "--companions", '{"ucag-gradcam++": {}}'])


@needs_data
def test_the_lcam_group_is_ad_ic_on_table_1_masks_only(lite0, shard, tmp_path):
    """``ad_ic_lcam``: the rows of ``ad_ic`` at L-CAM's soft 100 / 50 / 15 % and nothing else, the same values."""
    from lib.evaluation import SuiteSettings
    from lib.evaluation.suite import LCAM_FRACTIONS

    settings = SuiteSettings(batch_size=2)
    store = MapStore(tmp_path, "lite0")
    full = evaluate_shard(lite0, EvalSpec("efficientnet_lite0", "gradcam"), shard, store, settings, batch_size=2,
                          progress=False)
    lcam = evaluate_shard(lite0, EvalSpec("efficientnet_lite0", "gradcam", group="ad_ic_lcam"), shard, store,
                          settings, batch_size=2, progress=False)
    wanted = {"protocol=convention=image"} | {f"mask=soft,fraction={f},convention=image" for f in LCAM_FRACTIONS}
    assert set(lcam.protocol) == {p.removeprefix("protocol=") for p in wanted}
    key = ["image_id", "metric", "protocol"]
    merged = lcam.merge(full, on=key, suffixes=("", "_full"))
    assert len(merged) == len(lcam) == 3 * (1 + 3 * 3)
    assert (merged.value == merged.value_full).all()
