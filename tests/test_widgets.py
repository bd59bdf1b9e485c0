"""The CAM explorer (lib.widgets), driven headlessly: set widget values, wait, check what it produced.

Every expected value is computed here, directly from lib (the model, lib.cams, lib.metrics), and
compared with what the explorer shows; nothing is hard-coded. Lite0 on the CPU, Grad-CAM-like
methods only, plus one RISE run with 64 masks for the progress and cancellation paths.
"""

from __future__ import annotations

import datetime
import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("ipywidgets")

from lib.cams import get_method  # noqa: E402
from lib.metrics import average_drop_increase  # noqa: E402
from lib.models import WeightsMissingError  # noqa: E402
from lib.widgets import Explorer, Selection, candidate_layers, search_classes, threshold_maps  # noqa: E402
from lib.widgets import view  # noqa: E402

METHODS = ("gradcam", "layercam")


def _upload(name: str, content: bytes) -> tuple[dict, ...]:
    """A FileUpload value as the browser sends it (ipywidgets 8)."""
    return ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
             "last_modified": datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)},)


@pytest.fixture(scope="module")
def explorer(lite0):
    ex = Explorer(image="chelsea", methods=METHODS, models={"efficientnet_lite0": lite0})
    ex.wait(timeout=120)
    yield ex
    ex.close()


@pytest.fixture
def chelsea(photos):
    return photos[1]  # the packaged photo "chelsea", through the same preprocessing


def test_search_classes_finds_tabby(lite0):
    names = lite0.categories
    assert search_classes("tabby", names)[0] == (names.index("tabby"), "tabby")
    assert search_classes("TABBY", names)[0][1] == "tabby"  # case-insensitive
    tigers = [n for _, n in search_classes("tiger", names)]
    assert tigers and all("tiger" in n.lower() for n in tigers) and "tiger cat" in tigers
    assert tigers.index("tiger") < tigers.index("tiger cat") or tigers[0].lower().startswith("tiger")
    assert search_classes("281", names) == [(281, names[281])]
    assert "tabby" in [n for _, n in search_classes("tabyy", names)]  # close spelling
    assert search_classes("qqqqzzzz", names) == []


def test_candidate_layers(lite0):
    layers = candidate_layers(lite0)
    assert lite0.target_layer in layers and "net.blocks.15" in layers
    shapes = {}
    handles = [lite0.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape))) for n in layers]
    with torch.no_grad():
        lite0(torch.zeros(1, 3, 224, 224))
    for h in handles:
        h.remove()
    assert all(len(s) == 4 and s[-1] * s[-2] > 1 for s in shapes.values())
    assert all(not m._forward_hooks for m in lite0.modules())  # candidate_layers removed its hooks


def test_selection_validation():
    base = dict(image="photo:chelsea", model="efficientnet_lite0", methods=("gradcam",))
    with pytest.raises(ValueError, match="Fix"):
        Selection(**{**base, "methods": ()})
    with pytest.raises(ValueError, match="threshold"):
        Selection(**base, threshold=1.0)
    with pytest.raises(ValueError, match="class"):
        Selection(**base, target_mode="class")
    assert Selection(**base, target_mode="top-k", k=4).targets == "top4"


