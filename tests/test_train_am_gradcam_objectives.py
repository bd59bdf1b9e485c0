"""AM-Grad-CAM's training objectives (issue 20, item 4) and deterministic training (item 5).

``masked-image`` (the default) must train exactly as before the objective existed; ``feature-ce``
is the classifier's own GAP + linear head on the attention-gated activations; two runs with one
seed give the same bits; :func:`lib.determinism.deterministic` restores what it changes.
"""

from __future__ import annotations

import logging
import os

import pytest
import torch
from torch import nn

import lib.train_am_gradcam as trainer
from lib.cams.attention import ChannelSpatialAttention, gradcam_features
from lib.cams.lcam import scale_output
from lib.determinism import CUBLAS_WORKSPACE, deterministic
from lib.models import Classifier, resolve_layer
from lib.train_am_gradcam import (
    TrainConfig,
    feature_cross_entropy,
    gated_activations,
    load_attention,
    precompute,
    train_attention,
)
from lib.transforms import Preprocess
from test_attention import TinySet
from test_cams import tiny_model


def config(**kw) -> TrainConfig:
    return TrainConfig("tiny", **{"epochs": 2, "batch_size": 4, "lr": 1e-2, "seed": 0, "reduction": 1, **kw})


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def moved_attention(seed: int = 0) -> ChannelSpatialAttention:
    torch.manual_seed(seed)
    return ChannelSpatialAttention(2, reduction=1, zero_init=False)


# --- (a) the default objective is the old one ----------------------------------------------------

def test_default_objective_is_masked_image_bit_for_bit():
    assert TrainConfig("tiny").objective == "masked-image" == trainer.OBJECTIVES[0]
    default, h_default = train_attention(tiny_model(), TinySet(), config(), progress=False)
    explicit, h_explicit = train_attention(tiny_model(), TinySet(), config(objective="masked-image"), progress=False)
    assert states_equal(default, explicit) and h_default == h_explicit
    assert set(h_default[0]) == {"epoch", "loss", "ce", "area", "tv"}
    assert any(p.abs().sum() > 0 for p in default.spatial.conv.parameters())


def test_unknown_objective_is_refused_by_the_config():
    with pytest.raises(ValueError, match="Unknown AM-Grad-CAM training objective 'bogus'. Fix: one of masked-image, "
                                         "feature-ce"):
        TrainConfig("tiny", objective="bogus")


# --- feature-ce: what it computes --------------------------------------------------------------

