"""AM-Grad-CAM: attention equations, training objective, atomic checkpoints and resume; disk cache."""

from __future__ import annotations

import pytest
import torch

import lib.train_am_gradcam as trainer
from lib.cache import DiskCache, cache_key
from lib.cams.attention import (
    AMGradCAM,
    ChannelAttention,
    ParameterFreeAttention,
    SpatialAttention,
    gradcam_features,
)
from lib.data import Sample
from lib.train_am_gradcam import (
    TrainConfig,
    faithfulness_loss,
    load_attention,
    masked_cross_entropy,
    total_variation,
    train_attention,
)
from test_cams import tiny_image, tiny_model


def test_channel_attention_is_eq6():
    att = ChannelAttention(4, reduction=2)
    feats = torch.randn(2, 4, 3, 3)
    mlp = att.mlp
    expected = torch.sigmoid(mlp(feats.mean((2, 3), keepdim=True)) + mlp(feats.amax((2, 3), keepdim=True)))
    torch.testing.assert_close(att(feats), expected)


def test_spatial_attention_is_eq7():
    att = SpatialAttention(7)
    feats = torch.randn(2, 4, 5, 5)
    pooled = torch.cat([feats.mean(1, keepdim=True), feats.amax(1, keepdim=True)], 1)
    torch.testing.assert_close(att(feats), torch.sigmoid(att.conv(pooled)))


def test_gradcam_features_scale_and_sum():
    acts, grads = torch.rand(1, 3, 2, 2), torch.randn(1, 1, 3, 2, 2)
    feats = gradcam_features(acts, grads)
    assert feats.abs().max() == 1.0
    raw = grads.mean((-2, -1), keepdim=True) * acts
    torch.testing.assert_close(feats * raw.abs().max(), raw)


def test_parameter_free_attention_changes_gradcam_but_keeps_finite():
    model, x = tiny_model(), tiny_image()
    maps = AMGradCAM(model, ParameterFreeAttention())(x, 2)
    assert torch.isfinite(maps).all() and maps.max() == 1.0


def test_loss_terms_by_hand():
    maps = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    logits = torch.tensor([[2.0, 0.0]])
    terms = faithfulness_loss(logits, torch.tensor([0]), maps)
    ce = -torch.log_softmax(logits, 1)[0, 0]
    area = ((0.0005) ** 0.3 + 3 * (1.0005) ** 0.3) / 4
    tv = (1 + 0) / 2 + (1 + 0) / 2  # vertical: (1-0)^2, (1-1)^2; horizontal: (1-0)^2, (1-1)^2
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["area"], torch.tensor(area))
    torch.testing.assert_close(total_variation(maps), torch.tensor(tv))
    torch.testing.assert_close(terms["loss"], 1.5 * ce + 2 * area + 0.01 * tv)


def test_chunked_cross_entropy_has_the_whole_batch_gradient():
    """Chunks of 2 of a batch of 5 (the last chunk smaller): the same CE and gradient to the maps."""
    model = tiny_model()
    g = torch.Generator().manual_seed(3)
    x, targets = torch.rand(5, 3, 4, 4, generator=g), torch.tensor([0, 1, 2, 1, 0])
    low = torch.rand(5, 2, 2, generator=g, requires_grad=True)
    whole, none = masked_cross_entropy(model, x, low, targets, chunk=None)
    assert none is None and whole.requires_grad
    (expected,) = torch.autograd.grad(whole, low)
    for chunk in (2, 4):
        ce, grad = masked_cross_entropy(model, x, low, targets, chunk=chunk)
        assert not ce.requires_grad
        torch.testing.assert_close(ce, whole.detach())
        torch.testing.assert_close(grad, expected)
    assert masked_cross_entropy(model, x, low, targets, chunk=5)[1] is None  # a chunk of the whole batch