def test_default_view_matches_direct_calls(explorer, lite0, chelsea):
    result = explorer.wait()
    assert explorer.error is None, explorer.error
    with torch.no_grad():
        probs = torch.softmax(lite0(chelsea[None]), 1)[0]
    torch.testing.assert_close(result.probabilities, probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(result.image, chelsea)
    assert result.target_ids.tolist() == [int(probs.argmax())]
    assert set(result.maps) == set(METHODS)
    for name, maps in result.maps.items():
        assert maps.shape == (1, 224, 224)
        assert float(maps.min()) >= 0 and 0.5 < float(maps.max()) <= 1  # min-max at the layer, then upsampled
        direct = get_method(name, lite0)(chelsea[None], result.target_ids[None])[0]
        torch.testing.assert_close(maps, direct, atol=1e-5, rtol=1e-4)
    # what the UI shows: the probabilities table names the top classes with their probability
    top = result.top(3)
    torch.testing.assert_close(torch.tensor(top["probability"].tolist()), probs.topk(3).values)
    table = explorer.controls.probabilities.value
    assert all(name in table for name in top["class"])
    assert explorer.controls.maps.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.predicted_name in explorer.controls.status.value


def test_topk_threshold_and_ad_ic(explorer, lite0, chelsea):
    c = explorer.controls
    c.methods.value = ("gradcam", "fmgcam")
    c.target_mode.value = "top-k"
    c.k.value = 2
    c.threshold.value = 0.4
    result = explorer.wait()
    assert explorer.error is None, explorer.error
    with torch.no_grad():
        top2 = lite0(chelsea[None]).topk(2).indices[0]
    assert result.target_ids.tolist() == top2.tolist()
    assert {m: tuple(v.shape) for m, v in result.maps.items()} == {"gradcam": (2, 224, 224), "fmgcam": (2, 224, 224)}
    thresholded = result.thresholded["gradcam"]
    raw = result.maps["gradcam"]
    assert bool((thresholded[raw < 0.4] == 0).all()) and torch.equal(thresholded[raw >= 0.4], raw[raw >= 0.4])
    assert len(result.metrics) == 4
    for row in result.metrics.itertuples(index=False):
        current = threshold_maps(result.maps[row.method][row.target - 1], 0.4)
        direct = average_drop_increase(lite0, chelsea[None], current[None], [row.class_id], fractions=(1.0,))
        assert row.AD == pytest.approx(float(direct["drop"][1.0][0]), abs=1e-3)
        assert row.IC == float(direct["increase"][1.0][0])
        assert row.score == pytest.approx(float(direct["score"][1.0][0]), abs=1e-3)
        assert row.kept == pytest.approx(float((current > 0).float().mean()))
    assert "Average Drop" in c.metrics.value and f"{result.metrics.AD.iloc[0]:.1f}" in c.metrics.value
    # k 2 -> 3: Grad-CAM computes only the new class (maps are cached per class), FM-G-CAM all three
    # (its fused maps depend on every class explained)
    targets_before, first_two = explorer.engine.calls["map_targets"], result.maps["gradcam"].clone()
    c.k.value = 3
    three = explorer.wait()
    assert explorer.engine.calls["map_targets"] == targets_before + 1 + 3
    assert torch.equal(three.maps["gradcam"][:2], first_two) and three.maps["fmgcam"].shape[0] == 3
    c.k.value = 2
    assert explorer.wait().computed == []
    # FM-G-CAM's K maps are drawn as one fused overlay with a legend naming the classes
    fig = view.maps_figure(result)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 1
    assert [t.get_text().split(" (")[0] for t in legends[0].get_texts()] == [lite0.categories[i] for i in top2]


def test_cache_hit_makes_no_new_computation(explorer):
    c = explorer.controls
    c.methods.value = METHODS
    c.target_mode.value = "predicted"
    c.threshold.value = 0.0
    explorer.wait()
    calls, hits = explorer.engine.calls["maps"], explorer.cache.hits
    c.threshold.value = 0.2
    explorer.wait()
    c.threshold.value = 0.0
    result = explorer.wait()
    assert explorer.engine.calls["maps"] == calls and result.computed == []
    assert explorer.cache.hits > hits
    c.layer.value = "net.blocks.15"  # a new layer: both maps computed once, then cached
    result = explorer.wait()
    assert result.layer == "net.blocks.15" and sorted(result.computed) == sorted(METHODS)
    assert explorer.engine.calls["maps"] == calls + 2
    assert not torch.equal(result.maps["gradcam"], explorer.engine.maps(
        result.selection.with_(layer=None), "gradcam", "net.head_act", result.target_ids)[0])
    c.layer.value = "net.head_act"
    c.layer.value = "net.blocks.15"
    assert explorer.wait().computed == [] and explorer.engine.calls["maps"] == calls + 2
    c.layer.value = "net.head_act"
    explorer.wait()


def test_class_search_targets_that_class(explorer, lite0):
    c = explorer.controls
    c.target_mode.value = "class"
    c.class_search.value = "tabby"
    result = explorer.wait()
    tabby = lite0.categories.index("tabby")
    assert c.class_id.value == tabby and result.target_ids.tolist() == [tabby]
    assert result.metrics["class"].tolist() == ["tabby"] * len(METHODS)
    c.class_search.value = "espresso"
    assert explorer.wait().target_ids.tolist() == [lite0.categories.index("espresso")]
    c.target_mode.value = "predicted"
    explorer.wait()


def test_bad_upload_shows_error_and_good_upload_works(explorer):
    c = explorer.controls
    before = explorer.result
    c.upload.value = _upload("bad.png", b"this is not an image")
    explorer.wait()
    assert explorer.error is not None and "bad.png" in explorer.error and "Fix" in explorer.error
    assert "bad.png" in c.status.value and "could not be read" in c.status.value
    assert explorer.result is before  # nothing recomputed, nothing crashed
    grey = Image.fromarray((np.arange(120 * 90) % 251).astype(np.uint8).reshape(90, 120), mode="L")
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    c.upload.value = _upload("grey.png", buffer.getvalue())
    result = explorer.wait()
    assert explorer.error is None and c.source.value == "upload"
    assert result.selection.image.startswith("upload:") and result.image.shape == (3, 224, 224)
    c.source.value = "photos"
    c.image.value = "photo:chelsea"
    explorer.wait()


def test_no_method_selected_is_an_error_in_the_ui(explorer):
    explorer.controls.methods.value = ()
    assert "at least one method" in explorer.error and "Fix" in explorer.error
    explorer.controls.methods.value = METHODS
    explorer.wait()
    assert explorer.error is None


def test_missing_weights_shown_not_raised(lite0, monkeypatch):
    import lib.widgets.compute as compute

    def missing(name, **kwargs):
        raise WeightsMissingError(f"{name} weights are not cached. Fix: copy them to the torch hub cache.")

    monkeypatch.setattr(compute, "load_model", missing)
    ex = Explorer(models={"efficientnet_lite0": lite0, "resnet50": None}, methods=("gradcam",), background=False)
    assert ex.result is not None and ex.error is None  # synchronous: computed during construction
    ex.controls.model.value = "resnet50"
    assert "WeightsMissingError" in ex.error and "resnet50" in ex.controls.status.value
    ex.controls.model.value = "efficientnet_lite0"
    assert ex.error is None and ex.result.selection.model == "efficientnet_lite0"
    ex.close()


def test_slow_method_reports_progress_without_blocking_and_is_cancelled(lite0):
    ex = Explorer(models={"efficientnet_lite0": lite0}, methods=("gradcam",),
                  method_options={"rise": {"n_masks": 64, "batch_size": 8}})
    ex.wait()
    seen, messages = [], []
    original = ex._progress
    ex._progress = lambda fraction, message, force=False: (seen.append(fraction), messages.append(message),
                                                           original(fraction, message, force))
    start = time.perf_counter()
    ex.controls.methods.value = ("rise",)
    assert time.perf_counter() - start < 0.5  # the assignment returns at once: the worker computes
    result = ex.wait()
    assert ex.error is None and result.computed == ["rise"] and result.maps["rise"].shape == (1, 224, 224)
    steps = sorted({round(f, 3) for f in seen if 0 < f < 1})
    assert len(steps) >= 4, seen  # RISE's masked passes moved the progress bar, not just start and end
    assert ex.controls.progress.value == 1.0
    # a newer selection stops a running slow method at its next progress step
    ex.engine.method_options["rise"] = {"n_masks": 4000, "batch_size": 8}
    messages.clear()
    ex.controls.methods.value = ("gradcam", "rise")
    deadline = time.monotonic() + 20
    while not any(m.startswith("RISE") for m in messages) and time.monotonic() < deadline:
        time.sleep(0.02)  # until RISE has started
    start = time.perf_counter()
    ex.controls.methods.value = ("gradcam",)
    result = ex.wait(timeout=30)
    assert time.perf_counter() - start < 10  # 4000 masks would take about a minute
    assert result.selection.methods == ("gradcam",) and ex.error is None
    assert ex.engine.calls["maps"] == 3  # gradcam, rise (64), rise (4000, cancelled)
    assert not any(k[0] == "maps" and k[3] == "rise" and "4000" in k[-1] for k in ex.cache._items)
    # the stop button does the same without changing the selection
    messages.clear()
    ex.controls.methods.value = ("rise",)
    while not any(m.startswith("RISE") for m in messages) and time.monotonic() < deadline + 20:
        time.sleep(0.02)
    start = time.perf_counter()
    ex.controls.stop.click()
    ex.wait(timeout=30)
    assert time.perf_counter() - start < 10 and ex.controls.progress_label.value.startswith("stopped")
    assert ex.result.selection.methods == ("gradcam",)  # the last finished result is still shown
    ex.close()


def test_disk_cache_serves_a_new_session(lite0, tmp_path):
    from lib.widgets import Engine, ImageLibrary, ModelStore, ResultCache

    def session():
        return Engine(ImageLibrary(data_dir=tmp_path / "no-data"), ModelStore(preloaded={"efficientnet_lite0": lite0}),
                      ResultCache(disk=tmp_path / "cache"))

    sel = Selection("photo:coffee", "efficientnet_lite0", ("gradcam",), target_mode="top-k", k=2)
    first = session().compute(sel)
    assert first.computed == ["gradcam"] and len(list((tmp_path / "cache").glob("*.pt"))) == 2  # one per class
    again = session()
    second = again.compute(sel)
    assert second.computed == [] and again.calls["maps"] == 0
    torch.testing.assert_close(second.maps["gradcam"], first.maps["gradcam"])
    assert again.images.sample_error is not None and "no-data" in again.images.sample_error  # photos still work


def test_data_sample_source(explorer):
    if explorer.images.sample_error:
        pytest.skip(explorer.images.sample_error)
    c = explorer.controls
    c.source.value = "data sample"
    result = explorer.wait()
    key = result.selection.image
    assert key.startswith("sample:") and explorer.error is None
    assert explorer.images.entries[key].true_class is not None
    c.source.value = "photos"
    explorer.wait()