def test_gates_are_the_attentions_own():
    """attention(F) = (w / max|w A|) * M_s * M_c * A: the gated activations are the attended features unscaled."""
    attention = moved_attention()
    g = torch.Generator().manual_seed(0)
    acts, grads = torch.rand(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    gated, spatial = gated_activations(attention, acts, grads)
    assert gated.shape == acts.shape and spatial.shape == (3, 4, 4)
    raw = grads.mean((-2, -1), keepdim=True) * acts
    scale = raw.abs().amax((-3, -2, -1), keepdim=True)
    expected = attention(gradcam_features(acts, grads))
    torch.testing.assert_close(grads.mean((-2, -1), keepdim=True) / scale * gated * spatial.unsqueeze(1), expected)


def test_feature_ce_is_the_classifiers_head_on_the_gated_activations():
    """The closed form equals the classifier run with the target layer's output replaced by M_s * M_c * A."""
    model, attention = tiny_model(), moved_attention()
    _, acts, grads, preds = precompute(model, TinySet(5), batch_size=5)
    acts, grads = acts.float(), grads.float()
    gated, spatial = gated_activations(attention, acts, grads)
    channel = attention.channel(gradcam_features(acts, grads))  # M_c [N, C, 1, 1]
    torch.testing.assert_close(gated, channel * acts)
    with scale_output(resolve_layer(model, None), channel * spatial.unsqueeze(1)):
        logits = model(TinySet(5).images)  # the activations were stored as float16: close, not equal
    fc = model.net.fc
    pooled = (gated * spatial.unsqueeze(1)).mean((-2, -1))
    torch.testing.assert_close(logits, fc(pooled), atol=2e-3, rtol=2e-3)
    expected = torch.nn.functional.cross_entropy(fc(pooled), preds)
    torch.testing.assert_close(feature_cross_entropy(attention, acts, grads, preds, fc), expected)
    # at the zero initialisation both gates are 1/2: the head sees A / 4
    start = ChannelSpatialAttention(2, reduction=1)
    quarter = torch.nn.functional.cross_entropy(fc(acts.mean((-2, -1)) / 4), preds)
    torch.testing.assert_close(feature_cross_entropy(start, acts, grads, preds, fc), quarter)


def test_feature_ce_moves_the_weights_and_lowers_its_loss():
    model, data = tiny_model(), TinySet()
    cfg = config(objective="feature-ce", epochs=15)
    attention, history = train_attention(model, data, cfg, progress=False)
    assert [h["epoch"] for h in history] == list(range(1, 16))
    assert set(history[0]) == {"epoch", "loss", "ce"} and all(h["loss"] == h["ce"] for h in history)
    assert any(p.abs().sum() > 0 for p in attention.spatial.conv.parameters())
    assert any(p.abs().sum() > 0 for p in attention.channel.mlp[2].parameters())
    assert history[-1]["ce"] < history[0]["ce"]
    _, acts, grads, preds = precompute(model, data)
    with torch.no_grad():
        before = feature_cross_entropy(ChannelSpatialAttention(2, reduction=1), acts.float(), grads.float(), preds,
                                       model.net.fc)
        after = feature_cross_entropy(attention, acts.float(), grads.float(), preds, model.net.fc)
    assert float(after) < float(before) - 1e-3


def test_feature_ce_refuses_a_head_that_is_not_gap_linear():
    net = nn.Sequential()
    net.add_module("conv", nn.Conv2d(3, 2, 1))
    net.add_module("act", nn.ReLU())
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("hidden", nn.Linear(2, 2))
    net.add_module("fc", nn.Linear(2, 3))
    torch.manual_seed(0)
    model = Classifier("deep", net, Preprocess(4, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "net.act", ["a", "b", "c"])
    model = model.eval().requires_grad_(False)
    with pytest.raises(ValueError, match="objective 'feature-ce'.*Fix: train with --objective masked-image"):
        train_attention(model, TinySet(), config(objective="feature-ce"), progress=False)
    train_attention(model, TinySet(), config(epochs=1), progress=False)  # masked-image works on any head


# --- (c) determinism -----------------------------------------------------------------------------

@pytest.mark.parametrize("objective", trainer.OBJECTIVES)
def test_same_seed_same_bits_other_seed_other_weights(objective):
    first, h_first = train_attention(tiny_model(), TinySet(), config(objective=objective), progress=False)
    second, h_second = train_attention(tiny_model(), TinySet(), config(objective=objective), progress=False)
    assert states_equal(first, second) and h_first == h_second
    other, _ = train_attention(tiny_model(), TinySet(), config(objective=objective, seed=1), progress=False)
    assert not states_equal(first, other)


def test_training_runs_deterministic_and_restores_the_setting(monkeypatch):
    seen = []
    original = trainer.precompute

    def spy(*args, **kwargs):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "precompute", spy)
    before = torch.are_deterministic_algorithms_enabled()
    train_attention(tiny_model(), TinySet(), config(epochs=1, objective="feature-ce"), progress=False)
    assert seen == [True] and torch.are_deterministic_algorithms_enabled() == before


# --- (d) deterministic() -------------------------------------------------------------------------

def _settings():
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"))


@pytest.fixture
def restore_settings():
    saved = _settings()
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


@pytest.mark.parametrize("previous", [(False, False, True, False), (True, True, False, True)])
def test_deterministic_sets_and_restores_everything(previous, monkeypatch, restore_settings):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[2], previous[3]
    with deterministic(cublas=True):
        assert _settings() == (True, False, False, True, CUBLAS_WORKSPACE)
        with deterministic(warn_only=True, cublas=True):  # nested: restores the outer context's settings
            assert _settings() == (True, True, False, True, CUBLAS_WORKSPACE)
        assert _settings() == (True, False, False, True, CUBLAS_WORKSPACE)
    assert _settings() == (*previous, None)
    with pytest.raises(RuntimeError, match="boom"), deterministic(cublas=True):
        raise RuntimeError("boom")
    assert _settings() == (*previous, None)


def test_deterministic_keeps_a_users_cublas_setting(monkeypatch, restore_settings):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with deterministic(cublas=True):
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    with deterministic(cublas=False):
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


# --- checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_holds_the_objective_and_old_ones_load_as_masked_image(tmp_path):
    out = tmp_path / "att.pt"
    trained, _ = train_attention(tiny_model(), TinySet(), config(objective="feature-ce", epochs=1), out=out,
                                 progress=False)
    state = torch.load(out, weights_only=False)
    assert state["config"]["objective"] == "feature-ce" and state["threads"] == torch.get_num_threads()
    assert load_attention(out)[1]["config"]["objective"] == "feature-ce"
    del state["config"]["objective"]  # as written before the field existed
    old = tmp_path / "old.pt"
    torch.save(state, old)
    loaded, old_state = load_attention(old)
    assert old_state["config"]["objective"] == "masked-image"
    assert states_equal(loaded, trained)


def test_an_old_partial_checkpoint_resumes_as_masked_image(tmp_path, caplog):
    model, data = tiny_model(), TinySet()
    full, history = train_attention(model, data, config(), progress=False)
    one, _ = train_attention(model, data, config(epochs=1), out=tmp_path / "one.pt", progress=False)
    state = torch.load(tmp_path / "one.pt", weights_only=False)
    state["config"] = {k: v for k, v in state["config"].items() if k != "objective"}
    state["config"]["epochs"] = 2
    torch.save(state, tmp_path / "att.pt.partial")
    with caplog.at_level(logging.INFO, logger="lib.train_am_gradcam"):
        resumed, resumed_history = train_attention(model, data, config(), out=tmp_path / "att.pt", progress=False)
    assert "Resuming AM-Grad-CAM training" in caplog.text
    assert states_equal(resumed, full) and resumed_history == history


# --- (e) command line ----------------------------------------------------------------------------

def test_cli_rejects_an_unknown_objective(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        trainer.main(["--objective", "bogus", "--out", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--objective: invalid choice: 'bogus'" in err and "masked-image" in err and "feature-ce" in err
    assert not (tmp_path / "x.pt").exists()


def test_cli_rejects_fewer_than_one_thread(tmp_path):
    with pytest.raises(SystemExit, match="--threads 0 is below 1. Fix"):
        trainer.main(["--threads", "0", "--out", str(tmp_path / "x.pt")])


# --- the Grad-CAM pass shared by the trainings (rule am_features) ------------------------------------

@pytest.mark.parametrize("objective", trainer.OBJECTIVES)
def test_a_cached_pass_trains_the_weights_of_a_computed_one(tmp_path, monkeypatch, objective):
    cache = tmp_path / "features.pt"
    computed, history = train_attention(tiny_model(), TinySet(), config(objective=objective), progress=False)
    written = trainer.precompute(tiny_model(), TinySet(), 4, cache=cache)
    assert cache.exists()
    monkeypatch.setattr(trainer, "_precompute", lambda *a, **k: pytest.fail("the cache was not read"))
    read = trainer.precompute(tiny_model(), TinySet(), 4, cache=cache)
    assert all(torch.equal(a, b) for a, b in zip(written, read))
    cached, cached_history = train_attention(tiny_model(), TinySet(), config(objective=objective), progress=False,
                                             features_cache=cache)
    assert states_equal(computed, cached) and history == cached_history


def test_a_cache_of_other_images_is_recomputed_and_left_alone(tmp_path):
    cache = tmp_path / "features.pt"
    trainer.precompute(tiny_model(), TinySet(), 4, cache=cache)
    before = cache.stat().st_mtime_ns
    other = trainer.precompute(tiny_model(), TinySet(), 2, cache=cache)  # another batch size: other rounding
    assert len(other[0]) == len(TinySet()) and cache.stat().st_mtime_ns == before


def test_precompute_only_needs_the_cache_path():
    with pytest.raises(SystemExit, match="--features-cache"):
        trainer.main(["--model", "efficientnet_lite0", "--precompute-only", "--train-dir", "nowhere", "--device", "cpu"])
