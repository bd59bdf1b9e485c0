"""The trainers on a CUDA GPU (``pytest -m gpu``, run by ``make gpu-check``; skipped without CUDA).

Each trains the tiny classifier of ``test_lcam`` on a tiny folder on the GPU and on the CPU and compares:
L-CAM on images in float32 and under mixed precision (bf16, fp16 with its loss scaler), L-CAM-Fm on cached
feature maps, and AM-Grad-CAM's two objectives. On the CPU these paths are covered by the other trainer tests.
"""

from __future__ import annotations

import pytest
import torch

from lib.lcam_features import FeatureTrainConfig, build_feature_cache, load_feature_cache, train_on_features
from lib.train_lcam import LCAMConfig, make_attention, train_lcam
from test_lcam import _folder, tiny_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _weights(attention) -> torch.Tensor:
    return torch.cat([p.detach().float().cpu().flatten() for p in attention.parameters()])


@pytest.mark.parametrize("amp,tol", [(False, 1e-4), ("bf16", 5e-2), ("fp16", 1e-2)], ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("variant", ["img", "fm"])
def test_lcam_on_cuda_trains_the_cpu_weights(tmp_path, variant, amp, tol):
    data = _folder(tmp_path / "train")
    config = LCAMConfig(model="tiny", variant=variant, epochs=2, batch_size=4, lr=0.5, init="random", seed=3)
    cpu, _ = train_lcam(tiny_model(), data, config, progress=False)
    gpu, history = train_lcam(tiny_model().cuda(), data, config, progress=False, amp=amp)
    start = _weights(make_attention(tiny_model(), config))
    moved = float((_weights(cpu) - start).norm())
    assert moved > 0 and all(torch.isfinite(torch.tensor(row["loss"])) for row in history)
    assert float((_weights(gpu) - _weights(cpu)).norm()) <= tol * max(moved, 1e-6)


def test_lcam_fm_on_cached_features_on_cuda_equals_the_cpu(tmp_path):
    model = tiny_model()
    cache = load_feature_cache(build_feature_cache(model, _folder(tmp_path / "train"), 3, 0, tmp_path / "cache",
                                                   dtype="float32", progress=False))
    config = FeatureTrainConfig(model="tiny", lr=0.5, batch_size=4, max_epochs=4, plateau=2, patience=4)
    cpu, cpu_history = train_on_features(model, cache, config, progress=False)
    gpu, gpu_history = train_on_features(tiny_model().cuda(), cache, config, progress=False)
    torch.testing.assert_close(_weights(gpu), _weights(cpu), rtol=1e-4, atol=1e-5)
    assert [row["best"] for row in gpu_history] == [row["best"] for row in cpu_history]
