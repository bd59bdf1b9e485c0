"""L-CAM-Fm on cached feature maps (lib.lcam_features): the cache, its resume, the trainer, its stop rule and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib import lcam_features as lf
from lib.cams.activation import forward_activations
from lib.cams.lcam import LCAMAttention
from lib.lcam_features import (
    FeatureCache,
    FeatureTrainConfig,
    build_feature_cache,
    load_feature_cache,
    map_distance,
    train_on_features,
    weight_distance,
)
from lib.train_lcam import AugmentedFolder, LCAMConfig, lcam_step, load_lcam
from test_lcam import _folder, tiny_model


@pytest.fixture()
def folder(tmp_path):
    return _folder(tmp_path / "train", n=7, size=(9, 7))


def test_cache_holds_the_evaluation_view_and_the_seeded_random_views(tmp_path, folder):
    model = tiny_model()
    out = build_feature_cache(model, folder, views=3, seed=5, out=tmp_path / "cache", dtype="float32",
                              block=3, chunk=2, progress=False)
    cache = load_feature_cache(out)
    assert cache.features.shape == (4, 7, 2, 2, 2) and cache.targets.shape == (4, 7) and cache.views == 3
    assert cache.features.dtype == torch.float32
    evaluation = torch.stack([folder[i].image for i in range(7)])
    acts, _, ids = forward_activations(model, evaluation, "predicted", "net.act")
    assert torch.equal(cache.features[0], acts) and torch.equal(cache.targets[0], ids[:, 0])
    augment = AugmentedFolder(folder, 6, 4)
    params = torch.rand(3, 7, 3, generator=torch.Generator().manual_seed(5))
    for v in range(3):
        augment.set_params(params[v])
        views = torch.stack([augment[i] for i in range(7)])
        acts, _, ids = forward_activations(model, views, "predicted", "net.act")
        assert torch.allclose(cache.features[v + 1], acts, atol=1e-6)
        assert torch.equal(cache.targets[v + 1], ids[:, 0])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["views"] == 3 and meta["seed"] == 5 and meta["ids"] == folder.ids
    assert not (tmp_path / "cache.partial").exists()
    # float16 storage: the same maps to float16's precision
    half = load_feature_cache(build_feature_cache(model, folder, 3, 5, tmp_path / "half", progress=False))
    assert half.features.dtype == torch.float16 and torch.equal(half.targets, cache.targets)
    assert torch.allclose(half.features.float(), cache.features, rtol=1e-3, atol=1e-3)


def test_an_interrupted_cache_resumes_to_the_same_arrays(tmp_path, folder, monkeypatch):
    model = tiny_model()
    straight = load_feature_cache(build_feature_cache(model, folder, 2, 1, tmp_path / "a", block=2, progress=False))
    calls = {"n": 0}
    real = lf.forward_activations

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(lf, "forward_activations", failing)
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(model, folder, 2, 1, tmp_path / "b", block=2, chunk=100, progress=False)
    progress = json.loads((tmp_path / "b.partial" / "progress.json").read_text())
    assert progress["done"] == 4 and not (tmp_path / "b").exists()
    monkeypatch.setattr(lf, "forward_activations", real)
    resumed = load_feature_cache(build_feature_cache(model, folder, 2, 1, tmp_path / "b", block=2, progress=False))
    assert torch.equal(resumed.features, straight.features) and torch.equal(resumed.targets, straight.targets)
    # a complete cache of the same configuration is reused; another configuration is refused
    assert build_feature_cache(model, folder, 2, 1, tmp_path / "b", progress=False) == tmp_path / "b"
    with pytest.raises(FileExistsError, match="another configuration"):
        build_feature_cache(model, folder, 3, 1, tmp_path / "b", progress=False)


def test_cache_errors_name_the_fix(tmp_path, folder):
    with pytest.raises(ValueError, match="views must be >= 1"):
        build_feature_cache(tiny_model(), folder, 0, 0, tmp_path / "c")
    with pytest.raises(ValueError, match="Unknown dtype"):
        build_feature_cache(tiny_model(), folder, 1, 0, tmp_path / "c", dtype="int8")
    with pytest.raises(FileNotFoundError, match="python -m lib.lcam_features cache"):
        load_feature_cache(tmp_path / "missing")


def _cache(tmp_path, folder, views=3):
    return load_feature_cache(build_feature_cache(tiny_model(), folder, views, 0, tmp_path / "cache",
                                                  dtype="float32", progress=False))


def test_the_cached_step_is_l_cam_fm_on_the_images(tmp_path, folder):
    """The loss of a batch of cached features equals lcam_step's L-CAM-Fm loss on the same images."""
    model = tiny_model()
    images = torch.stack([folder[i].image for i in range(7)])
    attention = LCAMAttention.from_classifier(model, "net.act")
    for ce_only in (False, True):
        expected = lcam_step(model, attention, images, LCAMConfig(model="tiny", variant="fm", ce_only=ce_only))
        cache = _cache(tmp_path, folder)
        config = FeatureTrainConfig(model="tiny", ce_only=ce_only)
        terms = lf._batch_terms(attention, model.net.fc, cache.features[0], cache.targets[0], config)
        for key in ("loss", "ce", "area", "tv", "keep"):
            assert torch.allclose(terms[key], expected[key], atol=1e-6), key


