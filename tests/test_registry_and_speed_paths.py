"""The method registry's common call shape, and the speed paths of the metrics.

* every method of ``lib.cams.METHODS`` takes ``(images, targets)`` and returns maps of the
  image size in ``[0, 1]``, batched, for one or several targets per image;
* capturing a layer without gradients keeps its output even when a later layer works in place;
* the metrics' bf16 path stays close to fp32, and their chunks back off on out-of-memory with
  the same results.
"""

from __future__ import annotations

import pytest
import torch
from test_cams import tiny_model
from torch import nn

from lib.cams import METHODS, capture_layer, get_method
from lib.metrics import average_drop_increase, deletion_insertion, map_density

SMALL = {"rise": {"n_masks": 16}}  # RISE's 4000 masks are the default; 16 keep the test fast


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_the_same_call_shape(name):
    model = tiny_model()
    x = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    cam = get_method(name, model, **SMALL.get(name, {}))
    one = cam(x, "predicted")  # the default of every method but FM-G-CAM (top-k)
    two = cam(x, "top2")
    given = cam(x, torch.tensor([0, 1, 2]))
    assert one.shape == given.shape == (3, 4, 4)
    assert two.shape == (3, 2, 4, 4)
    for maps in (one, two, given):
        assert torch.isfinite(maps).all()
        assert maps.min() >= 0 and maps.max() <= 1
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_get_method_names_are_forgiving_and_errors_list_the_choices():
    model = tiny_model()
    assert type(get_method("Score-CAM", model)).__name__ == "ScoreCAM"
    assert type(get_method("layer_cam", model)).__name__ == "LayerCAM"
    with pytest.raises(ValueError, match="rise"):
        get_method("occlusion", model)


def test_capture_without_grad_survives_a_later_inplace_op():
    # DenseNet applies F.relu(inplace=True) right after features.norm5; the stored activations
    # must keep the layer's own (negative) values.
    net = nn.Sequential(nn.Identity(), nn.ReLU(inplace=True))
    x = -torch.ones(1, 2, 3, 3)
    with capture_layer(net, net[0], with_grad=False) as cap, torch.no_grad():
        out = net(x.clone())
    assert out.max() == 0
    assert torch.equal(cap.require(), x)


class _ChunkLimited(nn.Module):
    """Wraps a classifier; raises CUDA's out-of-memory error for batches above ``limit``."""

    def __init__(self, model: nn.Module, limit: int):
        super().__init__()
        self.model, self.limit, self.largest = model, limit, 0

    def normalize(self, x):
        return self.model.normalize(x)

    def net(self, z):
        self._check(z)
        return self.model.net(z)

    def forward(self, x):
        self._check(x)
        return self.model(x)

    def _check(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        self.largest = max(self.largest, x.shape[0])


@pytest.fixture(scope="module")
def small_batch(photos):
    """Two photos at 64 x 64 with Grad-CAM maps (keeps the metric tests fast)."""
    return torch.nn.functional.interpolate(photos[:2], size=(64, 64), mode="bilinear", antialias=True)


def test_metrics_back_off_on_out_of_memory_with_equal_results(lite0, small_batch):
    x = small_batch
    maps = get_method("gradcam", lite0)(x)
    targets = torch.tensor([967, 281])
    limited = _ChunkLimited(lite0, limit=2)  # density forwards 2 * chunk inputs, so it must back off
    ref = map_density(lite0, x, maps, targets, batch_size=2)
    got = map_density(limited, x, maps, targets, batch_size=2)
    assert limited.largest == 2
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-4, atol=1e-5)
    limited = _ChunkLimited(lite0, limit=1)
    ad_ref = average_drop_increase(lite0, x, maps, targets, batch_size=2)
    ad = average_drop_increase(limited, x, maps, targets, batch_size=2)
    assert limited.largest == 1
    for f in ad_ref["fractions"]:
        # batch 1 and batch 2 run different CPU kernels: equal up to float rounding (percent)
        torch.testing.assert_close(ad["drop"][f], ad_ref["drop"][f], rtol=1e-4, atol=1e-3)
    limited = _ChunkLimited(lite0, limit=5)
    di_ref = deletion_insertion(lite0, x, maps, targets, "deletion", pixels_per_step=512, batch_size=16)
    di = deletion_insertion(limited, x, maps, targets, "deletion", pixels_per_step=512, batch_size=16)
    assert limited.largest <= 5
    torch.testing.assert_close(di["curves"], di_ref["curves"], rtol=1e-4, atol=1e-5)


def test_metric_bf16_path_is_close_to_fp32(lite0, small_batch):
    # Measured (CPU autocast, these two photos at 64 px): AUC differences 0.001 (deletion) and
    # 0.0004 (insertion), single curve points up to 0.035, map-density scores 0.005, the original
    # probability 0.35 percentage points. The bound we state for the metrics' bf16 path: 0.05 in
    # probability for AUCs and scores. (Per-image AD terms divide by Y and can move more: one
    # image's drop at 100 % moved by 11.6 points; compare means over many images, not single terms.)
    x = small_batch
    maps = get_method("gradcam", lite0)(x)
    targets = torch.tensor([967, 281])
    for mode in ("deletion", "insertion"):
        a = deletion_insertion(lite0, x, maps, targets, mode, pixels_per_step=256, blur_kernel=11, blur_sigma=5.0)
        b = deletion_insertion(lite0, x, maps, targets, mode, pixels_per_step=256, blur_kernel=11, blur_sigma=5.0,
                               precision="bf16")
        assert b["auc"].dtype == torch.float32
        assert (a["auc"] - b["auc"]).abs().max() <= 0.05
    a, b = map_density(lite0, x, maps, targets), map_density(lite0, x, maps, targets, precision="bf16")
    assert (a["score_positive"] - b["score_positive"]).abs().max() <= 0.05
    ad32 = average_drop_increase(lite0, x, maps, targets)
    ad16 = average_drop_increase(lite0, x, maps, targets, precision="bf16")
    assert (ad32["original"] - ad16["original"]).abs().max() <= 5.0  # percent
    with pytest.raises(ValueError, match="Unknown precision"):
        deletion_insertion(lite0, x, maps, targets, precision="fp16")