def test_chunked_training_runs_the_chunked_pass(monkeypatch):
    """chunk reaches masked_cross_entropy; the weights move and every logged term is finite. (Trained
    weights are not compared with the whole batch's: Adam's first steps follow the sign of each
    gradient component, so float rounding in near-zero components changes them by up to lr.)"""
    seen = []
    original = trainer.masked_cross_entropy

    def spy(model, x, low, targets, chunk):
        seen.append((len(x), chunk))
        return original(model, x, low, targets, chunk)

    monkeypatch.setattr(trainer, "masked_cross_entropy", spy)
    cfg = TrainConfig("tiny", epochs=1, batch_size=4, lr=1e-2, seed=0, reduction=1)
    attention, history = train_attention(tiny_model(), TinySet(), cfg, progress=False, chunk=3)
    assert seen == [(4, 3), (2, 3)]
    assert any(p.abs().sum() > 0 for p in attention.spatial.conv.parameters())
    assert all(torch.isfinite(torch.tensor(v)) for v in history[0].values())


class TinySet(torch.utils.data.Dataset):
    def __init__(self, n=6):
        g = torch.Generator().manual_seed(1)
        self.images = torch.rand(n, 3, 4, 4, generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return Sample(f"img{i}", self.images[i], 0, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))


def test_training_moves_weights_and_resumes_after_interruption(tmp_path, monkeypatch):
    model, data = tiny_model(), TinySet()
    out = tmp_path / "att.pt"
    cfg = TrainConfig("tiny", epochs=2, batch_size=4, lr=1e-2, seed=0, reduction=1)
    full, history = train_attention(model, data, cfg, out=tmp_path / "full.pt", progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert any(p.abs().sum() > 0 for p in full.spatial.conv.parameters())  # moved from zero

    # Interrupted after epoch 1: the partial checkpoint is there, the final one is not.
    one = TrainConfig("tiny", epochs=2, batch_size=4, lr=1e-2, seed=0, reduction=1)
    calls = {"n": 0}
    original_save = trainer._atomic_save

    def crash_after_epoch_one(obj, path):
        original_save(obj, path)
        if obj.get("epoch") == 1:
            calls["n"] += 1
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_atomic_save", crash_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        train_attention(model, data, one, out=out, progress=False)
    monkeypatch.setattr(trainer, "_atomic_save", original_save)
    assert calls["n"] == 1 and not out.exists() and (tmp_path / "att.pt.partial").exists()
    resumed, resumed_history = train_attention(model, data, one, out=out, progress=False)
    assert out.exists() and not (tmp_path / "att.pt.partial").exists()
    assert [h["epoch"] for h in resumed_history] == [1, 2]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    loaded, state = load_attention(out)
    assert state["epoch"] == 2
    for a, b in zip(loaded.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_disk_cache_computes_once_and_writes_atomically(tmp_path):
    cache = DiskCache(tmp_path)
    key = cache_key(model="m", ids=["a", "b"], fraction=0.5)
    assert key == cache_key(fraction=0.5, ids=["a", "b"], model="m")
    assert key != cache_key(model="m", ids=["a", "c"], fraction=0.5)
    calls = []
    value = cache.get_or_compute(key, lambda: calls.append(1) or torch.arange(3))
    again = cache.get_or_compute(key, lambda: calls.append(1) or torch.arange(3))
    assert calls == [1] and torch.equal(value, again)
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.pt"]  # no temporary files left
    cache.path(key).write_bytes(b"corrupt")
    assert torch.equal(cache.get_or_compute(key, lambda: torch.arange(3)), torch.arange(3))


@pytest.mark.parametrize("module", ["lib.train_am_gradcam", "lib.train_lcam"])
def test_trainers_refuse_a_negative_cpu_chunk(module, tmp_path):
    import importlib

    with pytest.raises(SystemExit, match="--cpu-chunk -1 is negative. Fix"):
        importlib.import_module(module).main(["--cpu-chunk", "-1", "--out", str(tmp_path / "x.pt")])