def test_training_moves_the_attention_keeps_the_best_epoch_and_records_the_curves(tmp_path, folder):
    model, cache = tiny_model(), _cache(tmp_path, folder)
    config = FeatureTrainConfig(model="tiny", lr=0.5, batch_size=4, max_epochs=6, plateau=1, patience=2)
    attention, history = train_on_features(model, cache, config, tmp_path / "fm.pt", progress=False)
    assert history[0]["epoch"] == 0 and history[0]["weight_distance"] == 0 and history[0]["map_distance"] == 0
    assert all(np.isfinite(row[k]) for row in history[1:] for k in ("loss", "val_loss", "val_tv", "map_distance"))
    assert history[1]["weight_distance"] > 0 and history[1]["images"] == 3 * 7
    best = [row for row in history if row["best"]][-1]  # improved on every earlier epoch by the threshold
    assert best["val_loss"] < history[0]["val_loss"]
    assert all(row["val_loss"] > best["val_loss"] * (1 - lf.PLATEAU_THRESHOLD) for row in history)
    loaded, state = load_lcam(tmp_path / "fm.pt")
    assert state["method"] == "L-CAM-Fm" and state["history"] == history
    start = LCAMAttention.from_classifier(model, "net.act")
    assert weight_distance(loaded, start) == pytest.approx(best["weight_distance"])
    assert map_distance(loaded, start, cache.features[0], cache.targets[0]).mean().item() == pytest.approx(
        best["map_distance"])
    assert not (tmp_path / "fm.pt.partial").exists()


def test_training_stops_after_patience_epochs_without_improvement(tmp_path, folder):
    model, cache = tiny_model(), _cache(tmp_path, folder)
    # a rate so small the validation loss cannot improve by the relative threshold
    config = FeatureTrainConfig(model="tiny", lr=1e-6, batch_size=4, max_epochs=20, plateau=1, patience=3)
    _, history = train_on_features(model, cache, config, progress=False)
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    assert [row["lr"] for row in history[1:]] == pytest.approx([1e-6, 1e-7, 1e-8])  # divided by 10 per epoch


def test_training_is_deterministic_per_seed_and_resumes_to_the_same_weights(tmp_path, folder, monkeypatch):
    model, cache = tiny_model(), _cache(tmp_path, folder)
    config = FeatureTrainConfig(model="tiny", lr=0.3, batch_size=4, max_epochs=4, plateau=2, patience=4, seed=2)
    first, history = train_on_features(model, cache, config, progress=False)
    again, _ = train_on_features(model, cache, config, progress=False)
    other, _ = train_on_features(model, cache, FeatureTrainConfig(**{**config.__dict__, "seed": 3}), progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(first.conv.weight, other.conv.weight)
    real, calls = lf._train_epoch, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(lf, "_train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_on_features(model, cache, config, tmp_path / "r.pt", progress=False)
    assert torch.load(tmp_path / "r.pt.partial", weights_only=False)["epoch"] == 2
    monkeypatch.setattr(lf, "_train_epoch", real)
    resumed, resumed_history = train_on_features(model, cache, config, tmp_path / "r.pt", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), resumed.state_dict().values()))
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in resumed_history] == strip


def test_training_refuses_a_head_it_cannot_compute_and_a_cache_of_another_model(tmp_path, folder):
    cache = _cache(tmp_path, folder)
    with pytest.raises(ValueError, match="GAP \\+ linear head"):
        mlp = tiny_model("mlp")
        train_on_features(mlp, cache, FeatureTrainConfig(model="tiny"), progress=False)
    other = FeatureCache(cache.features, cache.targets, {**cache.meta, "model": "resnet50"})
    with pytest.raises(ValueError, match="must agree"):
        train_on_features(tiny_model(), other, FeatureTrainConfig(model="tiny"), progress=False)
